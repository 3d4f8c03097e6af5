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
//!   marks what is allocated (`alloc_map`), and `bound_map` (one bit more)
//!   marks where each allocation starts and where it ends, as the kernel's:
//!   freeing finds the end as the next boundary bit. All of a chunk's
//!   metadata lives in one page of its own (`ChunkMeta`).
//! * **Hints, as the kernel's.** Each page-sized block of the bitmap
//!   (`PCPU_BITMAP_BLOCK_SIZE`) has a `pcpu_block_md`: the largest free run
//!   (`contig_hint` and its start), the free run touching its start
//!   (`left_free`) and its end (`right_free`), and its first free granule
//!   (`first_free`). A block's hints are recomputed from its 16 bitmap words
//!   when an allocation or free touches it; the chunk's own `chunk_md` (the
//!   same hints for the whole chunk, runs joined across blocks) is then
//!   recomputed from the eight blocks' hints. Finding room in a chunk
//!   (`pcpu_find_block_fit` + `pcpu_alloc_area`) first rejects the chunk
//!   unless its contig hint, aligned, holds the request (the kernel's early
//!   out, which may pass over an aligned fit in a smaller hole), then walks
//!   the blocks from the chunk's first free one: a free run carried over
//!   from earlier blocks plus this block's `left_free` is used directly,
//!   and only a block whose `contig_hint` can hold the request has its
//!   bitmap scanned (from its `first_free`). Blocks that cannot hold the
//!   request cost a few comparisons.
//! * **Chunks are on slot lists by their largest free area**
//!   (`pcpu_chunk_lists`): slot `max(fls(contig_bytes) - 5 + 2, 1)`, slot 0
//!   for full chunks and the last slot for entirely free ones. An
//!   allocation looks only at the slots that can hold it, in increasing
//!   order (the fullest chunks first), each list in order; a chunk of one
//!   of the smallest slots (`PCPU_SLOT_FAIL_THRESHOLD`) that fails is moved
//!   to slot 0; after every allocation and free a chunk whose slot changed
//!   moves, to the head of the list if it went up and to the tail if it
//!   went down (`pcpu_chunk_relocate`). `free_percpu` finds the chunk of a
//!   pointer in a hash table of chunks by unit-0 address (the kernel reads
//!   it from the page).
//! * **The first chunk** is allocated at boot. Its first [`PCPU_STATIC_SIZE`]
//!   bytes are the *static* area that holds `DEFINE_PER_CPU` variables
//!   ([`PerCpuVar`]): Rust has no linker section for per-CPU data, so each
//!   variable gets an offset in the static area of a machine the first time it
//!   is used on that machine. The rest of the first chunk is dynamic; the
//!   static area is hidden from the allocator as the kernel hides it
//!   (`start_offset`).
//! * **Dynamic chunks** are created when no existing chunk fits a request,
//!   for sleeping (`__GFP_DIRECT_RECLAIM`) requests only: atomic requests use
//!   existing chunks (the kernel's "atomic alloc failed, no space left").
//!   There is no limit on their number but memory. Chunks are fully
//!   populated when created (no lazy page population).
//! * **Freeing** (`free_percpu`, callable from atomic context) clears the
//!   bits. When a dynamic chunk becomes empty it is kept if it is the only
//!   empty dynamic chunk and released to the page allocator otherwise: the
//!   kernel's balance work frees fully empty chunks keeping one. The first
//!   chunk is never released. [`Kmem::pcpu_balance`] releases every empty
//!   dynamic chunk (the balance work run with nothing kept back).
//! * **Memory is zeroed on every CPU** when it is allocated.
//! * **Size of a chunk**: `nr_cpu_ids * PCPU_UNIT_SIZE` rounded up to a
//!   power-of-two block of pages, so machines of more than
//!   [`PCPU_MAX_CPUS`] (128) CPUs (an order above `MAX_PAGE_ORDER`) have no
//!   per-CPU memory; the boot log says so, and `kmem sim` refuses them.
//! * **Limits**: `size == 0`, `size > PCPU_MIN_UNIT_SIZE` (32 KiB),
//!   `align > PAGE_SIZE` or a non-power-of-two `align` give the kernel's
//!   warning and a failure.
//! * **Locking**: one spinlock (`pcpu_lock`) protects the slot lists, the
//!   hash table, every chunk's metadata and the counters. Pages are
//!   allocated and freed, and memory zeroed, without it.
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
//! [`Kmem::pcpu_nr_pages`]: the populated unit pages of every chunk, without
//! the chunks' metadata pages (as the kernel's `pcpu_nr_pages` leaves them
//! out).

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
/// Most CPUs a machine can have per-CPU memory for: a chunk (a unit per CPU)
/// is one block of the page allocator, at most `MAX_PAGE_ORDER` (4 MiB).
pub const PCPU_MAX_CPUS: usize = (PAGE_SIZE << crate::page::MAX_PAGE_ORDER) / PCPU_UNIT_SIZE;
/// Static area at the start of the first chunk, for `DEFINE_PER_CPU`.
pub const PCPU_STATIC_SIZE: usize = 8 << 10;
/// Most `DEFINE_PER_CPU` variables a machine can use.
pub const PCPU_MAX_STATIC_VARS: usize = 256;
/// Allocation failure warnings printed before "limit reached".
const PCPU_MAX_ALLOC_WARNINGS: u32 = 10;

