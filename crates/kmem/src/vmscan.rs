//! Direct reclaim through shrinkers, OOM notifiers, and waiting for memory
//! (`mm/vmscan.c`'s `shrink_slab`, `mm/oom_kill.c`'s notifier chain).
//!
//! kmem has no page cache or anonymous memory to reclaim; what can be given
//! back is held by caches that register a **shrinker**: `count_objects` says
//! how many objects could be freed, `scan_objects` frees up to
//! `nr_to_scan` of them. Direct reclaim (`try_to_free_pages`) walks the
//! shrinkers at falling priority (12 down to 0), asking each for
//! `(freeable >> priority) * 4 / seeks` objects in batches of 128, as
//! `do_shrink_slab` does, until enough pages came back.
//!
//! Shrinkers that need the filesystem or block I/O to free memory say so with
//! `SHRINKER_NEEDS_FS`/`SHRINKER_NEEDS_IO` (kmem's addition; kernel shrinkers
//! test `sc->gfp_mask` themselves, which ours can do too): they are skipped
//! for `GFP_NOFS`/`GFP_NOIO` callers and inside `memalloc_nofs_save`/
//! `memalloc_noio_save` scopes. Reclaim runs with `PF_MEMALLOC` set, so
//! allocations made by shrinkers use the reserves and never recurse.
//!
//! Where the kernel would OOM-kill, kmem calls the **OOM notifier chain**
//! (`register_oom_notifier`); a notifier returns how many pages it freed.
//!
//! Sleeping allocations **wait for memory** on a futex word that every free
//! bumps while someone waits; waits are one tick long, so a wake-up that is
//! missed costs a tick, never a hang.

use crate::gfp::{Gfp, __GFP_FS, __GFP_IO};
use crate::list::ListHead;
use crate::machine::{Kmem, SWAP_CLUSTER_MAX};
use crate::platform::task_flags::PF_MEMALLOC;
use crate::platform::Platform;
use crate::spinlock::SpinLock;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// `scan_objects` result: stop scanning this shrinker.
pub const SHRINK_STOP: usize = usize::MAX;
/// `count_objects` result: nothing to free and nothing will be soon.
pub const SHRINK_EMPTY: usize = usize::MAX - 1;
/// Default batch (`SHRINK_BATCH`).
pub const SHRINK_BATCH: usize = 128;
/// Default cost of recreating an object (`DEFAULT_SEEKS`).
pub const DEFAULT_SEEKS: u32 = 2;
/// Highest reclaim priority (`DEF_PRIORITY`).
pub const DEF_PRIORITY: u32 = 12;
/// The shrinker frees memory through the filesystem: skipped without `__GFP_FS`.
pub const SHRINKER_NEEDS_FS: u32 = 1 << 8;
/// The shrinker starts block I/O: skipped without `__GFP_IO`.
pub const SHRINKER_NEEDS_IO: u32 = 1 << 9;

/// `struct shrink_control`.
#[derive(Debug, Clone, Copy)]
pub struct ShrinkControl {
    /// The allocation's flags (after the task's scope).
    pub gfp_mask: Gfp,
    /// Node being reclaimed.
    pub nid: usize,
    /// How many objects to scan in this call.
    pub nr_to_scan: usize,
    /// How many were scanned (the shrinker may lower it).
    pub nr_scanned: usize,
}

/// Count callback: how many objects could be freed now.
pub type CountFn = fn(&Shrinker, &ShrinkControl) -> usize;
/// Scan callback: free up to `nr_to_scan` objects; returns how many were
/// freed, or `SHRINK_STOP`.
pub type ScanFn = fn(&Shrinker, &mut ShrinkControl) -> usize;

/// A shrinker (`struct shrinker`). The owner keeps it alive and pinned while registered.
pub struct Shrinker {
    /// Name shown in reports.
    pub name: &'static str,
    /// `count_objects`.
    pub count_objects: CountFn,
    /// `scan_objects`.
    pub scan_objects: ScanFn,
    /// Cost of recreating an object (`seeks`; 0 means "cheap": scan more).
    pub seeks: u32,
    /// Objects per `scan_objects` call (0: `SHRINK_BATCH`).
    pub batch: usize,
    /// `SHRINKER_NEEDS_FS`, `SHRINKER_NEEDS_IO`.
    pub flags: u32,
    /// Owner's data.
    pub private_data: *mut (),
    link: UnsafeCell<ListHead>,
    nr_deferred: AtomicUsize,
    registered: AtomicBool,
    /// Objects freed through this shrinker since registration.
    pub freed: AtomicUsize,
    /// Calls of `scan_objects`.
    pub scans: AtomicUsize,
}

