//! `struct page`: one descriptor per page frame (the memmap).
//!
//! The memmap is an array of `Page`, one per physical page frame from pfn 0 to
//! the highest RAM pfn, allocated from memblock at boot exactly as the kernel's
//! FLATMEM memmap is. `pfn_to_page` and `page_to_pfn` are pointer arithmetic on
//! it, `page_address` adds the linear map's offset.
//!
//! A descriptor that was never written is all zeroes, and zero means "not
//! free, not allocated, not in use": the hosted home maps the memmap from
//! sparse memory, so descriptors of RAM nobody touched cost no host memory.
//! The zone and node of a page are not stored in it but derived from its pfn
//! through the per-pageblock table (`PageblockInfo`), which also holds the
//! pageblock's migrate type as the kernel's pageblock bitmap does.
//!
//! Field use by state:
//! * free in the buddy (`PG_buddy`): `order` is the block's order, `lru` links
//!   it into `free_area[order].free_list[mt]`, `mt` says which list.
//! * on a per-CPU list (`PG_pcp`): `order` and `lru` as above.
//! * allocated: `refcount` ≥ 1, `order` is the allocation order (head page),
//!   `lru`, `private`, `mapping`, `index`, `counters` belong to the owner
//!   (slab overlays its own fields on them).

use crate::list::ListHead;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Page size (`PAGE_SIZE`).
pub const PAGE_SIZE: usize = 4096;
/// log2 of `PAGE_SIZE`.
pub const PAGE_SHIFT: u32 = 12;
/// `PAGE_MASK`.
pub const PAGE_MASK: usize = !(PAGE_SIZE - 1);
/// Largest order the buddy allocator hands out (`MAX_PAGE_ORDER`, 4 MiB blocks).
pub const MAX_PAGE_ORDER: u32 = 10;
/// Number of orders (`NR_PAGE_ORDERS`).
pub const NR_PAGE_ORDERS: usize = MAX_PAGE_ORDER as usize + 1;
/// Orders above this are "costly" (`PAGE_ALLOC_COSTLY_ORDER`).
pub const PAGE_ALLOC_COSTLY_ORDER: u32 = 3;
/// Order of a pageblock (2 MiB), the unit of migrate-type grouping.
pub const PAGEBLOCK_ORDER: u32 = 9;
/// Pages per pageblock.
pub const PAGEBLOCK_NR_PAGES: usize = 1 << PAGEBLOCK_ORDER;

/// Page flag bits (`enum pageflags`, the subset the allocator uses).
pub mod flags {
    /// Reserved: never handed to the buddy allocator (firmware, kernel image, memmap).
    pub const PG_RESERVED: u32 = 1 << 0;
    /// Free, heading a block on a buddy free list (`PageBuddy`).
    pub const PG_BUDDY: u32 = 1 << 1;
    /// Free, on a per-CPU page list.
    pub const PG_PCP: u32 = 1 << 2;
    /// Used by the slab allocator (`PageSlab`).
    pub const PG_SLAB: u32 = 1 << 3;
    /// Head of a compound page (`__GFP_COMP`).
    pub const PG_HEAD: u32 = 1 << 4;
    /// Large kmalloc allocation (`PageLargeKmalloc`).
    pub const PG_LARGE_KMALLOC: u32 = 1 << 5;
    /// Discarded to the host while free: reads as zero (free page reporting).
    pub const PG_REPORTED: u32 = 1 << 6;
    /// Backs a vmalloc area.
    pub const PG_VMALLOC: u32 = 1 << 7;
    /// Owned by an upper layer that uses `private`.
    pub const PG_PRIVATE: u32 = 1 << 8;
    /// The page has been mapped by `kmap` (HighMem).
    pub const PG_KMAPPED: u32 = 1 << 9;
    /// Flags that must be clear when a page is freed (`PAGE_FLAGS_CHECK_AT_FREE`).
    pub const PAGE_FLAGS_CHECK_AT_FREE: u32 = PG_RESERVED | PG_BUDDY | PG_PCP | PG_SLAB;
}

