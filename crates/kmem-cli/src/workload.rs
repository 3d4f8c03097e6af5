//! The kernel-like workload that `kmem sim` and `kmem top` drive.
//!
//! One worker thread per CPU (or `--threads`) runs a random mix of what a
//! kernel does all day, in batches of 64 operations:
//!
//! * **pages**: `__get_free_pages` of orders 0..6 with `GFP_KERNEL`,
//!   `GFP_ATOMIC` or `GFP_NOWAIT`; some pages are freed by the next worker
//!   (a remote free), some parked in a page pool that a shrinker empties;
//! * **network path**: packet buffers `kmalloc`'d `GFP_ATOMIC` in simulated
//!   softirq context (and small descriptors in simulated hardirq context),
//!   queued to the next worker's backlog and freed there, on another CPU;
//! * **filesystem**: lookups in a dentry cache and an inode cache, both
//!   with constructors, allocated `GFP_NOFS`. Unused dentries stay cached
//!   on an LRU (with their inodes), as the dcache keeps them; two shrinkers
//!   (`SHRINKER_NEEDS_FS`) give them back under memory pressure: the dcache
//!   shrinker frees the oldest unused dentries and moves their inodes to the
//!   inode LRU, the icache shrinker frees unused inodes. Every object taken
//!   from a cache is checked to be in its constructed state;
//! * **block I/O**: request objects from a mempool (`GFP_NOIO`), submitted to
//!   a simulated device thread that completes them in simulated hardirq
//!   context (`mempool_free`), while a **memory hog** thread repeatedly grabs
//!   every page it can get (`GFP_KERNEL`: direct reclaim, shrinkers) down to
//!   the watermarks, holds them for a while and lets them go: the mempool's
//!   reserve keeps the I/O path going when the slab has nothing left;
//! * **module loads**: `__vmalloc` of module-sized areas (16 to 256 KiB),
//!   written at both ends, unloaded (`vfree`) later;
//! * **per-CPU statistics**: one per-CPU counter bumped (`this_cpu_inc`) for
//!   every operation, whose sum must equal the operations counted per thread,
//!   and small per-CPU objects allocated and freed (`__alloc_percpu_gfp`).
//!
//! `GFP_KERNEL` and `GFP_NOFS` requests carry `__GFP_NORETRY`, and all carry
//! `__GFP_NOWARN`: failures are expected under the hog and counted by GFP
//! class instead of logged. Counters are kept per thread and published after
//! every batch, so the live views (`kmem top`, the progress bar) cost nothing.
//!
//! Locking: each LRU, queue and pool is a `Mutex`; no thread ever allocates
//! from the machine while holding one (reclaim may call a shrinker that takes
//! it), and the shrinkers only `try_lock` (as the kernel's LRU walkers skip
//! busy entries) so reclaim never waits for a worker.

use kmem::mempool::Mempool;
use kmem::percpu::{PerCpu, PercpuPtr};
use kmem::slab::{KmemCache, SLAB_HWCACHE_ALIGN, SLAB_RECLAIM_ACCOUNT};
use kmem::vmscan::{CountFn, ScanFn, ShrinkControl, Shrinker, SHRINKER_NEEDS_FS, SHRINK_STOP};
use kmem::*;
use kmem_hosted::{HostedPlatform, Machine};
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The APIs whose calls the report counts.
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum Api {
    AllocPages,
    FreePages,
    Kmalloc,
    Kfree,
    CacheAlloc,
    CacheFree,
    MempoolAlloc,
    MempoolFree,
    Vmalloc,
    Vfree,
    AllocPercpu,
    FreePercpu,
    ThisCpuInc,
}

/// Names of [`Api`], in order.
pub const API_NAMES: [&str; 13] = [
    "__get_free_pages",
    "free_pages",
    "kmalloc",
    "kfree",
    "kmem_cache_alloc",
    "kmem_cache_free",
    "mempool_alloc",
    "mempool_free",
    "__vmalloc",
    "vfree",
    "__alloc_percpu_gfp",
    "free_percpu",
    "this_cpu_inc",
];

/// GFP classes whose failures the report counts.
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum Class {
    Kernel,
    Atomic,
    Nowait,
    Nofs,
    Noio,
}

/// Names of [`Class`], in order.
pub const CLASS_NAMES: [&str; 5] = ["GFP_KERNEL", "GFP_ATOMIC", "GFP_NOWAIT", "GFP_NOFS", "GFP_NOIO"];

