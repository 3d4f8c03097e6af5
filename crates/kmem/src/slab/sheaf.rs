//! Sheaves: per-CPU arrays of free objects in front of the slabs.
//!
//! SLUB's cpu freelist only takes objects of the cpu slab. Every other free
//! — an object of an older slab, or one allocated on another CPU — goes to
//! its slab with a `cmpxchg16b` (`__slab_free`), and a free that changes the
//! slab's list membership takes the node's `list_lock`. A program that
//! keeps many objects alive, or frees on another thread than it allocates,
//! pays that on most frees. Linux 6.18 added *sheaves* for this (and the old
//! SLAB allocator had its `array_cache`): a per-CPU array of object pointers
//! that frees push onto and allocations pop from, with no atomic operation,
//! emptied into the slabs in batches.
//!
//! **Here.** Each cache whose fast paths are the restartable sequences
//! (rseq mode) and that has no debug flags and no init hooks gets a
//! `sheaf_capacity` from its object size, SLAB's `enable_cpucache` limits
//! (120 objects up to 256 bytes, 54 up to 1 KiB, 24 up to a page, 8 above,
//! 1 above 128 KiB); `kmem.sheaves=off` on the command line turns them off.
//! A CPU's sheaf is a page (its size, its capacity, then the objects),
//! allocated on the first free that needs it.
//!
//! * The cpu freelist stays first: the inline fast paths are SLUB's. A free
//!   the freelist declines (the object is not in the cpu slab), once its
//!   slab and cache are checked, goes to the sheaf (`rseq::sheaf_push`); an
//!   allocation that finds the freelist empty pops the sheaf
//!   (`rseq::sheaf_pop`) before the slow path. Both are restartable
//!   sequences whose committing store is the sheaf's new size.
//! * A full sheaf gives its oldest half back (SLAB's `batchcount`): taken
//!   off under the cpu structure's lock with the sequences stopped (like any
//!   slow path that changes per-CPU state), then freed after unlocking in
//!   one `__slab_free` per run of objects of one slab (`free_to_slabs`, the
//!   kernel's detached freelists).
//! * `flush_all` (shrink, destroy) empties every sheaf, before any cpu slab
//!   is flushed, and gives the sheaf's page back; the shrinker does the same
//!   under memory pressure.
//!
//! **Differences from Linux 6.18.** There a cache opts in
//! (`kmem_cache_args.sheaf_capacity`), an empty sheaf is refilled whole
//! from the slabs, and each node keeps a barn of spare full and empty
//! sheaves. Here every eligible cache has sheaves, an empty sheaf is not
//! refilled (the cpu freelist and the slow path serve), and there is no
//! barn: a sheaf is a buffer for the frees SLUB would otherwise send to the
//! slabs one by one.
//!
//! Objects in a sheaf are free: `cache_counts` (and so `/proc/slabinfo`)
//! counts them as such, exactly. Double frees: freeing the object that was
//! freed last is caught, as the cpu freelist's naive check does; other
//! double frees need `slub_debug`, which turns sheaves off.

use super::*;

/// A CPU's sheaf: a page holding this header and then the objects.
#[repr(C)]
pub struct Sheaf {
    /// Objects held (`objects[..size]`, the newest last). Written by the
    /// sequences' commit and by slow paths with the sequences stopped.
    pub size: usize,
    /// How many objects the sheaf holds at most; lies just below
    /// `objects[0]`, so the double-free check of an empty sheaf compares
    /// with a count, never an object.
    pub capacity: usize,
    /// The objects.
    pub objects: [*mut u8; 0],
}

/// Most objects a sheaf holds (SLAB's largest `limit`).
pub(crate) const MAX_SHEAF_CAPACITY: usize = 120;
const _: () =
    assert!(core::mem::size_of::<Sheaf>() + MAX_SHEAF_CAPACITY * core::mem::size_of::<usize>() <= PAGE_SIZE);

/// The sheaf capacity of a cache of `size`-byte objects (SLAB's
/// `enable_cpucache` limits).
pub(crate) const fn sheaf_capacity(size: usize) -> usize {
    if size > 131072 {
        1
    } else if size > PAGE_SIZE {
        8
    } else if size > 1024 {
        24
    } else if size > 256 {
        54
    } else {
        MAX_SHEAF_CAPACITY
    }
}

