//! `cmpxchg_double`: compare-and-exchange of two adjacent machine words.
//!
//! SLUB's lock-free paths swap a freelist pointer together with a second
//! word — the per-CPU transaction id (`tid`) or the slab's counters — so a
//! pointer that was popped and pushed back (ABA) is still detected. On x86-64
//! this is `lock cmpxchg16b` on a 16-byte aligned pair.

use core::sync::atomic::{AtomicUsize, Ordering};

/// A pair of words updated together, 16-byte aligned.
#[repr(C, align(16))]
#[derive(Default)]
pub struct DoubleWord {
    /// First word (a freelist pointer).
    pub lo: AtomicUsize,
    /// Second word (a tid or counters).
    pub hi: AtomicUsize,
}

impl DoubleWord {
    /// A pair with these values.
    pub const fn new(lo: usize, hi: usize) -> Self {
        DoubleWord {
            lo: AtomicUsize::new(lo),
            hi: AtomicUsize::new(hi),
        }
    }

    /// Read both words, the second (tid/counters) first — not atomically as
    /// a pair; callers validate with `cas`, which fails if either changed.
    #[inline(always)]
    pub fn load(&self) -> (usize, usize) {
        let hi = self.hi.load(Ordering::Acquire);
        let lo = self.lo.load(Ordering::Acquire);
        (lo, hi)
    }

    /// Replace `(lo, hi) == old` with `new`; true on success.
    #[inline(always)]
    pub fn cas(&self, old: (usize, usize), new: (usize, usize)) -> bool {
        // SAFETY: `self` is a valid, 16-byte aligned pair of words.
        unsafe { cmpxchg_double(self as *const DoubleWord as *mut usize, old, new) }
    }
}

/// Compare-and-exchange the two words at `p` (16-byte aligned).
///
/// # Safety
/// `p` must be valid for reads and writes of two words and 16-byte aligned,
/// and only accessed atomically by others.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn cmpxchg_double(p: *mut usize, old: (usize, usize), new: (usize, usize)) -> bool {
    debug_assert!(
        (p as usize).is_multiple_of(16),
        "cmpxchg_double: misaligned {p:p}"
    );
    // SAFETY: caller contract. Every operand has a fixed register: LLVM may otherwise hand out rbx, which the
    // instruction needs and which we swap in and out around it (`mov` keeps the flags for the branch).
    unsafe {
        core::arch::asm!(
            "xchg rdi, rbx",
            "lock cmpxchg16b [rsi]",
            "mov rbx, rdi",
            "jne {fail}",
            fail = label { return false; },
            in("rsi") p,
            inout("rdi") new.0 => _,
            inout("rax") old.0 => _,
            inout("rdx") old.1 => _,
            in("rcx") new.1,
            options(nostack),
        );
    }
    true
}

/// Portable fallback: a striped lock table serialises pairs by address.
///
/// # Safety
/// As the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn cmpxchg_double(p: *mut usize, old: (usize, usize), new: (usize, usize)) -> bool {
    use core::sync::atomic::AtomicBool;
    static LOCKS: [AtomicBool; 64] = [const { AtomicBool::new(false) }; 64];
    let l = &LOCKS[(p as usize >> 4) % 64];
    while l.swap(true, Ordering::Acquire) {
        core::hint::spin_loop();
    }
    // SAFETY: caller contract; the stripe lock serialises writers.
    let ok = unsafe {
        let lo = &*(p as *const AtomicUsize);
        let hi = &*(p.add(1) as *const AtomicUsize);
        if lo.load(Ordering::Relaxed) == old.0 && hi.load(Ordering::Relaxed) == old.1 {
            lo.store(new.0, Ordering::Relaxed);
            hi.store(new.1, Ordering::Relaxed);
            true
        } else {
            false
        }
    };
    l.store(false, Ordering::Release);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_pairs() {
        let d = DoubleWord::new(1, 2);
        assert!(!d.cas((1, 3), (5, 6)));
        assert_eq!(d.load(), (1, 2));
        assert!(d.cas((1, 2), (5, 6)));
        assert_eq!(d.load(), (5, 6));
    }
}
