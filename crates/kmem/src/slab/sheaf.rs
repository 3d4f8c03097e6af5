//! Sheaves: per-CPU arrays of free objects in front of the slabs, and each
//! node's barn of spare sheaves.
//!
//! SLUB's cpu freelist only takes objects of the cpu slab. Every other free
//! — an object of an older slab, or one allocated on another CPU — goes to
//! its slab with a `cmpxchg16b` (`__slab_free`), and a free that changes the
//! slab's list membership takes the node's `list_lock`. A program that
//! keeps many objects alive, or frees on another thread than it allocates,
//! pays that on most frees. Linux 6.18 added *sheaves* for this (and the old
//! SLAB allocator had its `array_cache`): a per-CPU array of object pointers
//! that frees push onto and allocations pop from, with no atomic operation,
//! and a per-node *barn* of full and empty sheaves that a CPU swaps its
//! sheaf with, so a burst of frees followed by a burst of allocations (or
//! frees on one CPU and allocations on another of the node) moves whole
//! sheaves instead of single objects through the slabs.
//!
//! **Here.** Each cache whose fast paths are the restartable sequences
//! (rseq mode) and that has no debug flags and no init hooks gets a
//! `sheaf_capacity` from its object size, SLAB's `enable_cpucache` limits
//! (120 objects up to 256 bytes, 54 up to 1 KiB, 24 up to a page, 8 above,
//! 1 above 128 KiB), or the one its `KmemCacheArgs::sheaf_capacity` asks
//! for (0: none; at most 120); `kmem.sheaves=off` on the command line turns
//! them off.
//! A sheaf (its size, a link, its capacity, then the objects) is an object
//! of the `slab_sheaf` cache ([`SHEAF_BYTES`] = 984 bytes in 1 KiB, cache-line
//! aligned so that CPUs' sheaves share no line), four to a page
//! (a page each, as sheaves first were, left three quarters of every one
//! unused: frag's peak RSS was 0.24 MB higher with six size classes' barns
//! full); the cache has no sheaves itself, so a sheaf is never needed to
//! allocate or free one. A sheaf is allocated on the first free that needs
//! it; a CPU without one has the static empty `no_sheaf()` of capacity 0
//! installed, so the sequences need no null test.
//!
//! * Two orders. `kmalloc` and `kfree` (and libkmalloc's `malloc` and
//!   `free`) go to the sheaf first, as Linux 6.18 does: `kfree` pushes
//!   onto it (`rseq::sheaf_push`; `kfree` found the cache through the
//!   object's page and checked the pointer, so the sheaf may take an object
//!   of any slab) and `kmalloc` pops it (`rseq::sheaf_pop`), then the cpu
//!   freelist. A program that mixes sizes, whose frees would otherwise
//!   land on the cpu freelist or the sheaf depending on the object's slab,
//!   keeps both sequences on one structure per size and their branches
//!   predictable. `kmem_cache_alloc` and `kmem_cache_free` keep SLUB's
//!   order, the cpu freelist first: `kmem_cache_free` tells an object of
//!   the cache by the cpu slab's address range at no cost, while the sheaf
//!   would need the page's cache checked first. An allocation that finds
//!   the freelist empty pops the sheaf in the same sequence (`rseq::pop`);
//!   a declined `kmem_cache_free` pushes onto the sheaf once its slab and
//!   cache are checked. The sheaf's size lives in the cpu structure
//!   (`KmemCacheCpu::sheaf_size`) while the sheaf is installed; the
//!   sequences' commit adds or subtracts 1 there.
//! * A free that finds the sheaf full puts it in the barn of the CPU's node
//!   and continues on an empty sheaf from the barn (or a new one), as
//!   `barn_replace_full_sheaf` does, taking the full sheaf's newest object
//!   along (so barn sheaves have one free slot, see below); if the barn already holds
//!   `MAX_FULL_SHEAVES`, the sheaf gives its oldest half back to the slabs
//!   (SLAB's `batchcount`) in one `__slab_free` per run of one slab's
//!   objects (`free_to_slabs`, the kernel's detached freelists).
//! * The allocation sequence leaves a sheaf's last object alone (see
//!   `rseq::pop`: a CPU must not live off one object). An allocation that
//!   finds the sheaf so low swaps it for a full sheaf of the barn
//!   (`barn_replace_empty_sheaf`), putting that object in the full sheaf's
//!   free slot, under its other objects (else back to its slab); the
//!   empty one is kept there (up to `MAX_EMPTY_SHEAVES`, else it is
//!   freed). With no full sheaf in the barn, the slow path serves.
//! * Every swap happens under the cpu structure's lock with the sequences
//!   stopped (like any slow path that changes per-CPU state), the barn's
//!   lists under the barn's lock, taken inside it.
//! * `flush_all` (shrink, destroy) empties every CPU's sheaf and then every
//!   barn, before any cpu slab is flushed, and gives the sheaves back to
//!   `slab_sheaf` (`kmem_cache_shrink_all` shrinks that cache last); the
//!   shrinker does the same under memory pressure.
//!
//! **Differences from Linux 6.18.** There a cache opts in
//! (`kmem_cache_args.sheaf_capacity`), every allocation and free goes to
//! the sheaf first, an empty sheaf with no full one in the barn is refilled
//! from the slabs, and a CPU keeps a spare sheaf beside its main one. Here
//! every eligible cache has sheaves unless it is created with a
//! `sheaf_capacity` of `Some(0)`, `kmem_cache_alloc`/`kmem_cache_free`
//! put the cpu freelist in front of them, an empty sheaf is not refilled
//! from the slabs (the cpu freelist and the slow path serve), a full
//! sheaf with a full barn is halved, and sheaves come from a cache of their
//! own (Linux `kzalloc`s them: its kmalloc caches have no sheaves, kmem's
//! do, and a sheaf needed to free a sheaf would recurse).
//!
//! Objects in sheaves are free: `cache_counts` (and so `/proc/slabinfo`)
//! counts those of the CPUs' sheaves and of the barns as such, exactly.
//! Double frees: freeing the object that was freed last is caught, as the
//! cpu freelist's naive check does; other double frees need `slub_debug`,
//! which turns sheaves off.