impl<P: Platform> Kmem<P> {
    /// Free `obj` to the calling CPU's sheaf where the sequence could not:
    /// give the sheaf one if it has none, or first give the oldest half of a
    /// full one back to the slabs. False if there is no sheaf to use (no
    /// page for one, or the sequences are stopped for good): the caller frees
    /// to the slab.
    ///
    /// # Safety
    /// `obj` is an allocated object of `s`, checked to be one; `s` has
    /// sheaves (`sheaf_capacity > 0`).
    pub(crate) unsafe fn sheaf_free_slow(&self, s: &KmemCache, obj: *mut u8) -> bool {
        let cpu = self.platform.raw_smp_processor_id();
        // SAFETY: cpu < nr_cpu_ids.
        let c = unsafe { s.cpu(cpu) };
        if c.stopped.load(Ordering::Relaxed) & !rseq::STOP_SLOW_PATH != 0 {
            return false;
        }
        if c.sheaf.load(Ordering::Acquire).is_null() {
            let Ok(page) = self.__get_free_page(GFP_NOWAIT | __GFP_NOWARN) else {
                return false;
            };
            let new = page.as_ptr() as *mut Sheaf;
            // SAFETY: a fresh page, large enough for the header.
            unsafe {
                (*new).size = 0;
                (*new).capacity = s.sheaf_capacity;
            }
            let _guard = self.cpu_lock(c, cpu);
            if c.sheaf.load(Ordering::Relaxed).is_null() {
                c.sheaf.store(new, Ordering::Release);
            } else {
                // SAFETY: our page; another free installed a sheaf meanwhile.
                unsafe { self.free_page(new as usize) };
            }
        }
        let mut out = [ptr::null_mut::<u8>(); MAX_SHEAF_CAPACITY];
        let mut n = 0;
        let double = {
            let _guard = self.cpu_lock(c, cpu);
            let sh = c.sheaf.load(Ordering::Relaxed);
            if sh.is_null() {
                return false; // Flushed meanwhile.
            }
            // SAFETY: the sheaf is ours while its sequences are stopped.
            unsafe {
                let objects = ptr::addr_of_mut!((*sh).objects) as *mut *mut u8;
                let size = (*sh).size;
                if size > 0 && *objects.add(size - 1) == obj {
                    true
                } else {
                    if size >= (*sh).capacity {
                        n = size.div_ceil(2);
                        ptr::copy_nonoverlapping(objects, out.as_mut_ptr(), n);
                        ptr::copy(objects.add(n), objects, size - n);
                        (*sh).size = size - n;
                    }
                    *objects.add((*sh).size) = obj;
                    (*sh).size += 1;
                    false
                }
            }
        };
        if double {
            self.double_free(s, obj);
        }
        // SAFETY: objects taken off the sheaf, ours now.
        unsafe { self.free_to_slabs(s, &out[..n]) };
        true
    }

    /// Empty `cpu`'s sheaf of `s` into the slabs and give its page back.
    pub(crate) fn flush_cpu_sheaf(&self, s: &KmemCache, cpu: usize) {
        // SAFETY: cpu < nr_cpus (callers iterate below it).
        let c = unsafe { s.cpu(cpu) };
        if c.sheaf.load(Ordering::Acquire).is_null() {
            return;
        }
        let mut out = [ptr::null_mut::<u8>(); MAX_SHEAF_CAPACITY];
        let (sh, n) = {
            let _guard = self.cpu_lock(c, cpu);
            let sh = c.sheaf.swap(ptr::null_mut(), Ordering::AcqRel);
            if sh.is_null() {
                return;
            }
            // SAFETY: detached under the lock with the sequences stopped;
            // no sequence can reach it any more.
            let n = unsafe { (*sh).size };
            // SAFETY: as above; `n` objects follow the header.
            unsafe {
                ptr::copy_nonoverlapping(
                    ptr::addr_of!((*sh).objects) as *const *mut u8,
                    out.as_mut_ptr(),
                    n,
                )
            };
            (sh, n)
        };
        // SAFETY: objects taken off the sheaf, ours now.
        unsafe { self.free_to_slabs(s, &out[..n]) };
        // SAFETY: the sheaf's page, detached above.
        unsafe { self.free_page(sh as usize) };
    }

    /// Objects in `c`'s sheaf (the caller holds `c`'s cpu lock).
    pub(crate) fn sheaf_objects(c: &KmemCacheCpu) -> usize {
        let sh = c.sheaf.load(Ordering::Acquire);
        if sh.is_null() {
            0
        } else {
            // SAFETY: the sheaf lives while it is installed; the caller
            // holds the lock that detaching it takes.
            unsafe { (*sh).size }
        }
    }

    /// Give objects of `s` back to their slabs: one `__slab_free` per run of
    /// consecutive objects of one slab, chained through their free pointers
    /// (`build_detached_freelist`).
    ///
    /// # Safety
    /// Every object is an allocated object of `s`, owned by the caller.
    unsafe fn free_to_slabs(&self, s: &KmemCache, objs: &[*mut u8]) {
        let mut i = 0;
        while i < objs.len() {
            let head = objs[i];
            let Some(slab) = self.virt_to_slab(head) else {
                // Checked when it was freed; cannot happen.
                self.free_invalid(s, head);
                i += 1;
                continue;
            };
            let slab = slab.as_ptr();
            let start = self.slab_base(slab) as usize;
            // SAFETY: a live slab of `s`.
            let bytes = Counters(unsafe { slab_fl(slab) }.hi.load(Ordering::Acquire)).objects() * s.size;
            let mut tail = head;
            let mut cnt = 1;
            i += 1;
            while i < objs.len() && (objs[i] as usize).wrapping_sub(start) < bytes {
                // SAFETY: both are our objects.
                unsafe { s.set_freepointer(tail, objs[i]) };
                tail = objs[i];
                cnt += 1;
                i += 1;
            }
            // SAFETY: a chain of `cnt` objects of `slab`, ours.
            unsafe { self.slab_free_chain(s, slab, head, tail, cnt) };
        }
    }
}