/// Granules of a unit (`pcpu_chunk_map_bits`).
const BITS: usize = PCPU_UNIT_SIZE / PCPU_MIN_ALLOC_SIZE;
const WORDS: usize = BITS / 64;
const STATIC_BITS: usize = PCPU_STATIC_SIZE / PCPU_MIN_ALLOC_SIZE;
/// Granules of a hint block (`PCPU_BITMAP_BLOCK_BITS`: a page).
const BLOCK_BITS: usize = PAGE_SIZE / PCPU_MIN_ALLOC_SIZE;
const NR_BLOCKS: usize = BITS / BLOCK_BITS;

/// `PCPU_SLOT_BASE_SHIFT`: sizes 1..31 share a slot.
const PCPU_SLOT_BASE_SHIFT: usize = 5;
/// Chunks of slots below this that fail an allocation move to slot 0.
const PCPU_SLOT_FAIL_THRESHOLD: usize = 3;

/// `__pcpu_size_to_slot`.
const fn __pcpu_size_to_slot(size: usize) -> usize {
    let fls = (usize::BITS - size.leading_zeros()) as usize;
    if fls + 2 > PCPU_SLOT_BASE_SHIFT + 1 {
        fls + 2 - PCPU_SLOT_BASE_SHIFT
    } else {
        1
    }
}

/// `pcpu_free_slot`: chunks with nothing allocated.
const PCPU_FREE_SLOT: usize = __pcpu_size_to_slot(PCPU_UNIT_SIZE) + 1;
/// `pcpu_nr_slots`.
const PCPU_NR_SLOTS: usize = PCPU_FREE_SLOT + 1;
/// A chunk on no list.
const NO_SLOT: usize = usize::MAX;
/// Buckets of the chunk hash (by unit-0 address / unit size).
const PCPU_HASH: usize = 256;

/// `pcpu_size_to_slot`.
fn pcpu_size_to_slot(size: usize) -> usize {
    if size == PCPU_UNIT_SIZE {
        PCPU_FREE_SLOT
    } else {
        __pcpu_size_to_slot(size)
    }
}

/// `struct pcpu_block_md` (granules; `scan_hint` is not kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BlockMd {
    contig_hint: u32,
    contig_hint_start: u32,
    left_free: u32,
    right_free: u32,
    first_free: u32,
}

impl BlockMd {
    /// An entirely free area of `nr_bits` granules.
    const fn free(nr_bits: usize) -> Self {
        BlockMd {
            contig_hint: nr_bits as u32,
            contig_hint_start: 0,
            left_free: nr_bits as u32,
            right_free: nr_bits as u32,
            first_free: 0,
        }
    }

    /// `pcpu_check_block_hint`: the contig hint, aligned, holds `bits`.
    fn fits(&self, bits: usize, align: usize) -> bool {
        let start = self.contig_hint_start as usize;
        start.next_multiple_of(align) - start + bits <= self.contig_hint as usize
    }
}

/// A chunk's metadata, in a zeroed page of its own (`struct pcpu_chunk`).
#[repr(C)]
struct ChunkMeta {
    /// One bit per granule: allocated.
    alloc_map: [u64; WORDS],
    /// `BITS + 1` bits: an allocation starts here, or one ended just before.
    /// Bits of freed areas stay until an allocation covers them, as in the
    /// kernel; only a bit at an allocated granule is a live start.
    bound_map: [u64; WORDS + 1],
    md_blocks: [BlockMd; NR_BLOCKS],
    chunk_md: BlockMd,
    /// Linear address of unit 0.
    base: usize,
    /// Order of the page block holding the units.
    order: u32,
    /// Granules before this are not the allocator's (the static area).
    start_bits: usize,
    /// Free granules.
    free_bits: usize,
    /// Live allocations in the chunk.
    nr_alloc: usize,
    /// Largest allocation the chunk ever served.
    max_alloc_size: usize,
    /// The slot list the chunk is on, or `NO_SLOT`.
    list: usize,
    /// Neighbours on that list (metadata addresses, 0 at the ends).
    prev: usize,
    next: usize,
    /// Next chunk in the same hash bucket.
    hash_next: usize,
}

const _: () = assert!(core::mem::size_of::<ChunkMeta>() <= PAGE_SIZE);

/// The metadata of a chunk.
///
/// # Safety
/// `m` is the metadata page of a live chunk, and the caller holds the
/// percpu lock (or owns the chunk alone) and makes no other reference to
/// the same metadata while this one is used.
#[allow(clippy::mut_from_ref)]
unsafe fn meta<'a>(m: usize) -> &'a mut ChunkMeta {
    // SAFETY: caller's contract.
    unsafe { &mut *(m as *mut ChunkMeta) }
}

fn test_bit(map: &[u64], bit: usize) -> bool {
    map[bit / 64] & (1 << (bit % 64)) != 0
}

