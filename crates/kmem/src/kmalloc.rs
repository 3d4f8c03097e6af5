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
use crate::page::{flags::*, get_order, Page, PAGE_SHIFT, PAGE_SIZE};
use crate::platform::Platform;
use crate::slab::*;
use crate::AllocError;
use core::ptr::{self, NonNull};
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

/// Why [`Kmem::kfree_fast`] declined a pointer: what [`Kmem::kfree_finish`]
/// does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KfreeDeclined {
    /// Not an object start of a non-debug slab cache that the fast path can
    /// tell: a large kmalloc, a debug cache, a bad pointer: the exact checks.
    Checks,
    /// An object of this cache that is already the newest on this CPU's
    /// freelist or sheaf: the naive double-free check.
    DoubleFree(NonNull<KmemCache>),
    /// An object of this cache that neither the cpu slab nor the sheaf
    /// took (or the platform has no sequences): the slab free paths.
    Slab(NonNull<KmemCache>),
}

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
    /// `create_kmalloc_caches`: every size class of every type, or an
    /// error naming the first that could not be created (the kernel panics
    /// with "Out of memory when creating slab"; kmem fails the boot). A
    /// booted machine thus has all of them, and `kmalloc` tests none;
    /// except that with `kmem.kmalloc_lazy` the `dma-kmalloc-N` and
    /// `kmalloc-rcl-N` caches are made on their first use
    /// ([`Kmem::kmalloc_cache_lazy`]).
    pub(crate) fn create_kmalloc_caches(&self) -> Result<(), crate::machine::BootError> {
        let types = if self.params.kmem_kmalloc_lazy == Some(true) {
            1
        } else {
            NR_KMALLOC_TYPES
        };
        for ty in 0..types {
            for (idx, &(_, size)) in KMALLOC_INFO.iter().enumerate() {
                if size == 0 {
                    continue;
                }
                let Some(s) = self.create_kmalloc_cache(ty, idx, GFP_KERNEL) else {
                    return Err(crate::machine::BootError::OutOfBootMemory("the kmalloc caches"));
                };
                self.slab.kmalloc[ty][idx].store(s.as_ptr(), Ordering::Release);
            }
        }
        Ok(())
    }

    /// `new_kmalloc_cache`: create the kmalloc cache of type `ty` and index
    /// `idx` (not yet published), its `struct kmem_cache` allocated with
    /// `gfp`; None (and the kernel's message) if there is no memory for it.
    fn create_kmalloc_cache(&self, ty: usize, idx: usize, gfp: Gfp) -> Option<NonNull<KmemCache>> {
        let (suffix, size) = KMALLOC_INFO[idx];
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
        let args = KmemCacheArgs {
            align,
            ..Default::default()
        };
        let flags = flags | SLAB_KMALLOC | SLAB_NO_MERGE;
        let Ok(s) = self.try_cache_create(name.as_str(), size, &args, flags, gfp) else {
            crate::pr!(self, "Out of memory when creating slab {}", name.as_str());
            return None;
        };
        // SAFETY: just created; kmalloc caches are never destroyed.
        unsafe { (*s.as_ptr()).refcount.store(-1, Ordering::Relaxed) };
        Some(s)
    }

    /// The kmalloc cache of type `ty` and index `idx` when its slot was
    /// empty: with `kmem.kmalloc_lazy`, a `dma-kmalloc-N` or
    /// `kmalloc-rcl-N` cache is created by the first allocation that needs
    /// it, as SLUB created its DMA caches until Linux 2.6.36
    /// (`dma_kmalloc_cache`), with the caller's `gfp` (so an atomic
    /// caller does not sleep). One caller creates it, marking the slot
    /// [`LAZY_CREATING`]; the others wait for the slot to be published.
    /// None if the cache could not be created (no memory: the allocation
    /// fails, and a later one tries again).
    #[cold]
    #[inline(never)]
    fn kmalloc_cache_lazy(&self, ty: usize, idx: usize, gfp: Gfp) -> Option<NonNull<KmemCache>> {
        let slot = &self.slab.kmalloc[ty][idx];
        loop {
            let s = slot.load(Ordering::Acquire);
            if s == LAZY_CREATING {
                self.platform.cpu_relax();
                continue;
            }
            // Only the other types' caches are lazy; index 0 (size 0) has none.
            let lazy = self.params.kmem_kmalloc_lazy == Some(true) && ty != KMALLOC_NORMAL && idx != 0;
            if !s.is_null() || !lazy {
                return NonNull::new(s);
            }
            if slot
                .compare_exchange(s, LAZY_CREATING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // The caller's reclaim and warning modifiers, not its zone.
                let gfp = if gfp.allows_blocking() {
                    GFP_KERNEL
                } else {
                    GFP_ATOMIC
                } | (gfp & __GFP_NOWARN);
                let made = self.create_kmalloc_cache(ty, idx, gfp);
                slot.store(made.map_or(ptr::null_mut(), NonNull::as_ptr), Ordering::Release);
                return made;
            }
        }
    }

    /// The kmalloc cache for a size and flags, if any (`kmalloc_slab`):
    /// None above `KMALLOC_MAX_CACHE_SIZE`, or if a lazily created cache
    /// could not be made.
    #[inline(always)]
    pub fn kmalloc_slab(&self, size: usize, gfp: Gfp) -> Option<core::ptr::NonNull<KmemCache>> {
        if size > KMALLOC_MAX_CACHE_SIZE {
            return None;
        }
        let (ty, idx) = (kmalloc_type(gfp), kmalloc_index(size));
        let s = self.slab.kmalloc[ty][idx].load(Ordering::Acquire);
        if lazy_slot_empty(s) {
            return self.kmalloc_cache_lazy(ty, idx, gfp);
        }
        // SAFETY: checked above.
        Some(unsafe { NonNull::new_unchecked(s) })
    }
}