const GFP_KERNEL_TRY: Gfp = GFP_KERNEL.with(__GFP_NORETRY).with(__GFP_NOWARN);
const GFP_NOFS_TRY: Gfp = GFP_NOFS.with(__GFP_NORETRY).with(__GFP_NOWARN);
const GFP_ATOMIC_TRY: Gfp = GFP_ATOMIC.with(__GFP_NOWARN);
const GFP_NOWAIT_TRY: Gfp = GFP_NOWAIT.with(__GFP_NOWARN);

/// Calls and failures by API and by GFP class, published by the threads.
#[derive(Default)]
pub struct Stats {
    pub calls: [AtomicU64; API_NAMES.len()],
    pub fails: [AtomicU64; API_NAMES.len()],
    pub class_calls: [AtomicU64; CLASS_NAMES.len()],
    pub class_fails: [AtomicU64; CLASS_NAMES.len()],
}

impl Stats {
    /// Every call counted so far.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A thread's counts since it last published them.
#[derive(Default)]
struct Local {
    calls: [u64; API_NAMES.len()],
    fails: [u64; API_NAMES.len()],
    class_calls: [u64; CLASS_NAMES.len()],
    class_fails: [u64; CLASS_NAMES.len()],
}

impl Local {
    fn call(&mut self, api: Api, ok: bool) {
        self.calls[api as usize] += 1;
        self.fails[api as usize] += !ok as u64;
    }

    /// An allocation of GFP class `class` through `api`.
    fn alloc(&mut self, api: Api, class: Class, ok: bool) {
        self.call(api, ok);
        self.class_calls[class as usize] += 1;
        self.class_fails[class as usize] += !ok as u64;
    }

    fn publish(&mut self, s: &Stats) {
        let add = |to: &[AtomicU64], from: &mut [u64]| {
            for (t, f) in to.iter().zip(from.iter_mut()) {
                if *f != 0 {
                    t.fetch_add(std::mem::take(f), Ordering::Relaxed);
                }
            }
        };
        add(&s.calls, &mut self.calls);
        add(&s.fails, &mut self.fails);
        add(&s.class_calls, &mut self.class_calls);
        add(&s.class_fails, &mut self.class_fails);
    }
}

/// Other events of the run.
#[derive(Default)]
pub struct Events {
    /// Packet buffers allocated in softirq / hardirq context.
    pub packets_softirq: AtomicU64,
    pub packets_hardirq: AtomicU64,
    /// Pages and packets freed by another worker than the one that allocated them.
    pub remote_page_frees: AtomicU64,
    pub remote_packet_frees: AtomicU64,
    /// Dentry lookups served from the dcache LRU, and misses.
    pub dcache_hits: AtomicU64,
    pub dcache_misses: AtomicU64,
    /// Objects checked for their constructed state, and the ones that were not.
    pub ctor_checked: AtomicU64,
    pub ctor_bad: AtomicU64,
    /// I/O requests completed by the device in hardirq context.
    pub io_completed: AtomicU64,
    /// Memory hog: grab cycles, most pages held at once, pages held now.
    pub hog_cycles: AtomicU64,
    pub hog_max_pages: AtomicUsize,
    pub hog_pages: AtomicUsize,
    /// Operations counted per thread (the per-CPU counter must sum to it).
    pub attempts: AtomicU64,
}

const DENTRY_SIZE: usize = 192;
const DENTRY_MAGIC: u64 = 0xd3e7_7e11_0000_0001;
const INODE_SIZE: usize = 600;
const INODE_MAGIC: u64 = 0x1a0d_e000_0000_0002;
const BIO_SIZE: usize = 128;
/// Requests the block mempool guarantees.
const BIO_MIN_NR: usize = 64;

fn dentry_ctor(p: *mut u8) {
    // SAFETY: the slab layer passes an object of DENTRY_SIZE bytes, 8-aligned.
    unsafe {
        (p as *mut u64).write(DENTRY_MAGIC);
        p.add(8).write_bytes(0, DENTRY_SIZE - 8);
    }
}

fn inode_ctor(p: *mut u8) {
    // inode_init_once: the parts that stay valid across uses.
    // SAFETY: an object of INODE_SIZE bytes, 8-aligned.
    unsafe {
        (p as *mut u64).write(INODE_MAGIC);
        p.add(8).write_bytes(0, INODE_SIZE - 8);
    }
}

/// Everything the threads share; leaked, so shrinkers can point at it.
pub struct Shared {
    pub m: &'static Machine,
    pub nthreads: usize,
    stop: AtomicBool,
    workers_running: AtomicUsize,
    pub stats: Stats,
    pub events: Events,
    dentry_cache: NonNull<KmemCache>,
    inode_cache: NonNull<KmemCache>,
    /// Unused dentries, oldest first, with their inodes.
    dcache_lru: Mutex<VecDeque<(usize, usize)>>,
    /// Unused inodes, oldest first.
    icache_lru: Mutex<VecDeque<usize>>,
    /// Order-0 pages parked by the workers; the page-pool shrinker frees them.
    page_pool: Mutex<Vec<usize>>,
    /// Pages for worker i to free.
    page_handoff: Vec<Mutex<Vec<(usize, u32)>>>,
    /// Packets for worker i to free.
    backlog: Vec<Mutex<Vec<usize>>>,
    bio_cache: NonNull<KmemCache>,
    bio_pool: NonNull<Mempool>,
    /// Submitted requests, completed by the device thread.
    io_queue: Mutex<Vec<usize>>,
    ops: &'static PerCpu<'static, u64, HostedPlatform>,
}

// SAFETY: the caches and the pool are machine objects whose operations are
// thread-safe; everything else is atomics and mutexes.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

fn shared_of(s: &Shrinker) -> &'static Shared {
    // SAFETY: private_data is the leaked Shared, registered before and
    // unregistered after every use.
    unsafe { &*(s.private_data as *const Shared) }
}

