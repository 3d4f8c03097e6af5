//! Memory pools (reference/linux-mm.md §1.5, §3.7 item 6): alloc_fn first,
//! reserve second, refill-before-free, `mempool_alloc_preallocated`, resize
//! shrink/grow, waiters woken by free, GFP_ATOMIC NULL when the reserve is
//! empty — and the promise itself: with the machine's memory exhausted, a
//! pool created before still serves `min_nr` elements, and sleeping callers
//! make progress as others free.
//!
//! Real threads; no test asserts a duration. Sleeping is observed through
//! events (the pool's waiter count and wait statistics, a "returned" flag
//! checked before the waker acts).

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::mempool::typed::Mempool as TypedMempool;
use kmem::mempool::{Mempool, MempoolStats};
use kmem::page::Page;
use kmem::slab::{KmemCache, SlabFlags};
use kmem::*;
use kmem_hosted::{HostedPlatform, Machine};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

const CMDLINE: &str = "quiet mem=64M nr_cpus=2 kswapd=off";

/// An element crossing threads (ownership moves with the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Elem(*mut u8);
// SAFETY: an element belongs to whoever holds this value; the pool is Sync.
unsafe impl Send for Elem {}

fn pool_ref(p: NonNull<Mempool>) -> &'static Mempool {
    // SAFETY: every test destroys its pools only after the last use of the
    // references it took (the 'static is a test convenience).
    unsafe { &*p.as_ptr() }
}

fn stats(p: &Mempool) -> MempoolStats {
    p.stats()
}

fn warnings(m: &Machine) -> usize {
    m.events.warnings.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// A user-supplied (C-style) backing allocator that counts and can fail.
// ---------------------------------------------------------------------------

struct Backing<'m> {
    m: &'m Kmem<HostedPlatform>,
    size: usize,
    fail: AtomicBool,
    allocs: AtomicUsize,
    frees: AtomicUsize,
    calls: Mutex<Vec<Gfp>>,
}

impl<'m> Backing<'m> {
    fn new(m: &'m Machine, size: usize) -> Self {
        Backing {
            m,
            size,
            fail: AtomicBool::new(false),
            allocs: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
            calls: Mutex::new(Vec::new()),
        }
    }
    fn data(&self) -> *mut () {
        self as *const Self as *mut ()
    }
    fn calls(&self) -> Vec<Gfp> {
        self.calls.lock().unwrap().clone()
    }
}