/// What a lazily created kmalloc cache's slot holds while one caller
/// creates the cache: a dangling address below any cache's (never
/// dereferenced).
const LAZY_CREATING: *mut KmemCache = ptr::dangling_mut();

/// Whether a kmalloc slot holds no cache yet (empty, or being created).
#[inline(always)]
fn lazy_slot_empty(s: *mut KmemCache) -> bool {
    (s as usize) <= LAZY_CREATING as usize
}

/// `ARCH_KMALLOC_MINALIGN`: every kmalloc address is aligned at least this much.
pub const ARCH_KMALLOC_MINALIGN: usize = 8;
/// `KMALLOC_MAX_SIZE`: the largest kmalloc (4 MiB, an order-10 compound page).
pub const KMALLOC_MAX_SIZE: usize = crate::slab::KMALLOC_MAX_SIZE;
/// `KMALLOC_MAX_ORDER`: the order of a `KMALLOC_MAX_SIZE` allocation.
pub const KMALLOC_MAX_ORDER: u32 = crate::page::MAX_PAGE_ORDER;

/// `ZERO_OR_NULL_PTR(x)`: NULL or `ZERO_SIZE_PTR` (anything at or below 16).
#[inline(always)]
pub fn zero_or_null_ptr(p: *const u8) -> bool {
    (p as usize) <= ZERO_SIZE_PTR as usize
}

/// `ZERO_SIZE_PTR` as the `NonNull` that `kmalloc(0)` returns. Never dereference it.
#[inline(always)]
pub const fn zero_size_ptr() -> NonNull<u8> {
    // SAFETY: 16 is not null.
    unsafe { NonNull::new_unchecked(ZERO_SIZE_PTR) }
}

/// The object size of kmalloc cache index `index` (`kmalloc_info[index].size`).
#[inline(always)]
pub const fn kmalloc_size(index: usize) -> usize {
    KMALLOC_INFO[index].1
}

/// `kmalloc_size_roundup`: the size kmalloc really hands out for a request
/// of `size` bytes: the size class up to 8 KiB, whole pages (a power of two
/// of them) up to `KMALLOC_MAX_SIZE`; 0 stays 0 and larger sizes (which
/// kmalloc refuses) are returned unchanged.
#[inline(always)]
pub const fn kmalloc_size_roundup(size: usize) -> usize {
    if size == 0 || size > KMALLOC_MAX_SIZE {
        size
    } else if size <= KMALLOC_MAX_CACHE_SIZE {
        kmalloc_size(kmalloc_index(size))
    } else {
        PAGE_SIZE << get_order(size)
    }
}

/// `slab_ksize`: how many bytes of an object of `s` a caller may use.
///
/// Debug caches (red zones, poisoning) give exactly the object size, so the
/// checks stay meaningful; caches that keep metadata after the object (a
/// free pointer that cannot overlay the object — constructors,
/// `SLAB_TYPESAFE_BY_RCU`, poisoning — or `SLAB_STORE_USER` tracks) give
/// `inuse`; everything else gives the whole stride including padding.
#[inline(always)]
pub fn slab_ksize(s: &KmemCache) -> usize {
    if s.flags.intersects(SLAB_RED_ZONE | SLAB_POISON | SLAB_KASAN) {
        s.object_size
    } else if s.flags.intersects(SLAB_TYPESAFE_BY_RCU | SLAB_STORE_USER) || s.offset >= s.inuse {
        s.inuse
    } else {
        s.size
    }
}

/// `check_mul_overflow` for the array allocators.
#[inline(always)]
fn array_size(n: usize, size: usize) -> Result<usize, AllocError> {
    n.checked_mul(size).ok_or(AllocError)
}

impl<P: Platform> Kmem<P> {
    // ---- allocation ------------------------------------------------------

