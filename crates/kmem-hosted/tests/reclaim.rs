//! The slow path (reference/linux-mm.md §1.1 "Semantics to honour", §1.2
//! "Allocation path", §3.7 item 5): who may sleep, who reclaims, who fails,
//! and who never fails; shrinkers and their `__GFP_FS`/`__GFP_IO` context;
//! the OOM notifier chain.
//!
//! No test asserts a duration. Sleeping is observed through events
//! (`events.alloc_waits`, a "returned" flag checked before the waker acts).

mod common;

use common::*;
use kmem::vmscan::{OomNotifier, ShrinkControl, Shrinker, SHRINKER_NEEDS_FS, SHRINKER_NEEDS_IO};
use kmem::*;
use kmem_hosted::{HostedPlatform, Machine};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

fn waits(m: &Machine) -> usize {
    m.events.alloc_waits.load(Ordering::Relaxed)
}

fn stalls(m: &Machine) -> usize {
    m.events.allocstall.load(Ordering::Relaxed)
}

/// Exhaust the machine for GFP_KERNEL and hand back the pages.
fn exhausted(m: &Machine) -> Held {
    let held = exhaust(m, GFP_KERNEL);
    assert!(m
        .alloc_pages(GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY, 0)
        .is_err());
    held
}

/// Run `alloc` in a thread that records when it returned; wait until it has
/// slept (`alloc_waits` grew by `min_waits`), check it has not returned, run
/// `wake`, and return what the allocation returned.
fn sleeper(
    m: &Machine,
    gfp: Gfp,
    order: u32,
    min_waits: usize,
    wake: impl FnOnce(),
) -> Result<SendPage, AllocError> {
    let returned = AtomicBool::new(false);
    let w0 = waits(m);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = m.alloc_pages(gfp, order).map(SendPage);
            returned.store(true, Ordering::SeqCst);
            r
        });
        wait_until("the allocation to sleep", || {
            waits(m) >= w0 + min_waits || returned.load(Ordering::SeqCst)
        });
        assert!(
            !returned.load(Ordering::SeqCst),
            "{gfp:?} returned before anyone freed memory"
        );
        wake();
        h.join().unwrap()
    })
}

/// A GFP_KERNEL allocation on an exhausted machine sleeps until another
/// thread frees memory, then returns a page (kmem's stand-in for the OOM
/// killer: wait for memory to come back). The waker frees a single page.
#[test]
fn gfp_kernel_sleeps_until_one_page_is_freed() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=20000");
    let mut held = exhausted(&m);
    let (victim, order) = held.pop().unwrap();
    assert_eq!(order, 0);
    let r = sleeper(&m, GFP_KERNEL, 0, 3, || {
        // SAFETY: our page.
        unsafe { m.__free_pages(victim, 0) };
    });
    let p = r.expect("GFP_KERNEL failed although a page was freed").0;
    // A valid, usable page.
    let b = bytes(&m, p, 0);
    b.fill(0x77);
    held.push((p, 0));
    free_all(&m, held);
    assert_boot_state(&m);
}

/// The same when the waker frees a lot from another thread (its frees land
/// on its own CPU's lists first).
#[test]
fn gfp_kernel_sleeps_until_another_thread_frees_many() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=20000");
    let mut held = exhausted(&m);
    let half: Held = held.split_off(held.len() / 2);
    let half: Vec<(SendPage, u32)> = half.into_iter().map(|(p, o)| (SendPage(p), o)).collect();
    let r = sleeper(&m, GFP_KERNEL, 0, 3, || {
        std::thread::scope(|s| {
            s.spawn(|| {
                for (p, o) in half {
                    // SAFETY: our allocation.
                    unsafe { m.__free_pages(p.0, o) };
                }
            });
        });
    });
    held.push((r.expect("GFP_KERNEL failed although memory was freed").0, 0));
    free_all(&m, held);
    assert_boot_state(&m);
}