/// Set or clear the bits `[start, end)`, a word at a time.
fn set_range(map: &mut [u64], start: usize, end: usize, on: bool) {
    let mut bit = start;
    while bit < end {
        let lo = bit % 64;
        let n = (end - bit).min(64 - lo);
        let mask = if n == 64 { !0 } else { ((1u64 << n) - 1) << lo };
        if on {
            map[bit / 64] |= mask;
        } else {
            map[bit / 64] &= !mask;
        }
        bit += n;
    }
}

/// First bit in `[from, limit)` whose value is `val`, or `limit`.
fn find(map: &[u64], from: usize, limit: usize, val: bool) -> usize {
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

/// Last set bit below `limit`, if any.
fn find_last(map: &[u64], limit: usize) -> Option<usize> {
    let mut w = limit.div_ceil(64);
    while w > 0 {
        w -= 1;
        let mut v = map[w];
        if (w + 1) * 64 > limit {
            v &= (1u64 << (limit % 64)) - 1;
        }
        if v != 0 {
            return Some(w * 64 + 63 - v.leading_zeros() as usize);
        }
    }
    None
}

/// `pcpu_find_zero_area`: the first start in `[from, start_limit)` aligned
/// to `align` with `bits` free granules.
fn find_zero_area(map: &[u64], from: usize, start_limit: usize, bits: usize, align: usize) -> Option<usize> {
    let mut start = from;
    loop {
        start = find(map, start, BITS, false).next_multiple_of(align);
        if start >= start_limit || start + bits > BITS {
            return None;
        }
        let busy = find(map, start, start + bits, true);
        if busy == start + bits {
            return Some(start);
        }
        start = busy + 1;
    }
}

impl ChunkMeta {
    /// `pcpu_block_refresh_hint`: block `i`'s hints from its bitmap words.
    fn block_refresh(&mut self, i: usize) {
        let (s, e) = (i * BLOCK_BITS, (i + 1) * BLOCK_BITS);
        let map = &self.alloc_map;
        let first = find(map, s, e, false);
        let mut md = BlockMd {
            first_free: (first - s) as u32,
            ..BlockMd::default()
        };
        let mut bit = first;
        while bit < e {
            let end = find(map, bit, e, true);
            let run = (end - bit) as u32;
            if run > md.contig_hint {
                md.contig_hint = run;
                md.contig_hint_start = (bit - s) as u32;
            }
            if bit == s {
                md.left_free = run;
            }
            if end == e {
                md.right_free = run;
            }
            bit = find(map, end, e, false);
        }
        self.md_blocks[i] = md;
    }

    /// `pcpu_chunk_refresh_hint`: the chunk's contig hint and first free
    /// granule from its blocks' hints (free runs joined across block
    /// boundaries; the chunk's `left_free`/`right_free` are not used).
    fn chunk_refresh(&mut self) {
        let mut md = BlockMd {
            first_free: BITS as u32,
            ..BlockMd::default()
        };
        let (mut carry_start, mut carry) = (0usize, 0usize);
        let consider = |md: &mut BlockMd, run: usize, start: usize| {
            if run > md.contig_hint as usize {
                md.contig_hint = run as u32;
                md.contig_hint_start = start as u32;
            }
        };
        for (i, b) in self.md_blocks.iter().enumerate() {
            let bstart = i * BLOCK_BITS;
            if md.first_free as usize == BITS && (b.first_free as usize) < BLOCK_BITS {
                md.first_free = (bstart + b.first_free as usize) as u32;
            }
            if b.left_free as usize == BLOCK_BITS {
                if carry == 0 {
                    carry_start = bstart;
                }
                carry += BLOCK_BITS;
                continue;
            }
            let left_start = if carry > 0 { carry_start } else { bstart };
            consider(&mut md, carry + b.left_free as usize, left_start);
            consider(
                &mut md,
                b.contig_hint as usize,
                bstart + b.contig_hint_start as usize,
            );
            carry = b.right_free as usize;
            carry_start = bstart + BLOCK_BITS - carry;
        }
        consider(&mut md, carry, carry_start);
        self.chunk_md = md;
    }

    /// Refresh the hints of the blocks holding `[start, end)` and the chunk's.
    fn update_hints(&mut self, start: usize, end: usize) {
        for i in start / BLOCK_BITS..=(end - 1) / BLOCK_BITS {
            self.block_refresh(i);
        }
        self.chunk_refresh();
    }

    /// `pcpu_find_block_fit` + the bitmap search of `pcpu_alloc_area`: a
    /// start for `bits` granules aligned to `align`, if the chunk has one.
    fn find_fit(&self, bits: usize, align: usize) -> Option<usize> {
        if !self.chunk_md.fits(bits, align) {
            return None;
        }
        // The free run reaching the start of the current block.
        let (mut carry_start, mut carry) = (0usize, 0usize);
        for i in self.chunk_md.first_free as usize / BLOCK_BITS..NR_BLOCKS {
            let b = &self.md_blocks[i];
            let bstart = i * BLOCK_BITS;
            let left = b.left_free as usize;
            if carry > 0 && carry + left >= bits {
                let s = carry_start.next_multiple_of(align);
                if s + bits <= bstart + left {
                    return Some(s);
                }
            }
            if b.contig_hint as usize >= bits {
                let from = bstart + b.first_free as usize;
                if let Some(s) = find_zero_area(&self.alloc_map, from, bstart + BLOCK_BITS, bits, align) {
                    return Some(s);
                }
            }
            if left == BLOCK_BITS {
                if carry == 0 {
                    carry_start = bstart;
                }
                carry += BLOCK_BITS;
            } else {
                carry = b.right_free as usize;
                carry_start = bstart + BLOCK_BITS - carry;
            }
        }
        None
    }

    /// `pcpu_alloc_area` at a start `find_fit` returned.
    fn alloc_area(&mut self, start: usize, bits: usize) {
        set_range(&mut self.alloc_map, start, start + bits, true);
        set_range(&mut self.bound_map, start, start + 1, true);
        set_range(&mut self.bound_map, start + 1, start + bits, false);
        set_range(&mut self.bound_map, start + bits, start + bits + 1, true);
        self.free_bits -= bits;
        self.nr_alloc += 1;
        self.max_alloc_size = self.max_alloc_size.max(bits * PCPU_MIN_ALLOC_SIZE);
        self.update_hints(start, start + bits);
    }

    /// Whether `start` is the first granule of a live allocation.
    fn is_alloc_start(&self, start: usize) -> bool {
        start >= self.start_bits
            && start < BITS
            && test_bit(&self.bound_map, start)
            && test_bit(&self.alloc_map, start)
    }

    /// `pcpu_free_area` of the allocation starting at `start`: its granules.
    fn free_area(&mut self, start: usize) -> usize {
        let end = find(&self.bound_map, start + 1, BITS + 1, true);
        set_range(&mut self.alloc_map, start, end, false);
        self.free_bits += end - start;
        self.nr_alloc -= 1;
        self.update_hints(start, end);
        end - start
    }

    /// `pcpu_chunk_slot`.
    fn slot(&self) -> usize {
        if self.free_bits == 0 || self.chunk_md.contig_hint == 0 {
            0
        } else {
            pcpu_size_to_slot(self.chunk_md.contig_hint as usize * PCPU_MIN_ALLOC_SIZE)
        }
    }

    /// Unit pages without any allocated granule.
    fn empty_pages(&self) -> usize {
        let words_per_page = BLOCK_BITS / 64;
        self.alloc_map
            .chunks(words_per_page)
            .filter(|p| p.iter().all(|&w| w == 0))
            .count()
    }

    /// Walk the areas from `start_bits` to the last allocated granule as
    /// `chunk_map_stats` does: `f(allocated, granules)` per area.
    fn walk_areas(&self, mut f: impl FnMut(bool, usize)) {
        let last = find_last(&self.alloc_map, BITS).map_or(0, |b| b + 1);
        let mut start = self.start_bits;
        while start < last {
            let alloc = test_bit(&self.alloc_map, start);
            let end = if alloc {
                find(&self.bound_map, start + 1, last, true)
            } else {
                find(&self.alloc_map, start + 1, last, true)
            };
            f(alloc, end - start);
            start = end;
        }
    }

    /// `chunk_map_stats`: sum_frag, max_frag, cur_min_alloc, cur_med_alloc
    /// and cur_max_alloc in bytes. The median is the kernel's (the lower
    /// one), found by bisection over sizes rather than by sorting.
    fn map_stats(&self) -> [usize; 5] {
        let g = PCPU_MIN_ALLOC_SIZE;
        let (mut sum_frag, mut max_frag, mut n, mut min, mut max) = (0, 0, 0usize, usize::MAX, 0);
        self.walk_areas(|alloc, len| {
            if alloc {
                n += 1;
                min = min.min(len);
                max = max.max(len);
            } else {
                sum_frag += len;
                max_frag = max_frag.max(len);
            }
        });
        if n == 0 {
            return [sum_frag * g, max_frag * g, 0, 0, 0];
        }
        // The smallest size with more than (n - 1) / 2 allocations at or below it.
        let k = (n - 1) / 2;
        let (mut lo, mut hi) = (min, max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let mut below = 0;
            self.walk_areas(|alloc, len| below += (alloc && len <= mid) as usize);
            if below > k {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        [sum_frag * g, max_frag * g, min * g, lo * g, max * g]
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

/// The allocator's index structures, under `pcpu_lock`.
struct PcpuInner {
    /// Metadata address of the first chunk (0 before `percpu_init`).
    first: usize,
    /// `pcpu_chunk_lists`: heads and tails of the slot lists.
    heads: [usize; PCPU_NR_SLOTS],
    tails: [usize; PCPU_NR_SLOTS],
    /// Chunks by `base / PCPU_UNIT_SIZE`, chained through `hash_next`.
    hash: [usize; PCPU_HASH],
    stats: PcpuStats,
    /// Bytes of the static area handed to `DEFINE_PER_CPU` variables.
    static_used: usize,
    alloc_warnings: u32,
}

impl PcpuInner {
    /// Take chunk `m` off its slot list.
    fn list_del(&mut self, m: usize) {
        // SAFETY: `m` and its neighbours are live chunks on our lists; the
        // lock is held (`&mut self`); one reference at a time.
        let (slot, prev, next) = unsafe {
            let c = meta(m);
            let r = (c.list, c.prev, c.next);
            (c.list, c.prev, c.next) = (NO_SLOT, 0, 0);
            r
        };
        if slot == NO_SLOT {
            return;
        }
        if prev == 0 {
            self.heads[slot] = next;
        } else {
            // SAFETY: as above.
            unsafe { meta(prev).next = next };
        }
        if next == 0 {
            self.tails[slot] = prev;
        } else {
            // SAFETY: as above.
            unsafe { meta(next).prev = prev };
        }
    }

    /// `__pcpu_chunk_move`: put chunk `m` at the head (`front`) or the tail
    /// of list `slot`.
    fn chunk_move(&mut self, m: usize, slot: usize, front: bool) {
        self.list_del(m);
        let (head, tail) = (self.heads[slot], self.tails[slot]);
        // SAFETY: as in `list_del`.
        unsafe {
            let c = meta(m);
            c.list = slot;
            if front {
                (c.prev, c.next) = (0, head);
            } else {
                (c.prev, c.next) = (tail, 0);
            }
        }
        if front {
            match head {
                0 => self.tails[slot] = m,
                // SAFETY: as in `list_del`.
                h => unsafe { meta(h).prev = m },
            }
            self.heads[slot] = m;
        } else {
            match tail {
                0 => self.heads[slot] = m,
                // SAFETY: as in `list_del`.
                t => unsafe { meta(t).next = m },
            }
            self.tails[slot] = m;
        }
    }

    /// `pcpu_chunk_relocate`: after a change, move chunk `m` to the list of
    /// its slot if that is not `oslot` (the slot it had before).
    fn relocate(&mut self, m: usize, oslot: usize) {
        // SAFETY: as in `list_del`.
        let nslot = unsafe { meta(m) }.slot();
        if oslot != nslot {
            self.chunk_move(m, nslot, oslot == NO_SLOT || oslot < nslot);
        }
    }

    fn hash_bucket(base: usize) -> usize {
        (base / PCPU_UNIT_SIZE) % PCPU_HASH
    }

    fn hash_add(&mut self, m: usize) {
        // SAFETY: as in `list_del`.
        let c = unsafe { meta(m) };
        let b = Self::hash_bucket(c.base);
        c.hash_next = self.hash[b];
        self.hash[b] = m;
    }

    fn hash_del(&mut self, m: usize) {
        // SAFETY: as in `list_del`.
        let (base, next) = unsafe {
            let c = meta(m);
            (c.base, c.hash_next)
        };
        let b = Self::hash_bucket(base);
        if self.hash[b] == m {
            self.hash[b] = next;
            return;
        }
        let mut p = self.hash[b];
        while p != 0 {
            // SAFETY: as in `list_del`.
            let pm = unsafe { meta(p) };
            if pm.hash_next == m {
                pm.hash_next = next;
                return;
            }
            p = pm.hash_next;
        }
    }

    /// `pcpu_chunk_addr_search`: the chunk whose unit 0 holds `addr`.
    fn chunk_of(&self, addr: usize) -> Option<usize> {
        // Unit 0 starts at most a unit below `addr`: two buckets to look in.
        let h = addr / PCPU_UNIT_SIZE;
        for b in [h, h.wrapping_sub(1)] {
            let mut p = self.hash[b % PCPU_HASH];
            while p != 0 {
                // SAFETY: as in `list_del` (shared use only).
                let c = unsafe { meta(p) };
                if addr >= c.base && addr - c.base < PCPU_UNIT_SIZE {
                    return Some(p);
                }
                p = c.hash_next;
            }
        }
        None
    }
}

/// A machine's per-CPU allocator state (a field of [`Kmem`]).
pub struct PercpuState {
    inner: SpinLock<PcpuInner>,
    /// Populated unit pages (`pcpu_nr_pages`; not the metadata pages).
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
                first: 0,
                heads: [0; PCPU_NR_SLOTS],
                tails: [0; PCPU_NR_SLOTS],
                hash: [0; PCPU_HASH],
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
        let Some(m) = self.pcpu_create_chunk(GFP_KERNEL) else {
            if self.nr_cpus > PCPU_MAX_CPUS {
                crate::pr!(
                    self,
                    "percpu: failed to allocate the first chunk: {} CPUs of {} KiB is more than the largest block (at most {} CPUs)",
                    self.nr_cpus,
                    PCPU_UNIT_SIZE >> 10,
                    PCPU_MAX_CPUS
                );
            } else {
                crate::pr!(self, "percpu: failed to allocate the first chunk");
            }
            return;
        };
        // SAFETY: a new chunk nobody else sees yet.
        let c = unsafe { meta(m) };
        // Hide the static area from the allocator (the kernel's start_offset).
        set_range(&mut c.alloc_map, 0, STATIC_BITS, true);
        c.start_bits = STATIC_BITS;
        c.free_bits = BITS - STATIC_BITS;
        c.update_hints(0, STATIC_BITS);
        let base = c.base;
        let mut g = self.percpu.inner.lock(&self.platform);
        g.first = m;
        g.hash_add(m);
        g.relocate(m, NO_SLOT);
        self.percpu.first_base.store(base, Ordering::Release);
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

    /// `pcpu_create_chunk`: allocate a chunk's units and metadata page
    /// (unlocked). Returns the metadata address; the chunk is on no list.
    fn pcpu_create_chunk(&self, gfp: Gfp) -> Option<usize> {
        let order = get_order(self.nr_cpus * PCPU_UNIT_SIZE);
        let gfp = Gfp(gfp.bits() & GFP_KERNEL.bits()) | __GFP_NOWARN;
        let base = self.__get_free_pages(gfp, order).ok()?;
        let m = match self.__get_free_pages(gfp | __GFP_ZERO, 0) {
            Ok(m) => m.as_ptr() as usize,
            Err(_) => {
                // SAFETY: just allocated with this order, never handed out.
                unsafe { self.free_pages(base.as_ptr() as usize, order) };
                return None;
            }
        };
        self.percpu.nr_pages.fetch_add(1 << order, Ordering::Relaxed);
        // SAFETY: a zeroed page of ours, page aligned, big enough (asserted).
        let c = unsafe { meta(m) };
        c.base = base.as_ptr() as usize;
        c.order = order;
        c.free_bits = BITS;
        c.md_blocks = [BlockMd::free(BLOCK_BITS); NR_BLOCKS];
        c.chunk_md = BlockMd::free(BITS);
        c.list = NO_SLOT;
        Some(m)
    }

    /// `pcpu_destroy_chunk`: give a chunk (off every list and the hash, with
    /// nothing allocated) back to the page allocator.
    fn pcpu_destroy_chunk(&self, m: usize) {
        // SAFETY: the chunk is unreachable now: ours alone.
        let (base, order) = unsafe {
            let c = meta(m);
            (c.base, c.order)
        };
        self.percpu.nr_pages.fetch_sub(1 << order, Ordering::Relaxed);
        // SAFETY: both blocks were allocated by `pcpu_create_chunk` with these
        // orders and the chunk is unreachable, so nothing uses them.
        unsafe {
            self.free_pages(m, 0);
            self.free_pages(base, order);
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

    /// `__alloc_percpu_gfp` (`pcpu_alloc`): `size` bytes aligned to `align`
    /// on every CPU, zeroed. Without `__GFP_DIRECT_RECLAIM` only existing
    /// chunks are used.
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
            if let Some((base, off)) = Self::pcpu_alloc_locked(&mut g, size, bits, align_bits) {
                drop(g);
                for cpu in 0..self.nr_cpus {
                    let p = (base + cpu * PCPU_UNIT_SIZE + off) as *mut u8;
                    // SAFETY: `[off, off + size)` of every unit lies inside
                    // the chunk's page block and was just reserved for us.
                    unsafe { core::ptr::write_bytes(p, 0, size) };
                }
                return Ok(PercpuPtr {
                    cookie: base + off,
                    _t: PhantomData,
                });
            }
            drop(g);
            if atomic {
                return self.pcpu_alloc_fail(size, align, true, "atomic alloc failed, no space left", gfp);
            }
            let Some(new) = self.pcpu_create_chunk(gfp) else {
                return self.pcpu_alloc_fail(size, align, false, "failed to allocate new chunk", gfp);
            };
            let mut g = self.percpu.inner.lock(&self.platform);
            g.hash_add(new);
            g.relocate(new, NO_SLOT);
            g.stats.nr_chunks += 1;
            g.stats.nr_max_chunks = g.stats.nr_max_chunks.max(g.stats.nr_chunks);
        }
    }

    /// The search of `pcpu_alloc` under the lock: the slots that can hold
    /// `size`, fullest first. Returns the chunk's unit-0 address and the
    /// offset of the area, accounted.
    fn pcpu_alloc_locked(
        g: &mut PcpuInner,
        size: usize,
        bits: usize,
        align: usize,
    ) -> Option<(usize, usize)> {
        for slot in pcpu_size_to_slot(size)..=PCPU_FREE_SLOT {
            let mut m = g.heads[slot];
            while m != 0 {
                // SAFETY: a live chunk on our list; the lock is held.
                let c = unsafe { meta(m) };
                let next = c.next;
                match c.find_fit(bits, align) {
                    None => {
                        if slot < PCPU_SLOT_FAIL_THRESHOLD {
                            g.chunk_move(m, 0, true);
                        }
                    }
                    Some(start) => {
                        let oslot = c.slot();
                        c.alloc_area(start, bits);
                        let base = c.base;
                        g.relocate(m, oslot);
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
                        return Some((base, start * PCPU_MIN_ALLOC_SIZE));
                    }
                }
                m = next;
            }
        }
        None
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
        let mut g = self.percpu.inner.lock(&self.platform);
        let Some(m) = g.chunk_of(addr) else {
            drop(g);
            self.warn(format_args!("percpu: free_percpu of unknown pointer {addr:#x}"));
            return;
        };
        // SAFETY: a live chunk of ours; the lock is held.
        let c = unsafe { meta(m) };
        let off = addr - c.base;
        let start = off / PCPU_MIN_ALLOC_SIZE;
        if !off.is_multiple_of(PCPU_MIN_ALLOC_SIZE) || !c.is_alloc_start(start) {
            drop(g);
            self.warn(format_args!("percpu: invalid free_percpu({addr:#x})"));
            return;
        }
        let oslot = c.slot();
        c.free_area(start);
        let empty = c.nr_alloc == 0;
        g.relocate(m, oslot);
        g.stats.nr_dealloc += 1;
        g.stats.nr_cur_alloc -= 1;
        // An empty dynamic chunk is on the free slot's list now: release it
        // if another empty chunk is kept there.
        let free_list_has_another = g.heads[PCPU_FREE_SLOT] != m || g.tails[PCPU_FREE_SLOT] != m;
        if empty && m != g.first && free_list_has_another {
            g.list_del(m);
            g.hash_del(m);
            g.stats.nr_chunks -= 1;
            drop(g);
            self.pcpu_destroy_chunk(m);
        }
    }

    /// The balance work run to completion: release every empty dynamic chunk.
    pub fn pcpu_balance(&self) {
        loop {
            let m = {
                let mut g = self.percpu.inner.lock(&self.platform);
                let m = g.heads[PCPU_FREE_SLOT];
                if m == 0 || m == g.first {
                    return;
                }
                g.list_del(m);
                g.hash_del(m);
                g.stats.nr_chunks -= 1;
                m
            };
            self.pcpu_destroy_chunk(m);
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

    /// The text of debugfs `percpu_stats` (`CONFIG_PERCPU_STATS`), printed
    /// under the lock as the kernel does; chunks in slot-list order.
    pub fn percpu_stats_show(&self, out: &mut dyn Write) -> fmt::Result {
        fn p(out: &mut dyn Write, name: &str, v: u64) -> fmt::Result {
            writeln!(out, "  {name:<20}: {v:>12}")
        }
        const DASHES: &str = "----------------------------------------";
        let g = self.percpu.inner.lock(&self.platform);
        let s = g.stats;
        let mut empty_total = 0usize;
        for slot in 0..PCPU_NR_SLOTS {
            let mut m = g.heads[slot];
            while m != 0 {
                // SAFETY: a live chunk on our list; the lock is held.
                let c = unsafe { meta(m) };
                empty_total += c.empty_pages();
                m = c.next;
            }
        }
        // `pcpu_build_alloc_info`: the unit size rounded up to the atom (a
        // page here, where chunks are pages of the buddy allocator).
        let alloc_size = PCPU_UNIT_SIZE.next_multiple_of(PAGE_SIZE) as u64;
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
        // `pcpu_stats_save_ai` starts the minimum at the unit size (kept as
        // 0 here, so the state starts as zero bytes).
        let min_alloc_size = if s.min_alloc_size == 0 {
            PCPU_UNIT_SIZE as u64
        } else {
            s.min_alloc_size
        };
        p(out, "min_alloc_size", min_alloc_size)?;
        p(out, "max_alloc_size", s.max_alloc_size)?;
        p(out, "empty_pop_pages", empty_total as u64)?;
        writeln!(out)?;
        writeln!(out, "Per Chunk Stats:")?;
        writeln!(out, "{DASHES}")?;
        for slot in 0..PCPU_NR_SLOTS {
            let mut m = g.heads[slot];
            while m != 0 {
                // SAFETY: a live chunk on our list; the lock is held.
                let c = unsafe { meta(m) };
                if m == g.first {
                    writeln!(out, "Chunk: <- First Chunk")?;
                } else {
                    writeln!(out, "Chunk:")?;
                }
                let [sum_frag, max_frag, cur_min, cur_med, cur_max] = c.map_stats();
                let gr = PCPU_MIN_ALLOC_SIZE;
                for (name, v) in [
                    ("nr_alloc", c.nr_alloc),
                    ("max_alloc_size", c.max_alloc_size),
                    ("empty_pop_pages", c.empty_pages()),
                    ("first_bit", c.chunk_md.first_free as usize),
                    ("free_bytes", c.free_bits * gr),
                    ("contig_bytes", c.chunk_md.contig_hint as usize * gr),
                    ("sum_frag", sum_frag),
                    ("max_frag", max_frag),
                    ("cur_min_alloc", cur_min),
                    ("cur_med_alloc", cur_med),
                    ("cur_max_alloc", cur_max),
                ] {
                    p(out, name, v as u64)?;
                }
                writeln!(out)?;
                m = c.next;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    /// `Kmem::setup_arch` leaves the per-CPU state as the boot memory's zero
    /// bytes instead of writing `PercpuState::new()`: the two must agree.
    #[test]
    fn the_initial_state_is_all_zeroes() {
        // Every field by name, so that a new one must be added here too.
        let mut st = PercpuState::new();
        assert!(!st.inner.is_locked());
        let PercpuState {
            inner,
            nr_pages,
            first_base,
            static_keys,
            static_offs,
        } = &mut st;
        let PcpuInner {
            first,
            heads,
            tails,
            hash,
            stats,
            static_used,
            alloc_warnings,
        } = inner.get_mut();
        let PcpuStats {
            nr_alloc,
            nr_dealloc,
            nr_cur_alloc,
            nr_max_alloc,
            nr_chunks,
            nr_max_chunks,
            min_alloc_size,
            max_alloc_size,
        } = stats;
        assert_eq!((*first, *static_used, *alloc_warnings), (0, 0, 0));
        assert!(heads
            .iter()
            .chain(tails.iter())
            .chain(hash.iter())
            .all(|&x| x == 0));
        assert_eq!(
            [
                *nr_alloc,
                *nr_dealloc,
                *nr_cur_alloc,
                *nr_max_alloc,
                *nr_chunks,
                *nr_max_chunks
            ],
            [0; 6]
        );
        assert_eq!((*min_alloc_size, *max_alloc_size), (0, 0));
        assert_eq!(
            (
                nr_pages.load(Ordering::Relaxed),
                first_base.load(Ordering::Relaxed)
            ),
            (0, 0)
        );
        assert!(static_keys
            .iter()
            .chain(static_offs.iter())
            .all(|x| x.load(Ordering::Relaxed) == 0));
    }

    /// A fresh chunk's metadata on the heap.
    fn chunk() -> Box<ChunkMeta> {
        // SAFETY: every field of ChunkMeta is an integer or an array of them: all-zero is valid.
        let mut c: Box<ChunkMeta> = unsafe { Box::new(core::mem::zeroed()) };
        c.free_bits = BITS;
        c.md_blocks = [BlockMd::free(BLOCK_BITS); NR_BLOCKS];
        c.chunk_md = BlockMd::free(BITS);
        c.list = NO_SLOT;
        c
    }

    /// Hints recomputed from the bitmap alone, by brute force.
    fn brute_hints(c: &ChunkMeta) -> (usize, usize, usize) {
        let free = |b: usize| !test_bit(&c.alloc_map, b);
        let first = (0..BITS).find(|&b| free(b)).unwrap_or(BITS);
        let (mut best, mut best_start, mut run, mut run_start) = (0, 0, 0, 0);
        for b in 0..BITS {
            if free(b) {
                if run == 0 {
                    run_start = b;
                }
                run += 1;
                if run > best {
                    (best, best_start) = (run, run_start);
                }
            } else {
                run = 0;
            }
        }
        (first, best, best_start)
    }

    /// The first aligned fit, by brute force.
    fn brute_fit(c: &ChunkMeta, bits: usize, align: usize) -> Option<usize> {
        (0..BITS)
            .step_by(align)
            .find(|&s| s + bits <= BITS && (s..s + bits).all(|b| !test_bit(&c.alloc_map, b)))
    }

    #[test]
    fn hints_and_fits_match_the_bitmap() {
        let mut c = chunk();
        let mut live: Vec<usize> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for step in 0..4_000 {
            if live.is_empty() || rnd(3) != 0 {
                let bits = 1 + if rnd(4) == 0 { rnd(2048) } else { rnd(64) };
                let align = 1 << rnd(9);
                let got = c.find_fit(bits, align);
                let brute = brute_fit(&c, bits, align);
                // The chunk-level early out may pass over an aligned fit in
                // a smaller hole (as the kernel's); past it, the block walk
                // always finds one.
                if c.chunk_md.fits(bits, align) {
                    assert!(got.is_some(), "step {step}: missed a fit of {bits}/{align}");
                } else {
                    assert!(got.is_none());
                }
                assert!(got.is_none() || brute.is_some());
                if let Some(s) = got {
                    assert_eq!(s % align, 0);
                    assert!((s..s + bits).all(|b| !test_bit(&c.alloc_map, b)), "overlap");
                    c.alloc_area(s, bits);
                    live.push(s);
                }
            } else {
                let s = live.swap_remove(rnd(live.len()));
                assert!(c.is_alloc_start(s));
                c.free_area(s);
                assert!(!c.is_alloc_start(s));
            }
            let (first, contig, start) = brute_hints(&c);
            assert_eq!(c.chunk_md.first_free as usize, first, "step {step}");
            assert_eq!(c.chunk_md.contig_hint as usize, contig, "step {step}");
            assert_eq!(c.chunk_md.contig_hint_start as usize, start, "step {step}");
            let used: usize = (0..BITS).filter(|&b| test_bit(&c.alloc_map, b)).count();
            assert_eq!(c.free_bits, BITS - used);
            assert_eq!(c.nr_alloc, live.len());
        }
    }

    #[test]
    fn slots_follow_the_kernel() {
        assert_eq!(__pcpu_size_to_slot(4), 1);
        assert_eq!(__pcpu_size_to_slot(15), 1);
        assert_eq!(__pcpu_size_to_slot(31), 2);
        assert_eq!(__pcpu_size_to_slot(32), 3);
        assert_eq!(__pcpu_size_to_slot(4096), 10);
        assert_eq!(pcpu_size_to_slot(PCPU_UNIT_SIZE), PCPU_FREE_SLOT);
        assert_eq!(PCPU_FREE_SLOT, __pcpu_size_to_slot(PCPU_UNIT_SIZE) + 1);
    }
}
