//! kmalloc: general-purpose allocations from size-class caches
//! (`include/linux/slab.h`, `mm/slab_common.c`).
//!
//! Sizes up to 8 KiB come from the `kmalloc-N` caches (8, 16, 32, 64, 96,
//! 128, 192, 256, 512, 1k, 2k, 4k, 8k); `GFP_DMA` requests from the
//! `dma-kmalloc-N` copies and `__GFP_RECLAIMABLE` ones from `kmalloc-rcl-N`.
//! Larger requests go to the page allocator as compound pages, so `kfree`
//! knows the order from the page; above 4 MiB they fail.

use crate::gfp::*;
use crate::machine::Kmem;
use crate::platform::Platform;
use crate::slab::*;
use core::sync::atomic::Ordering;

/// Largest kmalloc slab size is 2^13.
pub const KMALLOC_SHIFT_HIGH: usize = 13;
/// Smallest kmalloc size is 2^3.
pub const KMALLOC_SHIFT_LOW: usize = 3;
/// Largest size served by a kmalloc cache.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 1 << KMALLOC_SHIFT_HIGH;
/// Kinds of kmalloc caches: normal, reclaimable, DMA.
pub const NR_KMALLOC_TYPES: usize = 3;
/// `KMALLOC_NORMAL`.
pub const KMALLOC_NORMAL: usize = 0;
/// `KMALLOC_RECLAIM`.
pub const KMALLOC_RECLAIM: usize = 1;
/// `KMALLOC_DMA`.
pub const KMALLOC_DMA: usize = 2;
/// `ZERO_SIZE_PTR`: what `kmalloc(0)` returns.
pub const ZERO_SIZE_PTR: *mut u8 = 16 as *mut u8;

/// `kmalloc_info[]`: (name suffix, size) of each index; index 1 is 96 and 2 is 192.
pub const KMALLOC_INFO: [(&str, usize); KMALLOC_SHIFT_HIGH + 1] = [
    ("", 0),
    ("96", 96),
    ("192", 192),
    ("8", 8),
    ("16", 16),
    ("32", 32),
    ("64", 64),
    ("128", 128),
    ("256", 256),
    ("512", 512),
    ("1k", 1024),
    ("2k", 2048),
    ("4k", 4096),
    ("8k", 8192),
];

/// `kmalloc_size_index[(size - 1) / 8]` for sizes up to 192.
const SIZE_INDEX: [u8; 24] = [
    3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2,
];

/// `kmalloc_index`: the cache index of a size (0 for size 0).
#[inline(always)]
pub const fn kmalloc_index(size: usize) -> usize {
    if size == 0 {
        0
    } else if size <= 192 {
        SIZE_INDEX[(size - 1) / 8] as usize
    } else {
        (usize::BITS - (size - 1).leading_zeros()) as usize
    }
}

/// `kmalloc_type`.
#[inline(always)]
pub const fn kmalloc_type(gfp: Gfp) -> usize {
    if gfp.bits() & (__GFP_DMA.bits() | __GFP_RECLAIMABLE.bits()) == 0 {
        KMALLOC_NORMAL
    } else if gfp.bits() & __GFP_DMA.bits() != 0 {
        KMALLOC_DMA
    } else {
        KMALLOC_RECLAIM
    }
}

impl<P: Platform> Kmem<P> {
    /// `create_kmalloc_caches`.
    pub(crate) fn create_kmalloc_caches(&self) {
        for ty in 0..NR_KMALLOC_TYPES {
            for (idx, &(suffix, size)) in KMALLOC_INFO.iter().enumerate() {
                if size == 0 {
                    continue;
                }
                let mut name = crate::printk::FixedBuf::<32>::new();
                let (prefix, flags) = match ty {
                    KMALLOC_NORMAL => ("kmalloc-", SlabFlags(0)),
                    KMALLOC_RECLAIM => ("kmalloc-rcl-", SLAB_RECLAIM_ACCOUNT),
                    _ => ("dma-kmalloc-", SLAB_CACHE_DMA),
                };
                let _ = core::fmt::Write::write_fmt(&mut name, format_args!("{prefix}{suffix}"));
                let align = if size.is_power_of_two() {
                    size.min(crate::page::PAGE_SIZE)
                } else {
                    8
                };
                if let Some(s) = self.kmem_cache_create(
                    name.as_str(),
                    size,
                    align,
                    flags | SLAB_KMALLOC | SLAB_NO_MERGE,
                    None,
                ) {
                    // SAFETY: just created.
                    unsafe { (*s.as_ptr()).refcount.store(-1, Ordering::Relaxed) };
                    self.slab.kmalloc[ty][idx].store(s.as_ptr(), Ordering::Release);
                }
            }
        }
    }

    /// The kmalloc cache for a size and flags, if any (`kmalloc_slab`).
    #[inline(always)]
    pub fn kmalloc_slab(&self, size: usize, gfp: Gfp) -> Option<core::ptr::NonNull<KmemCache>> {
        if size > KMALLOC_MAX_CACHE_SIZE {
            return None;
        }
        core::ptr::NonNull::new(
            self.slab.kmalloc[kmalloc_type(gfp)][kmalloc_index(size)].load(Ordering::Relaxed),
        )
    }
}