/// GFP_ATOMIC and GFP_NOWAIT never sleep and never enter direct reclaim: on
/// an exhausted machine they fail at once (no wait, no allocstall).
#[test]
fn atomic_and_nowait_never_sleep() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=20000");
    let mut held = exhausted(&m);
    let (w, st) = (waits(&m), stalls(&m));
    // GFP_ATOMIC still has its part of the min reserve.
    let mut atomic = 0;
    while let Ok(p) = m.alloc_pages(GFP_ATOMIC | __GFP_NOWARN, 0) {
        held.push((p, 0));
        atomic += 1;
    }
    assert!(atomic > 0, "GFP_ATOMIC found no reserve below min");
    for gfp in [
        GFP_ATOMIC,
        GFP_NOWAIT,
        GFP_ATOMIC | __GFP_NOWARN,
        GFP_NOWAIT | __GFP_ZERO,
    ] {
        for order in [0, 1, 3, 5] {
            assert!(m.alloc_pages(gfp, order).is_err(), "{gfp:?} order {order}");
        }
    }
    assert_eq!(waits(&m), w, "a non-blocking allocation slept");
    assert_eq!(stalls(&m), st, "a non-blocking allocation entered direct reclaim");
    // GFP_ATOMIC warns (no __GFP_NOWARN); GFP_NOWAIT is NOWARN by definition.
    assert!(
        m.dmesg()
            .contains("page allocation failure: order:0, mode:0x820(GFP_ATOMIC)"),
        "{}",
        m.dmesg()
    );
    free_all(&m, held);
    assert_boot_state(&m);
}

/// A sleeping allocation from atomic context is reported the kernel's way
/// instead of deadlocking.
#[test]
fn sleeping_allocation_in_atomic_context_is_reported() {
    let m = boot("quiet mem=64M nr_cpus=1 kswapd=off");
    let held = exhausted(&m);
    m.platform.preempt_count_add(1);
    let r = m.alloc_pages(GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN, 0);
    m.platform.preempt_count_sub(1);
    assert!(r.is_err());
    assert!(
        m.dmesg()
            .contains("BUG: sleeping function called from invalid context"),
        "{}",
        m.dmesg()
    );
    free_all(&m, held);
    assert_boot_state(&m);
}

/// With `oom_wait_ms=50` and nobody freeing, a GFP_KERNEL allocation fails
/// after the OOM step, with the OOM lines and the allocation failure report.
#[test]
fn oom_without_freeing_fails_with_report() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=50");
    let held = exhausted(&m);
    let since = m.dmesg_len();
    let w = waits(&m);
    assert!(m.alloc_pages(GFP_KERNEL, 0).is_err());
    assert!(waits(&m) > w, "the OOM step did not wait for memory");
    assert!(m.events.oom.load(Ordering::Relaxed) >= 1);
    let log = m.dmesg_since(since);
    assert!(
        log.contains("invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0"),
        "{log}"
    );
    assert!(log.contains("Out of memory"), "{log}");
    assert!(
        log.contains("page allocation failure: order:0, mode:0xcc0(GFP_KERNEL)"),
        "{log}"
    );
    assert!(log.contains("Mem-Info:"), "{log}");
    free_all(&m, held);
    assert_boot_state(&m);
}

/// `__GFP_NORETRY`: one reclaim pass, no waiting, no OOM; fails.
/// `__GFP_RETRY_MAYFAIL`: retries while reclaim progresses, never OOMs; fails.
/// Costly orders (> 3) without `__GFP_RETRY_MAYFAIL` back off after reclaim.
#[test]
fn noretry_mayfail_and_costly_orders_fail_without_waiting() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=20000");
    let held = exhausted(&m);
    let oom0 = m.events.oom.load(Ordering::Relaxed);
    let cases: [(Gfp, u32); 8] = [
        // Below ZONE_NORMAL and __GFP_THISNODE: the kernel does not OOM-kill
        // for these (`__alloc_pages_may_oom`), they fail.
        (GFP_KERNEL | __GFP_DMA32, 0),
        (GFP_KERNEL | __GFP_THISNODE, 0),
        (GFP_KERNEL | __GFP_NORETRY, 0),
        (GFP_KERNEL | __GFP_NORETRY, 2),
        (GFP_KERNEL | __GFP_RETRY_MAYFAIL, 0),
        (GFP_KERNEL | __GFP_RETRY_MAYFAIL, 5),
        (GFP_KERNEL, 4),
        (GFP_KERNEL, 10),
    ];
    for (gfp, order) in cases {
        let (w, st) = (waits(&m), stalls(&m));
        let fails = m.events.alloc_fail.load(Ordering::Relaxed);
        let since = m.dmesg_len();
        assert!(m.alloc_pages(gfp, order).is_err(), "{gfp:?} order {order}");
        assert_eq!(m.events.alloc_fail.load(Ordering::Relaxed), fails + 1);
        assert_eq!(waits(&m), w, "{gfp:?} order {order} waited");
        assert!(
            stalls(&m) > st,
            "{gfp:?} order {order} did not try direct reclaim"
        );
        if gfp.contains(__GFP_NORETRY) {
            assert_eq!(stalls(&m), st + 1, "__GFP_NORETRY reclaims once");
        }
        let log = m.dmesg_since(since);
        assert!(
            !log.contains("oom-killer"),
            "{gfp:?} order {order} invoked the OOM step:\n{log}"
        );
    }
    assert_eq!(m.events.oom.load(Ordering::Relaxed), oom0);
    // The failure report is ratelimited (one per 10 s): the first one printed.
    assert!(
        m.dmesg()
            .contains("page allocation failure: order:0, mode:0xcc4(GFP_KERNEL|GFP_DMA32)"),
        "{}",
        m.dmesg()
    );
    free_all(&m, held);
    assert_boot_state(&m);
}

