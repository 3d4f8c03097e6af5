//! Zones and their buddy free lists (`struct zone`, `free_area`).
//!
//! Each zone keeps, under `zone->lock`, `free_area[order]` for orders 0..=10;
//! each order has one list per migrate type and a count of free blocks. A free
//! block is named by its first page, which carries `PG_buddy` and the order.
//!
//! **Freeing** (`__free_one_page`): while the block's buddy — the block of the
//! same order whose pfn differs only in bit `order` — is free with the same
//! order, take the buddy off its list and merge; then put the result on its
//! list, at the tail when the next-order buddy is free too (the block is
//! likely to merge further soon, so it should not be handed out first).
//!
//! **Allocating** (`__rmqueue_smallest`): take the first block of the smallest
//! order that has one, and split it down (`expand`), putting each upper half
//! back, so the caller gets the lowest-address part.
//!
//! **Fallback** (`__rmqueue_fallback`): when a migrate type's lists are empty,
//! borrow from the other types in the kernel's order, largest blocks first,
//! and claim the whole pageblock for the requesting type when the kernel would
//! (`can_steal_fallback`), moving its free pages over.
//!
//! The zone's free-page count (`NR_FREE_PAGES`) changes only here, under the
//! lock; pages on per-CPU lists are not counted as free, as in the kernel.
//!
//! **Untouched blocks** (the kernel's `CONFIG_DEFERRED_STRUCT_PAGE_INIT`,
//! done lazily): the boot hand-over frees most RAM as max-order blocks of
//! `MIGRATE_MOVABLE`, and writing the first page descriptor of each would
//! touch one page of the memmap per 4 MiB of RAM (4 MiB of memmap for a
//! 4 GiB machine: a hosted machine's resident memory before anything is
//! allocated). So runs of such blocks are kept as pfn ranges instead
//! (`untouched`, a few per zone). They count in `free_area[MAX_PAGE_ORDER]`'s
//! `nr_free` and in every statistic exactly as listed blocks would, and
//! stand behind the Movable list of that order: when it is empty and a block
//! is wanted, the highest untouched block is written to the list
//! (`first_block`), as the hand-over would have left it (the boot blocks are
//! listed highest pfn first). So allocation order, counters and
//! `/proc` files are those of a machine whose blocks were all written at
//! boot; only the memmap stays untouched until its pages are needed.

use super::pcp::PerCpuPages;
use super::pcp_hot::PcpHot;
use crate::gfp::{MigrateType, ZoneType, MAX_NR_ZONES, MIGRATE_PCPTYPES, MIGRATE_TYPES};
use crate::list::ListHead;
use crate::page::{flags::*, Page, PageblockInfo, MAX_PAGE_ORDER, NR_PAGE_ORDERS, PAGEBLOCK_ORDER};
use crate::spinlock::SpinLock;
use core::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Watermark indexes (`enum zone_watermarks`).
pub const WMARK_MIN: usize = 0;
/// Low watermark: kswapd wakes below it.
pub const WMARK_LOW: usize = 1;
/// High watermark: kswapd sleeps above it.
pub const WMARK_HIGH: usize = 2;
/// Promotion watermark (memory tiering).
pub const WMARK_PROMO: usize = 3;
/// Number of watermarks.
pub const NR_WMARK: usize = 4;

/// One order's free lists (`struct free_area`).
#[repr(C)]
pub struct FreeArea {
    /// One list per migrate type.
    pub free_list: [ListHead; MIGRATE_TYPES],
    /// Free blocks of this order, all types.
    pub nr_free: usize,
}

