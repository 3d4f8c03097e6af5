//! Wall-clock benchmark of kmem's object allocators (a slab cache of its own,
//! and kmalloc) against glibc malloc,
//! mimalloc and jemalloc through `GlobalAlloc`, and the typed cache
//! `slab::Slab`, all in one process and one run.
//!
//! ```text
//! cargo run --release -p kmem-bench --bin kmem-bench-slab [-- --quick]
//! ```
//!
//! Every case runs a warm-up, then `reps` timed repetitions; the tables show
//! the median of the repetitions in nanoseconds (wall time, not cycles) per
//! operation, and ratios kmem / the other allocator (below 1: kmem is faster).
//! The competitors' repetitions of a case are interleaved (repetition r of
//! each, then r + 1 of each; `measure_interleaved`), so a slow period of the
//! host falls on all of them rather than on whichever ran then.
//! Single-thread cases run pinned to host CPU 0; the two-thread cases pin
//! their threads to CPUs 0 and 1.

use kmem_bench::objects::*;
use kmem_bench::*;
use std::alloc::System;
use std::time::Instant;

/// Scale of a run.
#[derive(Clone, Copy)]
struct Config {
    reps: usize,
    /// Pairs per repetition of (a) and per thread of (c).
    pairs: usize,
    /// Rounds of 1000 objects per repetition of (b).
    batches: usize,
    /// Objects per repetition of (d).
    passes: usize,
}

const FULL: Config = Config {
    reps: 11,
    pairs: 1_000_000,
    batches: 500,
    passes: 1_000_000,
};

const QUICK: Config = Config {
    reps: 5,
    pairs: 100_000,
    batches: 50,
    passes: 100_000,
};

/// Objects per round of (b).
const BATCH: usize = 1000;
/// Object size of (b), (c), (d).
const SIZE: usize = 64;
/// Object sizes of (a).
const PAIR_SIZES: [usize; 3] = [16, 64, 256];

const CASES: [&str; 6] = [
    "(a) alloc+free pair, 16 B",
    "(a) alloc+free pair, 64 B",
    "(a) alloc+free pair, 256 B",
    "(b) batch: 1000 live 64 B, LIFO free (per object)",
    "(c) 2 threads x (a) 64 B, per thread",
    "(d) producer/consumer 64 B, cross-thread free (per object)",
];

/// Cases (a) and (b) run on one thread pinned to host CPU 0.
const SINGLE_THREAD_CASES: usize = 4;

/// One repetition of each case of [`CASES`] for one competitor (`None`:
/// not measured).
type CaseReps<'a> = [Option<Rep<'a>>; 6];

/// (c): two threads pinned to CPUs 0 and 1, each doing 64-byte pairs at the
/// same time; ns per pair per thread (the mean of the two threads' own rates).
fn two_threads_rep<'a, A: ObjAllocator + Sync>(a: &'a A, c: Config) -> Option<Rep<'a>> {
    Some(Box::new(move || {
        let barrier = std::sync::Barrier::new(2);
        let per_thread: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|cpu| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        pin_to_cpu(cpu);
                        obj_pair(a, c.pairs / 10); // warm this CPU's caches
                        barrier.wait();
                        let t = Instant::now();
                        obj_pair(a, c.pairs);
                        t.elapsed().as_nanos() as f64 / c.pairs as f64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        per_thread.iter().sum::<f64>() / per_thread.len() as f64
    }))
}

/// The instances a competitor is measured on: one per object size for (a)
/// ([`PAIR_SIZES`] order), and 64-byte ones of their own for (b) and for
/// (c) and (d).
struct Instances<A> {
    by_size: [A; 3],
    batch: A,
    threads: A,
}

impl<A: ObjAllocator + Sync> Instances<A> {
    fn new(mk: impl Fn(usize) -> A) -> Self {
        Instances {
            by_size: PAIR_SIZES.map(&mk),
            batch: mk(SIZE),
            threads: mk(SIZE),
        }
    }

