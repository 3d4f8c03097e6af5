//! Memory pools (`mm/mempool.c`): guaranteed, deadlock-free allocations
//! under extreme memory pressure.
//!
//! A mempool is a reserve of `min_nr` preallocated elements in front of any
//! allocator (a slab cache, kmalloc of a fixed size, pages of an order, or
//! callbacks of the user's own). Its promise: a caller that may sleep always
//! gets an element eventually, even when the machine has no free memory at
//! all, because every element it hands out from the reserve comes back to the
//! reserve when it is freed. Block I/O is the classic user: writing dirty
//! pages out needs memory (bios, requests) exactly when memory is short.
//!
//! **Allocation** (`mempool_alloc`) tries the underlying allocator *first*,
//! without direct reclaim and without I/O (`gfp_temp`), so a healthy machine
//! never touches the reserve. If that fails it takes the last element of the
//! reserve (a LIFO array, `elements[--curr_nr]`). If the reserve is empty too
//! it retries the allocator once more with the caller's full mask (reclaim and
//! I/O allowed), and only then gives up: atomic callers (no
//! `__GFP_DIRECT_RECLAIM`) get NULL; sleeping callers wait on the pool's wait
//! word until a `mempool_free` refills the reserve or five seconds pass, and
//! start over. The mask always gains `__GFP_NOMEMALLOC | __GFP_NORETRY |
//! __GFP_NOWARN`: the pool is the emergency reserve, so the allocator must
//! not dig into the machine's own, loop, or warn.
//!
//! **Freeing** (`mempool_free`) refills the reserve before it gives anything
//! back: if `curr_nr < min_nr` the element goes into the reserve and waiters
//! are woken; otherwise it goes back to the allocator. The test is made first
//! without the lock (`curr_nr` is read with an acquire fence, the kernel's
//! `smp_rmb()` paired with the `smp_wmb()` after a reserve allocation, so the
//! value seen is at least as new as the allocation of the element being
//! freed) and repeated under the lock. The unlocked test is enough for
//! correctness: a task that took the reserve below `min_nr` leaves
//! `curr_nr < min_nr` visible to the free of its element unless the reserve
//! was refilled in between, so waiters — who exist only while the reserve is
//! empty — are always woken by some free.
//!
//! **Waiting without lost wake-ups.** The kernel calls `prepare_to_wait`
//! while it still holds the pool lock, then unlocks and sleeps. Here the wait
//! queue is a futex word, `wait_seq`: the waiter reads it and counts itself in
//! `nr_waiters` under the lock, unlocks and sleeps while the word still holds
//! what it read. A free adds its element under the same lock, so it either
//! came before the waiter's locked section (and the waiter found the element)
//! or after it (and then it sees the waiter, bumps the word after unlocking
//! and wakes everyone, so the sleep either returns at once or is woken).
//! Like the kernel's `wake_up` of non-exclusive waiters, every waiter wakes
//! and races for the element; the losers sleep again.
//!
//! **Locking.** `lock` (a spinlock with interrupts masked, as
//! `spin_lock_irqsave`) protects the element array; `curr_nr` and `min_nr`
//! (and `free_direct`, which follows them) change only under it but are
//! atomics so that `mempool_free` can peek without it. The callbacks are
//! never called with the lock held: they may sleep, and `mempool_resize`
//! drops the lock around each one.
//!
//! **Differences from the kernel.** The pool keeps statistics
//! ([`MempoolStats`]). The events of the slow paths (reserve hits and
//! refills, failures, waits) are rare and counted with shared atomics. The
//! two fast paths (`alloc_backing`, `free_backing`) are counted too unless
//! the pool is told not to ([`Mempool::set_fast_path_stats`]), and from
//! those counts it derives the elements outstanding (handed out and not yet
//! freed), so `mempool_destroy` reports a pool destroyed with elements
//! outstanding with a WARN instead of leaving it to the caller. A sleeping
//! mask from atomic context (`might_alloc`) is reported on the slow path only,
//! as the slab allocator reports it: the first try neither reclaims nor
//! waits, so it is harmless there. The ready-made pools need the machine, so
//! their `pool_data` is a small kmalloc'd [`MempoolCtx`] (machine and
//! cache/size/order) owned and freed by the pool, and the callbacks are
//! generic over the platform (`mempool_kmalloc::<P>`). The callback types
//! are `unsafe fn`s: they receive `pool_data` as a raw pointer. Reserve
//! poisoning (`CONFIG_SLUB_DEBUG_ON`) is not done.
//!
//! **The fast path.** The kernel's fast path (the allocator succeeds; a free
//! finds the reserve full) has no counter and no lock, only two indirect
//! calls. Ours has no indirect call either for the ready-made slab, kmalloc
//! and page pools of a machine: a `Backing` tag is checked before the
//! function pointers (which remain for pools with callbacks of their own), so
//! the cache, kmalloc or the page allocator is called inline.
//!
//! A pool that counts its fast paths (the default) counts them in per-CPU
//! slots: a cache-line-sized slot per CPU in an array kmalloc'd with the
//! pool, bumped with a plain add inside a restartable sequence when the
//! machine's fast paths use rseq (the add is the commit, so a preempted or
//! migrated thread retries and no update is lost; a thread without a
//! registered rseq area uses a shared atomic instead), and with an
//! uncontended atomic add on the slot of `raw_smp_processor_id()`
//! otherwise. Reading sums the slots; `outstanding` is `alloc_backing +
//! alloc_reserve - free_backing - free_reserve`. The two sequences cost
//! about half as much as the slab cache's own alloc/free pair.
//!
//! A slab or kmalloc pool that does not count them (the kernel's behaviour)
//! goes further: `direct` holds the machine's address (plus the kind of
//! allocator), so `mempool_alloc` needs one comparison to know that the
//! pool is of the calling machine, what to call and that there is nothing to
//! count, and then calls `kmem_cache_alloc`/`kmalloc` inline. On the free
//! side `free_direct` holds the same value while `curr_nr >= min_nr` and 0
//! otherwise (it is stored under the lock with every change of `curr_nr` or
//! `min_nr`), so the unlocked peek at the reserve and the dispatch are one
//! load and one comparison, and a full reserve goes straight to
//! `kmem_cache_free`/`kfree`. Everything else (a short reserve, other pools,
//! other machines) takes the general path.

use crate::gfp::*;
use crate::page::Page;
use crate::platform::Platform;
use crate::slab::{CtorKind, KmemCache};
use crate::spinlock::SpinLock;
use crate::{AllocError, Kmem};
use core::fmt::{self, Write};
use core::mem;
use core::ptr::{self, NonNull};
use core::sync::atomic::{fence, AtomicU32, AtomicUsize, Ordering};

/// `mempool_alloc_t`: allocate one element with `gfp`, or return NULL.
///
/// Called with the pool's `pool_data` and without the pool lock held.
pub type MempoolAllocFn = unsafe fn(gfp: Gfp, pool_data: *mut ()) -> *mut u8;

/// `mempool_free_t`: free one element that `alloc_fn` returned.
pub type MempoolFreeFn = unsafe fn(element: *mut u8, pool_data: *mut ());

/// How long a sleeping `mempool_alloc` waits for a free before it tries the
/// allocator again (`io_schedule_timeout(5*HZ)`).
pub const MEMPOOL_WAIT_NS: u64 = 5_000_000_000;

pub use crate::memblock::NUMA_NO_NODE;

/// `WARN_ON_ONCE` sites of this file (bits of the machine's warn-once mask).
const WARN_MEMPOOL_ZERO: u32 = 48;

const NAME_LEN: usize = 32;

/// The element array, protected by the pool lock.
///
/// # Invariants
/// `elements` points to `capacity` slots (kmalloc'd from the pool's machine,
/// or dangling when `capacity` is 0); the first `curr_nr` hold reserved
/// elements; `min_nr <= capacity` except transiently inside `mempool_resize`.
struct Reserve {
    elements: *mut *mut u8,
    capacity: usize,
}