/// The buddy state protected by `zone->lock`.
#[repr(C)]
pub struct ZoneFree {
    /// `free_area[order]`.
    pub free_area: [FreeArea; NR_PAGE_ORDERS],
    /// Pages in HighAtomic pageblocks (`nr_reserved_highatomic`).
    pub nr_reserved_highatomic: usize,
    /// Pages freed into pageblock-sized blocks since the last report to the host.
    pub unreported: usize,
    /// The owning zone's `free_orders` word.
    pub free_orders_ptr: *const core::sync::atomic::AtomicU32,
    /// Runs of free max-order Movable blocks whose descriptors were never
    /// written, `[start, end)` pfns in ascending order (empty: `start == end`).
    untouched: [(usize, usize); UNTOUCHED_RANGES],
    /// The untouched blocks read as zero (the platform discarded them):
    /// they are listed `PG_reported`, as reported blocks are.
    untouched_zeroed: bool,
}

/// Untouched ranges per zone; blocks beyond them are listed at boot.
const UNTOUCHED_RANGES: usize = 4;
/// Pages of a max-order block.
const MAX_BLOCK: usize = 1 << MAX_PAGE_ORDER;

impl FreeArea {
    /// Whether a list of this order holds a block.
    #[inline(always)]
    pub fn has_free(&self) -> bool {
        self.nr_free != 0
    }
}

/// A zone (`struct zone`).
#[repr(C, align(64))]
pub struct Zone {
    /// `zone->lock` and the free lists it protects.
    pub lock: SpinLock<ZoneFree>,
    /// `NR_FREE_PAGES`: pages in the buddy lists.
    pub free_pages: AtomicIsize,
    /// `_watermark[]`: min, low, high, promo.
    pub watermark: [AtomicUsize; NR_WMARK],
    /// `watermark_boost`.
    pub watermark_boost: AtomicUsize,
    /// `lowmem_reserve[]`: pages kept back from allocations that could use a higher zone.
    pub lowmem_reserve: [AtomicUsize; MAX_NR_ZONES],
    /// First pfn of the zone.
    pub zone_start_pfn: usize,
    /// Pages spanned, holes included.
    pub spanned_pages: usize,
    /// RAM pages inside the span.
    pub present_pages: usize,
    /// Pages handed to the buddy allocator.
    pub managed_pages: AtomicUsize,
    /// The zone's per-CPU page lists (`per_cpu_pageset`), one per possible CPU.
    pub pcp: *mut PerCpuPages,
    /// Per pcp migrate type, CPU 0's entry of the zone's per-CPU hot arrays
    /// (`pcp_hot.rs`), which have entries for every CPU id a thread's rseq
    /// area can show; null where the platform has no such area or the zone
    /// is empty.
    pub hot: [*mut PcpHot; MIGRATE_PCPTYPES],
    /// Node id.
    pub node: u8,
    /// Zone type.
    pub zone_type: ZoneType,
    /// Buddy-path statistics (pcp statistics live in each `PerCpuPages`).
    pub stats: ZoneStats,
    /// `low + lowmem_reserve[j]` for each highest zone `j`: the fast path's
    /// whole watermark test in one load (recomputed with the watermarks).
    pub fast_mark: [AtomicUsize; MAX_NR_ZONES],
    /// Bit `o` is set while `free_area[o]` holds a block: lets the high-order
    /// watermark check run without the zone lock, as the kernel's does.
    pub free_orders: core::sync::atomic::AtomicU32,
}

// SAFETY: all mutable state is behind the zone lock, atomics, or the per-CPU locks.
unsafe impl Sync for Zone {}
// SAFETY: as above.
unsafe impl Send for Zone {}

/// Counters kept per zone, updated under the zone lock.
#[derive(Default)]
#[repr(C)]
pub struct ZoneStats {
    /// Pages allocated straight from the buddy lists (orders above the pcp range, or pcp busy).
    pub pgalloc: AtomicUsize,
    /// Allocations served straight from the buddy lists (one per call).
    pub numa_hit: AtomicUsize,
    /// Pages freed straight into the buddy lists.
    pub pgfree: AtomicUsize,
    /// Pageblocks claimed by another migrate type.
    pub steal: AtomicUsize,
    /// Single pages borrowed from a foreign migrate type.
    pub fallback: AtomicUsize,
    /// Pages given back to the host.
    pub reported: AtomicUsize,
}

