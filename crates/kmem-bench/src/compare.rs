//! The comparison suites behind `kmem bench`: the same workloads as the
//! `kmem-bench-*` programs, run in this process and returned as tables of
//! nanoseconds per operation with one column per allocator, so a caller can
//! print ratios.
//!
//! * [`Suite::Pages`]: kmem's page allocator against
//!   `buddy_system_allocator::LockedHeap` (page-sized layouts), see
//!   `kmem-bench-pages`;
//! * [`Suite::Objects`]: a kmem slab cache and kmalloc against glibc,
//!   mimalloc and jemalloc through `GlobalAlloc`, see `kmem-bench-slab`;
//! * [`Suite::Vmalloc`]: a 1-page vmalloc+vfree, a small per-CPU
//!   allocation and `mempool_alloc`+`mempool_free` against the slab cache
//!   under the pool, see `kmem-bench-vmalloc`.
//!
//! Every figure is the median of a few repetitions after a warm-up, in
//! nanoseconds of wall time. Single-thread cases run pinned to host CPU 0.

use crate::objects::*;
use crate::*;
use std::time::Instant;

/// A group of comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Page allocator against buddy_system_allocator.
    Pages,
    /// Slab and kmalloc against glibc, mimalloc, jemalloc.
    Objects,
    /// vmalloc, per-CPU memory and mempool.
    Vmalloc,
}

impl Suite {
    /// Every suite, in the order `kmem bench` runs them.
    pub const ALL: [Suite; 3] = [Suite::Pages, Suite::Objects, Suite::Vmalloc];

    /// The suite's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Pages => "pages",
            Suite::Objects => "objects",
            Suite::Vmalloc => "vmalloc",
        }
    }

    /// The suite called `name`.
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// How much work each measurement does.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Timed repetitions (the median is reported).
    pub reps: usize,
    /// Operations per repetition of the pair cases.
    pub pairs: usize,
    /// Rounds of 1000 per repetition of the batch cases.
    pub batches: usize,
}

impl Scale {
    /// About a second per suite.
    pub const QUICK: Scale = Scale {
        reps: 3,
        pairs: 20_000,
        batches: 10,
    };
    /// Closer to the bench programs' figures (several seconds per suite).
    pub const FULL: Scale = Scale {
        reps: 7,
        pairs: 300_000,
        batches: 100,
    };
}

/// One comparison table.
pub struct Table {
    /// Title.
    pub title: String,
    /// Column names: first kmem's `kmem_columns`, then the allocators they are compared with.
    pub columns: Vec<String>,
    /// How many of the first columns are kmem's.
    pub kmem_columns: usize,
    /// Rows: case name and ns per operation per column (`None`: not measured).
    pub rows: Vec<(String, Vec<Option<f64>>)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ns per operation of `run`, which performs `ops` operations.
pub fn measure(reps: usize, ops: usize, mut run: impl FnMut()) -> f64 {
    run();
    median(
        (0..reps.max(1))
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_nanos() as f64 / ops.max(1) as f64
            })
            .collect(),
    )
}

/// Run one suite on a fresh machine booted with [`BENCH_CMDLINE`].
///
/// # Panics
/// If the machine cannot boot or a benchmark allocation fails.
pub fn run(suite: Suite, s: Scale) -> Table {
    match suite {
        Suite::Pages => pages(s),
        Suite::Objects => objects(s),
        Suite::Vmalloc => vmalloc(s),
    }
}

fn page_cases<A: PageAllocator>(a: &A, s: Scale) -> Vec<Option<f64>> {
    pin_to_cpu(0);
    let mut buf = Vec::with_capacity(1000);
    let out = vec![
        Some(measure(s.reps, s.pairs, || pair(a, 0, s.pairs))),
        Some(measure(s.reps, s.pairs, || pair(a, 3, s.pairs))),
        Some(measure(s.reps, s.batches * 1000, || {
            for _ in 0..s.batches {
                batch(a, &mut buf, 1000, FreeOrder::Lifo);
            }
        })),
        {
            let mut live = LiveSet::fill(a, MIXED_LIVE, 0x5eed);
            let ns = measure(s.reps, s.pairs, || mixed(a, &mut live, s.pairs));
            live.release(a);
            Some(ns)
        },
    ];
    a.drain();
    unpin();
    out
}

fn pages(s: Scale) -> Table {
    let m = Machine::boot(BENCH_CMDLINE).expect("boot");
    let k = page_cases(&m, s);
    drop(m);
    let heap = BsaHeap::new(BSA_BYTES);
    let h = page_cases(&heap, s);
    let names = [
        "order-0 alloc+free pair",
        "order-3 alloc+free pair",
        "batch 1000 order-0, LIFO (per page)",
        "mixed orders 0..=5, 1000 live",
    ];
    Table {
        title: "page allocator (ns per operation)".into(),
        columns: vec!["kmem".into(), "bsa Heap".into()],
        kmem_columns: 1,
        rows: names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), vec![k[i], h[i]]))
            .collect(),
    }
}

