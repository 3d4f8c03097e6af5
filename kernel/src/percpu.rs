//! The platform's per-CPU area, reached through the GS base (as the
//! kernel's `%gs:` per-CPU accesses).
//!
//! Each CPU's `IA32_GS_BASE` points at its `CpuArea`. The fields the
//! allocator reads on every operation sit at fixed offsets and are read and
//! changed with single `gs:`-relative instructions, so they are correct on
//! whatever CPU the instruction executes and need neither a lock nor
//! interrupt masking: `cpu` (gs:8, `smp_processor_id`), `preempt_count`
//! (gs:12, an `add`/`sub` in place, as `__preempt_count_add`) and the task
//! flags (gs:16). This kernel has one task per CPU and no scheduler, so the
//! task's state is the CPU's state; interrupt handlers run on the interrupted
//! task's area, as in Linux.
//!
//! The areas are a static array (`MAX_CPUS` entries) in the kernel image:
//! they exist before the memory manager does.

use crate::arch;
use crate::boot::MAX_CPUS;
use crate::gdt::Tss;
use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const MSR_GS_BASE: u32 = 0xc000_0101;

/// One CPU's area.
#[repr(C, align(64))]
pub struct CpuArea {
    /// gs:0 — the area's own address.
    pub self_ptr: usize,
    /// gs:8 — the CPU number.
    pub cpu: u32,
    /// gs:12 — `preempt_count()`.
    pub preempt_count: u32,
    /// gs:16 — `current->flags`.
    pub task_flags: u32,
    /// The local APIC id.
    pub apic_id: u32,
    /// Local APIC timer interrupts taken.
    pub timer_ticks: AtomicU64,
    /// Interrupts of any vector taken.
    pub irqs: AtomicU64,
    /// TLB shootdown generation this CPU has completed (`tlb.rs`).
    pub tlb_done_gen: AtomicU64,
    /// TLB flush requests served.
    pub tlb_flushes: AtomicU64,
    /// Online (running `ap_main` or the boot CPU's `kmain`).
    pub online: AtomicBool,
    /// The CPU's task state segment (IST stacks).
    pub tss: UnsafeCell<Tss>,
}

// SAFETY: the plain fields are only written by their own CPU (through gs) or
// before the CPU starts; the shared ones are atomics; the TSS is written once
// by its CPU before `ltr`.
unsafe impl Sync for CpuArea {}

#[allow(clippy::declare_interior_mutable_const)]
const AREA_INIT: CpuArea = CpuArea {
    self_ptr: 0,
    cpu: 0,
    preempt_count: 0,
    task_flags: 0,
    apic_id: 0,
    timer_ticks: AtomicU64::new(0),
    irqs: AtomicU64::new(0),
    tlb_done_gen: AtomicU64::new(0),
    tlb_flushes: AtomicU64::new(0),
    online: AtomicBool::new(false),
    tss: UnsafeCell::new(Tss::ZERO),
};

struct Areas(UnsafeCell<[CpuArea; MAX_CPUS]>);
// SAFETY: see CpuArea.
unsafe impl Sync for Areas {}

static AREAS: Areas = Areas(UnsafeCell::new([AREA_INIT; MAX_CPUS]));

/// CPU `cpu`'s area, for remote readers (statistics, shootdown acks).
pub fn area(cpu: usize) -> &'static CpuArea {
    // SAFETY: the array is static; shared access to its atomics is fine.
    unsafe { &(*AREAS.0.get())[cpu] }
}

/// Point this CPU's GS base at area `cpu` and fill in its identity.
///
/// # Safety
/// Called once per CPU, on that CPU, before anything reads its area.
pub unsafe fn init_this_cpu(cpu: usize, apic_id: u32) {
    // SAFETY: nobody else writes this entry (caller's promise).
    unsafe {
        let a = &mut (*AREAS.0.get())[cpu];
        a.self_ptr = a as *mut CpuArea as usize;
        a.cpu = cpu as u32;
        a.apic_id = apic_id;
        a.preempt_count = 0;
        arch::wrmsr(MSR_GS_BASE, a.self_ptr as u64);
    }
}

/// `smp_processor_id()`: one `gs:`-relative load.
#[inline(always)]
pub fn this_cpu() -> usize {
    let v: u32;
    // SAFETY: every CPU sets its GS base before running kernel code that calls this.
    unsafe { asm!("mov {:e}, dword ptr gs:[8]", out(reg) v, options(nostack, readonly, preserves_flags)) };
    v as usize
}

/// `preempt_count()`.
#[inline(always)]
pub fn preempt_count() -> u32 {
    let v: u32;
    // SAFETY: as `this_cpu`.
    unsafe { asm!("mov {:e}, dword ptr gs:[12]", out(reg) v, options(nostack, readonly, preserves_flags)) };
    v
}

/// `__preempt_count_add(val)`: one instruction, atomic against interrupts.
#[inline(always)]
pub fn preempt_count_add(val: u32) {
    // SAFETY: as `this_cpu`; the add targets this CPU's own counter.
    unsafe { asm!("add dword ptr gs:[12], {:e}", in(reg) val, options(nostack)) };
}

/// `__preempt_count_sub(val)`.
#[inline(always)]
pub fn preempt_count_sub(val: u32) {
    // SAFETY: as `preempt_count_add`.
    unsafe { asm!("sub dword ptr gs:[12], {:e}", in(reg) val, options(nostack)) };
}

/// `current->flags`.
#[inline(always)]
pub fn task_flags() -> u32 {
    let v: u32;
    // SAFETY: as `this_cpu`.
    unsafe { asm!("mov {:e}, dword ptr gs:[16]", out(reg) v, options(nostack, readonly, preserves_flags)) };
    v
}

/// Set `current->flags`.
#[inline(always)]
pub fn set_task_flags(v: u32) {
    // SAFETY: as `this_cpu`.
    unsafe { asm!("mov dword ptr gs:[16], {:e}", in(reg) v, options(nostack, preserves_flags)) };
}

/// This CPU's area.
#[inline]
pub fn this_area() -> &'static CpuArea {
    area(this_cpu())
}

/// Raw pointer to CPU `cpu`'s TSS (written once by that CPU before `ltr`).
pub fn tss_ptr(cpu: usize) -> *mut Tss {
    area(cpu).tss.get()
}

/// Serve requests other CPUs posted for this one (TLB shootdowns) from a
/// spin loop that may run with interrupts masked, so a CPU waiting for a
/// lock never leaves a shootdown waiting for it.
#[inline]
pub fn service_pending_ipis() {
    crate::tlb::service();
}

/// Mark this CPU online.
pub fn set_online(cpu: usize) {
    area(cpu).online.store(true, Ordering::Release);
}