impl Zone {
    /// The zone's name.
    pub fn name(&self) -> &'static str {
        self.zone_type.name()
    }

    /// `populated_zone`.
    #[inline(always)]
    pub fn is_populated(&self) -> bool {
        self.present_pages != 0
    }

    /// `zone_managed_pages`.
    #[inline(always)]
    pub fn managed(&self) -> usize {
        self.managed_pages.load(Ordering::Relaxed)
    }

    /// `zone_page_state(zone, NR_FREE_PAGES)`, never negative.
    #[inline(always)]
    pub fn nr_free(&self) -> usize {
        self.free_pages.load(Ordering::Relaxed).max(0) as usize
    }

    /// `wmark_pages(zone, i)`, including the boost as the kernel does.
    #[inline(always)]
    pub fn wmark(&self, i: usize) -> usize {
        self.watermark[i].load(Ordering::Relaxed) + self.watermark_boost.load(Ordering::Relaxed)
    }

    /// `zone_end_pfn`.
    #[inline(always)]
    pub fn end_pfn(&self) -> usize {
        self.zone_start_pfn + self.spanned_pages
    }

    /// Whether `pfn` lies within the zone's span.
    #[inline(always)]
    pub fn spans(&self, pfn: usize) -> bool {
        pfn >= self.zone_start_pfn && pfn < self.end_pfn()
    }

    /// Per-CPU lists of `cpu`.
    ///
    /// # Safety
    /// `cpu` must be below the machine's `nr_cpu_ids` and the zone initialised.
    #[inline(always)]
    pub unsafe fn pcp(&self, cpu: usize) -> &PerCpuPages {
        // SAFETY: the array has nr_cpu_ids entries (caller contract).
        unsafe { &*self.pcp.add(cpu) }
    }
}

/// Context the buddy operations need from the machine: the memmap and the
/// pageblock table. Passed by value; it is two pointers and a bound.
#[derive(Clone, Copy)]
pub struct MemMap {
    /// `mem_map`: descriptor of pfn 0.
    pub pages: *mut Page,
    /// Per-pageblock zone and migrate type.
    pub pageblocks: *mut PageblockInfo,
    /// Number of pfns covered.
    pub max_pfn: usize,
    /// `max_pfn * size_of::<Page>()`: the memmap's size in bytes.
    pub memmap_bytes: usize,
}

// SAFETY: the memmap is shared machine state; every mutation of a descriptor
// happens under the lock that owns the page's current state.
unsafe impl Send for MemMap {}
// SAFETY: as above.
unsafe impl Sync for MemMap {}

impl MemMap {
    /// `pfn_to_page`.
    #[inline(always)]
    pub fn pfn_to_page(&self, pfn: usize) -> *mut Page {
        self.pages.wrapping_add(pfn)
    }

    /// `page_to_pfn`.
    #[inline(always)]
    pub fn page_to_pfn(&self, page: *const Page) -> usize {
        (page as usize).wrapping_sub(self.pages as usize) / core::mem::size_of::<Page>()
    }

    /// Whether `page` points at a descriptor of this memmap.
    #[inline(always)]
    pub fn contains(&self, page: *const Page) -> bool {
        let off = (page as usize).wrapping_sub(self.pages as usize);
        off.is_multiple_of(core::mem::size_of::<Page>()) && off / core::mem::size_of::<Page>() < self.max_pfn
    }

    /// The pageblock record of `pfn` (a copy).
    #[inline(always)]
    pub fn pageblock(&self, pfn: usize) -> PageblockInfo {
        debug_assert!(pfn < self.max_pfn);
        // SAFETY: pfn < max_pfn for every caller; the table covers max_pfn.
        unsafe { *self.pageblocks.add(pfn >> PAGEBLOCK_ORDER) }
    }