/// `__GFP_NOFAIL` never fails: on an exhausted machine it keeps waiting past
/// the OOM wait budget until another thread frees memory, then returns a page.
#[test]
fn nofail_waits_until_memory_is_freed() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=50");
    let mut held = exhausted(&m);
    let give: Vec<(SendPage, u32)> = held
        .split_off(held.len() - 1)
        .into_iter()
        .map(|(p, o)| (SendPage(p), o))
        .collect();
    // 50 ticks of 4 ms are well past the 50 ms an ordinary allocation waits.
    let r = sleeper(&m, GFP_KERNEL | __GFP_NOFAIL, 0, 50, || {
        for (p, o) in give {
            // SAFETY: our allocation.
            unsafe { m.__free_pages(p.0, o) };
        }
    });
    held.push((r.expect("__GFP_NOFAIL returned failure").0, 0));
    free_all(&m, held);
    assert_boot_state(&m);
}

// ---------------------------------------------------------------------------
// Shrinkers.

/// A cache of pages that a shrinker can give back (like a slab cache's
/// free slabs). `private_data` points at it.
struct Pool {
    machine: *const Kmem<HostedPlatform>,
    pages: Mutex<Vec<SendPage>>,
    count_calls: AtomicUsize,
    scan_calls: AtomicUsize,
    /// The gfp_mask of every scan.
    scan_gfp: Mutex<Vec<Gfp>>,
}

// SAFETY: the machine is Sync and outlives the pool's registration.
unsafe impl Sync for Pool {}
// SAFETY: as above.
unsafe impl Send for Pool {}

impl Pool {
    fn new(m: &Machine, nr: usize) -> &'static Pool {
        let mut pages = Vec::new();
        for _ in 0..nr {
            pages.push(SendPage(m.alloc_pages(GFP_KERNEL, 0).unwrap()));
        }
        Box::leak(Box::new(Pool {
            machine: &**m,
            pages: Mutex::new(pages),
            count_calls: AtomicUsize::new(0),
            scan_calls: AtomicUsize::new(0),
            scan_gfp: Mutex::new(Vec::new()),
        }))
    }

    fn of(s: &Shrinker) -> &Pool {
        // SAFETY: private_data is a leaked &'static Pool.
        unsafe { &*(s.private_data as *const Pool) }
    }

    fn len(&self) -> usize {
        self.pages.lock().unwrap().len()
    }

    /// Give every page back to the machine.
    fn drain(&self) {
        for p in self.pages.lock().unwrap().drain(..) {
            // SAFETY: the pool owns the page; the machine is alive.
            unsafe { (*self.machine).__free_pages(p.0, 0) };
        }
    }
}

fn pool_count(s: &Shrinker, _sc: &ShrinkControl) -> usize {
    let pool = Pool::of(s);
    pool.count_calls.fetch_add(1, Ordering::Relaxed);
    pool.len()
}

fn pool_scan(s: &Shrinker, sc: &mut ShrinkControl) -> usize {
    let pool = Pool::of(s);
    pool.scan_calls.fetch_add(1, Ordering::Relaxed);
    pool.scan_gfp.lock().unwrap().push(sc.gfp_mask);
    let mut freed = 0;
    let mut pages = pool.pages.lock().unwrap();
    while freed < sc.nr_to_scan {
        let Some(p) = pages.pop() else { break };
        // SAFETY: the pool owns the page; the machine is alive.
        unsafe { (*pool.machine).__free_pages(p.0, 0) };
        freed += 1;
    }
    sc.nr_scanned = freed.max(1);
    freed
}

