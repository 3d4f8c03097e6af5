//! Pools that do not count their fast paths (`set_fast_path_stats(false)`,
//! the kernel's mempool): the direct slab and kmalloc paths keep the
//! kernel's order — allocator first, then the reserve, then NULL or a wait —
//! and refill the reserve on free; a full reserve goes straight back to the
//! allocator; the reserve state seen by `mempool_free` follows every change
//! of `curr_nr` and `min_nr`; a pool used from another machine still works.

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::mempool::Mempool;
use kmem::slab::{KmemCache, SlabFlags};
use kmem::*;
use kmem_hosted::Machine;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

const CMDLINE: &str = "quiet mem=64M nr_cpus=2 kswapd=off";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Elem(*mut u8);
// SAFETY: an element belongs to whoever holds this value; the pool is Sync.
unsafe impl Send for Elem {}

fn pool_ref(p: NonNull<Mempool>) -> &'static Mempool {
    // SAFETY: every test destroys its pools only after the last use.
    unsafe { &*p.as_ptr() }
}

fn uncounted(mut p: NonNull<Mempool>) -> &'static Mempool {
    // SAFETY: a fresh pool nobody else uses yet.
    unsafe { p.as_mut() }.set_fast_path_stats(false);
    pool_ref(p)
}

fn warnings(m: &Machine) -> usize {
    m.events.warnings.load(Ordering::Relaxed)
}

fn in_use(m: &Machine, c: NonNull<KmemCache>) -> usize {
    // SAFETY: a live cache.
    let (total, _, free, _) = m.cache_counts(unsafe { c.as_ref() });
    total - free
}

#[test]
fn uncounted_slab_pool_keeps_the_kernel_algorithm() {
    let m = boot(CMDLINE);
    let c = m
        .kmem_cache_create("direct-test", 200, 8, SlabFlags(0), None)
        .expect("cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let pr = uncounted(unsafe { m.mempool_create_slab_pool(5, c) }.unwrap());
    assert!(!pr.fast_path_stats());
    assert_eq!(pr.curr_nr(), 5);

    // Healthy: the cache serves, the reserve is untouched; frees go back.
    let got: Vec<*mut u8> = (0..20).map(|_| m.mempool_alloc(pr, GFP_KERNEL)).collect();
    assert!(got.iter().all(|e| !e.is_null()));
    assert_eq!(pr.curr_nr(), 5);
    for &e in &got {
        // SAFETY: ours.
        unsafe { m.mempool_free(e, pr) };
    }
    assert_eq!(pr.curr_nr(), 5);
    // Back to the cache: pinned to a CPU, its (LIFO) cpu freelist hands the
    // element out next.
    m.get_cpu();
    for _ in 0..20 {
        let e = m.mempool_alloc(pr, GFP_ATOMIC);
        // SAFETY: ours.
        unsafe { m.mempool_free(e, pr) };
        // SAFETY: a live cache of this machine (created and not destroyed).
        let again = unsafe { m.kmem_cache_alloc(c, GFP_ATOMIC) }.unwrap().as_ptr();
        assert_eq!(again, e, "not given back to the cache");
        // SAFETY: ours.
        unsafe { m.kmem_cache_free(c, again) };
    }
    m.put_cpu();

    // Exhausted: the reserve serves (LIFO), then NULL for GFP_ATOMIC.
    let h = hog(&m, &[c]);
    let r: Vec<*mut u8> = (0..5).map(|_| m.mempool_alloc(pr, GFP_NOIO)).collect();
    assert!(r.iter().all(|e| !e.is_null()));
    assert_eq!(pr.curr_nr(), 0);
    let w = warnings(&m);
    assert!(m.mempool_alloc(pr, GFP_ATOMIC).is_null());
    assert_eq!(warnings(&m), w, "a mempool failure warns");
    // Frees refill first (the unlocked peek sees the short reserve)...
    for (i, &x) in r.iter().enumerate() {
        // SAFETY: ours.
        unsafe { m.mempool_free(x, pr) };
        assert_eq!(pr.curr_nr(), i + 1);
    }
    unhog(&m, h);
    // ...and a full reserve sends elements back to the cache.
    m.get_cpu();
    let e = m.mempool_alloc(pr, GFP_ATOMIC);
    assert_eq!(pr.curr_nr(), 5);
    // SAFETY: ours.
    unsafe { m.mempool_free(e, pr) };
    assert_eq!(pr.curr_nr(), 5);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let again = unsafe { m.kmem_cache_alloc(c, GFP_ATOMIC) }.unwrap().as_ptr();
    assert_eq!(again, e, "not given back to the cache");
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(c, again) };
    m.put_cpu();

    let s = pr.stats();
    assert!(!s.fast_paths_counted);
    assert_eq!((s.alloc_reserve, s.free_reserve, s.alloc_fail), (5, 5, 1));
    assert_eq!((s.alloc_backing, s.free_backing), (0, 0));

    // NULL is ignored, full reserve or not.
    let w = warnings(&m);
    // SAFETY: null.
    unsafe { m.mempool_free(core::ptr::null_mut(), pr) };
    let x = m.mempool_alloc_preallocated(pr);
    // SAFETY: null.
    unsafe { m.mempool_free(core::ptr::null_mut(), pr) };
    assert_eq!(pr.curr_nr(), 4);
    // SAFETY: ours.
    unsafe { m.mempool_free(x, pr) };
    assert_eq!((pr.curr_nr(), warnings(&m)), (5, w));

    // SAFETY: ours, nothing outstanding; then the cache.
    unsafe {
        m.mempool_destroy(pr as *const Mempool as *mut Mempool);
        m.kmem_cache_destroy(c);
    }
    assert_eq!(warnings(&m), w, "{}", m.dmesg());
}

