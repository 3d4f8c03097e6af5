//! printk: the machine's kernel log (`dmesg`) and rate limiting.
//!
//! Every message goes to two places: the platform (a serial console, stderr)
//! and the machine's own log ring, a fixed buffer allocated from memblock at
//! boot. The ring keeps the newest text; `dmesg` reads it back, so tests and
//! tools can see exactly what the machine reported (warnings, "BUG: Bad page
//! state", allocation failures) without scraping stderr.
//!
//! `RateLimit` is the kernel's `ratelimit_state`: at most `burst` messages per
//! `interval`, the rest counted as suppressed.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The log ring: a byte buffer written circularly.
pub struct LogRing {
    buf: *mut u8,
    cap: usize,
    /// Total bytes ever written (the write position is `head % cap`).
    head: usize,
}

// SAFETY: the ring is only touched under the machine's log lock.
unsafe impl Send for LogRing {}

impl LogRing {
    /// A ring over `cap` bytes at `buf`.
    ///
    /// # Safety
    /// `buf` must be valid for `cap` bytes for the ring's whole life.
    pub const unsafe fn new(buf: *mut u8, cap: usize) -> Self {
        LogRing { buf, cap, head: 0 }
    }

    /// An empty ring with no storage (messages are only sent to the platform).
    pub const fn empty() -> Self {
        LogRing {
            buf: core::ptr::null_mut(),
            cap: 0,
            head: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.cap == 0 {
            return;
        }
        for &b in bytes {
            // SAFETY: `head % cap < cap` and the buffer is valid (constructor contract).
            unsafe { *self.buf.add(self.head % self.cap) = b };
            self.head += 1;
        }
    }

    /// Copy the ring's text, oldest first, into `out`.
    pub fn read(&self, out: &mut dyn Write) -> fmt::Result {
        if self.cap == 0 {
            return Ok(());
        }
        let len = self.head.min(self.cap);
        let start = self.head - len;
        // Skip a partial first line when the ring wrapped.
        let mut skipping = self.head > self.cap;
        let mut chunk = [0u8; 256];
        let mut n = 0;
        for i in start..self.head {
            // SAFETY: index reduced modulo cap, buffer valid.
            let b = unsafe { *self.buf.add(i % self.cap) };
            if skipping {
                if b == b'\n' {
                    skipping = false;
                }
                continue;
            }
            chunk[n] = b;
            n += 1;
            if n == chunk.len() {
                out.write_str(String256::lossy(&chunk[..n]))?;
                n = 0;
            }
        }
        out.write_str(String256::lossy(&chunk[..n]))
    }

    /// Bytes written since boot.
    pub fn written(&self) -> usize {
        self.head
    }
}

impl Write for LogRing {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Helper to turn a byte chunk (which may split a UTF-8 sequence) into text.
struct String256;
impl String256 {
    fn lossy(b: &[u8]) -> &str {
        match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: `valid_up_to` bytes are valid UTF-8.
                unsafe { core::str::from_utf8_unchecked(&b[..e.valid_up_to()]) }
            }
        }
    }
}

/// `struct ratelimit_state`.
pub struct RateLimit {
    interval_ns: u64,
    burst: usize,
    begin: AtomicU64,
    printed: AtomicUsize,
    /// Messages suppressed since boot.
    pub missed: AtomicUsize,
}

impl RateLimit {
    /// At most `burst` messages every `interval_ms`.
    pub const fn new(interval_ms: u64, burst: usize) -> Self {
        RateLimit {
            interval_ns: interval_ms * 1_000_000,
            burst,
            begin: AtomicU64::new(0),
            printed: AtomicUsize::new(0),
            missed: AtomicUsize::new(0),
        }
    }

    /// `__ratelimit`: may a message be printed now?
    pub fn allow(&self, now_ns: u64) -> bool {
        let begin = self.begin.load(Ordering::Relaxed);
        if begin == 0 || now_ns.saturating_sub(begin) >= self.interval_ns {
            self.begin.store(now_ns.max(1), Ordering::Relaxed);
            self.printed.store(0, Ordering::Relaxed);
        }
        if self.printed.fetch_add(1, Ordering::Relaxed) < self.burst {
            true
        } else {
            self.missed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// A `fmt::Write` into a fixed byte buffer (truncating).
pub struct FixedBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedBuf<N> {
    /// Empty buffer.
    pub const fn new() -> Self {
        FixedBuf { buf: [0; N], len: 0 }
    }
    /// The text written so far.
    pub fn as_str(&self) -> &str {
        String256::lossy(&self.buf[..self.len])
    }
    /// Bytes written.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Nothing written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Forget the contents.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A 64-bit value as the kernel's `%#018llx` (`{:#018x}` in Rust): `0x`
/// and 16 hexadecimal digits, written as one string. `core::fmt`'s padded
/// hexadecimal goes a digit and a padding character at a time: the boot's
/// twelve addresses (the e820 map, the zone and node ranges) took 11,000
/// instructions more that way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hex18(pub u64);

impl fmt::Display for Hex18 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = *b"0x0000000000000000";
        for (i, b) in buf[2..].iter_mut().enumerate() {
            let nibble = (self.0 >> (60 - 4 * i)) & 0xf;
            *b = b"0123456789abcdef"[nibble as usize];
        }
        // SAFETY: ASCII digits and `0x`.
        f.write_str(unsafe { core::str::from_utf8_unchecked(&buf) })
    }
}

/// A `fmt::Write` that only counts bytes (for `snprintf`-style lengths).
#[derive(Default)]
pub struct CountingWriter(pub usize);

impl Write for CountingWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex18_is_the_kernels_padded_hexadecimal() {
        for v in [0u64, 1, 0x3fffff, 0x1_ffff_ffff, u64::MAX, 0xdead_beef_0000_0042] {
            let mut a = FixedBuf::<32>::new();
            let mut b = FixedBuf::<32>::new();
            write!(a, "{}", Hex18(v)).unwrap();
            write!(b, "{v:#018x}").unwrap();
            assert_eq!(a.as_str(), b.as_str());
        }
    }

    #[test]
    fn ring_keeps_the_newest_whole_lines() {
        let mut mem = [0u8; 32];
        // SAFETY: `mem` outlives the ring.
        let mut r = unsafe { LogRing::new(mem.as_mut_ptr(), mem.len()) };
        for i in 0..10 {
            writeln!(r, "line {i}").unwrap();
        }
        let mut out = FixedBuf::<64>::new();
        r.read(&mut out).unwrap();
        assert_eq!(out.as_str(), "line 6\nline 7\nline 8\nline 9\n");
    }

    #[test]
    fn ratelimit_burst_then_suppress() {
        let rl = RateLimit::new(1000, 2);
        assert!(rl.allow(10));
        assert!(rl.allow(20));
        assert!(!rl.allow(30));
        assert_eq!(rl.missed.load(Ordering::Relaxed), 1);
        assert!(rl.allow(10 + 1_000_000_000));
    }
}
