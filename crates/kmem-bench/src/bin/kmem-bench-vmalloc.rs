//! test_vmalloc (`lib/test_vmalloc.c`, Uladzislau Rezki) as a benchmark of
//! kmem's vmalloc, per-CPU allocator and mempool, in one process.
//!
//! ```text
//! cargo run --release -p kmem-bench --bin kmem-bench-vmalloc -- \
//!     [--nr-threads N] [--nr-pages N] [--test-loop-count N] [--test-repeat-count N]
//!     [--run-test-mask M] [--sequential] [--cmdline "BOOT PARAMS"] [--no-extra] [--quick]
//! ```
//!
//! The options are the kernel module's parameters (`nr_threads`, `nr_pages`,
//! `test_loop_count` (default 1,000,000), `test_repeat_count`,
//! `run_test_mask` (bit = the kernel's test id), `sequential_test_order`).
//! `nr_threads` workers, worker `i` pinned to host CPU `i % ncpus`, wait on a
//! barrier (the kernel's rwsem) and run every selected case, in a shuffled
//! order unless `--sequential`, `test_repeat_count` times. Then, per worker,
//! the kernel's own lines are printed:
//!
//! ```text
//! Summary: fix_size_alloc_test passed: 1 failed: 0 repeat: 1 loops: 1000000 avg: 977041 usec
//! All test took worker0=1234567 cycles
//! ```
//!
//! each `Summary:` followed by an indented line of ours with the time per
//! loop (one vmalloc+vfree pair, for most cases) in nanoseconds.
//!
//! Cases: every case of the kernel's list whose API kmem has; the
//! `kvfree_rcu` cases need RCU and are listed as not run.
//! `align_shift_alloc_test` fails by design, as in the kernel (its last
//! alignments are larger than the window). `vm_map_ram_test` maps with
//! `vmap`/`vunmap` (kmem has no per-CPU vmap blocks).
//!
//! Then, unless `--no-extra`, single-thread lines of ours (pinned to CPU 0,
//! median of 11 repetitions): a small `__alloc_percpu` + `free_percpu` pair,
//! and `mempool_alloc` + `mempool_free` on a slab pool (as created, and
//! without fast-path statistics) against `kmem_cache_alloc` +
//! `kmem_cache_free` on its cache alone, in interleaved rounds. Last, a
//! check that every page came back to the buddy allocator.

use kmem::slab::{KmemCache, SlabFlags};
use kmem::*;
use kmem_bench::{cpu_model, median, pin_to_cpu, unpin, Machine, Rng, BENCH_CMDLINE};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Barrier;
use std::time::Instant;

const USAGE: &str = "\
kmem-bench-vmalloc: lib/test_vmalloc.c's cases on a kmem machine, plus per-CPU and mempool pairs

