//! Wall-clock benchmark of kmem's page allocator against
//! `buddy_system_allocator`, all in one process and one run.
//!
//! ```text
//! cargo run --release -p kmem-bench --bin kmem-bench-pages [-- --quick]
//! ```
//!
//! Every case runs a warm-up, then `reps` timed repetitions; the table shows
//! the median of the repetitions in nanoseconds (wall time, not cycles) per
//! operation, and the ratio kmem / the other allocator (below 1: kmem is faster).
//! Single-thread cases run pinned to host CPU 0; the two-thread case pins its
//! threads to CPUs 0 and 1.

use kmem_bench::*;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

/// Scale of a run.
#[derive(Clone, Copy)]
struct Config {
    reps: usize,
    /// Operations per repetition of the pair cases (a), (b), (f).
    pairs: usize,
    /// Rounds per repetition of the batch cases (c).
    batches: usize,
    /// Rounds per repetition of the split/merge case (d).
    rounds: usize,
    /// Steps per repetition of the mixed case (e).
    steps: usize,
}

const FULL: Config = Config {
    reps: 11,
    pairs: 500_000,
    batches: 200,
    rounds: 50,
    steps: 200_000,
};

const QUICK: Config = Config {
    reps: 5,
    pairs: 50_000,
    batches: 20,
    rounds: 5,
    steps: 20_000,
};

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

fn case_pair<A: PageAllocator>(a: &A, order: u32, c: Config) -> f64 {
    measure(c.reps, c.pairs, || pair(a, order, c.pairs))
}

fn case_batch<A: PageAllocator>(a: &A, how: FreeOrder, c: Config) -> f64 {
    const COUNT: usize = 1000;
    let mut buf = Vec::with_capacity(COUNT);
    measure(c.reps, c.batches * COUNT, || {
        for _ in 0..c.batches {
            batch(a, &mut buf, COUNT, how);
        }
    })
}

fn case_split_merge<A: PageAllocator>(a: &A, c: Config) -> f64 {
    a.drain();
    let mut buf = Vec::with_capacity(SPLIT_MERGE_PAGES);
    measure(c.reps, c.rounds * SPLIT_MERGE_PAGES, || {
        for _ in 0..c.rounds {
            split_merge(a, &mut buf);
        }
    })
}

fn case_mixed<A: PageAllocator>(a: &A, c: Config) -> f64 {
    let mut live = LiveSet::fill(a, MIXED_LIVE, 0x5eed);
    let ns = measure(c.reps, c.steps, || mixed(a, &mut live, c.steps));
    live.release(a);
    a.drain();
    ns
}

/// Case (f): two threads pinned to CPUs 0 and 1, each doing order-0 pairs at
/// the same time; ns per operation per thread (the mean of the two threads'
/// own rates), median over the repetitions.
fn case_two_threads<A: PageAllocator>(a: &A, c: Config) -> f64 {
    let rep = || {
        let barrier = Barrier::new(2);
        let per_thread: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|cpu| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        pin_to_cpu(cpu);
                        pair(a, 0, c.pairs / 10); // warm this CPU's lists
                        barrier.wait();
                        let t = Instant::now();
                        pair(a, 0, c.pairs);
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

struct Row {
    name: &'static str,
    kmem: f64,
    heap: f64,
    frame: f64,
}

fn run_all<A: PageAllocator>(a: &A, c: Config) -> Vec<(&'static str, f64)> {
    pin_to_cpu(0);
    let mut out = vec![
        ("(a) order-0 alloc+free pair", case_pair(a, 0, c)),
        ("(b) order-3 alloc+free pair", case_pair(a, 3, c)),
        (
            "(c) batch 1000 order-0, LIFO free (per page)",
            case_batch(a, FreeOrder::Lifo, c),
        ),
        (
            "(c) batch 1000 order-0, FIFO free (per page)",
            case_batch(a, FreeOrder::Fifo, c),
        ),
        ("(d) split/merge 1024 order-0 (per page)", case_split_merge(a, c)),
        (
            "(e) mixed orders 0..=5, 1000 live (per free+alloc)",
            case_mixed(a, c),
        ),
    ];
    unpin();
    out.push(("(f) 2 threads x (a), per thread", case_two_threads(a, c)));
    a.drain();
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let c = if quick { QUICK } else { FULL };
    let (model, cpus) = cpu_model();

    let m = Machine::boot(BENCH_CMDLINE).expect("boot");
    let kmem = run_all(&m, c);
    assert!(
        m.buddy_matches_boot_state(&mut String::new()),
        "kmem: buddy lists differ from boot"
    );
    drop(m);

    let heap = BsaHeap::new(BSA_BYTES);
    let bsa_heap = run_all(&heap, c);
    assert_eq!(heap.allocated_bytes(), 0, "bsa Heap leaked");
    drop(heap);

    let frames = BsaFrames::new(1 << MAX_ORDER, BSA_BYTES / kmem::PAGE_SIZE);
    let bsa_frame = run_all(&frames, c);
    drop(frames);

    let rows: Vec<Row> = kmem
        .iter()
        .zip(&bsa_heap)
        .zip(&bsa_frame)
        .map(|((k, h), f)| Row {
            name: k.0,
            kmem: k.1,
            heap: h.1,
            frame: f.1,
        })
        .collect();

    println!("CPU: {model} ({cpus} logical CPUs)");
    println!(
        "kmem: Machine::boot({BENCH_CMDLINE:?}), GFP_KERNEL; bsa Heap: buddy_system_allocator::LockedHeap<23> \
         on 1 GiB, page-sized layouts; bsa Frame: LockedFrameAllocator<11> on 262144 frames"
    );
    println!(
        "times are wall-clock nanoseconds (not cycles) per operation, median of {} repetitions{}",
        c.reps,
        if quick { " (--quick)" } else { "" }
    );
    println!();
    println!("| case | kmem ns/op | bsa Heap ns/op | kmem/Heap | bsa Frame ns/op | kmem/Frame |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} |",
            r.name,
            r.kmem,
            r.heap,
            r.kmem / r.heap,
            r.frame,
            r.kmem / r.frame
        );
    }
    black_box(rows);
}
