//! The benchmark workloads are correct: they give back everything they take,
//! and kmem's buddy lists end as they were at boot.

use kmem_bench::*;

fn machine() -> Machine {
    Machine::boot("quiet mem=256M nr_cpus=2").expect("boot")
}

fn assert_boot_state(m: &Machine) {
    m.drain_all_pages();
    let mut diff = String::new();
    assert!(m.buddy_matches_boot_state(&mut diff), "{diff}");
}

/// Every workload, a few times, on any allocator.
fn run_every_workload<A: PageAllocator>(a: &A) {
    pair(a, 0, 100);
    pair(a, 3, 100);
    let mut buf = Vec::new();
    batch(a, &mut buf, 1000, FreeOrder::Lifo);
    batch(a, &mut buf, 1000, FreeOrder::Fifo);
    assert!(buf.is_empty());
    a.drain();
    for _ in 0..3 {
        split_merge(a, &mut buf);
    }
    let mut live = LiveSet::fill(a, MIXED_LIVE, 7);
    mixed(a, &mut live, 2000);
    assert_eq!(live.blocks.len(), MIXED_LIVE);
    assert!(live.blocks.iter().all(|&(_, o)| o <= MIXED_MAX_ORDER));
    live.release(a);
}

#[test]
fn kmem_workloads_leave_the_buddy_lists_as_at_boot() {
    let m = machine();
    let free0 = m.nr_free_pages();
    run_every_workload(&m);
    assert_boot_state(&m);
    assert_eq!(m.nr_free_pages(), free0);
}

#[test]
fn kmem_each_workload_alone_returns_to_boot_state() {
    let m = machine();
    pair(&m, 0, 1000);
    assert_boot_state(&m);
    pair(&m, 3, 1000);
    assert_boot_state(&m);
    let mut buf = Vec::new();
    batch(&m, &mut buf, 1000, FreeOrder::Fifo);
    assert_boot_state(&m);
    split_merge(&m, &mut buf);
    // split_merge drains by itself: no drain_all_pages needed.
    assert!(m.buddy_matches_boot_state(&mut String::new()));
}

#[test]
fn kmem_split_merge_really_reaches_the_buddy() {
    let m = machine();
    let free0 = m.nr_free_pages();
    let mut buf = Vec::new();
    // Allocate as split_merge does, but stop before freeing: the pages are
    // gone from the free count, so the allocation split buddy blocks.
    for _ in 0..SPLIT_MERGE_PAGES {
        buf.push(m.alloc(0).unwrap());
    }
    assert!(m.nr_free_pages() <= free0 - SPLIT_MERGE_PAGES);
    for &p in &buf {
        // SAFETY: allocated above with order 0.
        unsafe { m.free(p, 0) };
    }
    buf.clear();
    split_merge(&m, &mut buf);
    assert_eq!(m.nr_free_pages(), free0);
    assert!(m.buddy_matches_boot_state(&mut String::new()));
}

#[test]
fn two_threads_share_a_machine() {
    let m = machine();
    std::thread::scope(|s| {
        for cpu in 0..2 {
            let m = &m;
            s.spawn(move || {
                pin_to_cpu(cpu);
                pair(m, 0, 10_000);
            });
        }
    });
    assert_boot_state(&m);
}

#[test]
fn bsa_heap_workloads_free_everything() {
    let h = BsaHeap::new(64 << 20);
    run_every_workload(&h);
    assert_eq!(h.allocated_bytes(), 0);
    // Blocks are page-aligned addresses inside the heap.
    let p = h.alloc(3).unwrap();
    assert_eq!(p.as_ptr() as usize % (8 * kmem::PAGE_SIZE), 0);
    assert!(p.as_ptr() as usize >= h.base() as usize);
    // SAFETY: allocated just above with order 3.
    unsafe { h.free(p, 3) };
    assert_eq!(h.allocated_bytes(), 0);
}

#[test]
fn bsa_frames_workloads_run() {
    let f = BsaFrames::new(1 << MAX_ORDER, 16384);
    run_every_workload(&f);
    // Everything merged back: an order-10 block is there again.
    let b = f.alloc(MAX_ORDER).unwrap();
    assert_eq!(b % (1 << MAX_ORDER), 0);
    // SAFETY: allocated just above.
    unsafe { f.free(b, MAX_ORDER) };
}

#[test]
fn rng_is_deterministic_and_in_range() {
    let mut a = Rng::new(42);
    let mut b = Rng::new(42);
    for _ in 0..1000 {
        let x = a.below(6);
        assert_eq!(x, b.below(6));
        assert!(x < 6);
    }
    assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
}

#[test]
fn cpu_model_is_reported() {
    let (model, cpus) = cpu_model();
    assert!(!model.is_empty());
    assert!(cpus >= 1);
}
