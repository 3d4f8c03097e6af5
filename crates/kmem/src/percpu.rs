//! The per-CPU allocator (`mm/percpu.c`, `include/linux/percpu*.h`).
//!
//! Per-CPU memory is allocated in **chunks**. A chunk holds one **unit** of
//! [`PCPU_UNIT_SIZE`] bytes per possible CPU, taken from the page allocator in
//! one block, so unit `cpu` of a chunk lives at `chunk_base + cpu * unit_size`.
//! An allocation is an **offset inside a unit**, reserved in every unit at
//! once. The "percpu pointer" ([`PercpuPtr`]) is the cookie `chunk_base + off`,
//! not dereferenceable by itself: `per_cpu_ptr(p, cpu) = p + cpu * unit_size`,
//! which is the kernel's `p + __per_cpu_offset[cpu]` with a constant stride.
//!
//! * **Inside a chunk** a bitmap of 4-byte granules (`PCPU_MIN_ALLOC_SIZE`)
//!   marks what is allocated (`alloc_map`) and a second one marks where each
//!   allocation starts (`bound_map`, needed by `free_percpu`). Allocation is
//!   first fit honouring the alignment (offsets are aligned relative to the
//!   unit start, which is page aligned). The kernel's per-block contig hints
//!   and slot lists are not modelled: chunks are searched in creation order.
//! * **The first chunk** is allocated at boot. Its first [`PCPU_STATIC_SIZE`]
//!   bytes are the *static* area that holds `DEFINE_PER_CPU` variables
//!   ([`PerCpuVar`]): Rust has no linker section for per-CPU data, so each
//!   variable gets an offset in the static area of a machine the first time it
//!   is used on that machine. The rest of the first chunk is dynamic.
//! * **Dynamic chunks** are created when no existing chunk fits a request,
//!   for sleeping (`__GFP_DIRECT_RECLAIM`) requests only: atomic requests use
//!   existing chunks (the kernel's "atomic alloc failed, no space left").
//!   Chunks are fully populated when created (no lazy page population).
//! * **Freeing** (`free_percpu`, callable from atomic context) clears the
//!   bits. When a dynamic chunk becomes empty it is kept if it is the only
//!   empty dynamic chunk and released to the page allocator otherwise: the
//!   kernel's balance work frees fully empty chunks keeping one. The first
//!   chunk is never released. [`Kmem::pcpu_balance`] releases every empty
//!   dynamic chunk (the balance work run with nothing kept back).
//! * **Memory is zeroed on every CPU** when it is allocated.
//! * **Size of a chunk**: `nr_cpu_ids * PCPU_UNIT_SIZE` rounded up to a
//!   power-of-two block of pages, so machines of more than 128 CPUs (an order
//!   above `MAX_PAGE_ORDER`) have no per-CPU memory; at most
//!   [`PCPU_MAX_CHUNKS`] chunks exist at once.
//! * **Limits**: `size == 0`, `size > PCPU_MIN_UNIT_SIZE` (32 KiB),
//!   `align > PAGE_SIZE` or a non-power-of-two `align` give the kernel's
//!   warning and a failure.
//!
//! ## `this_cpu_*` operations
//! The typed handle [`PerCpu<T>`] (an integer type, [`PercpuInt`]) offers the
//! kernel's operations. `this_cpu_add/inc/dec/sub/read/write/xchg/cmpxchg`
//! are the kernel's interrupt- and preemption-safe single operations: they
//! pin the caller with `preempt_disable` (which returns the CPU) and do one
//! **atomic** read-modify-write on that CPU's slot, so counters stay exact
//! even on a platform whose `preempt_disable` cannot really pin a thread.
//! `__this_cpu_*` are the variants for callers that already disabled
//! preemption: a plain (relaxed load, then store) read-modify-write on the
//! current CPU's slot, exact as long as the platform pins really (the hosted
//! platform does: see `kmem_hosted::platform`).
//!
//! ## Statistics
//! [`Kmem::percpu_stats`] and [`Kmem::percpu_stats_show`] (the text of
//! debugfs `percpu_stats`, `CONFIG_PERCPU_STATS`); `Percpu:` in meminfo is
//! [`Kmem::pcpu_nr_pages`]: populated unit pages of every chunk plus one
//! metadata page per chunk.

use core::fmt::{self, Write};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::gfp::{Gfp, __GFP_NOWARN, __GFP_ZERO, GFP_KERNEL};
use crate::machine::Kmem;
use crate::page::{get_order, PAGE_SIZE};
use crate::platform::Platform;
use crate::spinlock::SpinLock;
use crate::AllocError;

/// Allocation granule: sizes round up to it, smaller alignments become it.
pub const PCPU_MIN_ALLOC_SIZE: usize = 4;
/// Largest allocation (`PCPU_MIN_UNIT_SIZE`, 32 KiB).
pub const PCPU_MIN_UNIT_SIZE: usize = 32 << 10;
/// Unit size of our chunks: the kernel's minimum, so chunks stay small.
pub const PCPU_UNIT_SIZE: usize = PCPU_MIN_UNIT_SIZE;
/// Static area at the start of the first chunk, for `DEFINE_PER_CPU`.
pub const PCPU_STATIC_SIZE: usize = 8 << 10;
/// Most chunks a machine can have (the first one included).
pub const PCPU_MAX_CHUNKS: usize = 64;
/// Most `DEFINE_PER_CPU` variables a machine can use.
pub const PCPU_MAX_STATIC_VARS: usize = 256;
/// Allocation failure warnings printed before "limit reached".
const PCPU_MAX_ALLOC_WARNINGS: u32 = 10;

