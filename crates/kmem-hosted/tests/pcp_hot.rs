//! The page allocator's per-CPU hot arrays (`page_alloc/pcp_hot.rs`): the
//! order-0 pages freed last on a CPU come back first without the pcp lock,
//! they count as pcp pages in every statistic, a second free of one is the
//! usual double free, and drains from other CPUs stop the arrays while real
//! threads keep allocating and freeing on every CPU.

mod common;

use common::*;
use core::ptr::NonNull;
use kmem::page::Page;
use kmem::page_alloc::zone::Zone;
use kmem::*;
use kmem_hosted::Machine;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A machine with hot arrays, or None (and a note) where the host gives the
/// process no rseq (then `enabled_with_rseq_and_can_be_turned_off` checks
/// that they are off).
fn hot_machine() -> Option<Machine> {
    let m = boot(&rseq_cmdline(""));
    if m.pcp_hot_enabled() {
        Some(m)
    } else {
        assert!(!kmem_hosted::platform::rseq_available());
        eprintln!("no rseq on this host: the hot arrays are off");
        None
    }
}

fn cpu(m: &Machine) -> usize {
    m.platform.raw_smp_processor_id()
}

/// (the calling CPU, an order-0 page allocated there, its zone); the caller
/// is pinned.
fn one_page(m: &Machine) -> (usize, NonNull<Page>, &Zone) {
    let a = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    (cpu(m), a, zone_of(m, pfn(m, a)))
}

fn pair(m: &Machine) {
    let p = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    // SAFETY: our page.
    unsafe { m.__free_pages(p, 0) };
}

#[test]
fn enabled_with_rseq_and_can_be_turned_off() {
    let m = boot(&rseq_cmdline(""));
    assert_eq!(m.pcp_hot_enabled(), m.slab_fast_paths_rseq());
    if kmem_hosted::platform::rseq_available() {
        assert!(m.pcp_hot_enabled(), "{}", m.dmesg());
    }
    for extra in ["kmem.pcp_hot=off", "kmem.rseq=off"] {
        let off = boot(&rseq_cmdline(extra));
        assert!(!off.pcp_hot_enabled(), "{extra}");
        let z = zone(&off, ZoneType::Dma32);
        for _ in 0..100 {
            pair(&off);
        }
        assert_eq!(off.pcp_hot_counts(z, cpu(&off)), (0, 0, 0), "{extra}");
        assert_boot_state(&off);
    }
}

#[test]
fn the_page_freed_last_comes_back_first_and_counts_are_exact() {
    let Some(m) = hot_machine() else { return };
    let _pin = pin_to_current_cpu();
    let (c, a, z) = one_page(&m);
    let (nr, pops, pushes) = m.pcp_hot_counts(z, c);
    // SAFETY: our page.
    unsafe { m.__free_pages(a, 0) };
    assert_eq!(m.pcp_hot_counts(z, c), (nr + 1, pops, pushes + 1));
    assert_eq!(
        m.alloc_pages(GFP_KERNEL, 0).unwrap(),
        a,
        "the hot page comes back"
    );
    assert_eq!(m.pcp_hot_counts(z, c), (nr, pops + 1, pushes + 1));
    // SAFETY: our page.
    unsafe { m.__free_pages(a, 0) };
    for _ in 0..1000 {
        pair(&m);
    }
    assert_eq!(m.pcp_hot_counts(z, c), (nr + 1, pops + 1001, pushes + 1002));
    // More frees than an array holds: a free that finds it full moves its
    // pages to the list first, so every pcp page is counted once and the
    // pages come back newest first, exactly in reverse.
    m.drain_all_pages();
    assert_eq!(m.nr_pcp_pages(), 0);
    let pages: Vec<NonNull<Page>> = (0..40).map(|_| m.alloc_pages(GFP_KERNEL, 0).unwrap()).collect();
    m.drain_all_pages();
    for &p in &pages {
        // SAFETY: our pages.
        unsafe { m.__free_pages(p, 0) };
    }
    let cap = kmem::page_alloc::pcp_hot::PCP_HOT_PAGES;
    assert_eq!(m.pcp_hot_counts(z, c).0, 40 % (cap + 1));
    assert_eq!(m.nr_pcp_pages(), 40);
    assert_eq!(zone_pcp_count(&m, z), 40);
    let again: Vec<NonNull<Page>> = (0..40).map(|_| m.alloc_pages(GFP_KERNEL, 0).unwrap()).collect();
    assert!(again.iter().eq(pages.iter().rev()), "newest first");
    for &p in &again {
        // SAFETY: our pages.
        unsafe { m.__free_pages(p, 0) };
    }
    m.drain_all_pages();
    assert_eq!(m.pcp_hot_counts(z, c).0, 0);
    assert_eq!(m.nr_pcp_pages(), 0);
    assert_boot_state(&m);
}

