//! SLUB's allocation and free paths (`slab_alloc_node`, `___slab_alloc`,
//! `do_slab_free`, `__slab_free`).
//!
//! **Fast paths.** `kmem_cache_alloc` reads this CPU's (freelist, tid), the
//! first object's free pointer, and swaps (object, tid) for (next, tid+1)
//! with `cmpxchg16b`; `kmem_cache_free` of an object of the cpu slab pushes it
//! the same way. Nothing is locked and nothing is disabled: if the thread was
//! preempted or moved to another CPU in between, the tid no longer matches and
//! it retries.
//!
//! The free fast path recognises an object of the cpu slab by its address
//! (`[slab_start, slab_start + slab_bytes)`, kept beside the freelist), so it
//! needs neither the object's `struct page` nor a lock; any other object
//! takes the slow path, which finds its slab and checks its cache.
//!
//! **The per-CPU lock** (`c.lock`, the kernel's `local_lock`) serialises the
//! slow paths of one CPU's structure: replacing the cpu slab, the cpu partial
//! list. A cpu slab is installed by publishing its address range *before*
//! the freelist swap that bumps the tid, and retired by clearing the range
//! *before* the swap that takes the freelist — so a fast-path free that raced
//! with either either lands on a freelist the slow path accounts for, or
//! fails its swap (the tid moved) and retries.
//!
//! **Remote frees** (objects of a slab that is not this CPU's cpu slab) swap
//! (slab freelist, counters) with `cmpxchg16b`. Only a free that changes the
//! slab's list membership — a full slab gaining a free object, a slab
//! becoming empty — takes the node's `list_lock`.
//!
//! **Fresh slabs are linked a page at a time** (`link_objects`; Linux links
//! every object of a new slab in `allocate_slab`). A new slab of a cache
//! whose objects need no setup becomes the cpu slab with the objects of its
//! first page on its freelist; the slow path links the next page's when
//! the cpu freelist runs dry, and retiring the cpu slab links the rest, so
//! every slab off a CPU has all its free objects on its freelist. Memory a
//! program never allocates is never written: one `kmalloc(4096)` touches
//! one page of its 8-page `kmalloc-4k` slab.

use super::*;
use crate::page_alloc::zone::lru_to_page;
use crate::spinlock::SpinLockGuard;

/// A cpu structure's `lock` held by a slow path, with its fast paths
/// stopped in rseq mode (`Kmem::cpu_lock`); dropping it restarts them, then
/// unlocks.
pub(crate) struct CpuLock<'a, P: Platform> {
    c: &'a KmemCacheCpu,
    stopped: bool,
    _guard: SpinLockGuard<'a, (), P>,
}