const BITS: usize = PCPU_UNIT_SIZE / PCPU_MIN_ALLOC_SIZE;
const WORDS: usize = BITS / 64;
const STATIC_BITS: usize = PCPU_STATIC_SIZE / PCPU_MIN_ALLOC_SIZE;

/// A chunk's bitmaps, in a page of its own (the chunk's metadata page).
struct ChunkMaps {
    /// One bit per granule: allocated.
    alloc_map: [u64; WORDS],
    /// One bit per granule: an allocation starts here.
    bound_map: [u64; WORDS],
}

const _: () = assert!(core::mem::size_of::<ChunkMaps>() <= PAGE_SIZE);

impl ChunkMaps {
    fn test(map: &[u64; WORDS], bit: usize) -> bool {
        map[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn set_range(map: &mut [u64; WORDS], start: usize, end: usize, on: bool) {
        for bit in start..end {
            if on {
                map[bit / 64] |= 1 << (bit % 64);
            } else {
                map[bit / 64] &= !(1 << (bit % 64));
            }
        }
    }

    /// First bit in `[from, limit)` whose value is `val`, or `limit`.
    fn find(map: &[u64; WORDS], from: usize, limit: usize, val: bool) -> usize {
        let mut bit = from;
        while bit < limit {
            let w = if val { map[bit / 64] } else { !map[bit / 64] };
            let w = w >> (bit % 64);
            if w == 0 {
                bit = (bit / 64 + 1) * 64;
                continue;
            }
            bit += w.trailing_zeros() as usize;
            return bit.min(limit);
        }
        limit
    }

    /// First fit of `bits` granules aligned to `align_bits`.
    fn find_fit(&self, bits: usize, align_bits: usize) -> Option<usize> {
        let mut start = 0;
        loop {
            start = Self::find(&self.alloc_map, start, BITS, false);
            start = start.div_ceil(align_bits) * align_bits;
            if start + bits > BITS {
                return None;
            }
            let busy = Self::find(&self.alloc_map, start, start + bits, true);
            if busy == start + bits {
                return Some(start);
            }
            start = busy + 1;
        }
    }

    /// Free runs: (first free bit, free granules, largest run, sum and
    /// largest of the runs that lie before the last allocated granule).
    fn scan(&self) -> (usize, usize, usize, usize, usize) {
        let first = Self::find(&self.alloc_map, 0, BITS, false);
        let last_used = (0..BITS).rev().find(|&b| Self::test(&self.alloc_map, b));
        let (mut free, mut contig, mut sum_frag, mut max_frag) = (0, 0, 0, 0);
        let mut bit = first;
        while bit < BITS {
            let end = Self::find(&self.alloc_map, bit, BITS, true);
            let run = end - bit;
            free += run;
            contig = contig.max(run);
            if last_used.is_some_and(|l| end <= l) {
                sum_frag += run;
                max_frag = max_frag.max(run);
            }
            bit = Self::find(&self.alloc_map, end, BITS, false);
        }
        (first, free, contig, sum_frag, max_frag)
    }

    /// Unit pages without any allocated granule.
    fn empty_pages(&self) -> usize {
        let words_per_page = PAGE_SIZE / PCPU_MIN_ALLOC_SIZE / 64;
        self.alloc_map
            .chunks(words_per_page)
            .filter(|p| p.iter().all(|&w| w == 0))
            .count()
    }
}

#[derive(Clone, Copy)]
struct Chunk {
    /// Linear address of unit 0; 0 marks an unused slot.
    base: usize,
    /// Order of the page block holding the units.
    order: u32,
    /// Address of the `ChunkMaps` page.
    maps: usize,
    /// Live allocations in the chunk.
    nr_alloc: usize,
    /// Largest allocation the chunk ever served.
    max_alloc_size: usize,
}

impl Chunk {
    const EMPTY: Chunk = Chunk {
        base: 0,
        order: 0,
        maps: 0,
        nr_alloc: 0,
        max_alloc_size: 0,
    };

    fn maps(&self) -> &ChunkMaps {
        // SAFETY: `maps` of a used slot is the chunk's metadata page, owned by
        // the chunk for its whole life; shared access happens under the lock.
        unsafe { &*(self.maps as *const ChunkMaps) }
    }

    #[allow(clippy::mut_from_ref)]
    fn maps_mut(&self) -> &mut ChunkMaps {
        // SAFETY: as `maps`; callers hold the percpu lock mutably, so no other
        // reference to the bitmaps exists.
        unsafe { &mut *(self.maps as *mut ChunkMaps) }
    }
}

/// Global counters of the allocator (`pcpu_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcpuStats {
    /// Allocations ever made.
    pub nr_alloc: u64,
    /// Frees ever made.
    pub nr_dealloc: u64,
    /// Live allocations.
    pub nr_cur_alloc: u64,
    /// Most live allocations at any time.
    pub nr_max_alloc: u64,
    /// Chunks now (the first chunk included).
    pub nr_chunks: u64,
    /// Most chunks at any time.
    pub nr_max_chunks: u64,
    /// Smallest allocation (rounded to the granule), 0 before the first.
    pub min_alloc_size: u64,
    /// Largest allocation.
    pub max_alloc_size: u64,
}

struct PcpuInner {
    /// Slot 0 is the first chunk.
    chunks: [Chunk; PCPU_MAX_CHUNKS],
    stats: PcpuStats,
    /// Bytes of the static area handed to `DEFINE_PER_CPU` variables.
    static_used: usize,
    alloc_warnings: u32,
}

/// A machine's per-CPU allocator state (a field of [`Kmem`]).
pub struct PercpuState {
    inner: SpinLock<PcpuInner>,
    /// Populated pages, unit pages and metadata pages (`pcpu_nr_pages`).
    nr_pages: AtomicUsize,
    /// Unit 0 of the first chunk (0 before `percpu_init`).
    first_base: AtomicUsize,
    /// `DEFINE_PER_CPU` variables: address of the `PerCpuVar` static (0: free
    /// slot), published after its offset.
    static_keys: [AtomicUsize; PCPU_MAX_STATIC_VARS],
    static_offs: [AtomicUsize; PCPU_MAX_STATIC_VARS],
}

impl Default for PercpuState {
    fn default() -> Self {
        Self::new()
    }
}

impl PercpuState {
    /// Empty state; `Kmem::percpu_init` creates the first chunk.
    pub const fn new() -> Self {
        PercpuState {
            inner: SpinLock::new(PcpuInner {
                chunks: [Chunk::EMPTY; PCPU_MAX_CHUNKS],
                stats: PcpuStats {
                    nr_alloc: 0,
                    nr_dealloc: 0,
                    nr_cur_alloc: 0,
                    nr_max_alloc: 0,
                    nr_chunks: 0,
                    nr_max_chunks: 0,
                    min_alloc_size: 0,
                    max_alloc_size: 0,
                },
                static_used: 0,
                alloc_warnings: 0,
            }),
            nr_pages: AtomicUsize::new(0),
            first_base: AtomicUsize::new(0),
            static_keys: [const { AtomicUsize::new(0) }; PCPU_MAX_STATIC_VARS],
            static_offs: [const { AtomicUsize::new(0) }; PCPU_MAX_STATIC_VARS],
        }
    }
}

/// A per-CPU pointer (`T __percpu *`): a cookie, not an address. Use
/// [`Kmem::per_cpu_ptr`] to get CPU `cpu`'s copy.
pub struct PercpuPtr<T> {
    cookie: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for PercpuPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PercpuPtr<T> {}
impl<T> PartialEq for PercpuPtr<T> {
    fn eq(&self, o: &Self) -> bool {
        self.cookie == o.cookie
    }
}
impl<T> Eq for PercpuPtr<T> {}
impl<T> fmt::Debug for PercpuPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PercpuPtr({:#x})", self.cookie)
    }
}

impl<T> PercpuPtr<T> {
    /// The cookie value (`chunk_base + offset`).
    pub fn addr(self) -> usize {
        self.cookie
    }

