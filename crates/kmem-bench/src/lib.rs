//! Workloads for benchmarks, shared by the wall-clock benches
//! (`kmem-bench-pages`, `kmem-bench-slab`) and the instruction counter
//! (`kmem-instr`). Page-allocator workloads are here; object-allocator
//! (slab, kmalloc) workloads in [`objects`]; the suites `kmem bench` runs in
//! [`compare`].
//!
//! Every workload is generic over [`PageAllocator`], implemented for
//!
//! * a kmem machine ([`Machine`]): `alloc_pages(GFP_KERNEL, order)` and
//!   `__free_pages`, orders 0..=3 through the per-CPU lists;
//! * [`BsaHeap`]: `buddy_system_allocator::LockedHeap<23>` over an anonymous
//!   mapping, asked for page-sized, page-aligned layouts (`4096 << order`).
//!   This is the closest equivalent of a page allocator in that crate: an
//!   intrusive buddy system whose free lists live in the free memory itself,
//!   like the kernel's, behind one spin lock (like `zone->lock`) and with no
//!   per-CPU cache. `ORDER = 23` makes its largest block 4 MiB, the same as
//!   kmem's `MAX_PAGE_ORDER = 10`, so both split and merge over the same range;
//! * [`BsaFrames`]: `buddy_system_allocator::LockedFrameAllocator<11>` (frame
//!   numbers, free lists in `BTreeSet`s on the global heap), the crate's own
//!   "page frame" allocator, reported beside it for completeness.
//!
//! The workloads are written once and `#[inline(always)]`, so each benchmark
//! or instruction-count entry point gets its own copy specialised for one
//! allocator.

pub mod compare;
pub mod objects;

use buddy_system_allocator::{LockedFrameAllocator, LockedHeap};
use core::alloc::Layout;
use core::ptr::NonNull;
use kmem::{Page, GFP_KERNEL, PAGE_SIZE};
pub use kmem_hosted::Machine;
use std::hint::black_box;

/// The boot command line of every benchmark machine.
pub const BENCH_CMDLINE: &str = "quiet mem=1G nr_cpus=2";

/// Bytes managed by the buddy_system_allocator instances (as the machine's RAM).
pub const BSA_BYTES: usize = 1 << 30;

/// Largest order any workload asks for (order-10 blocks = 4 MiB).
pub const MAX_ORDER: u32 = 10;

/// The operations the workloads need from a page allocator.
pub trait PageAllocator: Sync {
    /// What an allocation returns (a `struct page`, an address, a frame number).
    type Block: Copy;
    /// Short name for tables.
    const NAME: &'static str;
    /// Allocate 2^order contiguous pages.
    fn alloc(&self, order: u32) -> Option<Self::Block>;
    /// Free a block.
    ///
    /// # Safety
    /// `block` came from `alloc(order)` on this allocator and is not freed twice.
    unsafe fn free(&self, block: Self::Block, order: u32);
    /// Push every cached free page down to the buddy lists (kmem's
    /// `drain_all_pages`; a no-op for allocators without caches).
    fn drain(&self) {}
}

impl PageAllocator for Machine {
    type Block = NonNull<Page>;
    const NAME: &'static str = "kmem";

    #[inline(always)]
    fn alloc(&self, order: u32) -> Option<NonNull<Page>> {
        self.alloc_pages(GFP_KERNEL, order).ok()
    }

    #[inline(always)]
    unsafe fn free(&self, block: NonNull<Page>, order: u32) {
        // SAFETY: forwarded from the caller.
        unsafe { self.__free_pages(block, order) }
    }

    fn drain(&self) {
        self.drain_all_pages();
    }
}

/// An anonymous mapping aligned to its own size's largest block.
struct Region {
    base: *mut u8,
    map: *mut libc::c_void,
    map_len: usize,
}