    /// `kmalloc`: `size` bytes, aligned to at least 8, naturally aligned for
    /// power-of-two sizes; `ZERO_SIZE_PTR` for size 0. Up to 8 KiB from the
    /// `kmalloc-N` caches (`dma-kmalloc-N` for `GFP_DMA`, `kmalloc-rcl-N`
    /// for `__GFP_RECLAIMABLE`), above that compound pages from the page
    /// allocator; above 4 MiB it fails (with a warning unless `__GFP_NOWARN`).
    ///
    /// For a constant size and constant flags the size class is folded at
    /// compile time: what remains is one load of the cache pointer and the
    /// slab fast path.
    #[inline(always)]
    #[track_caller]
    pub fn kmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if size <= KMALLOC_MAX_CACHE_SIZE {
            if size == 0 {
                return Ok(zero_size_ptr());
            }
            let ty = kmalloc_type(gfp);
            let s = self.slab.kmalloc[ty][kmalloc_index(size)].load(Ordering::Acquire);
            if ty != KMALLOC_NORMAL && lazy_slot_empty(s) {
                // `kmem.kmalloc_lazy`: the DMA or reclaimable cache comes first.
                return self.kmalloc_lazy_type(size, gfp);
            }
            debug_assert!(!s.is_null());
            // A booted machine has every normal kmalloc cache of sizes 1..=8192
            // (`create_kmalloc_caches` fails the boot otherwise).
            // SAFETY: non-null: a normal cache, or another type's whose slot is not empty.
            let s = unsafe { NonNull::new_unchecked(s) };
            // The sheaf first, the order of `kfree`; then as `kmem_cache_alloc`.
            // The machine's rseq offset, as `kfree` takes it: its load does not
            // wait for the cache pointer's, as the cache's copy would.
            // SAFETY: the machine's offset, the value every cache keeps.
            if let Some(obj) = unsafe { Self::kmalloc_alloc_rseq_area(s, self.platform.rseq_offset(), gfp) } {
                return Ok(obj);
            }
            let r = if P::RSEQ_AREA {
                // SAFETY: a live cache of this machine (created and not destroyed).
                unsafe { self.__slab_alloc(s, gfp) }
            } else {
                // SAFETY: a live cache of this machine (created and not destroyed).
                unsafe { self.kmem_cache_alloc(s, gfp) }
            };
            self.kmalloc_orig_size(s, r, size, gfp)
        } else {
            self.kmalloc_large_node(size, gfp, -1)
        }
    }

    /// A kmalloc of `size` bytes from `s` that gave `r`: a debug cache that
    /// tracks kmalloc sizes (`slub_debug` with `Z` and `U`) records the size
    /// and red-zones the bytes after it ("kmalloc Redzone"), as the kernel's
    /// kmalloc does through `alloc_debug_processing`. Debug caches have no
    /// fast path, so only the slow paths come here.
    #[inline(always)]
    fn kmalloc_orig_size(
        &self,
        s: NonNull<KmemCache>,
        r: Result<NonNull<u8>, AllocError>,
        size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: kmalloc caches live as long as the machine.
        let c = unsafe { s.as_ref() };
        if let Ok(p) = r {
            if c.debug_orig_size() {
                let zeroed = gfp.intersects(__GFP_ZERO) || self.debug_want_init_on_alloc(c);
                // SAFETY: `p` was just allocated from `c` for the caller.
                unsafe { self.debug_set_orig_size(c, p.as_ptr(), size, zeroed) };
            }
        }
        r
    }

    /// `kmalloc` whose DMA or reclaimable cache does not exist yet
    /// (`kmem.kmalloc_lazy`): create it, then allocate from it.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn kmalloc_lazy_type(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        match self.kmalloc_slab(size, gfp) {
            // SAFETY: a live cache of this machine (created and not destroyed).
            Some(s) => self.kmalloc_orig_size(s, unsafe { self.kmem_cache_alloc(s, gfp) }, size, gfp),
            None => Err(AllocError),
        }
    }

    /// `kzalloc`: `kmalloc` with `__GFP_ZERO`.
    #[inline(always)]
    #[track_caller]
    pub fn kzalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.kmalloc(size, gfp | __GFP_ZERO)
    }

    /// `kmalloc_node`: prefer memory of node `nid` (`-1`: no preference).
    #[inline]
    #[track_caller]
    pub fn kmalloc_node(&self, size: usize, gfp: Gfp, nid: i32) -> Result<NonNull<u8>, AllocError> {
        if size <= KMALLOC_MAX_CACHE_SIZE {
            if size == 0 {
                return Ok(zero_size_ptr());
            }
            match self.kmalloc_slab(size, gfp) {
                // SAFETY: a live cache of this machine (created and not destroyed).
                Some(s) => unsafe { self.kmem_cache_alloc_node(s, gfp, nid) },
                None => Err(AllocError),
            }
        } else {
            self.kmalloc_large_node(size, gfp, nid)
        }
    }

    /// `kzalloc_node`.
    #[inline]
    #[track_caller]
    pub fn kzalloc_node(&self, size: usize, gfp: Gfp, nid: i32) -> Result<NonNull<u8>, AllocError> {
        self.kmalloc_node(size, gfp | __GFP_ZERO, nid)
    }

    /// `kmalloc_array`: `n * size` bytes; fails without allocating if the
    /// product overflows.
    #[inline]
    #[track_caller]
    pub fn kmalloc_array(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.kmalloc(array_size(n, size)?, gfp)
    }

    /// `kcalloc`: `kmalloc_array` with `__GFP_ZERO`.
    #[inline]
    #[track_caller]
    pub fn kcalloc(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.kmalloc(array_size(n, size)?, gfp | __GFP_ZERO)
    }

    /// `kmalloc_array_node`.
    #[inline]
    #[track_caller]
    pub fn kmalloc_array_node(
        &self,
        n: usize,
        size: usize,
        gfp: Gfp,
        nid: i32,
    ) -> Result<NonNull<u8>, AllocError> {
        self.kmalloc_node(array_size(n, size)?, gfp, nid)
    }

    /// `kcalloc_node`.
    #[inline]
    #[track_caller]
    pub fn kcalloc_node(&self, n: usize, size: usize, gfp: Gfp, nid: i32) -> Result<NonNull<u8>, AllocError> {
        self.kmalloc_node(array_size(n, size)?, gfp | __GFP_ZERO, nid)
    }

    /// `kmalloc_fix_flags`: zone modifiers other than `GFP_DMA` make no sense
    /// for kmalloc; warn and drop them.
    #[cold]
    fn kmalloc_fix_flags(&self, gfp: Gfp) -> Gfp {
        let fixed = gfp.without(GFP_SLAB_BUG_MASK);
        self.warn(format_args!(
            "Unexpected gfp: {:#x} ({}). Fixing up to gfp: {:#x} ({}). Fix your code!",
            gfp.bits() & GFP_SLAB_BUG_MASK.bits(),
            Gfp(gfp.bits() & GFP_SLAB_BUG_MASK.bits()),
            fixed.bits(),
            fixed
        ));
        fixed
    }

    /// `__kmalloc_large_node`: a compound page of `get_order(size)` straight
    /// from the page allocator, marked `PG_LARGE_KMALLOC` so `kfree` knows it
    /// and counted in `large_kmalloc_pages`. Page aligned. Sizes above
    /// `KMALLOC_MAX_SIZE` fail with the page allocator's order warning
    /// (unless `__GFP_NOWARN`), as in the kernel.
    #[inline(never)]
    pub fn kmalloc_large_node(&self, size: usize, gfp: Gfp, nid: i32) -> Result<NonNull<u8>, AllocError> {
        let gfp = if gfp.intersects(GFP_SLAB_BUG_MASK) {
            self.kmalloc_fix_flags(gfp)
        } else {
            gfp
        };
        let order = get_order(size);
        let page = self.alloc_pages_node(nid, gfp | __GFP_COMP, order)?;
        let Some(addr) = self.page_address(page) else {
            // Cannot happen: the zone modifiers that reach HighMem were dropped.
            // SAFETY: we own the allocation we just got.
            unsafe { self.__free_pages(page, order) };
            return Err(AllocError);
        };
        // SAFETY: the head page of our fresh allocation.
        unsafe { page.as_ref() }.set(PG_LARGE_KMALLOC);
        self.slab
            .large_kmalloc_pages
            .fetch_add(1 << order, Ordering::Relaxed);
        Ok(addr)
    }

    /// `kmalloc` with an alignment: `size` bytes aligned to `align` (a power
    /// of two). Alignments up to 8 are what kmalloc always gives; larger
    /// ones use the size class of `max(size, align)` when its objects are
    /// aligned that much (power-of-two classes are naturally aligned; 96 and
    /// 192 are 32- and 64-aligned unless a debug layout shifts them), else
    /// the next power-of-two class, else whole pages. Free with `kfree`.
    /// Size 0 gives `ZERO_SIZE_PTR`, which must never be dereferenced.
    #[inline(always)]
    #[track_caller]
    pub fn kmalloc_aligned(&self, size: usize, align: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if align <= ARCH_KMALLOC_MINALIGN && align.is_power_of_two() {
            self.kmalloc(size, gfp)
        } else {
            self.kmalloc_aligned_slow(size, align, gfp)
        }
    }

    /// `kmalloc_aligned` for a `Layout`.
    #[inline(always)]
    #[track_caller]
    pub fn kmalloc_layout(&self, layout: core::alloc::Layout, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.kmalloc_aligned(layout.size(), layout.align(), gfp)
    }

    #[inline(never)]
    #[track_caller]
    fn kmalloc_aligned_slow(&self, size: usize, align: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if !align.is_power_of_two() {
            return Err(AllocError);
        }
        if size == 0 {
            return Ok(zero_size_ptr());
        }
        let want = size.max(align);
        if want <= KMALLOC_MAX_CACHE_SIZE {
            for candidate in [want, want.next_power_of_two()] {
                if let Some(s) = self.kmalloc_slab(candidate, gfp) {
                    // SAFETY: kmalloc caches live as long as the machine.
                    if self.cache_objects_aligned(unsafe { s.as_ref() }, align) {
                        return self.kmalloc_orig_size(
                            s,
                            // SAFETY: a live cache of this machine (created and not destroyed).
                            unsafe { self.kmem_cache_alloc(s, gfp) },
                            size,
                            gfp,
                        );
                    }
                }
            }
        }
        // Whole pages: a block of order n is aligned to PAGE_SIZE << n.
        let mut order = get_order(want);
        while (PAGE_SIZE << order) < align && order <= KMALLOC_MAX_ORDER {
            order += 1;
        }
        if !self.page_offset.is_multiple_of(align) {
            return Err(AllocError);
        }
        self.kmalloc_large_node(PAGE_SIZE << order, gfp, -1)
    }

    /// Whether every object of `s` is aligned to `align`: the stride and the
    /// left red zone are multiples of it and so is the slab's address (slabs
    /// are blocks of 2^order pages, aligned to their size physically).
    pub(crate) fn cache_objects_aligned(&self, s: &KmemCache, align: usize) -> bool {
        s.size.is_multiple_of(align)
            && s.red_left_pad.is_multiple_of(align)
            && (align <= PAGE_SIZE
                || ((PAGE_SIZE << s.min.order.min(s.oo.order)).is_multiple_of(align)
                    && self.page_offset.is_multiple_of(align)))
    }

    /// `kmalloc_size_roundup`.
    #[inline(always)]
    pub fn kmalloc_size_roundup(&self, size: usize) -> usize {
        kmalloc_size_roundup(size)
    }

    // ---- freeing ---------------------------------------------------------

    /// `kfree`: free memory from `kmalloc` (or any slab object). NULL and
    /// `ZERO_SIZE_PTR` are ignored. A slab object goes back to its cache
    /// (found through its page), a large kmalloc to the page allocator.
    /// Anything else — an address outside the machine's memory, a pointer
    /// into the middle of an object or of a large kmalloc, a page that
    /// kmalloc never handed out, a large kmalloc freed twice — is reported
    /// the kernel's way and nothing is freed.
    ///
    /// # Safety
    /// `p` came from this machine's kmalloc family (or `kmem_cache_alloc`)
    /// and is not used afterwards. Misuse is detected as far as the page
    /// metadata allows (a double free of a slab object in a non-debug cache
    /// is not; boot with `slub_debug` for that).
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kfree(&self, p: *const u8) {
        // NULL and ZERO_SIZE_PTR are below the linear map (or, with a linear
        // map at 0, in page 0, which is never a slab): both cold paths below
        // ignore them, so the hot path does not test for them.
        let pfn = (p as usize).wrapping_sub(self.page_offset) >> PAGE_SHIFT;
        if pfn >= self.max_low_pfn {
            if !zero_or_null_ptr(p) {
                self.kfree_invalid(p, "not a kernel address");
            }
            return;
        }
        // SAFETY: forwarded; `pfn` is the linear map's frame of `p`, checked.
        unsafe { self.kfree_lowmem(p, pfn) }
    }

    /// `kfree` of a pointer the caller found in the linear map: `pfn` is
    /// `(p - page_offset) >> PAGE_SHIFT`, below `max_low_pfn`.
    ///
    /// # Safety
    /// As [`Kmem::kfree`]; `pfn` is as described.
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kfree_lowmem(&self, p: *const u8, pfn: usize) {
        debug_assert!(pfn < self.max_low_pfn);
        debug_assert_eq!(pfn, (p as usize).wrapping_sub(self.page_offset) >> PAGE_SHIFT);
        // SAFETY: forwarded; `pfn_to_page(pfn)` is the descriptor of `p`'s page.
        unsafe { self.kfree_page(p, self.map.pfn_to_page(pfn), self.platform.rseq_offset()) }
    }

    /// `kfree` of `p` in the linear map whose page descriptor the caller
    /// found (`mem_map() + pfn`), with `rseq_area` the platform's
    /// `rseq_offset()`: [`Kmem::kfree_fast`], then [`Kmem::kfree_finish`]
    /// if it declined.
    ///
    /// # Safety
    /// As [`Kmem::kfree_fast`].
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kfree_page(&self, p: *const u8, page: *mut Page, rseq_area: isize) {
        debug_assert_eq!(rseq_area, self.platform.rseq_offset());
        // SAFETY: forwarded.
        if let Err(why) = unsafe { Self::kfree_fast(p, page, rseq_area) } {
            // SAFETY: forwarded; the fast path did nothing.
            unsafe { self.kfree_finish(p, why) }
        }
    }

    /// `kfree`'s lock-free fast path, which reads nothing from the machine
    /// (callers that keep the linear map's bounds, `mem_map` and the rseq
    /// offset at hand, like libkmalloc's `free`, load the machine only if it
    /// declines): push `p` onto this CPU's freelist or sheaf if it is an
    /// object start of a non-debug slab cache whose object starts `kfree`
    /// can tell inline (below). Otherwise nothing is done and the `Err` says
    /// what [`Kmem::kfree_finish`] does with it.
    ///
    /// The check: `p`'s offset from its slab's first object, which every
    /// page of a slab records (`page.private`, SLAB's `s_mem`), must be a
    /// multiple of the object size below the slab's end: one multiply,
    /// rotate and compare for every size (`MultipleTest`), so a program
    /// freeing objects of many sizes takes the same branch every time.
    /// Pointers of debug caches take the exact check out of line.
    ///
    /// # Safety
    /// As [`Kmem::kfree`]; `p` lies in the linear map and `page` is the
    /// descriptor of its page; `rseq_area` is `platform.rseq_offset()` of the
    /// machine that owns `p`.
    #[inline(always)]
    pub unsafe fn kfree_fast(p: *const u8, page: *mut Page, rseq_area: isize) -> Result<(), KfreeDeclined> {
        // SAFETY: forwarded.
        let Some(s) = (unsafe { slab_object_inline(p, page) }) else {
            return Err(KfreeDeclined::Checks);
        };
        // SAFETY: an allocated object of `s` on `page` (caller contract).
        unsafe { Self::kfree_slab_fast(s, p as *mut u8, rseq_area) }
    }

    /// [`Kmem::ksize`] of an object that [`Kmem::kfree_fast`] would take,
    /// found as that does (a realloc that stays in place needs no more);
    /// None says nothing about `p`: `ksize` tells the rest.
    ///
    /// # Safety
    /// As [`Kmem::kfree_fast`]: `p` lies in the linear map and `page` is the
    /// descriptor of its page.
    #[inline(always)]
    pub unsafe fn ksize_fast(p: *const u8, page: *mut Page) -> Option<usize> {
        // SAFETY: forwarded.
        unsafe { slab_object_inline(p, page) }.map(slab_ksize)
    }

    /// Everything [`Kmem::kfree_fast`] declined: `p` and the reason it gave.
    ///
    /// # Safety
    /// As [`Kmem::kfree_fast`], which returned `why` for `p` and did nothing.
    #[inline(never)]
    #[track_caller]
    pub unsafe fn kfree_finish(&self, p: *const u8, why: KfreeDeclined) {
        match why {
            // SAFETY: forwarded.
            KfreeDeclined::Checks => unsafe { self.kfree_slow(p) },
            // SAFETY: a checked object of `s` (a live cache).
            KfreeDeclined::DoubleFree(s) => self.double_free(unsafe { s.as_ref() }, p as *mut u8),
            // SAFETY: a checked object of `s`, a live cache.
            KfreeDeclined::Slab(s) => unsafe { self.kfree_slab_declined(s.as_ref(), p as *mut u8) },
        }
    }

    /// `kfree` of everything in the linear map but a well-aligned object
    /// of a non-debug power-of-two cache.
    ///
    /// # Safety
    /// As `kfree`; `p` lies in the linear map.
    #[inline(never)]
    #[track_caller]
    unsafe fn kfree_slow(&self, p: *const u8) {
        if zero_or_null_ptr(p) {
            return;
        }
        let Some(page) = self.virt_to_head_page(p) else {
            return; // Not in the linear map: the caller checked.
        };
        let page = page.as_ptr();
        // SAFETY: a descriptor of the memmap.
        let f = unsafe { (*page).flags.load(Ordering::Relaxed) };
        if f & PG_SLAB != 0 {
            // SAFETY: slab pages record their live cache.
            let s = unsafe { &*((*page).mapping as *const KmemCache) };
            if s.debug() {
                // The debug path checks the pointer and double frees itself.
                // SAFETY: forwarded.
                unsafe { self.kmem_cache_free(NonNull::from(s), p as *mut u8) };
                return;
            }
            // SAFETY: the head page of a slab of `s`.
            if !unsafe { self.check_object_start(s, page, p, "kfree") } {
                return;
            }
            // SAFETY: an allocated object of `s` in slab `page` (caller contract).
            if let Err(why) = unsafe { Self::kfree_slab_fast(s, p as *mut u8, self.platform.rseq_offset()) } {
                // SAFETY: as above; nothing was done.
                unsafe { self.kfree_finish(p, why) }
            }
            return;
        }
        // SAFETY: `page` is a descriptor of the memmap.
        let head = unsafe { &*page };
        if f & PG_LARGE_KMALLOC != 0 {
            let start = self.lowmem_or_direct_address(self.map.page_to_pfn(page));
            if !ptr::eq(p, start) {
                self.kfree_invalid(p, "inside a large kmalloc");
                return;
            }
            // Clearing the mark is what owns the free: a racing second kfree
            // finds it clear and is reported instead.
            if head.flags.fetch_and(!PG_LARGE_KMALLOC, Ordering::AcqRel) & PG_LARGE_KMALLOC == 0 {
                self.kfree_invalid(p, "large kmalloc already freed");
                return;
            }
            let order = head.order as u32;
            self.slab
                .large_kmalloc_pages
                .fetch_sub(1 << order, Ordering::Relaxed);
            // SAFETY: the compound allocation kmalloc_large_node made, now ours.
            unsafe { self.__free_pages(NonNull::new_unchecked(page), order) };
            return;
        }
        if self.page_zone_by_pfn(self.map.page_to_pfn(page)).is_none() {
            self.kfree_invalid(p, "not RAM");
            return;
        }
        // RAM, but neither a slab nor a large kmalloc: the kernel would
        // folio_put() it and free someone's pages, or trip over a free page.
        let reason = if f & (PG_BUDDY | PG_PCP) != 0 || head.ref_count() == 0 {
            "kfree: invalid pointer: page already free (double free?)"
        } else {
            "kfree: invalid pointer: page not from kmalloc"
        };
        self.slab.errors.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a descriptor of this memmap; bad_page only reports.
        unsafe { self.bad_page(page, reason) };
    }

    /// Report a `kfree` of something kmalloc did not hand out.
    #[cold]
    fn kfree_invalid(&self, p: *const u8, why: &str) {
        self.slab.errors.fetch_add(1, Ordering::Relaxed);
        self.warn(format_args!(
            "kfree: invalid pointer 0x{:016x} ({why})",
            p as usize
        ));
    }

    /// `kfree_sensitive`: clear the whole usable size (`ksize`), then free.
    ///
    /// # Safety
    /// As `kfree`.
    #[track_caller]
    pub unsafe fn kfree_sensitive(&self, p: *const u8) {
        if zero_or_null_ptr(p) {
            return;
        }
        let ks = self.ksize(p);
        if ks != 0 {
            // SAFETY: `ks` usable bytes belong to the caller's allocation.
            unsafe { ptr::write_bytes(p as *mut u8, 0, ks) };
            // memzero_explicit: the clearing may not be dropped or moved past the free.
            core::sync::atomic::compiler_fence(Ordering::SeqCst);
        }
        // SAFETY: forwarded.
        unsafe { self.kfree(p) };
    }

    /// `kfree_bulk`: free every pointer of `objs` (NULLs are skipped).
    ///
    /// # Safety
    /// As `kfree` for each pointer.
    #[track_caller]
    pub unsafe fn kfree_bulk(&self, objs: &[*mut u8]) {
        for &p in objs.iter().rev() {
            // SAFETY: forwarded.
            unsafe { self.kfree(p) };
        }
    }

    // ---- sizes and reallocation -------------------------------------------

    /// `ksize`: the usable size of a kmalloc allocation: the cache's
    /// `slab_ksize` for slab objects, `PAGE_SIZE << order` for a large
    /// kmalloc; 0 for NULL, `ZERO_SIZE_PTR` and anything kmalloc did not
    /// hand out (with a warning for the latter, as the kernel's `WARN_ON`).
    pub fn ksize(&self, p: *const u8) -> usize {
        if zero_or_null_ptr(p) {
            return 0;
        }
        let Some(page) = self.virt_to_head_page(p) else {
            self.warn(format_args!(
                "ksize: 0x{:016x} is not a kernel address",
                p as usize
            ));
            return 0;
        };
        let page = page.as_ptr();
        // SAFETY: `page` is a descriptor of the memmap.
        let f = unsafe { (*page).flags.load(Ordering::Relaxed) };
        if f & PG_SLAB != 0 {
            // SAFETY: slab pages record their live cache.
            let s = unsafe { &*((*page).mapping as *const KmemCache) };
            // The caller may now use every usable byte: the kmalloc red zone after the size it
            // asked for is no longer checked (`skip_orig_size_check`, as the kernel's ksize).
            // SAFETY: `p` is a live allocation of `s` (caller contract of a ksize that finds one).
            unsafe { self.skip_orig_size_check(s, p as *mut u8) };
            return slab_ksize(s);
        }
        if f & PG_LARGE_KMALLOC != 0 && ptr::eq(p, self.lowmem_or_direct_address(self.map.page_to_pfn(page)))
        {
            // SAFETY: the head page of a live large kmalloc.
            return PAGE_SIZE << unsafe { (*page).order };
        }
        self.warn(format_args!(
            "ksize: 0x{:016x} is neither a slab object nor a large kmalloc",
            p as usize
        ));
        0
    }

    /// `krealloc`: resize a kmalloc allocation, keeping its contents.
    ///
    /// * `p` NULL (or `ZERO_SIZE_PTR`): a plain `kmalloc(new_size)`.
    /// * `new_size` 0: `kfree(p)`, and `ZERO_SIZE_PTR` is returned.
    /// * `ksize(p) >= new_size`: the same pointer; with `__GFP_ZERO` (or
    ///   `init_on_alloc=1`) the bytes from `new_size` to `ksize(p)` are
    ///   cleared, so a later grow finds zeroes (this only works if every call
    ///   on the buffer passed `__GFP_ZERO`, as in the kernel).
    /// * otherwise a new allocation, `ksize(p)` bytes copied, `p` freed.
    ///
    /// On failure `p` is untouched and still owned by the caller.
    ///
    /// # Safety
    /// `p` is NULL, `ZERO_SIZE_PTR` or a live kmalloc allocation of this
    /// machine; on success it must not be used again (unless returned).
    #[track_caller]
    pub unsafe fn krealloc(&self, p: *mut u8, new_size: usize, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if new_size == 0 {
            // SAFETY: forwarded.
            unsafe { self.kfree(p) };
            return Ok(zero_size_ptr());
        }
        let ks = if zero_or_null_ptr(p) { 0 } else { self.ksize(p) };
        if ks >= new_size {
            if gfp.intersects(__GFP_ZERO) || self.params.init_on_alloc == Some(true) {
                // SAFETY: [new_size, ks) is usable memory of the allocation.
                unsafe { ptr::write_bytes(p.add(new_size), 0, ks - new_size) };
            }
            // SAFETY: ks > 0, so p is a real allocation.
            return Ok(unsafe { NonNull::new_unchecked(p) });
        }
        let new = self.kmalloc(new_size, gfp)?;
        if ks != 0 {
            // SAFETY: both allocations are live and distinct; ks < new_size.
            unsafe { ptr::copy_nonoverlapping(p, new.as_ptr(), ks) };
        }
        // SAFETY: p is the caller's (a garbage p is reported by kfree).
        unsafe { self.kfree(p) };
        Ok(new)
    }

    /// `krealloc_array`: `krealloc` to `n * size` bytes; fails (leaving `p`
    /// alone) if the product overflows.
    ///
    /// # Safety
    /// As `krealloc`.
    #[track_caller]
    pub unsafe fn krealloc_array(
        &self,
        p: *mut u8,
        n: usize,
        size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, AllocError> {
        let bytes = array_size(n, size)?;
        // SAFETY: forwarded.
        unsafe { self.krealloc(p, bytes, gfp) }
    }

    // ---- copies ------------------------------------------------------------

    /// `kmemdup`: a kmalloc copy of `src`.
    #[track_caller]
    pub fn kmemdup(&self, src: &[u8], gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        let p = self.kmalloc(src.len(), gfp)?;
        if !src.is_empty() {
            // SAFETY: `p` has room for src.len() bytes and is fresh.
            unsafe { ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr(), src.len()) };
        }
        Ok(p)
    }

    /// `kmemdup_nul`: a kmalloc copy of `src` with a NUL appended.
    #[track_caller]
    pub fn kmemdup_nul(&self, src: &[u8], gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        let len = src.len().checked_add(1).ok_or(AllocError)?;
        let p = self.kmalloc(len, gfp)?;
        // SAFETY: `p` has room for len bytes and is fresh.
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr(), src.len());
            *p.as_ptr().add(src.len()) = 0;
        }
        Ok(p)
    }

    /// `kstrdup`: a kmalloc copy of a C string, NUL included.
    #[track_caller]
    pub fn kstrdup(&self, s: &core::ffi::CStr, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.kmemdup(s.to_bytes_with_nul(), gfp)
    }

    /// `kstrdup` of a Rust string: its bytes and a NUL, as a C string in
    /// kmalloc memory (an interior NUL simply ends the C string early).
    #[track_caller]
    pub fn kstrdup_str(&self, s: &str, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        self.kmemdup_nul(s.as_bytes(), gfp)
    }
}