fn dcache_count(s: &Shrinker, _sc: &ShrinkControl) -> usize {
    shared_of(s).dcache_lru.try_lock().map_or(0, |l| l.len())
}

/// `prune_dcache_sb`: free the oldest unused dentries; their inodes become unused.
fn dcache_scan(s: &Shrinker, sc: &mut ShrinkControl) -> usize {
    let sh = shared_of(s);
    let Ok(mut lru) = sh.dcache_lru.try_lock() else {
        return SHRINK_STOP;
    };
    let n = sc.nr_to_scan.min(lru.len());
    let victims: Vec<_> = lru.drain(..n).collect();
    drop(lru);
    for &(d, _) in &victims {
        // SAFETY: an unused dentry the LRU owned, constructed state intact.
        unsafe { sh.m.kmem_cache_free(sh.dentry_cache, d as *mut u8) };
    }
    let mut freed = n;
    if let Ok(mut il) = sh.icache_lru.try_lock() {
        il.extend(victims.iter().map(|&(_, i)| i));
    } else {
        for &(_, i) in &victims {
            // SAFETY: the inode of a freed dentry, no longer referenced.
            unsafe { sh.m.kmem_cache_free(sh.inode_cache, i as *mut u8) };
        }
        freed += n;
    }
    sh.stats.calls[Api::CacheFree as usize].fetch_add(freed as u64, Ordering::Relaxed);
    n
}

fn icache_count(s: &Shrinker, _sc: &ShrinkControl) -> usize {
    shared_of(s).icache_lru.try_lock().map_or(0, |l| l.len())
}

/// `prune_icache_sb`: free the oldest unused inodes.
fn icache_scan(s: &Shrinker, sc: &mut ShrinkControl) -> usize {
    let sh = shared_of(s);
    let Ok(mut lru) = sh.icache_lru.try_lock() else {
        return SHRINK_STOP;
    };
    let n = sc.nr_to_scan.min(lru.len());
    let victims: Vec<_> = lru.drain(..n).collect();
    drop(lru);
    for i in victims {
        // SAFETY: an unused inode the LRU owned.
        unsafe { sh.m.kmem_cache_free(sh.inode_cache, i as *mut u8) };
    }
    sh.stats.calls[Api::CacheFree as usize].fetch_add(n as u64, Ordering::Relaxed);
    n
}

fn pool_count(s: &Shrinker, _sc: &ShrinkControl) -> usize {
    shared_of(s).page_pool.try_lock().map_or(0, |p| p.len())
}

fn pool_scan(s: &Shrinker, sc: &mut ShrinkControl) -> usize {
    let sh = shared_of(s);
    let Ok(mut pool) = sh.page_pool.try_lock() else {
        return SHRINK_STOP;
    };
    let n = sc.nr_to_scan.min(pool.len());
    let split = pool.len() - n;
    let victims = pool.split_off(split);
    drop(pool);
    for a in victims {
        // SAFETY: the pool owned these order-0 pages.
        unsafe { sh.m.free_pages(a, 0) };
    }
    sh.stats.calls[Api::FreePages as usize].fetch_add(n as u64, Ordering::Relaxed);
    n
}

/// A running workload.
pub struct Workload {
    pub sh: &'static Shared,
    pub start: Instant,
    workers: Vec<JoinHandle<()>>,
    helpers: Vec<JoinHandle<()>>,
    /// Free pages after boot, settled (see [`Workload::start`]).
    baseline_free: usize,
}