/// # Safety
/// `data` is a live `Backing`.
unsafe fn backing_alloc(gfp: Gfp, data: *mut ()) -> *mut u8 {
    // SAFETY: caller's contract.
    let b = unsafe { &*(data as *const Backing<'_>) };
    b.calls.lock().unwrap().push(gfp);
    if b.fail.load(Ordering::SeqCst) {
        return core::ptr::null_mut();
    }
    match b.m.kmalloc(b.size, gfp) {
        Ok(p) => {
            b.allocs.fetch_add(1, Ordering::SeqCst);
            p.as_ptr()
        }
        Err(_) => core::ptr::null_mut(),
    }
}

/// # Safety
/// `data` is a live `Backing`; `e` came from `backing_alloc`.
unsafe fn backing_free(e: *mut u8, data: *mut ()) {
    // SAFETY: caller's contract.
    let b = unsafe { &*(data as *const Backing<'_>) };
    b.frees.fetch_add(1, Ordering::SeqCst);
    // SAFETY: a kmalloc'd element given up by the pool.
    unsafe { b.m.kfree(e) };
}

fn backing_pool(m: &Machine, min_nr: usize, b: &Backing<'_>) -> NonNull<Mempool> {
    // SAFETY: the callbacks accept `b`, which outlives the pool in every test.
    unsafe { m.mempool_create(min_nr, backing_alloc, backing_free, b.data()) }.expect("mempool_create")
}

// ---------------------------------------------------------------------------
// The memory hog
// ---------------------------------------------------------------------------

fn kmalloc_cache(m: &Machine, size: usize) -> NonNull<KmemCache> {
    m.kmalloc_slab(size, GFP_KERNEL).expect("kmalloc cache")
}

// ---------------------------------------------------------------------------
// The algorithm
// ---------------------------------------------------------------------------

/// With memory available, every allocation is served by alloc_fn and the
/// reserve is never touched; frees with a full reserve go back to free_fn.
#[test]
fn alloc_fn_is_tried_before_the_reserve() {
    let m = boot(CMDLINE);
    let b = Backing::new(&m, 192);
    let p = pool_ref(backing_pool(&m, 4, &b));
    assert_eq!((p.min_nr(), p.curr_nr()), (4, 4));
    assert_eq!(b.allocs.load(Ordering::SeqCst), 4, "prefill");
    let mut got = Vec::new();
    for _ in 0..10 {
        let e = m.mempool_alloc(p, GFP_KERNEL);
        assert!(!e.is_null());
        got.push(e);
        assert_eq!(p.curr_nr(), 4, "the reserve was touched with memory available");
    }
    let s = stats(p);
    assert_eq!((s.alloc_backing, s.alloc_reserve, s.outstanding), (10, 0, 10));
    for e in got {
        // SAFETY: ours, from this pool.
        unsafe { m.mempool_free(e, p) };
    }
    let s = stats(p);
    assert_eq!(
        (s.free_backing, s.free_reserve, s.curr_nr, s.outstanding),
        (10, 0, 4, 0)
    );
    assert_eq!(b.frees.load(Ordering::SeqCst), 10);
    // SAFETY: ours, nothing outstanding.
    unsafe { m.mempool_destroy(p as *const Mempool as *mut Mempool) };
    assert_eq!(b.frees.load(Ordering::SeqCst), 14, "destroy frees the reserve");
}

/// The exact order of mempool_alloc: alloc_fn with the mask stripped of
/// __GFP_DIRECT_RECLAIM and __GFP_IO (plus NOMEMALLOC|NORETRY|NOWARN), then
/// the reserve, then alloc_fn once more with the caller's full mask, then
/// NULL for a caller that may not sleep.
#[test]
fn mempool_alloc_follows_the_kernel_order() {
    let m = boot(CMDLINE);
    let b = Backing::new(&m, 64);
    let p = pool_ref(backing_pool(&m, 1, &b));
    b.calls.lock().unwrap().clear();
    b.fail.store(true, Ordering::SeqCst);
    let extra = __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN;

    // Reserve non-empty: one stripped attempt, then the reserve.
    let e = m.mempool_alloc(p, GFP_NOFS);
    assert!(!e.is_null());
    let first = (GFP_NOFS | extra).without(__GFP_DIRECT_RECLAIM | __GFP_IO);
    assert_eq!(b.calls(), vec![first]);
    assert!(!first.allows_blocking() && !first.intersects(__GFP_IO));
    assert_eq!(stats(p).alloc_reserve, 1);

    // Reserve empty, GFP_ATOMIC: the stripped mask equals the full one, so
    // there is no second attempt: one call, then NULL.
    b.calls.lock().unwrap().clear();
    assert!(m.mempool_alloc(p, GFP_ATOMIC).is_null());
    assert_eq!(b.calls(), vec![GFP_ATOMIC | extra]);

    // Reserve empty, GFP_NOWAIT-like mask with __GFP_IO but no reclaim: two
    // calls (stripped, then full), then NULL.
    b.calls.lock().unwrap().clear();
    let g = GFP_NOWAIT | __GFP_IO;
    assert!(m.mempool_alloc(p, g).is_null());
    assert_eq!(b.calls(), vec![(g | extra).without(__GFP_IO), g | extra]);
    assert_eq!(stats(p).alloc_fail, 2);

    // Reserve empty, GFP_KERNEL: stripped, full, then sleep; a free wakes
    // it; it tries alloc_fn (full mask) again, then takes the freed element.
    b.calls.lock().unwrap().clear();
    let returned = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let e = Elem(m.mempool_alloc(p, GFP_KERNEL));
            returned.store(true, Ordering::SeqCst);
            e
        });
        wait_until("the allocation to sleep", || {
            p.nr_waiters() == 1 || returned.load(Ordering::SeqCst)
        });
        assert!(
            !returned.load(Ordering::SeqCst),
            "GFP_KERNEL returned with nothing to give"
        );
        let calls = b.calls();
        assert_eq!(
            calls[..2],
            [
                (GFP_KERNEL | extra).without(__GFP_DIRECT_RECLAIM | __GFP_IO),
                GFP_KERNEL | extra
            ]
        );
        // SAFETY: ours, from this pool.
        unsafe { m.mempool_free(e, p) };
        assert_eq!(
            h.join().unwrap(),
            Elem(e),
            "the waiter did not get the freed element"
        );
    });
    assert!(b.calls().len() >= 3, "no alloc_fn attempt after waking");
    assert!(b.calls()[2..].iter().all(|&g| g == GFP_KERNEL | extra));
    b.fail.store(false, Ordering::SeqCst);
    // SAFETY: ours.
    unsafe {
        m.mempool_free(e, p);
        m.mempool_destroy(p as *const Mempool as *mut Mempool);
    }
}

