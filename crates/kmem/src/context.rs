//! Execution context (`include/linux/preempt.h`, `kernel/sched/core.c`
//! `__might_sleep`).
//!
//! A machine tells task, atomic, softirq and hardirq context apart from the
//! caller's `preempt_count()` ([`Platform::preempt_count`]), laid out as the
//! kernel's: preemption-disable depth in bits 0-7, softirq in 8-15, hardirq
//! in 16-19, NMI in 20-23.
//!
//! * **Atomic** — inside `get_cpu()`/`preempt_disable()` (and any code that
//!   raised the count), softirq or hardirq: `in_atomic()`.
//! * **Interrupts** — a hosted process has none, so [`Kmem::run_in_hardirq`]
//!   and [`Kmem::run_in_softirq`] run a closure in *simulated* interrupt
//!   context on the current thread and CPU: the count is raised by
//!   `HARDIRQ_OFFSET` / `SOFTIRQ_OFFSET` around it (restored on unwind too).
//! * **`might_sleep`** — [`Kmem::might_sleep_at`] reports a sleeping call from
//!   atomic context with the kernel's three lines, once per call site (a
//!   process-wide table of sites, like the `static bool __warned` of a
//!   `WARN_ONCE`), and tells the caller whether the context was invalid: a
//!   sleeping allocation from atomic context must then **not sleep** — it
//!   should behave as if it had no `__GFP_DIRECT_RECLAIM` (try the free
//!   lists, then fail) rather than wait.

use core::panic::Location;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::machine::Kmem;
use crate::platform::{
    Platform, HARDIRQ_MASK, HARDIRQ_OFFSET, NMI_MASK, PREEMPT_MASK, PREEMPT_OFFSET, SOFTIRQ_MASK,
    SOFTIRQ_OFFSET,
};

/// `WARN_ON_ONCE` site of this file (a bit of the machine's warn-once mask).
const WARN_PREEMPT_COUNT: u32 = 12;

/// `SOFTIRQ_DISABLE_OFFSET`: `local_bh_disable` raises the count by this.
pub const SOFTIRQ_DISABLE_OFFSET: u32 = 2 * SOFTIRQ_OFFSET;

/// Call sites `might_sleep_at` remembers (after that, every report prints).
pub const MIGHT_SLEEP_SITES: usize = 64;

/// Addresses of the `Location`s already reported (0: free).
static REPORTED_SITES: [AtomicUsize; MIGHT_SLEEP_SITES] = [const { AtomicUsize::new(0) }; MIGHT_SLEEP_SITES];

/// Records `site`; true the first time it is seen (or when the table is full).
fn first_report(site: usize) -> bool {
    for slot in &REPORTED_SITES {
        match slot.compare_exchange(0, site, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(cur) if cur == site => return false,
            Err(_) => {}
        }
    }
    true
}

/// Undoes a `preempt_count` raise when dropped (also on unwind).
struct CountGuard<'a, P: Platform> {
    platform: &'a P,
    val: u32,
}

impl<P: Platform> Drop for CountGuard<'_, P> {
    fn drop(&mut self) {
        self.platform.preempt_count_sub(self.val);
    }
}

impl<P: Platform> Kmem<P> {
    /// `preempt_count()` of the caller.
    #[inline]
    pub fn preempt_count(&self) -> u32 {
        self.platform.preempt_count()
    }

    /// `in_irq()` / `in_hardirq()`: inside a (simulated) hardirq handler.
    #[inline]
    pub fn in_hardirq(&self) -> bool {
        self.preempt_count() & HARDIRQ_MASK != 0
    }

    /// `in_irq()`: the old name of `in_hardirq()`.
    #[inline]
    pub fn in_irq(&self) -> bool {
        self.in_hardirq()
    }

    /// `in_softirq()`: serving a softirq or with bottom halves disabled.
    #[inline]
    pub fn in_softirq(&self) -> bool {
        self.preempt_count() & SOFTIRQ_MASK != 0
    }

    /// `in_serving_softirq()`: inside a (simulated) softirq handler.
    #[inline]
    pub fn in_serving_softirq(&self) -> bool {
        self.preempt_count() & SOFTIRQ_MASK & SOFTIRQ_OFFSET != 0
    }

    /// `in_nmi()`.
    #[inline]
    pub fn in_nmi(&self) -> bool {
        self.preempt_count() & NMI_MASK != 0
    }

    /// `in_interrupt()`: hardirq, softirq (or bh disabled) or NMI.
    #[inline]
    pub fn in_interrupt(&self) -> bool {
        self.preempt_count() & (HARDIRQ_MASK | SOFTIRQ_MASK | NMI_MASK) != 0
    }

    /// `in_task()`: process context (not NMI, hardirq or serving a softirq).
    #[inline]
    pub fn in_task(&self) -> bool {
        self.preempt_count() & (NMI_MASK | HARDIRQ_MASK | SOFTIRQ_OFFSET) == 0
    }

