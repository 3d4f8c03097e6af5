//! Run one page-allocator or object-allocator case N times, for instruction
//! counting under valgrind (see `scripts/instr-count.sh`).
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

use kmem::mempool::Mempool;
use kmem::slab::KmemCache;
use kmem::GFP_KERNEL;
use kmem_bench::objects::*;
use kmem_bench::*;
use std::process::ExitCode;
use std::ptr::NonNull;

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

/// kmem_cache_alloc + kmem_cache_free of 64 bytes on a cache of its own.
#[inline(never)]
fn instr_slab_kmem_cache_64(a: &KmemCacheObjs<'_>, n: usize) {
    obj_pair(a, n);
}

/// kmalloc(64) + kfree, constant size.
#[inline(never)]
fn instr_slab_kmalloc_64(a: &KmallocObjs<'_, 64>, n: usize) {
    obj_pair(a, n);
}

/// kmalloc(size) + kfree, size 64 known at run time only.
#[inline(never)]
fn instr_slab_kmalloc_var_64(a: &KmallocVar<'_>, n: usize) {
    obj_pair(a, n);
}

/// glibc malloc(64) + free through `GlobalAlloc`.
#[inline(never)]
fn instr_slab_glibc_64(a: &Global<std::alloc::System>, n: usize) {
    obj_pair(a, n);
}

/// mimalloc through `GlobalAlloc` (`mi_malloc_aligned` + `mi_free`).
#[inline(never)]
fn instr_slab_mimalloc_64(a: &Global<mimalloc::MiMalloc>, n: usize) {
    obj_pair(a, n);
}

/// jemalloc through `GlobalAlloc` (`mallocx` + `sdallocx`).
#[inline(never)]
fn instr_slab_jemalloc_64(a: &Global<tikv_jemallocator::Jemalloc>, n: usize) {
    obj_pair(a, n);
}

/// (b) per round of 1000 live 64-byte objects, LIFO free: kmem_cache.
#[inline(never)]
fn instr_slab_batch_kmem_cache_64(a: &KmemCacheObjs<'_>, buf: &mut Vec<ObjPtr>, n: usize) {
    for _ in 0..n {
        obj_batch(a, buf, 1000);
    }
}

/// (b) with kmalloc(64).
#[inline(never)]
fn instr_slab_batch_kmalloc_64(a: &KmallocObjs<'_, 64>, buf: &mut Vec<ObjPtr>, n: usize) {
    for _ in 0..n {
        obj_batch(a, buf, 1000);
    }
}

/// (b) with mimalloc.
#[inline(never)]
fn instr_slab_batch_mimalloc_64(a: &Global<mimalloc::MiMalloc>, buf: &mut Vec<ObjPtr>, n: usize) {
    for _ in 0..n {
        obj_batch(a, buf, 1000);
    }
}

/// (b) with jemalloc.
#[inline(never)]
fn instr_slab_batch_jemalloc_64(a: &Global<tikv_jemallocator::Jemalloc>, buf: &mut Vec<ObjPtr>, n: usize) {
    for _ in 0..n {
        obj_batch(a, buf, 1000);
    }
}

/// (b) with glibc.
#[inline(never)]
fn instr_slab_batch_glibc_64(a: &Global<std::alloc::System>, buf: &mut Vec<ObjPtr>, n: usize) {
    for _ in 0..n {
        obj_batch(a, buf, 1000);
    }
}

/// Two rounds of warm-up, then `n` rounds of `f`.
fn run_batches<A: ObjAllocator<Obj = ObjPtr>>(a: &A, f: fn(&A, &mut Vec<ObjPtr>, usize), n: usize) {
    let mut buf = Vec::with_capacity(1000);
    f(a, &mut buf, 2);
    f(a, &mut buf, n);
}

/// `slab::Slab` insert + remove of a 64-byte entry.
#[inline(never)]
fn instr_slab_typed_64(a: &TypedSlab<64>, n: usize) {
    obj_pair(a, n);
}

/// `mempool_alloc(pool, GFP_KERNEL)` + `mempool_free` on a pool whose
/// backing allocator always has objects (its reserve is never touched).
struct MempoolObjs<'m> {
    m: &'m Machine,
    pool: &'m Mempool,
}