/// Frees refill the reserve before anything goes back to the allocator.
#[test]
fn free_refills_the_reserve_before_giving_memory_back() {
    let m = boot(CMDLINE);
    let b = Backing::new(&m, 128);
    let p = pool_ref(backing_pool(&m, 4, &b));
    let mut reserve = Vec::new();
    for _ in 0..4 {
        reserve.push(m.mempool_alloc_preallocated(p));
    }
    assert_eq!(p.curr_nr(), 0);
    let backing: Vec<*mut u8> = (0..3).map(|_| m.mempool_alloc(p, GFP_KERNEL)).collect();
    assert_eq!(stats(p).alloc_backing, 3);
    // Elements from alloc_fn refill the reserve too: any element will do.
    for (i, &e) in backing.iter().enumerate() {
        // SAFETY: ours.
        unsafe { m.mempool_free(e, p) };
        assert_eq!(p.curr_nr(), i + 1);
    }
    assert_eq!(
        b.frees.load(Ordering::SeqCst),
        0,
        "freed to the allocator with the reserve short"
    );
    for (i, &e) in reserve.iter().enumerate() {
        // SAFETY: ours.
        unsafe { m.mempool_free(e, p) };
        assert_eq!(p.curr_nr(), 4);
        assert_eq!(
            b.frees.load(Ordering::SeqCst),
            i,
            "reserve full: back to the allocator"
        );
    }
    let s = stats(p);
    assert_eq!((s.free_reserve, s.free_backing, s.outstanding), (4, 3, 0));
    // SAFETY: ours.
    unsafe { m.mempool_destroy(p as *const Mempool as *mut Mempool) };
    // NULL is ignored by both.
    // SAFETY: null.
    unsafe { m.mempool_destroy(core::ptr::null_mut()) };
}

/// `mempool_alloc_preallocated` takes from the reserve only, even with
/// memory available, and returns NULL when it is empty.
#[test]
fn alloc_preallocated_uses_only_the_reserve() {
    let m = boot(CMDLINE);
    let b = Backing::new(&m, 32);
    let p = pool_ref(backing_pool(&m, 3, &b));
    let calls = b.calls().len();
    let e: Vec<*mut u8> = (0..3).map(|_| m.mempool_alloc_preallocated(p)).collect();
    assert!(e.iter().all(|x| !x.is_null()));
    assert!(m.mempool_alloc_preallocated(p).is_null());
    assert_eq!(b.calls().len(), calls, "alloc_fn called");
    let s = stats(p);
    assert_eq!(
        (s.alloc_reserve, s.alloc_backing, s.alloc_fail, s.curr_nr),
        (3, 0, 1, 0)
    );
    // LIFO: the last element in is the first out.
    // SAFETY: ours.
    unsafe { m.mempool_free(e[1], p) };
    assert_eq!(m.mempool_alloc_preallocated(p), e[1]);
    for x in e {
        // SAFETY: ours.
        unsafe { m.mempool_free(x, p) };
    }
    assert_eq!(p.curr_nr(), 3);
    // SAFETY: ours.
    unsafe { m.mempool_destroy(p as *const Mempool as *mut Mempool) };
}

