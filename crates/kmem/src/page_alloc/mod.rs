//! The zoned buddy page allocator (`mm/page_alloc.c`).
//!
//! **Allocation** (`__alloc_pages`): the GFP flags are narrowed by the task's
//! NOIO/NOFS scope, `gfp_zone` picks the highest zone allowed, and the fast
//! path (`get_page_from_freelist`) walks the zonelist — the preferred node's
//! zones from that zone downwards, then the other nodes — taking the first
//! zone above its *low* watermark. Orders up to 3 come from the per-CPU lists,
//! larger ones from the buddy lists under `zone->lock`.
//!
//! When that fails, the slow path (`__alloc_pages_slowpath`) runs the kernel's
//! sequence: retry at the *min* watermark with the reserves the flags grant
//! (`gfp_to_alloc_flags`: `__GFP_HIGH` half the min reserve, non-blocking
//! `GFP_ATOMIC` down to 37.5%, `__GFP_MEMALLOC` everything, `GFP_NOWAIT`
//! nothing); stop there if the caller cannot sleep; otherwise run direct
//! reclaim through the registered shrinkers, drain the per-CPU lists, retry
//! while reclaim makes progress (`should_reclaim_retry`), then the OOM path.
//! `__GFP_NORETRY` stops after one reclaim pass, costly orders without
//! `__GFP_RETRY_MAYFAIL` after reclaim, `__GFP_NOFAIL` never stops.
//!
//! **The OOM path** cannot kill a process here. It calls the OOM notifier
//! chain (`register_oom_notifier`), and if nothing was freed it waits for
//! another thread to free memory, one tick at a time, for at most
//! `oom_wait_ms` (boot parameter, default 1000 ms) before the allocation
//! fails — `__GFP_NOFAIL` waits forever. This is kmem's documented policy
//! where Linux would pick a victim.
//!
//! **Freeing** (`__free_pages`) drops the reference; the last one returns the
//! block to the per-CPU list of the freeing CPU (orders up to 3) or to the
//! buddy lists. Misuse is caught before anything is corrupted and reported as
//! the kernel does ("BUG: Bad page state"): double frees, freeing a reserved,
//! slab or foreign page, and — better than the kernel, which cannot tell —
//! freeing with the wrong order (the allocation's order is recorded in the
//! page; the block is freed with the recorded order).

pub mod pcp;
pub mod pcp_hot;
use pcp_hot::PCP_HOT_PAGES;
pub mod zone;

use crate::gfp::*;
use crate::list::ListHead;
use crate::machine::{Kmem, MachineState, SWAP_CLUSTER_MAX};
use crate::memblock::NUMA_NO_NODE;
use crate::page::{flags::*, *};
use crate::platform::task_flags::PF_MEMALLOC;
use crate::platform::{Platform, HARDIRQ_MASK, NMI_MASK};
use crate::AllocError;
use core::fmt::Write;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;
use pcp::{order_to_pindex, pindex_to_order, PcpLists, NR_PCP_LISTS};
use zone::{lru_to_page, Buddy, Zone, WMARK_HIGH, WMARK_LOW, WMARK_MIN};

/// `ALLOC_WMARK_MIN`: check against the min watermark.
pub const ALLOC_WMARK_MIN: u32 = WMARK_MIN as u32;
/// `ALLOC_WMARK_LOW`.
pub const ALLOC_WMARK_LOW: u32 = WMARK_LOW as u32;
/// `ALLOC_WMARK_HIGH`.
pub const ALLOC_WMARK_HIGH: u32 = WMARK_HIGH as u32;
/// `ALLOC_NO_WATERMARKS`: ignore watermarks.
pub const ALLOC_NO_WATERMARKS: u32 = 0x04;
/// Mask of the watermark index.
pub const ALLOC_WMARK_MASK: u32 = ALLOC_NO_WATERMARKS - 1;
/// `ALLOC_OOM`: an OOM victim's reserve.
pub const ALLOC_OOM: u32 = 0x08;
/// `ALLOC_NON_BLOCK`: the caller cannot sleep.
pub const ALLOC_NON_BLOCK: u32 = 0x10;
/// `ALLOC_MIN_RESERVE`: may use half the min reserve (same bit as `__GFP_HIGH`).
pub const ALLOC_MIN_RESERVE: u32 = 0x20;
/// `ALLOC_CPUSET`: honour cpusets.
pub const ALLOC_CPUSET: u32 = 0x40;
/// `ALLOC_CMA`: may use CMA pageblocks.
pub const ALLOC_CMA: u32 = 0x80;
/// `ALLOC_NOFRAGMENT`: avoid splitting foreign pageblocks.
pub const ALLOC_NOFRAGMENT: u32 = 0x100;
/// `ALLOC_HIGHATOMIC`: may use the high-order atomic reserve.
pub const ALLOC_HIGHATOMIC: u32 = 0x200;
/// `ALLOC_KSWAPD`: wake kswapd (same bit as `__GFP_KSWAPD_RECLAIM`).
pub const ALLOC_KSWAPD: u32 = 0x800;
/// Flags that grant access to reserves.
pub const ALLOC_RESERVES: u32 = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM;
/// `MAX_RECLAIM_RETRIES`.
pub const MAX_RECLAIM_RETRIES: u32 = 16;
/// One scheduler tick, for waits in the allocator (HZ = 250).
pub const TICK_NS: u64 = 4_000_000;

// WARN_ON_ONCE sites.
const WARN_ORDER: u32 = 0;
const WARN_NOFAIL_ORDER: u32 = 1;
const WARN_NOFAIL_NOBLOCK: u32 = 2;
const WARN_BAD_ZONE: u32 = 3;
const WARN_NOFAIL_MEMALLOC: u32 = 4;
const WARN_OFFLINE_NODE: u32 = 5;

/// Where an allocation may come from (`struct alloc_context`).
#[derive(Clone, Copy)]
struct AllocContext {
    preferred_nid: usize,
    highest_zoneidx: ZoneType,
    migratetype: MigrateType,
    thisnode: bool,
}

/// A node mask of nodes `0..n` as `%*pbl` prints it (`0`, `0-1`).
struct NodeList(usize);

impl core::fmt::Display for NodeList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 | 1 => f.write_str("0"),
            n => write!(f, "0-{}", n - 1),
        }
    }
}

/// `__zone_watermark_ok`.
#[inline]
pub fn zone_watermark_ok(
    z: &Zone,
    order: u32,
    mark: usize,
    highest_zoneidx: ZoneType,
    alloc_flags: u32,
    free_pages: isize,
    free_area: Option<&zone::ZoneFree>,
) -> bool {
    let mut free = free_pages - ((1isize << order) - 1);
    let mut min = mark as isize;
    if alloc_flags & ALLOC_RESERVES != 0 {
        if alloc_flags & ALLOC_MIN_RESERVE != 0 {
            min -= min / 2;
            // Non-blocking callers (GFP_ATOMIC) may dig a little deeper.
            if alloc_flags & ALLOC_NON_BLOCK != 0 {
                min -= min / 4;
            }
        }
        if alloc_flags & ALLOC_OOM != 0 {
            min -= min / 2;
        }
    } else if let Some(f) = free_area {
        free -= f.nr_reserved_highatomic as isize;
    }
    let reserve = z.lowmem_reserve[highest_zoneidx as usize].load(Ordering::Relaxed) as isize;
    if free <= min + reserve {
        return false;
    }
    if order == 0 {
        return true;
    }
    // For high orders, some free block must be large enough.
    let Some(f) = free_area else { return true };
    for o in order as usize..NR_PAGE_ORDERS {
        let area = &f.free_area[o];
        if area.nr_free == 0 {
            continue;
        }
        // The caller holds the zone lock for `f`.
        if (0..MIGRATE_PCPTYPES).any(|mt| f.has_block(o, mt)) {
            return true;
        }
        if alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM) != 0
            && f.has_block(o, MigrateType::HighAtomic as usize)
        {
            return true;
        }
    }
    false
}

/// `gfp_to_alloc_flags`: the slow path's watermark and reserve access.
pub fn gfp_to_alloc_flags(gfp: Gfp, order: u32) -> u32 {
    let mut alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET;
    // __GFP_HIGH and __GFP_KSWAPD_RECLAIM share bits with the ALLOC_ flags.
    alloc_flags |= gfp.bits() & (__GFP_HIGH.bits() | __GFP_KSWAPD_RECLAIM.bits());
    if !gfp.intersects(__GFP_DIRECT_RECLAIM) {
        if !gfp.intersects(__GFP_NOMEMALLOC) {
            alloc_flags |= ALLOC_NON_BLOCK;
            if order > 0 && alloc_flags & ALLOC_MIN_RESERVE != 0 {
                alloc_flags |= ALLOC_HIGHATOMIC;
            }
        }
        if alloc_flags & ALLOC_MIN_RESERVE != 0 {
            alloc_flags &= !ALLOC_CPUSET;
        }
    }
    alloc_flags
}

impl<P: Platform> Kmem<P> {
    // ---- address conversions --------------------------------------------

    /// `pfn_to_page`.
    #[inline(always)]
    pub fn pfn_to_page(&self, pfn: usize) -> Option<NonNull<Page>> {
        if pfn < self.map.max_pfn {
            NonNull::new(self.map.pfn_to_page(pfn))
        } else {
            None
        }
    }