/// A memory pool (`mempool_t`).
///
/// Create one with [`Kmem::mempool_create`] (or a ready-made pool:
/// [`Kmem::mempool_create_slab_pool`], [`Kmem::mempool_create_kmalloc_pool`],
/// [`Kmem::mempool_create_page_pool`]), or initialise one in place with
/// [`Kmem::mempool_init`]. For Rust code, [`typed::Mempool`] wraps it.
///
/// # Invariants
/// * `alloc_fn`/`free_fn` may be called with `pool_data` from any thread for
///   as long as the pool lives (the creator's promise).
/// * `curr_nr <= capacity`; `curr_nr` and `min_nr` change only under `lock`.
/// * `machine` is the `Kmem<P>` the array, the pool itself (if created with
///   `mempool_create`) and `ctx` were kmalloc'd from.
pub struct Mempool {
    lock: SpinLock<Reserve>,
    min_nr: AtomicUsize,
    curr_nr: AtomicUsize,
    pool_data: *mut (),
    alloc_fn: MempoolAllocFn,
    free_fn: MempoolFreeFn,
    /// The wait queue: a futex word bumped by frees that found waiters.
    wait_seq: AtomicU32,
    /// Tasks sleeping (or about to) on `wait_seq`; incremented under `lock`.
    nr_waiters: AtomicU32,
    /// The machine (type-erased `*const Kmem<P>`).
    machine: *const (),
    /// A context the pool owns and kfrees on destroy (ready-made pools), or null.
    ctx: *mut MempoolCtx,
    /// The ready-made allocator behind the callbacks, for direct dispatch.
    backing: Backing,
    /// Its argument (`MempoolCtx::data`): cache pointer, size or order.
    backing_arg: usize,
    /// For a ready-made pool, the machine's address plus the allocator
    /// (`DIRECT_SLAB`, `DIRECT_KMALLOC`, `DIRECT_PAGES`), plus
    /// `DIRECT_COUNTED` if the pool counts its fast paths; 0 for a pool with
    /// callbacks of its own. XORed with the calling machine's address it is
    /// below `DIRECT_OTHER` exactly for a ready-made pool of that machine,
    /// and 0 (`DIRECT_SLAB`) for an uncounted slab pool: one comparison
    /// decides the machine, the allocator and that there is nothing to count.
    /// Changes only through `&mut` (or in `mempool_exit`, when nobody uses
    /// the pool).
    direct: usize,
    /// `direct` while `curr_nr >= min_nr`, else 0; stored under `lock`
    /// whenever either changes. `mempool_free`'s unlocked peek at the reserve
    /// and its dispatch, in one load.
    free_direct: AtomicUsize,
    name: [u8; NAME_LEN],
    name_len: usize,
    stats: Counters,
}

/// Which of the ready-made allocators a pool's callbacks are, so that
/// `mempool_alloc`/`mempool_free` can call it directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backing {
    /// The pool's own `alloc_fn`/`free_fn`.
    Callbacks,
    /// `mempool_alloc_slab`/`mempool_free_slab` on a cache of the pool's machine.
    Slab,
    /// `mempool_kmalloc`/`mempool_kfree`.
    Kmalloc,
    /// `mempool_alloc_pages`/`mempool_free_pages`.
    Pages,
}

/// [`Mempool::direct`] kinds, in the low bits of the machine's address.
const DIRECT_SLAB: usize = 0;
const DIRECT_KMALLOC: usize = 1;
const DIRECT_PAGES: usize = 2;
/// [`Mempool::direct`]: the pool counts its fast paths.
const DIRECT_COUNTED: usize = 4;
/// `direct ^ machine` at or above this: not a ready-made pool of the
/// machine (a pool with callbacks, or one of another machine: two live
/// machines' addresses differ by more than their low three bits).
const DIRECT_OTHER: usize = 8;

/// Whether a new pool counts its fast paths (`alloc_backing`,
/// `free_backing`, hence `outstanding` and the destroy-time leak warning);
/// [`Mempool::set_fast_path_stats`] changes it per pool.
const FAST_PATH_STATS_DEFAULT: bool = true;

/// `mempool_t`, by its kernel name.
#[allow(non_camel_case_types)]
pub type mempool_t = Mempool;

// SAFETY: all mutable state is behind the lock or atomic; the creator promised
// the callbacks may be called with `pool_data` from any thread.
unsafe impl Send for Mempool {}
// SAFETY: as above; every `&self` operation synchronises through the lock or atomics.
unsafe impl Sync for Mempool {}

/// A CPU's counts of the two fast paths, a cache line of its own.
#[repr(C, align(64))]
struct FastSlot {
    alloc_backing: AtomicUsize,
    free_backing: AtomicUsize,
}

/// Byte offsets of the fields of [`FastSlot`] (the counter index of
/// [`Counters::fast_inc`]).
const FAST_ALLOC: usize = 0;
const FAST_FREE: usize = mem::size_of::<usize>();

const _: () = assert!(mem::size_of::<FastSlot>() == 64);

/// How [`Counters::fast_inc`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FastCount {
    /// Not at all: the fast paths count nothing (as the kernel's).
    Off,
    /// `rseq::this_cpu_inc` on this CPU's slot.
    Rseq,
    /// An atomic add on the slot of `raw_smp_processor_id()`.
    Cpu,
    /// An atomic add on `shared` (no slots).
    Shared,
}

/// The pool's statistics.
///
/// # Invariants
/// `slots` is null or points to `nr_slots` zero-initialised [`FastSlot`]s
/// kmalloc'd from the pool's machine, freed by `mempool_exit`. When `rseq`
/// is set they are written only by `rseq::this_cpu_inc` sequences (plain adds), and
/// threads that cannot run one use `shared` instead. `mode` is `Rseq` only
/// if `rseq` is set and `slots` is not null, `Cpu` only if `slots` is not null.
struct Counters {
    slots: *mut FastSlot,
    nr_slots: usize,
    mode: FastCount,
    /// `mode == FastCount::Rseq`.
    mode_rseq: bool,
    /// The machine's fast paths use restartable sequences.
    rseq: bool,
    /// The fast paths have been counted since the pool was created, so
    /// `alloc_backing`, `free_backing` and `outstanding` are exact.
    exact: bool,
    /// `[alloc_backing, free_backing]` when there are no slots, or for a
    /// thread without a registered rseq area.
    shared: [AtomicUsize; 2],
    alloc_reserve: AtomicUsize,
    alloc_fail: AtomicUsize,
    waits: AtomicUsize,
    free_reserve: AtomicUsize,
}

impl Counters {
    /// Count one fast-path event, if the pool counts them: `field` is
    /// `FAST_ALLOC` or `FAST_FREE`.
    #[inline(always)]
    fn fast_inc<P: Platform>(&self, platform: &P, field: usize) {
        // The usual mode first, by a flag of its own (a jump table on `mode`
        // costs more than a test).
        if self.mode_rseq {
            // SAFETY: rseq mode (the platform registered the area); the slots are `nr_slots` live FastSlots
            // written only by such sequences (type invariant); `field` is a counter's offset.
            if unsafe {
                crate::slab::rseq::this_cpu_inc(
                    platform.rseq_offset(),
                    self.slots.cast(),
                    self.nr_slots,
                    field,
                )
            } {
                return;
            }
        } else if self.mode == FastCount::Off {
            return;
        } else if self.mode == FastCount::Cpu {
            let cpu = platform.raw_smp_processor_id() % self.nr_slots;
            // SAFETY: `slots` is not null in this mode, and `cpu < nr_slots`
            // (type invariant).
            let slot = unsafe { &*self.slots.add(cpu) };
            let c = if field == FAST_ALLOC {
                &slot.alloc_backing
            } else {
                &slot.free_backing
            };
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.shared[field / FAST_FREE].fetch_add(1, Ordering::Relaxed);
    }

    /// Set `mode` (and `mode_rseq`).
    fn set_mode(&mut self, mode: FastCount) {
        self.mode = mode;
        self.mode_rseq = mode == FastCount::Rseq;
    }

    /// The counting mode for `on`.
    fn mode_for(&self, on: bool) -> FastCount {
        match (on, self.slots.is_null(), self.rseq) {
            (false, _, _) => FastCount::Off,
            (true, true, _) => FastCount::Shared,
            (true, false, true) => FastCount::Rseq,
            (true, false, false) => FastCount::Cpu,
        }
    }

    /// The sum of a fast-path counter over the CPUs.
    fn fast_sum(&self, field: usize) -> usize {
        let mut n = self.shared[field / FAST_FREE].load(Ordering::Relaxed);
        for cpu in 0..if self.slots.is_null() { 0 } else { self.nr_slots } {
            // SAFETY: `cpu < nr_slots` (type invariant).
            let slot = unsafe { &*self.slots.add(cpu) };
            let c = if field == FAST_ALLOC {
                &slot.alloc_backing
            } else {
                &slot.free_backing
            };
            n = n.wrapping_add(c.load(Ordering::Relaxed));
        }
        n
    }
}

/// A snapshot of a pool's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MempoolStats {
    /// Elements the pool guarantees (`min_nr`).
    pub min_nr: usize,
    /// Elements in the reserve now (`curr_nr`).
    pub curr_nr: usize,
    /// Elements handed out and not yet returned.
    pub outstanding: isize,
    /// Allocations served by `alloc_fn`.
    pub alloc_backing: usize,
    /// Allocations served from the reserve.
    pub alloc_reserve: usize,
    /// Allocations that returned NULL (no `__GFP_DIRECT_RECLAIM`, reserve empty).
    pub alloc_fail: usize,
    /// Times an allocation slept waiting for a free.
    pub waits: usize,
    /// Frees that refilled the reserve.
    pub free_reserve: usize,
    /// Frees given back through `free_fn`.
    pub free_backing: usize,
    /// Whether the pool has counted its fast paths since it was created:
    /// only then are `alloc_backing`, `free_backing` and `outstanding`
    /// exact. A pool that does not (see [`Mempool::set_fast_path_stats`])
    /// counts only the events of its slow paths: reserve use and refills,
    /// failures and waits.
    pub fast_paths_counted: bool,
}