    /// `set_pageblock_migratetype`: retype the pageblock holding `pfn`.
    /// Callers hold the owning zone's lock, which serialises retyping.
    #[inline(always)]
    pub fn set_pageblock_mt(&self, pfn: usize, mt: MigrateType) {
        debug_assert!(pfn < self.max_pfn);
        // SAFETY: in bounds as above; writes are serialised by the zone lock.
        unsafe { (*self.pageblocks.add(pfn >> PAGEBLOCK_ORDER)).mt = mt as u8 };
    }

    /// `get_pageblock_migratetype`.
    #[inline(always)]
    pub fn pageblock_mt(&self, pfn: usize) -> MigrateType {
        MigrateType::from_index(self.pageblock(pfn).mt as usize)
    }
}

impl ZoneFree {
    /// Initialise the lists in place; `free_orders` is the owning zone's word.
    ///
    /// # Safety
    /// `this` must be valid and at its final address; `free_orders` lives as long.
    pub unsafe fn init(this: *mut ZoneFree, free_orders: *const core::sync::atomic::AtomicU32) {
        // SAFETY: the caller guarantees `this` is valid and pinned.
        unsafe {
            (*this).free_orders_ptr = free_orders;
            for o in 0..NR_PAGE_ORDERS {
                for mt in 0..MIGRATE_TYPES {
                    ListHead::init(&mut (*this).free_area[o].free_list[mt]);
                }
                (*this).free_area[o].nr_free = 0;
            }
            (*this).untouched = [(0, 0); UNTOUCHED_RANGES];
            (*this).untouched_zeroed = false;
        }
    }

    /// Count the `blocks` free max-order Movable blocks from `pfn` (their
    /// descriptors never written) without writing them: they join the last
    /// untouched range if they follow it, else take a new one. False if no
    /// range can take them (the caller lists them). The zone lock is held;
    /// boot only.
    pub fn add_untouched(&mut self, pfn: usize, blocks: usize) -> bool {
        let end = pfn + blocks * MAX_BLOCK;
        match self.untouched.iter().rposition(|r| r.0 != r.1) {
            None => self.untouched[0] = (pfn, end),
            Some(i) if self.untouched[i].1 == pfn => self.untouched[i].1 = end,
            Some(i) if i + 1 < UNTOUCHED_RANGES && self.untouched[i].1 < pfn => {
                self.untouched[i + 1] = (pfn, end)
            }
            Some(_) => return false,
        }
        if self.free_area[MAX_PAGE_ORDER as usize].nr_free == 0 {
            self.mark_order(MAX_PAGE_ORDER as usize, true);
        }
        self.free_area[MAX_PAGE_ORDER as usize].nr_free += blocks;
        true
    }

