//! `BareMetal`: kmem's platform in this kernel — the second implementation
//! of the platform boundary beside the hosted one.
//!
//! * **CPU id**: `gs:8` of the per-CPU area (`percpu.rs`), one load; both
//!   `smp_processor_id` and the allocators' `raw_smp_processor_id`.
//! * **Interrupt masking**: `pushfq; cli` and a conditional `sti`, for real.
//! * **Preemption count**: `gs:12`, changed by single `add`/`sub`
//!   instructions. The kernel has no scheduler, so `preempt_disable` only
//!   counts (a task cannot migrate); the count is what tells the allocator
//!   it is in hardirq context (`idt.rs` raises it around handlers).
//! * **Sleeping**: `futex_wait` waits until the word changes or the timeout
//!   passes: with interrupts enabled it halts until the next interrupt (the
//!   timer tick at the latest), otherwise it spins with `pause`. Spinning
//!   serves TLB shootdowns. `futex_wake` has nothing to do: sleepers
//!   re-check the word at every interrupt.
//! * **Time**: the TSC calibrated against the PIT.
//! * **Page tables**: `map_pages`/`unmap_pages` write real PTEs in the
//!   vmalloc window; `flush_tlb_kernel_range` shoots the range down on every
//!   online CPU (`tlb.rs`); `ioremap_pages` maps device memory with the
//!   cache mode's PAT/PCD/PWT bits (Linux's PAT layout, `paging.rs`).
//! * **printk**: the serial console, with the kernel's timestamps.

use crate::arch;
use crate::paging;
use crate::percpu;
use core::fmt;
use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering;
use kmem::platform::PageCacheMode;
use kmem::Platform;

/// The platform value a machine holds.
pub struct BareMetal {
    nr_cpus: usize,
}

impl BareMetal {
    /// A platform for `nr_cpus` CPUs.
    pub const fn new(nr_cpus: usize) -> Self {
        BareMetal { nr_cpus }
    }
}

impl Platform for BareMetal {
    #[inline(always)]
    fn smp_processor_id(&self) -> usize {
        percpu::this_cpu()
    }

    #[inline(always)]
    fn raw_smp_processor_id(&self) -> usize {
        percpu::this_cpu()
    }

    fn nr_cpu_ids(&self) -> usize {
        self.nr_cpus
    }

    #[inline]
    fn local_irq_save(&self) -> usize {
        let f = arch::read_rflags();
        arch::cli();
        (f & arch::X86_EFLAGS_IF) as usize
    }

    #[inline]
    fn local_irq_restore(&self, flags: usize) {
        if flags as u64 & arch::X86_EFLAGS_IF != 0 {
            // SAFETY: interrupts were enabled when `local_irq_save` ran, so
            // the IDT is loaded.
            unsafe { arch::sti() };
        }
    }

    const TRACKS_PREEMPT_COUNT: bool = true;

    #[inline(always)]
    fn preempt_count(&self) -> u32 {
        percpu::preempt_count()
    }

    #[inline(always)]
    fn preempt_count_add(&self, val: u32) {
        percpu::preempt_count_add(val)
    }

    #[inline(always)]
    fn preempt_count_sub(&self, val: u32) {
        percpu::preempt_count_sub(val)
    }

    fn current_pid(&self) -> u32 {
        0
    }

    fn current_flags(&self) -> u32 {
        percpu::task_flags()
    }

    fn set_current_flags(&self, flags: u32) {
        percpu::set_task_flags(flags)
    }

    fn current_comm(&self, buf: &mut [u8; 16]) -> usize {
        // The boot task of each CPU is its idle task, "swapper/N".
        let cpu = percpu::this_cpu();
        let mut n = 0;
        for &b in b"swapper/" {
            buf[n] = b;
            n += 1;
        }
        if cpu >= 10 {
            buf[n] = b'0' + (cpu / 10) as u8;
            n += 1;
        }
        buf[n] = b'0' + (cpu % 10) as u8;
        n + 1
    }

    fn futex_wait(&self, word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) {
        let deadline = timeout_ns.map(|t| crate::time::now_ns().saturating_add(t));
        while word.load(Ordering::Acquire) == expected {
            if deadline.is_some_and(|d| crate::time::now_ns() >= d) {
                return;
            }
            if arch::irqs_enabled() && crate::irq_work::timer_running() {
                // SAFETY: interrupts are on, so the IDT is loaded; the timer
                // guarantees a wake-up within a tick.
                unsafe { arch::safe_halt() };
            } else {
                percpu::service_pending_ipis();
                arch::pause();
            }
        }
    }

    fn futex_wake(&self, _word: &AtomicU32, _n: u32) {}

    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }

    #[inline]
    fn cpu_relax(&self) {
        percpu::service_pending_ipis();
        arch::pause();
    }

    fn yield_cpu(&self) {
        percpu::service_pending_ipis();
        arch::pause();
    }

    unsafe fn map_pages(&self, virt: usize, phys: &[u64]) -> bool {
        paging::map_4k(virt, phys, paging::PAGE_KERNEL)
    }

    unsafe fn unmap_pages(&self, virt: usize, len: usize) {
        paging::unmap_4k(virt, len)
    }

    unsafe fn ioremap_pages(&self, virt: usize, phys: u64, len: usize, pcm: PageCacheMode) -> bool {
        // x86 can map any physical range; what answers is the chipset's business.
        paging::map_device(virt, phys, len, pcm)
    }

    fn flush_tlb_kernel_range(&self, start: usize, end: usize) {
        crate::tlb::flush_kernel_range(start, end)
    }

    fn printk(&self, args: fmt::Arguments<'_>) {
        crate::printk::print(args)
    }

    fn dump_stack(&self) {
        let cpu = percpu::this_cpu();
        crate::printk!(
            "CPU: {} PID: 0 Comm: swapper/{} Not tainted 6.12.0-kmem #1",
            cpu,
            cpu
        );
        crate::printk!("Call Trace:");
        crate::stacktrace::walk(crate::stacktrace::current_rbp(), |ret| {
            crate::printk!("  {:016x}", ret)
        });
    }
}
