//! The platform boundary: what the core needs from the machine it runs on.
//!
//! kmem's core is `#![no_std]` and knows nothing of the operating system under
//! it. Everything that differs between a Linux process, a bare-metal x86-64
//! kernel and a deterministic test machine comes through this trait:
//!
//! * **CPUs** — which CPU the caller runs on (`smp_processor_id`) and how many
//!   are possible. Per-CPU structures are indexed by it; the caller may migrate
//!   right after the call unless it pinned itself, so per-CPU data is still
//!   protected by a per-CPU trylock (as the kernel's `pcp_spin_trylock`).
//! * **Context** — interrupt masking around spinlocks (`local_irq_save`),
//!   the preemption count that tells task, atomic, softirq and hardirq context
//!   apart, and the per-task `PF_*` flags used by `memalloc_noio_save` and
//!   friends.
//! * **Sleeping and waking** — a futex-like wait on a 32-bit word, used by
//!   allocations that may sleep until memory is freed.
//! * **Physical memory** — giving freed RAM back to the host (`discard_ram`),
//!   a no-op on bare metal.
//! * **Page tables** — mapping RAM pages and device memory into the vmalloc
//!   window (`map_pages`, `ioremap_pages`, `unmap_pages`).
//! * **printk** — where kernel messages go.
//!
//! Platforms implement it with `Sync` state; the core holds one by value inside
//! each machine.

use core::fmt;
use core::sync::atomic::AtomicU32;

/// `preempt_count()` layout, as in `include/linux/preempt.h`.
pub const PREEMPT_MASK: u32 = 0x0000_00ff;
/// Softirq bits of `preempt_count()`.
pub const SOFTIRQ_MASK: u32 = 0x0000_ff00;
/// Hardirq bits of `preempt_count()`.
pub const HARDIRQ_MASK: u32 = 0x000f_0000;
/// NMI bits of `preempt_count()`.
pub const NMI_MASK: u32 = 0x00f0_0000;
/// One level of preemption disabling.
pub const PREEMPT_OFFSET: u32 = 1 << 0;
/// One level of softirq context.
pub const SOFTIRQ_OFFSET: u32 = 1 << 8;
/// One level of hardirq context.
pub const HARDIRQ_OFFSET: u32 = 1 << 16;

/// Task flags the allocator honours (`current->flags`).
pub mod task_flags {
    /// Allocating memory to free memory: ignore watermarks, do not recurse into reclaim.
    pub const PF_MEMALLOC: u32 = 0x0000_0800;
    /// All allocations of this task behave as `GFP_NOFS`.
    pub const PF_MEMALLOC_NOFS: u32 = 0x0004_0000;
    /// All allocations of this task behave as `GFP_NOIO`.
    pub const PF_MEMALLOC_NOIO: u32 = 0x0008_0000;
    /// Allocations must not be movable (pinning).
    pub const PF_MEMALLOC_PIN: u32 = 0x1000_0000;
}

/// x86 page cache modes (`enum page_cache_mode`), the attribute of a device
/// mapping: what `ioremap` (UC-), `ioremap_uc`, `ioremap_wc`, `ioremap_wt`
/// and `ioremap_cache` (WB) ask the page tables for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageCacheMode {
    /// Write-back (cached): `_PAGE_CACHE_MODE_WB`.
    Wb = 0,
    /// Write-combining: `_PAGE_CACHE_MODE_WC`.
    Wc = 1,
    /// Uncached, overridable by an MTRR to WC: `_PAGE_CACHE_MODE_UC_MINUS`.
    UcMinus = 2,
    /// Strongly uncached: `_PAGE_CACHE_MODE_UC`.
    Uc = 3,
    /// Write-through: `_PAGE_CACHE_MODE_WT`.
    Wt = 4,
    /// Write-protected: `_PAGE_CACHE_MODE_WP`.
    Wp = 5,
}

/// The services a machine needs from the world it runs in.
///
/// # Contract
/// * `smp_processor_id()` returns a value below `nr_cpu_ids()`, and is the CPU
///   the caller ran on at some instant during the call.
/// * `futex_wait` returns when `word` no longer holds `expected`, when woken,
///   on timeout, or spuriously; callers re-check their condition.
/// * `local_irq_save`/`local_irq_restore` nest: restore gets the value save
///   returned.
pub trait Platform: Sync {
    /// The CPU the caller runs on now.
    fn smp_processor_id(&self) -> usize;

