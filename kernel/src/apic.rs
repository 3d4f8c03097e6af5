//! The local APIC (xAPIC, memory-mapped) and the legacy PICs.
//!
//! The 8259 PICs are remapped to vectors 0x20-0x2f and fully masked, so a
//! stray legacy interrupt can never land on an exception vector. Each CPU
//! enables its local APIC (spurious vector 0xff, LINT0/LINT1 masked, TPR 0),
//! and runs the APIC timer in periodic mode at `HZ` on `LOCAL_TIMER_VECTOR`,
//! its rate measured against the PIT at boot (`time.rs`).
//!
//! Before the memory manager is up the registers are reached through a
//! fixmap page mapped uncached (`FIX_APIC_BASE`), as the kernel does; the
//! ioremap test maps the same registers again through the vmalloc window and
//! checks both views agree. IPIs (INIT, STARTUP, fixed vectors) are written
//! to the ICR, waiting for the delivery-status bit to clear.

use crate::arch::{self, outb};
use crate::idt::{LOCAL_TIMER_VECTOR, PIC_BASE_VECTOR, SPURIOUS_APIC_VECTOR};
use crate::paging::{self, FIX_APIC_BASE, PTE_PCD, PTE_PWT};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

const MSR_APIC_BASE: u32 = 0x1b;
/// `APIC_ID`.
pub const APIC_ID: usize = 0x20;
/// `APIC_LVR`: version.
pub const APIC_LVR: usize = 0x30;
const APIC_TASKPRI: usize = 0x80;
const APIC_EOI: usize = 0xb0;
const APIC_SPIV: usize = 0xf0;
const APIC_ESR: usize = 0x280;
const APIC_ICR: usize = 0x300;
const APIC_ICR2: usize = 0x310;
const APIC_LVTT: usize = 0x320;
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_LVTERR: usize = 0x370;
const APIC_TMICT: usize = 0x380;
const APIC_TMCCT: usize = 0x390;
const APIC_TDCR: usize = 0x3e0;
const APIC_LVT_MASKED: u32 = 1 << 16;
const APIC_LVT_TIMER_PERIODIC: u32 = 1 << 17;
const APIC_ICR_BUSY: u32 = 1 << 12;
const APIC_DM_INIT: u32 = 0x500;
const APIC_DM_STARTUP: u32 = 0x600;
const APIC_INT_ASSERT: u32 = 0x4000;
const APIC_INT_LEVELTRIG: u32 = 0x8000;
/// Timer interrupts per second.
pub const HZ: u64 = 250;

static APIC_VIRT: AtomicUsize = AtomicUsize::new(0);
static APIC_PHYS: AtomicUsize = AtomicUsize::new(0);
static TIMER_PER_MS: AtomicU32 = AtomicU32::new(0);

fn read(reg: usize) -> u32 {
    // SAFETY: APIC_VIRT maps the local APIC page uncached; `reg` is a
    // register offset inside it.
    unsafe { core::ptr::read_volatile((APIC_VIRT.load(Ordering::Relaxed) + reg) as *const u32) }
}

fn write(reg: usize, v: u32) {
    // SAFETY: as `read`.
    unsafe { core::ptr::write_volatile((APIC_VIRT.load(Ordering::Relaxed) + reg) as *mut u32, v) }
}

/// Remap and mask the legacy PICs.
pub fn disable_pic() {
    // SAFETY: the 8259 command/data ports; the ICW sequence remaps, OCW1 masks.
    unsafe {
        outb(0x20, 0x11);
        outb(0xa0, 0x11);
        outb(0x21, PIC_BASE_VECTOR);
        outb(0xa1, PIC_BASE_VECTOR + 8);
        outb(0x21, 4);
        outb(0xa1, 2);
        outb(0x21, 1);
        outb(0xa1, 1);
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}

/// Map the local APIC (boot CPU, once). Returns its physical address.
pub fn map() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
    let base = unsafe { arch::rdmsr(MSR_APIC_BASE) } & 0xffff_f000;
    let va = paging::set_fixmap(FIX_APIC_BASE, base, paging::PAGE_KERNEL | PTE_PCD | PTE_PWT)
        .expect("fixmap for the local APIC");
    APIC_PHYS.store(base as usize, Ordering::Relaxed);
    APIC_VIRT.store(va, Ordering::Relaxed);
    base
}

/// Physical address of the local APIC.
pub fn phys_base() -> u64 {
    APIC_PHYS.load(Ordering::Relaxed) as u64
}