impl Region {
    /// Map `bytes` (a multiple of `align`, a power of two) aligned to `align`.
    fn new(bytes: usize, align: usize) -> Region {
        let map_len = bytes + align;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let map = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(map != libc::MAP_FAILED, "mmap of {map_len} bytes failed");
        let base = (map as usize).next_multiple_of(align) as *mut u8;
        Region { base, map, map_len }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; nothing points into it any more.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// `buddy_system_allocator::LockedHeap` used as a page allocator.
pub struct BsaHeap {
    heap: LockedHeap<23>,
    // Declared after `heap`: the heap's free lists live in this memory.
    region: Region,
}

// SAFETY: the region is only reached through the heap's spin lock; the raw
// pointers are plain addresses of a mapping this value owns.
unsafe impl Send for BsaHeap {}
// SAFETY: as above.
unsafe impl Sync for BsaHeap {}

impl BsaHeap {
    /// A heap managing `bytes` of fresh memory, aligned to 4 MiB.
    pub fn new(bytes: usize) -> BsaHeap {
        let region = Region::new(bytes, PAGE_SIZE << MAX_ORDER);
        let heap = LockedHeap::<23>::new();
        // SAFETY: the region is ours, writable and unused.
        unsafe { heap.lock().init(region.base as usize, bytes) };
        BsaHeap { heap, region }
    }

    /// Bytes handed out and not yet freed (to check that workloads clean up).
    pub fn allocated_bytes(&self) -> usize {
        self.heap.lock().stats_alloc_actual()
    }

    /// Start of the managed memory.
    pub fn base(&self) -> *mut u8 {
        self.region.base
    }

    #[inline(always)]
    fn layout(order: u32) -> Layout {
        let size = PAGE_SIZE << order;
        // SAFETY: size is a nonzero power of two, used as its own alignment.
        unsafe { Layout::from_size_align_unchecked(size, size) }
    }
}

impl PageAllocator for BsaHeap {
    type Block = NonNull<u8>;
    const NAME: &'static str = "bsa Heap";

    #[inline(always)]
    fn alloc(&self, order: u32) -> Option<NonNull<u8>> {
        self.heap.lock().alloc(Self::layout(order)).ok()
    }

    #[inline(always)]
    unsafe fn free(&self, block: NonNull<u8>, order: u32) {
        self.heap.lock().dealloc(block, Self::layout(order));
    }
}

/// `buddy_system_allocator::LockedFrameAllocator` over the frame numbers of
/// `BSA_BYTES` of memory (it manages numbers only and touches no memory).
pub struct BsaFrames {
    frames: LockedFrameAllocator<11>,
}

impl BsaFrames {
    /// Frames `[base_frame, base_frame + nr_frames)`; `base_frame` should be
    /// aligned to 1024 so the largest blocks are whole.
    pub fn new(base_frame: usize, nr_frames: usize) -> BsaFrames {
        let frames = LockedFrameAllocator::<11>::new();
        frames.lock().add_frame(base_frame, base_frame + nr_frames);
        BsaFrames { frames }
    }
}

impl PageAllocator for BsaFrames {
    type Block = usize;
    const NAME: &'static str = "bsa Frame";

    #[inline(always)]
    fn alloc(&self, order: u32) -> Option<usize> {
        self.frames.lock().alloc(1 << order)
    }

    #[inline(always)]
    unsafe fn free(&self, block: usize, order: u32) {
        self.frames.lock().dealloc(block, 1 << order);
    }
}

/// xorshift64*: a small deterministic generator, the same sequence for every allocator.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a nonzero seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0; a slight bias is irrelevant here).
    #[inline(always)]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

// ---- the workloads ---------------------------------------------------------

/// Cases (a) and (b): `n` alloc+free pairs of one order on one thread.
/// Each pair is one operation.
///
/// # Panics
/// If an allocation fails.
#[inline(always)]
pub fn pair<A: PageAllocator>(a: &A, order: u32, n: usize) {
    for _ in 0..n {
        let b = a.alloc(order).expect("allocation failed");
        let b = black_box(b);
        // SAFETY: just allocated with this order, freed once.
        unsafe { a.free(b, order) };
    }
}

/// Order in which [`batch`] frees its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeOrder {
    /// Last allocated, first freed.
    Lifo,
    /// First allocated, first freed.
    Fifo,
}

/// Case (c): allocate `count` order-0 pages, then free them all in `how`
/// order. `buf` is scratch space (reused so the loop does not allocate).
/// One page (one alloc plus one free) is one operation.
///
/// # Panics
/// If an allocation fails.
#[inline(always)]
pub fn batch<A: PageAllocator>(a: &A, buf: &mut Vec<A::Block>, count: usize, how: FreeOrder) {
    buf.clear();
    for _ in 0..count {
        buf.push(black_box(a.alloc(0).expect("allocation failed")));
    }
    match how {
        FreeOrder::Lifo => {
            while let Some(b) = buf.pop() {
                // SAFETY: allocated above with order 0, freed once.
                unsafe { a.free(b, 0) };
            }
        }
        FreeOrder::Fifo => {
            for &b in buf.iter() {
                // SAFETY: as above.
                unsafe { a.free(b, 0) };
            }
            buf.clear();
        }
    }
}

/// Pages in one round of [`split_merge`]: an order-10 block's worth.
pub const SPLIT_MERGE_PAGES: usize = 1 << MAX_ORDER;

/// Case (d): one round of split/merge-heavy traffic on an idle allocator.
/// Allocate [`SPLIT_MERGE_PAGES`] order-0 pages (each refill splits large
/// blocks), free every even-numbered one (no buddy of a freed page is free:
/// nothing can merge), then every odd-numbered one (each completes a pair and
/// merges upwards), then drain the per-CPU lists so kmem's pages really
/// reach, and merge in, the buddy lists. One page is one operation.
///
/// # Panics
/// If an allocation fails.
#[inline(always)]
pub fn split_merge<A: PageAllocator>(a: &A, buf: &mut Vec<A::Block>) {
    buf.clear();
    for _ in 0..SPLIT_MERGE_PAGES {
        buf.push(black_box(a.alloc(0).expect("allocation failed")));
    }
    for &b in buf.iter().step_by(2) {
        // SAFETY: allocated above with order 0; evens now, odds below: each once.
        unsafe { a.free(b, 0) };
    }
    for &b in buf.iter().skip(1).step_by(2) {
        // SAFETY: as above.
        unsafe { a.free(b, 0) };
    }
    buf.clear();
    a.drain();
}

/// The live set of [`mixed`]: blocks with their orders.
pub struct LiveSet<B> {
    /// The live blocks.
    pub blocks: Vec<(B, u32)>,
    /// The random sequence.
    pub rng: Rng,
}

/// Largest order in the mixed workload.
pub const MIXED_MAX_ORDER: u32 = 5;
/// Live blocks in the mixed workload.
pub const MIXED_LIVE: usize = 1000;

impl<B: Copy> LiveSet<B> {
    /// Fill a live set of `live` blocks of random orders 0..=5.
    ///
    /// # Panics
    /// If an allocation fails.
    pub fn fill<A: PageAllocator<Block = B>>(a: &A, live: usize, seed: u64) -> LiveSet<B> {
        let mut rng = Rng::new(seed);
        let blocks = (0..live)
            .map(|_| {
                let order = rng.below(MIXED_MAX_ORDER as usize + 1) as u32;
                (a.alloc(order).expect("allocation failed"), order)
            })
            .collect();
        LiveSet { blocks, rng }
    }