    /// `page_to_pfn`.
    #[inline(always)]
    pub fn page_to_pfn(&self, page: NonNull<Page>) -> usize {
        self.map.page_to_pfn(page.as_ptr())
    }

    /// Whether the page is in a HighMem zone (`PageHighMem`).
    #[inline(always)]
    pub fn page_is_highmem(&self, page: NonNull<Page>) -> bool {
        self.page_to_pfn(page) >= self.max_low_pfn
    }

    /// `page_address`: the page's permanent kernel address; for a HighMem
    /// page its `kmap` address while it is kmapped, else `None`.
    #[inline(always)]
    pub fn page_address(&self, page: NonNull<Page>) -> Option<NonNull<u8>> {
        let pfn = self.page_to_pfn(page);
        if pfn >= self.max_low_pfn {
            // HighMem: its pkmap address while kmap()ed (page_address_htable).
            return self.pkmap_page_address(page);
        }
        NonNull::new((self.page_offset + (pfn << PAGE_SHIFT)) as *mut u8)
    }

    /// The linear-map address of any RAM page, HighMem included (internal:
    /// the hosted and x86-64 homes map all RAM).
    #[inline(always)]
    pub(crate) fn lowmem_or_direct_address(&self, pfn: usize) -> *mut u8 {
        (self.page_offset + (pfn << PAGE_SHIFT)) as *mut u8
    }

    /// `virt_to_page`: the descriptor of the page holding a linear-map address.
    #[inline(always)]
    pub fn virt_to_page(&self, addr: *const u8) -> Option<NonNull<Page>> {
        let off = (addr as usize).wrapping_sub(self.page_offset);
        let pfn = off >> PAGE_SHIFT;
        if pfn < self.max_low_pfn {
            // The memmap's allocation was checked non-null at boot, so the paths that look pages up test nothing.
            // SAFETY: `mem_map + pfn` lies inside the memmap, which is not null.
            Some(unsafe { NonNull::new_unchecked(self.map.pfn_to_page(pfn)) })
        } else {
            None
        }
    }

    /// `virt_to_head_page`: the head descriptor of the (compound) page
    /// holding a linear-map address (a tail page's `index` names its head).
    #[inline(always)]
    pub fn virt_to_head_page(&self, addr: *const u8) -> Option<NonNull<Page>> {
        let page = self.virt_to_page(addr)?;
        // SAFETY: a descriptor of this memmap; tails point at their head, another one.
        unsafe {
            if page.as_ref().flags.load(Ordering::Relaxed) & PG_TAIL_BIT != 0 {
                NonNull::new(page.as_ref().index as *mut Page)
            } else {
                Some(page)
            }
        }
    }

    /// `__pa`.
    #[inline(always)]
    pub fn virt_to_phys(&self, addr: *const u8) -> u64 {
        (addr as usize).wrapping_sub(self.page_offset) as u64
    }

    /// `__va`.
    #[inline(always)]
    pub fn phys_to_virt(&self, phys: u64) -> *mut u8 {
        (self.page_offset + phys as usize) as *mut u8
    }

    /// `virt_addr_valid`: is this a linear-map address of RAM?
    pub fn virt_addr_valid(&self, addr: *const u8) -> bool {
        self.virt_to_page(addr).is_some()
            && self
                .page_zone_by_pfn(self.virt_to_phys(addr) as usize >> PAGE_SHIFT)
                .is_some()
    }

    /// `numa_node_id()`: the node of the current CPU.
    #[inline(always)]
    pub fn numa_node_id(&self) -> usize {
        if self.nr_nodes == 1 {
            0
        } else {
            self.cpu_to_node(self.platform.raw_smp_processor_id())
        }
    }

    /// `cpu_to_node`: CPUs are spread over the nodes in equal consecutive runs.
    #[inline(always)]
    pub fn cpu_to_node(&self, cpu: usize) -> usize {
        if cpu >= self.nr_cpus {
            return 0;
        }
        // SAFETY: the map has nr_cpus entries.
        unsafe { *self.cpu_node.add(cpu) as usize }
    }

    // ---- allocation --------------------------------------------------------

    /// `alloc_pages`: 2^order contiguous pages, preferring the local node.
    #[inline]
    #[track_caller]
    pub fn alloc_pages(&self, gfp: Gfp, order: u32) -> Result<NonNull<Page>, AllocError> {
        self.alloc_pages_node(-1, gfp, order)
    }

    /// `alloc_page`.
    #[inline]
    #[track_caller]
    pub fn alloc_page(&self, gfp: Gfp) -> Result<NonNull<Page>, AllocError> {
        self.alloc_pages_node(-1, gfp, 0)
    }

    /// `alloc_pages_node`: prefer node `nid` (`-1`, `NUMA_NO_NODE`: the local node).
    /// A node the machine lacks gets a warning (once, where the kernel has a
    /// `VM_BUG_ON`), then the local node; with `__GFP_THISNODE` it fails.
    #[inline(always)]
    #[track_caller]
    pub fn alloc_pages_node(&self, nid: i32, gfp: Gfp, order: u32) -> Result<NonNull<Page>, AllocError> {
        if order <= PAGE_ALLOC_COSTLY_ORDER && nid == NUMA_NO_NODE {
            if let Some(page) = self.alloc_pages_fast(gfp, order) {
                return Ok(page);
            }
        }
        self.alloc_pages_general(nid, gfp, order)
    }

    /// The fast path: the local node's preferred zone, above its low
    /// watermark, served from this CPU's list. Anything else — another zone,
    /// a busy list, an empty zone — goes to the general path, which starts the
    /// same walk over and does it fully.
    #[inline(always)]
    fn alloc_pages_fast(&self, gfp: Gfp, order: u32) -> Option<NonNull<Page>> {
        // `gfp_zone` folds to a constant for constant flags.
        let Ok(zt) = gfp_zone(gfp, self.highmem) else {
            return None;
        };
        let zidx = zt as usize;
        let mt = ((gfp.bits() & (__GFP_MOVABLE.bits() | __GFP_RECLAIMABLE.bits())) >> 3) as usize;
        if mt >= MIGRATE_PCPTYPES {
            return None;
        }
        // The CPU id is read only where needed: a one-node machine's
        // preferred zone and the hot arrays do without it.
        let zone = if self.nr_nodes == 1 {
            self.preferred_zone[0][zidx]
        } else {
            self.preferred_zone_here(zidx)
        };
        // SAFETY: non-null entries point at this machine's zones.
        let zone = unsafe { zone.as_ref() }?;
        if zone.free_pages.load(Ordering::Relaxed) <= zone.fast_mark[zidx].load(Ordering::Relaxed) as isize {
            return None;
        }
        let cold = gfp.intersects(__GFP_COLD);
        if order == 0 && !cold {
            let page = self.pcp_hot_alloc(zone, mt);
            if !page.is_null() {
                // SAFETY: `page` was just taken off a hot array: a free order-0 page.
                unsafe { self.prep_new_page(page, 0, gfp) };
                // SAFETY: checked non-null.
                return Some(unsafe { NonNull::new_unchecked(page) });
            }
        }
        let cpu = self.platform.raw_smp_processor_id();
        // SAFETY: cpu < nr_cpu_ids by the platform contract.
        let pcp = unsafe { zone.pcp(cpu) };
        let irq = pcp.lock.try_lock_raw(&self.platform)?;
        // SAFETY: we hold this pcp's lock until unlock_raw below.
        let page = unsafe {
            let g = &mut *pcp.lock.data_ptr();
            let page = self.pcp_take(zone, g, order, mt, cold);
            pcp.lock.unlock_raw(&self.platform, irq);
            page
        }?;
        // SAFETY: `page` was just taken off a free list and heads 2^order pages.
        unsafe { self.prep_new_page(page, order, gfp) };
        // SAFETY: pages come from the memmap, never null.
        Some(unsafe { NonNull::new_unchecked(page) })
    }

    /// The preferred zone of index `zidx` of the calling CPU's node, on a
    /// machine of several nodes (out of line: the one-node case is a load).
    #[inline(never)]
    fn preferred_zone_here(&self, zidx: usize) -> *const Zone {
        self.preferred_zone[self.cpu_to_node(self.platform.raw_smp_processor_id())][zidx]
    }