    /// A pointer from a cookie value (as `addr()` returned). Safe to build:
    /// every use of a per-CPU pointer's memory is `unsafe` or checked.
    pub fn from_addr(addr: usize) -> Self {
        PercpuPtr {
            cookie: addr,
            _t: PhantomData,
        }
    }

    /// The same allocation seen as another type.
    pub fn cast<U>(self) -> PercpuPtr<U> {
        PercpuPtr {
            cookie: self.cookie,
            _t: PhantomData,
        }
    }
}

impl<P: Platform> Kmem<P> {
    /// Create the first chunk (boot, after `kmem_cache_init`).
    pub(crate) fn percpu_init(&self) {
        match self.pcpu_create_chunk(GFP_KERNEL) {
            Some(c) => {
                ChunkMaps::set_range(&mut c.maps_mut().alloc_map, 0, STATIC_BITS, true);
                let mut g = self.percpu.inner.lock(&self.platform);
                g.chunks[0] = c;
                self.percpu.first_base.store(c.base, Ordering::Release);
                g.stats.nr_chunks = 1;
                g.stats.nr_max_chunks = 1;
                drop(g);
                crate::pr!(
                    self,
                    "percpu: Embedded {} pages/cpu s{} r0 d{} u{}",
                    PCPU_UNIT_SIZE / PAGE_SIZE,
                    PCPU_STATIC_SIZE,
                    PCPU_UNIT_SIZE - PCPU_STATIC_SIZE,
                    PCPU_UNIT_SIZE
                );
            }
            None => crate::pr!(self, "percpu: failed to allocate the first chunk"),
        }
    }

    /// Allocate a chunk's units and metadata page (unlocked).
    fn pcpu_create_chunk(&self, gfp: Gfp) -> Option<Chunk> {
        let order = get_order(self.nr_cpus * PCPU_UNIT_SIZE);
        let gfp = Gfp(gfp.bits() & GFP_KERNEL.bits()) | __GFP_NOWARN;
        let base = self.__get_free_pages(gfp, order).ok()?;
        let maps = match self.__get_free_pages(gfp | __GFP_ZERO, 0) {
            Ok(m) => m,
            Err(_) => {
                // SAFETY: just allocated with this order, never handed out.
                unsafe { self.free_pages(base.as_ptr() as usize, order) };
                return None;
            }
        };
        self.percpu
            .nr_pages
            .fetch_add((1 << order) + 1, Ordering::Relaxed);
        Some(Chunk {
            base: base.as_ptr() as usize,
            order,
            maps: maps.as_ptr() as usize,
            nr_alloc: 0,
            max_alloc_size: 0,
        })
    }

    /// Give a (removed, empty) chunk back to the page allocator.
    fn pcpu_destroy_chunk(&self, c: Chunk) {
        self.percpu
            .nr_pages
            .fetch_sub((1 << c.order) + 1, Ordering::Relaxed);
        // SAFETY: both blocks were allocated by `pcpu_create_chunk` with these
        // orders and the chunk is out of the table, so nothing uses them.
        unsafe {
            self.free_pages(c.maps, 0);
            self.free_pages(c.base, c.order);
        }
    }

    /// Bytes of one unit (the stride between CPUs' copies).
    pub fn pcpu_unit_size(&self) -> usize {
        PCPU_UNIT_SIZE
    }

