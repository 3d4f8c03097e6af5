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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median ns per operation of `run`, which performs `ops` operations.
fn measure(reps: usize, ops: usize, mut run: impl FnMut()) -> f64 {
    run(); // warm-up
    let times = (0..reps)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_nanos() as f64 / ops as f64
        })
        .collect();
    median(times)
}

const CASES: [&str; 6] = [
    "(a) alloc+free pair, 16 B",
    "(a) alloc+free pair, 64 B",
    "(a) alloc+free pair, 256 B",
    "(b) batch: 1000 live 64 B, LIFO free (per object)",
    "(c) 2 threads x (a) 64 B, per thread",
    "(d) producer/consumer 64 B, cross-thread free (per object)",
];

/// Results of one competitor, one entry per case of [`CASES`].
type Results = [Option<f64>; 6];

/// (a) and (b) with one allocator instance per size.
fn single_thread_cases<A: ObjAllocator>(mk: &dyn Fn(usize) -> A, c: Config, out: &mut Results) {
    pin_to_cpu(0);
    for (i, size) in PAIR_SIZES.into_iter().enumerate() {
        let a = mk(size);
        out[i] = Some(measure(c.reps, c.pairs, || obj_pair(&a, c.pairs)));
    }
    let a = mk(SIZE);
    let mut buf = Vec::with_capacity(BATCH);
    out[3] = Some(measure(c.reps, c.batches * BATCH, || {
        for _ in 0..c.batches {
            obj_batch(&a, &mut buf, BATCH);
        }
    }));
    unpin();
}

/// (c): two threads pinned to CPUs 0 and 1, each doing 64-byte pairs at the
/// same time; ns per pair per thread (the mean of the two threads' own rates).
fn two_threads<A: ObjAllocator + Sync>(a: &A, c: Config) -> f64 {
    let rep = || {
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
    };
    rep();
    median((0..c.reps).map(|_| rep()).collect())
}

/// (c) and (d) on a 64-byte instance.
fn thread_cases<A: ObjAllocator + Sync>(a: &A, c: Config, out: &mut Results) {
    out[4] = Some(two_threads(a, c));
    obj_cross_thread(a, c.passes / 10, (0, 1));
    out[5] = Some(median(
        (0..c.reps)
            .map(|_| obj_cross_thread(a, c.passes, (0, 1)))
            .collect(),
    ));
}

fn all_cases<A: ObjAllocator + Sync>(mk: &dyn Fn(usize) -> A, c: Config) -> Results {
    let mut out = [None; 6];
    single_thread_cases(mk, c, &mut out);
    thread_cases(&mk(SIZE), c, &mut out);
    out
}

/// kmalloc with constant sizes (the kernel's usual call): one type per size.
fn kmalloc_cases(m: &Machine, c: Config) -> Results {
    let mut out = [None; 6];
    pin_to_cpu(0);
    let k16 = KmallocObjs::<16>::new(m);
    out[0] = Some(measure(c.reps, c.pairs, || obj_pair(&k16, c.pairs)));
    let k64 = KmallocObjs::<64>::new(m);
    out[1] = Some(measure(c.reps, c.pairs, || obj_pair(&k64, c.pairs)));
    let k256 = KmallocObjs::<256>::new(m);
    out[2] = Some(measure(c.reps, c.pairs, || obj_pair(&k256, c.pairs)));
    let mut buf = Vec::with_capacity(BATCH);
    out[3] = Some(measure(c.reps, c.batches * BATCH, || {
        for _ in 0..c.batches {
            obj_batch(&k64, &mut buf, BATCH);
        }
    }));
    unpin();
    thread_cases(&k64, c, &mut out);
    out
}

/// `slab::Slab` for (a) and (b): one instance per size (its entry size is a type parameter).
fn typed_slab_cases(c: Config) -> Results {
    let mut out = [None; 6];
    pin_to_cpu(0);
    let s16 = TypedSlab::<16>::with_capacity(BATCH);
    out[0] = Some(measure(c.reps, c.pairs, || obj_pair(&s16, c.pairs)));
    let s64 = TypedSlab::<64>::with_capacity(BATCH);
    out[1] = Some(measure(c.reps, c.pairs, || obj_pair(&s64, c.pairs)));
    let s256 = TypedSlab::<256>::with_capacity(BATCH);
    out[2] = Some(measure(c.reps, c.pairs, || obj_pair(&s256, c.pairs)));
    let mut buf = Vec::with_capacity(BATCH);
    out[3] = Some(measure(c.reps, c.batches * BATCH, || {
        for _ in 0..c.batches {
            obj_batch(&s64, &mut buf, BATCH);
        }
    }));
    assert!(s16.is_empty() && s64.is_empty() && s256.is_empty());
    unpin();
    out
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
    let kcache = all_cases(&|size| KmemCacheObjs::new(&m, size), c);
    let kmalloc = Some(kmalloc_cases(&m, c));
    drop(m);

    let glibc = all_cases(&|size| Global::new(System, size), c);
    let mimalloc = all_cases(&|size| Global::new(mimalloc::MiMalloc, size), c);
    let jemalloc = all_cases(&|size| Global::new(tikv_jemallocator::Jemalloc, size), c);
    let typed = typed_slab_cases(c);
    obj_cross_thread(&NoAlloc, c.passes / 10, (0, 1));
    let ring_only = median(
        (0..c.reps)
            .map(|_| obj_cross_thread(&NoAlloc, c.passes, (0, 1)))
            .collect(),
    );

    println!("CPU: {model} ({cpus} logical CPUs)");
    println!(
        "kmem: Machine::boot({BENCH_CMDLINE:?}), GFP_KERNEL; kmem_cache: a cache of its own per size; \
         glibc/mimalloc/jemalloc: GlobalAlloc with Layout(size, 8); slab::Slab<MaybeUninit<[u8; size]>>"
    );
    println!(
        "times are wall-clock nanoseconds (not cycles) per operation, median of {} repetitions{}",
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
            cell(kmalloc.and_then(|k| k[i])),
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
        let km = kmalloc.and_then(|k| k[i]);
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