use super::*;
use core::{mem, slice};

/// A CPU's sheaf: this header, then the objects (an object of the
/// `slab_sheaf` cache, [`SHEAF_BYTES`]).
#[repr(C)]
pub struct Sheaf {
    /// Objects held (`objects[..size]`, the newest last) while the sheaf is
    /// not installed; an installed sheaf's size is its CPU's
    /// `KmemCacheCpu::sheaf_size()`, whose `sheaf_top` the sequences' commits change.
    pub size: usize,
    /// The next sheaf on a barn list (under the barn's lock).
    pub next: *mut Sheaf,
    /// How many objects the sheaf holds at most; lies just below
    /// `objects[0]`, so the double-free check of an empty sheaf compares
    /// with a count, never an object.
    pub capacity: usize,
    /// The objects.
    pub objects: [*mut u8; 0],
}

/// The sheaf of a CPU that has none: empty, with capacity 0, so both
/// sequences fall back on it without a null test (`no_sheaf`). Never
/// written: the sequences write a sheaf only below its capacity, and slow
/// paths replace it rather than fill it.
struct NoSheaf(Sheaf);

// SAFETY: never written (see above); its `next` is null.
unsafe impl Sync for NoSheaf {}

static NO_SHEAF: NoSheaf = NoSheaf(Sheaf {
    size: 0,
    next: ptr::null_mut(),
    capacity: 0,
    objects: [],
});

/// The object slots of sheaf `sh` (`&objects[0]`; no access).
#[inline(always)]
pub(crate) fn sheaf_slots(sh: *mut Sheaf) -> *mut *mut u8 {
    sh.wrapping_byte_add(core::mem::offset_of!(Sheaf, objects)) as *mut *mut u8
}

/// What a CPU without a sheaf has installed (see `NO_SHEAF`).
#[inline(always)]
pub fn no_sheaf() -> *mut Sheaf {
    ptr::addr_of!(NO_SHEAF.0) as *mut Sheaf
}

/// Most objects a sheaf holds (SLAB's largest `limit`).
pub(crate) const MAX_SHEAF_CAPACITY: usize = 120;
/// Bytes of a sheaf of `MAX_SHEAF_CAPACITY`, the `slab_sheaf` cache's
/// object size (a sheaf of a smaller capacity leaves the rest unused).
pub const SHEAF_BYTES: usize =
    core::mem::size_of::<Sheaf>() + MAX_SHEAF_CAPACITY * core::mem::size_of::<usize>();