/// What the end of a run found.
pub struct Outcome {
    pub elapsed: Duration,
    /// /proc files right after the workers stopped.
    pub proc_files: Vec<(&'static str, String)>,
    pub mempool: kmem::mempool::MempoolStats,
    /// Sum of the per-CPU operation counters.
    pub percpu_sum: u64,
    /// Whether the buddy lists equal their boot state, and the differences.
    pub boot_state: bool,
    pub boot_diff: String,
    /// Free pages at the start and at the end (everything freed).
    pub baseline_free: usize,
    pub final_free: usize,
    /// The workload's shrinkers: name, objects freed, scan calls.
    pub shrinkers: Vec<(&'static str, usize, usize)>,
}

/// The /proc files the report shows.
pub const PROC_FILES: [&str; 9] = [
    "slabinfo",
    "buddyinfo",
    "pagetypeinfo",
    "zoneinfo",
    "meminfo",
    "vmstat",
    "vmallocinfo",
    "percpu_stats",
    "iomem",
];

/// Give back what the machine caches: lazily freed vmalloc ranges, empty
/// per-CPU chunks, empty slabs, the per-CPU page lists.
fn settle(m: &Machine) {
    m.vm_unmap_aliases();
    m.pcpu_balance();
    m.kmem_cache_shrink_all();
    m.drain_all_pages();
}

impl Workload {
    /// Create the caches, the pool and the shrinkers on `m` and start
    /// `nthreads` workers, the memory hog (unless `hog` is false) and the
    /// block device.
    pub fn start(m: &'static Machine, nthreads: usize, hog: bool) -> Result<Workload, String> {
        // Free pages at the start, everything settled (reported beside the
        // final count; the check is that the buddy lists equal boot's).
        settle(m);
        let baseline_free = m.nr_free_pages();

        let flags = SLAB_RECLAIM_ACCOUNT | SLAB_HWCACHE_ALIGN;
        let dentry_cache = m
            .kmem_cache_create("sim-dentry", DENTRY_SIZE, 0, flags, Some(dentry_ctor))
            .ok_or("cannot create the dentry cache")?;
        let inode_cache = m
            .kmem_cache_create("sim-inode", INODE_SIZE, 0, flags, Some(inode_ctor))
            .ok_or("cannot create the inode cache")?;
        let bio_cache = m
            .kmem_cache_create("sim-bio", BIO_SIZE, 0, kmem::slab::SlabFlags(0), None)
            .ok_or("cannot create the bio cache")?;
        // SAFETY: a live cache of this machine (created and not destroyed).
        let bio_pool = unsafe { m.mempool_create_slab_pool(BIO_MIN_NR, bio_cache) }
            .ok_or("cannot create the bio mempool")?;
        // SAFETY: the pool lives until `finish` destroys it.
        unsafe { (*bio_pool.as_ptr()).set_name("sim-bio") };
        let ops = m
            .alloc_percpu::<u64>()
            .map_err(|_| "cannot allocate the per-CPU counters")?;
        let ops: &'static PerCpu<'static, u64, HostedPlatform> = Box::leak(Box::new(ops));
        let sh: &'static Shared = Box::leak(Box::new(Shared {
            m,
            nthreads,
            stop: AtomicBool::new(false),
            workers_running: AtomicUsize::new(nthreads),
            stats: Stats::default(),
            events: Events::default(),
            dentry_cache,
            inode_cache,
            dcache_lru: Mutex::new(VecDeque::new()),
            icache_lru: Mutex::new(VecDeque::new()),
            page_pool: Mutex::new(Vec::new()),
            page_handoff: (0..nthreads).map(|_| Mutex::new(Vec::new())).collect(),
            backlog: (0..nthreads).map(|_| Mutex::new(Vec::new())).collect(),
            bio_cache,
            bio_pool,
            io_queue: Mutex::new(Vec::new()),
            ops,
        }));
        let shrinkers: [(&'static str, CountFn, ScanFn, u32); 3] = [
            ("sim-dcache", dcache_count, dcache_scan, SHRINKER_NEEDS_FS),
            ("sim-icache", icache_count, icache_scan, SHRINKER_NEEDS_FS),
            ("sim-page-pool", pool_count, pool_scan, 0),
        ];
        for (name, count, scan, flags) in shrinkers {
            // Leaked: a shrinker must stay put while registered, and `sh` is leaked too.
            let s: &'static Shrinker = Box::leak(Box::new(
                Shrinker::new(name, count, scan)
                    .with_flags(flags)
                    .with_private(sh as *const Shared as *mut ()),
            ));
            m.register_shrinker_static(s);
            REGISTERED.lock().unwrap().push(s);
        }
        let start = Instant::now();
        let workers = (0..nthreads)
            .map(|t| {
                std::thread::Builder::new()
                    .name(format!("kworker/{t}"))
                    .spawn(move || worker(sh, t))
                    .map_err(|e| format!("cannot start a worker thread: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut helpers = vec![std::thread::Builder::new()
            .name("blkdev".into())
            .spawn(move || device(sh))
            .map_err(|e| format!("cannot start the device thread: {e}"))?];
        if hog {
            helpers.push(
                std::thread::Builder::new()
                    .name("hog".into())
                    .spawn(move || memory_hog(sh))
                    .map_err(|e| format!("cannot start the memory hog: {e}"))?,
            );
        }
        Ok(Workload {
            sh,
            start,
            workers,
            helpers,
            baseline_free,
        })
    }

    /// Stop every thread, read the statistics, free everything and check
    /// that every page came back.
    pub fn finish(self) -> Result<Outcome, String> {
        let sh = self.sh;
        let m = sh.m;
        sh.stop.store(true, Ordering::Relaxed);
        let mut panicked = false;
        for h in self.workers {
            panicked |= h.join().is_err();
        }
        for h in self.helpers {
            panicked |= h.join().is_err();
        }
        if panicked {
            return Err("a workload thread panicked".into());
        }
        let elapsed = self.start.elapsed();
        let proc_files = PROC_FILES
            .iter()
            .filter_map(|&n| m.proc_read(n).map(|t| (n, t)))
            .collect();
        let mut local = Local::default();
        for q in &sh.backlog {
            for p in std::mem::take(&mut *q.lock().unwrap()) {
                // SAFETY: a packet kmalloc'd by a worker and never freed.
                unsafe { m.kfree(p as *const u8) };
                local.call(Api::Kfree, true);
            }
        }
        for q in &sh.page_handoff {
            for (a, o) in std::mem::take(&mut *q.lock().unwrap()) {
                // SAFETY: allocated with this order, never freed.
                unsafe { m.free_pages(a, o) };
                local.call(Api::FreePages, true);
            }
        }
        let mut shrinkers = Vec::new();
        for s in REGISTERED.lock().unwrap().drain(..) {
            shrinkers.push((
                s.name,
                s.freed.load(Ordering::Relaxed),
                s.scans.load(Ordering::Relaxed),
            ));
            // SAFETY: registered in `start`; nothing reclaims through it after this.
            unsafe { m.unregister_shrinker(s) };
        }
        for a in std::mem::take(&mut *sh.page_pool.lock().unwrap()) {
            // SAFETY: the pool's order-0 pages.
            unsafe { m.free_pages(a, 0) };
            local.call(Api::FreePages, true);
        }
        for (d, i) in std::mem::take(&mut *sh.dcache_lru.lock().unwrap()) {
            // SAFETY: unused cached objects the LRU owned.
            unsafe {
                m.kmem_cache_free(sh.dentry_cache, d as *mut u8);
                m.kmem_cache_free(sh.inode_cache, i as *mut u8);
            }
            local.call(Api::CacheFree, true);
            local.call(Api::CacheFree, true);
        }
        for i in std::mem::take(&mut *sh.icache_lru.lock().unwrap()) {
            // SAFETY: as above.
            unsafe { m.kmem_cache_free(sh.inode_cache, i as *mut u8) };
            local.call(Api::CacheFree, true);
        }
        local.publish(&sh.stats);
        // SAFETY: destroyed below; every request was completed by the device.
        let mempool = unsafe { sh.bio_pool.as_ref() }.stats();
        let percpu_sum = sh.ops.sum();
        // SAFETY: no object of these caches or of the pool is left; the
        // per-CPU counter is not used any more (its leaked handle never drops).
        unsafe {
            m.mempool_destroy(sh.bio_pool.as_ptr());
            m.kmem_cache_destroy(sh.bio_cache);
            m.kmem_cache_destroy(sh.dentry_cache);
            m.kmem_cache_destroy(sh.inode_cache);
            m.free_percpu(sh.ops.as_ptr());
        }
        settle(m);
        let mut boot_diff = String::new();
        let boot_state = m.buddy_matches_boot_state(&mut boot_diff);
        Ok(Outcome {
            elapsed,
            proc_files,
            mempool,
            percpu_sum,
            boot_state,
            boot_diff,
            baseline_free: self.baseline_free,
            final_free: m.nr_free_pages(),
            shrinkers,
        })
    }
}

/// The shrinkers registered by the running workload.
static REGISTERED: Mutex<Vec<&'static Shrinker>> = Mutex::new(Vec::new());

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What a worker holds.
#[derive(Default)]
struct Held {
    pages: Vec<(usize, u32)>,
    objs: Vec<usize>,
    percpu: VecDeque<usize>,
    modules: VecDeque<usize>,
}

fn worker(sh: &'static Shared, t: usize) {
    let m = sh.m;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) << 32));
    let mut l = Local::default();
    let mut held = Held::default();
    let mut attempts = 0u64;
    let next = (t + 1) % sh.nthreads;
    while !sh.stop.load(Ordering::Relaxed) {
        for _ in 0..64 {
            let r = rng.next();
            match r % 100 {
                0..=29 => pages(sh, &mut rng, &mut l, &mut held, next),
                30..=49 => packet(sh, &mut rng, &mut l, next),
                50..=54 => kmalloc_obj(sh, &mut rng, &mut l, &mut held),
                55..=79 => fs_lookup(sh, &mut rng, &mut l),
                80..=89 => block_io(sh, &mut l),
                90..=95 => percpu_obj(sh, &mut rng, &mut l, &mut held),
                _ => {
                    if rng.below(16) == 0 {
                        module_load(sh, &mut rng, &mut l, &mut held);
                    } else {
                        kmalloc_obj(sh, &mut rng, &mut l, &mut held);
                    }
                }
            }
            sh.ops.this_cpu_inc();
            l.call(Api::ThisCpuInc, true);
            attempts += 1;
        }
        // Softirq receive on this CPU: free what the previous worker queued.
        for p in std::mem::take(&mut *sh.backlog[t].lock().unwrap()) {
            // SAFETY: kmalloc'd by the previous worker and handed over.
            unsafe { m.kfree(p as *const u8) };
            l.call(Api::Kfree, true);
            sh.events.remote_packet_frees.fetch_add(1, Ordering::Relaxed);
        }
        let theirs = std::mem::take(&mut *sh.page_handoff[t].lock().unwrap());
        for &(a, o) in &theirs {
            // SAFETY: allocated by the previous worker with this order, handed over.
            unsafe { m.free_pages(a, o) };
            l.call(Api::FreePages, true);
        }
        sh.events
            .remote_page_frees
            .fetch_add(theirs.len() as u64, Ordering::Relaxed);
        l.publish(&sh.stats);
    }
    for (a, o) in held.pages {
        // SAFETY: ours, allocated with this order.
        unsafe { m.free_pages(a, o) };
        l.call(Api::FreePages, true);
    }
    for p in held.objs {
        // SAFETY: kmalloc'd by us.
        unsafe { m.kfree(p as *const u8) };
        l.call(Api::Kfree, true);
    }
    for p in held.percpu {
        // SAFETY: allocated by us.
        unsafe { m.free_percpu(PercpuPtr::<u8>::from_addr(p)) };
        l.call(Api::FreePercpu, true);
    }
    for p in held.modules {
        // SAFETY: a module's area, allocated by this thread and no longer held.
        unsafe { m.vfree(p as *const u8) };
        l.call(Api::Vfree, true);
    }
    l.publish(&sh.stats);
    sh.events.attempts.fetch_add(attempts, Ordering::Relaxed);
    sh.workers_running.fetch_sub(1, Ordering::Release);
}