    /// `pcpu_nr_pages`: populated per-CPU pages, for `Percpu:` in meminfo.
    pub fn pcpu_nr_pages(&self) -> usize {
        self.percpu.nr_pages.load(Ordering::Relaxed)
    }

    /// `__alloc_percpu(size, align)`: `GFP_KERNEL`.
    pub fn __alloc_percpu(&self, size: usize, align: usize) -> Result<PercpuPtr<u8>, AllocError> {
        self.__alloc_percpu_gfp(size, align, GFP_KERNEL)
    }

    /// `__alloc_percpu_gfp`: `size` bytes aligned to `align` on every CPU,
    /// zeroed. Without `__GFP_DIRECT_RECLAIM` only existing chunks are used.
    pub fn __alloc_percpu_gfp(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
    ) -> Result<PercpuPtr<u8>, AllocError> {
        if size == 0 || size > PCPU_MIN_UNIT_SIZE || align > PAGE_SIZE || !align.is_power_of_two() {
            self.warn(format_args!(
                "illegal size ({size}) or align ({align}) for percpu allocation"
            ));
            return Err(AllocError);
        }
        let size = size.next_multiple_of(PCPU_MIN_ALLOC_SIZE);
        let align = align.max(PCPU_MIN_ALLOC_SIZE);
        let bits = size / PCPU_MIN_ALLOC_SIZE;
        let align_bits = align / PCPU_MIN_ALLOC_SIZE;
        let atomic = !gfp.allows_blocking();
        loop {
            let mut g = self.percpu.inner.lock(&self.platform);
            for i in 0..PCPU_MAX_CHUNKS {
                let c = g.chunks[i];
                if c.base == 0 {
                    continue;
                }
                let maps = c.maps_mut();
                if let Some(start) = maps.find_fit(bits, align_bits) {
                    ChunkMaps::set_range(&mut maps.alloc_map, start, start + bits, true);
                    ChunkMaps::set_range(&mut maps.bound_map, start, start + 1, true);
                    let ch = &mut g.chunks[i];
                    ch.nr_alloc += 1;
                    ch.max_alloc_size = ch.max_alloc_size.max(size);
                    let s = &mut g.stats;
                    s.nr_alloc += 1;
                    s.nr_cur_alloc += 1;
                    s.nr_max_alloc = s.nr_max_alloc.max(s.nr_cur_alloc);
                    s.min_alloc_size = if s.min_alloc_size == 0 {
                        size as u64
                    } else {
                        s.min_alloc_size.min(size as u64)
                    };
                    s.max_alloc_size = s.max_alloc_size.max(size as u64);
                    drop(g);
                    let off = start * PCPU_MIN_ALLOC_SIZE;
                    for cpu in 0..self.nr_cpus {
                        let p = (c.base + cpu * PCPU_UNIT_SIZE + off) as *mut u8;
                        // SAFETY: `[off, off + size)` of every unit lies inside
                        // the chunk's page block and was just reserved for us.
                        unsafe { core::ptr::write_bytes(p, 0, size) };
                    }
                    return Ok(PercpuPtr {
                        cookie: c.base + off,
                        _t: PhantomData,
                    });
                }
            }
            drop(g);
            if atomic {
                return self.pcpu_alloc_fail(size, align, true, "atomic alloc failed, no space left", gfp);
            }
            let Some(new) = self.pcpu_create_chunk(gfp) else {
                return self.pcpu_alloc_fail(size, align, false, "failed to allocate new chunk", gfp);
            };
            let mut g = self.percpu.inner.lock(&self.platform);
            // Slot 0 belongs to the first chunk (with its static area) only.
            match g.chunks[1..].iter().position(|c| c.base == 0).map(|i| i + 1) {
                Some(slot) => {
                    g.chunks[slot] = new;
                    g.stats.nr_chunks += 1;
                    g.stats.nr_max_chunks = g.stats.nr_max_chunks.max(g.stats.nr_chunks);
                }
                _ => {
                    drop(g);
                    self.pcpu_destroy_chunk(new);
                    return self.pcpu_alloc_fail(size, align, false, "failed to allocate new chunk", gfp);
                }
            }
        }
    }

    fn pcpu_alloc_fail(
        &self,
        size: usize,
        align: usize,
        atomic: bool,
        reason: &str,
        gfp: Gfp,
    ) -> Result<PercpuPtr<u8>, AllocError> {
        if !gfp.contains(__GFP_NOWARN) {
            let n = {
                let mut g = self.percpu.inner.lock(&self.platform);
                g.alloc_warnings += 1;
                g.alloc_warnings
            };
            if n <= PCPU_MAX_ALLOC_WARNINGS {
                self.warn(format_args!(
                    "percpu: allocation failed, size={size} align={align} atomic={}, {reason}",
                    atomic as u32
                ));
                if n == PCPU_MAX_ALLOC_WARNINGS {
                    crate::pr!(self, "percpu: limit reached, disable warning");
                }
            }
        }
        Err(AllocError)
    }