/// Full sheaves a node's barn keeps (the kernel's `MAX_FULL_SHEAVES`).
pub(crate) const MAX_FULL_SHEAVES: usize = 10;
/// Empty sheaves a node's barn keeps (`MAX_EMPTY_SHEAVES`).
pub(crate) const MAX_EMPTY_SHEAVES: usize = 10;

/// A node's spare sheaves (`struct node_barn`), under `KmemCacheNode::barn`;
/// the number of full ones is `KmemCacheNode::barn_full`, readable without
/// the lock.
pub struct Barn {
    /// Full sheaves, through `Sheaf::next`.
    full: *mut Sheaf,
    /// Empty sheaves, through `Sheaf::next`.
    empty: *mut Sheaf,
    /// Number of empty sheaves.
    nr_empty: usize,
}

// SAFETY: the sheaves on the lists are owned by the barn, reached only
// under its lock.
unsafe impl Send for Barn {}

impl Barn {
    /// An empty barn.
    pub(crate) const fn new() -> Self {
        Barn {
            full: ptr::null_mut(),
            empty: ptr::null_mut(),
            nr_empty: 0,
        }
    }

    /// Push `sh` onto `list`.
    ///
    /// # Safety
    /// `sh` is a sheaf owned by the caller, on no list.
    unsafe fn push(list: &mut *mut Sheaf, sh: *mut Sheaf) {
        // SAFETY: caller contract.
        unsafe { (*sh).next = *list };
        *list = sh;
    }