fn pages(sh: &Shared, rng: &mut Rng, l: &mut Local, held: &mut Held, next: usize) {
    let m = sh.m;
    let r = rng.next();
    if held.pages.len() >= 512 && r.is_multiple_of(2) {
        let (a, o) = held.pages.swap_remove(rng.below(held.pages.len()));
        // SAFETY: ours, allocated with this order.
        unsafe { m.free_pages(a, o) };
        l.call(Api::FreePages, true);
        return;
    }
    let order = match r >> 60 {
        0..=9 => 0,
        10..=12 => 1,
        13 => 2,
        14 => 3,
        _ => 4 + (r as u32 % 3),
    };
    let (gfp, class) = match (r >> 8) % 10 {
        0..=6 => (GFP_KERNEL_TRY, Class::Kernel),
        7..=8 => (GFP_ATOMIC_TRY, Class::Atomic),
        _ => (GFP_NOWAIT_TRY, Class::Nowait),
    };
    let got = m.__get_free_pages(gfp, order);
    l.alloc(Api::AllocPages, class, got.is_ok());
    let Ok(p) = got else { return };
    let a = p.as_ptr() as usize;
    match (r >> 16) % 10 {
        0 => sh.page_handoff[next].lock().unwrap().push((a, order)),
        1 if order == 0 => sh.page_pool.lock().unwrap().push(a),
        _ => held.pages.push((a, order)),
    }
}