impl ObjAllocator for MempoolObjs<'_> {
    type Obj = ObjPtr;

    #[inline(always)]
    fn alloc(&self) -> Option<ObjPtr> {
        NonNull::new(self.m.mempool_alloc(self.pool, GFP_KERNEL)).map(ObjPtr)
    }

    #[inline(always)]
    unsafe fn free(&self, obj: ObjPtr) {
        // SAFETY: forwarded from the caller: an element of this pool.
        unsafe { self.m.mempool_free(obj.0.as_ptr(), self.pool) }
    }
}

/// mempool_alloc + mempool_free on a slab pool (min_nr 16) over a 64-byte
/// cache of its own (the cache of `slab-kmem-cache-64`).
#[inline(never)]
fn instr_slab_mempool_64(a: &MempoolObjs<'_>, n: usize) {
    // Different from the other mempool loops (once, outside the loop), so
    // that identical functions are not merged into one symbol.
    std::hint::black_box(0u8);
    obj_pair(a, n);
}

/// mempool_alloc + mempool_free on a kmalloc pool of 64-byte elements
/// (min_nr 16): compare with `slab-kmalloc-var-64` (the pool's size is data).
#[inline(never)]
fn instr_slab_mempool_kmalloc_64(a: &MempoolObjs<'_>, n: usize) {
    std::hint::black_box(1u8);
    obj_pair(a, n);
}

/// `slab-mempool-64` on a pool that does not count its fast paths
/// (`set_fast_path_stats(false)`: the kernel's mempool).
#[inline(never)]
fn instr_slab_mempool_nostats_64(a: &MempoolObjs<'_>, n: usize) {
    std::hint::black_box(2u8);
    obj_pair(a, n);
}

/// `slab-mempool-kmalloc-64` on a pool that does not count its fast paths.
#[inline(never)]
fn instr_slab_mempool_kmalloc_nostats_64(a: &MempoolObjs<'_>, n: usize) {
    std::hint::black_box(3u8);
    obj_pair(a, n);
}