/// `pool_data` of the ready-made pools: the machine and what to allocate.
///
/// `data` is the `KmemCache` pointer (slab pools), the element size (kmalloc
/// pools) or the page order (page pools).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MempoolCtx {
    /// The machine, a type-erased `*const Kmem<P>`.
    pub machine: *const (),
    /// Cache pointer, size or order.
    pub data: usize,
}

impl Mempool {
    /// Elements in the reserve (`pool->curr_nr`), read without the lock.
    #[inline]
    pub fn curr_nr(&self) -> usize {
        self.curr_nr.load(Ordering::Relaxed)
    }

    /// Elements guaranteed (`pool->min_nr`).
    #[inline]
    pub fn min_nr(&self) -> usize {
        self.min_nr.load(Ordering::Relaxed)
    }

    /// `pool->pool_data`.
    pub fn pool_data(&self) -> *mut () {
        self.pool_data
    }

    /// Elements handed out by this pool and not yet returned to it.
    pub fn outstanding(&self) -> isize {
        self.stats().outstanding
    }

    /// Tasks waiting for an element now.
    pub fn nr_waiters(&self) -> u32 {
        self.nr_waiters.load(Ordering::Relaxed)
    }

    /// The pool's name, for reports (ready-made pools name their allocator).
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("mempool")
    }

    /// Name the pool (truncated to 31 bytes), for reports.
    pub fn set_name(&mut self, name: &str) {
        let mut n = name.len().min(NAME_LEN - 1);
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        self.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.name_len = n;
    }

    /// The counters (summed over the CPUs; exact when nothing runs on the
    /// pool concurrently).
    pub fn stats(&self) -> MempoolStats {
        let c = &self.stats;
        let alloc_backing = c.fast_sum(FAST_ALLOC);
        let free_backing = c.fast_sum(FAST_FREE);
        let alloc_reserve = c.alloc_reserve.load(Ordering::Relaxed);
        let free_reserve = c.free_reserve.load(Ordering::Relaxed);
        MempoolStats {
            min_nr: self.min_nr(),
            curr_nr: self.curr_nr(),
            outstanding: alloc_backing
                .wrapping_add(alloc_reserve)
                .wrapping_sub(free_backing)
                .wrapping_sub(free_reserve) as isize,
            alloc_backing,
            alloc_reserve,
            alloc_fail: c.alloc_fail.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            free_reserve,
            free_backing,
            fast_paths_counted: c.exact,
        }
    }

    /// Whether the fast paths are counted now (`alloc_backing`,
    /// `free_backing`).
    pub fn fast_path_stats(&self) -> bool {
        self.stats.mode != FastCount::Off
    }

    /// Count the fast paths (`on`, the default) or not.
    ///
    /// The kernel's mempool counts nothing: its fast path (the allocator
    /// serves the allocation; a free finds the reserve full) is the
    /// allocator's own plus a few instructions. Counting the two fast paths
    /// costs two per-CPU additions per allocation/free pair, about half a
    /// slab cache's own pair; a slab or kmalloc pool that does not count
    /// calls its cache or kmalloc inline after one comparison on each side. Such a pool still counts what happens on its slow paths
    /// (`alloc_reserve`, `alloc_fail`, `waits`, `free_reserve`), but no
    /// longer knows `alloc_backing`, `free_backing` or how many elements are
    /// outstanding, so `mempool_destroy` cannot report elements still out.
    /// Those stay inexact once counting was ever off
    /// ([`MempoolStats::fast_paths_counted`]).
    ///
    /// `&mut`: call it while nobody else uses the pool (typically right
    /// after creating it).
    pub fn set_fast_path_stats(&mut self, on: bool) {
        self.stats.set_mode(self.stats.mode_for(on));
        self.stats.exact &= on;
        self.direct = self.direct_key();
        self.update_free_direct();
    }

    /// What [`Mempool::direct`] should be.
    fn direct_key(&self) -> usize {
        if self.machine as usize & (DIRECT_OTHER - 1) != 0 {
            // No room for the kind bits (a machine is word-aligned, so only
            // on a 32-bit target): everything takes the general path.
            return 0;
        }
        let kind = match self.backing {
            Backing::Slab => DIRECT_SLAB,
            Backing::Kmalloc => DIRECT_KMALLOC,
            Backing::Pages => DIRECT_PAGES,
            Backing::Callbacks => return 0,
        };
        let counted = if self.stats.mode == FastCount::Off {
            0
        } else {
            DIRECT_COUNTED
        };
        self.machine as usize | kind | counted
    }

    /// What [`Mempool::free_direct`] should be now.
    #[inline]
    fn free_direct_value(&self) -> usize {
        if self.curr_nr() < self.min_nr() {
            0
        } else {
            self.direct
        }
    }

    /// Store `free_direct` after a change of `curr_nr` or `min_nr`. The
    /// caller holds the lock (or owns the pool).
    #[inline]
    fn update_free_direct(&self) {
        self.free_direct
            .store(self.free_direct_value(), Ordering::Relaxed);
    }

    /// `add_element`: push onto the reserve. The caller holds the lock.
    #[inline]
    fn add_element(&self, r: &mut Reserve, element: *mut u8) {
        let n = self.curr_nr.load(Ordering::Relaxed);
        assert!(
            n < r.capacity,
            "kernel BUG at mm/mempool.c: add_element on a full pool"
        );
        // SAFETY: Reserve invariant: `n < capacity` slots exist.
        unsafe { r.elements.add(n).write(element) };
        self.curr_nr.store(n + 1, Ordering::Relaxed);
        self.update_free_direct();
    }

    /// `remove_element`: pop the last reserved element. The caller holds the
    /// lock and saw `curr_nr > 0`.
    #[inline]
    fn remove_element(&self, r: &mut Reserve) -> *mut u8 {
        let n = self.curr_nr.load(Ordering::Relaxed);
        assert!(
            n > 0,
            "kernel BUG at mm/mempool.c: remove_element on an empty pool"
        );
        // SAFETY: Reserve invariant: slot `n - 1 < curr_nr` holds an element.
        let e = unsafe { r.elements.add(n - 1).read() };
        self.curr_nr.store(n - 1, Ordering::Relaxed);
        self.update_free_direct();
        e
    }

    fn is_of<P: Platform>(&self, kmem: &Kmem<P>) -> bool {
        ptr::eq(self.machine, kmem as *const Kmem<P> as *const ())
    }
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name())
            .field("min_nr", &self.min_nr())
            .field("curr_nr", &self.curr_nr())
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Ready-made callbacks
// ---------------------------------------------------------------------------

/// The machine and argument of a ready-made pool.
///
/// # Safety
/// `pool_data` points to a live [`MempoolCtx`] whose `machine` is a live `Kmem<P>`.
#[inline(always)]
unsafe fn ctx<'a, P: Platform>(pool_data: *mut ()) -> (&'a Kmem<P>, usize) {
    // SAFETY: caller's contract.
    let c = unsafe { &*(pool_data as *const MempoolCtx) };
    // SAFETY: caller's contract.
    (unsafe { &*(c.machine as *const Kmem<P>) }, c.data)
}

/// `mempool_alloc_slab`: `kmem_cache_alloc(cache, gfp)`.
///
/// # Safety
/// `pool_data` points to a live [`MempoolCtx`] of a live `Kmem<P>` whose
/// `data` is a live `KmemCache` of that machine.
pub unsafe fn mempool_alloc_slab<P: Platform>(gfp: Gfp, pool_data: *mut ()) -> *mut u8 {
    // SAFETY: forwarded.
    let (k, cache) = unsafe { ctx::<P>(pool_data) };
    // SAFETY: `data` is a non-null cache pointer (contract).
    let cache = unsafe { NonNull::new_unchecked(cache as *mut KmemCache) };
    // SAFETY: a live cache of this machine (created and not destroyed).
    unsafe { k.kmem_cache_alloc(cache, gfp) }.map_or(ptr::null_mut(), |p| p.as_ptr())
}