/// A received packet: a buffer allocated in softirq (or a small descriptor
/// in hardirq) context, delivered to the next CPU's backlog.
fn packet(sh: &Shared, rng: &mut Rng, l: &mut Local, next: usize) {
    let m = sh.m;
    let hard = rng.below(8) == 0;
    let got = if hard {
        sh.events.packets_hardirq.fetch_add(1, Ordering::Relaxed);
        m.run_in_hardirq(|| m.kmalloc(64, GFP_ATOMIC_TRY))
    } else {
        sh.events.packets_softirq.fetch_add(1, Ordering::Relaxed);
        let len = 256 + rng.below(1600);
        m.run_in_softirq(|| m.kmalloc(len, GFP_ATOMIC_TRY))
    };
    l.alloc(Api::Kmalloc, Class::Atomic, got.is_ok());
    if let Ok(p) = got {
        // SAFETY: at least 64 bytes we own.
        unsafe { p.as_ptr().write_bytes(0xab, 64) };
        sh.backlog[next].lock().unwrap().push(p.as_ptr() as usize);
    }
}

fn kmalloc_obj(sh: &Shared, rng: &mut Rng, l: &mut Local, held: &mut Held) {
    let m = sh.m;
    if held.objs.len() >= 256 {
        let p = held.objs.swap_remove(rng.below(held.objs.len()));
        // SAFETY: kmalloc'd by us.
        unsafe { m.kfree(p as *const u8) };
        l.call(Api::Kfree, true);
    }
    let size = 8 + rng.below(4088);
    let got = m.kmalloc(size, GFP_KERNEL_TRY);
    l.alloc(Api::Kmalloc, Class::Kernel, got.is_ok());
    if let Ok(p) = got {
        held.objs.push(p.as_ptr() as usize);
    }
}

