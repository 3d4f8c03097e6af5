//! kswapd: an allocation below the low watermark wakes background reclaim,
//! which shrinks until the node is above its high watermark.
use kmem::page_alloc::zone::{WMARK_HIGH, WMARK_LOW};
use kmem::vmscan::{ShrinkControl, Shrinker};
use kmem::*;
use kmem_hosted::Machine;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Pool {
    pages: Mutex<Vec<NonNull<Page>>>,
    m: &'static Machine,
}
// SAFETY: the pages are plain handles owned by the pool.
unsafe impl Sync for Pool {}
// SAFETY: as above.
unsafe impl Send for Pool {}

fn count(s: &Shrinker, _: &ShrinkControl) -> usize {
    // SAFETY: private_data is the leaked Pool.
    let pool = unsafe { &*(s.private_data as *const Pool) };
    pool.pages.lock().unwrap().len()
}

fn scan(s: &Shrinker, sc: &mut ShrinkControl) -> usize {
    // SAFETY: private_data is the leaked Pool.
    let pool = unsafe { &*(s.private_data as *const Pool) };
    let mut v = pool.pages.lock().unwrap();
    let n = sc.nr_to_scan.min(v.len());
    for _ in 0..n {
        let p = v.pop().unwrap();
        // SAFETY: the pool owns these order-0 pages.
        unsafe { pool.m.__free_pages(p, 0) };
    }
    n
}

#[test]
fn allocation_below_low_watermark_wakes_kswapd_which_restores_high() {
    let m: &'static Machine = Box::leak(Box::new(Machine::boot("quiet mem=64M nr_cpus=1").unwrap()));
    assert_eq!(m.kswapd_threads(), 1);
    let pool: &'static Pool = Box::leak(Box::new(Pool {
        pages: Mutex::new(Vec::new()),
        m,
    }));
    let shrinker: &'static Shrinker = Box::leak(Box::new(
        Shrinker::new("test-pool", count, scan).with_private(pool as *const Pool as *mut ()),
    ));
    // Fill the pool until allocations cross the low watermark of every zone.
    let zone_low = |m: &Machine| m.zones().all(|z| z.nr_free() < z.wmark(WMARK_LOW));
    while !zone_low(m) {
        match m.alloc_page(GFP_NOWAIT) {
            Ok(p) => pool.pages.lock().unwrap().push(p),
            Err(_) => break,
        }
    }
    let wakes_before = m.events.kswapd_wake.load(Ordering::Relaxed);
    m.register_shrinker_static(shrinker);
    // This allocation fails the low watermark on the fast path and wakes kswapd.
    let p = m.alloc_page(GFP_KERNEL).unwrap();
    assert!(m.events.kswapd_wake.load(Ordering::Relaxed) > wakes_before);
    let t = Instant::now();
    while !m.pgdat_balanced(0) && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        m.pgdat_balanced(0),
        "kswapd did not balance the node: {}",
        m.dmesg()
    );
    assert!(m.kswapd.runs.load(Ordering::Relaxed) >= 1);
    assert!(shrinker.freed.load(Ordering::Relaxed) > 0);
    for z in m.zones() {
        assert!(z.nr_free() >= z.wmark(WMARK_HIGH));
    }
    // SAFETY: registered above; we free our page and the pool.
    unsafe {
        m.unregister_shrinker(shrinker);
        m.__free_pages(p, 0);
        for p in pool.pages.lock().unwrap().drain(..) {
            m.__free_pages(p, 0);
        }
    }
    m.drain_all_pages();
    assert!(m.buddy_matches_boot_state(&mut String::new()));
}

#[test]
fn kswapd_off_runs_no_thread_but_counts_wakeups() {
    let m = Machine::boot("quiet mem=64M nr_cpus=1 kswapd=off").unwrap();
    assert_eq!(m.kswapd_threads(), 0);
    let mut v = Vec::new();
    while let Ok(p) = m.alloc_page(GFP_NOWAIT) {
        v.push(p);
    }
    assert!(m.events.kswapd_wake.load(Ordering::Relaxed) > 0);
    for p in v {
        // SAFETY: allocated above.
        unsafe { m.__free_pages(p, 0) };
    }
}