    /// The CPU the caller runs on, possibly stale at once (`raw_smp_processor_id`):
    /// for lock-free and trylock-protected per-CPU data, which stays correct
    /// whichever CPU's structure a migrated thread ends up using. Unlike
    /// `smp_processor_id` it ignores pinning (`preempt_disable`), so it can be
    /// the cheapest read the platform has.
    fn raw_smp_processor_id(&self) -> usize {
        self.smp_processor_id()
    }

    /// Whether the per-CPU fast paths may use restartable sequences (see
    /// `rseq.rs`): the platform gives every thread a registered Linux
    /// `struct rseq` ([`Platform::rseq_offset`]), its CPU ids are the machine's
    /// without folding (no two host CPUs share one machine CPU), and
    /// [`Platform::rseq_fence`] works. Asked once, at boot. Default: false.
    fn rseq_usable(&self) -> bool {
        false
    }

    /// Whether every thread has a Linux `struct rseq` at
    /// [`Platform::rseq_offset`] from its FS base, registered or not (an
    /// unregistered area reads a negative `cpu_id`). The slab fast paths of
    /// such a platform run their restartable sequences in both modes, and a
    /// machine not in rseq mode makes them fall back (`slab/rseq.rs`), so
    /// the fast paths test no mode flag. Default: false (the fast paths are
    /// the `cmpxchg16b` ones only; [`Platform::rseq_usable`] must say no).
    const RSEQ_AREA: bool = false;

    /// Where every thread's `struct rseq` lives (Linux's layout: `cpu_id` at
    /// byte 4, `rseq_cs` at byte 8): its offset from the thread's FS base,
    /// where x86-64 Linux keeps thread-local data (glibc's `__rseq_offset`).
    /// Only called when [`Platform::RSEQ_AREA`] is true or
    /// [`Platform::rseq_usable`] said yes.
    #[inline(always)]
    fn rseq_offset(&self) -> isize {
        0
    }

    /// How many CPU ids a thread's rseq area can show (the host's
    /// `nr_cpu_ids`): ids `0..n`, besides -1 and -2 for an unregistered
    /// area. Only asked when [`Platform::RSEQ_AREA`] is true.
    fn rseq_cpu_ids(&self) -> usize {
        self.nr_cpu_ids()
    }

    /// Make every restartable sequence in flight on `cpu` restart before
    /// returning (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`), so a
    /// store made before the call is seen by every sequence that commits
    /// after it. Only called when [`Platform::rseq_usable`] said yes.
    fn rseq_fence(&self, _cpu: usize) {}

    /// Number of possible CPUs (the size of every per-CPU array).
    fn nr_cpu_ids(&self) -> usize;

    /// Mask local interrupts; returns the previous state for `local_irq_restore`.
    fn local_irq_save(&self) -> usize {
        0
    }

    /// Restore the interrupt state saved by `local_irq_save`.
    fn local_irq_restore(&self, _flags: usize) {}

    /// Whether the platform keeps a real `preempt_count()` (the three
    /// functions below): then an unbalanced `preempt_enable()` is reported
    /// (`DEBUG_PREEMPT`'s check). Default: false (a count that stays 0).
    const TRACKS_PREEMPT_COUNT: bool = false;

    /// The caller's `preempt_count()` (see the `*_MASK` constants).
    fn preempt_count(&self) -> u32 {
        0
    }

    /// Raise `preempt_count()` (`preempt_disable`, entering IRQ context).
    fn preempt_count_add(&self, _val: u32) {}

    /// Lower `preempt_count()`.
    fn preempt_count_sub(&self, _val: u32) {}

    /// `preempt_disable()`: pin the caller to its CPU until the matching
    /// `preempt_enable()` and return that CPU; nests. While pinned,
    /// `smp_processor_id()` returns it. The default only raises
    /// `preempt_count()` (a platform whose threads cannot migrate needs no
    /// more).
    fn preempt_disable(&self) -> usize {
        self.preempt_count_add(PREEMPT_OFFSET);
        self.smp_processor_id()
    }

    /// `preempt_enable()`: undo one `preempt_disable()`.
    fn preempt_enable(&self) {
        self.preempt_count_sub(PREEMPT_OFFSET);
    }

    /// The current task's id, for reports (`current->pid`).
    fn current_pid(&self) -> u32 {
        0
    }

    /// Current task's `PF_*` flags.
    fn current_flags(&self) -> u32;