fn check_ctor(sh: &Shared, obj: usize, magic: u64) {
    sh.events.ctor_checked.fetch_add(1, Ordering::Relaxed);
    // SAFETY: a live object of ours, at least 8 bytes, 8-aligned.
    if unsafe { (obj as *const u64).read() } != magic {
        sh.events.ctor_bad.fetch_add(1, Ordering::Relaxed);
    }
}

/// A path lookup: a dcache hit, or a new dentry (and an inode, from the
/// inode LRU or the inode cache), `GFP_NOFS` as inside a filesystem; or an
/// unlink, which frees a cached dentry and its inode.
fn fs_lookup(sh: &Shared, rng: &mut Rng, l: &mut Local) {
    let m = sh.m;
    let r = rng.below(16);
    if r < 9 {
        let mut lru = sh.dcache_lru.lock().unwrap();
        if let Some(e) = lru.pop_back() {
            lru.push_back(e);
            drop(lru);
            sh.events.dcache_hits.fetch_add(1, Ordering::Relaxed);
            return;
        }
    } else if r == 15 {
        let victim = sh.dcache_lru.lock().unwrap().pop_front();
        if let Some((d, i)) = victim {
            // SAFETY: the LRU owned them; constructed state intact.
            unsafe {
                m.kmem_cache_free(sh.dentry_cache, d as *mut u8);
                m.kmem_cache_free(sh.inode_cache, i as *mut u8);
            }
            l.call(Api::CacheFree, true);
            l.call(Api::CacheFree, true);
        }
        return;
    }
    sh.events.dcache_misses.fetch_add(1, Ordering::Relaxed);
    let cached_inode = sh.icache_lru.lock().unwrap().pop_back();
    let inode = match cached_inode {
        Some(i) => i,
        None => {
            // SAFETY: a live cache of this machine (created and not destroyed).
            let got = unsafe { m.kmem_cache_alloc(sh.inode_cache, GFP_NOFS_TRY) };
            l.alloc(Api::CacheAlloc, Class::Nofs, got.is_ok());
            match got {
                Ok(i) => i.as_ptr() as usize,
                Err(_) => return,
            }
        }
    };
    check_ctor(sh, inode, INODE_MAGIC);
    // SAFETY: a live cache of this machine (created and not destroyed).
    let got = unsafe { m.kmem_cache_alloc(sh.dentry_cache, GFP_NOFS_TRY) };
    l.alloc(Api::CacheAlloc, Class::Nofs, got.is_ok());
    match got {
        Ok(d) => {
            let d = d.as_ptr() as usize;
            check_ctor(sh, d, DENTRY_MAGIC);
            sh.dcache_lru.lock().unwrap().push_back((d, inode));
        }
        Err(_) => sh.icache_lru.lock().unwrap().push_back(inode),
    }
}