    /// `__alloc_pages`: every request the fast path did not serve.
    #[inline(never)]
    #[track_caller]
    fn alloc_pages_general(&self, nid: i32, gfp: Gfp, order: u32) -> Result<NonNull<Page>, AllocError> {
        if order > MAX_PAGE_ORDER {
            if !gfp.intersects(__GFP_NOWARN) {
                self.warn_once(
                    WARN_ORDER,
                    format_args!("__alloc_pages: order {order} > MAX_PAGE_ORDER ({MAX_PAGE_ORDER})"),
                );
            }
            return Err(AllocError);
        }
        let gfp = current_gfp_context(gfp, self.platform.current_flags());
        let highest_zoneidx = match gfp_zone(gfp, self.highmem) {
            Ok(z) => z,
            Err(_) => {
                self.warn_once(
                    WARN_BAD_ZONE,
                    format_args!(
                        "gfp_zone: invalid zone modifiers in gfp {:#x}({})",
                        gfp.bits(),
                        gfp
                    ),
                );
                return Err(AllocError);
            }
        };
        let preferred_nid = match usize::try_from(nid) {
            Ok(nid) if nid < self.nr_nodes => nid,
            _ if nid == NUMA_NO_NODE => self.numa_node_id(),
            _ => {
                // No such node: the kernel's `VM_BUG_ON` (or, for a node that
                // is only offline, `warn_if_node_offline`). Here a warning,
                // then the local node, or nothing for `__GFP_THISNODE`.
                self.warn_once(
                    WARN_OFFLINE_NODE,
                    format_args!("{gfp} allocation from offline node {nid}"),
                );
                if gfp.intersects(__GFP_THISNODE) {
                    return Err(AllocError);
                }
                self.numa_node_id()
            }
        };
        let ac = AllocContext {
            preferred_nid,
            highest_zoneidx,
            migratetype: gfp_migratetype(gfp),
            thisnode: gfp.intersects(__GFP_THISNODE),
        };
        if let Some(page) = self.get_page_from_freelist(gfp, order, ALLOC_WMARK_LOW, &ac) {
            return Ok(page);
        }
        self.alloc_pages_slowpath(gfp, order, &ac)
    }

    /// `__get_free_pages`: like `alloc_pages`, returning the linear address.
    /// HighMem is never used (the pages would have no address).
    #[inline]
    #[track_caller]
    pub fn __get_free_pages(&self, gfp: Gfp, order: u32) -> Result<NonNull<u8>, AllocError> {
        let page = self.alloc_pages(gfp.without(__GFP_HIGHMEM), order)?;
        // Lowmem zones only, so the page has an address.
        self.page_address(page).ok_or(AllocError)
    }

    /// `__get_free_page`.
    #[inline]
    #[track_caller]
    pub fn __get_free_page(&self, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.__get_free_pages(gfp, 0)
    }

    /// `get_zeroed_page`.
    #[inline]
    #[track_caller]
    pub fn get_zeroed_page(&self, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.__get_free_pages(gfp | __GFP_ZERO, 0)
    }

    /// `alloc_pages_exact`: `size` bytes of contiguous pages; the tail beyond
    /// `PAGE_ALIGN(size)` is freed at once.
    pub fn alloc_pages_exact(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if size == 0 {
            return Err(AllocError);
        }
        let order = get_order(size);
        let gfp = gfp.without(__GFP_COMP | __GFP_HIGHMEM);
        let page = self.alloc_pages(gfp, order)?;
        let addr = self.page_address(page).ok_or(AllocError)?;
        self.split_page(page, order);
        let used = page_align(size) >> PAGE_SHIFT;
        for i in used..(1usize << order) {
            let p = self.map.pfn_to_page(self.page_to_pfn(page) + i);
            // SAFETY: `split_page` made each page an order-0 allocation we own.
            unsafe { self.__free_pages(NonNull::new_unchecked(p), 0) };
        }
        Ok(addr)
    }

    /// `free_pages_exact`.
    ///
    /// # Safety
    /// `addr`/`size` come from `alloc_pages_exact` and are not used afterwards.
    pub unsafe fn free_pages_exact(&self, addr: NonNull<u8>, size: usize) {
        let pages = page_align(size) >> PAGE_SHIFT;
        for i in 0..pages {
            // SAFETY: forwarded from the caller.
            unsafe { self.free_pages(addr.as_ptr() as usize + (i << PAGE_SHIFT), 0) };
        }
    }

    /// The pfn of `page` if it is a descriptor of this memmap: its offset is
    /// a multiple of the descriptor size, 64, and rotating it right by 6
    /// gives its pfn; any other offset rotates its low bits to the top,
    /// beyond every pfn.
    #[inline(always)]
    fn memmap_pfn(&self, page: *const Page) -> Option<usize> {
        const _: () = assert!(core::mem::size_of::<Page>() == 64);
        let pfn = (page as usize)
            .wrapping_sub(self.map.pages as usize)
            .rotate_right(6);
        (pfn < self.map.max_pfn).then_some(pfn)
    }

    /// `split_page`: turn an order-`order` allocation into 2^order order-0
    /// allocations. A page that is not the head of such a live, non-compound
    /// allocation (the kernel's `VM_BUG_ON_PAGE`s) is reported and left
    /// alone.
    pub fn split_page(&self, page: NonNull<Page>, order: u32) {
        let Some(pfn) = self.memmap_pfn(page.as_ptr()) else {
            self.bad_address("split_page", page.as_ptr() as usize, order);
            return;
        };
        // SAFETY: a descriptor of this memmap.
        let p = unsafe { page.as_ref() };
        let bad = if p.ref_count() <= 0 {
            "VM_BUG_ON_PAGE(!page_count(page))"
        } else if p.test(PG_HEAD | PG_TAIL_BIT) {
            "VM_BUG_ON_PAGE(PageCompound(page))"
        } else if p.order as u32 != order {
            "split_page: order differs from the allocation's"
        } else {
            ""
        };
        if !bad.is_empty() {
            // SAFETY: a descriptor of this memmap.
            unsafe { self.bad_page(page.as_ptr(), bad) };
            return;
        }
        for i in 0..(1usize << order) {
            let p = self.map.pfn_to_page(pfn + i);
            // SAFETY: the pages belong to the caller's allocation.
            unsafe {
                (*p).order = 0;
                (*p).refcount.store(1, Ordering::Relaxed);
                (*p).clear(PG_HEAD | PG_TAIL_BIT);
            }
        }
    }

    /// `alloc_pages_bulk` (array mode): fill the `None` slots of `array` with
    /// order-0 pages; returns how many slots are now filled (old and new).
    /// It may fill fewer than all when memory is short, as the kernel's does.
    pub fn alloc_pages_bulk(&self, gfp: Gfp, array: &mut [Option<NonNull<Page>>]) -> usize {
        let mut filled = array.iter().filter(|p| p.is_some()).count();
        let missing = array.len() - filled;
        if missing == 0 {
            return filled;
        }
        if missing == 1 || gfp.intersects(__GFP_ACCOUNT) {
            // One page left, or accounting: the ordinary path.
            return filled + self.bulk_fill_one(gfp, array);
        }
        let gfp = current_gfp_context(gfp, self.platform.current_flags());
        let Ok(highest) = gfp_zone(gfp, self.highmem) else {
            return filled;
        };
        let mt = gfp_migratetype(gfp);
        let nid = self.numa_node_id();
        // Find the first zone that passes the low watermark for the whole batch.
        let mut chosen = None;
        for z in self.zonelist(nid, highest, gfp.intersects(__GFP_THISNODE)) {
            let mark = z.wmark(WMARK_LOW) + missing;
            if zone_watermark_ok(
                z,
                0,
                mark,
                highest,
                ALLOC_WMARK_LOW,
                z.free_pages.load(Ordering::Relaxed),
                None,
            ) {
                chosen = Some(z);
                break;
            }
        }
        let Some(zone) = chosen else {
            // Watermarks fail: fall back to one page through the full path.
            return filled + self.bulk_fill_one(gfp, array);
        };
        let cpu = self.platform.raw_smp_processor_id();
        // SAFETY: cpu < nr_cpu_ids by the platform contract.
        let pcp = unsafe { zone.pcp(cpu) };
        let mut guard = pcp.lock.lock(&self.platform);
        for slot in array.iter_mut() {
            if slot.is_some() {
                continue;
            }
            // SAFETY: we hold this CPU's pcp lock.
            let Some(page) = (unsafe { self.pcp_take(zone, &mut guard, 0, pcp_migratetype(mt), false) })
            else {
                break;
            };
            // SAFETY: the page was just taken off a free list.
            unsafe { self.prep_new_page(page, 0, gfp) };
            *slot = NonNull::new(page);
            filled += 1;
        }
        filled
    }

    /// Fill the first empty slot through the ordinary path; 1 if it worked.
    fn bulk_fill_one(&self, gfp: Gfp, array: &mut [Option<NonNull<Page>>]) -> usize {
        match array.iter_mut().find(|s| s.is_none()) {
            Some(slot) => match self.alloc_pages(gfp, 0) {
                Ok(p) => {
                    *slot = Some(p);
                    1
                }
                Err(_) => 0,
            },
            None => 0,
        }
    }