    /// The untouched ranges (for the boot-time discard).
    pub fn untouched_ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.untouched.iter().copied().filter(|r| r.0 != r.1)
    }

    /// Say whether untouched blocks read as zero (set once, at boot).
    pub fn set_untouched_zeroed(&mut self, zeroed: bool) {
        self.untouched_zeroed = zeroed;
    }

    /// Untouched blocks of `order` and type `mt`.
    pub fn untouched_blocks(&self, order: usize, mt: usize) -> usize {
        if order != MAX_PAGE_ORDER as usize || mt != MigrateType::Movable as usize {
            return 0;
        }
        self.untouched_ranges().map(|(s, e)| (e - s) / MAX_BLOCK).sum()
    }

    /// Whether a block of `order` and type `mt` is free (listed or untouched).
    pub fn has_block(&self, order: usize, mt: usize) -> bool {
        // SAFETY: the lists are initialised; `&self` is under the zone lock.
        !unsafe { ListHead::is_empty(&self.free_area[order].free_list[mt]) }
            || self.untouched_blocks(order, mt) != 0
    }

    /// The first free block of `order` and type `mt`, writing the highest
    /// untouched block to its list first if the list is empty.
    ///
    /// # Safety
    /// The zone lock is held; `map` is the machine's memmap.
    pub unsafe fn first_block(&mut self, map: &MemMap, order: usize, mt: usize) -> Option<*mut Page> {
        let head = &mut self.free_area[order].free_list[mt] as *mut ListHead;
        // SAFETY: the list is initialised and the lock held.
        if let Some(l) = unsafe { ListHead::first(head) } {
            return Some(lru_to_page(l));
        }
        if self.untouched_blocks(order, mt) == 0 {
            return None;
        }
        let i = self.untouched.iter().rposition(|r| r.0 != r.1)?;
        self.untouched[i].1 -= MAX_BLOCK;
        let pfn = self.untouched[i].1;
        let page = map.pfn_to_page(pfn);
        // The block was counted when it became untouched: list it as the
        // hand-over would have (refcount 0, `PG_buddy`, reported if zero).
        self.free_area[order].nr_free -= 1;
        // SAFETY: an untouched block is free RAM of this zone that nobody
        // references; its descriptors were never written.
        unsafe {
            (*page).refcount.store(0, Ordering::Relaxed);
            (*page).flags.store(0, Ordering::Relaxed);
            self.add_to_free_list(page, order as u32, MigrateType::Movable, false);
            if self.untouched_zeroed {
                (*page).set(PG_REPORTED);
            }
        }
        Some(page)
    }

    /// Put a free block on its list (`__add_to_free_list`).
    ///
    /// # Safety
    /// `page` heads a block that is not on any list; the zone lock is held.
    #[inline]
    pub unsafe fn add_to_free_list(&mut self, page: *mut Page, order: u32, mt: MigrateType, tail: bool) {
        // SAFETY: caller contract.
        unsafe {
            let area = &mut self.free_area[order as usize];
            let head = &mut area.free_list[mt as usize] as *mut ListHead;
            if tail {
                ListHead::add_tail(&mut (*page).lru, head);
            } else {
                ListHead::add(&mut (*page).lru, head);
            }
            area.nr_free += 1;
            if area.nr_free == 1 {
                self.mark_order(order as usize, true);
            }
            (*page).order = order as u8;
            (*page).mt = mt as u8;
            let f = (*page).flags.load(Ordering::Relaxed);
            (*page).flags.store(f | PG_BUDDY, Ordering::Relaxed);
        }
    }

    /// Take a free block off its list (`del_page_from_free_list`).
    ///
    /// # Safety
    /// `page` heads a block on this zone's free lists; the zone lock is held.
    #[inline]
    pub unsafe fn del_from_free_list(&mut self, page: *mut Page) {
        // SAFETY: caller contract.
        unsafe {
            let order = (*page).order as usize;
            ListHead::del(&mut (*page).lru);
            let f = (*page).flags.load(Ordering::Relaxed);
            (*page).flags.store(f & !PG_BUDDY, Ordering::Relaxed);
            self.free_area[order].nr_free -= 1;
            if self.free_area[order].nr_free == 0 {
                self.mark_order(order, false);
            }
        }
    }

    /// Publish whether `free_area[order]` is non-empty (zone lock held).
    #[inline(always)]
    fn mark_order(&mut self, order: usize, present: bool) {
        // SAFETY: `free_orders_ptr` was set to the owning zone's word at init;
        // writers hold the zone lock, readers only load.
        let w = unsafe { &*self.free_orders_ptr };
        let v = w.load(Ordering::Relaxed);
        let v = if present {
            v | (1 << order)
        } else {
            v & !(1 << order)
        };
        w.store(v, Ordering::Relaxed);
    }

    /// Free blocks of `order` and type `mt`, untouched ones included (O(n),
    /// for statistics).
    pub fn count_list(&self, order: usize, mt: usize) -> usize {
        // SAFETY: the lists are initialised and we hold `&self` under the lock.
        unsafe { ListHead::count(&self.free_area[order].free_list[mt]) + self.untouched_blocks(order, mt) }
    }
}

/// `page` from a `lru` link.
#[inline(always)]
pub fn lru_to_page(l: *mut ListHead) -> *mut Page {
    crate::container_of!(l, Page, lru)
}