fn pool_shrinker(pool: &'static Pool, flags: u32) -> &'static Shrinker {
    Box::leak(Box::new(
        Shrinker::new("test-pool", pool_count, pool_scan)
            .with_flags(flags)
            .with_private(pool as *const Pool as *mut ()),
    ))
}

/// Direct reclaim (`shrink_slab`): a shrinker holding a pool of pages lets a
/// GFP_KERNEL allocation succeed on an exhausted machine, without the OOM step.
#[test]
fn shrinker_pool_satisfies_gfp_kernel() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=20000");
    let pool = Pool::new(&m, 1024);
    let mut held = exhausted(&m);
    let s = pool_shrinker(pool, 0);
    // SAFETY: the shrinker is leaked ('static) and unregistered before the machine drops.
    unsafe { m.register_shrinker(s) };
    let oom0 = m.events.oom.load(Ordering::Relaxed);
    for _ in 0..4 {
        held.push((
            m.alloc_pages(GFP_KERNEL, 0)
                .expect("reclaim through the shrinker failed"),
            0,
        ));
    }
    assert!(pool.scan_calls.load(Ordering::Relaxed) > 0);
    assert!(s.freed.load(Ordering::Relaxed) > 0);
    assert!(pool.len() < 1024);
    assert_eq!(
        m.events.oom.load(Ordering::Relaxed),
        oom0,
        "OOM step although the shrinker could help"
    );
    // Reclaim ran with the allocation's context.
    assert!(pool
        .scan_gfp
        .lock()
        .unwrap()
        .iter()
        .all(|g| g.contains(__GFP_FS | __GFP_IO)));
    // SAFETY: registered above.
    unsafe { m.unregister_shrinker(s) };
    pool.drain();
    free_all(&m, held);
    assert_boot_state(&m);
}

/// A scoped `memalloc_*_save` or a GFP_NOFS/GFP_NOIO request skips the
/// shrinkers that need the filesystem / block I/O (`current_gfp_context`).
#[test]
fn shrinker_context_nofs_noio() {
    let m = boot("quiet mem=64M nr_cpus=1 kswapd=off oom_wait_ms=20000");
    let fs_pool = Pool::new(&m, 256);
    let io_pool = Pool::new(&m, 256);
    let mut held = exhausted(&m);
    let fs = pool_shrinker(fs_pool, SHRINKER_NEEDS_FS);
    let io = pool_shrinker(io_pool, SHRINKER_NEEDS_IO);
    // SAFETY: leaked shrinkers, unregistered before the machine drops.
    unsafe {
        m.register_shrinker(fs);
        m.register_shrinker(io);
    }
    // Take back what a shrinker gave, without running the shrinkers (a NOIO
    // scope skips both), so the next request has to reclaim again.
    let reexhaust = |held: &mut Held| {
        let f = m.memalloc_noio_save();
        held.extend(exhaust(&m, GFP_KERNEL));
        m.memalloc_noio_restore(f);
    };
    let calls = |p: &Pool| p.count_calls.load(Ordering::Relaxed) + p.scan_calls.load(Ordering::Relaxed);
    let try_alloc = |gfp: Gfp| m.alloc_pages(gfp | __GFP_NORETRY | __GFP_NOWARN, 0).ok();

    // GFP_NOIO: neither may run (no __GFP_IO, no __GFP_FS).
    assert!(try_alloc(GFP_NOIO).is_none());
    assert_eq!(
        (calls(fs_pool), calls(io_pool)),
        (0, 0),
        "GFP_NOIO ran an FS or IO shrinker"
    );
    // memalloc_noio_save: GFP_KERNEL behaves as GFP_NOIO.
    let f = m.memalloc_noio_save();
    assert!(try_alloc(GFP_KERNEL).is_none());
    m.memalloc_noio_restore(f);
    assert_eq!(
        (calls(fs_pool), calls(io_pool)),
        (0, 0),
        "memalloc_noio_save scope ran an FS or IO shrinker"
    );

    // GFP_NOFS: the IO shrinker may run, the FS one may not.
    reexhaust(&mut held);
    if let Some(p) = try_alloc(GFP_NOFS) {
        held.push((p, 0));
    }
    assert_eq!(calls(fs_pool), 0, "GFP_NOFS ran an FS shrinker");
    assert!(calls(io_pool) > 0, "GFP_NOFS skipped an IO shrinker");
    assert!(io_pool
        .scan_gfp
        .lock()
        .unwrap()
        .iter()
        .all(|g| !g.intersects(__GFP_FS)));
    // memalloc_nofs_save: the same for GFP_KERNEL.
    reexhaust(&mut held);
    let io_before = calls(io_pool);
    let f = m.memalloc_nofs_save();
    if let Some(p) = try_alloc(GFP_KERNEL) {
        held.push((p, 0));
    }
    m.memalloc_nofs_restore(f);
    assert_eq!(calls(fs_pool), 0, "memalloc_nofs_save scope ran an FS shrinker");
    assert!(calls(io_pool) > io_before);
    // Nested scopes: NOIO inside NOFS, restored in order.
    reexhaust(&mut held);
    let a = m.memalloc_nofs_save();
    let b = m.memalloc_noio_save();
    let io_before = calls(io_pool);
    assert!(try_alloc(GFP_KERNEL).is_none(), "NOIO inside NOFS found memory");
    assert_eq!(calls(io_pool), io_before, "NOIO inside NOFS ran an IO shrinker");
    m.memalloc_noio_restore(b);
    m.memalloc_nofs_restore(a);

    // Outside the scopes GFP_KERNEL reaches both again.
    reexhaust(&mut held);
    let p = m
        .alloc_pages(GFP_KERNEL, 0)
        .expect("GFP_KERNEL with two shrinkers");
    held.push((p, 0));
    assert!(
        calls(fs_pool) > 0,
        "GFP_KERNEL skipped the FS shrinker after the scope ended"
    );
    // SAFETY: registered above.
    unsafe {
        m.unregister_shrinker(fs);
        m.unregister_shrinker(io);
    }
    fs_pool.drain();
    io_pool.drain();
    free_all(&m, held);
    assert_boot_state(&m);
}