/// Virtual address of the fixmap mapping.
pub fn fixmap_base() -> usize {
    APIC_VIRT.load(Ordering::Relaxed)
}

/// Enable this CPU's local APIC.
pub fn init_this_cpu() {
    // SAFETY: set the global enable bit in IA32_APIC_BASE (it is set after
    // reset; firmware may have cleared it).
    unsafe {
        let v = arch::rdmsr(MSR_APIC_BASE);
        arch::wrmsr(MSR_APIC_BASE, v | (1 << 11));
    }
    write(APIC_TASKPRI, 0);
    write(APIC_LVT0, APIC_LVT_MASKED);
    write(APIC_LVT1, APIC_LVT_MASKED);
    write(APIC_LVTERR, APIC_LVT_MASKED);
    write(APIC_SPIV, 0x100 | SPURIOUS_APIC_VECTOR as u32);
    write(APIC_ESR, 0);
    write(APIC_LVTT, APIC_LVT_MASKED);
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    read(APIC_ID) >> 24
}

/// Read a register (for the ioremap cross-check).
pub fn read_reg(reg: usize) -> u32 {
    read(reg)
}

/// End of interrupt.
pub fn eoi() {
    write(APIC_EOI, 0);
}

fn wait_icr_idle() {
    let mut n = 0u32;
    while read(APIC_ICR) & APIC_ICR_BUSY != 0 && n < 10_000_000 {
        n += 1;
        arch::pause();
    }
}

/// Send a fixed-vector IPI to the CPU with APIC id `dest`.
pub fn send_ipi(dest: u32, vector: u8) {
    let flags = arch::read_rflags();
    arch::cli();
    wait_icr_idle();
    write(APIC_ICR2, dest << 24);
    write(APIC_ICR, vector as u32 | APIC_INT_ASSERT);
    wait_icr_idle();
    if flags & arch::X86_EFLAGS_IF != 0 {
        // SAFETY: interrupts were on at entry.
        unsafe { arch::sti() };
    }
}

/// INIT, then two STARTUP IPIs at `trampoline` (page-aligned, below 1 MiB),
/// with the MP specification's delays.
pub fn wakeup_secondary_cpu(dest: u32, trampoline: u64) {
    wait_icr_idle();
    write(APIC_ICR2, dest << 24);
    write(APIC_ICR, APIC_INT_LEVELTRIG | APIC_INT_ASSERT | APIC_DM_INIT);
    wait_icr_idle();
    write(APIC_ICR2, dest << 24);
    write(APIC_ICR, APIC_INT_LEVELTRIG | APIC_DM_INIT);
    wait_icr_idle();
    crate::time::udelay(10_000);
    for _ in 0..2 {
        write(APIC_ICR2, dest << 24);
        write(APIC_ICR, APIC_DM_STARTUP | (trampoline >> 12) as u32);
        crate::time::udelay(200);
        wait_icr_idle();
    }
}

/// The timer's current count (for calibration: the timer runs one-shot
/// from all ones, divided by 16).
pub fn start_calibration_count() {
    write(APIC_TDCR, 0x3);
    write(APIC_LVTT, APIC_LVT_MASKED);
    write(APIC_TMICT, u32::MAX);
}

/// The timer's current count.
pub fn current_count() -> u32 {
    read(APIC_TMCCT)
}

/// Record the calibrated timer rate (ticks per millisecond at divide 16).
pub fn set_timer_rate(per_ms: u64) {
    TIMER_PER_MS.store(per_ms.clamp(1, u32::MAX as u64) as u32, Ordering::Relaxed);
}

/// Start this CPU's periodic timer at `HZ`.
pub fn start_timer() {
    let per_ms = TIMER_PER_MS.load(Ordering::Relaxed).max(1) as u64;
    let count = (per_ms * 1000 / HZ).max(1) as u32;
    write(APIC_TDCR, 0x3);
    write(APIC_LVTT, APIC_LVT_TIMER_PERIODIC | LOCAL_TIMER_VECTOR as u32);
    write(APIC_TMICT, count);
}

/// Stop this CPU's timer.
pub fn stop_timer() {
    write(APIC_LVTT, APIC_LVT_MASKED);
    write(APIC_TMICT, 0);
}

/// `smp_apic_timer_interrupt`: count the tick and run the tick's work.
pub fn timer_interrupt() {
    crate::percpu::this_area()
        .timer_ticks
        .fetch_add(1, Ordering::Relaxed);
    crate::irq_work::timer_tick();
}