#[test]
fn uncounted_kmalloc_pool_and_resize() {
    let m = boot(CMDLINE);
    let pr = uncounted(m.mempool_create_kmalloc_pool(4, 96).unwrap());
    let e: Vec<*mut u8> = (0..4).map(|_| m.mempool_alloc_preallocated(pr)).collect();
    assert_eq!(pr.curr_nr(), 0);
    // Grow: min_nr 6 with 2 new elements (curr_nr 2 < 6): frees refill.
    m.mempool_resize(pr, 6).unwrap();
    assert_eq!((pr.min_nr(), pr.curr_nr()), (6, 6));
    for &x in &e {
        // SAFETY: ours.
        unsafe { m.mempool_free(x, pr) };
    }
    assert_eq!(pr.curr_nr(), 6, "a full reserve kept elements");
    // Shrink to 2, take 3 from the reserve (curr_nr 0 < 2), free them: the
    // first two refill, the third goes back to kmalloc.
    m.mempool_resize(pr, 2).unwrap();
    assert_eq!(pr.curr_nr(), 2);
    let a = m.mempool_alloc_preallocated(pr);
    let b = m.mempool_alloc_preallocated(pr);
    let c = m.mempool_alloc(pr, GFP_KERNEL);
    assert_eq!(pr.curr_nr(), 0);
    for (i, x) in [a, b, c].into_iter().enumerate() {
        // SAFETY: ours.
        unsafe { m.mempool_free(x, pr) };
        assert_eq!(pr.curr_nr(), (i + 1).min(2));
    }
    let s = pr.stats();
    assert_eq!((s.free_reserve, s.free_backing), (2, 0));
    let w = warnings(&m);
    // SAFETY: ours.
    unsafe { m.mempool_destroy(pr as *const Mempool as *mut Mempool) };
    assert_eq!(warnings(&m), w);
}

/// Counting off: no leak report on destroy (nothing to derive it from);
/// counting switched back on: the counts resume but stay marked inexact.
#[test]
fn switching_counting() {
    let m = boot(CMDLINE);
    let p = m.mempool_create_kmalloc_pool(2, 64).unwrap();
    let pr = pool_ref(p);
    assert!(pr.fast_path_stats() && pr.stats().fast_paths_counted);
    let held = m.mempool_alloc(pr, GFP_KERNEL);
    assert_eq!(pr.outstanding(), 1);
    // SAFETY: nobody else uses it now.
    unsafe { &mut *p.as_ptr() }.set_fast_path_stats(false);
    let x = m.mempool_alloc(pr, GFP_KERNEL);
    // SAFETY: ours.
    unsafe { &mut *p.as_ptr() }.set_fast_path_stats(true);
    // SAFETY: ours.
    unsafe { m.mempool_free(x, pr) };
    let s = pr.stats();
    assert!(pr.fast_path_stats() && !s.fast_paths_counted);
    assert_eq!((s.alloc_backing, s.free_backing), (1, 1));
    let w = warnings(&m);
    // SAFETY: `held` is freed below, not through the pool.
    unsafe { m.mempool_destroy(p.as_ptr()) };
    assert_eq!(warnings(&m), w, "a leak report from inexact counts");
    // SAFETY: a kmalloc'd element.
    unsafe { m.kfree(held) };
}