// SAFETY: `link` is only touched under the machine's shrinker lock; the
// callbacks are plain fns; `private_data` is the owner's responsibility.
unsafe impl Sync for Shrinker {}
// SAFETY: as above.
unsafe impl Send for Shrinker {}

impl Shrinker {
    /// A shrinker with default seeks and batch.
    pub const fn new(name: &'static str, count_objects: CountFn, scan_objects: ScanFn) -> Self {
        Shrinker {
            name,
            count_objects,
            scan_objects,
            seeks: DEFAULT_SEEKS,
            batch: 0,
            flags: 0,
            private_data: ptr::null_mut(),
            link: UnsafeCell::new(ListHead::new()),
            nr_deferred: AtomicUsize::new(0),
            registered: AtomicBool::new(false),
            freed: AtomicUsize::new(0),
            scans: AtomicUsize::new(0),
        }
    }

    /// Builder: set flags.
    pub const fn with_flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    /// Builder: set seeks.
    pub const fn with_seeks(mut self, seeks: u32) -> Self {
        self.seeks = seeks;
        self
    }

    /// Builder: set the owner's data.
    pub const fn with_private(mut self, data: *mut ()) -> Self {
        self.private_data = data;
        self
    }

    /// Whether the shrinker is registered.
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }
}

/// An OOM notifier: returns the number of pages it freed.
pub struct OomNotifier {
    /// The callback.
    pub notifier_call: fn(&OomNotifier) -> usize,
    /// Owner's data.
    pub private_data: *mut (),
    link: UnsafeCell<ListHead>,
}

// SAFETY: `link` is only touched under the machine's notifier lock.
unsafe impl Sync for OomNotifier {}
// SAFETY: as above.
unsafe impl Send for OomNotifier {}

impl OomNotifier {
    /// A notifier.
    pub const fn new(notifier_call: fn(&OomNotifier) -> usize, private_data: *mut ()) -> Self {
        OomNotifier {
            notifier_call,
            private_data,
            link: UnsafeCell::new(ListHead::new()),
        }
    }
}

/// Reclaim state of a machine.
pub struct Reclaim {
    shrinkers: SpinLock<ListHead>,
    oom_notifiers: SpinLock<ListHead>,
    /// Futex word bumped by frees while allocations wait.
    pub(crate) free_seq: AtomicU32,
    /// Allocations waiting for memory.
    pub(crate) waiters: AtomicU32,
}

