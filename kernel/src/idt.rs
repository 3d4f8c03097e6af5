//! Interrupts and exceptions: the IDT, the entry stubs and the dispatcher.
//!
//! Every one of the 256 vectors has a 16-byte stub (`isr_stubs + 16 * v`)
//! that pushes a zero error code where the CPU pushes none, then the vector
//! number, and jumps to `isr_common`. That saves the fifteen general
//! registers (a `TrapFrame` on the stack), calls `trap_dispatch(&mut
//! TrapFrame)`, restores them and returns with `iretq`. The double fault and
//! NMI gates switch to their IST stacks (`gdt.rs`).
//!
//! Dispatch: vectors 0-31 are exceptions — all fatal here, reported with a
//! register dump by `traps.rs`, which ends the run with a failing exit code.
//! Device and IPI vectors run their handler in hardirq context: `irq_enter`
//! raises `preempt_count()` by `HARDIRQ_OFFSET` (so the allocator knows it
//! must not sleep) and `irq_exit` lowers it; the local APIC gets its EOI.

use crate::boot::KERNEL_CS;
use crate::gdt::{IST_DOUBLE_FAULT, IST_NMI};
use crate::percpu;
use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::Ordering;
use kmem::platform::HARDIRQ_OFFSET;

/// The local APIC timer (`LOCAL_TIMER_VECTOR`).
pub const LOCAL_TIMER_VECTOR: u8 = 0xec;
/// TLB shootdown / call-function IPI (`CALL_FUNCTION_VECTOR`).
pub const CALL_FUNCTION_VECTOR: u8 = 0xfb;
/// Spurious APIC interrupts.
pub const SPURIOUS_APIC_VECTOR: u8 = 0xff;
/// First vector of the (masked) legacy PICs after remapping.
pub const PIC_BASE_VECTOR: u8 = 0x20;

/// Registers saved on entry, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

global_asm!(
    r#"
    .pushsection .text.isr, "ax"
    .p2align 4
    .globl isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    .p2align 4
    .if (vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call trap_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    static isr_stubs: u8;
}

#[repr(C, align(16))]
struct Idt(UnsafeCell<[[u64; 2]; 256]>);
// SAFETY: written once by the boot CPU before any CPU loads it.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([[0; 2]; 256]));

#[repr(C, packed)]
struct DescPtr {
    limit: u16,
    base: u64,
}

/// Fill the IDT (boot CPU, once, before interrupts are enabled anywhere).
pub fn init() {
    let stubs = core::ptr::addr_of!(isr_stubs) as u64;
    for v in 0..256u64 {
        let handler = stubs + 16 * v;
        let ist = match v {
            8 => IST_DOUBLE_FAULT,
            2 | 18 => IST_NMI,
            _ => 0,
        } as u64;
        let low = (handler & 0xffff)
            | ((KERNEL_CS as u64) << 16)
            | (ist << 32)
            | (0x8eu64 << 40) // present, DPL 0, 64-bit interrupt gate
            | (((handler >> 16) & 0xffff) << 48);
        let high = handler >> 32;
        // SAFETY: no CPU has loaded the IDT yet.
        unsafe { (*IDT.0.get())[v as usize] = [low, high] };
    }
}

/// Load the IDT on this CPU.
pub fn load() {
    let ptr = DescPtr {
        limit: (256 * 16 - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the IDT is filled (`init`) and static.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) };
}

/// `irq_enter`.
#[inline]
fn irq_enter() {
    percpu::preempt_count_add(HARDIRQ_OFFSET);
}

/// `irq_exit`.
#[inline]
fn irq_exit() {
    percpu::preempt_count_sub(HARDIRQ_OFFSET);
}

#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    if vector == 1 {
        return crate::traps::debug_exception(frame);
    }
    if vector < 32 {
        crate::traps::exception(frame);
    }
    percpu::this_area().irqs.fetch_add(1, Ordering::Relaxed);
    match vector {
        LOCAL_TIMER_VECTOR => {
            irq_enter();
            crate::apic::timer_interrupt();
            crate::apic::eoi();
            irq_exit();
        }
        CALL_FUNCTION_VECTOR => {
            irq_enter();
            crate::tlb::service();
            crate::apic::eoi();
            irq_exit();
        }
        SPURIOUS_APIC_VECTOR => {}
        v if (PIC_BASE_VECTOR..PIC_BASE_VECTOR + 16).contains(&v) => {
            // A masked legacy PIC can still raise its spurious IRQ 7/15.
        }
        v => {
            crate::printk!("do_IRQ: {}.{} No irq handler for vector", percpu::this_cpu(), v);
            crate::apic::eoi();
        }
    }
}