/// A page frame descriptor (`struct page`), 64 bytes as in the kernel.
#[repr(C, align(64))]
pub struct Page {
    /// `PG_*` bits; atomic because upper layers set their own bits concurrently.
    pub flags: AtomicU32,
    /// `_refcount`: 0 when free, 1 for a fresh allocation.
    pub refcount: AtomicI32,
    /// List links: buddy/pcp free lists, or the owner's lists.
    pub lru: ListHead,
    /// Owner's private word (`page->private`). Every page of a slab holds
    /// the slab's first object there (SLAB's `s_mem`; `kfree` checks pointers
    /// against it), or 0 for a cache `kfree` checks out of line.
    pub private: usize,
    /// Order of the free block or of the allocation this page heads.
    pub order: u8,
    /// Free-list migrate type while the page sits on a free list.
    pub mt: u8,
    /// Spare bytes for upper layers (slab uses them for its counters).
    pub spare: [u8; 6],
    /// Owner's pointer (`page->mapping`; `slab->slab_cache` for slab pages).
    pub mapping: usize,
    /// Owner's index (`page->index`; `slab->freelist` for slab pages).
    pub index: usize,
    /// Owner's counters (`slab->counters` for slab pages).
    pub counters: usize,
}

const _: () = assert!(core::mem::size_of::<Page>() == 64);

impl Page {
    /// Test a flag bit.
    #[inline(always)]
    pub fn test(&self, bit: u32) -> bool {
        self.flags.load(Ordering::Relaxed) & bit != 0
    }
    /// Set flag bits.
    #[inline(always)]
    pub fn set(&self, bits: u32) {
        self.flags.fetch_or(bits, Ordering::Relaxed);
    }
    /// Clear flag bits.
    #[inline(always)]
    pub fn clear(&self, bits: u32) {
        self.flags.fetch_and(!bits, Ordering::Relaxed);
    }
    /// `PageBuddy`.
    #[inline(always)]
    pub fn is_buddy(&self) -> bool {
        self.test(flags::PG_BUDDY)
    }
    /// `PageReserved`.
    #[inline(always)]
    pub fn is_reserved(&self) -> bool {
        self.test(flags::PG_RESERVED)
    }
    /// `PageSlab`.
    #[inline(always)]
    pub fn is_slab(&self) -> bool {
        self.test(flags::PG_SLAB)
    }
    /// `page_ref_count`.
    #[inline(always)]
    pub fn ref_count(&self) -> i32 {
        self.refcount.load(Ordering::Relaxed)
    }
    /// `get_page`: take an extra reference.
    #[inline(always)]
    pub fn get_page(&self) {
        self.refcount.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-pageblock information: which zone the 2 MiB block belongs to and the
/// migrate type its pages are grouped under (`pageblock_flags`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct PageblockInfo {
    /// `node * MAX_NR_ZONES + zone`, or `NO_ZONE` for holes.
    pub zone_id: u8,
    /// The pageblock's migrate type.
    pub mt: u8,
}

/// `zone_id` of a pageblock that holds no zone's memory.
pub const NO_ZONE: u8 = 0xff;

/// `get_order()`: the order of the smallest block that holds `size` bytes.
///
/// `get_order(0)` is undefined in the kernel; like the kernel's arithmetic it
/// gives the order for the whole address space (`BITS_PER_LONG - PAGE_SHIFT`).
#[inline]
pub const fn get_order(size: usize) -> u32 {
    if size == 0 {
        return usize::BITS - PAGE_SHIFT;
    }
    let pages = (size - 1) >> PAGE_SHIFT;
    if pages == 0 {
        0
    } else {
        usize::BITS - pages.leading_zeros()
    }
}

/// `PAGE_ALIGN`.
#[inline(always)]
pub const fn page_align(x: usize) -> usize {
    (x + PAGE_SIZE - 1) & PAGE_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_order_matches_the_kernel() {
        assert_eq!(get_order(1), 0);
        assert_eq!(get_order(4096), 0);
        assert_eq!(get_order(4097), 1);
        assert_eq!(get_order(8192), 1);
        assert_eq!(get_order(8193), 2);
        assert_eq!(get_order(4 << 20), 10);
        assert_eq!(get_order((4 << 20) + 1), 11);
        assert_eq!(get_order(0), 52);
    }
}