/// A pool used with another machine than its own takes the callbacks
/// (which use the pool's machine).
#[test]
fn pool_of_another_machine() {
    let a = boot(CMDLINE);
    let b = boot(CMDLINE);
    let c = a
        .kmem_cache_create("direct-other", 64, 8, SlabFlags(0), None)
        .expect("cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let pr = uncounted(unsafe { a.mempool_create_slab_pool(2, c) }.unwrap());
    let base = in_use(&a, c);
    let e: Vec<*mut u8> = (0..8).map(|_| b.mempool_alloc(pr, GFP_KERNEL)).collect();
    assert!(e.iter().all(|x| !x.is_null()));
    assert_eq!(in_use(&a, c), base + 8);
    for x in e {
        // SAFETY: ours.
        unsafe { b.mempool_free(x, pr) };
    }
    assert_eq!((in_use(&a, c), pr.curr_nr()), (base, 2));
    // SAFETY: ours; then the cache.
    unsafe {
        a.mempool_destroy(pr as *const Mempool as *mut Mempool);
        a.kmem_cache_destroy(c);
    }
}

/// A sleeping mask from atomic context is reported on the slow path (the
/// allocator failed) and does not sleep; the first try from a full cache is
/// not reported.
#[test]
fn might_alloc_on_the_slow_path() {
    let m = boot(CMDLINE);
    let c = m
        .kmem_cache_create("direct-atomic", 64, 8, SlabFlags(0), None)
        .expect("cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let pr = uncounted(unsafe { m.mempool_create_slab_pool(1, c) }.unwrap());
    let reports = || {
        m.dmesg()
            .matches("BUG: sleeping function called from invalid context")
            .count()
    };
    let e = m.mempool_alloc(pr, GFP_KERNEL);
    // SAFETY: ours.
    unsafe { m.mempool_free(e, pr) };
    m.get_cpu();
    let e = m.mempool_alloc(pr, GFP_KERNEL);
    assert!(!e.is_null());
    assert_eq!(reports(), 0);
    // SAFETY: ours.
    unsafe { m.mempool_free(e, pr) };
    m.put_cpu();
    let h = hog(&m, &[c]);
    m.get_cpu();
    let r = m.mempool_alloc(pr, GFP_KERNEL);
    assert!(!r.is_null(), "the reserve");
    let n = m.mempool_alloc(pr, GFP_KERNEL);
    assert!(n.is_null(), "slept or found memory in atomic context");
    m.put_cpu();
    assert!(reports() >= 1, "{}", m.dmesg());
    // SAFETY: ours.
    unsafe { m.mempool_free(r, pr) };
    unhog(&m, h);
    // SAFETY: ours; then the cache.
    unsafe {
        m.mempool_destroy(pr as *const Mempool as *mut Mempool);
        m.kmem_cache_destroy(c);
    }
}

/// Threads allocate and free on an uncounted slab pool whose cache runs
/// dry now and then: every GFP_KERNEL allocation succeeds, the reserve ends
/// full, and the cache gets every object back.
#[test]
fn threads_on_an_uncounted_pool_under_pressure() {
    let m = boot(CMDLINE);
    let c = m
        .kmem_cache_create("direct-threads", 512, 8, SlabFlags(0), None)
        .expect("cache");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let pr = uncounted(unsafe { m.mempool_create_slab_pool(4, c) }.unwrap());
    let base = in_use(&m, c);
    let h = hog(&m, &[c]);
    std::thread::scope(|s| {
        for t in 0..3u8 {
            let m = &m;
            s.spawn(move || {
                let mut held = VecDeque::new();
                for i in 0..5000 {
                    let e = m.mempool_alloc(pr, GFP_KERNEL);
                    assert!(!e.is_null());
                    // SAFETY: 512 bytes of ours.
                    unsafe { e.write(t) };
                    held.push_back(Elem(e));
                    if held.len() > 1 || i == 4999 {
                        while let Some(Elem(x)) = held.pop_front() {
                            // SAFETY: ours.
                            unsafe {
                                assert_eq!(x.read(), t);
                                m.mempool_free(x, pr)
                            };
                        }
                    }
                }
            });
        }
    });
    unhog(&m, h);
    assert_eq!(pr.curr_nr(), 4);
    assert_eq!(in_use(&m, c), base);
    let w = warnings(&m);
    // SAFETY: ours; then the cache.
    unsafe {
        m.mempool_destroy(pr as *const Mempool as *mut Mempool);
        m.kmem_cache_destroy(c);
    }
    assert_eq!(warnings(&m), w, "{}", m.dmesg());
}