    /// Zones to try, in zonelist order: the preferred node from `highest`
    /// down, then the other nodes (unless `thisnode`).
    #[inline(always)]
    fn zonelist(&self, nid: usize, highest: ZoneType, thisnode: bool) -> impl Iterator<Item = &Zone> + '_ {
        self.zonelists[nid][highest as usize]
            .zones(thisnode)
            .iter()
            // SAFETY: zonelist entries point at this machine's zones.
            .map(|z| unsafe { &**z })
    }

    /// `get_page_from_freelist`.
    #[inline]
    fn get_page_from_freelist(
        &self,
        gfp: Gfp,
        order: u32,
        alloc_flags: u32,
        ac: &AllocContext,
    ) -> Option<NonNull<Page>> {
        for zone in self.zonelist(ac.preferred_nid, ac.highest_zoneidx, ac.thisnode) {
            if alloc_flags & ALLOC_NO_WATERMARKS == 0 {
                let mark = zone.wmark((alloc_flags & ALLOC_WMARK_MASK) as usize);
                if !self.zone_watermark_fast(zone, order, mark, ac.highest_zoneidx, alloc_flags) {
                    continue;
                }
            }
            if let Some(page) = self.rmqueue(zone, order, gfp, alloc_flags, ac.migratetype) {
                // SAFETY: `page` was just taken off a free list and heads 2^order pages.
                unsafe { self.prep_new_page(page, order, gfp) };
                // SAFETY: rmqueue never returns null.
                return Some(unsafe { NonNull::new_unchecked(page) });
            }
        }
        None
    }

    /// `zone_watermark_fast`: lockless, as the kernel's.
    #[inline(always)]
    fn zone_watermark_fast(
        &self,
        z: &Zone,
        order: u32,
        mark: usize,
        highest: ZoneType,
        alloc_flags: u32,
    ) -> bool {
        let free = z.free_pages.load(Ordering::Relaxed);
        if order == 0 && free > (mark + z.lowmem_reserve[highest as usize].load(Ordering::Relaxed)) as isize {
            return true;
        }
        if !zone_watermark_ok(z, order, mark, highest, alloc_flags, free, None) {
            return false;
        }
        // A block of the requested order or larger must exist (`free_orders`
        // mirrors the free lists; a racy read, like the kernel's list_empty checks).
        order == 0 || z.free_orders.load(Ordering::Relaxed) >> order != 0
    }

    /// `rmqueue`: per-CPU lists for small orders, else the buddy lists.
    #[inline(always)]
    fn rmqueue(
        &self,
        zone: &Zone,
        order: u32,
        gfp: Gfp,
        alloc_flags: u32,
        mt: MigrateType,
    ) -> Option<*mut Page> {
        if order <= PAGE_ALLOC_COSTLY_ORDER {
            let cpu = self.platform.raw_smp_processor_id();
            // SAFETY: cpu < nr_cpu_ids by the platform contract.
            let pcp = unsafe { zone.pcp(cpu) };
            if let Some(mut g) = pcp.lock.try_lock(&self.platform) {
                // SAFETY: we hold this pcp's lock.
                let page = unsafe {
                    self.pcp_take(
                        zone,
                        &mut g,
                        order,
                        pcp_migratetype(mt),
                        gfp.intersects(__GFP_COLD),
                    )
                };
                if page.is_some() {
                    return page;
                }
            }
        }
        self.rmqueue_buddy(zone, order, alloc_flags, mt)
    }

    /// Take a page from a per-CPU list (`mt` below `MIGRATE_PCPTYPES`),
    /// refilling it from the buddy if empty.
    ///
    /// # Safety
    /// `g` is the locked pcp of `zone`.
    #[inline(always)]
    unsafe fn pcp_take(
        &self,
        zone: &Zone,
        g: &mut PcpLists,
        order: u32,
        mt: usize,
        cold: bool,
    ) -> Option<*mut Page> {
        let list = &mut g.lists[order_to_pindex(mt, order)] as *mut ListHead;
        // SAFETY: the list is initialised and we hold its lock.
        let mut l = unsafe {
            if cold {
                (*list).prev
            } else {
                (*list).next
            }
        };
        if ptr::eq(l, list) {
            // SAFETY: lock held.
            unsafe { self.rmqueue_bulk(zone, g, order, MigrateType::from_index(mt), list) };
            // SAFETY: as above.
            l = unsafe {
                if cold {
                    (*list).prev
                } else {
                    (*list).next
                }
            };
            if ptr::eq(l, list) {
                return None;
            }
        }
        // SAFETY: the page is on our locked list.
        unsafe { ListHead::del_entry(l) };
        g.count -= 1 << order;
        g.free_count >>= 1;
        g.pgalloc += 1 << order;
        g.numa_hit += 1;
        Some(lru_to_page(l))
    }

    /// `rmqueue_bulk`: move a batch from the buddy lists onto a pcp list.
    ///
    /// # Safety
    /// `g` is locked; `list` is one of its lists.
    #[cold]
    unsafe fn rmqueue_bulk(
        &self,
        zone: &Zone,
        g: &mut PcpLists,
        order: u32,
        mt: MigrateType,
        list: *mut ListHead,
    ) {
        let count = g.nr_pcp_alloc(order);
        let mut guard = zone.lock.lock(&self.platform);
        let mut b = Buddy {
            free: &mut guard,
            zone,
            map: self.map,
            report: false,
        };
        let mut got = 0;
        for _ in 0..count {
            // SAFETY: zone lock held.
            let Some(page) = (unsafe { b.rmqueue(order, mt) }) else {
                break;
            };
            // SAFETY: the page is ours now; it goes on our locked list.
            unsafe {
                (*page).order = order as u8;
                let f = (*page).flags.load(Ordering::Relaxed);
                (*page).flags.store(f | PG_PCP, Ordering::Relaxed);
                ListHead::add_tail(&mut (*page).lru, list);
            }
            got += 1;
        }
        g.count += got << order;
        g.refills += 1;
    }

    /// Allocate from the buddy lists under the zone lock.
    fn rmqueue_buddy(&self, zone: &Zone, order: u32, alloc_flags: u32, mt: MigrateType) -> Option<*mut Page> {
        let mut guard = zone.lock.lock(&self.platform);
        let mut b = Buddy {
            free: &mut guard,
            zone,
            map: self.map,
            report: false,
        };
        // SAFETY: zone lock held.
        let page = unsafe {
            let mut p = b.rmqueue(order, mt);
            if p.is_none() && alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM) != 0 {
                p = b.rmqueue_smallest(order, MigrateType::HighAtomic);
            }
            p
        };
        if page.is_some() {
            zone.stats.pgalloc.fetch_add(1 << order, Ordering::Relaxed);
            zone.stats.numa_hit.fetch_add(1, Ordering::Relaxed);
        }
        page
    }

    /// `prep_new_page`: make a free block an allocation.
    ///
    /// # Safety
    /// `page` heads 2^order pages just taken off a free list.
    #[inline(always)]
    unsafe fn prep_new_page(&self, page: *mut Page, order: u32, gfp: Gfp) {
        // SAFETY: the block is exclusively ours.
        unsafe {
            // The old flags matter only to zeroing (a reported block reads as zero).
            let zero = gfp.intersects(__GFP_ZERO) || self.init_on_alloc;
            let old = if zero {
                (*page).flags.load(Ordering::Relaxed)
            } else {
                0
            };
            let head = if gfp.intersects(__GFP_COMP) && order > 0 {
                PG_HEAD
            } else {
                0
            };
            (*page).flags.store(head, Ordering::Relaxed);
            // Blocks from the buddy lists carry their order already (buddy and pcp alike).
            debug_assert_eq!((*page).order as u32, order);
            (*page).refcount.store(1, Ordering::Relaxed);
            if zero && old & PG_REPORTED == 0 {
                let pfn = self.map.page_to_pfn(page);
                ptr::write_bytes(self.lowmem_or_direct_address(pfn), 0, PAGE_SIZE << order);
            }
            if head != 0 {
                for i in 1..(1usize << order) {
                    let t = page.add(i);
                    (*t).flags.store(PG_TAIL_BIT, Ordering::Relaxed);
                    (*t).index = page as usize;
                }
            }
        }
    }

    /// The slow path (`__alloc_pages_slowpath`).
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn alloc_pages_slowpath(
        &self,
        gfp: Gfp,
        order: u32,
        ac: &AllocContext,
    ) -> Result<NonNull<Page>, AllocError> {
        let mut can_direct_reclaim = gfp.allows_blocking();
        let costly = order > PAGE_ALLOC_COSTLY_ORDER;
        let nofail = gfp.intersects(__GFP_NOFAIL);
        if nofail {
            if order > 1 {
                self.warn_once(
                    WARN_NOFAIL_ORDER,
                    format_args!("__GFP_NOFAIL with order {order} > 1"),
                );
            }
            if !can_direct_reclaim {
                self.warn_once(
                    WARN_NOFAIL_NOBLOCK,
                    format_args!("__GFP_NOFAIL without __GFP_DIRECT_RECLAIM"),
                );
            }
            if self.platform.current_flags() & PF_MEMALLOC != 0 {
                self.warn_once(
                    WARN_NOFAIL_MEMALLOC,
                    format_args!("__GFP_NOFAIL from a PF_MEMALLOC task"),
                );
            }
        }
        if can_direct_reclaim && self.might_sleep_at(core::panic::Location::caller()) {
            // A sleeping allocation from atomic context: reported (once per
            // call site); it does not sleep — free lists only, then failure.
            can_direct_reclaim = false;
        }
        let mut alloc_flags = gfp_to_alloc_flags(gfp, order);
        if alloc_flags & ALLOC_KSWAPD != 0 {
            self.wakeup_kswapd(ac.preferred_nid);
        }
        if let Some(p) = self.get_page_from_freelist(gfp, order, alloc_flags, ac) {
            return Ok(p);
        }
        let mut no_progress_loops = 0u32;
        // Drain the per-CPU lists after the next failed reclaim attempt (see below).
        let mut drain_next = true;
        let mut oom_waited_ns = 0u64;
        let mut oom_reported = false;
        loop {
            // retry:
            let reserve_flags = self.gfp_pfmemalloc_flags(gfp);
            if reserve_flags != 0 {
                alloc_flags = reserve_flags | (alloc_flags & ALLOC_KSWAPD);
            }
            if let Some(p) = self.get_page_from_freelist(gfp, order, alloc_flags, ac) {
                return Ok(p);
            }
            if !can_direct_reclaim {
                break;
            }
            // Avoid recursion of direct reclaim.
            if self.platform.current_flags() & PF_MEMALLOC != 0 {
                break;
            }
            // Direct reclaim.
            let progress = self.try_to_free_pages(gfp, order, ac.preferred_nid);
            if let Some(p) = self.get_page_from_freelist(gfp, order, alloc_flags, ac) {
                return Ok(p);
            }
            // __alloc_pages_direct_reclaim: the attempt may have failed because
            // the pages reclaim freed are pinned on per-CPU lists, which the
            // watermarks do not count. Drain them once per attempt that made
            // progress, as the kernel does, and also after the first attempt
            // and after an OOM step that freed or waited for memory: the
            // pages the OOM notifiers or other threads freed sit on their
            // CPUs' lists too (the kernel's OOM victim frees in bulk; ours may
            // free a single page, which must reach the waiter).
            if drain_next || progress > 0 {
                drain_next = false;
                self.drain_all_pages();
                if let Some(p) = self.get_page_from_freelist(gfp, order, alloc_flags, ac) {
                    return Ok(p);
                }
            }
            if gfp.intersects(__GFP_NORETRY) {
                break;
            }
            if costly && !gfp.intersects(__GFP_RETRY_MAYFAIL) {
                break;
            }
            // should_reclaim_retry: keep going while reclaim makes progress.
            if progress > 0 && !costly {
                no_progress_loops = 0;
            } else {
                no_progress_loops += 1;
            }
            if progress > 0 && no_progress_loops <= MAX_RECLAIM_RETRIES {
                continue;
            }
            if gfp.intersects(__GFP_RETRY_MAYFAIL) && !nofail {
                break;
            }
            // __alloc_pages_may_oom
            match self.alloc_pages_may_oom(gfp, order, ac, &mut oom_waited_ns, &mut oom_reported) {
                OomOutcome::Page(p) => return Ok(p),
                OomOutcome::Progress => {
                    no_progress_loops = 0;
                    drain_next = true;
                    continue;
                }
                OomOutcome::GiveUp => break,
            }
        }
        // nopage:
        if nofail && can_direct_reclaim {
            // __GFP_NOFAIL: never return failure. Dig into the min reserve, then wait.
            loop {
                let flags = ALLOC_WMARK_MIN | ALLOC_MIN_RESERVE;
                if let Some(p) = self.get_page_from_freelist(gfp, order, flags, ac) {
                    return Ok(p);
                }
                self.try_to_free_pages(gfp, order, ac.preferred_nid);
                self.drain_all_pages();
                if let Some(p) = self.get_page_from_freelist(gfp, order, flags, ac) {
                    return Ok(p);
                }
                self.wait_for_free_memory(TICK_NS);
            }
        }
        self.events.alloc_fail.fetch_add(1, Ordering::Relaxed);
        self.warn_alloc(gfp, format_args!("page allocation failure: order:{order}"));
        Err(AllocError)
    }

    /// `__gfp_pfmemalloc_flags`: reserves for callers that free memory.
    fn gfp_pfmemalloc_flags(&self, gfp: Gfp) -> u32 {
        if gfp.intersects(__GFP_NOMEMALLOC) {
            return 0;
        }
        if gfp.intersects(__GFP_MEMALLOC) {
            return ALLOC_NO_WATERMARKS;
        }
        let pc = self.platform.preempt_count();
        let in_irq = pc & (HARDIRQ_MASK | NMI_MASK) != 0;
        if self.platform.current_flags() & PF_MEMALLOC != 0 && !in_irq {
            return ALLOC_NO_WATERMARKS;
        }
        0
    }

    /// The OOM step: notifiers, then waiting for another thread to free.
    fn alloc_pages_may_oom(
        &self,
        gfp: Gfp,
        order: u32,
        ac: &AllocContext,
        waited_ns: &mut u64,
        reported: &mut bool,
    ) -> OomOutcome {
        // One last try at the high watermark: someone may have freed memory meanwhile.
        if let Some(p) = self.get_page_from_freelist(gfp, order, ALLOC_WMARK_HIGH | ALLOC_CPUSET, ac) {
            return OomOutcome::Page(p);
        }
        let nofail = gfp.intersects(__GFP_NOFAIL);
        // The kernel does not OOM-kill for these; they fail instead.
        if !nofail
            && (order > PAGE_ALLOC_COSTLY_ORDER
                || gfp.intersects(__GFP_RETRY_MAYFAIL)
                || gfp.intersects(__GFP_THISNODE)
                || ac.highest_zoneidx < ZoneType::Normal)
        {
            return OomOutcome::GiveUp;
        }
        let freed = self.call_oom_notifiers();
        if freed > 0 {
            return OomOutcome::Progress;
        }
        if !*reported {
            *reported = true;
            self.events.oom.fetch_add(1, Ordering::Relaxed);
            let mut comm = [0u8; 16];
            let n = self.platform.current_comm(&mut comm);
            let comm = core::str::from_utf8(&comm[..n]).unwrap_or("?");
            crate::pr!(
                self,
                "{} invoked oom-killer: gfp_mask={:#x}({}), order={}, oom_score_adj=0",
                comm,
                gfp.bits(),
                gfp,
                order
            );
            crate::pr!(self, "Out of memory and no killable processes...");
        }
        let budget = self.vm.oom_wait_ms.load(Ordering::Relaxed) * 1_000_000;
        if !nofail && *waited_ns >= budget {
            return OomOutcome::GiveUp;
        }
        *waited_ns += self.wait_for_free_memory(TICK_NS);
        OomOutcome::Progress
    }

    /// `warn_alloc`: an allocation failure report (`what`: "page allocation
    /// failure: order:N", "vmalloc error: ..."), then the stack and the free
    /// memory; nothing under `__GFP_NOWARN`, nor for `__GFP_DMA` on a machine
    /// without a DMA zone, and rate limited.
    #[cold]
    pub(crate) fn warn_alloc(&self, gfp: Gfp, what: core::fmt::Arguments<'_>) {
        if gfp.intersects(__GFP_NOWARN)
            || (gfp.intersects(__GFP_DMA) && self.zones().all(|z| z.zone_type != ZoneType::Dma))
        {
            return;
        }
        if !self.ratelimit_alloc.allow(self.platform.now_ns()) {
            return;
        }
        let mut comm = [0u8; 16];
        let n = self.platform.current_comm(&mut comm);
        let comm = core::str::from_utf8(&comm[..n]).unwrap_or("?");
        crate::pr!(
            self,
            "{}: {}, mode:{:#x}({}), nodemask=(null),cpuset=/,mems_allowed={}",
            comm,
            what,
            gfp.bits(),
            gfp,
            NodeList(self.nr_nodes)
        );
        self.platform.dump_stack();
        self.show_mem();
    }

    /// `show_mem` / `show_free_areas`: per-zone free block summary.
    pub fn show_mem(&self) {
        crate::pr!(self, "Mem-Info:");
        for z in self.zones() {
            crate::pr!(
                self,
                "Node {} {} free:{}kB boost:0kB min:{}kB low:{}kB high:{}kB managed:{}kB present:{}kB",
                z.node,
                z.name(),
                z.nr_free() << 2,
                z.wmark(WMARK_MIN) << 2,
                z.wmark(WMARK_LOW) << 2,
                z.wmark(WMARK_HIGH) << 2,
                z.managed() << 2,
                z.present_pages << 2
            );
        }
        for z in self.zones() {
            let mut line = crate::printk::FixedBuf::<512>::new();
            let _ = write!(line, "Node {} {}: ", z.node, z.name());
            let mut total = 0usize;
            {
                let f = z.lock.lock(&self.platform);
                for o in 0..NR_PAGE_ORDERS {
                    let n = f.free_area[o].nr_free;
                    let _ = write!(line, "{}*{}kB ", n, 4usize << o);
                    total += n * (4usize << o);
                }
            }
            let _ = write!(line, "= {total}kB");
            crate::pr!(self, "{}", line.as_str());
        }
        crate::pr!(self, "{} pages RAM", self.totalram_pages());
        crate::pr!(self, "{} pages reserved", self.reserved_pages);
    }

    /// `might_sleep`: report a sleeping allocation from atomic context.
    pub fn might_sleep(&self) {
        let pc = self.platform.preempt_count();
        if pc != 0 {
            self.warn_once(
                5,
                format_args!(
                    "BUG: sleeping function called from invalid context: in_atomic(): 1, irqs_disabled(): {}, preempt_count: {:#x}",
                    (pc & HARDIRQ_MASK != 0) as u32,
                    pc
                ),
            );
        }
    }

    // ---- freeing ---------------------------------------------------------

    /// `__free_pages`: drop a reference to an allocation of `order`; the last
    /// reference frees it.
    ///
    /// # Safety
    /// `page` came from this machine's allocator with this order (a wrong
    /// order or a double free is detected and reported, but the caller must
    /// not use the memory after the free).
    #[inline]
    pub unsafe fn __free_pages(&self, page: NonNull<Page>, order: u32) {
        // SAFETY: forwarded.
        unsafe { self.free_pages_common(page.as_ptr(), order, false) }
    }

    /// `__free_page`.
    ///
    /// # Safety
    /// As `__free_pages`.
    #[inline]
    pub unsafe fn __free_page(&self, page: NonNull<Page>) {
        // SAFETY: forwarded.
        unsafe { self.free_pages_common(page.as_ptr(), 0, false) }
    }

    /// `free_hot_page`: free an order-0 page to the hot end of the per-CPU list.
    ///
    /// # Safety
    /// As `__free_pages`.
    #[inline]
    pub unsafe fn free_hot_page(&self, page: NonNull<Page>) {
        // SAFETY: forwarded.
        unsafe { self.free_pages_common(page.as_ptr(), 0, false) }
    }

    /// `free_cold_page`: free an order-0 page to the cold end of the per-CPU
    /// list (its cache lines are not expected to be hot).
    ///
    /// # Safety
    /// As `__free_pages`.
    #[inline]
    pub unsafe fn free_cold_page(&self, page: NonNull<Page>) {
        // SAFETY: forwarded.
        unsafe { self.free_pages_common(page.as_ptr(), 0, true) }
    }

    /// `free_pages`: free by linear address; 0 is ignored.
    ///
    /// # Safety
    /// As `__free_pages`.
    #[inline]
    pub unsafe fn free_pages(&self, addr: usize, order: u32) {
        if addr == 0 {
            return;
        }
        // The page holding `addr` (the kernel's `virt_to_page` rounds down).
        if !self.virt_addr_valid(addr as *const u8) {
            self.bad_address("free_pages", addr, order);
            return;
        }
        let Some(page) = self.virt_to_page(addr as *const u8) else {
            return;
        };
        // SAFETY: forwarded.
        unsafe { self.free_pages_common(page.as_ptr(), order, false) }
    }

    /// `free_page`.
    ///
    /// # Safety
    /// As `__free_pages`.
    #[inline]
    pub unsafe fn free_page(&self, addr: usize) {
        // SAFETY: forwarded.
        unsafe { self.free_pages(addr, 0) }
    }

    /// `get_page`: take an extra reference. Something that is not a page
    /// of this machine, or a page nobody holds (the kernel's
    /// `VM_BUG_ON_PAGE`), is reported and gets no reference.
    pub fn get_page(&self, page: NonNull<Page>) {
        if self.memmap_pfn(page.as_ptr()).is_none() {
            self.bad_address("get_page", page.as_ptr() as usize, 0);
            return;
        }
        // SAFETY: a descriptor of this memmap, which lives as long as the machine.
        let p = unsafe { page.as_ref() };
        if p.ref_count() <= 0 {
            // SAFETY: as above.
            unsafe {
                self.bad_page(
                    page.as_ptr(),
                    "VM_BUG_ON_PAGE(page_ref_zero_or_close_to_overflow(page))",
                )
            };
            return;
        }
        p.get_page();
    }

    /// `put_page`: drop a reference; the last one frees the allocation with
    /// the order it was allocated with.
    ///
    /// # Safety
    /// The caller owns the reference it drops.
    pub unsafe fn put_page(&self, page: NonNull<Page>) {
        // SAFETY: the descriptor is live while referenced.
        let p = unsafe { page.as_ref() };
        // Not the last reference: only the count drops. (`__free_pages`
        // would free a non-compound block's tail sub-blocks here; put_page
        // never does.)
        if p.refcount.fetch_sub(1, Ordering::AcqRel) > 1 {
            return;
        }
        // The last reference (or none: the free path reports that). Put it
        // back and let the free path check and free the whole allocation.
        p.refcount.fetch_add(1, Ordering::Relaxed);
        let order = p.order as u32;
        // SAFETY: forwarded.
        unsafe { self.free_pages_common(page.as_ptr(), order, false) }
    }

    /// The free path. The common case — the last reference to a clean block
    /// of a per-CPU order freed with its own order — goes straight to this
    /// CPU's list; everything else to `free_pages_general`.
    #[inline(always)]
    unsafe fn free_pages_common(&self, page: *mut Page, order: u32, cold: bool) {
        let Some(pfn) = self.memmap_pfn(page) else {
            self.bad_address("__free_pages", page as usize, order);
            return;
        };
        // SAFETY: `page` is a descriptor of this memmap (checked above).
        let p = unsafe { &*page };
        let f = p.flags.load(Ordering::Relaxed);
        if order <= PAGE_ALLOC_COSTLY_ORDER
            && f & (PAGE_FLAGS_CHECK_AT_FREE | PG_TAIL_BIT | PG_HEAD) == 0
            && p.mapping == 0
            && p.order as u32 == order
        {
            // The sole reference: nobody else may take one (get_page needs a
            // reference already), so a plain load and store drop it; the
            // per-CPU lock orders our writes before the next owner's.
            let old = p.refcount.load(Ordering::Relaxed);
            if old == 1 {
                p.refcount.store(0, Ordering::Relaxed);
                // SAFETY: the last reference is gone; the block is ours to free.
                if unsafe { self.free_pcp_fast(page, pfn, order, cold) } {
                    return;
                }
                // SAFETY: as above.
                unsafe {
                    (*page).flags.store(0, Ordering::Relaxed);
                    self.free_unref_page(page, pfn, order, cold)
                };
                return;
            }
        }
        // SAFETY: forwarded.
        unsafe { self.free_pages_general(page, order, cold) }
    }

    /// This CPU's list, if its lock is free and the pageblock is an ordinary one.
    ///
    /// # Safety
    /// The block is free and ours; `order` is a per-CPU order.
    #[inline(always)]
    unsafe fn free_pcp_fast(&self, page: *mut Page, pfn: usize, order: u32, cold: bool) -> bool {
        if self.init_on_free {
            // SAFETY: the block is ours until it is on a list.
            unsafe { ptr::write_bytes(self.lowmem_or_direct_address(pfn), 0, PAGE_SIZE << order) };
        }
        let pb = self.map.pageblock(pfn);
        if pb.mt as usize >= MIGRATE_PCPTYPES {
            return false;
        }
        // SAFETY: a pageblock of a pcp type is in a zone (outside every zone
        // pageblocks are Isolate, and only blocks of a zone are retyped).
        let zone = unsafe { &*self.zone_table[pb.zone_id as usize] };
        // SAFETY: the block is free and ours, of this zone.
        if order == 0 && !cold && unsafe { self.pcp_hot_free(zone, pb.mt as usize, page) } {
            return true;
        }
        let cpu = self.platform.raw_smp_processor_id();
        // SAFETY: cpu < nr_cpu_ids.
        let pcp = unsafe { zone.pcp(cpu) };
        let Some(irq) = pcp.lock.try_lock_raw(&self.platform) else {
            return false;
        };
        // SAFETY: we hold the lock until unlock_raw below.
        let g = unsafe { &mut *pcp.lock.data_ptr() };
        if order == 0 && !cold {
            // The hot array was full: its pages go to the list first.
            self.pcp_hot_drain_one(zone, cpu, pb.mt as usize, g, PCP_HOT_PAGES);
        }
        let list = &mut g.lists[order_to_pindex(pb.mt as usize, order)] as *mut ListHead;
        // SAFETY: the block is ours; the list is locked. Its order is already recorded.
        unsafe {
            (*page).flags.store(PG_PCP, Ordering::Relaxed);
            if cold {
                ListHead::add_tail(&mut (*page).lru, list);
            } else {
                ListHead::add(&mut (*page).lru, list);
            }
        }
        g.count += 1 << order;
        g.free_count += 1 << order;
        g.alloc_factor >>= 1;
        g.pgfree += 1 << order;
        if g.count >= g.high {
            self.pcp_spill(zone, g);
        }
        // SAFETY: taken above.
        unsafe { pcp.lock.unlock_raw(&self.platform, irq) };
        true
    }

    /// Everything the fast free path does not handle: compound pages, large
    /// orders, wrong orders, and pages with flags that need checking.
    ///
    /// # Safety
    /// As `__free_pages`.
    #[inline(never)]
    unsafe fn free_pages_general(&self, page: *mut Page, order: u32, cold: bool) {
        // SAFETY: the caller checked `page` is a descriptor of this memmap.
        let p = unsafe { &*page };
        // No block has an order above MAX_PAGE_ORDER: a wrong-order free,
        // reported as one, of the block the page heads.
        let order = if order > MAX_PAGE_ORDER {
            // SAFETY: as above.
            unsafe { self.bad_order(page, order) };
            p.order as u32
        } else {
            order
        };
        let old = p.refcount.fetch_sub(1, Ordering::Release);
        if old != 1 {
            // SAFETY: forwarded.
            unsafe { self.free_pages_referenced(page, order, old, cold) };
            return;
        }
        // SAFETY: we dropped the last reference; the block is ours to free.
        unsafe {
            if !self.free_pages_prepare(page, order) {
                return;
            }
            let order = (*page).order as u32;
            let pfn = self.map.page_to_pfn(page);
            self.free_unref_page(page, pfn, order, cold);
        }
    }

    /// A put that was not the last one (`old` references before it), or a
    /// put of a page nobody referenced.
    ///
    /// # Safety
    /// As `__free_pages`; the reference was already dropped.
    #[cold]
    unsafe fn free_pages_referenced(&self, page: *mut Page, order: u32, old: i32, cold: bool) {
        // SAFETY: the caller checked `page` is a descriptor of this memmap.
        let p = unsafe { &*page };
        if old <= 0 {
            p.refcount.fetch_add(1, Ordering::Relaxed);
            let reason = if p.is_buddy() || p.test(PG_PCP) {
                "page already free (double free)"
            } else if p.test(PG_TAIL_BIT) {
                "freeing a tail page of a compound page"
            } else if p.test(PG_RESERVED) {
                "PAGE_FLAGS_CHECK_AT_FREE flag(s) set: reserved page"
            } else {
                // `put_page_testzero`'s check of a page nobody holds.
                "VM_BUG_ON_PAGE(page_ref_count(page) == 0)"
            };
            // The report shows the count the put left (-1 for a page nobody held, as the kernel's
            // check_new_page would find it); the page keeps the count it had.
            // SAFETY: the descriptor is valid.
            unsafe { self.bad_page_counted(page, reason, old - 1) };
            return;
        }
        // Someone else holds a reference. A non-compound high-order block
        // frees its tail sub-blocks now; the head page goes with the last put.
        if order > 0 && !p.test(PG_HEAD) {
            let pfn = self.map.page_to_pfn(page);
            let mut o = order;
            while o > 0 {
                o -= 1;
                let tail = self.map.pfn_to_page(pfn + (1 << o));
                // SAFETY: the sub-block belongs to the caller's allocation.
                unsafe {
                    (*tail).refcount.store(0, Ordering::Relaxed);
                    (*tail).order = o as u8;
                    (*tail).flags.store(0, Ordering::Relaxed);
                    self.free_unref_page(tail, pfn + (1 << o), o, cold);
                }
            }
            // SAFETY: still the caller's head page.
            unsafe { (*page).order = 0 };
        }
    }

    /// `free_pages_prepare`: check the page before it goes back.
    ///
    /// # Safety
    /// The caller dropped the last reference.
    #[inline(always)]
    unsafe fn free_pages_prepare(&self, page: *mut Page, order: u32) -> bool {
        // SAFETY: caller contract.
        unsafe {
            let f = (*page).flags.load(Ordering::Relaxed);
            if f & (PAGE_FLAGS_CHECK_AT_FREE | PG_TAIL_BIT) != 0 || (*page).mapping != 0 {
                let reason = if f & PG_TAIL_BIT != 0 {
                    "freeing a tail page of a compound page"
                } else if f & PG_RESERVED != 0 {
                    "PAGE_FLAGS_CHECK_AT_FREE flag(s) set: reserved page"
                } else if f & PG_SLAB != 0 {
                    "PAGE_FLAGS_CHECK_AT_FREE flag(s) set: slab page"
                } else if f & (PG_BUDDY | PG_PCP) != 0 {
                    "page already free (double free)"
                } else {
                    "non-NULL mapping"
                };
                self.bad_page(page, reason);
                return false;
            }
            if (*page).order as u32 != order {
                self.bad_order(page, order);
                // Better than the kernel: free what was really allocated.
            }
            let order = (*page).order as u32;
            if f & PG_HEAD != 0 {
                for i in 1..(1usize << order) {
                    let t = page.add(i);
                    (*t).flags.store(0, Ordering::Relaxed);
                    (*t).index = 0;
                }
            }
            (*page).flags.store(0, Ordering::Relaxed);
            true
        }
    }

    /// `free_unref_page`: to the per-CPU list, or the buddy for large orders.
    ///
    /// # Safety
    /// The block is free and ours.
    #[inline(always)]
    unsafe fn free_unref_page(&self, page: *mut Page, pfn: usize, order: u32, cold: bool) {
        if self.init_on_free {
            // SAFETY: the block is ours until it is on a list.
            unsafe { ptr::write_bytes(self.lowmem_or_direct_address(pfn), 0, PAGE_SIZE << order) };
        }
        let pb = self.map.pageblock(pfn);
        let Some(zone) = self.zone_by_id(pb.zone_id) else {
            // SAFETY: descriptor valid.
            unsafe { self.bad_page(page, "page outside any zone") };
            return;
        };
        let mt = MigrateType::from_index(pb.mt as usize);
        if order <= PAGE_ALLOC_COSTLY_ORDER && mt != MigrateType::Isolate {
            let pcp_mt = if (mt as usize) < MIGRATE_PCPTYPES {
                mt
            } else {
                MigrateType::Movable
            };
            let cpu = self.platform.raw_smp_processor_id();
            // SAFETY: cpu < nr_cpu_ids.
            let pcp = unsafe { zone.pcp(cpu) };
            if let Some(mut g) = pcp.lock.try_lock(&self.platform) {
                let list = &mut g.lists[order_to_pindex(pcp_mt as usize, order)] as *mut ListHead;
                // SAFETY: the block is ours; the list is locked.
                unsafe {
                    (*page).order = order as u8;
                    (*page).flags.store(PG_PCP, Ordering::Relaxed);
                    if cold {
                        ListHead::add_tail(&mut (*page).lru, list);
                    } else {
                        ListHead::add(&mut (*page).lru, list);
                    }
                }
                g.count += 1 << order;
                g.free_count += 1 << order;
                g.alloc_factor >>= 1;
                g.pgfree += 1 << order;
                if g.count >= g.high {
                    self.pcp_spill(zone, &mut g);
                }
                return;
            }
        }
        let mut guard = zone.lock.lock(&self.platform);
        let report = self.platform.discard_zeroes();
        let mut b = Buddy {
            free: &mut guard,
            zone,
            map: self.map,
            report,
        };
        // SAFETY: zone lock held; the block is free.
        unsafe { b.free_one_page(page, order, mt, false, false) };
        zone.stats.pgfree.fetch_add(1 << order, Ordering::Relaxed);
        let unreported = guard.unreported;
        drop(guard);
        if unreported >= self.page_reporting_threshold() {
            self.report_free_pages(zone, self.page_reporting_threshold() / 2);
        }
        self.wake_free_waiters();
    }

    /// The list went over `high`: tune it and return a batch to the buddy.
    #[cold]
    fn pcp_spill(&self, zone: &Zone, g: &mut PcpLists) {
        let below_high = zone.nr_free() < zone.wmark(WMARK_HIGH);
        let high = g.nr_pcp_high(below_high);
        if g.count >= high {
            let n = g.nr_pcp_free(high);
            self.free_pcppages_bulk(zone, g, n);
            g.spills += 1;
        }
    }

    /// `free_pcppages_bulk`: return `count` pages from a pcp, coldest first,
    /// taking the lists in turn and emptying each as far as needed before
    /// moving on, as the kernel does.
    fn free_pcppages_bulk(&self, zone: &Zone, g: &mut PcpLists, count: usize) {
        let mut left = count.min(g.count) as isize;
        if left <= 0 {
            return;
        }
        let report = self.platform.discard_zeroes();
        let mut guard = zone.lock.lock(&self.platform);
        let mut b = Buddy {
            free: &mut guard,
            zone,
            map: self.map,
            report,
        };
        let mut pindex = g.drain_pindex;
        while left > 0 {
            // Find the next non-empty list (g.count > 0 guarantees one exists).
            let mut tries = 0;
            let list = loop {
                pindex = if pindex + 1 >= NR_PCP_LISTS { 0 } else { pindex + 1 };
                let list = &mut g.lists[pindex] as *mut ListHead;
                // SAFETY: pcp lock held by the caller.
                if !unsafe { ListHead::is_empty(list) } {
                    break Some(list);
                }
                tries += 1;
                if tries == NR_PCP_LISTS {
                    break None;
                }
            };
            let Some(list) = list else { break };
            let order = pindex_to_order(pindex);
            // SAFETY: pcp lock held.
            while let Some(l) = unsafe { ListHead::last(list) } {
                let page = lru_to_page(l);
                // SAFETY: the page is on our locked list; zone lock held.
                unsafe {
                    ListHead::del(l);
                    let pfn = self.map.page_to_pfn(page);
                    let mt = self.map.pageblock_mt(pfn);
                    b.free_one_page(page, order, mt, false, false);
                }
                g.count -= 1 << order;
                left -= 1 << order;
                if left <= 0 {
                    break;
                }
            }
        }
        g.drain_pindex = pindex;
        g.free_count = g.free_count.saturating_sub(count);
        let unreported = guard.unreported;
        drop(guard);
        if unreported >= self.page_reporting_threshold() {
            self.report_free_pages(zone, self.page_reporting_threshold() / 2);
        }
        self.wake_free_waiters();
    }

    /// Free pages in pageblock-sized blocks a zone collects before it reports
    /// them to the host (punching them out of the RAM memfd): 16 MiB, or
    /// 1/64 of the machine's RAM if that is more (64 MiB of a 4 GiB machine).
    /// The kernel reports 2 s after a pageblock is freed, so memory freed and
    /// allocated again meanwhile is not given back and taken again; kmem has
    /// no timer and batches by amount instead: a program that frees and
    /// allocates tens of MiB in turn reuses the same host pages instead of
    /// faulting in zeroed ones each time, at the price of at most that much
    /// free memory kept resident. A report keeps the half of the threshold
    /// that was freed last resident (`Buddy::report_free_pages`), so the
    /// next allocations still find host pages.
    pub fn page_reporting_threshold(&self) -> usize {
        (self.totalram_pages() >> 6).max(PAGE_REPORTING_THRESHOLD)
    }

    /// `drain_all_pages`: empty every CPU's lists back into the buddy.
    pub fn drain_all_pages(&self) {
        self.events.drain_all.fetch_add(1, Ordering::Relaxed);
        let mut moved = 0;
        for zone in self.zones() {
            for cpu in 0..self.nr_cpus {
                // SAFETY: cpu < nr_cpus.
                let pcp = unsafe { zone.pcp(cpu) };
                let mut g = pcp.lock.lock(&self.platform);
                self.pcp_hot_drain(zone, cpu, &mut g);
                let n = g.count;
                if n > 0 {
                    self.free_pcppages_bulk(zone, &mut g, n);
                    moved += n;
                }
            }
        }
        // Only a drain that moved pages is news to waiters: allocations in the
        // OOM step drain after every wait, and waking each other for nothing
        // would keep them spinning.
        if moved > 0 {
            self.wake_free_waiters();
        }
    }

    /// Free a block straight into the buddy (boot hand-over, and helpers):
    /// `__free_pages_core`, whose blocks go to their lists' tails
    /// (`FPI_TO_TAIL`). `zeroed`: the block reads as zero and the host does
    /// not back it (RAM the boot never wrote), so it is listed as reported
    /// (`PG_reported`), as the untouched blocks are (`zone.rs`): no report
    /// discards it, and `__GFP_ZERO` does not clear it.
    ///
    /// # Safety
    /// The block is free RAM of `zone` that nobody uses, and reads as zero
    /// if `zeroed`.
    pub(crate) unsafe fn free_one_page_locked(
        &self,
        zone: &Zone,
        page: *mut Page,
        pfn: usize,
        order: u32,
        boot: bool,
        zeroed: bool,
    ) {
        let mt = self.map.pageblock_mt(pfn);
        let mut guard = zone.lock.lock(&self.platform);
        let mut b = Buddy {
            free: &mut guard,
            zone,
            map: self.map,
            report: !boot && self.platform.discard_zeroes(),
        };
        // A free like any other for `pgfree` (the kernel's `__free_pages_ok`
        // counts the boot hand-over too).
        zone.stats.pgfree.fetch_add(1 << order, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe {
            (*page).refcount.store(0, Ordering::Relaxed);
            (*page).flags.store(0, Ordering::Relaxed);
            b.free_one_page(page, order, mt, zeroed, true)
        };
    }

    /// Give free pageblocks of every zone back to the host.
    pub fn report_all_free_pages(&self) {
        if !self.platform.discard_zeroes() {
            return;
        }
        for z in self.zones() {
            self.report_free_pages(z, 0);
        }
    }

    /// At boot: give the untouched max-order blocks (`zone.rs`) back to the
    /// host, as `report_all_free_pages` does with the listed ones, so they
    /// read as zero whatever memblock did there before; they are then listed
    /// `PG_reported` when first needed. With `fresh` (RAM that started
    /// zeroed, where memblock never wrote: `Kmem::mem_init`) they already
    /// read as zero and hold no host memory, and are only counted (on a
    /// fresh 4 GiB machine, three `madvise` calls over 4 GiB less: the
    /// largest part of the boot's system time after its page faults).
    pub(crate) fn report_untouched_blocks(&self, fresh: bool) {
        let zeroes = self.platform.discard_zeroes();
        for zone in self.zones() {
            let mut f = zone.lock.lock(&self.platform);
            f.set_untouched_zeroed(zeroes);
            if !zeroes {
                continue;
            }
            let mut pages = 0;
            for (start, end) in f.untouched_ranges() {
                if !fresh {
                    self.platform
                        .discard_ram((start << PAGE_SHIFT) as u64, ((end - start) << PAGE_SHIFT) as u64);
                }
                pages += end - start;
            }
            zone.stats.reported.fetch_add(pages, Ordering::Relaxed);
            self.events.pages_reported.fetch_add(pages, Ordering::Relaxed);
        }
    }

    /// Free page reporting for one zone, keeping the hottest `keep` free pages resident.
    fn report_free_pages(&self, zone: &Zone, keep: usize) {
        let mut guard = zone.lock.lock(&self.platform);
        let mut b = Buddy {
            free: &mut guard,
            zone,
            map: self.map,
            report: true,
        };
        let discard = |pfn: usize, pages: usize| {
            self.platform
                .discard_ram((pfn << PAGE_SHIFT) as u64, (pages << PAGE_SHIFT) as u64);
        };
        // SAFETY: zone lock held.
        let n = unsafe { b.report_free_pages(&discard, keep) };
        self.events.pages_reported.fetch_add(n, Ordering::Relaxed);
    }

    /// `bad_page`: report a misused page. The page is left alone.
    ///
    /// # Safety
    /// `page` is a descriptor of this memmap.
    #[cold]
    pub(crate) unsafe fn bad_page(&self, page: *mut Page, reason: &str) {
        // SAFETY: caller contract.
        let refcount = unsafe { (*page).ref_count() };
        // SAFETY: forwarded.
        unsafe { self.bad_page_counted(page, reason, refcount) }
    }

    /// `bad_page` for a free with the wrong `order`.
    ///
    /// # Safety
    /// As `bad_page`.
    #[cold]
    unsafe fn bad_order(&self, page: *mut Page, order: u32) {
        let mut msg = crate::printk::FixedBuf::<96>::new();
        // SAFETY: caller contract.
        let real = unsafe { (*page).order };
        let _ = write!(msg, "freed with order {order} but allocated with order {real}");
        // SAFETY: forwarded.
        unsafe { self.bad_page(page, msg.as_str()) };
    }

    /// `bad_page` showing `refcount` as the page's count.
    ///
    /// # Safety
    /// As `bad_page`.
    #[cold]
    unsafe fn bad_page_counted(&self, page: *mut Page, reason: &str, refcount: i32) {
        self.events.bad_pages.fetch_add(1, Ordering::Relaxed);
        self.tainted_bad_page.store(true, Ordering::Relaxed);
        if !self.ratelimit_bad_page.allow(self.platform.now_ns()) {
            return;
        }
        let mut comm = [0u8; 16];
        let n = self.platform.current_comm(&mut comm);
        let comm = core::str::from_utf8(&comm[..n]).unwrap_or("?");
        let pfn = self.map.page_to_pfn(page);
        // SAFETY: caller contract.
        let p = unsafe { &*page };
        crate::pr!(self, "BUG: Bad page state in process {}  pfn:{:05x}", comm, pfn);
        crate::pr!(
            self,
            "page: refcount:{} mapcount:0 mapping:{:016x} index:{:#x} pfn:{:#x}",
            refcount,
            p.mapping,
            p.index,
            pfn
        );
        crate::pr!(
            self,
            "flags: {:#x}(order:{})",
            p.flags.load(Ordering::Relaxed),
            p.order
        );
        crate::pr!(self, "page dumped because: {}", reason);
        self.platform.dump_stack();
        crate::pr!(self, "Disabling lock debugging due to kernel taint");
    }

    /// A free of something that is not a page of this machine.
    #[cold]
    fn bad_address(&self, func: &str, addr: usize, order: u32) {
        self.events.bad_pages.fetch_add(1, Ordering::Relaxed);
        if !self.ratelimit_bad_page.allow(self.platform.now_ns()) {
            return;
        }
        crate::pr!(
            self,
            "BUG: Bad page state: {}() of {:#x} (order {}): not a page of this machine",
            func,
            addr,
            order
        );
        self.platform.dump_stack();
    }

    /// Whether the machine has handed memory to the buddy allocator.
    pub fn buddy_ready(&self) -> bool {
        self.state() == MachineState::Running
    }

    /// Pages currently allocated (managed - free - on pcp lists).
    pub fn nr_allocated_pages(&self) -> usize {
        self.totalram_pages() - self.nr_free_pages() - self.nr_pcp_pages()
    }

    #[allow(dead_code)]
    fn swap_cluster_max(&self) -> usize {
        SWAP_CLUSTER_MAX
    }
}

/// The per-CPU list a migrate type uses: HighAtomic (and Isolate) pages go
/// on the Movable lists, as in the kernel.
#[inline(always)]
fn pcp_migratetype(mt: MigrateType) -> usize {
    if (mt as usize) < MIGRATE_PCPTYPES {
        mt as usize
    } else {
        MigrateType::Movable as usize
    }
}

/// Tail page of a compound page: `index` points at the head.
pub const PG_TAIL_BIT: u32 = 1 << 15;

/// Pages freed into pageblock-sized blocks before they are reported to the
/// host: at least this many, and at least 1/64 of the machine's RAM
/// ([`Kmem::page_reporting_threshold`]).
pub const PAGE_REPORTING_THRESHOLD: usize = 16 << (20 - PAGE_SHIFT);

enum OomOutcome {
    Page(NonNull<Page>),
    Progress,
    GiveUp,
}
