//! `kmem`: boot a kmem machine in this process and exercise it.
//!
//! * `kmem sim` (the default): boot the machine described by `KMEM_CMDLINE`
//!   (or `--cmdline`), drive a page-allocator workload on every CPU for a set
//!   time — mixed orders and GFP classes, frees on other CPUs, a shrinker that
//!   gives memory back under pressure — then print the boot log, the report,
//!   the /proc files, and check that every page came back.
//! * `kmem proc NAME`: a /proc file of the default machine after a short workload.

use kmem::slab::{SlabFlags, SLAB_HWCACHE_ALIGN, SLAB_RECLAIM_ACCOUNT};
use kmem::vmscan::{ShrinkControl, Shrinker};
use kmem::*;
use kmem_hosted::Machine;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USAGE: &str = "\
kmem — the Linux kernel's memory allocators, running in this process

USAGE:
    kmem [sim] [--duration SECS] [--threads N] [--cmdline \"BOOT PARAMS\"]
    kmem proc NAME            print /proc/NAME of the default machine after a workload
    kmem --help

COMMANDS:
    sim     boot the machine (KMEM_CMDLINE or --cmdline), run a page-allocator
            workload on every CPU, print the boot log, a report, the /proc files
            and check that every page came back (the default command)
    proc    NAME is one of: slabinfo buddyinfo pagetypeinfo zoneinfo meminfo vmstat
            percpu_stats vmallocinfo memblock/memory memblock/reserved

OPTIONS (sim):
    --duration SECS   how long the workload runs (default 2)
    --threads N       worker threads (default: one per machine CPU)
    --cmdline STR     boot parameters (default: $KMEM_CMDLINE), e.g. \"mem=1G nr_cpus=4\"
";

struct SimOpts {
    duration: Duration,
    threads: Option<usize>,
    cmdline: String,
}

fn parse_sim(args: &[String]) -> Result<SimOpts, String> {
    let mut o = SimOpts {
        duration: Duration::from_secs(2),
        threads: None,
        cmdline: kmem_hosted::machine::env_cmdline().to_string(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let val = |i: usize| {
            args.get(i + 1)
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--duration" => {
                let v = val(i)?;
                let secs: f64 = v.parse().map_err(|_| format!("--duration: not a number: {v}"))?;
                if !(secs > 0.0 && secs < 86400.0) {
                    return Err(format!("--duration: out of range: {v}"));
                }
                o.duration = Duration::from_secs_f64(secs);
                i += 2;
            }
            "--threads" => {
                let v = val(i)?;
                let n: usize = v.parse().map_err(|_| format!("--threads: not a number: {v}"))?;
                if n == 0 || n > 4096 {
                    return Err(format!("--threads: out of range: {v}"));
                }
                o.threads = Some(n);
                i += 2;
            }
            "--cmdline" => {
                o.cmdline = val(i)?;
                i += 2;
            }
            _ => return Err(format!("unknown argument: {a}")),
        }
    }
    Ok(o)
}

/// A cache of pages the workload keeps around; its shrinker gives them back.
struct PagePool {
    pages: Mutex<Vec<usize>>,
    machine: &'static Machine,
}

fn pool_count(s: &Shrinker, _sc: &ShrinkControl) -> usize {
    // SAFETY: private_data points at the PagePool, which outlives the shrinker registration.
    let pool = unsafe { &*(s.private_data as *const PagePool) };
    pool.pages.lock().unwrap().len()
}

fn pool_scan(s: &Shrinker, sc: &mut ShrinkControl) -> usize {
    // SAFETY: as in pool_count.
    let pool = unsafe { &*(s.private_data as *const PagePool) };
    let mut v = pool.pages.lock().unwrap();
    let n = sc.nr_to_scan.min(v.len());
    let m = pool.machine;
    POOL_FREES.fetch_add(n, Ordering::Relaxed);
    for _ in 0..n {
        let addr = v.pop().unwrap();
        // SAFETY: the pool owns these order-0 pages.
        unsafe { m.free_pages(addr, 0) };
    }
    n
}

/// Pages (linear address, order) allocated on one thread for the next one to free.
type HandoffQueue = Mutex<Vec<(usize, u32)>>;

/// Pages the pool's shrinker and the final clean-up freed.
static POOL_FREES: AtomicUsize = AtomicUsize::new(0);

/// A dentry-like object: constructed once per slab, kept constructed.
const DENTRY_SIZE: usize = 192;
const DENTRY_MAGIC: u64 = 0xd3e7_7e11_0000_0001;

fn dentry_ctor(p: *mut u8) {
    // SAFETY: the slab layer passes an object of DENTRY_SIZE bytes.
    unsafe { (p as *mut u64).write(DENTRY_MAGIC) };
}

#[derive(Default)]
struct Counters {
    kmalloc: AtomicUsize,
    kmalloc_atomic_irq: AtomicUsize,
    kmalloc_fail: AtomicUsize,
    dentry: AtomicUsize,
    dentry_bad: AtomicUsize,
    bio: AtomicUsize,
    /// Object operations attempted, counted per thread and added at the end:
    /// the per-CPU counters must sum to it exactly.
    object_attempts: AtomicUsize,
    allocs: AtomicUsize,
    frees: AtomicUsize,
    fails_kernel: AtomicUsize,
    fails_atomic: AtomicUsize,
    fails_nowait: AtomicUsize,
    remote_frees: AtomicUsize,
}

fn sim(opts: SimOpts) -> Result<bool, String> {
    let machine = Machine::boot(&opts.cmdline).map_err(|e| e.to_string())?;
    let m: &'static Machine = Box::leak(Box::new(machine));
    let nthreads = opts.threads.unwrap_or(m.nr_cpu_ids());
    println!(
        "kmem sim: {} CPUs, {} threads, {:.1} s, boot parameters: {:?}",
        m.nr_cpu_ids(),
        nthreads,
        opts.duration.as_secs_f64(),
        opts.cmdline
    );

    let pool: &'static PagePool = Box::leak(Box::new(PagePool {
        pages: Mutex::new(Vec::new()),
        machine: m,
    }));
    let shrinker: &'static Shrinker = Box::leak(Box::new(
        Shrinker::new("sim-page-pool", pool_count, pool_scan).with_private(pool as *const _ as *mut ()),
    ));
    m.register_shrinker_static(shrinker);

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    // A filesystem's dentry cache (constructor, reclaimable), block I/O
    // requests from a mempool, per-CPU operation counters.
    let dentries = m
        .kmem_cache_create(
            "sim-dentry",
            DENTRY_SIZE,
            0,
            SLAB_RECLAIM_ACCOUNT | SLAB_HWCACHE_ALIGN,
            Some(dentry_ctor),
        )
        .ok_or("cannot create the dentry cache")?;
    let bio_cache = m
        .kmem_cache_create("sim-bio", 128, 0, SlabFlags(0), None)
        .ok_or("cannot create the bio cache")?;
    let bio_pool = m
        .mempool_create_slab_pool(16, bio_cache)
        .ok_or("cannot create the bio mempool")?;
    let ops = m
        .alloc_percpu::<u64>()
        .map_err(|_| "cannot allocate per-CPU counters")?;
    let ops: &'static kmem::percpu::PerCpu<'static, u64, kmem_hosted::HostedPlatform> =
        Box::leak(Box::new(ops));
    let (dentries_addr, bio_pool_addr) = (dentries.as_ptr() as usize, bio_pool.as_ptr() as usize);
    // Objects allocated on one thread (in simulated interrupt context) and freed by the next.
    let obj_handoff: Arc<Vec<Mutex<Vec<usize>>>> =
        Arc::new((0..nthreads).map(|_| Mutex::new(Vec::new())).collect());
    // A hand-off queue: pages allocated on one thread, freed by the next.
    let handoff: Arc<Vec<HandoffQueue>> = Arc::new((0..nthreads).map(|_| Mutex::new(Vec::new())).collect());
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..nthreads {
        let c = counters.clone();
        let stop = stop.clone();
        let handoff = handoff.clone();
        let obj_handoff = obj_handoff.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64) << 32;
            let mut live: Vec<(usize, u32)> = Vec::new();
            let mut kobjs: Vec<usize> = Vec::new();
            let mut dents: Vec<usize> = Vec::new();
            let mut attempts = 0usize;
            let dcache = std::ptr::NonNull::new(dentries_addr as *mut kmem::slab::KmemCache).unwrap();
            // SAFETY: the pool outlives the workers (destroyed after they are joined).
            let bio = unsafe { &*(bio_pool_addr as *const kmem::mempool::Mempool) };
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..256 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let r = rng % 100;
                    let order = match rng >> 60 {
                        0..=9 => 0,
                        10..=12 => 1,
                        13 => 2,
                        14 => 3,
                        _ => 4 + (rng as u32 % 3),
                    };
                    let (gfp, class) = match r {
                        0..=69 => (GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN, 0),
                        70..=89 => (GFP_ATOMIC | __GFP_NOWARN, 1),
                        _ => (GFP_NOWAIT, 2),
                    };
                    if live.len() < 512 || r.is_multiple_of(2) {
                        match m.__get_free_pages(gfp, order) {
                            Ok(p) => {
                                c.allocs.fetch_add(1, Ordering::Relaxed);
                                if r.is_multiple_of(10) {
                                    handoff[(t + 1) % handoff.len()]
                                        .lock()
                                        .unwrap()
                                        .push((p.as_ptr() as usize, order));
                                } else if order == 0 && r.is_multiple_of(7) {
                                    pool.pages.lock().unwrap().push(p.as_ptr() as usize);
                                } else {
                                    live.push((p.as_ptr() as usize, order));
                                }
                            }
                            Err(_) => {
                                match class {
                                    0 => &c.fails_kernel,
                                    1 => &c.fails_atomic,
                                    _ => &c.fails_nowait,
                                }
                                .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else if let Some(idx) = (!live.is_empty()).then(|| (rng as usize >> 8) % live.len()) {
                        let (a, o) = live.swap_remove(idx);
                        // SAFETY: we allocated it with this order.
                        unsafe { m.free_pages(a, o) };
                        c.frees.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Objects: kmalloc (some from simulated softirq, freed on the
                // next CPU like network buffers), dentries, block I/O requests.
                for _ in 0..64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let size = 8 + (rng >> 40) as usize % 2040;
                    match rng % 10 {
                        0..=3 => match m.kmalloc(size, GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN) {
                            Ok(p) => {
                                kobjs.push(p.as_ptr() as usize);
                                c.kmalloc.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => drop(c.kmalloc_fail.fetch_add(1, Ordering::Relaxed)),
                        },
                        4..=5 => match m.run_in_softirq(|| m.kmalloc(size, GFP_ATOMIC | __GFP_NOWARN)) {
                            Ok(p) => {
                                obj_handoff[(t + 1) % obj_handoff.len()]
                                    .lock()
                                    .unwrap()
                                    .push(p.as_ptr() as usize);
                                c.kmalloc_atomic_irq.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => drop(c.kmalloc_fail.fetch_add(1, Ordering::Relaxed)),
                        },
                        6..=7 => {
                            if let Ok(d) = m.kmem_cache_alloc(dcache, GFP_NOFS | __GFP_NORETRY | __GFP_NOWARN)
                            {
                                // SAFETY: a constructed dentry object we own.
                                if unsafe { (d.as_ptr() as *const u64).read() } != DENTRY_MAGIC {
                                    c.dentry_bad.fetch_add(1, Ordering::Relaxed);
                                }
                                dents.push(d.as_ptr() as usize);
                                c.dentry.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            let rq = m.mempool_alloc(bio, GFP_NOIO);
                            if !rq.is_null() {
                                // SAFETY: a 128-byte request from the pool, ours until freed.
                                unsafe {
                                    rq.write_bytes(0x5a, 128);
                                    m.mempool_free(rq, bio);
                                }
                                c.bio.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    ops.this_cpu_inc();
                    attempts += 1;
                }
                while kobjs.len() > 256 {
                    let p = kobjs.swap_remove((rng as usize >> 4) % kobjs.len());
                    // SAFETY: kmalloc'd above.
                    unsafe { m.kfree(p as *const u8) };
                }
                while dents.len() > 256 {
                    let d = dents.swap_remove((rng as usize >> 4) % dents.len());
                    // SAFETY: allocated from this cache above; kept constructed.
                    unsafe { m.kmem_cache_free(dcache, d as *mut u8) };
                }
                for p in std::mem::take(&mut *obj_handoff[t].lock().unwrap()) {
                    // SAFETY: kmalloc'd by the previous thread and handed over.
                    unsafe { m.kfree(p as *const u8) };
                }
                let theirs: Vec<_> = std::mem::take(&mut *handoff[t].lock().unwrap());
                for (a, o) in theirs {
                    // SAFETY: another thread allocated it with this order and handed it over.
                    unsafe { m.free_pages(a, o) };
                    c.frees.fetch_add(1, Ordering::Relaxed);
                    c.remote_frees.fetch_add(1, Ordering::Relaxed);
                }
            }
            for (a, o) in live {
                // SAFETY: ours.
                unsafe { m.free_pages(a, o) };
                c.frees.fetch_add(1, Ordering::Relaxed);
            }
            c.object_attempts.fetch_add(attempts, Ordering::Relaxed);
            for p in kobjs {
                // SAFETY: ours.
                unsafe { m.kfree(p as *const u8) };
            }
            for d in dents {
                // SAFETY: ours.
                unsafe { m.kmem_cache_free(dcache, d as *mut u8) };
            }
        }));
    }
    // Progress bar.
    let total = opts.duration;
    while start.elapsed() < total {
        let frac = start.elapsed().as_secs_f64() / total.as_secs_f64();
        let w = 40;
        let done = ((frac * w as f64) as usize).min(w);
        eprint!(
            "\r[{}{}] {:3.0}%  allocations: {}",
            "#".repeat(done),
            ".".repeat(w - done),
            frac * 100.0,
            counters.allocs.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| "a worker thread panicked".to_string())?;
    }
    eprintln!("\r[{}] 100%", "#".repeat(40));
    for q in handoff.iter() {
        for (a, o) in std::mem::take(&mut *q.lock().unwrap()) {
            // SAFETY: allocated with this order, never freed.
            unsafe { m.free_pages(a, o) };
            counters.frees.fetch_add(1, Ordering::Relaxed);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    for a in std::mem::take(&mut *pool.pages.lock().unwrap()) {
        // SAFETY: the pool's pages are order 0.
        unsafe { m.free_pages(a, 0) };
        POOL_FREES.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: registered above.
    unsafe { m.unregister_shrinker(shrinker) };
    for q in obj_handoff.iter() {
        for p in std::mem::take(&mut *q.lock().unwrap()) {
            // SAFETY: kmalloc'd in a worker, never freed.
            unsafe { m.kfree(p as *const u8) };
        }
    }
    let object_ops: u64 = ops.sum();

    println!("\n==== boot log (dmesg) ====");
    print!("{}", m.dmesg());
    println!("\n==== report ====");
    let allocs = counters.allocs.load(Ordering::Relaxed);
    println!(
        "page allocations     {:>12}  ({:.0}/s)",
        allocs,
        allocs as f64 / elapsed
    );
    let frees = counters.frees.load(Ordering::Relaxed) + POOL_FREES.load(Ordering::Relaxed);
    println!(
        "page frees           {:>12}  ({} on another thread, {} from the page pool, by its shrinker or at the end)",
        frees,
        counters.remote_frees.load(Ordering::Relaxed),
        POOL_FREES.load(Ordering::Relaxed)
    );
    println!(
        "failures GFP_KERNEL|__GFP_NORETRY {:>6}",
        counters.fails_kernel.load(Ordering::Relaxed)
    );
    println!(
        "failures GFP_ATOMIC  {:>12}",
        counters.fails_atomic.load(Ordering::Relaxed)
    );
    println!(
        "failures GFP_NOWAIT  {:>12}",
        counters.fails_nowait.load(Ordering::Relaxed)
    );
    println!(
        "direct reclaim       {:>12}",
        m.events.allocstall.load(Ordering::Relaxed)
    );
    println!(
        "shrinker objects freed {:>10}",
        m.events.shrinker_freed.load(Ordering::Relaxed)
    );
    println!(
        "pages given back to the host {:>4}",
        m.events.pages_reported.load(Ordering::Relaxed)
    );
    let (km, kmi, kmf) = (
        counters.kmalloc.load(Ordering::Relaxed),
        counters.kmalloc_atomic_irq.load(Ordering::Relaxed),
        counters.kmalloc_fail.load(Ordering::Relaxed),
    );
    let (den, bio) = (
        counters.dentry.load(Ordering::Relaxed),
        counters.bio.load(Ordering::Relaxed),
    );
    println!("kmalloc GFP_KERNEL   {:>12}  ({:.0}/s)", km, km as f64 / elapsed);
    println!("kmalloc GFP_ATOMIC in softirq, freed on another CPU {:>8}", kmi);
    println!("kmalloc failures     {:>12}", kmf);
    println!(
        "dentry cache allocs  {:>12}  ({} not in the constructed state)",
        den,
        counters.dentry_bad.load(Ordering::Relaxed)
    );
    // SAFETY: destroyed below, after the statistics are read.
    let pool_stats = unsafe { bio_pool.as_ref() }.stats();
    println!(
        "bio mempool (GFP_NOIO) {:>10}  (from the slab {}, from the reserve {}, waits {})",
        bio, pool_stats.alloc_backing, pool_stats.alloc_reserve, pool_stats.waits
    );
    let attempts = counters.object_attempts.load(Ordering::Relaxed);
    println!("per-CPU operation counters sum to {object_ops} (object operations attempted: {attempts})");
    for name in [
        "slabinfo",
        "buddyinfo",
        "pagetypeinfo",
        "zoneinfo",
        "meminfo",
        "vmstat",
    ] {
        if let Some(text) = m.proc_read(name) {
            println!("\n==== /proc/{name} ====");
            print!("{text}");
        }
    }
    // Tear down the object layer: every page must come back.
    // SAFETY: no objects of these caches or the pool are left.
    unsafe {
        m.mempool_destroy(bio_pool.as_ptr());
        m.kmem_cache_destroy(bio_cache);
        m.kmem_cache_destroy(dentries);
    }
    let mut caches = Vec::new();
    m.for_each_cache(|c| caches.push(std::ptr::NonNull::from(c)));
    for c in caches {
        m.kmem_cache_shrink(c);
    }
    m.drain_all_pages();
    let mut diff = String::new();
    let consistent = object_ops as usize == attempts;
    let ok = m.buddy_matches_boot_state(&mut diff)
        && allocs == frees
        && counters.dentry_bad.load(Ordering::Relaxed) == 0
        && consistent;
    println!("\n==== check ====");
    if ok {
        println!(
            "every page came back: the buddy lists equal the boot state ({} free pages)",
            m.nr_free_pages()
        );
    } else {
        println!("PAGES MISSING: {allocs} allocations, {frees} frees\n{diff}");
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.first().map(String::as_str) {
        None => ("sim", &args[..]),
        Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(c) if c.starts_with("--") => ("sim", &args[..]),
        Some(c) => (c, &args[1..]),
    };
    match cmd {
        "sim" => match parse_sim(rest) {
            Ok(o) => match sim(o) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("kmem sim: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("kmem sim: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        "proc" => {
            let Some(name) = rest.first() else {
                eprintln!("kmem proc: which file? (slabinfo, buddyinfo, pagetypeinfo, zoneinfo, meminfo, vmstat, percpu_stats, vmallocinfo, memblock/memory, memblock/reserved)");
                return ExitCode::from(2);
            };
            let m = kmem_hosted::default_machine();
            // A short workload so the numbers are not all boot-time values.
            let mut v = Vec::new();
            for o in 0..4 {
                for _ in 0..64 {
                    if let Ok(p) = m.alloc_pages(GFP_KERNEL, o) {
                        v.push((p, o));
                    }
                }
            }
            for (p, o) in v.into_iter().step_by(2) {
                // SAFETY: allocated above with this order.
                unsafe { m.__free_pages(p, o) };
            }
            match m.proc_read(name) {
                Some(t) => {
                    print!("{t}");
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("kmem proc: no such file: {name}");
                    ExitCode::from(2)
                }
            }
        }
        other => {
            eprintln!("kmem: unknown command: {other}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