/// `mempool_free_slab`: `kmem_cache_free(cache, element)`.
///
/// # Safety
/// As [`mempool_alloc_slab`]; `element` came from it.
pub unsafe fn mempool_free_slab<P: Platform>(element: *mut u8, pool_data: *mut ()) {
    // SAFETY: forwarded.
    let (k, cache) = unsafe { ctx::<P>(pool_data) };
    // SAFETY: `data` is a non-null cache pointer; the element is one of its objects.
    unsafe { k.kmem_cache_free(NonNull::new_unchecked(cache as *mut KmemCache), element) };
}

/// `mempool_kmalloc`: `kmalloc(size, gfp)`.
///
/// # Safety
/// `pool_data` points to a live [`MempoolCtx`] of a live `Kmem<P>` whose
/// `data` is the element size.
pub unsafe fn mempool_kmalloc<P: Platform>(gfp: Gfp, pool_data: *mut ()) -> *mut u8 {
    // SAFETY: forwarded.
    let (k, size) = unsafe { ctx::<P>(pool_data) };
    k.kmalloc(size, gfp).map_or(ptr::null_mut(), |p| p.as_ptr())
}

/// `mempool_kfree`: `kfree(element)`.
///
/// # Safety
/// As [`mempool_kmalloc`]; `element` came from it.
pub unsafe fn mempool_kfree<P: Platform>(element: *mut u8, pool_data: *mut ()) {
    // SAFETY: forwarded.
    let (k, _) = unsafe { ctx::<P>(pool_data) };
    // SAFETY: a kmalloc'd element of this machine, given up by the caller.
    unsafe { k.kfree(element) };
}

/// `mempool_alloc_pages`: `alloc_pages(gfp, order)`; the element is the
/// `struct page *` (a `*mut Page` cast to `*mut u8`).
///
/// # Safety
/// `pool_data` points to a live [`MempoolCtx`] of a live `Kmem<P>` whose
/// `data` is the order.
pub unsafe fn mempool_alloc_pages<P: Platform>(gfp: Gfp, pool_data: *mut ()) -> *mut u8 {
    // SAFETY: forwarded.
    let (k, order) = unsafe { ctx::<P>(pool_data) };
    k.alloc_pages(gfp, order as u32)
        .map_or(ptr::null_mut(), |p| p.as_ptr() as *mut u8)
}

/// `mempool_free_pages`: `__free_pages(page, order)`.
///
/// # Safety
/// As [`mempool_alloc_pages`]; `element` came from it.
pub unsafe fn mempool_free_pages<P: Platform>(element: *mut u8, pool_data: *mut ()) {
    // SAFETY: forwarded.
    let (k, order) = unsafe { ctx::<P>(pool_data) };
    if let Some(page) = NonNull::new(element as *mut Page) {
        // SAFETY: a page allocation of this order, given up by the caller.
        unsafe { k.__free_pages(page, order as u32) };
    }
}

// ---------------------------------------------------------------------------
// The pool
// ---------------------------------------------------------------------------

impl<P: Platform> Kmem<P> {
    /// `might_alloc`: an allocation that may sleep must come from a context
    /// that may sleep.
    ///
    /// Returns the flags to use: from atomic context a sleeping request is
    /// reported (once per call site) and loses `__GFP_DIRECT_RECLAIM`, so it
    /// does not wait on the pool.
    #[inline(always)]
    #[track_caller]
    fn might_alloc(&self, gfp: Gfp) -> Gfp {
        if gfp.allows_blocking() && self.preempt_count() != 0 {
            self.might_alloc_atomic(gfp, core::panic::Location::caller())
        } else {
            gfp
        }
    }

    /// [`Kmem::might_alloc`] from a context with a preempt count: the report
    /// (kept out of the inlined fast path).
    #[cold]
    #[inline(never)]
    fn might_alloc_atomic(&self, gfp: Gfp, loc: &'static core::panic::Location<'static>) -> Gfp {
        if self.might_sleep_at(loc) {
            gfp.without(__GFP_DIRECT_RECLAIM)
        } else {
            gfp
        }
    }

    /// `mempool_create`: a pool of `min_nr` elements preallocated with
    /// `GFP_KERNEL`. `None` if the pool, its array or any element could not
    /// be allocated (everything allocated so far is freed).
    ///
    /// # Safety
    /// `alloc_fn` and `free_fn` may be called with `pool_data` from any
    /// thread until the pool is destroyed, and `free_fn` frees what
    /// `alloc_fn` returned. The machine outlives the pool.
    pub unsafe fn mempool_create(
        &self,
        min_nr: usize,
        alloc_fn: MempoolAllocFn,
        free_fn: MempoolFreeFn,
        pool_data: *mut (),
    ) -> Option<NonNull<Mempool>> {
        // SAFETY: forwarded.
        unsafe { self.mempool_create_node(min_nr, alloc_fn, free_fn, pool_data, GFP_KERNEL, NUMA_NO_NODE) }
    }

    /// `mempool_create_node`: as [`Kmem::mempool_create`], with the mask for
    /// the pool, its array and the preallocation, and the node to put them on.
    ///
    /// # Safety
    /// As [`Kmem::mempool_create`].
    pub unsafe fn mempool_create_node(
        &self,
        min_nr: usize,
        alloc_fn: MempoolAllocFn,
        free_fn: MempoolFreeFn,
        pool_data: *mut (),
        gfp: Gfp,
        nid: i32,
    ) -> Option<NonNull<Mempool>> {
        let pool = self
            .kzalloc_node(mem::size_of::<Mempool>(), gfp, nid)
            .ok()?
            .cast::<Mempool>();
        debug_assert!((pool.as_ptr() as usize).is_multiple_of(mem::align_of::<Mempool>()));
        // SAFETY: fresh, suitably sized and aligned memory; the callbacks are
        // the caller's promise.
        let r =
            // SAFETY: `pool` is ours, zeroed and not shared yet; the callbacks and pool_data are the caller's (this function's contract).
            unsafe { self.mempool_init_node(pool.as_ptr(), min_nr, alloc_fn, free_fn, pool_data, gfp, nid) };
        match r {
            Ok(()) => Some(pool),
            Err(AllocError) => {
                // SAFETY: mempool_init_node tore the pool down; the memory is ours.
                unsafe { self.kfree(pool.as_ptr() as *const u8) };
                None
            }
        }
    }

    /// `mempool_init`: initialise a pool in place (`GFP_KERNEL`, any node).
    ///
    /// # Safety
    /// `pool` is valid for writes of a `Mempool` and holds no live pool (it
    /// is overwritten). As [`Kmem::mempool_create`] for the callbacks. The
    /// pool must not move while it is in use; tear it down with
    /// [`Kmem::mempool_exit`].
    pub unsafe fn mempool_init(
        &self,
        pool: *mut Mempool,
        min_nr: usize,
        alloc_fn: MempoolAllocFn,
        free_fn: MempoolFreeFn,
        pool_data: *mut (),
    ) -> Result<(), AllocError> {
        // SAFETY: forwarded.
        unsafe {
            self.mempool_init_node(
                pool,
                min_nr,
                alloc_fn,
                free_fn,
                pool_data,
                GFP_KERNEL,
                NUMA_NO_NODE,
            )
        }
    }

