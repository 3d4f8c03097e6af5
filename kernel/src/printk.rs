//! `printk` to the serial console: each message is formatted into a line
//! buffer on the stack (never allocating: it runs inside the allocator and
//! in interrupt handlers), prefixed with the time since boot as the kernel's
//! console shows it (`[    1.234567] `), and written whole under the
//! console lock.

use crate::percpu;
use crate::serial;
use core::fmt::{self, Write};

/// Longest line; longer messages are cut.
pub const LINE_MAX: usize = 512;

struct LineBuf {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_MAX - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Print one message (a trailing newline is added if missing; embedded
/// newlines are kept and each continuation line is not re-stamped).
pub fn print(args: fmt::Arguments<'_>) {
    let ns = crate::time::now_ns();
    let mut l = LineBuf {
        buf: [0; LINE_MAX],
        len: 0,
    };
    let _ = write!(l, "[{:5}.{:06}] ", ns / 1_000_000_000, (ns / 1000) % 1_000_000);
    let _ = l.write_fmt(args);
    if l.len == 0 || l.buf[l.len - 1] != b'\n' {
        l.buf[l.len] = b'\n';
        l.len += 1;
    }
    let bytes = &l.buf[..l.len];
    serial::with_console(percpu::this_cpu() as u32, || serial::write_bytes(bytes));
}

/// Write text as it is (multi-line `/proc` files), under the console lock.
pub fn write_raw(s: &str) {
    serial::with_console(percpu::this_cpu() as u32, || serial::write_bytes(s.as_bytes()));
}

/// `printk!("fmt", args...)`.
#[macro_export]
macro_rules! printk {
    ($($arg:tt)*) => { $crate::printk::print(format_args!($($arg)*)) };
}
