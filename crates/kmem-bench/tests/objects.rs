//! The object-allocator workloads are correct: they give back everything
//! they take, on every competitor, and kmem's caches end empty.

use kmem_bench::objects::*;
use kmem_bench::Machine;

fn machine() -> Machine {
    Machine::boot("quiet mem=256M nr_cpus=2").expect("boot")
}

/// Every single-thread workload, a few times.
fn single<A: ObjAllocator>(a: &A) {
    obj_pair(a, 1000);
    let mut buf = Vec::new();
    for _ in 0..3 {
        obj_batch(a, &mut buf, 1000);
        assert!(buf.is_empty());
    }
}

/// Every workload, the threaded ones included.
fn every<A: ObjAllocator + Sync>(a: &A) {
    single(a);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| obj_pair(a, 10_000));
        }
    });
    let ns = obj_cross_thread(a, 20_000, (0, 1));
    assert!(ns > 0.0);
}

fn live_objects(m: &Machine, a: &KmemCacheObjs<'_>) -> usize {
    // SAFETY: the cache lives as long as `a`.
    m.cache_counts(unsafe { a.cache().as_ref() }).0
}

#[test]
fn kmem_cache_workloads_leave_no_object_behind() {
    let m = machine();
    for size in [16, 64, 256] {
        let a = KmemCacheObjs::new(&m, size);
        every(&a);
        assert_eq!(live_objects(&m, &a), 0, "size {size}");
        let text = m.proc_read("slabinfo").unwrap();
        assert!(text.contains(&format!("bench-{size} ")), "{text}");
    }
    // The caches are destroyed with their allocators: gone from slabinfo, no leak report.
    let text = m.proc_read("slabinfo").unwrap();
    assert!(!text.contains("bench-"), "{text}");
    assert!(!m.dmesg().contains("still has objects"), "{}", m.dmesg());
}

#[test]
fn a_cache_counts_live_objects_during_a_batch() {
    let m = machine();
    let a = KmemCacheObjs::new(&m, 64);
    let objs: Vec<_> = (0..500).map(|_| a.alloc().unwrap()).collect();
    assert_eq!(live_objects(&m, &a), 500);
    for o in objs {
        // SAFETY: allocated above, freed once.
        unsafe { a.free(o) };
    }
    assert_eq!(live_objects(&m, &a), 0);
}

#[test]
fn kmalloc_workloads_run() {
    let m = machine();
    every(&KmallocObjs::<16>::new(&m));
    every(&KmallocObjs::<64>::new(&m));
    every(&KmallocObjs::<256>::new(&m));
    every(&KmallocVar::new(&m, 100));
    // Everything went back: the kmalloc caches hold no live object.
    m.for_each_cache(|s| {
        if s.name().starts_with("kmalloc-") {
            assert_eq!(m.cache_counts(s).0, 0, "{}", s.name());
        }
    });
}

#[test]
fn global_alloc_workloads_run() {
    every(&Global::new(std::alloc::System, 64));
    every(&Global::new(mimalloc::MiMalloc, 64));
    every(&Global::new(tikv_jemallocator::Jemalloc, 64));
}

#[test]
fn typed_slab_workloads_empty_the_slab() {
    let s = TypedSlab::<64>::with_capacity(16);
    single(&s);
    assert!(s.is_empty());
}

#[test]
fn the_ring_alone_runs() {
    assert!(obj_cross_thread(&NoAlloc, 10_000, (0, 1)) > 0.0);
}

#[test]
fn the_ring_passes_every_value_in_order() {
    let ring = Ring::<usize>::new(8);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..100_000 {
                ring.push(i);
            }
        });
        for i in 0..100_000 {
            assert_eq!(ring.pop(), i);
        }
    });
}