impl<P: Platform> Drop for CpuLock<'_, P> {
    fn drop(&mut self) {
        if self.stopped {
            let bits = self.c.stopped.load(Ordering::Relaxed);
            self.c
                .stopped
                .store(bits & !super::rseq::STOP_SLOW_PATH, Ordering::Relaxed);
            self.c.rseq_start();
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// `kmem_cache_alloc`. The caller's location is recorded by debug caches
    /// (`SLAB_STORE_USER`): a constant, free on the fast path.
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kmem_cache_alloc(
        &self,
        s: NonNull<KmemCache>,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: a live cache of this machine (created and not destroyed).
        if let Some(obj) = unsafe { self.kmem_cache_alloc_fast(s, gfp) } {
            return Ok(obj);
        }
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { self.__slab_alloc(s, gfp) }
    }

    /// The rest of [`Kmem::kmem_cache_alloc`] once
    /// [`Kmem::kmem_cache_alloc_fast`] returned None (the kernel's
    /// `__slab_alloc`): for callers that run the fast path inline and the
    /// rest out of line, so the fast path is not run twice.
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    #[inline(always)]
    #[track_caller]
    pub unsafe fn __slab_alloc(&self, s: NonNull<KmemCache>, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: the caller holds a live cache.
        let c = unsafe { s.as_ref() };
        if P::RSEQ_AREA {
            self.slab_alloc_fallback(c, gfp)
        } else {
            self.slab_alloc_slow(c, gfp, -1)
        }
    }

    /// The per-CPU fast path of [`Kmem::kmem_cache_alloc`] alone: an object
    /// from this CPU's freelist, or None with nothing done (then
    /// `kmem_cache_alloc` does the rest), for callers that keep everything
    /// else out of line (the malloc override's `malloc`).
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    #[inline(always)]
    pub unsafe fn kmem_cache_alloc_fast(&self, s: NonNull<KmemCache>, gfp: Gfp) -> Option<NonNull<u8>> {
        if P::RSEQ_AREA {
            // SAFETY: a live cache of this machine (created and not destroyed).
            return unsafe { Self::kmem_cache_alloc_rseq(s, gfp) };
        }
        // SAFETY: the caller holds a live cache.
        self.cas_alloc_fast(unsafe { s.as_ref() }, gfp)
    }

    /// [`Kmem::kmem_cache_alloc_fast`] on a platform with an rseq area
    /// (`Platform::RSEQ_AREA`; None on others): the restartable sequence
    /// needs the cache alone, so a caller that keeps the machine's address
    /// in memory loads it only for the slow path. None also whenever the
    /// machine is not in rseq mode.
    ///
    /// # Safety
    /// `s` is a live cache of a machine (created, not destroyed).
    #[inline(always)]
    pub unsafe fn kmem_cache_alloc_rseq(s: NonNull<KmemCache>, gfp: Gfp) -> Option<NonNull<u8>> {
        // SAFETY: the caller holds a live cache.
        Self::slab_alloc_rseq(s, unsafe { s.as_ref() }.rseq_area, gfp, false)
    }

    /// `kmalloc`'s [`Kmem::kmem_cache_alloc_rseq`]: the sheaf first
    /// (`rseq::sheaf_pop`), then the cpu freelist, the order of `kfree`,
    /// which frees to the sheaf first (libkmalloc's `malloc` too).
    ///
    /// The rseq offset comes from the caller: the machine's
    /// `Platform::rseq_offset()`, of which every cache keeps a copy. Read
    /// from the cache, the offset would wait for the load of the cache
    /// pointer, and the load of the CPU number for it; `kmalloc` takes the
    /// machine's and libkmalloc's `malloc` a static of its own, loaded
    /// beside the cache (mixed sizes on one thread: 5 % faster).
    ///
    /// # Safety
    /// `rseq_area` is the machine's `Platform::rseq_offset()` (the value
    /// the cache keeps): the sequences address the thread's rseq area with
    /// it.
    #[inline(always)]
    pub unsafe fn kmalloc_alloc_rseq_area(
        s: NonNull<KmemCache>,
        rseq_area: isize,
        gfp: Gfp,
    ) -> Option<NonNull<u8>> {
        Self::slab_alloc_rseq(s, rseq_area, gfp, true)
    }

    /// The allocation sequences on the rseq area at `rseq_area` from the
    /// thread pointer: the sheaf alone first if `sheaf_first`, then the cpu
    /// freelist and the sheaf behind it (`rseq::pop`).
    #[inline(always)]
    fn slab_alloc_rseq(
        s: NonNull<KmemCache>,
        rseq_area: isize,
        gfp: Gfp,
        sheaf_first: bool,
    ) -> Option<NonNull<u8>> {
        if !P::RSEQ_AREA {
            return None;
        }
        // SAFETY: the caller holds a live cache.
        let c = unsafe { s.as_ref() };
        // The sequences pop the sheaf (`sheaf.rs`) before or behind the
        // freelist: a program that keeps many objects alive allocates from
        // it whenever the cpu slab is used up. Debug caches never get a cpu
        // freelist or a sheaf, so they fall through to the slow path.
        let mut obj = if sheaf_first {
            // The machine is in rseq mode or its cpu structures are stopped for good (STOP_CAS).
            // SAFETY: RSEQ_AREA: every thread has an area and the cache's cpu array covers its CPU ids.
            unsafe { rseq::sheaf_pop(rseq_area, c) }
        } else {
            ptr::null_mut()
        };
        if obj.is_null() {
            // SAFETY: as above.
            obj = unsafe { rseq::pop(rseq_area, c) };
            if obj.is_null() {
                return None;
            }
        }
        // Caches with hooks never pass the sequences (STOP_HOOKS).
        if gfp.intersects(__GFP_ZERO) {
            // SAFETY: the object is ours now.
            unsafe { alloc_hooks(c, obj, gfp) };
        }
        // SAFETY: checked non-null.
        Some(unsafe { NonNull::new_unchecked(obj) })
    }

    /// The CAS fast path: pop this CPU's freelist with `cmpxchg16b` on
    /// (freelist, tid). None if it is empty or the CAS lost a race.
    #[inline(always)]
    fn cas_alloc_fast(&self, c: &KmemCache, gfp: Gfp) -> Option<NonNull<u8>> {
        let cpu = self.platform.raw_smp_processor_id();
        // SAFETY: cpu < nr_cpu_ids.
        let cs = unsafe { c.cpu(cpu) };
        let (obj, tid) = cs.fl.load();
        if obj == 0 {
            return None;
        }
        // SAFETY: `obj` is (or was until a racing swap) a free object of this cache.
        let next = unsafe { c.get_freepointer(obj as *mut u8) } as usize;
        if !cs.fl.cas((obj, tid), (next, tid.wrapping_add(1))) {
            return None;
        }
        let obj = obj as *mut u8;
        if gfp.intersects(__GFP_ZERO) || c.alloc_hooks != 0 {
            // SAFETY: the object is ours now.
            unsafe { alloc_hooks(c, obj, gfp) };
        }
        // SAFETY: objects are never null.
        Some(unsafe { NonNull::new_unchecked(obj) })
    }

    /// Where declined allocation sequences go (the cpu freelist and the
    /// sheaf were empty, or stopped): the CAS fast path if the machine is
    /// not in rseq mode; else a full sheaf from the barn for the empty one;
    /// then the slow path.
    #[inline(never)]
    #[track_caller]
    fn slab_alloc_fallback(&self, c: &KmemCache, gfp: Gfp) -> Result<NonNull<u8>, AllocError> {
        if !self.slab.rseq.load(Ordering::Relaxed) {
            if let Some(obj) = self.cas_alloc_fast(c, gfp) {
                return Ok(obj);
            }
        } else if c.sheaf_capacity != 0 && self.sheaf_refill_from_barn(c) {
            // SAFETY: as in `kmem_cache_alloc`; only sheaf caches have sheaves.
            let obj = unsafe { rseq::pop(c.rseq_area, c) };
            if let Some(obj) = NonNull::new(obj) {
                if gfp.intersects(__GFP_ZERO) {
                    // SAFETY: the object is ours now.
                    unsafe { alloc_hooks(c, obj.as_ptr(), gfp) };
                }
                return Ok(obj);
            }
        }
        self.slab_alloc_slow(c, gfp, -1)
    }

    /// `kmem_cache_zalloc`.
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    #[inline]
    #[track_caller]
    pub unsafe fn kmem_cache_zalloc(
        &self,
        s: NonNull<KmemCache>,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { self.kmem_cache_alloc(s, gfp | __GFP_ZERO) }
    }

    /// `kmem_cache_alloc_node`: prefer memory of node `nid`.
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    #[track_caller]
    pub unsafe fn kmem_cache_alloc_node(
        &self,
        s: NonNull<KmemCache>,
        gfp: Gfp,
        nid: i32,
    ) -> Result<NonNull<u8>, AllocError> {
        // A node with no memory for slabs (here: one the machine lacks) is
        // `NUMA_NO_NODE`, as `___slab_alloc` treats a node not in `slab_nodes`.
        if nid < 0 || nid as usize >= self.nr_nodes || self.nr_nodes == 1 {
            // SAFETY: a live cache of this machine (created and not destroyed).
            return unsafe { self.kmem_cache_alloc(s, gfp) };
        }
        // SAFETY: the caller holds a live cache.
        self.slab_alloc_slow(unsafe { s.as_ref() }, gfp, nid)
    }

    /// The slow path: everything but a pop from a valid cpu freelist.
    #[inline(never)]
    #[track_caller]
    fn slab_alloc_slow(&self, s: &KmemCache, gfp: Gfp, nid: i32) -> Result<NonNull<u8>, AllocError> {
        if gfp.intersects(GFP_SLAB_BUG_MASK) {
            let fixed = gfp.without(GFP_SLAB_BUG_MASK);
            self.warn(format_args!(
                "Unexpected gfp: {:#x} ({}). Fixing up to gfp: {:#x} ({}). Fix your code!",
                gfp.bits() & GFP_SLAB_BUG_MASK.bits(),
                Gfp(gfp.bits() & GFP_SLAB_BUG_MASK.bits()),
                fixed.bits(),
                fixed
            ));
            return self.slab_alloc_slow(s, fixed, nid);
        }
        // A sleeping allocation from atomic context is reported (once per call
        // site) and does not sleep: new slab pages come from free lists only.
        let gfp = if gfp.allows_blocking() && self.might_sleep_at(core::panic::Location::caller()) {
            gfp.without(__GFP_DIRECT_RECLAIM)
        } else {
            gfp
        };
        let obj = if s.debug() {
            self.debug_alloc(s, gfp, nid, core::panic::Location::caller())
        } else {
            self.slab_alloc_cpu_slow(s, gfp, nid)
        };
        match obj {
            Some(o) => {
                if s.want_init_on_alloc(gfp) {
                    // SAFETY: the object is ours.
                    unsafe { ptr::write_bytes(o, 0, s.object_size) };
                } else if s.init_on_free && s.freeptr_inside() && !s.debug() {
                    // SAFETY: the object is ours.
                    unsafe { s_wipe_freeptr(s, o) };
                }
                // SAFETY: objects are never null.
                Ok(unsafe { NonNull::new_unchecked(o) })
            }
            None => {
                if !gfp.intersects(__GFP_NOWARN) {
                    self.slab_out_of_memory(s, gfp, nid);
                }
                Err(AllocError)
            }
        }
    }

    /// `___slab_alloc` under this CPU's lock.
    fn slab_alloc_cpu_slow(&self, s: &KmemCache, gfp: Gfp, nid: i32) -> Option<*mut u8> {
        loop {
            let cpu = self.platform.raw_smp_processor_id();
            // SAFETY: cpu < nr_cpu_ids.
            let c = unsafe { s.cpu(cpu) };
            let guard = self.cpu_lock(c, cpu);
            CpuStats::inc(&c.stat.alloc_slowpath);
            // Someone freed onto the cpu freelist meanwhile: take from it.
            let slab = c.slab.load(Ordering::Acquire);
            let (obj, tid) = c.fl.load();
            if obj != 0 && !slab.is_null() && self.node_match(slab, nid) {
                // SAFETY: a free object of this cache.
                let next = unsafe { s.get_freepointer(obj as *mut u8) } as usize;
                if self.cpu_fl_swap(c, (obj, tid), (next, tid.wrapping_add(1))) {
                    return Some(obj as *mut u8);
                }
                continue;
            }
            // A fresh cpu slab's next page of objects.
            if !slab.is_null() && c.unbuilt.load(Ordering::Relaxed) != 0 && self.node_match(slab, nid) {
                if let Some(obj) = self.cpu_slab_link_more(s, c, slab) {
                    drop(guard);
                    return Some(obj);
                }
            }
            // Retire the cpu slab: clear its range, then take the freelist.
            if !slab.is_null() {
                let fl = self.cpu_slab_retire(s, c);
                if self.node_match(slab, nid) {
                    // get_freelist: the remote frees collected on the frozen slab.
                    // SAFETY: `slab` was our cpu slab, still frozen.
                    let remote = unsafe { self.get_freelist(slab) };
                    if remote != 0 {
                        // Keep the slab: hand out from its freelist.
                        if fl != 0 {
                            // Objects pushed on the old freelist go back to the slab.
                            // SAFETY: they are free objects of `slab`, which stays frozen.
                            unsafe { self.return_to_slab(s, slab, fl) };
                        }
                        // SAFETY: `remote` heads free objects of this cache.
                        let next = unsafe { s.get_freepointer(remote as *mut u8) } as usize;
                        // SAFETY: our frozen slab and its free objects.
                        unsafe { self.cpu_slab_install(s, c, slab, next) };
                        drop(guard);
                        return Some(remote as *mut u8);
                    }
                }
                // SAFETY: `slab` was our frozen cpu slab; `fl` its cpu freelist.
                unsafe { self.deactivate_slab(s, slab, fl) };
            }
            // new_slab: the cpu partial list first.
            let mut got: Option<(*mut Page, usize)> = None;
            loop {
                let part = c.partial.load(Ordering::Acquire);
                if part.is_null() {
                    break;
                }
                // SAFETY: cpu partial slabs are linked through lru.next under our lock.
                let next = unsafe { (*part).lru.next } as *mut Page;
                c.partial.store(next, Ordering::Release);
                if next.is_null() {
                    // nothing
                } else {
                    // SAFETY: the chain head keeps the count (`cpu_partial_slabs`).
                    unsafe { set_cpu_partial_slabs(next, cpu_partial_slabs(part).saturating_sub(1)) };
                }
                if !self.node_match(part, nid) {
                    // SAFETY: an unfrozen slab of this cache, off every list.
                    unsafe { self.put_partial_to_node(s, part) };
                    continue;
                }
                // SAFETY: an unfrozen slab of this cache, off every list.
                let fl = unsafe { self.freeze_slab(part) };
                if fl == 0 {
                    // Became full meanwhile: it lives on no list.
                    continue;
                }
                CpuStats::inc(&c.stat.cpu_partial_alloc);
                got = Some((part, fl));
                break;
            }
            // new_objects: the node partial lists, then a new slab.
            if got.is_none() {
                got = self.get_partial(s, c, nid);
            }
            if got.is_none() {
                drop(guard);
                let (slab, linked) = self.new_slab(s, gfp, nid, true)?;
                let g2 = self.cpu_lock(c, cpu);
                // The unlinked objects are counted in use: they are ours.
                // SAFETY: a new slab, frozen, all objects free.
                let fl = unsafe { self.freeze_slab(slab) };
                CpuStats::inc(&c.stat.alloc_slab);
                // SAFETY: our frozen slab.
                let objects = Counters(unsafe { slab_fl(slab) }.hi.load(Ordering::Acquire)).objects();
                if !c.slab.load(Ordering::Acquire).is_null() {
                    // Another thread refilled this CPU meanwhile: keep ours on
                    // the partial list, every object linked.
                    // SAFETY: the objects from `linked` on are free and on no freelist.
                    let fl = unsafe { Self::link_objects(s, self.slab_base(slab), linked, objects, fl).0 };
                    // SAFETY: we own the frozen slab; give its objects back and unfreeze it.
                    unsafe { self.deactivate_slab(s, slab, fl) };
                    drop(g2);
                    continue;
                }
                // SAFETY: `fl` heads the slab's free objects.
                let next = unsafe { s.get_freepointer(fl as *mut u8) } as usize;
                // SAFETY: our frozen slab and its free objects.
                unsafe { self.cpu_slab_install(s, c, slab, next) };
                c.unbuilt.store(
                    if linked < objects { linked as u32 } else { 0 },
                    Ordering::Relaxed,
                );
                return Some(fl as *mut u8);
            }
            let (slab, fl) = got.unwrap_or((ptr::null_mut(), 0));
            // SAFETY: `fl` heads the free objects of the slab we froze.
            let next = unsafe { s.get_freepointer(fl as *mut u8) } as usize;
            // SAFETY: our frozen slab and its free objects.
            unsafe { self.cpu_slab_install(s, c, slab, next) };
            drop(guard);
            return Some(fl as *mut u8);
        }
    }

    /// Take `cpu`'s structure for a slow path that may change its freelist:
    /// its `lock`, and in rseq mode its fast paths stopped (see `rseq.rs`):
    /// set `STOP_SLOW_PATH` and the stopping bounds, then make sure no
    /// sequence that missed them can still commit — trivially so if we run
    /// on `cpu` now, else by the platform's fence.
    pub(crate) fn cpu_lock<'a>(&'a self, c: &'a KmemCacheCpu, cpu: usize) -> CpuLock<'a, P> {
        let guard = c.lock.lock(&self.platform);
        let stopped = self.slab.rseq.load(Ordering::Relaxed);
        if stopped {
            let bits = c.stopped.load(Ordering::Relaxed);
            c.stopped.store(bits | rseq::STOP_SLOW_PATH, Ordering::Relaxed);
            c.rseq_stop();
            self.rseq_stop_sync(cpu);
        }
        CpuLock {
            c,
            stopped,
            _guard: guard,
        }
    }

    /// Swap a cpu freelist in a slow path (under [`Kmem::cpu_lock`]): in
    /// rseq mode the slow path owns the freelist (its sequences are stopped),
    /// so plain stores do; otherwise the fast paths' `cmpxchg16b`.
    #[inline(always)]
    fn cpu_fl_swap(&self, c: &KmemCacheCpu, old: (usize, usize), new: (usize, usize)) -> bool {
        if self.slab.rseq.load(Ordering::Relaxed) {
            debug_assert_ne!(c.stopped.load(Ordering::Relaxed), 0);
            if c.fl.lo.load(Ordering::Relaxed) != old.0 {
                return false;
            }
            c.fl.hi.store(new.1, Ordering::Relaxed);
            c.fl.lo.store(new.0, Ordering::Release);
            return true;
        }
        c.fl.cas(old, new)
    }

    #[inline(always)]
    fn node_match(&self, slab: *mut Page, nid: i32) -> bool {
        nid < 0
            || self
                .page_zone_by_pfn(self.map.page_to_pfn(slab))
                .is_some_and(|z| z.node as i32 == nid)
    }

    /// Retire this CPU's cpu slab (`c.lock` held): stop fast frees from
    /// recognising it, then take the freelist (bumping the tid, so a free that
    /// saw the old range fails its swap). Returns the freelist taken, with
    /// the slab's objects not linked yet in front of it.
    fn cpu_slab_retire(&self, s: &KmemCache, c: &KmemCacheCpu) -> usize {
        c.slab_bytes.store(0, Ordering::Release);
        let mut fl = loop {
            let (fl, tid) = c.fl.load();
            if self.cpu_fl_swap(c, (fl, tid), (0, tid.wrapping_add(1))) {
                break fl;
            }
        };
        let slab = c.slab.swap(ptr::null_mut(), Ordering::AcqRel);
        let unbuilt = c.unbuilt.swap(0, Ordering::Relaxed) as usize;
        if unbuilt != 0 {
            // SAFETY: our frozen cpu slab; its objects from `unbuilt` on are free and on no freelist.
            unsafe {
                let objects = Counters(slab_fl(slab).hi.load(Ordering::Acquire)).objects();
                fl = Self::link_objects(s, self.slab_base(slab), unbuilt, objects, fl).0;
            }
        }
        fl
    }

    /// The cpu slab's next page of objects not linked yet, if it has one
    /// (`c.lock` held, the cpu freelist empty): link them, hand out the first
    /// and put the rest on the cpu freelist. See [`Kmem::link_objects`].
    fn cpu_slab_link_more(&self, s: &KmemCache, c: &KmemCacheCpu, slab: *mut Page) -> Option<*mut u8> {
        let from = c.unbuilt.load(Ordering::Relaxed) as usize;
        if from == 0 {
            return None;
        }
        // SAFETY: our frozen cpu slab.
        let objects = Counters(unsafe { slab_fl(slab) }.hi.load(Ordering::Acquire)).objects();
        let base = self.slab_base(slab);
        let to = Self::first_page_end(s, base, from, objects);
        c.unbuilt
            .store(if to < objects { to as u32 } else { 0 }, Ordering::Relaxed);
        // SAFETY: the objects `[from, to)` are the cpu slab's, free and on no freelist.
        let (head, tail) = unsafe { Self::link_objects(s, base, from, to, 0) };
        loop {
            // Frees may land on the freelist meanwhile (the CAS fast paths):
            // our chain goes in front of them.
            let (cur, tid) = c.fl.load();
            // SAFETY: `tail` is ours until the swap publishes the chain.
            unsafe { s.set_freepointer(tail as *mut u8, cur as *mut u8) };
            // SAFETY: as above.
            let next = unsafe { s.get_freepointer(head as *mut u8) } as usize;
            if self.cpu_fl_swap(c, (cur, tid), (next, tid.wrapping_add(1))) {
                return Some(head as *mut u8);
            }
        }
    }

    /// Install a frozen slab as this CPU's cpu slab with the chain `fl` of its
    /// free objects (`c.lock` held, no cpu slab installed). The range is
    /// published first; a free that pushes onto the (empty) freelist before
    /// the swap below is merged in.
    ///
    /// # Safety
    /// `slab` is a frozen slab of `s` owned by the caller; `fl` a chain of its free objects.
    unsafe fn cpu_slab_install(&self, s: &KmemCache, c: &KmemCacheCpu, slab: *mut Page, fl: usize) {
        c.slab.store(slab, Ordering::Release);
        // SAFETY: our frozen slab's counters.
        let objects = Counters(unsafe { slab_fl(slab) }.hi.load(Ordering::Acquire)).objects();
        c.slab_start
            .store(self.slab_base(slab) as usize, Ordering::Release);
        c.slab_bytes.store(objects * s.size, Ordering::Release);
        let mut tail = 0;
        loop {
            let (cur, tid) = c.fl.load();
            let new = if fl == 0 {
                cur
            } else {
                // Frees landed on the freelist meanwhile: append them to our
                // chain. Once the tail has been linked, every attempt links
                // it again, to null if the freelist is empty now: a failed
                // swap may have seen objects that a racing allocation has
                // taken since (it left the tail pointing at an object in use).
                if cur != 0 && tail == 0 {
                    tail = Self::chain_tail(s, fl).0;
                }
                if tail != 0 {
                    // SAFETY: `tail` is our free object.
                    unsafe { s.set_freepointer(tail as *mut u8, cur as *mut u8) };
                }
                fl
            };
            if self.cpu_fl_swap(c, (cur, tid), (new, tid.wrapping_add(1))) {
                return;
            }
        }
    }

    /// `get_freelist`: take a frozen slab's freelist, marking all objects in use.
    ///
    /// # Safety
    /// `slab` is a frozen slab owned by the caller.
    unsafe fn get_freelist(&self, slab: *mut Page) -> usize {
        // SAFETY: caller contract.
        let d = unsafe { slab_fl(slab) };
        loop {
            let (fl, cnt) = d.load();
            let c = Counters(cnt);
            let new = c.with_inuse(c.objects());
            if d.cas((fl, cnt), (0, new.0)) {
                return fl;
            }
        }
    }

    /// Freeze an unfrozen slab (taken off all lists by the caller) and take
    /// its freelist; returns 0 if it had no free object (it stays unfrozen).
    ///
    /// # Safety
    /// `slab` is a slab of `s` the caller took off every list.
    unsafe fn freeze_slab(&self, slab: *mut Page) -> usize {
        // SAFETY: caller contract.
        let d = unsafe { slab_fl(slab) };
        loop {
            let (fl, cnt) = d.load();
            if fl == 0 {
                return 0;
            }
            let c = Counters(cnt);
            let new = c.with_inuse(c.objects()).with_frozen(true);
            if d.cas((fl, cnt), (0, new.0)) {
                return fl;
            }
        }
    }

    /// Push a chain of free objects back onto a frozen slab's freelist.
    ///
    /// # Safety
    /// The chain's objects belong to `slab`, which the caller keeps frozen.
    unsafe fn return_to_slab(&self, s: &KmemCache, slab: *mut Page, chain: usize) {
        let (tail, cnt) = Self::chain_tail(s, chain);
        // SAFETY: caller contract.
        let d = unsafe { slab_fl(slab) };
        loop {
            let (fl, c) = d.load();
            // SAFETY: `tail` is our free object.
            unsafe { s.set_freepointer(tail as *mut u8, fl as *mut u8) };
            let nc = Counters(c);
            let new = nc.with_inuse(nc.inuse() - cnt);
            if d.cas((fl, c), (chain, new.0)) {
                return;
            }
        }
    }

    fn chain_tail(s: &KmemCache, chain: usize) -> (usize, usize) {
        let mut tail = chain;
        let mut n = 1;
        loop {
            // SAFETY: walking a private chain of free objects.
            let next = unsafe { s.get_freepointer(tail as *mut u8) } as usize;
            if next == 0 {
                return (tail, n);
            }
            tail = next;
            n += 1;
        }
    }

    /// `deactivate_slab`: a cpu slab stops being one. Its cpu freelist goes
    /// back to the slab, the slab unfreezes, and lands on the node partial
    /// list, on no list (full), or back in the page allocator (empty, beyond
    /// `min_partial`).
    ///
    /// # Safety
    /// `slab` is a frozen slab of `s` owned by the caller; `fl` is a chain
    /// (possibly empty) of its free objects.
    pub(crate) unsafe fn deactivate_slab(&self, s: &KmemCache, slab: *mut Page, fl: usize) {
        let (tail, cnt) = if fl != 0 { Self::chain_tail(s, fl) } else { (0, 0) };
        // SAFETY: caller contract.
        let d = unsafe { slab_fl(slab) };
        let nid = self.slab_nid(slab);
        let n = s.node(nid);
        let new = loop {
            let (old_fl, c) = d.load();
            let mut new_fl = old_fl;
            if fl != 0 {
                // SAFETY: `tail` is our free object.
                unsafe { s.set_freepointer(tail as *mut u8, old_fl as *mut u8) };
                new_fl = fl;
            }
            let oc = Counters(c);
            let nc = oc.with_inuse(oc.inuse() - cnt).with_frozen(false);
            if d.cas((old_fl, c), (new_fl, nc.0)) {
                break (new_fl, nc);
            }
        };
        let (new_fl, nc) = new;
        if nc.inuse() == 0 {
            let mut nl = n.list_lock.lock(&self.platform);
            if nl.nr_partial >= s.min_partial {
                drop(nl);
                // SAFETY: an empty, unfrozen slab on no list.
                unsafe { self.discard_slab(s, slab) };
            } else {
                // SAFETY: add to the node partial list under its lock.
                unsafe { Self::add_partial(&mut nl, slab, false) };
            }
        } else if new_fl != 0 {
            let mut nl = n.list_lock.lock(&self.platform);
            // SAFETY: add to the node partial list under its lock.
            unsafe { Self::add_partial(&mut nl, slab, true) };
        }
        // Full: on no list, until a free brings it back.
    }

    /// `add_partial`.
    ///
    /// # Safety
    /// `slab` is on no list; `nl` is its node's locked lists.
    pub(crate) unsafe fn add_partial(nl: &mut NodeLists, slab: *mut Page, tail: bool) {
        // SAFETY: caller contract.
        unsafe {
            let h = ptr::addr_of_mut!(nl.partial);
            if tail {
                ListHead::add_tail(ptr::addr_of_mut!((*slab).lru), h);
            } else {
                ListHead::add(ptr::addr_of_mut!((*slab).lru), h);
            }
            (*slab).set(PG_SLAB_NODE_PARTIAL);
        }
        nl.nr_partial += 1;
    }

    /// `remove_partial`.
    ///
    /// # Safety
    /// `slab` is on `nl`'s partial list, locked.
    pub(crate) unsafe fn remove_partial(nl: &mut NodeLists, slab: *mut Page) {
        // SAFETY: caller contract.
        unsafe {
            ListHead::del(ptr::addr_of_mut!((*slab).lru));
            (*slab).clear(PG_SLAB_NODE_PARTIAL);
        }
        nl.nr_partial -= 1;
    }

    /// The node of a slab.
    #[inline(always)]
    pub(crate) fn slab_nid(&self, slab: *mut Page) -> usize {
        self.page_zone_by_pfn(self.map.page_to_pfn(slab))
            .map_or(0, |z| z.node as usize)
    }

    /// Put an unfrozen slab (off every list) on its node list, or free it.
    ///
    /// # Safety
    /// As described.
    unsafe fn put_partial_to_node(&self, s: &KmemCache, slab: *mut Page) {
        let n = s.node(self.slab_nid(slab));
        let mut nl = n.list_lock.lock(&self.platform);
        // SAFETY: caller contract.
        let c = Counters(unsafe { slab_fl(slab).hi.load(Ordering::Acquire) });
        if c.inuse() == 0 && nl.nr_partial >= s.min_partial {
            drop(nl);
            // SAFETY: empty and off every list.
            unsafe { self.discard_slab(s, slab) };
        } else if c.inuse() < c.objects() {
            // SAFETY: lock held, slab off every list.
            unsafe { Self::add_partial(&mut nl, slab, true) };
        }
        // A full slab lives on no list.
    }

    /// `get_partial`: freeze the first node-partial slab for this CPU and move
    /// more to the cpu partial list (up to half of `cpu_partial_slabs`).
    fn get_partial(&self, s: &KmemCache, c: &KmemCacheCpu, nid: i32) -> Option<(*mut Page, usize)> {
        let start = if nid >= 0 {
            nid as usize
        } else {
            self.numa_node_id()
        };
        let nodes = if nid >= 0 { 1 } else { self.nr_nodes };
        for i in 0..nodes {
            let node = (start + i) % self.nr_nodes;
            let n = s.node(node);
            let mut nl = n.list_lock.lock(&self.platform);
            let mut got: Option<(*mut Page, usize)> = None;
            let mut moved = 0;
            let h = ptr::addr_of_mut!(nl.partial);
            // SAFETY: walked under list_lock.
            unsafe {
                let mut l = (*h).next;
                while !ptr::eq(l, h) {
                    let slab = lru_to_page(l);
                    l = (*l).next;
                    if got.is_none() {
                        Self::remove_partial(&mut nl, slab);
                        let fl = self.freeze_slab(slab);
                        if fl == 0 {
                            continue; // full meanwhile: on no list now
                        }
                        got = Some((slab, fl));
                        continue;
                    }
                    if !s.has_cpu_partial() || moved >= s.cpu_partial_slabs / 2 {
                        break;
                    }
                    Self::remove_partial(&mut nl, slab);
                    let head = c.partial.load(Ordering::Acquire);
                    (*slab).lru.next = head as *mut ListHead;
                    set_cpu_partial_slabs(
                        slab,
                        if head.is_null() {
                            1
                        } else {
                            cpu_partial_slabs(head) + 1
                        },
                    );
                    c.partial.store(slab, Ordering::Release);
                    moved += 1;
                }
            }
            if got.is_some() {
                CpuStats::inc(&c.stat.alloc_from_partial);
                return got;
            }
        }
        None
    }

    /// `new_slab` for the debug paths: every object linked.
    pub(crate) fn new_slab_public(&self, s: &KmemCache, gfp: Gfp, nid: i32) -> Option<*mut Page> {
        self.new_slab(s, gfp, nid, false).map(|(slab, _)| slab)
    }

    /// `new_slab`: pages from the buddy allocator, cut into objects, each
    /// constructed once. With `lazy`, a cache whose objects need no setup
    /// (no constructor, no debugging) gets only the objects that start in
    /// the slab's first page linked (see [`Kmem::link_objects`]). Returns
    /// the slab and how many of its objects are on its freelist: the rest
    /// are the caller's to link.
    fn new_slab(&self, s: &KmemCache, gfp: Gfp, nid: i32, lazy: bool) -> Option<(*mut Page, usize)> {
        let flags = (gfp & Gfp(GFP_RECLAIM_MASK.bits() | GFP_CONSTRAINT_MASK.bits())) | s.allocflags;
        if !matches!(s.ctor, CtorKind::None) && gfp.intersects(__GFP_ZERO) {
            self.warn_once(
                20,
                format_args!(
                    "new_slab: __GFP_ZERO allocation from cache {} with a constructor",
                    s.name()
                ),
            );
        }
        // The preferred order first, without trying hard; then the smallest order.
        let mut try_flags = (flags | __GFP_NOWARN | __GFP_NORETRY).without(__GFP_NOFAIL);
        if s.oo.order > s.min.order {
            try_flags = try_flags.without(__GFP_DIRECT_RECLAIM);
        }
        let (page, oo) = match self.alloc_pages_node(nid, try_flags, s.oo.order) {
            Ok(p) => (p, s.oo),
            Err(_) => (self.alloc_pages_node(nid, flags, s.min.order).ok()?, s.min),
        };
        let slab = page.as_ptr();
        // Cache colouring: the leftover space, a colour step more each slab.
        let objects_here = oo.objects as usize;
        let left = (crate::page::PAGE_SIZE << oo.order) - objects_here * s.size;
        let step = s.align.max(CACHE_LINE);
        let colours = if s.debug() { 0 } else { left / step };
        let colour = if colours == 0 {
            0
        } else {
            (s.colour_next.fetch_add(1, Ordering::Relaxed) % (colours + 1)) * step
        };
        let lines = ((colour / CACHE_LINE) as u16).to_le_bytes();
        // SAFETY: a fresh compound allocation we own.
        unsafe {
            (*slab).spare[0] = lines[0];
            (*slab).spare[1] = lines[1];
        }
        let base = self.slab_base(slab);
        // The first object's address where `kfree` checks pointers inline
        // against it (`slab_object_inline`), in every page of the slab; 0
        // (the exact check, out of line) in a slab with fewer objects than
        // the test allows, one of the fallback order with room after its
        // last object (power-of-two objects fill their slabs).
        let s_mem = if s.kfree_test == MultipleTest::NEVER
            || (oo.objects < s.oo.objects && (oo.objects as usize) * s.size < PAGE_SIZE << oo.order)
        {
            0
        } else {
            s.object_at(base, 0) as usize
        };
        // SAFETY: a fresh compound allocation we own.
        unsafe {
            (*slab).mapping = s as *const KmemCache as usize;
            (*slab).set(PG_SLAB);
            (*slab).lru.next = ptr::null_mut();
            (*slab).private = s_mem;
            for i in 1..1usize << oo.order {
                let tail = slab.add(i);
                (*tail).set(PG_SLAB_TAIL);
                (*tail).mapping = s as *const KmemCache as usize;
                (*tail).private = s_mem;
            }
        }
        let objects = oo.objects as usize;
        let atomic = !gfp.allows_blocking();
        let plain = !s.debug() && matches!(s.ctor, CtorKind::None);
        let linked = if lazy && plain {
            Self::first_page_end(s, base, 0, objects)
        } else {
            objects
        };
        if !plain {
            // Construct each object once (debug set-up, the constructor).
            for i in 0..objects {
                // SAFETY: the object lies within the new slab.
                unsafe { self.setup_object(s, s.object_at(base, i), atomic) };
            }
        }
        // The freelist, in address order.
        // SAFETY: the objects of our new slab, free and on no freelist.
        unsafe { Self::link_objects(s, base, 0, linked, 0) };
        // SAFETY: the page is ours and now a slab: publish its freelist and counters.
        unsafe { slab_fl(slab) }
            .lo
            .store(s.object_at(base, 0) as usize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { slab_fl(slab) }
            .hi
            .store(Counters::new(0, objects, false).0, Ordering::Release);
        let n = s.node(self.slab_nid(slab));
        n.nr_slabs.fetch_add(1, Ordering::Relaxed);
        n.total_objects.fetch_add(objects, Ordering::Relaxed);
        Some((slab, linked))
    }

    /// The end of the run of objects from `from` whose free pointers (what
    /// linking them writes) lie in the page of object `from`'s (at least
    /// one object; at most `objects`).
    fn first_page_end(s: &KmemCache, base: *mut u8, from: usize, objects: usize) -> usize {
        let fp = s.object_at(base, from) as usize + s.offset;
        let page_end = (fp & !(PAGE_SIZE - 1)) + PAGE_SIZE;
        // Object `from + k`'s free pointer is `fp + k * size`: below the
        // page's end for k < ceil((page_end - fp) / size), at least one.
        (from + (page_end - fp).div_ceil(s.size)).min(objects)
    }

    /// Link the objects `[from, to)` of the slab at `base` into a chain in
    /// address order, the last pointing to `next`; returns the first and the
    /// last (`next` and 0 if the range is empty). How fresh slabs are linked
    /// a page at a time is in the module documentation; until they are, the
    /// unlinked objects belong to the cpu slab, as those on its cpu freelist
    /// do. mimalloc extends a page's free list the same way.
    ///
    /// # Safety
    /// The objects are free objects of a slab at `base` of `s` owned by the
    /// caller, on no freelist.
    unsafe fn link_objects(
        s: &KmemCache,
        base: *mut u8,
        from: usize,
        to: usize,
        next: usize,
    ) -> (usize, usize) {
        if from >= to {
            return (next, 0);
        }
        let first = s.object_at(base, from);
        let last = s.object_at(base, to - 1);
        let mut obj = first;
        while obj != last {
            let link = obj.wrapping_add(s.size);
            // SAFETY: caller contract.
            unsafe { s.set_freepointer(obj, link) };
            obj = link;
        }
        // SAFETY: caller contract.
        unsafe { s.set_freepointer(last, next as *mut u8) };
        (first as usize, last as usize)
    }

    /// `setup_object`: debug initialisation, then the constructor.
    ///
    /// # Safety
    /// `obj` is an object of a slab being set up.
    unsafe fn setup_object(&self, s: &KmemCache, obj: *mut u8, atomic: bool) {
        if s.debug() {
            // SAFETY: forwarded.
            unsafe { self.debug_setup_object(s, obj) };
        }
        match s.ctor {
            CtorKind::None => {}
            CtorKind::Modern(f) => f(obj),
            CtorKind::Legacy { ctor: Some(f), .. } => {
                let fl = SLAB_CTOR_CONSTRUCTOR | if atomic { SLAB_CTOR_ATOMIC } else { 0 };
                f(obj, s, fl);
            }
            CtorKind::Legacy { ctor: None, .. } => {}
        }
    }

    /// `discard_slab`: give an empty slab back to the page allocator.
    ///
    /// # Safety
    /// `slab` is an empty, unfrozen slab of `s` on no list.
    pub(crate) unsafe fn discard_slab(&self, s: &KmemCache, slab: *mut Page) {
        // SAFETY: caller contract.
        let c = Counters(unsafe { slab_fl(slab).hi.load(Ordering::Acquire) });
        let objects = c.objects();
        let order = if objects == s.oo.objects as usize {
            s.oo.order
        } else {
            s.min.order
        };
        let n = s.node(self.slab_nid(slab));
        n.nr_slabs.fetch_sub(1, Ordering::Relaxed);
        n.total_objects.fetch_sub(objects, Ordering::Relaxed);
        if s.debug() {
            // SAFETY: forwarded.
            unsafe { self.debug_discard_slab(s, slab) };
        }
        if let CtorKind::Legacy { dtor: Some(d), .. } = s.ctor {
            let base = self.slab_base(slab);
            for i in 0..objects {
                d(s.object_at(base, i), s, 0);
            }
        }
        // SAFETY: the slab is ours; clear the overlay before freeing.
        unsafe {
            for i in 1..1usize << order {
                let tail = slab.add(i);
                (*tail).clear(PG_SLAB_TAIL);
                (*tail).mapping = 0;
                (*tail).private = 0;
            }
            (*slab).mapping = 0;
            (*slab).index = 0;
            (*slab).counters = 0;
            (*slab).spare[0] = 0;
            (*slab).spare[1] = 0;
            (*slab).private = 0;
            (*slab).clear(PG_SLAB | PG_SLAB_NODE_PARTIAL);
            self.__free_pages(NonNull::new_unchecked(slab), order);
        }
    }

    /// `kmem_cache_free`.
    ///
    /// # Safety
    /// `obj` was allocated from `s` (misuse is detected and reported, but the
    /// caller must not touch the object afterwards).
    #[inline(always)]
    #[track_caller]
    pub unsafe fn kmem_cache_free(&self, s: NonNull<KmemCache>, obj: *mut u8) {
        // SAFETY: the caller holds a live cache.
        let c = unsafe { s.as_ref() };
        if P::RSEQ_AREA {
            // SAFETY: forwarded; the slab is not known.
            return unsafe { self.rseq_free(c, ptr::null_mut(), obj) };
        }
        // SAFETY: forwarded.
        if unsafe { self.cas_free_fast(c, obj) } {
            return;
        }
        // SAFETY: forwarded.
        if let Some(slab) = unsafe { self.slab_free_lookup(c, obj) } {
            // SAFETY: checked to be an object of `slab` of `c`.
            unsafe { self.slab_free_to_slab(c, slab, obj) };
        }
    }

    /// The free fast path on a platform with an rseq area: push onto this
    /// CPU's freelist if `obj` lies in the cpu slab of `s`, else onto this
    /// CPU's sheaf if `kfree`'s inline check passes and names `s`, in one
    /// sequence ([`rseq::free`]); otherwise one call,
    /// [`Kmem::slab_free_declined`], does the rest (so the inline code
    /// keeps nothing alive across a call).
    ///
    /// # Safety
    /// `obj` is an allocated object of `s`; `slab` is its slab or null
    /// (unknown).
    #[inline(always)]
    #[track_caller]
    unsafe fn rseq_free(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8) {
        // `init_on_free` caches never pass the sequence (STOP_HOOKS):
        // __slab_free wipes and takes any object. A cache without sheaves
        // has a `sheaf_limit` the sequence never passes, so its frees
        // outside the cpu slab take the slow path.
        // The sequence takes `obj` only inside the cpu slab or once checked to be an object of `s`.
        // SAFETY: as in `kmem_cache_alloc`; the caller owns `obj`; `self` is the machine of `s`.
        match unsafe { rseq::free(s.rseq_area, s, obj, self) } {
            rseq::Push::Done => {}
            rseq::Push::DoubleFree => self.double_free(s, obj),
            // SAFETY: forwarded.
            rseq::Push::Fallback => unsafe { self.slab_free_declined(s, slab, obj) },
        }
    }

    /// Where a declined free sequence goes when the object was not known to
    /// be one of `s` inline (`rseq_free`): an rseq-mode free into this CPU's
    /// sheaf once the object's slab is looked up and checked; everything
    /// else is [`Kmem::slab_free_declined_slow`].
    ///
    /// # Safety
    /// As [`Kmem::rseq_free`].
    #[inline(never)]
    #[track_caller]
    unsafe fn slab_free_declined(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8) {
        if !self.slab.rseq.load(Ordering::Relaxed) {
            // SAFETY: forwarded.
            return unsafe { self.slab_free_declined_slow(s, slab, obj) };
        }
        // SAFETY: forwarded.
        let Some(slab) = (unsafe { self.slab_of_freed(s, slab, obj) }) else {
            return;
        };
        if s.sheaf_capacity != 0 {
            // SAFETY: as in `kmem_cache_alloc`; `obj` is a checked object of `s` (slab found, checked).
            match unsafe { rseq::sheaf_push(s.rseq_area, s, obj) } {
                rseq::Push::Done => return,
                rseq::Push::DoubleFree => return self.double_free(s, obj),
                rseq::Push::Fallback => {}
            }
        }
        // SAFETY: forwarded.
        unsafe { self.slab_free_declined_slow(s, slab, obj) }
    }

    /// The rest of [`Kmem::slab_free_declined`]: the CAS fast path if the
    /// machine is not in rseq mode; else, once the object's slab is known
    /// (looked up and checked if `slab` is null), this CPU's sheaf if the
    /// cache has sheaves (`sheaf_free_slow`: the sequence found it full,
    /// stopped or missing), and `__slab_free` on the slab otherwise.
    ///
    /// # Safety
    /// As [`Kmem::rseq_free`].
    #[inline(never)]
    #[track_caller]
    unsafe fn slab_free_declined_slow(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8) {
        // SAFETY: forwarded.
        if !self.slab.rseq.load(Ordering::Relaxed) && unsafe { self.cas_free_fast(s, obj) } {
            return;
        }
        // SAFETY: forwarded.
        let Some(slab) = (unsafe { self.slab_of_freed(s, slab, obj) }) else {
            return;
        };
        // SAFETY: `obj` is a checked object of `s`.
        if s.sheaf_capacity != 0 && unsafe { self.sheaf_free_slow(s, obj) } {
            return;
        }
        // SAFETY: forwarded; the fast path declined the object.
        unsafe { self.slab_free_to_slab(s, slab, obj) }
    }

    /// The slab of `obj`, freed to `s`: `slab` if the caller knows it, else
    /// looked up and checked (None if the free was reported instead).
    ///
    /// # Safety
    /// As `kmem_cache_free`; a non-null `slab` holds `obj`.
    #[inline(always)]
    #[track_caller]
    unsafe fn slab_of_freed(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8) -> Option<*mut Page> {
        if slab.is_null() {
            // SAFETY: forwarded.
            unsafe { self.slab_free_lookup(s, obj) }
        } else {
            Some(slab)
        }
    }

    /// The CAS free fast path: push onto this CPU's freelist with
    /// `cmpxchg16b` on (freelist, tid) if `obj` lies in the cpu slab. False if
    /// it does not (nothing was done).
    ///
    /// # Safety
    /// `obj` is an allocated object of `s`, if it lies in its cpu slab.
    #[inline(always)]
    unsafe fn cas_free_fast(&self, s: &KmemCache, obj: *mut u8) -> bool {
        loop {
            let cpu = self.platform.raw_smp_processor_id();
            // SAFETY: cpu < nr_cpu_ids.
            let c = unsafe { s.cpu(cpu) };
            // SAFETY: forwarded.
            if let Some(done) = unsafe { self.cas_free_try(s, c, obj) } {
                return done;
            }
        }
    }

    /// One attempt of [`Kmem::cas_free_fast`] on `c`: Some(true) if freed
    /// (or a double free was reported), Some(false) if `obj` is not in the
    /// cpu slab, None if the CAS lost a race.
    ///
    /// # Safety
    /// As [`Kmem::cas_free_fast`].
    #[inline(always)]
    unsafe fn cas_free_try(&self, s: &KmemCache, c: &KmemCacheCpu, obj: *mut u8) -> Option<bool> {
        let (fl, tid) = c.fl.load();
        let start = c.slab_start.load(Ordering::Acquire);
        if (obj as usize).wrapping_sub(start) >= c.slab_bytes.load(Ordering::Acquire)
            || !s
                .kfree_test
                .test_offset((obj as usize).wrapping_sub(start) as u64)
        {
            // Not in the cpu slab, or not an object start there (the slow
            // path reports "Invalid object pointer").
            return Some(false);
        }
        if obj as usize == fl {
            // The naive double-free check of set_freepointer (BUG_ON(object == fp)):
            // freeing the object just freed would make the freelist a cycle.
            self.double_free(s, obj);
            return Some(true);
        }
        if s.init_on_free {
            // SAFETY: the object is ours.
            unsafe { ptr::write_bytes(obj, 0, s.object_size) };
        }
        // SAFETY: the object is ours, in our cpu slab.
        unsafe { s.set_freepointer(obj, fl as *mut u8) };
        c.fl.cas((fl, tid), (obj as usize, tid.wrapping_add(1)))
            .then_some(true)
    }

    /// Find the slab of an object not in this CPU's cpu slab and check its
    /// cache: the slab if `obj` may be freed there by the caller; None if
    /// the free was handled here (debug caches, the wrong cache) or reported
    /// (not a slab object).
    ///
    /// # Safety
    /// As `kmem_cache_free`.
    #[inline]
    #[track_caller]
    unsafe fn slab_free_lookup(&self, c: &KmemCache, obj: *mut u8) -> Option<*mut Page> {
        let Some(slab) = self.virt_to_slab(obj) else {
            self.free_invalid(c, obj);
            return None;
        };
        let slab = slab.as_ptr();
        // SAFETY: slab pages record their cache.
        let owner = unsafe { (*slab).mapping } as *const KmemCache;
        if !ptr::eq(owner, c) || c.debug() {
            // SAFETY: forwarded.
            unsafe { self.slab_free_checked(c, owner, slab, obj) };
            return None;
        }
        // SAFETY: the head page of a slab of `c`.
        unsafe { self.check_object_start(c, slab, obj, "kmem_cache_free") }.then_some(slab)
    }

    /// Whether `p` is an object start of `slab`, a slab of the non-debug
    /// cache `s` (debug caches check their pointers in
    /// `free_debug_processing`); if not, it is reported as `func`'s
    /// "Invalid object pointer" (counted in the machine's slab errors).
    ///
    /// # Safety
    /// `slab` is the head page of a live slab of `s`.
    pub(crate) unsafe fn check_object_start(
        &self,
        s: &KmemCache,
        slab: *mut Page,
        p: *const u8,
        func: &str,
    ) -> bool {
        let off = (p as usize).wrapping_sub(self.slab_base(slab) as usize + s.red_left_pad);
        // SAFETY: the counters of a slab page are read atomically.
        let objects = Counters(unsafe { slab_fl(slab) }.hi.load(Ordering::Relaxed)).objects();
        // `obj_to_index` without a `div`: slabs are at most 4 MiB.
        let idx = s.reciprocal_size.divide(off as u32) as usize;
        if off <= u32::MAX as usize && idx * s.size == off && idx < objects {
            return true;
        }
        self.slab_error(
            s,
            format_args!("{func}: Invalid object pointer 0x{:016x}", p as usize),
        );
        self.platform.dump_stack();
        false
    }

    /// `do_slab_free` for an object whose slab is known: this CPU's freelist
    /// if it is the cpu slab, else `__slab_free`.
    ///
    /// # Safety
    /// `obj` is an allocated object of `slab` of `s`.
    #[inline(always)]
    #[track_caller]
    pub(crate) unsafe fn do_slab_free(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8) {
        if P::RSEQ_AREA {
            // SAFETY: forwarded.
            return unsafe { self.rseq_free(s, slab, obj) };
        }
        // SAFETY: forwarded.
        if unsafe { self.cas_free_fast(s, obj) } {
            return;
        }
        // SAFETY: forwarded.
        unsafe { self.slab_free_slow(s, slab, obj) };
    }

    /// `kfree`'s fast path for `obj`, an object of `s` (`kfree` found the
    /// cache through the object's page), which reads nothing from the
    /// machine: this CPU's sheaf, as Linux 6.18's `free_to_pcs` (`kmalloc`
    /// allocates from the sheaf first too); for a cache without sheaves, the
    /// cpu freelist if `obj` is in the cpu slab. Declined, nothing is done
    /// ([`Kmem::kfree_finish`] does the rest): the slab's head page is
    /// needed (and found) only then.
    ///
    /// # Safety
    /// `obj` is an allocated object of `s`, in the linear map; `rseq_area`
    /// is `platform.rseq_offset()`.
    #[inline(always)]
    pub(crate) unsafe fn kfree_slab_fast(
        s: &KmemCache,
        obj: *mut u8,
        rseq_area: isize,
    ) -> Result<(), crate::kmalloc::KfreeDeclined> {
        use crate::kmalloc::KfreeDeclined;
        if !P::RSEQ_AREA {
            return Err(KfreeDeclined::Slab(NonNull::from(s)));
        }
        // The sheaf first (`kfree` checked that `obj` is an object of `s`:
        // the sheaf takes objects of any slab). A full sheaf, or none yet,
        // is the slow path's (`sheaf_free_slow`); a cache without sheaves
        // (`no_sheaf()`, full) pushes onto the cpu freelist if `obj` is in
        // the cpu slab.
        // SAFETY: as in `kmem_cache_alloc`; the caller owns `obj`, an object of `s`.
        let pushed = match unsafe { rseq::sheaf_push(rseq_area, s, obj) } {
            // SAFETY: as above.
            rseq::Push::Fallback if s.sheaf_capacity == 0 => unsafe { rseq::push(rseq_area, s, obj) },
            done => done,
        };
        match pushed {
            rseq::Push::Done => Ok(()),
            rseq::Push::DoubleFree => Err(KfreeDeclined::DoubleFree(NonNull::from(s))),
            rseq::Push::Fallback => Err(KfreeDeclined::Slab(NonNull::from(s))),
        }
    }

    /// `kfree` of `obj`, an object of `s` that [`Kmem::kfree_slab_fast`]
    /// declined: the slab free paths, on the slab's head page.
    ///
    /// # Safety
    /// `obj` is an allocated object of `s`, in the linear map.
    #[inline(never)]
    #[track_caller]
    pub(crate) unsafe fn kfree_slab_declined(&self, s: &KmemCache, obj: *mut u8) {
        if P::RSEQ_AREA {
            // SAFETY: forwarded; the head holds `obj`.
            unsafe { self.slab_free_declined_slow(s, self.slab_head_of(obj), obj) }
        } else {
            // SAFETY: forwarded; the head holds `obj`.
            unsafe { self.do_slab_free(s, self.slab_head_of(obj), obj) }
        }
    }

    /// The head page of the slab holding `obj`, found without a branch: the
    /// page of `obj` is the head or a tail naming it (`PG_SLAB_TAIL`).
    ///
    /// # Safety
    /// `obj` is an object of a slab, in the linear map.
    #[inline(always)]
    pub(super) unsafe fn slab_head_of(&self, obj: *const u8) -> *mut Page {
        let page = self
            .map
            .pfn_to_page((obj as usize).wrapping_sub(self.page_offset) >> crate::page::PAGE_SHIFT);
        // SAFETY: caller contract: `page` is a page of a live slab.
        unsafe {
            let tail = (*page).flags.load(Ordering::Relaxed) & PG_SLAB_TAIL != 0;
            core::hint::select_unpredictable(tail, (*page).index as *mut Page, page)
        }
    }

    /// Frees that need more than the fast path: wrong cache, debug caches.
    ///
    /// # Safety
    /// `slab` is the slab holding `obj`.
    #[cold]
    #[track_caller]
    unsafe fn slab_free_checked(
        &self,
        s: &KmemCache,
        owner: *const KmemCache,
        slab: *mut Page,
        obj: *mut u8,
    ) {
        if !ptr::eq(owner, s) {
            // SAFETY: slab pages record a live cache.
            let real = unsafe { &*owner };
            self.warn(format_args!(
                "{}: Wrong slab cache. {} but object is from {}",
                "cache_from_obj",
                s.name(),
                real.name()
            ));
            // The kernel frees into the real cache.
            if real.debug() {
                // SAFETY: forwarded.
                unsafe { self.debug_free(real, slab, obj, core::panic::Location::caller()) };
            } else {
                // SAFETY: forwarded.
                unsafe { self.do_slab_free(real, slab, obj) };
            }
            return;
        }
        // SAFETY: forwarded.
        unsafe { self.debug_free(s, slab, obj, core::panic::Location::caller()) };
    }

    /// A double free caught on the fast path: reported, the object stays free.
    #[cold]
    pub(crate) fn double_free(&self, s: &KmemCache, obj: *mut u8) {
        self.slab_error(s, format_args!("Object already free"));
        crate::pr!(
            self,
            "Object 0x{:016x} freed twice in a row: not freed again",
            obj as usize
        );
        self.platform.dump_stack();
    }

    /// A free of something that is no slab object.
    #[cold]
    pub(crate) fn free_invalid(&self, s: &KmemCache, obj: *mut u8) {
        self.slab.errors.fetch_add(1, Ordering::Relaxed);
        crate::pr!(
            self,
            "kmem_cache_free({}): Attempt to free object(0x{:016x}) outside of slab",
            s.name(),
            obj as usize
        );
        self.platform.dump_stack();
    }

    /// `__slab_free`: the object's slab is not this CPU's cpu slab.
    ///
    /// The common case is short: the slab keeps other free and allocated
    /// objects (or is frozen), so one `cmpxchg16b` on (freelist, counters)
    /// frees the object and no list changes. A slab that was full or becomes
    /// empty, and a double free, take [`Kmem::slab_free_lists`].
    ///
    /// # Safety
    /// `obj` is an allocated object of `slab` of `s`.
    #[inline(never)]
    pub(crate) unsafe fn slab_free_slow(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8) {
        // SAFETY: forwarded.
        unsafe { self.slab_free_to_slab(s, slab, obj) }
    }

    /// The body of [`Kmem::slab_free_slow`], for callers that inline it.
    ///
    /// # Safety
    /// As [`Kmem::slab_free_slow`].
    #[inline(always)]
    unsafe fn slab_free_to_slab(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8) {
        // SAFETY: forwarded: a chain of one.
        unsafe { self.slab_free_chain(s, slab, obj, obj, 1) }
    }

    /// `__slab_free` of a chain of `cnt` objects of one slab, `head` to
    /// `tail` linked through their free pointers (the kernel's
    /// `head, tail, cnt`): one swap frees them all.
    ///
    /// # Safety
    /// The objects are allocated objects of `slab` of `s`, owned by the
    /// caller; `cnt` is 1 if `s` wipes objects on free (`init_on_free`).
    #[inline(always)]
    pub(crate) unsafe fn slab_free_chain(
        &self,
        s: &KmemCache,
        slab: *mut Page,
        head: *mut u8,
        tail: *mut u8,
        cnt: u32,
    ) {
        if !s.init_on_free {
            // SAFETY: caller contract.
            let d = unsafe { slab_fl(slab) };
            loop {
                let (prior, counters) = d.load();
                let c = Counters(counters);
                if c.inuse() <= cnt as usize || (prior == 0 && !c.frozen()) {
                    break;
                }
                // SAFETY: the objects are ours.
                unsafe { s.set_freepointer(tail, prior as *mut u8) };
                if d.cas(
                    (prior, counters),
                    (head as usize, c.with_inuse(c.inuse() - cnt as usize).0),
                ) {
                    return;
                }
            }
        }
        // SAFETY: forwarded.
        unsafe { self.slab_free_lists(s, slab, head, tail, cnt) }
    }

    /// `__slab_free` when lists may change: the slab was full or becomes
    /// empty (or the objects are already free, or `init_on_free` wipes the
    /// object).
    ///
    /// # Safety
    /// As [`Kmem::slab_free_chain`].
    #[inline(never)]
    unsafe fn slab_free_lists(&self, s: &KmemCache, slab: *mut Page, head: *mut u8, tail: *mut u8, cnt: u32) {
        let cnt = cnt as usize;
        if s.init_on_free {
            debug_assert_eq!(cnt, 1);
            // SAFETY: the object is ours until it is on the freelist.
            unsafe { ptr::write_bytes(head, 0, s.object_size) };
        }
        // SAFETY: caller contract.
        let d = unsafe { slab_fl(slab) };
        let nid = self.slab_nid(slab);
        let n = s.node(nid);
        let mut nl_guard;
        let (prior, new, was_frozen) = loop {
            nl_guard = None;
            let (prior, counters) = d.load();
            // SAFETY: the objects are ours.
            unsafe { s.set_freepointer(tail, prior as *mut u8) };
            let c = Counters(counters);
            if c.inuse() < cnt {
                // More objects than are allocated: a double free.
                drop(nl_guard.take());
                self.slab_error(s, format_args!("Object already free"));
                return;
            }
            let new = c.with_inuse(c.inuse() - cnt);
            let was_frozen = c.frozen();
            if (new.inuse() == 0 || prior == 0) && !was_frozen && (!s.has_cpu_partial() || prior != 0) {
                nl_guard = Some(n.list_lock.lock(&self.platform));
            }
            if d.cas((prior, counters), (head as usize, new.0)) {
                break (prior, new, was_frozen);
            }
        };
        let Some(mut nl) = nl_guard else {
            if !was_frozen && s.has_cpu_partial() && prior == 0 {
                // A full slab gained a free object: onto this CPU's partial list.
                // SAFETY: the slab is unfrozen and on no list (it was full).
                unsafe { self.put_cpu_partial(s, slab) };
            }
            return;
        };
        // SAFETY: slab flags are stable under list_lock.
        let on_node_partial = unsafe { (*slab).test(PG_SLAB_NODE_PARTIAL) };
        if prior != 0 && !on_node_partial {
            return; // On a cpu partial list: its owner deals with it.
        }
        if new.inuse() == 0 && nl.nr_partial >= s.min_partial {
            if prior != 0 {
                // SAFETY: on the node partial list, which we hold.
                unsafe { Self::remove_partial(&mut nl, slab) };
            }
            drop(nl);
            // SAFETY: empty, unfrozen, on no list now.
            unsafe { self.discard_slab(s, slab) };
            return;
        }
        if !s.has_cpu_partial() && prior == 0 {
            // SAFETY: a previously full slab, on no list.
            unsafe { Self::add_partial(&mut nl, slab, true) };
        }
    }

    /// `put_cpu_partial`: a slab that gained a free object goes on this CPU's
    /// partial list; a list that is full first goes to the node lists.
    ///
    /// # Safety
    /// `slab` is an unfrozen slab of `s` on no list.
    unsafe fn put_cpu_partial(&self, s: &KmemCache, slab: *mut Page) {
        let cpu = self.platform.raw_smp_processor_id();
        // SAFETY: cpu < nr_cpu_ids.
        let c = unsafe { s.cpu(cpu) };
        let guard = c.lock.lock(&self.platform);
        let mut old = c.partial.load(Ordering::Acquire);
        let mut to_flush = ptr::null_mut();
        let mut slabs = if old.is_null() {
            0
        } else {
            // SAFETY: the chain is ours under the lock.
            unsafe { cpu_partial_slabs(old) }
        };
        if !old.is_null() && slabs >= s.cpu_partial_slabs {
            to_flush = old;
            old = ptr::null_mut();
            slabs = 0;
        }
        // SAFETY: `slab` is ours to link.
        unsafe {
            (*slab).lru.next = old as *mut ListHead;
            set_cpu_partial_slabs(slab, slabs + 1);
        }
        c.partial.store(slab, Ordering::Release);
        CpuStats::inc(&c.stat.cpu_partial_free);
        drop(guard);
        if !to_flush.is_null() {
            // SAFETY: a chain we detached.
            unsafe { self.put_partials(s, to_flush) };
        }
    }

    /// `__put_partials`: move a chain of cpu partial slabs to the node lists.
    ///
    /// # Safety
    /// The chain was detached from a cpu partial list by the caller.
    unsafe fn put_partials(&self, s: &KmemCache, mut slab: *mut Page) {
        while !slab.is_null() {
            // SAFETY: caller contract.
            let next = unsafe { (*slab).lru.next } as *mut Page;
            // SAFETY: each slab is unfrozen and on no list.
            unsafe { self.put_partial_to_node(s, slab) };
            slab = next;
        }
    }

    /// Flush one CPU's cpu slab and cpu partial list (`flush_slab` +
    /// `put_partials_cpu`).
    pub(crate) fn flush_cpu_slab(&self, s: &KmemCache, cpu: usize) {
        // SAFETY: cpu < nr_cpus (callers iterate below it).
        let c = unsafe { s.cpu(cpu) };
        let guard = self.cpu_lock(c, cpu);
        let slab = c.slab.load(Ordering::Acquire);
        if !slab.is_null() {
            let fl = self.cpu_slab_retire(s, c);
            // SAFETY: our frozen cpu slab and its cpu freelist.
            unsafe { self.deactivate_slab(s, slab, fl) };
        }
        let part = c.partial.swap(ptr::null_mut(), Ordering::AcqRel);
        drop(guard);
        // SAFETY: detached chain.
        unsafe { self.put_partials(s, part) };
    }

    /// Flush one CPU's partial list only.
    pub(crate) fn flush_cpu_partial(&self, s: &KmemCache, cpu: usize) {
        // SAFETY: cpu < nr_cpus.
        let c = unsafe { s.cpu(cpu) };
        let guard = c.lock.lock(&self.platform);
        let part = c.partial.swap(ptr::null_mut(), Ordering::AcqRel);
        drop(guard);
        // SAFETY: detached chain.
        unsafe { self.put_partials(s, part) };
    }

    /// `slab_out_of_memory`: the SLUB allocation failure report.
    #[cold]
    fn slab_out_of_memory(&self, s: &KmemCache, gfp: Gfp, nid: i32) {
        if !self.ratelimit_alloc.allow(self.platform.now_ns()) {
            return;
        }
        crate::pr!(
            self,
            "SLUB: Unable to allocate memory on CPU {} (of node {}) on node {}, gfp={:#x}({})",
            self.platform.raw_smp_processor_id(),
            self.numa_node_id(),
            nid,
            gfp.bits(),
            gfp
        );
        crate::pr!(
            self,
            "  cache: {}, object size: {}, buffer size: {}, default order: {}, min order: {}",
            s.name(),
            s.object_size,
            s.size,
            s.oo.order,
            s.min.order
        );
        for n in 0..self.nr_nodes {
            let node = s.node(n);
            let slabs = node.nr_slabs.load(Ordering::Relaxed);
            let objs = node.total_objects.load(Ordering::Relaxed);
            crate::pr!(
                self,
                "  node {}: slabs: {}, objs: {}, free: {}",
                n,
                slabs,
                objs,
                0
            );
        }
    }

    /// `kmem_cache_alloc_bulk`: fill `out` with objects; all or nothing
    /// (returns `out.len()` or 0).
    ///
    /// # Safety
    /// `s` is a live cache of this machine (created, not destroyed).
    #[track_caller]
    pub unsafe fn kmem_cache_alloc_bulk(
        &self,
        s: NonNull<KmemCache>,
        gfp: Gfp,
        out: &mut [*mut u8],
    ) -> usize {
        for i in 0..out.len() {
            // SAFETY: a live cache of this machine (created and not destroyed).
            match unsafe { self.kmem_cache_alloc(s, gfp) } {
                Ok(p) => out[i] = p.as_ptr(),
                Err(_) => {
                    // SAFETY: the objects were allocated just above.
                    unsafe { self.kmem_cache_free_bulk(s, &out[..i]) };
                    for p in out.iter_mut() {
                        *p = ptr::null_mut();
                    }
                    return 0;
                }
            }
        }
        out.len()
    }

    /// `kmem_cache_free_bulk`.
    ///
    /// # Safety
    /// As `kmem_cache_free` for every object.
    #[track_caller]
    pub unsafe fn kmem_cache_free_bulk(&self, s: NonNull<KmemCache>, objs: &[*mut u8]) {
        for &o in objs.iter().rev() {
            if !o.is_null() {
                // SAFETY: forwarded.
                unsafe { self.kmem_cache_free(s, o) };
            }
        }
    }
}

/// Clear the in-object free pointer of an `init_on_free` object being handed out.
///
/// # Safety
/// `obj` is an object of `s` owned by the caller.
#[inline(always)]
unsafe fn s_wipe_freeptr(s: &KmemCache, obj: *mut u8) {
    // SAFETY: caller contract; the word lies inside the object.
    unsafe { (obj.add(s.offset) as *mut usize).write_unaligned(0) };
}

/// Zeroing on allocation (`__GFP_ZERO`, `init_on_alloc`) and clearing the free
/// pointer of an object wiped at free (`maybe_wipe_obj_freeptr`).
///
/// # Safety
/// `obj` is an object of `s` owned by the caller.
#[cold]
unsafe fn alloc_hooks(s: &KmemCache, obj: *mut u8, gfp: Gfp) {
    if s.want_init_on_alloc(gfp) {
        // SAFETY: caller contract.
        unsafe { ptr::write_bytes(obj, 0, s.object_size) };
    } else if s.init_on_free && s.freeptr_inside() {
        // SAFETY: caller contract.
        unsafe { s_wipe_freeptr(s, obj) };
    }
}