fn obj_cases<A: ObjAllocator + Sync>(a: &A, s: Scale) -> Vec<Option<f64>> {
    pin_to_cpu(0);
    let mut buf = Vec::with_capacity(1000);
    let p = measure(s.reps, s.pairs, || obj_pair(a, s.pairs));
    let b = measure(s.reps, s.batches * 1000, || {
        for _ in 0..s.batches {
            obj_batch(a, &mut buf, 1000);
        }
    });
    unpin();
    obj_cross_thread(a, s.pairs / 10, (0, 1));
    let x = median(
        (0..s.reps)
            .map(|_| obj_cross_thread(a, s.pairs, (0, 1)))
            .collect(),
    );
    vec![Some(p), Some(b), Some(x)]
}

fn objects(s: Scale) -> Table {
    const SIZE: usize = 64;
    let m = Machine::boot(BENCH_CMDLINE).expect("boot");
    let cache = obj_cases(&KmemCacheObjs::new(&m, SIZE), s);
    let kmalloc = obj_cases(&KmallocObjs::<SIZE>::new(&m), s);
    drop(m);
    let glibc = obj_cases(&Global::new(std::alloc::System, SIZE), s);
    let mi = obj_cases(&Global::new(mimalloc::MiMalloc, SIZE), s);
    let je = obj_cases(&Global::new(tikv_jemallocator::Jemalloc, SIZE), s);
    let names = [
        "alloc+free pair, 64 B",
        "batch 1000 live 64 B, LIFO (per object)",
        "producer/consumer, cross-thread free",
    ];
    Table {
        title: "objects (ns per operation)".into(),
        columns: vec![
            "kmem_cache".into(),
            "kmalloc".into(),
            "glibc".into(),
            "mimalloc".into(),
            "jemalloc".into(),
        ],
        kmem_columns: 2,
        rows: names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), vec![cache[i], kmalloc[i], glibc[i], mi[i], je[i]]))
            .collect(),
    }
}

fn vmalloc(s: Scale) -> Table {
    use kmem::slab::SlabFlags;
    use kmem::{GFP_KERNEL, PAGE_SIZE};
    use std::hint::black_box;
    let m = Machine::boot(BENCH_CMDLINE).expect("boot");
    pin_to_cpu(0);
    // vmalloc costs microseconds (a host mmap per area): fewer rounds.
    let n = (s.pairs / 20).max(100);
    let vm = measure(s.reps, n, || {
        for _ in 0..n {
            let p = m.vmalloc(PAGE_SIZE).expect("vmalloc");
            // SAFETY: a mapped page.
            unsafe { p.as_ptr().write_volatile(0) };
            m.vfree(black_box(p.as_ptr()));
        }
    });
    let pc = measure(s.reps, s.pairs, || {
        for _ in 0..s.pairs {
            let p = m.__alloc_percpu(8, 8).expect("__alloc_percpu");
            // SAFETY: allocated just above, freed once.
            unsafe { m.free_percpu(black_box(p)) };
        }
    });
    let cache = m
        .kmem_cache_create("bench-mempool", 128, 0, SlabFlags(0), None)
        .expect("kmem_cache_create");
    let slab = measure(s.reps, s.pairs, || {
        for _ in 0..s.pairs {
            let o = m.kmem_cache_alloc(cache, GFP_KERNEL).expect("kmem_cache_alloc");
            // SAFETY: allocated just above, freed once.
            unsafe { m.kmem_cache_free(cache, black_box(o.as_ptr())) };
        }
    });
    let pool = m.mempool_create_slab_pool(16, cache).expect("mempool");
    // SAFETY: destroyed below, after its last use.
    let pr = unsafe { pool.as_ref() };
    let mp = measure(s.reps, s.pairs, || {
        for _ in 0..s.pairs {
            let o = m.mempool_alloc(pr, GFP_KERNEL);
            assert!(!o.is_null());
            // SAFETY: allocated from this pool just above.
            unsafe { m.mempool_free(black_box(o), pr) };
        }
    });
    // SAFETY: no element is outstanding; the pool goes before its cache.
    unsafe {
        m.mempool_destroy(pool.as_ptr());
        m.kmem_cache_destroy(cache);
    }
    unpin();
    Table {
        title: "vmalloc, per-CPU, mempool (ns per operation; the second column is the reference)".into(),
        columns: vec!["kmem".into(), "reference".into()],
        kmem_columns: 1,
        rows: vec![
            (
                "1-page vmalloc+write+vfree (Linux: 969)".into(),
                vec![Some(vm), Some(969.0)],
            ),
            ("__alloc_percpu(8)+free_percpu".into(), vec![Some(pc), None]),
            (
                "mempool_alloc+free vs kmem_cache_alloc+free".into(),
                vec![Some(mp), Some(slab)],
            ),
        ],
    }
}