    /// `mempool_init_node`. On failure the pool is already torn down
    /// (`mempool_exit` must not be called).
    ///
    /// # Safety
    /// As [`Kmem::mempool_init`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn mempool_init_node(
        &self,
        pool: *mut Mempool,
        min_nr: usize,
        alloc_fn: MempoolAllocFn,
        free_fn: MempoolFreeFn,
        pool_data: *mut (),
        gfp: Gfp,
        nid: i32,
    ) -> Result<(), AllocError> {
        let capacity = min_nr.max(1);
        let elements = self
            .kmalloc_array_node(capacity, mem::size_of::<*mut u8>(), gfp, nid)?
            .cast::<*mut u8>();
        let mut name = [0u8; NAME_LEN];
        name[..7].copy_from_slice(b"mempool");
        // The per-CPU slots of the fast-path counters; without them (no
        // memory, or a pool that starts without counting) the counts go to
        // the shared atomics.
        let nr_slots = self.nr_cpus.max(1);
        let slots = if FAST_PATH_STATS_DEFAULT {
            self.kzalloc_node(nr_slots * mem::size_of::<FastSlot>(), gfp | __GFP_NOWARN, nid)
                .map_or(ptr::null_mut(), |p| p.as_ptr().cast::<FastSlot>())
        } else {
            ptr::null_mut()
        };
        debug_assert!((slots as usize).is_multiple_of(mem::align_of::<FastSlot>()));
        // SAFETY: the caller gave us memory valid for a Mempool.
        unsafe {
            pool.write(Mempool {
                lock: SpinLock::new(Reserve {
                    elements: elements.as_ptr(),
                    capacity,
                }),
                min_nr: AtomicUsize::new(min_nr),
                curr_nr: AtomicUsize::new(0),
                pool_data,
                alloc_fn,
                free_fn,
                wait_seq: AtomicU32::new(0),
                nr_waiters: AtomicU32::new(0),
                machine: self as *const Kmem<P> as *const (),
                ctx: ptr::null_mut(),
                backing: Backing::Callbacks,
                backing_arg: 0,
                direct: 0,
                free_direct: AtomicUsize::new(0),
                name,
                name_len: 7,
                stats: Counters {
                    slots,
                    nr_slots,
                    mode: FastCount::Off,
                    mode_rseq: false,
                    rseq: self.slab_fast_paths_rseq(),
                    exact: FAST_PATH_STATS_DEFAULT,
                    shared: [AtomicUsize::new(0), AtomicUsize::new(0)],
                    alloc_reserve: AtomicUsize::new(0),
                    alloc_fail: AtomicUsize::new(0),
                    waits: AtomicUsize::new(0),
                    free_reserve: AtomicUsize::new(0),
                },
            })
        };
        {
            // SAFETY: just initialised, still ours alone.
            let p = unsafe { &mut *pool };
            p.stats.set_mode(p.stats.mode_for(FAST_PATH_STATS_DEFAULT));
        }
        // First preallocate the guaranteed number of elements.
        loop {
            // SAFETY: just initialised; only shared access from here on.
            let p = unsafe { &*pool };
            if p.curr_nr() >= min_nr {
                break;
            }
            // SAFETY: the caller's promise on the callbacks.
            let element = unsafe { (alloc_fn)(gfp, pool_data) };
            if element.is_null() {
                // SAFETY: ours, initialised, nothing handed out.
                unsafe { self.mempool_exit(pool) };
                return Err(AllocError);
            }
            p.add_element(&mut p.lock.lock(&self.platform), element);
        }
        Ok(())
    }

    /// `mempool_exit`: free the reserve (through `free_fn`) and the array of
    /// a pool set up with [`Kmem::mempool_init`]; the pool's own memory stays.
    /// Elements still outstanding are reported with a WARN, and not freed.
    ///
    /// # Safety
    /// `pool` is a live pool of this machine that nobody uses any more.
    pub unsafe fn mempool_exit(&self, pool_ptr: *mut Mempool) {
        // SAFETY: caller's contract.
        let pool = unsafe { &*pool_ptr };
        if !pool.is_of(self) {
            self.warn(format_args!(
                "mempool_exit: pool {} ({:p}) belongs to another machine",
                pool.name(),
                pool
            ));
            return;
        }
        let outstanding = pool.outstanding();
        if outstanding != 0 && pool.stats.exact {
            self.warn(format_args!(
                "mempool_destroy: pool {} ({:p}) still has {} element{} outstanding (min_nr {}, reserve {})",
                pool.name(),
                pool,
                outstanding,
                if outstanding == 1 { "" } else { "s" },
                pool.min_nr(),
                pool.curr_nr()
            ));
        }
        loop {
            let mut r = pool.lock.lock(&self.platform);
            if pool.curr_nr() == 0 {
                let elements = mem::replace(&mut r.elements, ptr::null_mut());
                r.capacity = 0;
                pool.min_nr.store(0, Ordering::Relaxed);
                pool.free_direct.store(0, Ordering::Relaxed);
                drop(r);
                let (slots, ctx) = (pool.stats.slots, pool.ctx);
                // SAFETY: the array, the counter slots and the context were kmalloc'd from this machine (or
                // are null) and nothing refers to them any more (nobody uses the pool: contract).
                unsafe {
                    self.kfree(elements as *const u8);
                    self.kfree(slots as *const u8);
                    self.kfree(ctx as *const u8);
                }
                // An exited pool's statistics read the shared counters only, and its fast paths (if it is
                // used after all) go through the callbacks and count into the shared counters.
                // SAFETY: nobody else uses the pool (contract).
                unsafe {
                    (*pool_ptr).stats.slots = ptr::null_mut();
                    if (*pool_ptr).stats.mode != FastCount::Off {
                        (*pool_ptr).stats.set_mode(FastCount::Shared);
                    }
                    (*pool_ptr).direct = 0;
                }
                return;
            }
            let element = pool.remove_element(&mut r);
            drop(r);
            // SAFETY: a reserved element from alloc_fn (pool invariant).
            unsafe { (pool.free_fn)(element, pool.pool_data) };
        }
    }

    /// `mempool_destroy`: free the reserve, the array and the pool. NULL is
    /// ignored. A pool destroyed with elements outstanding is reported with a
    /// WARN naming it and the count; those elements are not freed (they are
    /// not in the pool), and the caller must free them with `free_fn` itself.
    ///
    /// # Safety
    /// `pool` is null or came from [`Kmem::mempool_create`] (or a ready-made
    /// pool) of this machine, and nobody uses it any more.
    pub unsafe fn mempool_destroy(&self, pool: *mut Mempool) {
        if pool.is_null() {
            return;
        }
        // SAFETY: caller's contract.
        if !unsafe { &*pool }.is_of(self) {
            self.warn(format_args!(
                "mempool_destroy: pool {pool:p} belongs to another machine"
            ));
            return;
        }
        // SAFETY: caller's contract; then the struct (which needs no drop)
        // is ours to free.
        unsafe {
            self.mempool_exit(pool);
            self.kfree(pool as *const u8);
        }
    }

    /// The calling machine's address, as [`Mempool::direct`] holds it.
    #[inline(always)]
    fn mempool_key(&self) -> usize {
        self as *const Kmem<P> as usize
    }

    /// `mempool_alloc`: an element from the pool's allocator or, failing
    /// that, from the reserve. Never NULL when `gfp` allows direct reclaim
    /// (it sleeps until an element is freed); NULL otherwise if both fail.
    /// `__GFP_ZERO` is not supported (WARN once).
    ///
    /// The fast path (the allocator serves the first try) is inlined into
    /// the caller; the rest is `Kmem::mempool_alloc_slow`. A sleeping mask
    /// from atomic context is reported there, before anything that could
    /// sleep (the first try cannot: it neither reclaims nor waits), as the
    /// slab allocator reports it on its slow path.
    #[inline(always)]
    #[track_caller]
    pub fn mempool_alloc(&self, pool: &Mempool, gfp: Gfp) -> *mut u8 {
        if gfp.intersects(__GFP_ZERO) {
            self.mempool_warn_zero();
        }
        let gfp = gfp | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN;
        // The first round neither reclaims nor does I/O.
        let gfp_temp = gfp.without(__GFP_DIRECT_RECLAIM | __GFP_IO);
        // repeat_alloc: the usual pools first, each with one comparison
        // (with the key, not of `direct ^ key`, which compilers turn into a
        // switch that may test another value first).
        let key = self.mempool_key();
        let element = if pool.direct == key | DIRECT_SLAB {
            // SAFETY: an uncounted slab pool of this machine.
            unsafe { self.mempool_slab_alloc(pool, gfp_temp) }
        } else if pool.direct == key | DIRECT_KMALLOC {
            // An uncounted kmalloc pool.
            self.kmalloc(pool.backing_arg, gfp_temp)
                .map_or(ptr::null_mut(), |p| p.as_ptr())
        } else if pool.direct == key | DIRECT_SLAB | DIRECT_COUNTED {
            // SAFETY: a counted slab pool of this machine.
            let element = unsafe { self.mempool_slab_alloc(pool, gfp_temp) };
            if !element.is_null() {
                pool.stats.fast_inc(&self.platform, FAST_ALLOC);
            }
            element
        } else {
            self.mempool_alloc_counted(pool, gfp_temp, pool.direct ^ key)
        };
        if !element.is_null() {
            return element;
        }
        self.mempool_alloc_slow(pool, gfp, gfp_temp)
    }

    #[cold]
    #[inline(never)]
    fn mempool_warn_zero(&self) {
        self.warn_once(
            WARN_MEMPOOL_ZERO,
            format_args!("mempool_alloc: __GFP_ZERO is not supported"),
        );
    }

    /// `kmem_cache_alloc` of a slab pool of this machine.
    ///
    /// # Safety
    /// `direct` says the pool is a slab pool of this machine.
    #[inline(always)]
    #[track_caller]
    unsafe fn mempool_slab_alloc(&self, pool: &Mempool, gfp: Gfp) -> *mut u8 {
        // SAFETY: a slab pool of this machine (caller's contract):
        // `backing_arg` is its live cache (the creator's promise).
        let cache = unsafe { NonNull::new_unchecked(pool.backing_arg as *mut KmemCache) };
        // SAFETY: a live cache of this machine (created and not destroyed).
        unsafe { self.kmem_cache_alloc(cache, gfp) }.map_or(ptr::null_mut(), |p| p.as_ptr())
    }

    /// `kmem_cache_free` of a slab pool of this machine.
    ///
    /// # Safety
    /// `direct` says the pool is a slab pool of this machine; `element` is
    /// an object of its cache, not used afterwards.
    #[inline(always)]
    unsafe fn mempool_slab_free(&self, pool: &Mempool, element: *mut u8) {
        // SAFETY: `backing_arg` is the pool's live cache (the creator's
        // promise), the element one of its objects (caller's contract).
        unsafe {
            self.kmem_cache_free(
                NonNull::new_unchecked(pool.backing_arg as *mut KmemCache),
                element,
            )
        };
    }

    /// `pool->alloc(gfp, pool->pool_data)` for any pool, counted as
    /// `alloc_backing` if it succeeds and the pool counts its fast paths. `d`
    /// is `pool.direct ^ self.mempool_key()`.
    #[inline(always)]
    #[track_caller]
    fn mempool_alloc_counted(&self, pool: &Mempool, gfp: Gfp, d: usize) -> *mut u8 {
        let element = self.mempool_backing_alloc(pool, gfp, d);
        if !element.is_null() {
            pool.stats.fast_inc(&self.platform, FAST_ALLOC);
        }
        element
    }

    /// The rest of `mempool_alloc` after the allocator failed with
    /// `gfp_temp`: `might_alloc`, the reserve, the allocator with the full
    /// mask `gfp`, and the wait.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn mempool_alloc_slow(&self, pool: &Mempool, gfp: Gfp, mut gfp_temp: Gfp) -> *mut u8 {
        // From atomic context a sleeping mask is reported and loses
        // __GFP_DIRECT_RECLAIM (gfp_temp has none already).
        let gfp = self.might_alloc(gfp);
        loop {
            let mut r = pool.lock.lock(&self.platform);
            if pool.curr_nr() != 0 {
                let element = pool.remove_element(&mut r);
                drop(r);
                // smp_wmb(), paired with the fence in mempool_free: the new
                // curr_nr (and free_direct) is ordered before whatever
                // publishes the element.
                fence(Ordering::Release);
                pool.stats.alloc_reserve.fetch_add(1, Ordering::Relaxed);
                return element;
            }

            if gfp_temp != gfp {
                // The first round failed and the reserve is empty: retry at
                // once with the caller's mask (reclaim and I/O allowed).
                drop(r);
                gfp_temp = gfp;
            } else if !gfp.allows_blocking() {
                // We must not sleep without __GFP_DIRECT_RECLAIM.
                drop(r);
                pool.stats.alloc_fail.fetch_add(1, Ordering::Relaxed);
                return ptr::null_mut();
            } else {
                // prepare_to_wait, still under the lock: a free that refills
                // the reserve after this point sees us and changes the word.
                let seq = pool.wait_seq.load(Ordering::Relaxed);
                pool.nr_waiters.fetch_add(1, Ordering::Relaxed);
                drop(r);
                pool.stats.waits.fetch_add(1, Ordering::Relaxed);
                self.platform
                    .futex_wait(&pool.wait_seq, seq, Some(MEMPOOL_WAIT_NS));
                // finish_wait
                pool.nr_waiters.fetch_sub(1, Ordering::Relaxed);
            }

            // repeat_alloc:
            let element = self.mempool_alloc_counted(pool, gfp_temp, pool.direct ^ self.mempool_key());
            if !element.is_null() {
                return element;
            }
        }
    }

    /// `mempool_alloc_preallocated`: an element from the reserve only; never
    /// sleeps, never calls the allocator. NULL if the reserve is empty.
    pub fn mempool_alloc_preallocated(&self, pool: &Mempool) -> *mut u8 {
        let mut r = pool.lock.lock(&self.platform);
        if pool.curr_nr() != 0 {
            let element = pool.remove_element(&mut r);
            drop(r);
            // smp_wmb(): see mempool_alloc.
            fence(Ordering::Release);
            pool.stats.alloc_reserve.fetch_add(1, Ordering::Relaxed);
            return element;
        }
        drop(r);
        pool.stats.alloc_fail.fetch_add(1, Ordering::Relaxed);
        ptr::null_mut()
    }

    /// `mempool_free`: give an element back. It refills the reserve if that
    /// is below `min_nr` (and wakes waiters), else goes to `free_fn`. NULL is
    /// ignored.
    ///
    /// # Safety
    /// `element` is null or was returned by `mempool_alloc`/
    /// `mempool_alloc_preallocated` of this pool (or by its `alloc_fn`), and
    /// is not used afterwards.
    #[inline(always)]
    pub unsafe fn mempool_free(&self, element: *mut u8, pool: &Mempool) {
        // smp_rmb(), paired with the fence after a reserve allocation: the
        // reserve state we read is not older than the allocation of `element`.
        fence(Ordering::Acquire);

        // Unlocked peek: `free_direct` is `direct` only while curr_nr >=
        // min_nr, so a full reserve of an uncounted slab or kmalloc pool of
        // this machine is one load and one comparison.
        let key = self.mempool_key();
        let direct = pool.free_direct.load(Ordering::Relaxed);
        if direct == key | DIRECT_SLAB {
            if element.is_null() {
                return;
            }
            // SAFETY: a slab pool of this machine; the element is one of its
            // objects (caller's contract).
            unsafe { self.mempool_slab_free(pool, element) };
            return;
        }
        if direct == key | DIRECT_KMALLOC {
            // SAFETY: a kmalloc'd element of this machine (caller's
            // contract); kfree ignores NULL, as mempool_free does.
            unsafe { self.kfree(element) };
            return;
        }
        if direct == key | DIRECT_SLAB | DIRECT_COUNTED {
            if element.is_null() {
                return;
            }
            pool.stats.fast_inc(&self.platform, FAST_FREE);
            // SAFETY: a slab pool of this machine; the element is one of its
            // objects (caller's contract).
            unsafe { self.mempool_slab_free(pool, element) };
            return;
        }
        // SAFETY: forwarded (caller's contract).
        unsafe { self.mempool_free_counted(element, pool, direct ^ key) };
    }

    /// `mempool_free` of any pool: the kernel's algorithm, counting a free to
    /// the allocator as `free_backing` if the pool counts its fast paths. `d`
    /// is `pool.free_direct ^ self.mempool_key()`, read after the fence.
    ///
    /// # Safety
    /// As [`Kmem::mempool_free`] (after its fence).
    #[inline(always)]
    unsafe fn mempool_free_counted(&self, element: *mut u8, pool: &Mempool, d: usize) {
        if element.is_null() {
            return;
        }
        // Unlocked peek: guaranteed to see curr_nr < min_nr whenever elements
        // handed out from the reserve are still missing from it (see the top
        // of the file), and refilling early is what we want anyway. A
        // ready-made pool of this machine whose `free_direct` was set saw a
        // full reserve already.
        if d >= DIRECT_OTHER && pool.curr_nr() < pool.min_nr() {
            // SAFETY: forwarded (caller's contract).
            if unsafe { self.mempool_free_refill(element, pool) } {
                return;
            }
        }
        pool.stats.fast_inc(&self.platform, FAST_FREE);
        // A non-zero `free_direct` equals `direct`.
        let d = if d < DIRECT_OTHER {
            d
        } else {
            pool.direct ^ self.mempool_key()
        };
        // SAFETY: caller's contract: an element of this pool's allocator.
        unsafe { self.mempool_backing_free(pool, element, d) };
    }

    /// Put `element` into the reserve if it is still below `min_nr` (checked
    /// again under the lock) and wake the waiters. False if it is full.
    ///
    /// # Safety
    /// As [`Kmem::mempool_free`].
    #[cold]
    #[inline(never)]
    unsafe fn mempool_free_refill(&self, element: *mut u8, pool: &Mempool) -> bool {
        let mut r = pool.lock.lock(&self.platform);
        if pool.curr_nr() >= pool.min_nr() {
            return false;
        }
        pool.add_element(&mut r, element);
        let waiters = pool.nr_waiters.load(Ordering::Relaxed);
        drop(r);
        pool.stats.free_reserve.fetch_add(1, Ordering::Relaxed);
        if waiters != 0 {
            // wake_up(&pool->wait)
            pool.wait_seq.fetch_add(1, Ordering::Release);
            self.platform.futex_wake(&pool.wait_seq, u32::MAX);
        }
        true
    }

    /// `pool->alloc(gfp, pool->pool_data)`, calling a ready-made allocator
    /// of this machine directly. `d` is `pool.direct ^ self.mempool_key()`.
    #[inline(always)]
    #[track_caller]
    fn mempool_backing_alloc(&self, pool: &Mempool, gfp: Gfp, d: usize) -> *mut u8 {
        if d < DIRECT_OTHER {
            match d & !DIRECT_COUNTED {
                // SAFETY: `d` says: a slab pool of this machine.
                DIRECT_SLAB => return unsafe { self.mempool_slab_alloc(pool, gfp) },
                DIRECT_KMALLOC => {
                    return self
                        .kmalloc(pool.backing_arg, gfp)
                        .map_or(ptr::null_mut(), |p| p.as_ptr());
                }
                _ => {
                    return self
                        .alloc_pages(gfp, pool.backing_arg as u32)
                        .map_or(ptr::null_mut(), |p| p.as_ptr() as *mut u8);
                }
            }
        }
        // SAFETY: pool invariant: the callbacks accept pool_data.
        unsafe { (pool.alloc_fn)(gfp, pool.pool_data) }
    }

    /// `pool->free(element, pool->pool_data)`, as [`Kmem::mempool_backing_alloc`].
    ///
    /// # Safety
    /// `element` came from the pool's allocator and is not used afterwards.
    #[inline(always)]
    unsafe fn mempool_backing_free(&self, pool: &Mempool, element: *mut u8, d: usize) {
        if d < DIRECT_OTHER {
            match d & !DIRECT_COUNTED {
                DIRECT_SLAB => {
                    // SAFETY: a slab pool of this machine; the element is an
                    // object of its cache (caller's contract).
                    unsafe { self.mempool_slab_free(pool, element) };
                }
                DIRECT_KMALLOC => {
                    // SAFETY: a kmalloc'd element of this machine (caller's contract).
                    unsafe { self.kfree(element) };
                }
                _ => {
                    if let Some(page) = NonNull::new(element as *mut Page) {
                        // SAFETY: a page allocation of this order (caller's contract).
                        unsafe { self.__free_pages(page, pool.backing_arg as u32) };
                    }
                }
            }
            return;
        }
        // SAFETY: caller's contract: an element of this pool's allocator.
        unsafe { (pool.free_fn)(element, pool.pool_data) };
    }

    /// `mempool_resize`: change the number of guaranteed elements.
    ///
    /// Shrinking frees surplus reserved elements at once. Growing allocates a
    /// new array (`Err` if that fails) and then elements with `GFP_KERNEL`;
    /// if those fail the pool is left larger than its reserve, and later
    /// frees refill it (the kernel returns success then too). `new_min_nr`
    /// of 0 is a bug (the kernel's `BUG_ON`): it WARNs and returns `Err`.
    /// Must not race with `mempool_destroy`.
    pub fn mempool_resize(&self, pool: &Mempool, new_min_nr: usize) -> Result<(), AllocError> {
        if new_min_nr == 0 || !pool.is_of(self) {
            self.warn(format_args!(
                "mempool_resize: bad resize of pool {} ({:p}) to {}",
                pool.name(),
                pool,
                new_min_nr
            ));
            return Err(AllocError);
        }
        self.might_sleep();

        let mut r = pool.lock.lock(&self.platform);
        if new_min_nr <= pool.min_nr() {
            while new_min_nr < pool.curr_nr() {
                let element = pool.remove_element(&mut r);
                drop(r);
                // SAFETY: a reserved element from alloc_fn (pool invariant).
                unsafe { (pool.free_fn)(element, pool.pool_data) };
                r = pool.lock.lock(&self.platform);
            }
            pool.min_nr.store(new_min_nr, Ordering::Relaxed);
            pool.update_free_direct();
            return Ok(());
        }
        drop(r);

        // Grow the pool.
        let new_elements = self
            .kmalloc_array(new_min_nr, mem::size_of::<*mut u8>(), GFP_KERNEL)?
            .cast::<*mut u8>();

        let mut r = pool.lock.lock(&self.platform);
        if new_min_nr <= pool.min_nr() {
            // Raced: another resize did our work.
            drop(r);
            // SAFETY: ours, never published.
            unsafe { self.kfree(new_elements.as_ptr() as *const u8) };
            return Ok(());
        }
        let curr = pool.curr_nr();
        // SAFETY: the old array holds curr_nr elements; the new one has room
        // for new_min_nr > min_nr >= curr_nr; they do not overlap.
        unsafe { ptr::copy_nonoverlapping(r.elements, new_elements.as_ptr(), curr) };
        let old = mem::replace(&mut r.elements, new_elements.as_ptr());
        r.capacity = new_min_nr;
        pool.min_nr.store(new_min_nr, Ordering::Relaxed);
        pool.update_free_direct();
        drop(r);
        // SAFETY: the old array was kmalloc'd from this machine and is unreachable now.
        unsafe { self.kfree(old as *const u8) };

        while pool.curr_nr() < pool.min_nr() {
            // SAFETY: pool invariant.
            let element = unsafe { (pool.alloc_fn)(GFP_KERNEL, pool.pool_data) };
            if element.is_null() {
                return Ok(());
            }
            let mut r = pool.lock.lock(&self.platform);
            if pool.curr_nr() < pool.min_nr() {
                pool.add_element(&mut r, element);
                let waiters = pool.nr_waiters.load(Ordering::Relaxed);
                drop(r);
                if waiters != 0 {
                    pool.wait_seq.fetch_add(1, Ordering::Release);
                    self.platform.futex_wake(&pool.wait_seq, u32::MAX);
                }
            } else {
                drop(r);
                // Raced with frees that refilled it.
                // SAFETY: from alloc_fn just now.
                unsafe { (pool.free_fn)(element, pool.pool_data) };
                return Ok(());
            }
        }
        Ok(())
    }

    // ---- ready-made pools -------------------------------------------------

    /// A pool whose `pool_data` is a context it owns.
    fn mempool_create_ctx(
        &self,
        min_nr: usize,
        alloc_fn: MempoolAllocFn,
        free_fn: MempoolFreeFn,
        backing: Backing,
        data: usize,
        name: fmt::Arguments<'_>,
    ) -> Option<NonNull<Mempool>> {
        let ctx = self
            .kmalloc(mem::size_of::<MempoolCtx>(), GFP_KERNEL)
            .ok()?
            .cast::<MempoolCtx>();
        // SAFETY: fresh kmalloc memory, 8-byte aligned, sized for the context.
        unsafe {
            ctx.as_ptr().write(MempoolCtx {
                machine: self as *const Kmem<P> as *const (),
                data,
            })
        };
        // SAFETY: the ready-made callbacks only need the context, which lives
        // until the pool is destroyed (the pool owns it).
        let pool = unsafe { self.mempool_create(min_nr, alloc_fn, free_fn, ctx.as_ptr() as *mut ()) };
        match pool {
            Some(mut p) => {
                // SAFETY: a fresh pool nobody else sees.
                let pm = unsafe { p.as_mut() };
                pm.ctx = ctx.as_ptr();
                pm.backing = backing;
                pm.backing_arg = data;
                pm.direct = pm.direct_key();
                pm.update_free_direct();
                let mut buf = crate::printk::FixedBuf::<NAME_LEN>::new();
                let _ = buf.write_fmt(name);
                pm.set_name(buf.as_str());
                Some(p)
            }
            None => {
                // SAFETY: ours; the failed pool no longer refers to it.
                unsafe { self.kfree(ctx.as_ptr() as *const u8) };
                None
            }
        }
    }

    /// `mempool_create_slab_pool`: elements are objects of `cache`. The
    /// cache should have no constructor (the kernel's `VM_BUG_ON`; here a
    /// WARN). The cache must outlive the pool.
    ///
    /// # Safety
    /// `cache` is a live cache of this machine (created, not destroyed).
    pub unsafe fn mempool_create_slab_pool(
        &self,
        min_nr: usize,
        cache: NonNull<KmemCache>,
    ) -> Option<NonNull<Mempool>> {
        // SAFETY: the caller hands us a live cache of this machine.
        let s = unsafe { cache.as_ref() };
        if !matches!(s.ctor, CtorKind::None) {
            self.warn(format_args!(
                "mempool_create_slab_pool: cache {} has a constructor",
                s.name()
            ));
        }
        self.mempool_create_ctx(
            min_nr,
            mempool_alloc_slab::<P>,
            mempool_free_slab::<P>,
            Backing::Slab,
            cache.as_ptr() as usize,
            format_args!("slab:{}", s.name()),
        )
    }

    /// `mempool_create_kmalloc_pool`: elements are `kmalloc(size)`.
    pub fn mempool_create_kmalloc_pool(&self, min_nr: usize, size: usize) -> Option<NonNull<Mempool>> {
        self.mempool_create_ctx(
            min_nr,
            mempool_kmalloc::<P>,
            mempool_kfree::<P>,
            Backing::Kmalloc,
            size,
            format_args!("kmalloc:{size}"),
        )
    }

    /// `mempool_create_page_pool`: elements are page allocations of `order`
    /// (the element is the `*mut Page` of the head page, cast to `*mut u8`).
    pub fn mempool_create_page_pool(&self, min_nr: usize, order: u32) -> Option<NonNull<Mempool>> {
        self.mempool_create_ctx(
            min_nr,
            mempool_alloc_pages::<P>,
            mempool_free_pages::<P>,
            Backing::Pages,
            order as usize,
            format_args!("pages:order-{order}"),
        )
    }
}

