//! Run one page-allocator case N times, for instruction counting under
//! valgrind (see `scripts/instr-count.sh`).
//!
//! ```text
//! kmem-instr CASE N
//! ```
//!
//! Boots the allocator, warms the case up (1000 iterations through the same
//! function), then runs N iterations. Each case's loop is one
//! `#[inline(never)]` function named `instr_<case>` (dashes as underscores),
//! so `valgrind --tool=callgrind --toggle-collect='*instr_kmem_order0*'`
//! counts exactly the loop. The warm-up goes through the same function, so
//! the script takes the difference of two runs (N and 2N) to get the cost of
//! one iteration.

use kmem_bench::*;
use std::process::ExitCode;

const WARMUP: usize = 1000;

#[inline(never)]
fn instr_kmem_order0(m: &Machine, n: usize) {
    pair(m, 0, n);
}

#[inline(never)]
fn instr_kmem_order3(m: &Machine, n: usize) {
    pair(m, 3, n);
}

#[inline(never)]
fn instr_bsa_heap_order0(h: &BsaHeap, n: usize) {
    pair(h, 0, n);
}

#[inline(never)]
fn instr_bsa_heap_order3(h: &BsaHeap, n: usize) {
    pair(h, 3, n);
}

#[inline(never)]
fn instr_bsa_frame_order0(f: &BsaFrames, n: usize) {
    pair(f, 0, n);
}

#[inline(never)]
fn instr_bsa_frame_order3(f: &BsaFrames, n: usize) {
    pair(f, 3, n);
}

/// (c) per round of 1000 pages, LIFO.
#[inline(never)]
fn instr_kmem_batch_lifo(m: &Machine, buf: &mut Vec<<Machine as PageAllocator>::Block>, n: usize) {
    for _ in 0..n {
        batch(m, buf, 1000, FreeOrder::Lifo);
    }
}

/// (c) per round of 1000 pages, LIFO.
#[inline(never)]
fn instr_bsa_heap_batch_lifo(h: &BsaHeap, buf: &mut Vec<<BsaHeap as PageAllocator>::Block>, n: usize) {
    for _ in 0..n {
        batch(h, buf, 1000, FreeOrder::Lifo);
    }
}

const CASES: &[&str] = &[
    "kmem-order0",
    "kmem-order3",
    "bsa-heap-order0",
    "bsa-heap-order3",
    "bsa-frame-order0",
    "bsa-frame-order3",
    "kmem-batch-lifo",
    "bsa-heap-batch-lifo",
];

fn usage() -> ExitCode {
    eprintln!("usage: kmem-instr CASE N\ncases: {}", CASES.join(" "));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(case), Some(n)) = (args.get(1), args.get(2).and_then(|s| s.parse::<usize>().ok())) else {
        return usage();
    };
    match case.as_str() {
        "kmem-order0" | "kmem-order3" | "kmem-batch-lifo" => {
            let m = Machine::boot(BENCH_CMDLINE).expect("boot");
            let mut buf = Vec::with_capacity(1000);
            let run = |k: usize, buf: &mut Vec<_>| match case.as_str() {
                "kmem-order0" => instr_kmem_order0(&m, k),
                "kmem-order3" => instr_kmem_order3(&m, k),
                _ => instr_kmem_batch_lifo(&m, buf, k),
            };
            run(if case == "kmem-batch-lifo" { 2 } else { WARMUP }, &mut buf);
            run(n, &mut buf);
            m.drain_all_pages();
            assert!(m.buddy_matches_boot_state(&mut String::new()));
        }
        "bsa-heap-order0" | "bsa-heap-order3" | "bsa-heap-batch-lifo" => {
            let h = BsaHeap::new(BSA_BYTES);
            let mut buf = Vec::with_capacity(1000);
            let run = |k: usize, buf: &mut Vec<_>| match case.as_str() {
                "bsa-heap-order0" => instr_bsa_heap_order0(&h, k),
                "bsa-heap-order3" => instr_bsa_heap_order3(&h, k),
                _ => instr_bsa_heap_batch_lifo(&h, buf, k),
            };
            run(if case == "bsa-heap-batch-lifo" { 2 } else { WARMUP }, &mut buf);
            run(n, &mut buf);
            assert_eq!(h.allocated_bytes(), 0);
        }
        "bsa-frame-order0" | "bsa-frame-order3" => {
            let f = BsaFrames::new(1 << MAX_ORDER, BSA_BYTES / kmem::PAGE_SIZE);
            let run = |k: usize| {
                if case == "bsa-frame-order0" {
                    instr_bsa_frame_order0(&f, k)
                } else {
                    instr_bsa_frame_order3(&f, k)
                }
            };
            run(WARMUP);
            run(n);
        }
        _ => return usage(),
    }
    ExitCode::SUCCESS
}