    /// Replace the current task's `PF_*` flags.
    fn set_current_flags(&self, flags: u32);

    /// Name of the current task, for reports (`current->comm`).
    fn current_comm(&self, buf: &mut [u8; 16]) -> usize;

    /// Sleep while `*word == expected`, at most `timeout_ns` nanoseconds.
    fn futex_wait(&self, word: &AtomicU32, expected: u32, timeout_ns: Option<u64>);

    /// Wake up to `n` sleepers on `word`.
    fn futex_wake(&self, word: &AtomicU32, n: u32);

    /// Monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;

    /// Pause inside a spin loop.
    fn cpu_relax(&self) {
        core::hint::spin_loop();
    }

    /// Let another thread run: called by lock waiters that spun for long,
    /// because in a process the lock holder may have been preempted.
    fn yield_cpu(&self) {
        core::hint::spin_loop();
    }

    /// Tell the host that the RAM in `[phys, phys+len)` is free: its contents
    /// may be dropped and read back as zeroes (hole punching). Bare metal: no-op.
    fn discard_ram(&self, _phys: u64, _len: u64) {}

    /// Whether `discard_ram` really drops memory (so discarded RAM reads as zero).
    fn discard_zeroes(&self) -> bool {
        false
    }

    /// Map the 4 KiB pages of RAM at physical addresses `phys` at consecutive
    /// virtual pages from `virt` (the vmalloc window's page tables). Returns
    /// false if the platform cannot (the default) or the host refused. A
    /// hosted platform may leave pages the host has not backed (discarded
    /// RAM) to fault in on first use.
    ///
    /// # Safety
    /// `[virt, virt + phys.len() * 4096)` lies in the vmalloc window the
    /// platform handed to the machine and is owned by the caller; every
    /// address in `phys` is a page-aligned page of this machine's RAM.
    unsafe fn map_pages(&self, _virt: usize, _phys: &[u64]) -> bool {
        false
    }

    /// Remove the mappings of `[virt, virt + len)` made by `map_pages`; the
    /// range stays reserved (accesses fault). Default: no-op.
    ///
    /// # Safety
    /// The range lies in the vmalloc window, is owned by the caller and no
    /// reference into it is used afterwards.
    unsafe fn unmap_pages(&self, _virt: usize, _len: usize) {}

    /// Flush stale translations of kernel addresses `[start, end)`
    /// (`flush_tlb_kernel_range`). Default: no-op.
    fn flush_tlb_kernel_range(&self, _start: usize, _end: usize) {}

    /// Map device memory (not RAM) `[phys, phys + len)` at `[virt, virt + len)`
    /// with cache mode `pcm` (`ioremap_page_range`). Returns false if the
    /// platform cannot (the default) or nothing backs that physical range.
    /// `unmap_pages` removes the mapping.
    ///
    /// # Safety
    /// `[virt, virt + len)` lies in the vmalloc window the platform handed to
    /// the machine and is owned by the caller; `phys`, `virt` and `len` are
    /// page-aligned and `len` is not 0.
    unsafe fn ioremap_pages(&self, _virt: usize, _phys: u64, _len: usize, _pcm: PageCacheMode) -> bool {
        false
    }

    /// `migrate_disable()`: keep the caller on its CPU until the matching
    /// `migrate_enable()` (`kmap_local_page`); returns that CPU. The default
    /// pins with `preempt_disable`, which is stricter than the kernel (the
    /// section becomes atomic) but the only pinning a platform may have.
    fn migrate_disable(&self) -> usize {
        self.preempt_disable()
    }

    /// `migrate_enable()`: undo one `migrate_disable()`.
    fn migrate_enable(&self) {
        self.preempt_enable()
    }

    /// Print a kernel message.
    fn printk(&self, args: fmt::Arguments<'_>);

    /// Print the caller's stack, after a warning.
    fn dump_stack(&self) {}

    /// The code address to record as the caller of the allocation or free
    /// in progress on this thread (`slub_debug`'s `U` tracks), when the
    /// platform knows a better one than the Rust call site; 0 when not. An
    /// `LD_PRELOAD` malloc, whose Rust call sites are its own, records the
    /// program's call.
    fn caller_ip(&self) -> usize {
        0
    }

    /// Write `addr`, a code address from [`Platform::caller_ip`], as the
    /// kernel's `%pS` does (`symbol+0xoff`), or in hex.
    fn write_symbol(&self, addr: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "0x{addr:x}")
    }
}