/// Run a mempool case: a pool made by `make` on a fresh machine (given a
/// 64-byte cache of its own), warm-up, `n` pairs; then check that the
/// reserve was never touched and destroy the pool.
fn run_mempool(
    case: &str,
    n: usize,
    make: impl FnOnce(&Machine, NonNull<KmemCache>) -> NonNull<Mempool>,
    f: fn(&MempoolObjs<'_>, usize),
) {
    let m = Machine::boot(BENCH_CMDLINE).expect("boot");
    let cache = KmemCacheObjs::new(&m, 64);
    let pool = make(&m, cache.cache());
    {
        // SAFETY: the pool lives until mempool_destroy below.
        let pool = unsafe { pool.as_ref() };
        let a = MempoolObjs { m: &m, pool };
        run_pairs(&a, f, n);
        assert_eq!(a.pool.curr_nr(), 16, "{case}: the reserve was touched");
    }
    // SAFETY: nothing outstanding; the cache outlives the pool.
    unsafe { m.mempool_destroy(pool.as_ptr()) };
}

/// A fresh pool that no longer counts its fast paths.
fn nostats(mut pool: NonNull<Mempool>) -> NonNull<Mempool> {
    // SAFETY: a fresh pool nobody else uses yet.
    unsafe { pool.as_mut() }.set_fast_path_stats(false);
    pool
}

/// Run an object-allocator pair case: warm-up, then `n` pairs.
fn run_pairs<A: ObjAllocator>(a: &A, f: fn(&A, usize), n: usize) {
    f(a, WARMUP);
    f(a, n);
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
    "slab-kmem-cache-64",
    "slab-kmalloc-64",
    "slab-kmalloc-var-64",
    "slab-glibc-64",
    "slab-mimalloc-64",
    "slab-jemalloc-64",
    "slab-typed-64",
    "slab-mempool-64",
    "slab-mempool-kmalloc-64",
    "slab-mempool-nostats-64",
    "slab-mempool-kmalloc-nostats-64",
    "slab-batch-kmem-cache-64",
    "slab-batch-kmalloc-64",
    "slab-batch-glibc-64",
    "slab-batch-mimalloc-64",
    "slab-batch-jemalloc-64",
];

fn usage() -> ExitCode {
    eprintln!("usage: kmem-instr CASE N\ncases: {}", CASES.join(" "));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // Valgrind implements no rseq, so glibc registers none: count the code
    // paths a registered area takes all the same (one thread; see the docs).
    kmem_hosted::platform::emulate_rseq_for_instruction_counts();
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
        "slab-kmem-cache-64" => {
            let m = Machine::boot(BENCH_CMDLINE).expect("boot");
            let a = KmemCacheObjs::new(&m, 64);
            run_pairs(&a, instr_slab_kmem_cache_64, n);
            // SAFETY: a live cache.
            assert_eq!(m.cache_counts(unsafe { a.cache().as_ref() }).0, 0);
        }
        "slab-kmalloc-64" => {
            let m = Machine::boot(BENCH_CMDLINE).expect("boot");
            run_pairs(&KmallocObjs::<64>::new(&m), instr_slab_kmalloc_64, n);
        }
        "slab-kmalloc-var-64" => {
            let m = Machine::boot(BENCH_CMDLINE).expect("boot");
            run_pairs(&KmallocVar::new(&m, 64), instr_slab_kmalloc_var_64, n);
        }
        "slab-glibc-64" => run_pairs(&Global::new(std::alloc::System, 64), instr_slab_glibc_64, n),
        "slab-mimalloc-64" => run_pairs(&Global::new(mimalloc::MiMalloc, 64), instr_slab_mimalloc_64, n),
        "slab-jemalloc-64" => run_pairs(
            &Global::new(tikv_jemallocator::Jemalloc, 64),
            instr_slab_jemalloc_64,
            n,
        ),
        "slab-typed-64" => {
            let a = TypedSlab::<64>::with_capacity(16);
            run_pairs(&a, instr_slab_typed_64, n);
            assert!(a.is_empty());
        }
        "slab-mempool-64" => run_mempool(
            case,
            n,
            // SAFETY: a live cache of this machine (created and not destroyed).
            |m, c| unsafe { m.mempool_create_slab_pool(16, c) }.expect("mempool"),
            instr_slab_mempool_64,
        ),
        "slab-mempool-kmalloc-64" => run_mempool(
            case,
            n,
            |m, _| m.mempool_create_kmalloc_pool(16, 64).expect("mempool"),
            instr_slab_mempool_kmalloc_64,
        ),
        "slab-mempool-nostats-64" => run_mempool(
            case,
            n,
            // SAFETY: a live cache of this machine (created and not destroyed).
            |m, c| nostats(unsafe { m.mempool_create_slab_pool(16, c) }.expect("mempool")),
            instr_slab_mempool_nostats_64,
        ),
        "slab-mempool-kmalloc-nostats-64" => run_mempool(
            case,
            n,
            |m, _| nostats(m.mempool_create_kmalloc_pool(16, 64).expect("mempool")),
            instr_slab_mempool_kmalloc_nostats_64,
        ),
        "slab-batch-kmem-cache-64" => {
            let m = Machine::boot(BENCH_CMDLINE).expect("boot");
            let a = KmemCacheObjs::new(&m, 64);
            run_batches(&a, instr_slab_batch_kmem_cache_64, n);
            // SAFETY: a live cache.
            assert_eq!(m.cache_counts(unsafe { a.cache().as_ref() }).0, 0);
        }
        "slab-batch-kmalloc-64" => {
            let m = Machine::boot(BENCH_CMDLINE).expect("boot");
            run_batches(&KmallocObjs::<64>::new(&m), instr_slab_batch_kmalloc_64, n);
        }
        "slab-batch-glibc-64" => {
            run_batches(&Global::new(std::alloc::System, 64), instr_slab_batch_glibc_64, n)
        }
        "slab-batch-mimalloc-64" => run_batches(
            &Global::new(mimalloc::MiMalloc, 64),
            instr_slab_batch_mimalloc_64,
            n,
        ),
        "slab-batch-jemalloc-64" => run_batches(
            &Global::new(tikv_jemallocator::Jemalloc, 64),
            instr_slab_batch_jemalloc_64,
            n,
        ),
        _ => return usage(),
    }
    ExitCode::SUCCESS
}
