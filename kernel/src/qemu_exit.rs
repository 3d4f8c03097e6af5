//! The verdict: QEMU's `isa-debug-exit` device (`-device
//! isa-debug-exit,iobase=0xf4,iosize=0x04`). Writing `v` to its port makes
//! QEMU exit with status `(v << 1) | 1`, so the runner tells a passing run
//! (33) from a failing one (35) from QEMU's own exits (0 after a triple
//! fault with `-no-reboot`, 124 from `timeout`).

use crate::arch;

/// Written for a passing run: QEMU exits with 33.
pub const EXIT_PASS: u32 = 0x10;
/// Written for a failing run: QEMU exits with 35.
pub const EXIT_FAIL: u32 = 0x11;
const ISA_DEBUG_EXIT_PORT: u16 = 0xf4;

/// End the run with `code` (`EXIT_PASS` or `EXIT_FAIL`).
pub fn exit(code: u32) -> ! {
    // SAFETY: the debug-exit port; QEMU terminates on this write.
    unsafe { arch::outl(ISA_DEBUG_EXIT_PORT, code) };
    // Without the device (a run by hand without it): stop here.
    arch::halt_forever()
}