/// Submit a block I/O request: from the mempool under `GFP_NOIO` (which
/// sleeps on the reserve rather than fail), completed by the device.
fn block_io(sh: &Shared, l: &mut Local) {
    // SAFETY: the pool lives until `finish`, after every worker stopped.
    let pool = unsafe { sh.bio_pool.as_ref() };
    let rq = sh.m.mempool_alloc(pool, GFP_NOIO);
    l.alloc(Api::MempoolAlloc, Class::Noio, !rq.is_null());
    if !rq.is_null() {
        // SAFETY: a BIO_SIZE-byte request, ours until completed.
        unsafe { rq.write_bytes(0x5a, BIO_SIZE) };
        sh.io_queue.lock().unwrap().push(rq as usize);
    }
}

fn percpu_obj(sh: &Shared, rng: &mut Rng, l: &mut Local, held: &mut Held) {
    let m = sh.m;
    if held.percpu.len() >= 32 {
        let p = held.percpu.pop_front().unwrap();
        // SAFETY: allocated by us.
        unsafe { m.free_percpu(PercpuPtr::<u8>::from_addr(p)) };
        l.call(Api::FreePercpu, true);
        return;
    }
    let size = 8 << rng.below(5);
    let got = m.__alloc_percpu_gfp(size, 8, GFP_KERNEL_TRY);
    l.alloc(Api::AllocPercpu, Class::Kernel, got.is_ok());
    if let Ok(p) = got {
        held.percpu.push_back(p.addr());
    }
}

/// Load a module (a vmalloc'd area of 4..64 pages, written at both ends);
/// unload the oldest when four are loaded.
fn module_load(sh: &Shared, rng: &mut Rng, l: &mut Local, held: &mut Held) {
    let m = sh.m;
    if held.modules.len() >= 4 {
        let p = held.modules.pop_front().unwrap();
        // SAFETY: a module's area, allocated by this thread and no longer held.
        unsafe { m.vfree(p as *const u8) };
        l.call(Api::Vfree, true);
    }
    let size = (4 + rng.below(61)) * PAGE_SIZE;
    let got = m.__vmalloc(size, GFP_KERNEL_TRY);
    l.alloc(Api::Vmalloc, Class::Kernel, got.is_ok());
    if let Ok(p) = got {
        // SAFETY: `size` writable bytes.
        unsafe {
            p.as_ptr().write(0x7f);
            p.as_ptr().add(size - 1).write(0x45);
        }
        held.modules.push_back(p.as_ptr() as usize);
    }
}

/// The block device: completes submitted requests in hardirq context
/// (`mempool_free` from an interrupt handler), until the workers are gone.
fn device(sh: &'static Shared) {
    let m = sh.m;
    // SAFETY: the pool lives until `finish`, which joins this thread first.
    let pool = unsafe { sh.bio_pool.as_ref() };
    loop {
        let done = sh.workers_running.load(Ordering::Acquire) == 0;
        let batch = std::mem::take(&mut *sh.io_queue.lock().unwrap());
        if !batch.is_empty() {
            m.run_in_hardirq(|| {
                for &rq in &batch {
                    // SAFETY: a request from this pool, completed once.
                    unsafe { m.mempool_free(rq as *mut u8, pool) };
                }
            });
            sh.events
                .io_completed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            sh.stats.calls[Api::MempoolFree as usize].fetch_add(batch.len() as u64, Ordering::Relaxed);
        } else if done {
            return;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Sleep up to `d`, waking early when the workload stops.
fn nap(sh: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !sh.stop.load(Ordering::Relaxed) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The memory hog: grab every page `GFP_KERNEL` (direct reclaim, then
/// failure) gives, largest blocks first, hold them, let them go, rest.
fn memory_hog(sh: &'static Shared) {
    let m = sh.m;
    nap(sh, Duration::from_millis(150));
    while !sh.stop.load(Ordering::Relaxed) {
        let mut held = Vec::new();
        let mut pages = 0;
        'grab: for order in (0..=kmem::page::MAX_PAGE_ORDER).rev() {
            while let Ok(p) = m.__get_free_pages(GFP_KERNEL_TRY, order) {
                held.push((p.as_ptr() as usize, order));
                pages += 1 << order;
                sh.events.hog_pages.store(pages, Ordering::Relaxed);
                if sh.stop.load(Ordering::Relaxed) {
                    break 'grab;
                }
            }
        }
        sh.events.hog_cycles.fetch_add(1, Ordering::Relaxed);
        sh.events.hog_max_pages.fetch_max(pages, Ordering::Relaxed);
        nap(sh, Duration::from_millis(200));
        for (a, o) in held {
            // SAFETY: grabbed above with this order.
            unsafe { m.free_pages(a, o) };
        }
        sh.events.hog_pages.store(0, Ordering::Relaxed);
        nap(sh, Duration::from_millis(300));
    }
}