    /// `free_percpu`: free an allocation on every CPU. Callable from atomic
    /// context. A pointer that is not the start of a live allocation is
    /// reported and ignored.
    ///
    /// # Safety
    /// `p` came from this machine's `__alloc_percpu*`; no pointer derived
    /// from it is used afterwards.
    pub unsafe fn free_percpu<T>(&self, p: PercpuPtr<T>) {
        let addr = p.cookie;
        let mut release = None;
        {
            let mut g = self.percpu.inner.lock(&self.platform);
            let Some(i) = g
                .chunks
                .iter()
                .position(|c| c.base != 0 && addr >= c.base && addr < c.base + PCPU_UNIT_SIZE)
            else {
                drop(g);
                self.warn(format_args!("percpu: free_percpu of unknown pointer {addr:#x}"));
                return;
            };
            let c = g.chunks[i];
            let off = addr - c.base;
            let start = off / PCPU_MIN_ALLOC_SIZE;
            let maps = c.maps_mut();
            if !off.is_multiple_of(PCPU_MIN_ALLOC_SIZE) || !ChunkMaps::test(&maps.bound_map, start) {
                drop(g);
                self.warn(format_args!("percpu: invalid free_percpu({addr:#x})"));
                return;
            }
            let next_bound = ChunkMaps::find(&maps.bound_map, start + 1, BITS, true);
            let end = ChunkMaps::find(&maps.alloc_map, start, next_bound, false);
            ChunkMaps::set_range(&mut maps.alloc_map, start, end, false);
            ChunkMaps::set_range(&mut maps.bound_map, start, start + 1, false);
            g.chunks[i].nr_alloc -= 1;
            g.stats.nr_dealloc += 1;
            g.stats.nr_cur_alloc -= 1;
            if i != 0 && g.chunks[i].nr_alloc == 0 {
                let other_empty = g
                    .chunks
                    .iter()
                    .enumerate()
                    .any(|(j, c)| j != 0 && j != i && c.base != 0 && c.nr_alloc == 0);
                if other_empty {
                    release = Some(g.chunks[i]);
                    g.chunks[i] = Chunk::EMPTY;
                    g.stats.nr_chunks -= 1;
                }
            }
        }
        if let Some(c) = release {
            self.pcpu_destroy_chunk(c);
        }
    }

    /// The balance work run to completion: release every empty dynamic chunk.
    pub fn pcpu_balance(&self) {
        loop {
            let c = {
                let mut g = self.percpu.inner.lock(&self.platform);
                let Some(i) =
                    (1..PCPU_MAX_CHUNKS).find(|&i| g.chunks[i].base != 0 && g.chunks[i].nr_alloc == 0)
                else {
                    return;
                };
                let c = g.chunks[i];
                g.chunks[i] = Chunk::EMPTY;
                g.stats.nr_chunks -= 1;
                c
            };
            self.pcpu_destroy_chunk(c);
        }
    }

    /// `per_cpu_ptr(p, cpu)`: CPU `cpu`'s copy. Computing it is safe;
    /// dereferencing needs `p` live.
    ///
    /// # Panics
    /// If `cpu >= nr_cpu_ids()`.
    #[inline]
    pub fn per_cpu_ptr<T>(&self, p: PercpuPtr<T>, cpu: usize) -> *mut T {
        assert!(cpu < self.nr_cpus, "per_cpu_ptr: cpu {cpu} out of range");
        (p.cookie + cpu * PCPU_UNIT_SIZE) as *mut T
    }

    /// `this_cpu_ptr(p)`: the current CPU's copy (meaningful while the caller
    /// keeps preemption disabled).
    #[inline]
    pub fn this_cpu_ptr<T>(&self, p: PercpuPtr<T>) -> *mut T {
        self.per_cpu_ptr(p, self.platform.smp_processor_id())
    }

    /// `alloc_percpu(type)`: a typed, zeroed per-CPU integer, freed on drop.
    pub fn alloc_percpu<T: PercpuInt>(&self) -> Result<PerCpu<'_, T, P>, AllocError> {
        self.alloc_percpu_gfp(GFP_KERNEL)
    }

    /// `alloc_percpu_gfp(type, gfp)`.
    pub fn alloc_percpu_gfp<T: PercpuInt>(&self, gfp: Gfp) -> Result<PerCpu<'_, T, P>, AllocError> {
        let p = self.__alloc_percpu_gfp(core::mem::size_of::<T>(), T::ALIGN, gfp)?;
        Ok(PerCpu {
            k: self,
            ptr: p.cast(),
            owned: true,
        })
    }

    /// The global counters.
    pub fn percpu_stats(&self) -> PcpuStats {
        self.percpu.inner.lock(&self.platform).stats
    }

    /// The offset of a `DEFINE_PER_CPU` variable keyed `key` in the static
    /// area, assigning one on first use.
    fn pcpu_static_offset(&self, key: usize, size: usize, align: usize) -> usize {
        let st = &self.percpu;
        let h = (key >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) % PCPU_MAX_STATIC_VARS;
        let probe = |i: usize| (h + i) % PCPU_MAX_STATIC_VARS;
        for i in 0..PCPU_MAX_STATIC_VARS {
            match st.static_keys[probe(i)].load(Ordering::Acquire) {
                k if k == key => return st.static_offs[probe(i)].load(Ordering::Relaxed),
                0 => break,
                _ => {}
            }
        }
        let mut g = st.inner.lock(&self.platform);
        assert!(
            st.first_base.load(Ordering::Relaxed) != 0,
            "percpu: no first chunk"
        );
        for i in 0..PCPU_MAX_STATIC_VARS {
            let slot = probe(i);
            match st.static_keys[slot].load(Ordering::Acquire) {
                k if k == key => return st.static_offs[slot].load(Ordering::Relaxed),
                0 => {
                    let off = g.static_used.next_multiple_of(align.max(PCPU_MIN_ALLOC_SIZE));
                    assert!(off + size <= PCPU_STATIC_SIZE, "percpu: static area exhausted");
                    g.static_used = off + size;
                    st.static_offs[slot].store(off, Ordering::Relaxed);
                    st.static_keys[slot].store(key, Ordering::Release);
                    return off;
                }
                _ => {}
            }
        }
        panic!("percpu: too many DEFINE_PER_CPU variables");
    }

