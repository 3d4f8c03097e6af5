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
//!   under the pool, see `kmem-bench-vmalloc`;
//! * [`Suite::Malloc`]: libkmalloc against glibc, mimalloc and jemalloc
//!   through `LD_PRELOAD`, on the workloads of
//!   `crates/kmem-malloc/bench/mallocbench.c` (shorter runs of
//!   `scripts/bench-malloc.sh`): milliseconds per run and peak RSS, each
//!   workload run in a process of its own; kmem's ratios of time are the
//!   median of the rounds' ratios (`Table::round_ratios`).
//!
//! Every figure is the median of a few repetitions after a warm-up, in
//! nanoseconds of wall time; the competitors' repetitions of a case are
//! interleaved ([`measure_interleaved`]). Single-thread cases run pinned to
//! host CPU 0.

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
    /// libkmalloc against glibc, mimalloc and jemalloc through `LD_PRELOAD`.
    Malloc,
}

impl Suite {
    /// Every suite, in the order `kmem bench` runs them.
    pub const ALL: [Suite; 4] = [Suite::Pages, Suite::Objects, Suite::Vmalloc, Suite::Malloc];

    /// The suite's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Pages => "pages",
            Suite::Objects => "objects",
            Suite::Vmalloc => "vmalloc",
            Suite::Malloc => "malloc",
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
    /// The malloc suite's runs per workload and allocator, and the divisor
    /// of `scripts/bench-malloc.sh`'s N for each.
    pub malloc_runs: usize,
    /// See `malloc_runs`.
    pub malloc_div: u64,
}

impl Scale {
    /// About a second per suite.
    pub const QUICK: Scale = Scale {
        reps: 3,
        pairs: 20_000,
        batches: 10,
        malloc_runs: 1,
        malloc_div: 40,
    };
    /// Closer to the bench programs' figures (several seconds per suite).
    pub const FULL: Scale = Scale {
        reps: 7,
        pairs: 300_000,
        batches: 100,
        malloc_runs: 3,
        malloc_div: 4,
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
    /// Ratios measured round by round, for the rows that have them: (row
    /// index, kmem's ratio to each column after kmem's, the median of the
    /// rounds' ratios). The other rows' ratios are those of their figures.
    pub round_ratios: Vec<(usize, Vec<Option<f64>>)>,
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
        Suite::Malloc => malloc(s),
    }
}

/// One repetition of each page-allocator case on `a` (`live`: the mixed
/// case's live set).
fn page_reps<'a, A: PageAllocator>(
    a: &'a A,
    live: &'a mut LiveSet<A::Block>,
    s: Scale,
) -> [Option<Rep<'a>>; 4] {
    let mut buf = Vec::with_capacity(1000);
    [
        timed(s.pairs, move || pair(a, 0, s.pairs)),
        timed(s.pairs, move || pair(a, 3, s.pairs)),
        timed(s.batches * 1000, move || {
            for _ in 0..s.batches {
                batch(a, &mut buf, 1000, FreeOrder::Lifo);
            }
        }),
        timed(s.pairs, move || mixed(a, live, s.pairs)),
    ]
}

/// Each case of `reps` (one row of competitors' repetitions per case),
/// measured with [`measure_interleaved`]; rows of the result are cases.
fn interleave<const N: usize>(s: Scale, mut reps: Vec<[Option<Rep<'_>>; N]>) -> Vec<Vec<Option<f64>>> {
    (0..N)
        .map(|case| {
            let mut runs: Vec<_> = reps.iter_mut().map(|r| r[case].take()).collect();
            measure_interleaved(s.reps, &mut runs)
        })
        .collect()
}

fn pages(s: Scale) -> Table {
    let m = Machine::boot(BENCH_CMDLINE).expect("boot");
    let heap = BsaHeap::new(BSA_BYTES);
    pin_to_cpu(0);
    let mut k_live = LiveSet::fill(&m, MIXED_LIVE, 0x5eed);
    let mut h_live = LiveSet::fill(&heap, MIXED_LIVE, 0x5eed);
    let rows = interleave(
        s,
        vec![page_reps(&m, &mut k_live, s), page_reps(&heap, &mut h_live, s)],
    );
    k_live.release(&m);
    h_live.release(&heap);
    m.drain();
    heap.drain();
    unpin();
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
        rows: names.iter().map(|n| n.to_string()).zip(rows).collect(),
        round_ratios: Vec::new(),
    }
}