/// GFP_ATOMIC (and GFP_NOWAIT) never run shrinkers: they cannot sleep, so
/// they never enter direct reclaim (kswapd is off here; it would run them
/// in its own thread).
#[test]
fn atomic_never_calls_shrinkers() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off");
    let pool = Pool::new(&m, 256);
    let mut held = exhausted(&m);
    let s = pool_shrinker(pool, 0);
    // SAFETY: leaked shrinker, unregistered before the machine drops.
    unsafe { m.register_shrinker(s) };
    while let Ok(p) = m.alloc_pages(GFP_ATOMIC | __GFP_NOWARN, 0) {
        held.push((p, 0));
    }
    for order in 0..4 {
        assert!(m.alloc_pages(GFP_NOWAIT, order).is_err());
        assert!(m.alloc_pages(GFP_ATOMIC | __GFP_NOWARN, order).is_err());
    }
    assert_eq!(
        pool.count_calls.load(Ordering::Relaxed),
        0,
        "an atomic allocation called a shrinker"
    );
    assert_eq!(pool.scan_calls.load(Ordering::Relaxed), 0);
    assert_eq!(pool.len(), 256);
    // SAFETY: registered above.
    unsafe { m.unregister_shrinker(s) };
    pool.drain();
    free_all(&m, held);
    assert_boot_state(&m);
}