    fn cases(&self, c: Config) -> CaseReps<'_> {
        [
            pair_rep(&self.by_size[0], c.pairs),
            pair_rep(&self.by_size[1], c.pairs),
            pair_rep(&self.by_size[2], c.pairs),
            batch_rep(&self.batch, c.batches, BATCH),
            two_threads_rep(&self.threads, c),
            cross_rep(&self.threads, c.passes),
        ]
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.1}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let c = if quick { QUICK } else { FULL };
    let (model, cpus) = cpu_model();

    let m = Machine::boot(BENCH_CMDLINE).expect("boot");
    let kcache = Instances::new(|size| KmemCacheObjs::new(&m, size));
    let (k16, k64, k256) = (
        KmallocObjs::<16>::new(&m),
        KmallocObjs::<64>::new(&m),
        KmallocObjs::<256>::new(&m),
    );
    let glibc = Instances::new(|size| Global::new(System, size));
    let mimalloc = Instances::new(|size| Global::new(mimalloc::MiMalloc, size));
    let jemalloc = Instances::new(|size| Global::new(tikv_jemallocator::Jemalloc, size));
    let typed = (
        TypedSlab::<16>::with_capacity(BATCH),
        TypedSlab::<64>::with_capacity(BATCH),
        TypedSlab::<256>::with_capacity(BATCH),
        TypedSlab::<64>::with_capacity(BATCH),
    );
    // Columns: kmem_cache, kmalloc, glibc, mimalloc, jemalloc, slab::Slab,
    // and (d)'s ring with no allocator.
    let mut competitors: Vec<CaseReps<'_>> = vec![
        kcache.cases(c),
        [
            pair_rep(&k16, c.pairs),
            pair_rep(&k64, c.pairs),
            pair_rep(&k256, c.pairs),
            batch_rep(&k64, c.batches, BATCH),
            two_threads_rep(&k64, c),
            cross_rep(&k64, c.passes),
        ],
        glibc.cases(c),
        mimalloc.cases(c),
        jemalloc.cases(c),
        [
            pair_rep(&typed.0, c.pairs),
            pair_rep(&typed.1, c.pairs),
            pair_rep(&typed.2, c.pairs),
            batch_rep(&typed.3, c.batches, BATCH),
            None,
            None,
        ],
        [None, None, None, None, None, cross_rep(&NoAlloc, c.passes)],
    ];
    // One case at a time, every competitor's repetitions interleaved.
    let mut results = vec![[None; 6]; competitors.len()];
    for case in 0..CASES.len() {
        if case < SINGLE_THREAD_CASES {
            pin_to_cpu(0);
        } else {
            unpin();
        }
        let mut runs: Vec<_> = competitors.iter_mut().map(|reps| reps[case].take()).collect();
        for (k, ns) in measure_interleaved(c.reps, &mut runs).into_iter().enumerate() {
            results[k][case] = ns;
        }
    }
    drop(competitors);
    assert!(typed.0.is_empty() && typed.1.is_empty() && typed.2.is_empty() && typed.3.is_empty());
    let [kcache, kmalloc, glibc, mimalloc, jemalloc, typed, ring] = results[..] else {
        unreachable!("seven columns")
    };
    let ring_only = ring[5].expect("ring measured");

    println!("CPU: {model} ({cpus} logical CPUs)");
    println!(
        "kmem: Machine::boot({BENCH_CMDLINE:?}), GFP_KERNEL; kmem_cache: a cache of its own per size; \
         glibc/mimalloc/jemalloc: GlobalAlloc with Layout(size, 8); slab::Slab<MaybeUninit<[u8; size]>>"
    );
    println!(
        "times are wall-clock nanoseconds (not cycles) per operation, median of {} repetitions{}, \
         the competitors' repetitions of each case interleaved",
        c.reps,
        if quick { " (--quick)" } else { "" }
    );
    println!();
    println!("| case | kmem_cache | kmalloc | glibc | mimalloc | jemalloc | slab::Slab |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, name) in CASES.iter().enumerate() {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            cell(kcache[i]),
            cell(kmalloc[i]),
            cell(glibc[i]),
            cell(mimalloc[i]),
            cell(jemalloc[i]),
            cell(typed[i])
        );
    }
    println!();
    println!("(d) with no allocator (the ring alone, 256 slots): {ring_only:.1} ns per object");
    println!();
    println!(
        "| case | kmem_cache/mimalloc | kmem_cache/jemalloc | kmem_cache/glibc | kmem_cache/slab::Slab \
         | kmalloc/mimalloc | kmalloc/jemalloc |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, name) in CASES.iter().enumerate() {
        let km = kmalloc[i];
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            ratio(kcache[i], mimalloc[i]),
            ratio(kcache[i], jemalloc[i]),
            ratio(kcache[i], glibc[i]),
            ratio(kcache[i], typed[i]),
            ratio(km, mimalloc[i]),
            ratio(km, jemalloc[i])
        );
    }
}
