//! Exception reports: the kernel's oops. Any CPU exception but a spurious
//! `#DB` is fatal in this kernel; the report names the exception (and for a
//! page fault the address and the access, as `page_fault_oops` does), dumps
//! the registers in the kernel's layout, walks the frame-pointer chain for a
//! call trace, and ends the run with a failing exit code — a fault is never a
//! silent exit.
//!
//! A `#DB` this kernel did not ask for (it sets no hardware breakpoint and
//! never single-steps) is ignored as Linux's `exc_debug_kernel` does: warn
//! once, clear `TF` in the interrupted context, reset `DR6`, return. Linux
//! notes that emulators leak `#DB` into guests; QEMU's software emulation
//! raised one here, in about one boot of a hundred with four vCPUs on a
//! loaded host, right after a `lock cmpxchg16b` of the slab fast path.

use crate::arch;
use crate::idt::TrapFrame;
use crate::percpu;
use crate::qemu_exit::{self, EXIT_FAIL};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static OOPS_COUNT: AtomicU32 = AtomicU32::new(0);

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "nmi",
    "int3",
    "overflow",
    "bounds",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack segment",
    "general protection fault",
    "page fault",
    "spurious interrupt bug",
    "coprocessor error",
    "alignment check",
    "machine check",
    "SIMD coprocessor error",
    "virtualization exception",
    "control protection fault",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security exception",
    "reserved",
];

/// Spurious `#DB`s ignored so far (see the module documentation).
pub static SPURIOUS_DEBUG: AtomicU32 = AtomicU32::new(0);
static SPURIOUS_DEBUG_WARNED: AtomicBool = AtomicBool::new(false);

/// `DR6.B0`..`B3`: a hardware breakpoint fired.
const DR_TRAP_BITS: u64 = 0xf;
/// `DR6.BS`: a single step.
const DR_STEP: u64 = 1 << 14;
/// `RFLAGS.TF`.
const X86_EFLAGS_TF: u64 = 1 << 8;

/// `#DB` in kernel mode (`exc_debug_kernel`). A breakpoint hit is an oops
/// (nothing here sets one); anything else is spurious: warned about once,
/// counted, and `TF` is cleared so the interrupted code is not stepped on.
pub fn debug_exception(f: &mut TrapFrame) {
    let dr6 = arch::read_dr6();
    arch::clear_dr6();
    if dr6 & DR_TRAP_BITS != 0 {
        exception(f);
    }
    SPURIOUS_DEBUG.fetch_add(1, Ordering::Relaxed);
    if !SPURIOUS_DEBUG_WARNED.swap(true, Ordering::Relaxed) {
        crate::printk!(
            "WARNING: CPU: {} spurious #DB at {:016x} (DR6 {:#x}{}), ignored",
            percpu::this_cpu(),
            f.rip,
            dr6,
            if dr6 & DR_STEP != 0 || f.rflags & X86_EFLAGS_TF != 0 {
                ", TF cleared"
            } else {
                ""
            }
        );
    }
    f.rflags &= !X86_EFLAGS_TF;
}

/// Report a fatal exception and end the run.
pub fn exception(f: &TrapFrame) -> ! {
    let cpu = percpu::this_cpu();
    let nr = OOPS_COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    if nr > 1 {
        // A fault while reporting a fault: say so in one line and stop.
        crate::printk!("Oops while reporting an oops (CPU {cpu}, trap {})", f.vector);
        qemu_exit::exit(EXIT_FAIL);
    }
    let v = f.vector as usize;
    if v == 14 {
        let cr2 = arch::read_cr2();
        let e = f.error;
        crate::printk!("BUG: unable to handle page fault for address: {:016x}", cr2);
        crate::printk!(
            "#PF: supervisor {} access in kernel mode",
            if e & 0x10 != 0 {
                "instruction fetch"
            } else if e & 2 != 0 {
                "write"
            } else {
                "read"
            }
        );
        crate::printk!(
            "#PF: error_code(0x{:04x}) - {}",
            e,
            if e & 1 != 0 {
                "permissions violation"
            } else {
                "not-present page"
            }
        );
        crate::printk!("Oops: {:04x} [#{}] SMP", e, nr);
    } else {
        crate::printk!("{}: {:04x} [#{}] SMP", NAMES[v], f.error, nr);
    }
    crate::printk!(
        "CPU: {} PID: 0 Comm: swapper/{} Not tainted 6.12.0-kmem #1",
        cpu,
        cpu
    );
    crate::printk!("RIP: {:04x}:{:016x}", f.cs, f.rip);
    crate::printk!("RSP: {:04x}:{:016x} EFLAGS: {:08x}", f.ss, f.rsp, f.rflags);
    crate::printk!("RAX: {:016x} RBX: {:016x} RCX: {:016x}", f.rax, f.rbx, f.rcx);
    crate::printk!("RDX: {:016x} RSI: {:016x} RDI: {:016x}", f.rdx, f.rsi, f.rdi);
    crate::printk!("RBP: {:016x} R08: {:016x} R09: {:016x}", f.rbp, f.r8, f.r9);
    crate::printk!("R10: {:016x} R11: {:016x} R12: {:016x}", f.r10, f.r11, f.r12);
    crate::printk!("R13: {:016x} R14: {:016x} R15: {:016x}", f.r13, f.r14, f.r15);
    crate::printk!(
        "CR0: {:016x} CR2: {:016x} CR3: {:016x} CR4: {:016x}",
        arch::read_cr0(),
        arch::read_cr2(),
        arch::read_cr3(),
        arch::read_cr4()
    );
    crate::printk!("Call Trace:");
    crate::printk!(" <TASK> {:016x}", f.rip);
    crate::stacktrace::walk(f.rbp, |ret| crate::printk!("  {:016x}", ret));
    crate::printk!("---[ end trace 0000000000000000 ]---");
    crate::printk!("Kernel panic - not syncing: Fatal exception");
    qemu_exit::exit(EXIT_FAIL)
}