/// kswapd, woken by allocations that hit the low watermark, runs the
/// shrinkers in its own thread and brings the node back towards high.
#[test]
fn kswapd_runs_shrinkers_in_the_background() {
    let m = boot("quiet mem=64M nr_cpus=2 oom_wait_ms=20000");
    if m.kswapd_threads() == 0 {
        // Hosted machines run kswapd unless told otherwise; nothing to test.
        return;
    }
    let pool = Pool::new(&m, 2048);
    let s = pool_shrinker(pool, 0);
    // SAFETY: leaked shrinker, unregistered before the machine drops.
    unsafe { m.register_shrinker(s) };
    // Allocate past the low watermark with requests that only wake kswapd.
    let mut held: Held = Vec::new();
    while let Ok(p) = m.alloc_pages(GFP_NOWAIT, 0) {
        held.push((p, 0));
        if pool.scan_calls.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    wait_until("kswapd to shrink the pool", || {
        pool.scan_calls.load(Ordering::Relaxed) > 0
    });
    assert!(m.events.kswapd_wake.load(Ordering::Relaxed) > 0);
    // SAFETY: registered above; unregister waits for running scans.
    unsafe { m.unregister_shrinker(s) };
    pool.drain();
    free_all(&m, held);
    assert_boot_state(&m);
}

/// The OOM notifier chain is called when shrinkers cannot help, and the
/// pages a notifier frees satisfy the allocation.
#[test]
fn oom_notifier_frees_pages_for_the_allocation() {
    for give in [8usize, 512] {
        let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=2000");
        let pool = Pool::new(&m, give);
        // A shrinker with nothing to give.
        let empty = Pool::new(&m, 0);
        let s = pool_shrinker(empty, 0);
        let mut held = exhausted(&m);
        // SAFETY: leaked shrinker, unregistered before the machine drops.
        unsafe { m.register_shrinker(s) };
        fn notify(n: &OomNotifier) -> usize {
            // SAFETY: private_data is a leaked &'static Pool.
            let pool = unsafe { &*(n.private_data as *const Pool) };
            let k = pool.len();
            pool.drain();
            k
        }
        let n: &'static OomNotifier =
            Box::leak(Box::new(OomNotifier::new(notify, pool as *const Pool as *mut ())));
        // SAFETY: leaked notifier, unregistered before the machine drops.
        unsafe { m.register_oom_notifier(n) };
        let w = waits(&m);
        let r = m.alloc_pages(GFP_KERNEL, 0);
        assert!(
            r.is_ok(),
            "notifier freed {give} pages, allocation still failed:\n{}",
            m.dmesg()
        );
        held.push((r.unwrap(), 0));
        assert_eq!(pool.len(), 0, "notifier not called");
        assert_eq!(m.events.oom_notifier_freed.load(Ordering::Relaxed), give);
        assert!(
            empty.count_calls.load(Ordering::Relaxed) > 0,
            "shrinkers were not tried first"
        );
        assert_eq!(waits(&m), w, "waited although the notifier freed memory");
        // SAFETY: registered above.
        unsafe {
            m.unregister_oom_notifier(n);
            m.unregister_shrinker(s);
        }
        free_all(&m, held);
        assert_boot_state(&m);
    }
}

/// Reclaim runs with PF_MEMALLOC: a shrinker that itself allocates (as
/// writeback would) gets the reserves and never recurses into reclaim.
#[test]
fn shrinker_allocating_does_not_recurse() {
    let m = boot("quiet mem=64M nr_cpus=2 kswapd=off oom_wait_ms=20000");
    let pool = Pool::new(&m, 512);
    let mut held = exhausted(&m);
    static DEPTH: AtomicUsize = AtomicUsize::new(0);
    static MAX_DEPTH: AtomicUsize = AtomicUsize::new(0);
    static GOT: AtomicUsize = AtomicUsize::new(0);
    fn scan_allocating(s: &Shrinker, sc: &mut ShrinkControl) -> usize {
        let pool = Pool::of(s);
        let d = DEPTH.fetch_add(1, Ordering::SeqCst) + 1;
        MAX_DEPTH.fetch_max(d, Ordering::SeqCst);
        // SAFETY: the machine outlives the registration.
        let m = unsafe { &*pool.machine };
        if let Ok(p) = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 0) {
            GOT.fetch_add(1, Ordering::SeqCst);
            // SAFETY: just allocated.
            unsafe { m.__free_pages(p, 0) };
        }
        let r = pool_scan(s, sc);
        DEPTH.fetch_sub(1, Ordering::SeqCst);
        r
    }
    let s: &'static Shrinker = Box::leak(Box::new(
        Shrinker::new("allocating", pool_count, scan_allocating).with_private(pool as *const Pool as *mut ()),
    ));
    // SAFETY: leaked shrinker, unregistered before the machine drops.
    unsafe { m.register_shrinker(s) };
    held.push((
        m.alloc_pages(GFP_KERNEL, 0)
            .expect("reclaim with an allocating shrinker"),
        0,
    ));
    assert_eq!(MAX_DEPTH.load(Ordering::SeqCst), 1, "reclaim recursed");
    assert!(
        GOT.load(Ordering::SeqCst) > 0,
        "PF_MEMALLOC allocation inside reclaim did not get the reserves"
    );
    // SAFETY: registered above.
    unsafe { m.unregister_shrinker(s) };
    pool.drain();
    free_all(&m, held);
    assert_boot_state(&m);
}