OPTIONS (the kernel module's parameters):
    --nr-threads N          workers, pinned to host CPUs round robin (default 1)
    --nr-pages N            pages of fix_size_alloc_test and vm_map_ram_test (default 1)
    --test-loop-count N     loops per case (default 1000000)
    --test-repeat-count N   repetitions per case (default 1)
    --run-test-mask M       cases to run, by the kernel's ids (default: every case kmem has)
    --nr-pcpu-objects N     objects of pcpu_alloc_test (newer kernels' parameter; default 35000)
    --sequential            run the cases in order (default: shuffled per worker)
    --cmdline STR           boot parameters (default \"quiet mem=1G nr_cpus=2\")
    --no-extra              skip the per-CPU and mempool pairs
    --quick                 test_loop_count 10000 (a smoke run)
";

/// The module parameters.
#[derive(Clone)]
struct Params {
    nr_threads: usize,
    nr_pages: usize,
    loops: usize,
    repeat: usize,
    mask: u32,
    nr_pcpu_objects: usize,
    sequential: bool,
    cmdline: String,
    extra: bool,
}

fn parse(args: &[String]) -> Result<Params, String> {
    let mut p = Params {
        nr_threads: 1,
        nr_pages: 1,
        loops: 1_000_000,
        repeat: 1,
        mask: u32::MAX,
        nr_pcpu_objects: PCPU_OBJECTS,
        sequential: false,
        cmdline: BENCH_CMDLINE.to_string(),
        extra: true,
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let num = |i: usize| -> Result<usize, String> {
            let v = args.get(i + 1).ok_or_else(|| format!("{a} needs a value"))?;
            let n = if let Some(h) = v.strip_prefix("0x") {
                usize::from_str_radix(h, 16)
            } else {
                v.parse()
            };
            n.ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{a}: not a positive number: {v}"))
        };
        match a {
            "--nr-threads" => p.nr_threads = num(i)?.min(u16::MAX as usize),
            "--nr-pages" => p.nr_pages = num(i)?,
            "--test-loop-count" => p.loops = num(i)?,
            "--test-repeat-count" => p.repeat = num(i)?,
            "--run-test-mask" => p.mask = num(i)? as u32,
            "--nr-pcpu-objects" => p.nr_pcpu_objects = num(i)?,
            "--cmdline" => {
                p.cmdline = args.get(i + 1).ok_or("--cmdline needs a value")?.clone();
            }
            "--sequential" | "--no-extra" | "--quick" => {
                match a {
                    "--sequential" => p.sequential = true,
                    "--no-extra" => p.extra = false,
                    _ => p.loops = 10_000,
                }
                i += 1;
                continue;
            }
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument: {a}")),
        }
        i += 2;
    }
    Ok(p)
}

/// What a case runs on: the machine, the parameters, the worker's random numbers.
struct Ctx<'m> {
    m: &'m Machine,
    p: &'m Params,
    rng: Rng,
}

/// A case: `Ok` = passed.
type TestFn = fn(&mut Ctx) -> Result<(), ()>;

struct Case {
    name: &'static str,
    /// `None`: kmem lacks what the case needs (the reason).
    run: Result<TestFn, &'static str>,
    /// What one loop is, for our per-loop line; `None` for cases whose loop
    /// count is not `test_loop_count`.
    per: fn(&Params) -> (usize, &'static str),
}

const NO_RCU: &str = "kmem has no kvfree_rcu";

/// The kernel's cases, in its order (bit i of the mask is case i).
const CASES: [Case; 11] = [
    Case {
        name: "fix_size_alloc_test",
        run: Ok(fix_size_alloc_test),
        per: |p| (p.loops, "vmalloc(nr_pages)+write+vfree"),
    },
    Case {
        name: "full_fit_alloc_test",
        run: Ok(full_fit_alloc_test),
        per: |p| (p.loops, "1-page vmalloc+write+vfree into exact holes"),
    },
    Case {
        name: "long_busy_list_alloc_test",
        run: Ok(long_busy_list_alloc_test),
        per: |p| (p.loops, "loop: vmalloc 100 + 1 pages, write, 2 vfree; 15000 busy"),
    },
    Case {
        name: "random_size_alloc_test",
        run: Ok(random_size_alloc_test),
        per: |p| (p.loops, "vmalloc(1..100 pages)+write+vfree"),
    },
    Case {
        name: "fix_align_alloc_test",
        run: Ok(fix_align_alloc_test),
        per: |p| (p.loops, "__vmalloc_node(5 pages, align 32 KiB, zeroed)+vfree"),
    },
    Case {
        name: "random_size_align_alloc_test",
        run: Ok(random_size_align_alloc_test),
        per: |p| {
            (
                p.loops,
                "__vmalloc_node(1..10 pages, align 1 B..4 MiB, zeroed)+vfree",
            )
        },
    },
    Case {
        name: "align_shift_alloc_test",
        run: Ok(align_shift_alloc_test),
        per: |_| {
            (
                64,
                "__vmalloc_node(1 page, align 2^i, zeroed)+vfree; fails by design",
            )
        },
    },
    Case {
        name: "pcpu_alloc_test",
        run: Ok(pcpu_alloc_test),
        per: |p| {
            (
                p.nr_pcpu_objects,
                "__alloc_percpu(1..1024 B, align 2..2048)+free_percpu, all live at once",
            )
        },
    },
    Case {
        name: "kvfree_rcu_1_arg_vmalloc_test",
        run: Err(NO_RCU),
        per: |p| (p.loops, ""),
    },
    Case {
        name: "kvfree_rcu_2_arg_vmalloc_test",
        run: Err(NO_RCU),
        per: |p| (p.loops, ""),
    },
    Case {
        name: "vm_map_ram_test",
        run: Ok(vm_map_ram_test),
        per: |p| (p.loops, "vmap(nr_pages given pages)+write+vunmap"),
    },
];

/// `vmalloc(size)` and a write to its first byte, as every case does.
fn vmalloc_touch(m: &Machine, size: usize, byte: u8) -> Result<NonNull<u8>, ()> {
    let p = m.vmalloc(size).map_err(|_| ())?;
    // SAFETY: vmalloc returned at least one writable byte.
    unsafe { p.as_ptr().write_volatile(byte) };
    Ok(p)
}

fn fix_size_alloc_test(c: &mut Ctx) -> Result<(), ()> {
    for _ in 0..c.p.loops {
        let p = vmalloc_touch(c.m, c.p.nr_pages * PAGE_SIZE, 0)?;
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { c.m.vfree(black_box(p.as_ptr())) };
    }
    Ok(())
}

/// `fls(x)`: the position of the highest set bit, 1-based; 0 for 0.
fn fls(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

fn full_fit_alloc_test(c: &mut Ctx) -> Result<(), ()> {
    let m = c.m;
    let junk_length = fls(m.nr_cpu_ids()) * (32 * 1024 * 1024 / PAGE_SIZE);
    let mut ptr = Vec::with_capacity(junk_length);
    let mut junk = Vec::with_capacity(junk_length);
    let mut rv = Ok(());
    for _ in 0..junk_length {
        match (m.vmalloc(PAGE_SIZE), m.vmalloc(PAGE_SIZE)) {
            (Ok(a), Ok(b)) => {
                ptr.push(a);
                junk.push(b);
            }
            (a, b) => {
                // The kernel stores NULL and vfree ignores it; we keep what came.
                ptr.extend(a.ok());
                junk.extend(b.ok());
                rv = Err(());
            }
        }
    }
    for j in junk {
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(j.as_ptr()) };
    }
    if rv.is_ok() {
        for _ in 0..c.p.loops {
            match vmalloc_touch(m, PAGE_SIZE, 1) {
                // SAFETY: the area just allocated and touched, unused afterwards.
                Ok(t) => unsafe { m.vfree(black_box(t.as_ptr())) },
                Err(()) => {
                    rv = Err(());
                    break;
                }
            }
        }
    }
    for p in ptr {
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
    }
    rv
}

fn long_busy_list_alloc_test(c: &mut Ctx) -> Result<(), ()> {
    let m = c.m;
    let mut ptr = Vec::with_capacity(15000);
    let mut rv = Ok(());
    for _ in 0..15000 {
        match m.vmalloc(PAGE_SIZE) {
            Ok(p) => ptr.push(p),
            Err(_) => rv = Err(()),
        }
    }
    if rv.is_ok() {
        for _ in 0..c.p.loops {
            let Ok(p1) = vmalloc_touch(m, 100 * PAGE_SIZE, 0) else {
                rv = Err(());
                break;
            };
            let Ok(p2) = vmalloc_touch(m, PAGE_SIZE, 1) else {
                // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
                unsafe { m.vfree(p1.as_ptr()) };
                rv = Err(());
                break;
            };
            // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
            unsafe { m.vfree(black_box(p1.as_ptr())) };
            // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
            unsafe { m.vfree(black_box(p2.as_ptr())) };
        }
    }
    for p in ptr {
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
    }
    rv
}

fn random_size_alloc_test(c: &mut Ctx) -> Result<(), ()> {
    for _ in 0..c.p.loops {
        let n = 1 + c.rng.below(100);
        let p = vmalloc_touch(c.m, n * PAGE_SIZE, 1)?;
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { c.m.vfree(black_box(p.as_ptr())) };
    }
    Ok(())
}

/// x86-64's `THREAD_ALIGN` (`THREAD_SIZE`, 16 KiB without KASAN).
const THREAD_ALIGN: usize = 4 * PAGE_SIZE;

fn fix_align_alloc_test(c: &mut Ctx) -> Result<(), ()> {
    for _ in 0..c.p.loops {
        let p =
            c.m.__vmalloc_node(5 * PAGE_SIZE, THREAD_ALIGN << 1, GFP_KERNEL | __GFP_ZERO, 0)
                .map_err(|_| ())?;
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { c.m.vfree(black_box(p.as_ptr())) };
    }
    Ok(())
}

fn random_size_align_alloc_test(c: &mut Ctx) -> Result<(), ()> {
    for _ in 0..c.p.loops {
        let rnd = c.rng.below(256);
        // At most 1024 pages of alignment and 10 pages of size, as the kernel's.
        let align = 1usize << (rnd % 23);
        let size = (rnd % 10 + 1) * PAGE_SIZE;
        let p =
            c.m.__vmalloc_node(size, align, GFP_KERNEL | __GFP_ZERO, 0)
                .map_err(|_| ())?;
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { c.m.vfree(black_box(p.as_ptr())) };
    }
    Ok(())
}

/// The kernel's comment: "This test case is supposed to be failed." (no
/// window has room for an alignment of 2^63).
fn align_shift_alloc_test(c: &mut Ctx) -> Result<(), ()> {
    for i in 0..usize::BITS {
        let p =
            c.m.__vmalloc_node(PAGE_SIZE, 1usize << i, GFP_KERNEL | __GFP_ZERO, 0)
                .map_err(|_| ())?;
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { c.m.vfree(black_box(p.as_ptr())) };
    }
    Ok(())
}

/// Objects of `pcpu_alloc_test` (the kernel's constant; newer kernels' `nr_pcpu_objects` default).
const PCPU_OBJECTS: usize = 35000;

fn pcpu_alloc_test(c: &mut Ctx) -> Result<(), ()> {
    let m = c.m;
    let mut rv = Ok(());
    let mut pcpu = Vec::with_capacity(c.p.nr_pcpu_objects);
    for _ in 0..c.p.nr_pcpu_objects {
        let size = 1 + c.rng.below(PAGE_SIZE / 4);
        let align = 1 << (1 + c.rng.below(11));
        match m.__alloc_percpu(size, align) {
            Ok(p) => pcpu.push(p),
            Err(_) => rv = Err(()),
        }
    }
    for p in pcpu {
        // SAFETY: allocated just above, freed once.
        unsafe { m.free_percpu(p) };
    }
    rv
}

fn vm_map_ram_test(c: &mut Ctx) -> Result<(), ()> {
    let m = c.m;
    let mut pages = Vec::with_capacity(c.p.nr_pages);
    for _ in 0..c.p.nr_pages {
        match m.alloc_pages(GFP_KERNEL, 0) {
            Ok(p) => pages.push(p),
            Err(_) => break,
        }
    }
    let mut rv = if pages.len() == c.p.nr_pages {
        Ok(())
    } else {
        Err(())
    };
    if rv.is_ok() {
        for _ in 0..c.p.loops {
            match m.vmap(&pages) {
                Ok(v) => {
                    // SAFETY: vmap mapped nr_pages pages there.
                    unsafe { v.as_ptr().write_volatile(b'a') };
                    // SAFETY: our mapping, unused afterwards.
                    unsafe { m.vunmap(black_box(v.as_ptr())) };
                }
                Err(_) => {
                    rv = Err(());
                    break;
                }
            }
        }
    }
    for p in pages {
        // SAFETY: allocated above with order 0, no longer mapped.
        unsafe { m.__free_pages(p, 0) };
    }
    rv
}

/// One worker's results: per case (passed, failed, avg µs, total ns), and
/// its cycles.
#[derive(Clone, Default)]
struct Worker {
    data: [(usize, usize, u64, u128); CASES.len()],
    cycles: u64,
}

fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

fn selected(p: &Params, i: usize) -> bool {
    p.mask & (1 << i) != 0 && CASES[i].run.is_ok()
}

fn test_func(m: &Machine, p: &Params, id: usize, start: &Barrier) -> Worker {
    let mut order: Vec<usize> = (0..CASES.len()).collect();
    let seed =
        Instant::now().elapsed().as_nanos() as u64 ^ ((id as u64 + 1) << 40) ^ std::process::id() as u64;
    let mut rng = Rng::new(seed | 1);
    if !p.sequential {
        // shuffle_array: as the kernel's, j below i.
        for i in (1..order.len()).rev() {
            let j = rng.below(i);
            order.swap(i, j);
        }
    }
    let mut w = Worker::default();
    let mut c = Ctx { m, p, rng };
    start.wait();
    let t0 = cycles();
    for &index in &order {
        if !selected(p, index) {
            continue;
        }
        let Ok(f) = CASES[index].run else { continue };
        let kt = Instant::now();
        for _ in 0..p.repeat {
            if f(&mut c).is_ok() {
                w.data[index].0 += 1;
            } else {
                w.data[index].1 += 1;
            }
        }
        let ns = kt.elapsed().as_nanos();
        w.data[index].2 = (ns / 1000) as u64 / p.repeat as u64;
        w.data[index].3 = ns;
    }
    w.cycles = cycles().wrapping_sub(t0);
    w
}

/// Median ns per operation of `run` (which performs `ops` operations), 11 repetitions after a warm-up.
fn measure(ops: usize, mut run: impl FnMut()) -> f64 {
    run();
    median(
        (0..11)
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_nanos() as f64 / ops as f64
            })
            .collect(),
    )
}

/// Per-CPU and mempool pairs, pinned to CPU 0.
fn extra(m: &Machine, loops: usize) {
    pin_to_cpu(0);
    let n = loops.clamp(10_000, 1_000_000);
    let pcpu = measure(n, || {
        for _ in 0..n {
            let p = m.__alloc_percpu(8, 8).expect("__alloc_percpu");
            // SAFETY: just allocated, freed once.
            unsafe { m.free_percpu(black_box(p)) };
        }
    });
    println!(
        "host: mmap(MAP_FIXED|MAP_SHARED) of a memfd page + first write + mmap(PROT_NONE) over it: {:.1} ns \
         (what the hosted platform does per 1-page vmalloc+vfree; median of 11)",
        host_map_floor(n.min(100_000))
    );
    println!("kmem: per-CPU __alloc_percpu(8, 8)+free_percpu pair: {pcpu:.1} ns ({n} pairs, median of 11)");
    // Keep a few live objects so the pair is not the chunk's only allocation.
    let live: Vec<_> = (0..64)
        .map(|i| m.__alloc_percpu(4 << (i % 4), 4).unwrap())
        .collect();
    let pcpu_live = measure(n, || {
        for _ in 0..n {
            let p = m.__alloc_percpu(8, 8).expect("__alloc_percpu");
            // SAFETY: just allocated, freed once.
            unsafe { m.free_percpu(black_box(p)) };
        }
    });
    for p in live {
        // SAFETY: allocated above.
        unsafe { m.free_percpu(p) };
    }
    println!("kmem: the same with 64 live per-CPU objects before it: {pcpu_live:.1} ns");

    const OBJ: usize = 128;
    let cache: NonNull<KmemCache> = m
        .kmem_cache_create("bench-mempool", OBJ, 0, SlabFlags(0), None)
        .expect("kmem_cache_create");
    let slab = || {
        for _ in 0..n {
            // SAFETY: a live cache of this machine (created and not destroyed).
            let o = unsafe { m.kmem_cache_alloc(cache, GFP_KERNEL) }.expect("kmem_cache_alloc");
            // SAFETY: just allocated, freed once.
            unsafe { m.kmem_cache_free(cache, black_box(o.as_ptr())) };
        }
    };
    // Two slab pools over that cache: as created (counting its fast paths),
    // and one that counts only its slow paths, as the kernel's mempool.
    // SAFETY: a live cache of this machine (created and not destroyed).
    let pool = unsafe { m.mempool_create_slab_pool(16, cache) }.expect("mempool_create_slab_pool");
    // SAFETY: a live cache of this machine (created and not destroyed).
    let mut bare = unsafe { m.mempool_create_slab_pool(16, cache) }.expect("mempool_create_slab_pool");
    // SAFETY: fresh, nobody else uses it; the pools live until mempool_destroy below.
    let (pr, br) = unsafe {
        bare.as_mut().set_fast_path_stats(false);
        (pool.as_ref(), bare.as_ref())
    };
    let pair = |pr: &kmem::mempool::Mempool| {
        for _ in 0..n {
            let o = m.mempool_alloc(pr, GFP_KERNEL);
            assert!(!o.is_null());
            // SAFETY: just allocated from this pool, freed once.
            unsafe { m.mempool_free(black_box(o), pr) };
        }
    };
    // Interleaved rounds (slab, pool, bare pool), so that the shared host's
    // drift falls on the three alike; the median round of each.
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let (mut ts, mut tp, mut tb) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..12 {
        let (s, p, b) = (time(&slab), time(&|| pair(pr)), time(&|| pair(br)));
        if round > 0 {
            ts.push(s);
            tp.push(p);
            tb.push(b);
        }
    }
    let (slab, mp, bp) = (median(ts), median(tp), median(tb));
    let (st, sb) = (pr.stats(), br.stats());
    // SAFETY: no element is outstanding; the cache outlives the pools.
    unsafe {
        m.mempool_destroy(pool.as_ptr());
        m.mempool_destroy(bare.as_ptr());
        m.kmem_cache_destroy(cache);
    }
    println!(
        "kmem: kmem_cache_alloc+kmem_cache_free ({OBJ} B, GFP_KERNEL): {slab:.1} ns (median of 11 rounds)"
    );
    println!(
        "kmem: mempool_alloc+mempool_free (slab pool over that cache, min_nr 16, backing non-empty): {mp:.1} ns \
         = {:.2} x the cache alone (from the slab {}, from the reserve {})",
        mp / slab,
        st.alloc_backing,
        st.alloc_reserve
    );
    println!(
        "kmem: the same on a pool that does not count its fast paths (set_fast_path_stats(false), as the \
         kernel's): {bp:.1} ns = {:.2} x the cache alone (from the reserve {})",
        bp / slab,
        sb.alloc_reserve
    );
    unpin();
}

/// Give back everything cached: lazily freed ranges, empty per-CPU chunks,
/// empty slabs, the per-CPU page lists.
fn settle(m: &Machine) {
    m.vm_unmap_aliases();
    m.pcpu_balance();
    m.kmem_cache_shrink_all();
    m.drain_all_pages();
}

/// What the hosted platform asks of the host for a 1-page vmalloc + write +
/// vfree: `mmap(MAP_FIXED|MAP_SHARED)` of one page of a memfd into a reserved
/// range, the first write (a page fault), and `mmap(PROT_NONE, MAP_FIXED)`
/// over it again. ns per round.
fn host_map_floor(n: usize) -> f64 {
    // SAFETY: a fresh memfd of one page and a fresh 2-page reservation, only
    // used here; every mapping made is inside the reservation, unmapped at the end.
    unsafe {
        let fd = libc::memfd_create(c"kmem-bench-floor".as_ptr(), 0);
        assert!(fd >= 0 && libc::ftruncate(fd, PAGE_SIZE as libc::off_t) == 0);
        let none = libc::PROT_NONE;
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let base = libc::mmap(std::ptr::null_mut(), 2 * PAGE_SIZE, none, anon, -1, 0);
        assert!(base != libc::MAP_FAILED);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let ns = measure(n, || {
            for _ in 0..n {
                let p = libc::mmap(base, PAGE_SIZE, rw, libc::MAP_SHARED | libc::MAP_FIXED, fd, 0);
                assert!(p != libc::MAP_FAILED);
                (p as *mut u8).write_volatile(0);
                libc::mmap(p, PAGE_SIZE, none, anon | libc::MAP_FIXED, -1, 0);
            }
        });
        libc::munmap(base, 2 * PAGE_SIZE);
        libc::close(fd);
        ns
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let p = match parse(&args) {
        Ok(p) => p,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("kmem-bench-vmalloc: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let (model, host_cpus) = cpu_model();
    let m = match Machine::boot(&p.cmdline) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("kmem-bench-vmalloc: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "CPU: {model} ({host_cpus} logical CPUs); machine: Machine::boot({:?})",
        p.cmdline
    );
    println!(
        "test_vmalloc: nr_threads={} nr_pages={} test_loop_count={} test_repeat_count={} \
         run_test_mask={:#x} sequential_test_order={}",
        p.nr_threads, p.nr_pages, p.loops, p.repeat, p.mask, p.sequential as u8
    );
    for case in CASES.iter() {
        if let Err(why) = case.run {
            println!("  not run: {} ({why})", case.name);
        }
    }
    // Warm-up: the first vmalloc creates the vmap free-list record and the
    // slabs it and the page arrays come from; count free pages after it.
    if let Ok(p) = m.vmalloc(PAGE_SIZE) {
        // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
        unsafe { m.vfree(p.as_ptr()) };
    }
    settle(&m);
    let before = m.nr_free_pages();
    let start = Barrier::new(p.nr_threads);
    let workers: Vec<Worker> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..p.nr_threads)
            .map(|i| {
                let (m, p, start) = (&m, &p, &start);
                std::thread::Builder::new()
                    .name(format!("vmalloc_test/{i}"))
                    .spawn_scoped(s, move || {
                        pin_to_cpu(i % host_cpus.max(1));
                        test_func(m, p, i, start)
                    })
                    .expect("spawn")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    let mut all_passed = true;
    for (i, w) in workers.iter().enumerate() {
        for (j, case) in CASES.iter().enumerate() {
            if !selected(&p, j) {
                continue;
            }
            let (passed, failed, avg, ns) = w.data[j];
            all_passed &= failed == 0;
            println!(
                "Summary: {} passed: {} failed: {} repeat: {} loops: {} avg: {} usec",
                case.name, passed, failed, p.repeat, p.loops, avg
            );
            let (per, what) = (case.per)(&p);
            println!(
                "    {:.1} ns per {what}",
                ns as f64 / p.repeat as f64 / per as f64
            );
        }
        println!("All test took worker{i}={} cycles", w.cycles);
    }
    if p.extra {
        extra(&m, p.loops);
    }
    settle(&m);
    let after = m.nr_free_pages();
    let mut diff = String::new();
    let boot = m.buddy_matches_boot_state(&mut diff);
    if after == before {
        println!(
            "every page came back: {after} free pages, as before the cases{}",
            if boot {
                " (the buddy lists equal the boot state)"
            } else {
                "; the buddy lists differ from the boot state by what the warm-up left allocated"
            }
        );
    } else {
        println!("PAGES MISSING: {before} free pages before the cases, {after} after\n{diff}");
        all_passed = false;
    }
    if !all_passed {
        let log = m.dmesg();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!("--- the machine's last kernel messages ---");
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
        std::process::exit(1);
    }
}
