//! The serial console: COM1 (a 16550 UART at I/O port 0x3f8), 115200 8N1,
//! polled. QEMU connects it to its stdout with `-serial stdio`.
//!
//! Every line goes out whole under `CONSOLE_LOCK`, taken with interrupts
//! masked, so lines of different CPUs never interleave. A CPU that faults
//! while holding the lock (an exception in the middle of a printk) breaks
//! it: the lock records its owner, and the owner may re-enter after a
//! bounded wait (`console_force`).

use crate::arch::{self, inb, outb};
use core::sync::atomic::{AtomicU32, Ordering};

const COM1: u16 = 0x3f8;
/// Owner of the console lock + 1 (0: free).
static CONSOLE_LOCK: AtomicU32 = AtomicU32::new(0);

/// Program the UART.
pub fn init() {
    // SAFETY: COM1's registers; the UART is ours.
    unsafe {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB
        outb(COM1, 0x01); // divisor 1: 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1
        outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x0b); // DTR, RTS, OUT2
    }
}

fn putb(b: u8) {
    // SAFETY: COM1's line status and data registers.
    unsafe {
        let mut spins = 0u32;
        while inb(COM1 + 5) & 0x20 == 0 && spins < 100_000 {
            spins += 1;
            arch::pause();
        }
        outb(COM1, b);
    }
}

/// Write raw bytes (`\n` becomes `\r\n`, as a kernel console does).
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            putb(b'\r');
        }
        putb(b);
    }
}

/// Run `f` holding the console lock with interrupts masked.
pub fn with_console<R>(cpu: u32, f: impl FnOnce() -> R) -> R {
    let flags = arch::read_rflags();
    arch::cli();
    let me = cpu + 1;
    let mut spins = 0u64;
    loop {
        match CONSOLE_LOCK.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => break,
            // Re-entered on the CPU that holds it (a fault inside printk):
            // the interrupted line is lost, the report goes out.
            Err(cur) if cur == me => break,
            Err(_) => {
                spins += 1;
                if spins > 50_000_000 {
                    // A CPU died holding the lock: take it over.
                    CONSOLE_LOCK.store(me, Ordering::Relaxed);
                    break;
                }
                crate::percpu::service_pending_ipis();
                arch::pause();
            }
        }
    }
    let r = f();
    CONSOLE_LOCK.store(0, Ordering::Release);
    if flags & arch::X86_EFLAGS_IF != 0 {
        // SAFETY: interrupts were enabled on entry, so the IDT is set up.
        unsafe { arch::sti() };
    }
    r
}