/// A failed preallocation tears everything down: None, every element freed.
#[test]
fn create_fails_cleanly_when_preallocation_fails() {
    let m = boot(CMDLINE);
    // Fails on the 5th element: a counting alloc_fn that refuses after 4.
    struct Limited<'m> {
        b: Backing<'m>,
        left: AtomicUsize,
    }
    /// # Safety
    /// `d` is a live `Limited`.
    unsafe fn lim_alloc(g: Gfp, d: *mut ()) -> *mut u8 {
        // SAFETY: caller's contract.
        let l = unsafe { &*(d as *const Limited<'_>) };
        if l.left.fetch_sub(1, Ordering::SeqCst) == 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: the Backing is the first field's address's object.
        unsafe { backing_alloc(g, &l.b as *const Backing<'_> as *mut ()) }
    }
    /// # Safety
    /// `d` is a live `Limited`.
    unsafe fn lim_free(e: *mut u8, d: *mut ()) {
        // SAFETY: caller's contract.
        let l = unsafe { &*(d as *const Limited<'_>) };
        // SAFETY: forwarded.
        unsafe { backing_free(e, &l.b as *const Backing<'_> as *mut ()) }
    }
    let l = Limited {
        b: Backing::new(&m, 100),
        left: AtomicUsize::new(4),
    };
    // SAFETY: `l` outlives the (failed) pool.
    let r = unsafe { m.mempool_create(8, lim_alloc, lim_free, &l as *const Limited<'_> as *mut ()) };
    assert!(r.is_none());
    assert_eq!(l.b.allocs.load(Ordering::SeqCst), 4);
    assert_eq!(l.b.frees.load(Ordering::SeqCst), 4, "partial pool not torn down");
}

/// Shrinking frees the surplus reserve at once; growing fills the new
/// reserve with GFP_KERNEL, and when that fails it still succeeds and later
/// frees top the reserve up.
#[test]
fn resize_shrinks_and_grows() {
    let m = boot(CMDLINE);
    let b = Backing::new(&m, 256);
    let p = pool_ref(backing_pool(&m, 8, &b));
    m.mempool_resize(p, 3).unwrap();
    assert_eq!((p.min_nr(), p.curr_nr()), (3, 3));
    assert_eq!(b.frees.load(Ordering::SeqCst), 5);

    b.calls.lock().unwrap().clear();
    m.mempool_resize(p, 10).unwrap();
    assert_eq!((p.min_nr(), p.curr_nr()), (10, 10));
    assert_eq!(b.calls(), vec![GFP_KERNEL; 7]);

    // Elements held outside the pool, then growth that cannot be filled.
    let out: Vec<*mut u8> = (0..2).map(|_| m.mempool_alloc(p, GFP_KERNEL)).collect();
    b.fail.store(true, Ordering::SeqCst);
    m.mempool_resize(p, 12).expect("growth is best effort");
    assert_eq!((p.min_nr(), p.curr_nr()), (12, 10));
    for e in out {
        // SAFETY: ours.
        unsafe { m.mempool_free(e, p) };
    }
    assert_eq!(p.curr_nr(), 12, "frees did not top the grown reserve up");
    // Shrink while below: frees only what exceeds the new minimum.
    let f0 = b.frees.load(Ordering::SeqCst);
    m.mempool_resize(p, 12).unwrap();
    assert_eq!(b.frees.load(Ordering::SeqCst), f0);
    m.mempool_resize(p, 1).unwrap();
    assert_eq!((p.min_nr(), p.curr_nr()), (1, 1));
    assert_eq!(b.frees.load(Ordering::SeqCst), f0 + 11);

    // Zero is the kernel's BUG_ON: refused with a warning.
    let w = warnings(&m);
    assert!(m.mempool_resize(p, 0).is_err());
    assert_eq!(warnings(&m), w + 1);
    assert_eq!(p.min_nr(), 1);
    // SAFETY: ours.
    unsafe { m.mempool_destroy(p as *const Mempool as *mut Mempool) };
    assert_eq!(
        b.allocs.load(Ordering::SeqCst),
        b.frees.load(Ordering::SeqCst),
        "leak"
    );
}

/// Destroying a pool with elements outstanding is reported (a WARN naming
/// the pool and the count); only the reserve is freed.
#[test]
fn destroy_with_outstanding_elements_is_reported() {
    let m = boot(CMDLINE);
    let p = m.mempool_create_kmalloc_pool(2, 96).unwrap();
    let pr = pool_ref(p);
    let held: Vec<*mut u8> = (0..3).map(|_| m.mempool_alloc(pr, GFP_KERNEL)).collect();
    // SAFETY: ours.
    unsafe { m.mempool_free(held[0], pr) };
    assert_eq!(pr.outstanding(), 2);
    let (w, since) = (warnings(&m), m.dmesg_len());
    // SAFETY: ours; the outstanding elements are freed below, not through the pool.
    unsafe { m.mempool_destroy(p.as_ptr()) };
    assert_eq!(warnings(&m), w + 1);
    let log = m.dmesg_since(since);
    assert!(
        log.contains("mempool_destroy: pool kmalloc:96") && log.contains("2 elements outstanding"),
        "{log}"
    );
    for e in &held[1..] {
        // SAFETY: kmalloc'd elements we still own.
        unsafe { m.kfree(*e) };
    }
    // A clean destroy says nothing.
    let p = m.mempool_create_kmalloc_pool(2, 96).unwrap();
    let w = warnings(&m);
    // SAFETY: ours.
    unsafe { m.mempool_destroy(p.as_ptr()) };
    assert_eq!(warnings(&m), w);
}

// ---------------------------------------------------------------------------
// The promise, with the machine's memory exhausted
// ---------------------------------------------------------------------------

/// A pool created before memory ran out still serves min_nr GFP_NOIO
/// allocations; the next GFP_ATOMIC one returns NULL; a sleeping GFP_NOIO
/// allocation blocks until a free and returns the freed element.
#[test]
fn promise_holds_with_memory_exhausted() {
    let m = boot(CMDLINE);
    const SIZE: usize = 512;
    const MIN: usize = 8;
    let p = pool_ref(m.mempool_create_kmalloc_pool(MIN, SIZE).unwrap());
    let h = hog(&m, &[kmalloc_cache(&m, SIZE)]);
    assert!(
        m.kmalloc(SIZE, GFP_NOIO | __GFP_NOWARN | __GFP_NORETRY).is_err(),
        "the hog left memory"
    );

    let mut got: Vec<*mut u8> = (0..MIN).map(|_| m.mempool_alloc(p, GFP_NOIO)).collect();
    assert!(got.iter().all(|e| !e.is_null()));
    let s = stats(p);
    assert_eq!((s.alloc_reserve, s.alloc_backing, s.curr_nr), (MIN, 0, 0));
    for &e in &got {
        // SAFETY: a live SIZE-byte element we own.
        unsafe { core::ptr::write_bytes(e, 0xa5, SIZE) };
    }
    assert!(
        m.mempool_alloc(p, GFP_ATOMIC).is_null(),
        "GFP_ATOMIC beyond the reserve"
    );
    assert!(m.mempool_alloc(p, GFP_NOWAIT).is_null());
    assert!(m.mempool_alloc_preallocated(p).is_null());

    // A sleeping allocation blocks until someone frees.
    let returned = AtomicBool::new(false);
    let victim = got.pop().unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let e = Elem(m.mempool_alloc(p, GFP_NOIO));
            returned.store(true, Ordering::SeqCst);
            e
        });
        wait_until("the allocation to sleep", || {
            stats(p).waits >= 1 || returned.load(Ordering::SeqCst)
        });
        assert!(
            !returned.load(Ordering::SeqCst),
            "GFP_NOIO returned before any free"
        );
        assert_eq!(p.nr_waiters(), 1);
        // SAFETY: ours.
        unsafe { m.mempool_free(victim, p) };
        assert_eq!(t.join().unwrap(), Elem(victim), "did not get the freed element");
    });
    got.push(victim);
    assert_eq!(p.curr_nr(), 0);

    // Frees refill the reserve (memory is still exhausted: nothing else would do).
    for (i, &e) in got.iter().enumerate() {
        // SAFETY: ours.
        unsafe { m.mempool_free(e, p) };
        assert_eq!(p.curr_nr(), i + 1);
    }
    assert_eq!(stats(p).free_backing, 0);
    // And the reserve serves again.
    let again: Vec<*mut u8> = (0..MIN).map(|_| m.mempool_alloc(p, GFP_NOIO)).collect();
    assert!(again.iter().all(|e| !e.is_null()));
    for e in again {
        // SAFETY: ours.
        unsafe { m.mempool_free(e, p) };
    }
    unhog(&m, h);
    // SAFETY: ours, nothing outstanding.
    unsafe { m.mempool_destroy(p as *const Mempool as *mut Mempool) };
}

/// Block I/O: two producers allocate requests with GFP_NOIO and queue them;
/// one consumer completes them and frees each back to the pool. Memory is
/// exhausted and the pool's reserve (4) is smaller than the producers'
/// demand, so producers sleep in mempool_alloc, and every request still
/// completes.
#[test]
fn block_io_producers_and_consumer_make_progress() {
    let m = boot(CMDLINE);
    const SIZE: usize = 256;
    const MIN: usize = 4;
    const PER_PRODUCER: usize = 2000;
    let p = pool_ref(m.mempool_create_kmalloc_pool(MIN, SIZE).unwrap());
    let h = hog(&m, &[kmalloc_cache(&m, SIZE)]);

    let queue: (Mutex<VecDeque<(Elem, usize)>>, Condvar) = (Mutex::new(VecDeque::new()), Condvar::new());
    let completed = AtomicUsize::new(0);
    let max_in_flight = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for producer in 0..2usize {
            let (queue, max_in_flight) = (&queue, &max_in_flight);
            let m = &m;
            s.spawn(move || {
                for i in 0..PER_PRODUCER {
                    let tag = producer * PER_PRODUCER + i;
                    let e = m.mempool_alloc(p, GFP_NOIO);
                    assert!(!e.is_null(), "GFP_NOIO mempool_alloc returned NULL");
                    // SAFETY: a live element we own; "fill the bio".
                    unsafe { (e as *mut usize).write(tag) };
                    let mut q = queue.0.lock().unwrap();
                    q.push_back((Elem(e), tag));
                    max_in_flight.fetch_max(q.len(), Ordering::Relaxed);
                    queue.1.notify_one();
                }
            });
        }
        s.spawn(|| {
            while completed.load(Ordering::Relaxed) < 2 * PER_PRODUCER {
                let (e, tag) = {
                    let mut q = queue.0.lock().unwrap();
                    loop {
                        if let Some(x) = q.pop_front() {
                            break x;
                        }
                        q = queue.1.wait(q).unwrap();
                    }
                };
                // SAFETY: the producer wrote the tag; the element is ours now.
                assert_eq!(unsafe { (e.0 as *const usize).read() }, tag, "request corrupted");
                // SAFETY: ours; "end_io".
                unsafe { m.mempool_free(e.0, p) };
                completed.fetch_add(1, Ordering::Relaxed);
            }
        });
    });
    assert_eq!(completed.load(Ordering::Relaxed), 2 * PER_PRODUCER);
    let s = stats(p);
    assert_eq!(s.alloc_backing, 0, "memory was not exhausted");
    assert_eq!(s.alloc_reserve, 2 * PER_PRODUCER);
    assert_eq!(s.free_reserve, 2 * PER_PRODUCER);
    assert_eq!((s.curr_nr, s.outstanding), (MIN, 0));
    assert!(max_in_flight.load(Ordering::Relaxed) <= MIN);
    eprintln!("block I/O: {s:?}");
    unhog(&m, h);
    // SAFETY: ours.
    unsafe { m.mempool_destroy(p as *const Mempool as *mut Mempool) };
}

// ---------------------------------------------------------------------------
// Ready-made pools
// ---------------------------------------------------------------------------

#[test]
fn slab_pool() {
    let m = boot(CMDLINE);
    let c = m
        .kmem_cache_create("bio-test", 200, 8, SlabFlags(0), None)
        .expect("cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.mempool_create_slab_pool(5, c) }.unwrap();
    let pr = pool_ref(p);
    assert_eq!(pr.name(), "slab:bio-test");
    assert_eq!(pr.curr_nr(), 5);
    let e = m.mempool_alloc(pr, GFP_KERNEL);
    assert!(!e.is_null());
    assert!(m.ksize(e) >= 200, "not an object of the cache");
    assert_eq!(pr.curr_nr(), 5);

    // Exhausted: the reserve serves, then GFP_ATOMIC fails.
    let h = hog(&m, &[c]);
    let r: Vec<*mut u8> = (0..5).map(|_| m.mempool_alloc(pr, GFP_NOIO)).collect();
    assert!(r.iter().all(|e| !e.is_null()));
    assert!(m.mempool_alloc(pr, GFP_ATOMIC).is_null());
    for x in r.into_iter().chain([e]) {
        // SAFETY: ours.
        unsafe { m.mempool_free(x, pr) };
    }
    assert_eq!((pr.curr_nr(), stats(pr).free_backing), (5, 1));
    unhog(&m, h);
    let w = warnings(&m);
    // SAFETY: ours, then the cache (empty once the pool is gone).
    unsafe {
        m.mempool_destroy(p.as_ptr());
        m.kmem_cache_destroy(c);
    }
    assert_eq!(warnings(&m), w, "{}", m.dmesg());
}

/// The fast paths' counts are per-CPU: threads allocating and freeing at
/// once on both CPUs (and migrating between them) lose no count, so the
/// totals and `outstanding` are exact once they stop, and destroying the
/// pool reports nothing.
#[test]
fn statistics_are_exact_across_threads() {
    const THREADS: usize = 4;
    const PAIRS: usize = 20_000;
    let m = boot(CMDLINE);
    let c = m
        .kmem_cache_create("stats-test", 64, 8, SlabFlags(0), None)
        .expect("cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let p = unsafe { m.mempool_create_slab_pool(4, c) }.unwrap();
    let pr = pool_ref(p);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let m = &m;
            s.spawn(move || {
                let mut held = VecDeque::new();
                for i in 0..PAIRS {
                    let e = m.mempool_alloc(pr, GFP_KERNEL);
                    assert!(!e.is_null());
                    // SAFETY: 64 bytes of ours.
                    unsafe { e.write(t as u8) };
                    held.push_back(Elem(e));
                    if held.len() > 3 || i + 1 == PAIRS {
                        while let Some(Elem(x)) = held.pop_front() {
                            // SAFETY: ours, from this pool.
                            unsafe { m.mempool_free(x, pr) };
                        }
                    }
                    if i % 4096 == 0 {
                        std::thread::yield_now();
                    }
                }
            });
        }
    });
    let st = stats(pr);
    assert_eq!(st.alloc_backing + st.alloc_reserve, THREADS * PAIRS, "{st:?}");
    assert_eq!(st.free_backing + st.free_reserve, THREADS * PAIRS, "{st:?}");
    assert_eq!((st.outstanding, st.alloc_fail, st.curr_nr), (0, 0, 4), "{st:?}");
    let w = warnings(&m);
    // SAFETY: nothing outstanding; then the cache, empty once the pool is gone.
    unsafe {
        m.mempool_destroy(p.as_ptr());
        m.kmem_cache_destroy(c);
    }
    assert_eq!(warnings(&m), w, "{}", m.dmesg());
}

#[test]
fn kmalloc_pool() {
    let m = boot(CMDLINE);
    for size in [8usize, 100, 4096, 3 * 4096] {
        let p = m.mempool_create_kmalloc_pool(3, size).unwrap();
        let pr = pool_ref(p);
        assert_eq!(pr.name(), format!("kmalloc:{size}"));
        let e = m.mempool_alloc(pr, GFP_KERNEL);
        assert!(m.ksize(e) >= size);
        // SAFETY: size bytes of ours.
        unsafe { core::ptr::write_bytes(e, 0x5a, size) };
        let r = m.mempool_alloc_preallocated(pr);
        assert!(m.ksize(r) >= size);
        // SAFETY: ours.
        unsafe {
            m.mempool_free(e, pr);
            m.mempool_free(r, pr);
        }
        assert_eq!(pr.curr_nr(), 3);
        let w = warnings(&m);
        // SAFETY: ours.
        unsafe { m.mempool_destroy(p.as_ptr()) };
        assert_eq!(warnings(&m), w);
    }
}

#[test]
fn page_pool() {
    let m = boot(CMDLINE);
    // The pool's own structures come from kmalloc (pool, array, context,
    // a 64-byte counter slot per CPU): shrink those caches around the
    // measurements so only pages count.
    let caches = [
        kmalloc_cache(&m, std::mem::size_of::<Mempool>()),
        kmalloc_cache(&m, 4 * std::mem::size_of::<usize>()),
        kmalloc_cache(&m, 2 * std::mem::size_of::<usize>()),
        kmalloc_cache(&m, 64 * m.nr_cpu_ids()),
    ];
    let settle = |m: &Machine| {
        for &c in &caches {
            // SAFETY: a live cache of this machine (created and not destroyed).
            unsafe { m.kmem_cache_shrink(c) };
        }
        m.drain_all_pages();
        m.nr_free_pages()
    };
    let free0 = settle(&m);
    let p = m.mempool_create_page_pool(4, 2).unwrap();
    let pr = pool_ref(p);
    assert_eq!(pr.name(), "pages:order-2");
    let used = free0 - settle(&m);
    assert!(
        (16..=16 + 4).contains(&used),
        "the reserve is 4 order-2 blocks, used {used}"
    );

    let h = hog(&m, &[]);
    let got: Vec<NonNull<Page>> = (0..4)
        .map(|_| NonNull::new(m.mempool_alloc(pr, GFP_NOIO) as *mut Page).expect("reserve"))
        .collect();
    for &pg in &got {
        // A real order-2 allocation: usable memory.
        bytes(&m, pg, 2).fill(0x11);
    }
    assert!(m.mempool_alloc(pr, GFP_ATOMIC).is_null());
    for pg in got {
        // SAFETY: ours.
        unsafe { m.mempool_free(pg.as_ptr() as *mut u8, pr) };
    }
    assert_eq!(pr.curr_nr(), 4);
    unhog(&m, h);
    // SAFETY: ours.
    unsafe { m.mempool_destroy(p.as_ptr()) };
    assert_eq!(settle(&m), free0, "pages leaked");
}

// ---------------------------------------------------------------------------
// The typed pool
// ---------------------------------------------------------------------------

static DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Default)]
struct Request {
    sector: u64,
    len: u32,
    data: [u8; 32],
}