#[test]
fn a_second_free_of_a_hot_page_is_reported_and_changes_nothing() {
    let Some(m) = hot_machine() else { return };
    let _pin = pin_to_current_cpu();
    let (c, a, z) = one_page(&m);
    // SAFETY: our page.
    unsafe { m.__free_pages(a, 0) };
    let before = m.pcp_hot_counts(z, c);
    let since = m.dmesg_len();
    // SAFETY: deliberately a double free; kmem reports it and ignores it.
    unsafe { m.__free_pages(a, 0) };
    let log = m.dmesg_since(since);
    assert!(
        log.contains("BUG: Bad page state") && log.contains("page already free"),
        "{log}"
    );
    assert_eq!(m.pcp_hot_counts(z, c), before, "the array is unchanged");
    let b = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    let d = m.alloc_pages(GFP_KERNEL, 0).unwrap();
    assert_eq!(b, a);
    assert_ne!(d, a, "the page was not handed out twice");
    for p in [b, d] {
        // SAFETY: our pages.
        unsafe { m.__free_pages(p, 0) };
    }
    assert_boot_state(&m);
}

/// A page that crosses threads.
#[derive(Clone, Copy)]
struct P(NonNull<Page>);
// SAFETY: ownership of the page moves with the value.
unsafe impl Send for P {}

#[test]
fn drains_from_other_cpus_while_every_cpu_allocates() {
    let Some(m) = hot_machine() else { return };
    stress(&m);
}

#[test]
fn unregistered_rseq_child() {
    if std::env::var_os("KMEM_PCP_HOT_CHILD").is_none() {
        return;
    }
    // Threads whose rseq area shows CPU id -1 or -2: their entries are
    // stopped for good, so every page goes through the lists.
    assert!(!kmem_hosted::platform::rseq_available());
    let m = boot(&rseq_cmdline(""));
    assert!(!m.pcp_hot_enabled());
    stress(&m);
}

#[test]
fn threads_without_a_registered_rseq_area() {
    run_without_rseq("unregistered_rseq_child", "KMEM_PCP_HOT_CHILD");
}

/// Every CPU allocates and frees order-0 pages of three migrate types while
/// another thread drains; no page is handed out twice and all come back.
fn stress(m: &Machine) {
    let cpus = m.nr_cpu_ids();
    let live = Mutex::new(HashSet::<usize>::new());
    let stop = AtomicBool::new(false);
    let flags = [GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_RECLAIMABLE];
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..cpus)
            .map(|i| {
                let live = &live;
                s.spawn(move || {
                    let _pin = pin_to(i % cpus);
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ i as u64;
                    let mut mine: Vec<P> = Vec::new();
                    for _ in 0..30_000 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        if mine.len() < 48 && (!rng.is_multiple_of(3) || mine.is_empty()) {
                            let p = m.alloc_pages(flags[(rng >> 8) as usize % 3], 0).unwrap();
                            assert!(live.lock().unwrap().insert(pfn(m, p)), "page handed out twice");
                            mine.push(P(p));
                        } else {
                            let P(p) = mine.swap_remove((rng >> 16) as usize % mine.len());
                            assert!(live.lock().unwrap().remove(&pfn(m, p)));
                            // SAFETY: our page.
                            unsafe { m.__free_pages(p, 0) };
                        }
                    }
                    mine
                })
            })
            .collect();
        // Drains from a thread that moves between CPUs: some run on the
        // CPU they drain, most need the fence.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                m.drain_all_pages();
                std::thread::yield_now();
            }
        });
        // The drainer stops even if a worker's assertion fails.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        for w in workers {
            for P(p) in w.join().unwrap() {
                assert!(live.lock().unwrap().remove(&pfn(m, p)));
                // SAFETY: our page.
                unsafe { m.__free_pages(p, 0) };
            }
        }
    });
    assert!(live.lock().unwrap().is_empty());
    assert_boot_state(m);
}