/// Pair, batch (pinned to host CPU 0) and cross-thread repetitions on `a`.
fn obj_reps<'a, A: ObjAllocator + Sync>(a: &'a A, s: Scale) -> [Option<Rep<'a>>; 3] {
    [
        pair_rep(a, s.pairs),
        batch_rep(a, s.batches, 1000),
        cross_rep(a, s.pairs),
    ]
}

fn objects(s: Scale) -> Table {
    const SIZE: usize = 64;
    let m = Machine::boot(BENCH_CMDLINE).expect("boot");
    let cache = KmemCacheObjs::new(&m, SIZE);
    let kmalloc = KmallocObjs::<SIZE>::new(&m);
    let glibc = Global::new(std::alloc::System, SIZE);
    let mi = Global::new(mimalloc::MiMalloc, SIZE);
    let je = Global::new(tikv_jemallocator::Jemalloc, SIZE);
    let mut reps = [
        obj_reps(&cache, s),
        obj_reps(&kmalloc, s),
        obj_reps(&glibc, s),
        obj_reps(&mi, s),
        obj_reps(&je, s),
    ];
    // The pair and the batch run pinned; the cross-thread case pins its threads.
    pin_to_cpu(0);
    let mut rows = interleave(s, reps.iter_mut().map(|r| [r[0].take(), r[1].take()]).collect());
    unpin();
    rows.extend(interleave(s, reps.iter_mut().map(|r| [r[2].take()]).collect()));
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
        rows: names.iter().map(|n| n.to_string()).zip(rows).collect(),
        round_ratios: Vec::new(),
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
            // SAFETY: ours to free (a live area, or an address vfree reports), unused afterwards.
            unsafe { m.vfree(black_box(p.as_ptr())) };
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
            // SAFETY: a live cache of this machine (created and not destroyed).
            let o = unsafe { m.kmem_cache_alloc(cache, GFP_KERNEL) }.expect("kmem_cache_alloc");
            // SAFETY: allocated just above, freed once.
            unsafe { m.kmem_cache_free(cache, black_box(o.as_ptr())) };
        }
    });
    // SAFETY: a live cache of this machine (created and not destroyed).
    let pool = unsafe { m.mempool_create_slab_pool(16, cache) }.expect("mempool");
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
        round_ratios: Vec::new(),
    }
}

/// The workloads of `mallocbench.c` and the N of `scripts/bench-malloc.sh`
/// (this suite divides it by `Scale::malloc_div`).
const MALLOC_WORKLOADS: [(&str, u64); 7] = [
    ("pair", 20_000_000),
    ("larson", 4_000_000),
    ("mixed", 4_000_000),
    ("prodcons", 2_000_000),
    ("falseshare", 200_000),
    ("frag", 160),
    ("large", 200),
];

/// The preloaded libraries of the malloc suite, by column: libkmalloc beside
/// this program (`cargo build --release` puts both in `target/release`),
/// none for glibc, and Debian's mimalloc and jemalloc
/// (`apt-get install libmimalloc2.0 libjemalloc2`). None: not found.
fn malloc_libraries() -> [Option<Option<std::path::PathBuf>>; 4] {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("libkmalloc.so")))
        .filter(|p| p.is_file());
    let debian = |name: &str| {
        let p = std::path::Path::new("/usr/lib/x86_64-linux-gnu").join(name);
        p.is_file().then_some(Some(p))
    };
    [
        beside.map(Some),
        Some(None),
        debian("libmimalloc.so.2"),
        debian("libjemalloc.so.2"),
    ]
}