impl<P: Platform> Kmem<P> {
    /// Pages held by large kmallocs (the kernel counts them in
    /// `NR_SLAB_UNRECLAIMABLE_B`).
    pub fn nr_large_kmalloc_pages(&self) -> usize {
        self.slab.large_kmalloc_pages.load(Ordering::Relaxed)
    }
}

/// The cache of `p` if `p` is an object start that `kfree`'s fast path can
/// tell inline (see [`Kmem::kfree_fast`]): `page`, its page, is a slab page
/// of a non-debug cache whose `kfree_test` passes `p`'s offset from the
/// slab's first object.
/// None says nothing about `p`: the exact checks are out of line.
///
/// # Safety
/// `page` is the descriptor of `p`'s page, in the linear map's memmap.
#[inline(always)]
pub(crate) unsafe fn slab_object_inline<'a>(p: *const u8, page: *mut Page) -> Option<&'a KmemCache> {
    // Every page of a slab, head or tail (`PG_SLAB_TAIL`), names its cache
    // in `mapping` (`slab->slab_cache`), and no other page has a `mapping`
    // (the page allocator refuses to free a page with one, `bad_page`): so
    // a non-null `mapping` is the slab test, as the kernel's
    // `folio_test_slab` is a test of the page's type word rather than of
    // its flags, and it is the load the fast path needs anyway.
    // Every page of a slab also records the slab's first object in
    // `private` (0 for caches whose test is `NEVER`, which then fails as `p`
    // is not null); both words are read at once.
    // A volatile read keeps the load of `private` beside that of `mapping`,
    // where both use the page's address as an operand; sunk below the null
    // test, it would cost an instruction to form that address.
    // SAFETY: caller contract: a descriptor of the memmap.
    let (s, first) = unsafe {
        (
            (*page).mapping as *const KmemCache,
            ptr::read_volatile(ptr::addr_of!((*page).private)),
        )
    };
    if s.is_null() {
        return None;
    }
    // SAFETY: as above.
    debug_assert!(unsafe { (*page).test(PG_SLAB | PG_SLAB_TAIL) });
    // SAFETY: slab pages record their (live) cache.
    let s = unsafe { &*s };
    if !s.kfree_test.test_at(first as u64, p as u64) {
        return None;
    }
    Some(s)
}