    /// `in_atomic()`: the caller must not sleep.
    #[inline]
    pub fn in_atomic(&self) -> bool {
        self.preempt_count() != 0
    }

    /// `preempt_disable()`: pin the caller to its CPU; returns that CPU.
    #[inline]
    pub fn preempt_disable(&self) -> usize {
        self.platform.preempt_disable()
    }

    /// `preempt_enable()`. One without its `preempt_disable()` is reported
    /// as `DEBUG_PREEMPT` reports it, and leaves the count alone.
    #[inline]
    pub fn preempt_enable(&self) {
        if self.preempt_count_sub_ok(PREEMPT_OFFSET) {
            self.platform.preempt_enable()
        }
    }

    /// `preempt_count_sub`'s `DEBUG_PREEMPT` checks: lowering the count by
    /// `val` must not take it below zero, nor take a preemption level that
    /// is not there (a warning, once, and nothing lowered).
    fn preempt_count_sub_ok(&self, val: u32) -> bool {
        if !P::TRACKS_PREEMPT_COUNT {
            return true;
        }
        let count = self.platform.preempt_count();
        let bad = if val > count {
            "DEBUG_LOCKS_WARN_ON(val > preempt_count())"
        } else if val < PREEMPT_MASK && count & PREEMPT_MASK == 0 {
            "DEBUG_LOCKS_WARN_ON((val < PREEMPT_MASK) && !(preempt_count() & PREEMPT_MASK))"
        } else {
            return true;
        };
        self.warn_once(WARN_PREEMPT_COUNT, format_args!("{bad}"));
        false
    }

    /// `get_cpu()`: disable preemption and return the CPU the caller is now
    /// pinned to, until the matching `put_cpu()`. Nests.
    #[inline]
    pub fn get_cpu(&self) -> usize {
        self.platform.preempt_disable()
    }

    /// `put_cpu()` (`preempt_enable()`).
    #[inline]
    pub fn put_cpu(&self) {
        self.preempt_enable()
    }

    /// `local_bh_disable()`.
    pub fn local_bh_disable(&self) {
        self.platform.preempt_count_add(SOFTIRQ_DISABLE_OFFSET);
    }

    /// `local_bh_enable()` (checked as `preempt_enable`).
    pub fn local_bh_enable(&self) {
        if self.preempt_count_sub_ok(SOFTIRQ_DISABLE_OFFSET) {
            self.platform.preempt_count_sub(SOFTIRQ_DISABLE_OFFSET);
        }
    }

    /// Run `f` in simulated hardirq context on the current CPU
    /// (`preempt_count` raised by `HARDIRQ_OFFSET` around it).
    pub fn run_in_hardirq<R>(&self, f: impl FnOnce() -> R) -> R {
        self.platform.preempt_count_add(HARDIRQ_OFFSET);
        let _g = CountGuard {
            platform: &self.platform,
            val: HARDIRQ_OFFSET,
        };
        f()
    }

    /// Run `f` in simulated softirq context on the current CPU
    /// (`preempt_count` raised by `SOFTIRQ_OFFSET` around it).
    pub fn run_in_softirq<R>(&self, f: impl FnOnce() -> R) -> R {
        self.platform.preempt_count_add(SOFTIRQ_OFFSET);
        let _g = CountGuard {
            platform: &self.platform,
            val: SOFTIRQ_OFFSET,
        };
        f()
    }

    /// `__might_sleep(file, line)`: if the caller is in atomic context, print
    /// the kernel's report (once per call site `loc`) and return `true`: the
    /// caller must then not sleep (fail instead). `false`: sleeping is fine.
    pub fn might_sleep_at(&self, loc: &'static Location<'static>) -> bool {
        let pc = self.preempt_count();
        if pc == 0 {
            return false;
        }
        if first_report(loc as *const Location<'static> as usize) {
            let mut comm = [0u8; 16];
            let n = self.platform.current_comm(&mut comm);
            let comm = core::str::from_utf8(&comm[..n]).unwrap_or("?");
            crate::pr!(
                self,
                "BUG: sleeping function called from invalid context at {}:{}",
                loc.file(),
                loc.line()
            );
            crate::pr!(
                self,
                "in_atomic(): {}, irqs_disabled(): {}, non_block: 0, pid: {}, name: {}",
                (pc != 0) as u32,
                (pc & (HARDIRQ_MASK | NMI_MASK) != 0) as u32,
                self.platform.current_pid(),
                comm
            );
            crate::pr!(self, "preempt_count: {:x}, expected: 0", pc);
            self.platform.dump_stack();
        }
        true
    }

    /// `might_sleep()` at the caller's location (see [`Kmem::might_sleep_at`]).
    #[track_caller]
    pub fn might_sleep_here(&self) -> bool {
        self.might_sleep_at(Location::caller())
    }
}