    /// The text of debugfs `percpu_stats` (`CONFIG_PERCPU_STATS`).
    pub fn percpu_stats_show(&self, out: &mut dyn Write) -> fmt::Result {
        fn p(out: &mut dyn Write, name: &str, v: u64) -> fmt::Result {
            writeln!(out, "  {name:<20}: {v:>12}")
        }
        const DASHES: &str = "----------------------------------------";
        // Snapshot under the lock, print without it.
        let mut per_chunk = [(false, [0u64; 8]); PCPU_MAX_CHUNKS];
        let g = self.percpu.inner.lock(&self.platform);
        let s = g.stats;
        let mut empty_total = 0usize;
        for (i, c) in g.chunks.iter().enumerate() {
            if c.base == 0 {
                continue;
            }
            let (first, free, contig, sum_frag, max_frag) = c.maps().scan();
            let empty = c.maps().empty_pages();
            empty_total += empty;
            let g = PCPU_MIN_ALLOC_SIZE;
            per_chunk[i] = (
                true,
                [
                    c.nr_alloc,
                    c.max_alloc_size,
                    empty,
                    first,
                    free * g,
                    contig * g,
                    sum_frag * g,
                    max_frag * g,
                ]
                .map(|v| v as u64),
            );
        }
        drop(g);
        let alloc_size = (PAGE_SIZE << get_order(self.nr_cpus * PCPU_UNIT_SIZE)) as u64;
        writeln!(out, "Percpu Memory Statistics")?;
        writeln!(out, "Allocation Info:")?;
        writeln!(out, "{DASHES}")?;
        p(out, "unit_size", PCPU_UNIT_SIZE as u64)?;
        p(out, "static_size", PCPU_STATIC_SIZE as u64)?;
        p(out, "reserved_size", 0)?;
        p(out, "dyn_size", (PCPU_UNIT_SIZE - PCPU_STATIC_SIZE) as u64)?;
        p(out, "atom_size", PAGE_SIZE as u64)?;
        p(out, "alloc_size", alloc_size)?;
        writeln!(out)?;
        writeln!(out, "Global Stats:")?;
        writeln!(out, "{DASHES}")?;
        p(out, "nr_alloc", s.nr_alloc)?;
        p(out, "nr_dealloc", s.nr_dealloc)?;
        p(out, "nr_cur_alloc", s.nr_cur_alloc)?;
        p(out, "nr_max_alloc", s.nr_max_alloc)?;
        p(out, "nr_chunks", s.nr_chunks)?;
        p(out, "nr_max_chunks", s.nr_max_chunks)?;
        p(out, "min_alloc_size", s.min_alloc_size)?;
        p(out, "max_alloc_size", s.max_alloc_size)?;
        p(out, "empty_pop_pages", empty_total as u64)?;
        writeln!(out)?;
        writeln!(out, "Per Chunk Stats:")?;
        writeln!(out, "{DASHES}")?;
        const NAMES: [&str; 8] = [
            "nr_alloc",
            "max_alloc_size",
            "empty_pop_pages",
            "first_bit",
            "free_bytes",
            "contig_bytes",
            "sum_frag",
            "max_frag",
        ];
        for (i, (used, vals)) in per_chunk.iter().enumerate() {
            if !used {
                continue;
            }
            writeln!(out, "Chunk: {}", if i == 0 { "<- First Chunk" } else { "" })?;
            for (name, v) in NAMES.iter().zip(vals) {
                p(out, name, *v)?;
            }
            writeln!(out)?;
        }
        Ok(())
    }
}

/// An integer type that per-CPU operations work on: every operation is a
/// single load, store or atomic read-modify-write of the slot.
///
/// # Safety
/// Implementors' `ALIGN` is at least the alignment of the atomic type the
/// operations use, and the all-zero bit pattern is a valid value.
pub unsafe trait PercpuInt: Copy + Eq + Default + Send + Sync + fmt::Debug + 'static {
    /// Alignment of per-CPU slots of this type.
    const ALIGN: usize;
    /// 1.
    const ONE: Self;
    /// Wrapping addition.
    fn wrapping_add(self, o: Self) -> Self;
    /// Wrapping negation.
    fn wrapping_neg(self) -> Self;
    /// Atomic load.
    ///
    /// # Safety
    /// `p` is valid for reads and writes and aligned to `ALIGN`.
    unsafe fn load(p: *mut Self) -> Self;
    /// Atomic store.
    ///
    /// # Safety
    /// As `load`.
    unsafe fn store(p: *mut Self, v: Self);
    /// Atomic wrapping add, returning the old value.
    ///
    /// # Safety
    /// As `load`.
    unsafe fn fetch_add(p: *mut Self, v: Self) -> Self;
    /// Atomic exchange, returning the old value.
    ///
    /// # Safety
    /// As `load`.
    unsafe fn swap(p: *mut Self, v: Self) -> Self;
    /// Atomic compare-and-exchange, returning the old value.
    ///
    /// # Safety
    /// As `load`.
    unsafe fn cmpxchg(p: *mut Self, old: Self, new: Self) -> Self;
}