// ---------------------------------------------------------------------------
// The Rust front door
// ---------------------------------------------------------------------------

/// A typed pool of `T`s: [`typed::Mempool`] and its [`typed::MempoolBox`].
pub mod typed {
    use super::Mempool as RawMempool;
    use crate::gfp::*;
    use crate::kmalloc::ARCH_KMALLOC_MINALIGN;
    use crate::platform::Platform;
    use crate::slab::{KmemCache as RawCache, SlabFlags};
    use crate::{AllocError, Kmem};
    use core::fmt;
    use core::marker::PhantomData;
    use core::mem;
    use core::ops::{Deref, DerefMut};
    use core::ptr::{self, NonNull};

    /// A memory pool of `T`s over kmalloc or a slab cache of its own: at
    /// least `min_nr` elements can always be allocated, by waiting for
    /// others to be dropped if memory is exhausted.
    ///
    /// # Invariants
    /// `pool` is a live pool of `kmem` whose elements are sized and aligned
    /// for `T`; `cache`, if any, is the slab cache it allocates from, owned
    /// by this value and destroyed after the pool.
    pub struct Mempool<'k, T, P: Platform> {
        kmem: &'k Kmem<P>,
        pool: NonNull<RawMempool>,
        cache: Option<NonNull<RawCache>>,
        _t: PhantomData<T>,
    }

    // SAFETY: the pool hands Ts from thread to thread; the raw pool is Sync.
    unsafe impl<T: Send, P: Platform> Send for Mempool<'_, T, P> {}
    // SAFETY: as above.
    unsafe impl<T: Send, P: Platform> Sync for Mempool<'_, T, P> {}

    impl<'k, T, P: Platform> Mempool<'k, T, P> {
        /// A pool of `min_nr` preallocated `T`-sized kmalloc elements.
        pub fn new(kmem: &'k Kmem<P>, min_nr: usize) -> Result<Self, AllocError> {
            let (size, align) = (mem::size_of::<T>().max(1), mem::align_of::<T>());
            // kmalloc aligns power-of-two sizes naturally, others to ARCH_KMALLOC_MINALIGN.
            let size = if align > ARCH_KMALLOC_MINALIGN {
                size.next_power_of_two().max(align)
            } else {
                size
            };
            let pool = kmem.mempool_create_kmalloc_pool(min_nr, size).ok_or(AllocError)?;
            Ok(Mempool {
                kmem,
                pool,
                cache: None,
                _t: PhantomData,
            })
        }

        /// A pool of `min_nr` preallocated `T`s from a new slab cache `name`
        /// sized and aligned for `T` (destroyed with the pool).
        pub fn with_cache(kmem: &'k Kmem<P>, name: &str, min_nr: usize) -> Result<Self, AllocError> {
            let cache = kmem
                .kmem_cache_create(
                    name,
                    mem::size_of::<T>().max(1),
                    mem::align_of::<T>(),
                    SlabFlags(0),
                    None,
                )
                .ok_or(AllocError)?;
            // SAFETY: a live cache of this machine (created and not destroyed).
            match unsafe { kmem.mempool_create_slab_pool(min_nr, cache) } {
                Some(pool) => Ok(Mempool {
                    kmem,
                    pool,
                    cache: Some(cache),
                    _t: PhantomData,
                }),
                None => {
                    // SAFETY: ours, no objects.
                    unsafe { kmem.kmem_cache_destroy(cache) };
                    Err(AllocError)
                }
            }
        }

        /// The raw pool (for statistics, or the C-style calls).
        pub fn raw(&self) -> &RawMempool {
            // SAFETY: type invariant.
            unsafe { self.pool.as_ref() }
        }

        /// The slab cache of a pool made by [`Mempool::with_cache`].
        pub fn cache(&self) -> Option<NonNull<RawCache>> {
            self.cache
        }

        /// The machine.
        pub fn machine(&self) -> &'k Kmem<P> {
            self.kmem
        }

        /// Elements in the reserve.
        pub fn curr_nr(&self) -> usize {
            self.raw().curr_nr()
        }

        /// Elements guaranteed.
        pub fn min_nr(&self) -> usize {
            self.raw().min_nr()
        }

        /// `mempool_resize`.
        pub fn resize(&self, new_min_nr: usize) -> Result<(), AllocError> {
            self.kmem.mempool_resize(self.raw(), new_min_nr)
        }

        /// Allocate an element and move `value` into it. With a mask that
        /// allows direct reclaim this waits for an element and never fails.
        pub fn alloc_with(&self, value: T, gfp: Gfp) -> Result<MempoolBox<'_, T, P>, AllocError> {
            let p = self.kmem.mempool_alloc(self.raw(), gfp) as *mut T;
            let Some(obj) = NonNull::new(p) else {
                return Err(AllocError);
            };
            if !(obj.as_ptr() as usize).is_multiple_of(mem::align_of::<T>()) {
                // SAFETY: an element of this pool, not used.
                unsafe { self.kmem.mempool_free(obj.as_ptr() as *mut u8, self.raw()) };
                return Err(AllocError);
            }
            // SAFETY: an element sized and aligned for T (type invariant), ours.
            unsafe { obj.as_ptr().write(value) };
            Ok(MempoolBox { obj, pool: self })
        }

        /// Allocate an element holding `T::default()`.
        pub fn alloc(&self, gfp: Gfp) -> Result<MempoolBox<'_, T, P>, AllocError>
        where
            T: Default,
        {
            self.alloc_with(T::default(), gfp)
        }
    }

    impl<T, P: Platform> Drop for Mempool<'_, T, P> {
        fn drop(&mut self) {
            // SAFETY: ours; every MempoolBox borrowed the pool, so none is
            // alive unless leaked, which mempool_destroy reports.
            unsafe { self.kmem.mempool_destroy(self.pool.as_ptr()) };
            if let Some(c) = self.cache {
                // SAFETY: ours; the pool that used it is gone.
                unsafe { self.kmem.kmem_cache_destroy(c) };
            }
        }
    }

    impl<T, P: Platform> fmt::Debug for Mempool<'_, T, P> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(self.raw(), f)
        }
    }

    /// A `T` in an element of a [`Mempool`]. Dropping it drops the `T` and
    /// gives the element back to the pool (refilling the reserve first).
    ///
    /// # Invariants
    /// `obj` is an element of `pool` holding a valid `T`, owned by this box.
    pub struct MempoolBox<'a, T, P: Platform> {
        obj: NonNull<T>,
        pool: &'a Mempool<'a, T, P>,
    }

    // SAFETY: owns its T; the pool is Sync.
    unsafe impl<T: Send, P: Platform> Send for MempoolBox<'_, T, P> {}
    // SAFETY: shared access gives shared access to T only.
    unsafe impl<T: Sync, P: Platform> Sync for MempoolBox<'_, T, P> {}

    impl<T, P: Platform> MempoolBox<'_, T, P> {
        /// The element's address.
        pub fn as_ptr(b: &Self) -> *const T {
            b.obj.as_ptr()
        }

        /// Move the `T` out and give the element back.
        pub fn into_inner(b: Self) -> T {
            let b = mem::ManuallyDrop::new(b);
            // SAFETY: type invariant; the element is freed without dropping
            // the T again.
            unsafe {
                let v = b.obj.as_ptr().read();
                b.pool.kmem.mempool_free(b.obj.as_ptr() as *mut u8, b.pool.raw());
                v
            }
        }
    }

    impl<T, P: Platform> Drop for MempoolBox<'_, T, P> {
        fn drop(&mut self) {
            // SAFETY: type invariant: our T in our element.
            unsafe {
                ptr::drop_in_place(self.obj.as_ptr());
                self.pool
                    .kmem
                    .mempool_free(self.obj.as_ptr() as *mut u8, self.pool.raw());
            }
        }
    }

    impl<T, P: Platform> Deref for MempoolBox<'_, T, P> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: type invariant.
            unsafe { self.obj.as_ref() }
        }
    }

    impl<T, P: Platform> DerefMut for MempoolBox<'_, T, P> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: type invariant; we own the element.
            unsafe { self.obj.as_mut() }
        }
    }

    impl<T: fmt::Debug, P: Platform> fmt::Debug for MempoolBox<'_, T, P> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(&**self, f)
        }
    }
}

pub use typed::MempoolBox;
