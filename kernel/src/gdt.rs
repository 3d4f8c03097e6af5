//! Task state segments: one per CPU, each with its own interrupt stacks
//! (IST). The double fault and NMI handlers run on IST stacks, so a kernel
//! stack overflow still gets a register dump instead of a triple fault.
//!
//! The GDT itself is shared (`boot.rs`); each CPU writes its TSS descriptor
//! at `TSS_BASE_SEL + 16 * cpu`, reloads the GDT with its 64-bit base and
//! loads its task register.

use crate::boot::{self, GDT_ENTRIES, MAX_CPUS, TSS_BASE_SEL};
use crate::percpu;
use core::arch::asm;
use core::cell::UnsafeCell;

/// IST index (1-based, as the IDT gate field) for the double fault.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST index for NMIs and machine checks.
pub const IST_NMI: u8 = 2;
const IST_STACK_SIZE: usize = 16 * 1024;

/// The 64-bit task state segment.
#[repr(C, packed(4))]
pub struct Tss {
    _reserved0: u32,
    /// Ring-0 stack pointers (unused: no user mode).
    pub rsp: [u64; 3],
    _reserved1: u64,
    /// Interrupt stack table.
    pub ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    /// I/O permission bitmap offset.
    pub iomap_base: u16,
}

impl Tss {
    /// An empty TSS.
    pub const ZERO: Tss = Tss {
        _reserved0: 0,
        rsp: [0; 3],
        _reserved1: 0,
        ist: [0; 7],
        _reserved2: 0,
        _reserved3: 0,
        iomap_base: core::mem::size_of::<Tss>() as u16,
    };
}

#[repr(C, align(16))]
struct IstStacks(UnsafeCell<[[u8; IST_STACK_SIZE]; 2 * MAX_CPUS]>);
// SAFETY: each CPU only ever runs on its own two stacks.
unsafe impl Sync for IstStacks {}
static IST_STACKS: IstStacks = IstStacks(UnsafeCell::new([[0; IST_STACK_SIZE]; 2 * MAX_CPUS]));

#[repr(C, packed)]
struct DescPtr {
    limit: u16,
    base: u64,
}

/// Set up and load this CPU's TSS, and reload the GDT with a 64-bit base.
///
/// # Safety
/// Once per CPU, on that CPU, after `percpu::init_this_cpu`.
pub unsafe fn init_this_cpu(cpu: usize) {
    let tss = percpu::tss_ptr(cpu);
    // SAFETY: this CPU's TSS and IST stacks are only touched here, by it.
    unsafe {
        let stacks = IST_STACKS.0.get() as *mut [u8; IST_STACK_SIZE];
        let df_top = stacks.add(2 * cpu) as usize + IST_STACK_SIZE;
        let nmi_top = stacks.add(2 * cpu + 1) as usize + IST_STACK_SIZE;
        (*tss).ist[IST_DOUBLE_FAULT as usize - 1] = df_top as u64;
        (*tss).ist[IST_NMI as usize - 1] = nmi_top as u64;
        let base = tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        // Available 64-bit TSS (type 9), present.
        let low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89u64 << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        let high = base >> 32;
        let idx = (TSS_BASE_SEL as usize) / 8 + 2 * cpu;
        let gdt = core::ptr::addr_of_mut!(boot::gdt_table) as *mut u64;
        gdt.add(idx).write_volatile(low);
        gdt.add(idx + 1).write_volatile(high);
        let ptr = DescPtr {
            limit: (GDT_ENTRIES * 8 - 1) as u16,
            base: gdt as u64,
        };
        asm!("lgdt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags));
        let sel = TSS_BASE_SEL + 16 * cpu as u16;
        asm!("ltr {:x}", in(reg) sel, options(nostack, preserves_flags));
    }
}