macro_rules! percpu_int {
    ($($t:ty => $a:ty),* $(,)?) => {$(
        // SAFETY: ALIGN is the atomic type's alignment; zero is a valid integer.
        unsafe impl PercpuInt for $t {
            const ALIGN: usize = core::mem::align_of::<$a>();
            const ONE: Self = 1;
            fn wrapping_add(self, o: Self) -> Self {
                <$t>::wrapping_add(self, o)
            }
            fn wrapping_neg(self) -> Self {
                <$t>::wrapping_neg(self)
            }
            unsafe fn load(p: *mut Self) -> Self {
                // SAFETY: valid and aligned for the atomic type (contract).
                unsafe { <$a>::from_ptr(p) }.load(Ordering::Relaxed)
            }
            unsafe fn store(p: *mut Self, v: Self) {
                // SAFETY: as above.
                unsafe { <$a>::from_ptr(p) }.store(v, Ordering::Relaxed)
            }
            unsafe fn fetch_add(p: *mut Self, v: Self) -> Self {
                // SAFETY: as above.
                unsafe { <$a>::from_ptr(p) }.fetch_add(v, Ordering::Relaxed)
            }
            unsafe fn swap(p: *mut Self, v: Self) -> Self {
                // SAFETY: as above.
                unsafe { <$a>::from_ptr(p) }.swap(v, Ordering::Relaxed)
            }
            unsafe fn cmpxchg(p: *mut Self, old: Self, new: Self) -> Self {
                // SAFETY: as above.
                match unsafe { <$a>::from_ptr(p) }.compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(v) | Err(v) => v,
                }
            }
        }
    )*};
}

percpu_int!(
    u8 => core::sync::atomic::AtomicU8,
    u16 => core::sync::atomic::AtomicU16,
    u32 => core::sync::atomic::AtomicU32,
    u64 => core::sync::atomic::AtomicU64,
    usize => core::sync::atomic::AtomicUsize,
    i8 => core::sync::atomic::AtomicI8,
    i16 => core::sync::atomic::AtomicI16,
    i32 => core::sync::atomic::AtomicI32,
    i64 => core::sync::atomic::AtomicI64,
    isize => core::sync::atomic::AtomicIsize,
);

/// A typed per-CPU integer of a machine: from [`Kmem::alloc_percpu`] (freed
/// on drop) or from a `DEFINE_PER_CPU` variable ([`PerCpuVar::on`]).
pub struct PerCpu<'a, T: PercpuInt, P: Platform> {
    k: &'a Kmem<P>,
    ptr: PercpuPtr<T>,
    owned: bool,
}

impl<'a, T: PercpuInt, P: Platform> PerCpu<'a, T, P> {
    /// The per-CPU pointer.
    pub fn as_ptr(&self) -> PercpuPtr<T> {
        self.ptr
    }

    /// Give up ownership: the caller must `free_percpu` the pointer.
    pub fn into_raw(self) -> PercpuPtr<T> {
        let p = self.ptr;
        core::mem::forget(self);
        p
    }

    /// Take ownership of a per-CPU allocation.
    ///
    /// # Safety
    /// `p` is a live allocation of `k` of at least `size_of::<T>()` bytes,
    /// aligned to `T::ALIGN`, owned by nobody else.
    pub unsafe fn from_raw(k: &'a Kmem<P>, p: PercpuPtr<T>) -> Self {
        PerCpu {
            k,
            ptr: p,
            owned: true,
        }
    }

    fn slot(&self, cpu: usize) -> *mut T {
        self.k.per_cpu_ptr(self.ptr, cpu)
    }

    /// `per_cpu(var, cpu)` read.
    pub fn read(&self, cpu: usize) -> T {
        // SAFETY: the slot is live while `self` is and aligned to T::ALIGN.
        unsafe { T::load(self.slot(cpu)) }
    }

    /// `per_cpu(var, cpu) = v`.
    pub fn write(&self, cpu: usize, v: T) {
        // SAFETY: as `read`.
        unsafe { T::store(self.slot(cpu), v) }
    }

    /// The wrapping sum over all possible CPUs.
    pub fn sum(&self) -> T {
        (0..self.k.nr_cpu_ids()).fold(T::default(), |s, c| s.wrapping_add(self.read(c)))
    }

    /// One preemption-safe operation on this CPU's slot.
    fn this_cpu_op(&self, op: impl FnOnce(*mut T) -> T) -> T {
        let cpu = self.k.platform.preempt_disable();
        let r = op(self.slot(cpu));
        self.k.platform.preempt_enable();
        r
    }

    /// `this_cpu_read`.
    pub fn this_cpu_read(&self) -> T {
        // SAFETY: live, aligned slot (see `read`).
        self.this_cpu_op(|p| unsafe { T::load(p) })
    }

    /// `this_cpu_write`.
    pub fn this_cpu_write(&self, v: T) {
        // SAFETY: as above.
        self.this_cpu_op(|p| unsafe {
            T::store(p, v);
            v
        });
    }

    /// `this_cpu_add`.
    pub fn this_cpu_add(&self, v: T) {
        self.this_cpu_add_return(v);
    }

    /// `this_cpu_sub`: adds `-v` (as the kernel's `-(typeof(pcp))(val)`).
    pub fn this_cpu_sub(&self, v: T) {
        self.this_cpu_add_return(v.wrapping_neg());
    }

    /// `this_cpu_inc`.
    pub fn this_cpu_inc(&self) {
        self.this_cpu_add(T::ONE);
    }

    /// `this_cpu_dec`.
    pub fn this_cpu_dec(&self) {
        self.this_cpu_sub(T::ONE);
    }

    /// `this_cpu_add_return`: the new value.
    pub fn this_cpu_add_return(&self, v: T) -> T {
        // SAFETY: as above.
        self.this_cpu_op(|p| unsafe { T::fetch_add(p, v) }.wrapping_add(v))
    }

    /// `this_cpu_sub_return`.
    pub fn this_cpu_sub_return(&self, v: T) -> T {
        self.this_cpu_add_return(v.wrapping_neg())
    }

    /// `this_cpu_xchg`: the old value.
    pub fn this_cpu_xchg(&self, v: T) -> T {
        // SAFETY: as above.
        self.this_cpu_op(|p| unsafe { T::swap(p, v) })
    }