impl Drop for Request {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn typed_mempool() {
    let m = boot(CMDLINE);
    let d0 = DROPS.load(Ordering::SeqCst);
    {
        let pool: TypedMempool<'_, Request, HostedPlatform> = TypedMempool::new(&m, 2).unwrap();
        assert_eq!((pool.min_nr(), pool.curr_nr()), (2, 2));
        let mut a = pool.alloc(GFP_KERNEL).unwrap();
        assert_eq!((a.sector, a.len), (0, 0));
        a.sector = 7;
        a.data[31] = 1;
        let b = pool
            .alloc_with(
                Request {
                    sector: 9,
                    len: 512,
                    data: [0; 32],
                },
                GFP_KERNEL,
            )
            .unwrap();
        assert_eq!((b.sector, b.len), (9, 512));
        assert_eq!(TypedMempool::raw(&pool).outstanding(), 2);
        drop(a);
        assert_eq!(DROPS.load(Ordering::SeqCst), d0 + 1, "T's drop did not run");
        let r = kmem::mempool::MempoolBox::into_inner(b);
        assert_eq!(r.sector, 9);
        drop(r);
        assert_eq!(DROPS.load(Ordering::SeqCst), d0 + 2);
        assert_eq!(pool.raw().outstanding(), 0);
        pool.resize(4).unwrap();
        assert_eq!(pool.curr_nr(), 4);
    }
    // A slab-backed typed pool under exhaustion.
    {
        let pool: TypedMempool<'_, Request, HostedPlatform> =
            TypedMempool::with_cache(&m, "request-test", 3).unwrap();
        let h = hog(&m, &[pool.cache().unwrap()]);
        let held: Vec<_> = (0..3)
            .map(|i| {
                let mut r = pool.alloc(GFP_NOIO).unwrap();
                r.sector = i;
                r
            })
            .collect();
        assert!(pool.alloc(GFP_ATOMIC).is_err());
        // A sleeping typed allocation gets the element another thread drops.
        let returned = AtomicBool::new(false);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                let r = pool.alloc(GFP_NOIO).unwrap();
                returned.store(true, Ordering::SeqCst);
                r.sector
            });
            wait_until("the typed allocation to sleep", || {
                pool.raw().nr_waiters() == 1 || returned.load(Ordering::SeqCst)
            });
            assert!(!returned.load(Ordering::SeqCst));
            drop(held);
            // alloc() writes T::default() over the reused element.
            assert_eq!(t.join().unwrap(), 0);
        });
        assert_eq!(pool.curr_nr(), 3);
        unhog(&m, h);
    }
    // Both pools destroyed without warnings.
    assert_eq!(warnings(&m), 0, "{}", m.dmesg());
}

/// A leaked element is reported when the typed pool is dropped.
#[test]
fn typed_mempool_leak_is_reported() {
    let m = boot(CMDLINE);
    let since = m.dmesg_len();
    {
        let pool: TypedMempool<'_, u64, HostedPlatform> = TypedMempool::new(&m, 1).unwrap();
        let b = pool.alloc_with(5, GFP_KERNEL).unwrap();
        std::mem::forget(b);
    }
    assert!(m.dmesg_since(since).contains("1 element outstanding"));
}