/// One run of `mallocbench W N 2` with `preload` (None: none): its own
/// timing in milliseconds and its own peak RSS (`VmHWM`) in MB, both as it
/// prints them. (A parent's `wait4` would also count what the child held
/// before its exec: a copy of this process.)
fn mallocbench_run(bin: &std::path::Path, w: &str, n: u64, preload: Option<&std::path::Path>) -> (f64, f64) {
    let mut cmd = std::process::Command::new(bin);
    cmd.args([w, &n.to_string(), "2"]).env_remove("KMEM_CMDLINE");
    match preload {
        Some(lib) => cmd.env("LD_PRELOAD", lib),
        None => cmd.env_remove("LD_PRELOAD"),
    };
    let out = cmd.output().expect("run mallocbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mallocbench {w} {n} failed (LD_PRELOAD {preload:?}): {}",
        out.status
    );
    let fields: Vec<f64> = text
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    match fields[..] {
        [secs, kb] => (secs * 1e3, kb / 1024.0),
        _ => panic!("mallocbench printed {text:?}"),
    }
}

fn malloc(s: Scale) -> Table {
    let (div, runs) = (s.malloc_div.max(1), s.malloc_runs.max(1));
    let libs = malloc_libraries();
    let columns = vec![
        "kmem".to_string(),
        "glibc".into(),
        "mimalloc".into(),
        "jemalloc".into(),
    ];
    let title = "malloc override through LD_PRELOAD (ms per run, then peak RSS in MB)".to_string();
    // mallocbench, compiled from its source into a directory of its own.
    let dir = std::env::temp_dir().join(format!("kmem-bench-malloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let src = dir.join("mallocbench.c");
    let bin = dir.join("mallocbench");
    std::fs::write(&src, include_str!("../../kmem-malloc/bench/mallocbench.c")).expect("write mallocbench.c");
    let built = std::process::Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|st| st.success());
    let mut rows = Vec::new();
    let mut round_ratios = Vec::new();
    if built && libs[0].is_some() {
        for (w, full_n) in MALLOC_WORKLOADS {
            let n = (full_n / div).max(1);
            let mut times = vec![Vec::new(); libs.len()];
            let mut rss = vec![Vec::new(); libs.len()];
            // Round r runs every allocator once, back to back, starting with
            // the r-th (see `measure_interleaved`); kmem's ratio to another is
            // the median of the rounds' ratios, as `scripts/bench-malloc.sh`
            // reports it: a slow period of the host falls on one round.
            for r in 0..runs {
                for k in 0..libs.len() {
                    let i = (r + k) % libs.len();
                    if let Some(preload) = &libs[i] {
                        let (ms, mb) = mallocbench_run(&bin, w, n, preload.as_deref());
                        times[i].push(ms);
                        rss[i].push(mb);
                    }
                }
            }
            let ratios = times[1..]
                .iter()
                .map(|other| {
                    (!other.is_empty())
                        .then(|| median(times[0].iter().zip(other).map(|(k, o)| k / o).collect()))
                })
                .collect();
            let medians = |v: Vec<Vec<f64>>| -> Vec<Option<f64>> {
                v.into_iter()
                    .map(|x| (!x.is_empty()).then(|| median(x)))
                    .collect()
            };
            round_ratios.push((rows.len(), ratios));
            rows.push((format!("{w} {n}, ms"), medians(times)));
            rows.push((format!("{w} {n}, peak RSS MB"), medians(rss)));
        }
    } else {
        let why = if built {
            "no libkmalloc.so beside this program: cargo build --release first"
        } else {
            "no C compiler (cc) to build mallocbench"
        };
        rows.push((format!("({why})"), vec![None; columns.len()]));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Table {
        title,
        columns,
        kmem_columns: 1,
        rows,
        round_ratios,
    }
}