/// Buddy operations of one zone, with the lock held.
pub struct Buddy<'a> {
    /// The locked free lists.
    pub free: &'a mut ZoneFree,
    /// The zone.
    pub zone: &'a Zone,
    /// Memmap access.
    pub map: MemMap,
    /// Whether discarded RAM reads as zero (free page reporting is possible).
    pub report: bool,
}

impl Buddy<'_> {
    /// `page_is_buddy`: is the block at `buddy` a free block of `order` in this zone?
    #[inline(always)]
    fn page_is_buddy(&self, buddy_pfn: usize, order: u32) -> bool {
        if buddy_pfn >= self.map.max_pfn || !self.zone.spans(buddy_pfn) {
            return false;
        }
        let buddy = self.map.pfn_to_page(buddy_pfn);
        // SAFETY: buddy_pfn < max_pfn, so the descriptor exists.
        unsafe { (*buddy).is_buddy() && (*buddy).order as u32 == order }
    }

    /// `__free_one_page`: free a block and merge it with its buddies.
    /// `to_tail` is `FPI_TO_TAIL` (the boot's hand-over of memory): the
    /// block goes to its list's tail without a look at the next-order
    /// buddy.
    ///
    /// # Safety
    /// `page` heads a block of `order` pages of this zone that nobody uses.
    pub unsafe fn free_one_page(
        &mut self,
        page: *mut Page,
        order: u32,
        mt: MigrateType,
        reported: bool,
        to_tail: bool,
    ) {
        let mut pfn = self.map.page_to_pfn(page);
        let nr_pages = 1isize << order;
        let mut order = order;
        let mut page = page;
        let mut reported = reported;
        let max = crate::page::MAX_PAGE_ORDER;
        // SAFETY: the zone lock is held (we own `self.free`); descriptors exist for pfns we touch.
        unsafe {
            (*page).clear(PG_PCP | PG_REPORTED);
            while order < max {
                let buddy_pfn = pfn ^ (1 << order);
                if !self.page_is_buddy(buddy_pfn, order) {
                    break;
                }
                let buddy = self.map.pfn_to_page(buddy_pfn);
                // Do not merge across isolated or highatomic pageblocks at pageblock size.
                if order >= PAGEBLOCK_ORDER {
                    let bmt = self.map.pageblock_mt(buddy_pfn);
                    if bmt == MigrateType::Isolate
                        || mt == MigrateType::Isolate
                        || bmt == MigrateType::HighAtomic
                    {
                        break;
                    }
                }
                reported = reported && (*buddy).test(PG_REPORTED);
                self.free.del_from_free_list(buddy);
                (*buddy).clear(PG_REPORTED);
                let combined = pfn & buddy_pfn;
                page = self.map.pfn_to_page(combined);
                pfn = combined;
                order += 1;
            }
            // Merging is likely if the next-order buddy is free: queue at the tail.
            let mut tail = to_tail;
            if !to_tail && order < max - 1 {
                let higher_buddy = (pfn & !((1usize << (order + 1)) - 1)) ^ (1 << (order + 1));
                tail = self.page_is_buddy(higher_buddy, order + 1);
            }
            let list_mt = if order >= PAGEBLOCK_ORDER {
                self.map.pageblock_mt(pfn)
            } else {
                mt
            };
            let list_mt = if list_mt == MigrateType::HighAtomic && order >= PAGEBLOCK_ORDER {
                mt
            } else {
                list_mt
            };
            self.free.add_to_free_list(page, order, list_mt, tail || reported);
            if reported {
                (*page).set(PG_REPORTED);
            } else if self.report && order >= PAGEBLOCK_ORDER {
                self.free.unreported += 1 << order;
            }
        }
        self.zone.free_pages.fetch_add(nr_pages, Ordering::Relaxed);
    }

    /// `expand`: split a block of `high` down to `low`, freeing the upper halves.
    ///
    /// # Safety
    /// `page` heads a block of `high` just taken off the lists.
    unsafe fn expand(&mut self, page: *mut Page, low: u32, mut high: u32, mt: MigrateType) {
        let pfn = self.map.page_to_pfn(page);
        // SAFETY: caller contract; split halves lie within the block.
        unsafe {
            let reported = (*page).test(PG_REPORTED);
            let mut size = 1usize << high;
            while high > low {
                high -= 1;
                size >>= 1;
                let half = self.map.pfn_to_page(pfn + size);
                self.free.add_to_free_list(half, high, mt, false);
                if reported {
                    (*half).set(PG_REPORTED);
                }
            }
        }
    }

    /// `__rmqueue_smallest`: the smallest free block of `order` or more of type `mt`.
    ///
    /// # Safety
    /// The zone lock is held.
    pub unsafe fn rmqueue_smallest(&mut self, order: u32, mt: MigrateType) -> Option<*mut Page> {
        for cur in order..NR_PAGE_ORDERS as u32 {
            // SAFETY: the lock is held.
            if let Some(page) = unsafe { self.free.first_block(&self.map, cur as usize, mt as usize) } {
                // SAFETY: `page` is on the list, so it heads a free block of `cur`.
                unsafe {
                    self.free.del_from_free_list(page);
                    self.expand(page, order, cur, mt);
                    (*page).order = order as u8;
                }
                self.zone.free_pages.fetch_sub(1 << order, Ordering::Relaxed);
                return Some(page);
            }
        }
        None
    }

    /// `can_steal_fallback`: may an allocation of `start_mt` claim a whole pageblock?
    fn can_steal(order: u32, start_mt: MigrateType) -> bool {
        order >= PAGEBLOCK_ORDER
            || order >= PAGEBLOCK_ORDER / 2
            || start_mt == MigrateType::Unmovable
            || start_mt == MigrateType::Reclaimable
    }

    /// `move_freepages_block`: move the free blocks of the pageblock holding `pfn`
    /// to `mt`'s lists and retype the pageblock.
    ///
    /// # Safety
    /// The zone lock is held.
    unsafe fn move_freepages_block(&mut self, pfn: usize, mt: MigrateType) -> usize {
        let start = pfn & !((1usize << PAGEBLOCK_ORDER) - 1);
        let end = (start + (1 << PAGEBLOCK_ORDER)).min(self.map.max_pfn);
        let mut moved = 0;
        let mut p = start.max(self.zone.zone_start_pfn);
        let end = end.min(self.zone.end_pfn());
        while p < end {
            let page = self.map.pfn_to_page(p);
            // SAFETY: p < max_pfn; lock held.
            unsafe {
                if (*page).is_buddy() {
                    let order = (*page).order as u32;
                    let reported = (*page).test(PG_REPORTED);
                    self.free.del_from_free_list(page);
                    self.free.add_to_free_list(page, order, mt, false);
                    if reported {
                        (*page).set(PG_REPORTED);
                    }
                    moved += 1 << order;
                    p += 1 << order;
                } else {
                    p += 1;
                }
            }
        }
        self.map.set_pageblock_mt(start, mt);
        moved
    }

    /// `__rmqueue_fallback`: borrow from other migrate types.
    ///
    /// # Safety
    /// The zone lock is held.
    pub unsafe fn rmqueue_fallback(&mut self, order: u32, start_mt: MigrateType) -> Option<*mut Page> {
        // Claim: largest blocks first, so fragmentation stays in few pageblocks.
        for cur in (order..NR_PAGE_ORDERS as u32).rev() {
            for fmt in start_mt.fallbacks() {
                // SAFETY: lock held.
                let Some(page) = (unsafe { self.free.first_block(&self.map, cur as usize, fmt as usize) })
                else {
                    continue;
                };
                let pfn = self.map.page_to_pfn(page);
                if Self::can_steal(cur, start_mt) {
                    if cur >= PAGEBLOCK_ORDER {
                        // Whole pageblocks: retype all of them.
                        let mut b = pfn;
                        while b < pfn + (1 << cur) {
                            self.map.set_pageblock_mt(b, start_mt);
                            b += 1 << PAGEBLOCK_ORDER;
                        }
                        // SAFETY: page is on fmt's list; move it to ours.
                        unsafe {
                            let reported = (*page).test(PG_REPORTED);
                            self.free.del_from_free_list(page);
                            self.free.add_to_free_list(page, cur, start_mt, false);
                            if reported {
                                (*page).set(PG_REPORTED);
                            }
                        }
                    } else {
                        // SAFETY: lock held.
                        unsafe { self.move_freepages_block(pfn, start_mt) };
                    }
                    self.zone.stats.steal.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: lock held.
                    return unsafe { self.rmqueue_smallest(order, start_mt) };
                }
                break;
            }
        }
        // Steal: the smallest foreign block that fits, without claiming its pageblock.
        for cur in order..NR_PAGE_ORDERS as u32 {
            for fmt in start_mt.fallbacks() {
                if !self.free.has_block(cur as usize, fmt as usize) {
                    continue;
                }
                self.zone.stats.fallback.fetch_add(1, Ordering::Relaxed);
                // SAFETY: lock held.
                return unsafe { self.rmqueue_smallest(order, fmt) };
            }
        }
        None
    }

    /// `__rmqueue`: own type, then fallbacks.
    ///
    /// # Safety
    /// The zone lock is held.
    #[inline]
    pub unsafe fn rmqueue(&mut self, order: u32, mt: MigrateType) -> Option<*mut Page> {
        // SAFETY: forwarded.
        unsafe {
            self.rmqueue_smallest(order, mt)
                .or_else(|| self.rmqueue_fallback(order, mt))
        }
    }

    /// Free page reporting: hand free pageblock-or-larger blocks back to the host
    /// (they then read as zero), marking them `PG_reported`, but keep the
    /// hottest `keep` pages of them: the blocks at the heads of their lists
    /// (a freed block goes to the head, and allocation takes from the head),
    /// largest first, which are what a program that frees and allocates
    /// again takes next, at no host fault.
    ///
    /// # Safety
    /// The zone lock is held.
    pub unsafe fn report_free_pages(&mut self, discard: &dyn Fn(usize, usize), keep: usize) -> usize {
        let mut pages = 0;
        let mut kept = 0;
        // Adjacent blocks (the boot hand-over frees them in address order)
        // are given back in one call: `(pfn, pages)` pending.
        let mut run = (0usize, 0usize);
        for order in (PAGEBLOCK_ORDER..NR_PAGE_ORDERS as u32).rev() {
            for mt in 0..MIGRATE_PCPTYPES {
                let head = &mut self.free.free_area[order as usize].free_list[mt] as *mut ListHead;
                // SAFETY: lists are valid under the lock.
                unsafe {
                    let mut l = (*head).next;
                    while !core::ptr::eq(l, head) {
                        let page = lru_to_page(l);
                        l = (*l).next;
                        if (*page).test(PG_REPORTED) {
                            continue;
                        }
                        let n = 1usize << order;
                        if kept < keep {
                            kept += n;
                            continue;
                        }
                        let pfn = self.map.page_to_pfn(page);
                        if run.1 != 0 && run.0 + run.1 == pfn {
                            run.1 += n;
                        } else if run.1 != 0 && pfn + n == run.0 {
                            run = (pfn, run.1 + n);
                        } else {
                            if run.1 != 0 {
                                discard(run.0, run.1);
                            }
                            run = (pfn, n);
                        }
                        (*page).set(PG_REPORTED);
                        pages += n;
                    }
                }
            }
        }
        if run.1 != 0 {
            discard(run.0, run.1);
        }
        self.free.unreported = kept;
        self.zone.stats.reported.fetch_add(pages, Ordering::Relaxed);
        pages
    }
}