impl Reclaim {
    pub(crate) const fn new() -> Self {
        Reclaim {
            shrinkers: SpinLock::new(ListHead::new()),
            oom_notifiers: SpinLock::new(ListHead::new()),
            free_seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// # Safety
    /// `this` is at its final address.
    pub(crate) unsafe fn init(this: *mut Reclaim) {
        // SAFETY: caller contract.
        unsafe {
            ListHead::init((*this).shrinkers.data_ptr());
            ListHead::init((*this).oom_notifiers.data_ptr());
        }
    }
}

fn link_to_shrinker(l: *mut ListHead) -> *const Shrinker {
    crate::container_of!(l, Shrinker, link)
}

fn link_to_notifier(l: *mut ListHead) -> *const OomNotifier {
    crate::container_of!(l, OomNotifier, link)
}

impl<P: Platform> Kmem<P> {
    /// `register_shrinker`.
    ///
    /// # Safety
    /// `s` stays valid and does not move until `unregister_shrinker(s)`
    /// (or forever), and is registered with at most one machine.
    pub unsafe fn register_shrinker(&self, s: *const Shrinker) {
        let head = self.reclaim.shrinkers.lock(&self.platform);
        // SAFETY: the caller keeps `s` alive; we hold the list lock.
        unsafe {
            if (*s).registered.swap(true, Ordering::Relaxed) {
                return;
            }
            ListHead::add_tail((*s).link.get(), &*head as *const ListHead as *mut ListHead);
        }
    }

    /// Register a shrinker that lives forever.
    pub fn register_shrinker_static(&self, s: &'static Shrinker) {
        // SAFETY: `'static` satisfies the lifetime requirement.
        unsafe { self.register_shrinker(s) }
    }

    /// `unregister_shrinker`: after it returns, no call into `s` is running.
    ///
    /// # Safety
    /// `s` is valid.
    pub unsafe fn unregister_shrinker(&self, s: *const Shrinker) {
        let _head = self.reclaim.shrinkers.lock(&self.platform);
        // SAFETY: we hold the list lock; a registered shrinker is on the list.
        unsafe {
            if (*s).registered.swap(false, Ordering::Relaxed) {
                ListHead::del((*s).link.get());
            }
        }
    }

    /// `register_oom_notifier`.
    ///
    /// # Safety
    /// `n` stays valid and pinned until unregistered.
    pub unsafe fn register_oom_notifier(&self, n: *const OomNotifier) {
        let head = self.reclaim.oom_notifiers.lock(&self.platform);
        // SAFETY: caller contract; lock held.
        unsafe { ListHead::add_tail((*n).link.get(), &*head as *const ListHead as *mut ListHead) };
    }

    /// `unregister_oom_notifier`.
    ///
    /// # Safety
    /// `n` was registered with this machine.
    pub unsafe fn unregister_oom_notifier(&self, n: *const OomNotifier) {
        let _head = self.reclaim.oom_notifiers.lock(&self.platform);
        // SAFETY: caller contract; lock held.
        unsafe { ListHead::del((*n).link.get()) };
    }

    /// Call the OOM notifier chain; returns the pages freed.
    pub(crate) fn call_oom_notifiers(&self) -> usize {
        let head = self.reclaim.oom_notifiers.lock(&self.platform);
        let h = &*head as *const ListHead as *mut ListHead;
        let mut freed = 0;
        // SAFETY: the list is valid under the lock; notifiers are alive while registered.
        unsafe {
            let mut l = (*h).next;
            while !ptr::eq(l, h) {
                let n = &*link_to_notifier(l);
                freed += (n.notifier_call)(n);
                l = (*l).next;
            }
        }
        self.events.oom_notifier_freed.fetch_add(freed, Ordering::Relaxed);
        freed
    }

    /// `shrink_slab`: one pass over the shrinkers at `priority`; returns objects freed.
    pub fn shrink_slab(&self, gfp: Gfp, nid: usize, priority: u32) -> usize {
        let head = self.reclaim.shrinkers.lock(&self.platform);
        let h = &*head as *const ListHead as *mut ListHead;
        let mut freed = 0;
        // SAFETY: the list is valid under the lock; shrinkers stay alive while registered.
        unsafe {
            let mut l = (*h).next;
            while !ptr::eq(l, h) {
                let s = &*link_to_shrinker(l);
                l = (*l).next;
                if s.flags & SHRINKER_NEEDS_FS != 0 && !gfp.intersects(__GFP_FS) {
                    continue;
                }
                if s.flags & SHRINKER_NEEDS_IO != 0 && !gfp.intersects(__GFP_IO) {
                    continue;
                }
                freed += self.do_shrink_slab(s, gfp, nid, priority);
            }
        }
        freed
    }

    /// `do_shrink_slab`.
    fn do_shrink_slab(&self, s: &Shrinker, gfp: Gfp, nid: usize, priority: u32) -> usize {
        let mut sc = ShrinkControl {
            gfp_mask: gfp,
            nid,
            nr_to_scan: 0,
            nr_scanned: 0,
        };
        let freeable = (s.count_objects)(s, &sc);
        if freeable == 0 || freeable == SHRINK_EMPTY {
            return 0;
        }
        let batch = if s.batch == 0 { SHRINK_BATCH } else { s.batch };
        let nr = s.nr_deferred.swap(0, Ordering::Relaxed);
        let delta = if s.seeks == 0 {
            freeable / 2
        } else {
            (freeable >> priority) * 4 / s.seeks as usize
        };
        let mut total_scan = ((nr >> priority) + delta).min(freeable * 2);
        let mut freed = 0;
        let mut scanned = 0;
        while total_scan >= batch || total_scan >= freeable {
            let nr_to_scan = batch.min(total_scan);
            sc.nr_to_scan = nr_to_scan;
            sc.nr_scanned = nr_to_scan;
            s.scans.fetch_add(1, Ordering::Relaxed);
            let ret = (s.scan_objects)(s, &mut sc);
            if ret == SHRINK_STOP {
                break;
            }
            freed += ret;
            total_scan -= sc.nr_scanned.min(total_scan);
            scanned += sc.nr_scanned;
            if sc.nr_scanned == 0 {
                break;
            }
        }
        // Work not done is deferred to the next call, as the kernel does.
        s.nr_deferred
            .fetch_add(total_scan.min(freeable), Ordering::Relaxed);
        s.freed.fetch_add(freed, Ordering::Relaxed);
        self.events.slabs_scanned.fetch_add(scanned, Ordering::Relaxed);
        self.events.shrinker_freed.fetch_add(freed, Ordering::Relaxed);
        freed
    }

    /// `try_to_free_pages`: direct reclaim. Returns a measure of progress
    /// (objects freed by shrinkers plus pages that came back).
    pub fn try_to_free_pages(&self, gfp: Gfp, _order: u32, nid: usize) -> usize {
        self.events.allocstall.fetch_add(1, Ordering::Relaxed);
        let pflags = self.platform.current_flags();
        self.platform.set_current_flags(pflags | PF_MEMALLOC);
        let before = self.nr_free_pages();
        let mut freed = 0;
        for priority in (0..=DEF_PRIORITY).rev() {
            freed += self.shrink_slab(gfp, nid, priority);
            if self.nr_free_pages().saturating_sub(before) >= SWAP_CLUSTER_MAX {
                break;
            }
        }
        self.platform.set_current_flags(pflags);
        freed + self.nr_free_pages().saturating_sub(before)
    }

    /// `memalloc_noio_save`: every allocation of this task behaves as `GFP_NOIO`
    /// until `memalloc_noio_restore`.
    pub fn memalloc_noio_save(&self) -> u32 {
        self.memalloc_flags_save(crate::platform::task_flags::PF_MEMALLOC_NOIO)
    }

    /// `memalloc_noio_restore`.
    pub fn memalloc_noio_restore(&self, flags: u32) {
        self.memalloc_flags_restore(flags)
    }

    /// `memalloc_nofs_save`: every allocation of this task behaves as `GFP_NOFS`.
    pub fn memalloc_nofs_save(&self) -> u32 {
        self.memalloc_flags_save(crate::platform::task_flags::PF_MEMALLOC_NOFS)
    }

    /// `memalloc_nofs_restore`.
    pub fn memalloc_nofs_restore(&self, flags: u32) {
        self.memalloc_flags_restore(flags)
    }

    /// `memalloc_noreclaim_save`: set `PF_MEMALLOC` (use reserves, never reclaim).
    pub fn memalloc_noreclaim_save(&self) -> u32 {
        self.memalloc_flags_save(PF_MEMALLOC)
    }

    /// `memalloc_noreclaim_restore`.
    pub fn memalloc_noreclaim_restore(&self, flags: u32) {
        self.memalloc_flags_restore(flags)
    }

    /// `memalloc_flags_save`: returns the previous state of the given flags.
    pub fn memalloc_flags_save(&self, flags: u32) -> u32 {
        let old = self.platform.current_flags();
        self.platform.set_current_flags(old | flags);
        // Remember which of the flags were clear, to clear them again.
        !old & flags
    }

    /// `memalloc_flags_restore`.
    pub fn memalloc_flags_restore(&self, flags: u32) {
        let cur = self.platform.current_flags();
        self.platform.set_current_flags(cur & !flags);
    }

    /// Sleep until some memory is freed or `timeout_ns` passes; returns the
    /// time slept.
    pub(crate) fn wait_for_free_memory(&self, timeout_ns: u64) -> u64 {
        self.events.alloc_waits.fetch_add(1, Ordering::Relaxed);
        let seq = self.reclaim.free_seq.load(Ordering::Acquire);
        self.reclaim.waiters.fetch_add(1, Ordering::SeqCst);
        let start = self.platform.now_ns();
        self.platform
            .futex_wait(&self.reclaim.free_seq, seq, Some(timeout_ns));
        self.reclaim.waiters.fetch_sub(1, Ordering::SeqCst);
        self.platform.now_ns().saturating_sub(start).max(1)
    }

    /// Wake allocations waiting for memory, if any.
    #[inline(always)]
    pub(crate) fn wake_free_waiters(&self) {
        if self.reclaim.waiters.load(Ordering::Relaxed) != 0 {
            self.wake_free_waiters_slow();
        }
    }

    #[cold]
    fn wake_free_waiters_slow(&self) {
        self.reclaim.free_seq.fetch_add(1, Ordering::Release);
        self.platform.futex_wake(&self.reclaim.free_seq, u32::MAX);
    }
}