    /// `this_cpu_cmpxchg`: the old value (the swap happened if it is `old`).
    pub fn this_cpu_cmpxchg(&self, old: T, new: T) -> T {
        // SAFETY: as above.
        self.this_cpu_op(|p| unsafe { T::cmpxchg(p, old, new) })
    }

    /// `__this_cpu_read` (caller has preemption disabled).
    pub fn __this_cpu_read(&self) -> T {
        self.read(self.k.platform.smp_processor_id())
    }

    /// `__this_cpu_write`.
    pub fn __this_cpu_write(&self, v: T) {
        self.write(self.k.platform.smp_processor_id(), v)
    }

    /// `__this_cpu_add_return`: a plain read-modify-write (load, then store).
    pub fn __this_cpu_add_return(&self, v: T) -> T {
        let cpu = self.k.platform.smp_processor_id();
        let n = self.read(cpu).wrapping_add(v);
        self.write(cpu, n);
        n
    }

    /// `__this_cpu_add`.
    pub fn __this_cpu_add(&self, v: T) {
        self.__this_cpu_add_return(v);
    }

    /// `__this_cpu_sub`.
    pub fn __this_cpu_sub(&self, v: T) {
        self.__this_cpu_add_return(v.wrapping_neg());
    }

    /// `__this_cpu_sub_return`.
    pub fn __this_cpu_sub_return(&self, v: T) -> T {
        self.__this_cpu_add_return(v.wrapping_neg())
    }

    /// `__this_cpu_inc`.
    pub fn __this_cpu_inc(&self) {
        self.__this_cpu_add(T::ONE);
    }

    /// `__this_cpu_dec`.
    pub fn __this_cpu_dec(&self) {
        self.__this_cpu_sub(T::ONE);
    }

    /// `get_cpu_var(var)`: this CPU's copy with preemption disabled until
    /// the guard drops (`put_cpu_var`).
    pub fn get_cpu_var(&self) -> CpuVarGuard<'_, T, P> {
        let cpu = self.k.platform.preempt_disable();
        CpuVarGuard {
            k: self.k,
            slot: self.slot(cpu),
            cpu,
            _var: PhantomData,
        }
    }
}

impl<T: PercpuInt, P: Platform> Drop for PerCpu<'_, T, P> {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: we own the allocation and nothing derived from it
            // outlives `self` (slots are only reached through `self`).
            unsafe { self.k.free_percpu(self.ptr) };
        }
    }
}

/// This CPU's copy of a per-CPU variable, with preemption disabled
/// (`get_cpu_var`); dropping it is `put_cpu_var`.
pub struct CpuVarGuard<'a, T: PercpuInt, P: Platform> {
    k: &'a Kmem<P>,
    slot: *mut T,
    cpu: usize,
    _var: PhantomData<&'a T>,
}

impl<T: PercpuInt, P: Platform> CpuVarGuard<'_, T, P> {
    /// The CPU the caller is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// The value.
    pub fn get(&self) -> T {
        // SAFETY: the slot outlives the guard (it borrows the variable).
        unsafe { T::load(self.slot) }
    }

    /// Replace the value.
    pub fn set(&self, v: T) {
        // SAFETY: as `get`.
        unsafe { T::store(self.slot, v) }
    }
}

impl<T: PercpuInt, P: Platform> Drop for CpuVarGuard<'_, T, P> {
    fn drop(&mut self) {
        self.k.platform.preempt_enable();
    }
}

/// A `DEFINE_PER_CPU` variable: a static whose address names it; each
/// machine gives it an offset in its first chunk's static area on first use.
/// Initially zero on every CPU.
pub struct PerCpuVar<T: PercpuInt> {
    /// Makes the static non-zero-sized, so every variable has its own address.
    _id: u8,
    _t: PhantomData<fn() -> T>,
}

impl<T: PercpuInt> Default for PerCpuVar<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: PercpuInt> PerCpuVar<T> {
    /// A variable (use through `DEFINE_PER_CPU!`).
    pub const fn new() -> Self {
        PerCpuVar {
            _id: 0,
            _t: PhantomData,
        }
    }

    /// The variable on machine `k`.
    ///
    /// # Panics
    /// If the machine's static area (`PCPU_STATIC_SIZE`) or variable table
    /// is full, or the machine has no first chunk.
    pub fn on<'a, P: Platform>(&'static self, k: &'a Kmem<P>) -> PerCpu<'a, T, P> {
        let off = k.pcpu_static_offset(self as *const Self as usize, core::mem::size_of::<T>(), T::ALIGN);
        let base = k.percpu.first_base.load(Ordering::Acquire);
        PerCpu {
            k,
            ptr: PercpuPtr {
                cookie: base + off,
                _t: PhantomData,
            },
            owned: false,
        }
    }
}

/// `DEFINE_PER_CPU(type, name)`: `DEFINE_PER_CPU!(pub static NAME: u64);`
#[macro_export]
macro_rules! DEFINE_PER_CPU {
    ($vis:vis static $name:ident : $t:ty) => {
        $vis static $name: $crate::percpu::PerCpuVar<$t> = $crate::percpu::PerCpuVar::new();
    };
}

/// `DECLARE_PER_CPU(type, name)`: in Rust a declaration is an import of the
/// defining static: `DECLARE_PER_CPU!(some::module::NAME);`
#[macro_export]
macro_rules! DECLARE_PER_CPU {
    ($path:path) => {
        #[allow(unused_imports)]
        use $path;
    };
}

/// `per_cpu(var, cpu)` (read): `per_cpu!(machine, VAR, cpu)`.
#[macro_export]
macro_rules! per_cpu {
    ($k:expr, $var:expr, $cpu:expr) => {
        $var.on(&*$k).read($cpu)
    };
}