    /// Pop the first sheaf of `list`, or null.
    fn pop(list: &mut *mut Sheaf) -> *mut Sheaf {
        let sh = *list;
        if !sh.is_null() {
            // SAFETY: sheaves on a barn list are the barn's, alive.
            *list = unsafe { (*sh).next };
        }
        sh
    }
}

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
    /// give the CPU a sheaf if it has none; if its sheaf is full, put it in
    /// the node's barn and continue on an empty one, or, with the barn full,
    /// first give the sheaf's oldest half back to the slabs. False if there
    /// is no sheaf to use (no memory for one, or the sequences are stopped for
    /// good): the caller frees to the slab.
    ///
    /// # Safety
    /// `obj` is an allocated object of `s`, checked to be one; `s` has
    /// sheaves (`sheaf_capacity > 0`).
    pub(crate) unsafe fn sheaf_free_slow(&self, s: &KmemCache, obj: *mut u8) -> bool {
        let cpu = self.platform.raw_smp_processor_id();
        // SAFETY: cpu < nr_cpu_ids.
        let c = unsafe { s.cpu(cpu) };
        if c.stopped_for_good() {
            return false;
        }
        let n = s.node(self.cpu_to_node(cpu));
        // An empty sheaf, taken before the cpu lock: to install if the CPU
        // has none, or to continue on once a full one is in the barn.
        let mut spare = if c.sheaf.load(Ordering::Acquire) == no_sheaf()
            || n.barn_full.load(Ordering::Relaxed) < MAX_FULL_SHEAVES
        {
            self.get_empty_sheaf(s, n)
        } else {
            ptr::null_mut()
        };
        // Objects to give back to the slabs: the first `nr_out` are set (not
        // zeroed: most calls give none back).
        let mut out = [const { mem::MaybeUninit::<*mut u8>::uninit() }; MAX_SHEAF_CAPACITY];
        let mut nr_out = 0;
        let double = {
            let _guard = self.cpu_lock(c, cpu);
            let mut sh = c.sheaf.load(Ordering::Relaxed);
            if sh == no_sheaf() {
                if spare.is_null() {
                    return false; // No memory for a sheaf.
                }
                c.sheaf.store(spare, Ordering::Release);
                c.set_sheaf_size(0);
                sh = mem::replace(&mut spare, ptr::null_mut());
            }
            // The installed sheaf's size is the cpu structure's.
            let mut size = c.sheaf_size();
            // SAFETY: the sheaf is ours while its sequences are stopped.
            let double = unsafe {
                if size > 0 && *sheaf_slots(sh).add(size - 1) == obj {
                    true
                } else {
                    if size >= (*sh).capacity {
                        // The barn gets the sheaf but for its newest
                        // object, which the empty sheaf starts with: a
                        // refill then has room for the object an emptied
                        // sheaf keeps (`sheaf_refill_from_barn`). Not for
                        // sheaves of one object, whose next sheaf would
                        // then hold two. Read before the barn's lock is
                        // dropped: another CPU may take the sheaf at once.
                        let carry = usize::from((*sh).capacity > 1);
                        let newest = *sheaf_slots(sh).add(size - 1);
                        (*sh).size = size - carry;
                        if !spare.is_null() && self.barn_put_full(n, sh) {
                            c.sheaf.store(spare, Ordering::Release);
                            sh = mem::replace(&mut spare, ptr::null_mut());
                            *sheaf_slots(sh) = newest;
                            size = carry;
                        } else {
                            let objects = sheaf_slots(sh);
                            nr_out = size.div_ceil(2);
                            ptr::copy_nonoverlapping(objects, out.as_mut_ptr() as *mut *mut u8, nr_out);
                            ptr::copy(objects.add(nr_out), objects, size - nr_out);
                            size -= nr_out;
                        }
                    }
                    *sheaf_slots(sh).add(size) = obj;
                    size += 1;
                    false
                }
            };
            c.set_sheaf_size(size);
            double
        };
        if !spare.is_null() {
            // SAFETY: an empty sheaf of `s`, unused.
            unsafe { self.put_empty_sheaf(n, spare) };
        }
        if double {
            self.double_free(s, obj);
        }
        // SAFETY: `out[..nr_out]` was set above to objects taken off the sheaf, ours now.
        unsafe { self.free_to_slabs(s, slice::from_raw_parts(out.as_ptr() as *const *mut u8, nr_out)) };
        true
    }

    /// Swap the calling CPU's sheaf, empty but for at most one object (see
    /// `rseq::pop`), for a full one of its node's barn
    /// (`barn_replace_empty_sheaf`); that object goes under the full one's,
    /// or back to its slab if the full sheaf has no room. True
    /// if the CPU's sheaf holds objects the allocation sequence takes (the
    /// caller pops again).
    pub(crate) fn sheaf_refill_from_barn(&self, s: &KmemCache) -> bool {
        let cpu = self.platform.raw_smp_processor_id();
        let n = s.node(self.cpu_to_node(cpu));
        if n.barn_full.load(Ordering::Relaxed) == 0 {
            return false;
        }
        // SAFETY: cpu < nr_cpu_ids.
        let c = unsafe { s.cpu(cpu) };
        if c.stopped_for_good() {
            return false;
        }
        let mut last = ptr::null_mut();
        let old = {
            let _guard = self.cpu_lock(c, cpu);
            let sh = c.sheaf.load(Ordering::Relaxed);
            // The installed sheaf's size is the cpu structure's.
            let size = c.sheaf_size();
            if size > 1 {
                return true;
            }
            let full = {
                let mut b = n.barn.lock(&self.platform);
                let full = Barn::pop(&mut b.full);
                if full.is_null() {
                    return false;
                }
                n.barn_full
                    .store(n.barn_full.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
                full
            };
            c.sheaf.store(full, Ordering::Release);
            // SAFETY: a full sheaf of the barn, ours now.
            let mut full_size = unsafe { (*full).size };
            if sh != no_sheaf() {
                // SAFETY: detached above, under the lock; at most one object.
                unsafe {
                    if size == 1 {
                        last = *sheaf_slots(sh);
                    }
                    (*sh).size = 0;
                }
            }
            // The object the old sheaf kept goes under the full sheaf's
            // objects if there is room (barn sheaves leave one slot, see
            // `sheaf_free_slow`): not on top, where the next allocation
            // would take it (see `rseq::pop`).
            // SAFETY: the full sheaf is ours; `full_size` is below its capacity.
            unsafe {
                if !last.is_null() && full_size < (*full).capacity {
                    let slots = sheaf_slots(full);
                    *slots.add(full_size) = *slots;
                    *slots = mem::replace(&mut last, ptr::null_mut());
                    full_size += 1;
                }
            }
            c.set_sheaf_size(full_size);
            sh
        };
        if !last.is_null() {
            // SAFETY: an object taken off the sheaf, ours now.
            unsafe { self.free_to_slabs(s, &[last]) };
        }
        if old != no_sheaf() {
            // SAFETY: the CPU's former sheaf, emptied and detached above.
            unsafe { self.put_empty_sheaf(n, old) };
        }
        true
    }

    /// An empty sheaf of `s`: one of node `n`'s barn, else a new one from
    /// the `slab_sheaf` cache. Null if there is none (no memory, or no
    /// `slab_sheaf` cache: early in the boot).
    fn get_empty_sheaf(&self, s: &KmemCache, n: &KmemCacheNode) -> *mut Sheaf {
        {
            let mut b = n.barn.lock(&self.platform);
            let sh = Barn::pop(&mut b.empty);
            if !sh.is_null() {
                b.nr_empty -= 1;
                return sh;
            }
        }
        let Some(sc) = NonNull::new(self.slab.sheaf_cache.load(Ordering::Acquire)) else {
            return ptr::null_mut();
        };
        // SAFETY: the sheaf cache, live from the boot on.
        let Ok(mem) = (unsafe { self.kmem_cache_alloc(sc, GFP_NOWAIT | __GFP_NOWARN) }) else {
            return ptr::null_mut();
        };
        let sh = mem.as_ptr() as *mut Sheaf;
        // SAFETY: a fresh object of SHEAF_BYTES, ours.
        unsafe {
            (*sh).size = 0;
            (*sh).next = ptr::null_mut();
            (*sh).capacity = s.sheaf_capacity;
        }
        sh
    }

    /// Keep empty sheaf `sh` in node `n`'s barn, or free it if the barn has
    /// `MAX_EMPTY_SHEAVES`.
    ///
    /// # Safety
    /// `sh` is an empty sheaf of the cache of `n`, owned by the caller.
    unsafe fn put_empty_sheaf(&self, n: &KmemCacheNode, sh: *mut Sheaf) {
        {
            let mut b = n.barn.lock(&self.platform);
            if b.nr_empty < MAX_EMPTY_SHEAVES {
                // SAFETY: caller contract.
                unsafe { Barn::push(&mut b.empty, sh) };
                b.nr_empty += 1;
                return;
            }
        }
        // SAFETY: caller contract: the sheaf is ours.
        unsafe { self.free_sheaf(sh) };
    }

    /// Give sheaf `sh` back to the `slab_sheaf` cache.
    ///
    /// # Safety
    /// `sh` came from [`Kmem::get_empty_sheaf`], is on no list and is the
    /// caller's; its objects were taken off it.
    unsafe fn free_sheaf(&self, sh: *mut Sheaf) {
        // Every sheaf but `no_sheaf()` (never freed) is an object of the
        // sheaf cache, which exists before the first sheaf and is never
        // destroyed.
        let sc = self.slab.sheaf_cache.load(Ordering::Acquire);
        // SAFETY: `sc` is that cache (non-null); caller contract for `sh`.
        unsafe { self.kmem_cache_free(NonNull::new_unchecked(sc), sh as *mut u8) };
    }

    /// Put full sheaf `sh` in node `n`'s barn unless it holds
    /// `MAX_FULL_SHEAVES` already.
    ///
    /// # Safety
    /// `sh` is a sheaf of the cache of `n`, owned by the caller (detached
    /// by the caller on success).
    unsafe fn barn_put_full(&self, n: &KmemCacheNode, sh: *mut Sheaf) -> bool {
        let mut b = n.barn.lock(&self.platform);
        let nr = n.barn_full.load(Ordering::Relaxed);
        if nr >= MAX_FULL_SHEAVES {
            return false;
        }
        // SAFETY: caller contract.
        unsafe { Barn::push(&mut b.full, sh) };
        n.barn_full.store(nr + 1, Ordering::Relaxed);
        true
    }

    /// Empty every node's barn of `s`: the objects of its full sheaves go
    /// back to their slabs, and all its sheaves to `slab_sheaf`.
    pub(crate) fn flush_barns(&self, s: &KmemCache) {
        for nid in 0..self.nr_nodes {
            let n = s.node(nid);
            let (mut full, mut empty) = {
                let mut b = n.barn.lock(&self.platform);
                n.barn_full.store(0, Ordering::Relaxed);
                b.nr_empty = 0;
                (
                    mem::replace(&mut b.full, ptr::null_mut()),
                    mem::replace(&mut b.empty, ptr::null_mut()),
                )
            };
            loop {
                let sh = Barn::pop(&mut full);
                if sh.is_null() {
                    break;
                }
                // SAFETY: detached above: it and its objects are ours.
                unsafe {
                    let objs = core::slice::from_raw_parts(sheaf_slots(sh), (*sh).size);
                    self.free_to_slabs(s, objs);
                    self.free_sheaf(sh);
                }
            }
            loop {
                let sh = Barn::pop(&mut empty);
                if sh.is_null() {
                    break;
                }
                // SAFETY: detached above.
                unsafe { self.free_sheaf(sh) };
            }
        }
    }

    /// Free objects in the full sheaves of node `n`'s barn, and whether it
    /// holds any sheaf (for the shrinker).
    pub(crate) fn barn_objects(&self, n: &KmemCacheNode) -> (usize, bool) {
        let b = n.barn.lock(&self.platform);
        let mut objs = 0;
        let mut sh = b.full;
        while !sh.is_null() {
            // SAFETY: sheaves on the list are the barn's, walked under its lock.
            unsafe {
                objs += (*sh).size;
                sh = (*sh).next;
            }
        }
        (objs, !b.full.is_null() || !b.empty.is_null())
    }

    /// Empty `cpu`'s sheaf of `s` into the slabs and give the sheaf back.
    pub(crate) fn flush_cpu_sheaf(&self, s: &KmemCache, cpu: usize) {
        // SAFETY: cpu < nr_cpus (callers iterate below it).
        let c = unsafe { s.cpu(cpu) };
        if c.sheaf.load(Ordering::Acquire) == no_sheaf() {
            return;
        }
        let mut out = [ptr::null_mut::<u8>(); MAX_SHEAF_CAPACITY];
        let (sh, n) = {
            let _guard = self.cpu_lock(c, cpu);
            // Detached under the lock with the sequences stopped; no
            // sequence can reach it any more. Its size was the cpu
            // structure's.
            let n = c.sheaf_size();
            let sh = c.sheaf.swap(no_sheaf(), Ordering::AcqRel);
            if sh == no_sheaf() {
                return;
            }
            c.set_sheaf_size(0);
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
        // SAFETY: the sheaf, detached above and emptied.
        unsafe { self.free_sheaf(sh) };
    }

    /// Give objects of `s` back to their slabs: one `__slab_free` per run of
    /// consecutive objects of one slab, chained through their free pointers
    /// (`build_detached_freelist`). A run ends at the first object outside
    /// its slab's pages; that object's slab is found without a check
    /// (`slab_head_of`: it was checked when it was freed).
    ///
    /// # Safety
    /// Every object is an allocated object of `s`, owned by the caller.
    unsafe fn free_to_slabs(&self, s: &KmemCache, objs: &[*mut u8]) {
        let Some((&first, rest)) = objs.split_first() else {
            return;
        };
        // The address and length of the pages of the slab headed by `slab`.
        let pages = |slab: *mut Page| {
            let start = self.lowmem_or_direct_address(self.map.page_to_pfn(slab)) as usize;
            (start, self.slab_bytes(slab))
        };
        // SAFETY: an object of a slab of `s` (caller contract).
        let mut slab = unsafe { self.slab_head_of(first) };
        let (mut start, mut len) = pages(slab);
        let (mut head, mut tail, mut cnt) = (first, first, 1);
        for &obj in rest {
            if (obj as usize).wrapping_sub(start) >= len {
                // SAFETY: a chain of `cnt` objects of `slab`, ours.
                unsafe { self.slab_free_chain(s, slab, head, tail, cnt) };
                // SAFETY: as above.
                slab = unsafe { self.slab_head_of(obj) };
                (start, len) = pages(slab);
                (head, tail, cnt) = (obj, obj, 1);
                continue;
            }
            // SAFETY: both are our objects.
            unsafe { s.set_freepointer(tail, obj) };
            tail = obj;
            cnt += 1;
        }
        // SAFETY: as above.
        unsafe { self.slab_free_chain(s, slab, head, tail, cnt) };
    }
}
