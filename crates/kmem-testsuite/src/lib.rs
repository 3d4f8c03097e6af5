//! The machine-independent kmem tests, written once and run in every home:
//! the hosted test runner (`crates/kmem-hosted/tests/shared_suite.rs`) and
//! the bare-metal kernel (`kernel/`), which reports each case on its serial
//! console.
//!
//! `#![no_std]` without a heap: a test is a plain `fn(&Kmem<P>) ->
//! TestResult`, failure messages are formatted into a fixed buffer, and the
//! kernel log is searched with a streaming matcher (`log_contains`), so a
//! case runs wherever a machine runs. Cases assume only what every machine
//! has — some RAM, at least one CPU, a vmalloc window — and run with the
//! machine otherwise quiet (no other allocations racing the page counts).
//! Every case gives back what it took; `pages_came_back` checks it at the
//! end by comparing the free page count with the count before the suite.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// A failure carries its message inline: there is no heap to box it into.
#![allow(clippy::result_large_err)]

mod cases;

use core::fmt::{self, Write};
use kmem::{Kmem, Platform};

pub use cases::{quiesce, warm_up, SLEEP_REPORT};

/// A failure message (cut at `Failure::CAP` bytes).
pub struct Failure {
    buf: [u8; Failure::CAP],
    len: usize,
}

impl Failure {
    /// Longest message kept.
    pub const CAP: usize = 240;

    /// A failure with the formatted message.
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut f = Failure {
            buf: [0; Self::CAP],
            len: 0,
        };
        let _ = f.write_fmt(args);
        f
    }

    /// The message.
    pub fn msg(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl Write for Failure {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(Self::CAP - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg())
    }
}

/// What a case returns.
pub type TestResult = Result<(), Failure>;

/// Fail the case unless `cond` holds: `ensure!(cond, "fmt", args...)`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::Failure::new(format_args!($($arg)*)));
        }
    };
}

/// One test case.
pub struct Case<P: Platform> {
    /// Its name, as reported.
    pub name: &'static str,
    /// The test.
    pub run: fn(&Kmem<P>) -> TestResult,
}

/// The cases, in the order `run_all` runs them.
pub fn cases<P: Platform>() -> [Case<P>; 11] {
    use cases::*;
    [
        Case {
            name: "memblock_layout",
            run: memblock_layout::<P>,
        },
        Case {
            name: "pages_every_order",
            run: pages_every_order::<P>,
        },
        Case {
            name: "pages_zones_and_zeroing",
            run: pages_zones_and_zeroing::<P>,
        },
        Case {
            name: "slab_cache_with_ctor",
            run: slab_cache_with_ctor::<P>,
        },
        Case {
            name: "kmalloc_sizes",
            run: kmalloc_sizes::<P>,
        },
        Case {
            name: "mempool_under_exhaustion",
            run: mempool_under_exhaustion::<P>,
        },
        Case {
            name: "vmalloc_aliasing",
            run: vmalloc_aliasing::<P>,
        },
        Case {
            name: "vmap_pages",
            run: vmap_pages::<P>,
        },
        Case {
            name: "percpu_sums",
            run: percpu_sums::<P>,
        },
        Case {
            name: "slub_debug_detection",
            run: slub_debug_detection::<P>,
        },
        Case {
            name: "sleeping_alloc_in_atomic_reports",
            run: sleeping_alloc_in_atomic_reports::<P>,
        },
    ]
}

/// Run every case on `k`, then check that every page came back; `report`
/// gets each case's name and result. Returns `(passed, failed)`.
pub fn run_all<P: Platform>(k: &Kmem<P>, report: &mut dyn FnMut(&str, &TestResult)) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    warm_up(k);
    let before = quiesce(k);
    for c in cases::<P>() {
        let r = (c.run)(k);
        if r.is_ok() {
            passed += 1;
        } else {
            failed += 1;
        }
        report(c.name, &r);
    }
    let after = quiesce(k);
    let r: TestResult = if after == before {
        Ok(())
    } else {
        Err(Failure::new(format_args!(
            "{before} free pages before the suite, {after} after"
        )))
    };
    if r.is_ok() {
        passed += 1;
    } else {
        failed += 1;
    }
    report("pages_came_back", &r);
    (passed, failed)
}

/// Whether the kernel log written since byte `since` (`Kmem::dmesg_len`)
/// contains `needle` (at most 128 bytes).
pub fn log_contains<P: Platform>(k: &Kmem<P>, since: usize, needle: &str) -> bool {
    struct Count(usize);
    impl Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    // The ring holds the newest text; what was written after `since` is its tail.
    let new = k.dmesg_len().saturating_sub(since);
    let mut c = Count(0);
    let _ = k.dmesg(&mut c);
    let mut m = Matcher::new(needle.as_bytes(), c.0.saturating_sub(new));
    let _ = k.dmesg(&mut m);
    m.found
}

/// A streaming substring search (Knuth-Morris-Pratt) over what is written
/// after the first `skip` bytes.
struct Matcher<'a> {
    needle: &'a [u8],
    fail: [usize; 128],
    state: usize,
    found: bool,
    skip: usize,
}

impl<'a> Matcher<'a> {
    fn new(needle: &'a [u8], skip: usize) -> Self {
        let needle = &needle[..needle.len().min(128)];
        let mut fail = [0usize; 128];
        let mut k = 0;
        for i in 1..needle.len() {
            while k > 0 && needle[i] != needle[k] {
                k = fail[k - 1];
            }
            if needle[i] == needle[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Matcher {
            needle,
            fail,
            state: 0,
            found: needle.is_empty(),
            skip,
        }
    }
}

impl Write for Matcher<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        bytes = &bytes[skipped..];
        for &b in bytes {
            if self.found {
                return Ok(());
            }
            while self.state > 0 && b != self.needle[self.state] {
                self.state = self.fail[self.state - 1];
            }
            if b == self.needle[self.state] {
                self.state += 1;
            }
            if self.state == self.needle.len() {
                self.found = true;
            }
        }
        Ok(())
    }
}
