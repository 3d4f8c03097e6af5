//! Time: the TSC, calibrated against the PIT (channel 2, gate through port
//! 0x61, as the kernel's `pit_calibrate_tsc`), and the local APIC timer's
//! rate measured in the same window. `now_ns` is the TSC scaled to
//! nanoseconds. Under QEMU's TCG both count the same virtual clock, so the
//! calibration is as good as the PIT.

use crate::arch::{self, inb, outb};
use core::sync::atomic::{AtomicU64, Ordering};

const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 10 ms of PIT ticks.
const CAL_LATCH: u64 = PIT_HZ / 100;

static TSC_KHZ: AtomicU64 = AtomicU64::new(1_000_000);
static TSC_BOOT: AtomicU64 = AtomicU64::new(0);

/// Measure the TSC (and, through `lapic_count`, the APIC timer) against the
/// PIT. Returns `(tsc_khz, lapic ticks per ms)`.
pub fn calibrate(mut lapic_count: impl FnMut() -> u32) -> (u64, u64) {
    // SAFETY: PIT channel 2 and the port-0x61 gate: the speaker stays off
    // (bit 1 clear), only the gate (bit 0) and the output (bit 5) are used.
    let (tsc, apic) = unsafe {
        let g = inb(0x61);
        outb(0x61, (g & !0x02) | 0x01);
        outb(0x43, 0xb0); // channel 2, lobyte/hibyte, mode 0, binary
        outb(0x42, (CAL_LATCH & 0xff) as u8);
        outb(0x42, (CAL_LATCH >> 8) as u8);
        let a0 = lapic_count();
        let t0 = arch::rdtsc();
        let mut n = 0u64;
        while inb(0x61) & 0x20 == 0 && n < 1_000_000_000 {
            n += 1;
        }
        let t1 = arch::rdtsc();
        let a1 = lapic_count();
        outb(0x61, g);
        (t1 - t0, a0.wrapping_sub(a1) as u64)
    };
    // ticks per 10 ms → kHz and per ms.
    let khz = (tsc / 10).max(1);
    TSC_KHZ.store(khz, Ordering::Relaxed);
    TSC_BOOT.store(arch::rdtsc(), Ordering::Relaxed);
    (khz, apic / 10)
}

/// TSC frequency in kHz.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Nanoseconds since calibration.
pub fn now_ns() -> u64 {
    let boot = TSC_BOOT.load(Ordering::Relaxed);
    if boot == 0 {
        return 0; // not calibrated yet
    }
    let d = arch::rdtsc().wrapping_sub(boot);
    ((d as u128 * 1_000_000) / tsc_khz() as u128) as u64
}

/// Busy-wait `us` microseconds.
pub fn udelay(us: u64) {
    let end = now_ns() + us * 1000;
    while now_ns() < end {
        crate::percpu::service_pending_ipis();
        arch::pause();
    }
}