    /// Free every live block.
    pub fn release<A: PageAllocator<Block = B>>(self, a: &A) {
        for (b, order) in self.blocks {
            // SAFETY: every live block was allocated with its recorded order.
            unsafe { a.free(b, order) };
        }
    }
}

/// Case (e): `n` steps of mixed traffic on a live set: free a random live
/// block, allocate one of a random order 0..=5 in its place. One step (a free
/// and an alloc) is one operation.
///
/// # Panics
/// If an allocation fails.
#[inline(always)]
pub fn mixed<A: PageAllocator>(a: &A, live: &mut LiveSet<A::Block>, n: usize) {
    let len = live.blocks.len();
    for _ in 0..n {
        let slot = live.rng.below(len);
        let new_order = live.rng.below(MIXED_MAX_ORDER as usize + 1) as u32;
        let (b, order) = live.blocks[slot];
        // SAFETY: a live block with its order, removed from the set right here.
        unsafe { a.free(b, order) };
        let nb = black_box(a.alloc(new_order).expect("allocation failed"));
        live.blocks[slot] = (nb, new_order);
    }
}

/// Pin the calling thread to host CPU `cpu` (best effort: returns whether it worked).
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Undo [`pin_to_cpu`]: allow every CPU again.
pub fn unpin() {
    // SAFETY: as in `pin_to_cpu`.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The host's CPU model and the number of logical CPUs (from /proc/cpuinfo).
pub fn cpu_model() -> (String, usize) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let cpus = info.lines().filter(|l| l.starts_with("processor")).count();
    (model, cpus)
}

/// The median of `v` (the mean of the middle two for an even count).
///
/// # Panics
/// If `v` is empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of no values");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One repetition of one competitor's case: runs it and returns its time
/// per operation.
pub type Rep<'a> = Box<dyn FnMut() -> f64 + 'a>;

/// A [`Rep`] of `run`, which performs `ops` operations: its wall time in
/// nanoseconds per operation.
pub fn timed<'a>(ops: usize, mut run: impl FnMut() + 'a) -> Option<Rep<'a>> {
    Some(Box::new(move || {
        let t = std::time::Instant::now();
        run();
        t.elapsed().as_nanos() as f64 / ops.max(1) as f64
    }))
}

/// The median time of each competitor's repetitions, the competitors
/// measured in turn: after one warm-up call of each, repetition `r` calls
/// every one once, starting with competitor `r % n`. A slow period of the
/// host (another guest's load, a frequency change) then falls on all of
/// them alike, where measuring one competitor's repetitions after the
/// other's would charge it to whichever ran then; rotating the start keeps
/// any one of them from always following the same other. `None` entries
/// (a case a competitor does not have) stay `None`.
pub fn measure_interleaved(reps: usize, runs: &mut [Option<Rep<'_>>]) -> Vec<Option<f64>> {
    let n = runs.len();
    let mut times = vec![Vec::with_capacity(reps); n];
    for run in runs.iter_mut().flatten() {
        run();
    }
    for r in 0..reps.max(1) {
        for k in 0..n {
            let i = (r + k) % n;
            if let Some(run) = runs[i].as_mut() {
                times[i].push(run());
            }
        }
    }
    times
        .into_iter()
        .zip(runs.iter())
        .map(|(t, run)| run.as_ref().map(|_| median(t)))
        .collect()
}
