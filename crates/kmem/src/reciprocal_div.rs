//! Division by a run-time constant with a multiply and shifts (the kernel's
//! `lib/reciprocal_div.c`), and the divisibility test that goes with it
//! ([`MultipleTest`]).
//!
//! SLUB stores `reciprocal_value(s->size)` in every cache and turns an
//! object's offset in its slab into its index with `reciprocal_divide`
//! (`obj_to_index`) instead of a `div` instruction, whose latency is tens of
//! cycles. kmem does the same where a hot path divides by the object size:
//! `kfree`'s exact check of a pointer into a cache whose objects are not a
//! power of two (`kmalloc-96`, `kmalloc-192`).
//!
//! The method (Granlund and Montgomery, as in the kernel): for a divisor
//! `d > 0` with `l = fls(d - 1)`, let `m = 2^32 * (2^l - d) / d + 1`,
//! `sh1 = min(l, 1)` and `sh2 = max(l - 1, 0)`; then for every 32-bit `a`,
//! with `t = (a * m) >> 32`, the quotient `a / d` is
//! `(t + ((a - t) >> sh1)) >> sh2`. Exact for all 32-bit dividends (tested
//! exhaustively over the offsets of a 4 MiB slab).

/// `struct reciprocal_value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReciprocalValue {
    m: u32,
    sh1: u8,
    sh2: u8,
}

impl ReciprocalValue {
    /// `reciprocal_value(d)`; `d` must be nonzero.
    pub const fn new(d: u32) -> Self {
        assert!(d != 0);
        let l = 32 - (d - 1).leading_zeros();
        let m = ((1u64 << 32) * ((1u64 << l) - d as u64)) / d as u64 + 1;
        ReciprocalValue {
            m: m as u32,
            sh1: if l > 1 { 1 } else { l as u8 },
            sh2: if l > 0 { (l - 1) as u8 } else { 0 },
        }
    }

    /// `reciprocal_divide(a, R)`: `a / d`.
    #[inline(always)]
    pub const fn divide(self, a: u32) -> u32 {
        let t = ((a as u64 * self.m as u64) >> 32) as u32;
        (t + ((a - t) >> self.sh1)) >> self.sh2
    }
}

/// "Is `x` one of `0, d, 2d, ..., (n - 1)d`?" in a multiply, a rotate and a
/// compare, without a division: `kfree`'s inline check of a pointer into a
/// slab of non-power-of-two objects (`kmalloc-96`, `kmalloc-192`).
///
/// The method (Granlund and Montgomery, "Division by invariant integers
/// using multiplication", section 9): with `d = m * 2^k`, `m` odd, and `inv`
/// the inverse of `m` modulo 2^64, `(x * inv)` rotated right by `k` is `x / d`
/// when `d` divides `x`, and above `(2^64 - 1) / d` when it does not; so one
/// unsigned comparison with `n - 1` (at most that bound) answers both "a
/// multiple" and "below `n * d`". `NEVER` answers no for every nonzero `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultipleTest {
    inv: u64,
    k: u32,
    max: u64,
}

impl MultipleTest {
    /// No nonzero `x` passes.
    pub const NEVER: Self = MultipleTest { inv: 1, k: 0, max: 0 };

    /// The test for multiples of `d` below `n * d`; `d` and `n` nonzero.
    pub const fn new(d: u64, n: u64) -> Self {
        assert!(d != 0 && n != 0 && n - 1 <= u64::MAX / d);
        let k = d.trailing_zeros();
        let m = d >> k;
        // Newton's iteration doubles the correct low bits: m is its own
        // inverse modulo 2^3, and five steps reach 2^96.
        let mut inv = m;
        let mut i = 0;
        while i < 5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
            i += 1;
        }
        MultipleTest { inv, k, max: n - 1 }
    }

    /// Whether `x` is `i * d` for some `i < n`.
    #[inline(always)]
    pub const fn test(self, x: u64) -> bool {
        x.wrapping_mul(self.inv).rotate_right(self.k) <= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiples_exactly() {
        for (d, n) in [
            (96u64, 42u64),
            (192, 21),
            (24, 170),
            (3, 1000),
            (64, 64),
            (1, 7),
            (200, 20),
        ] {
            let t = MultipleTest::new(d, n);
            for x in 0..(1u64 << 16) {
                assert_eq!(t.test(x), x % d == 0 && x / d < n, "{x} against {d} x {n}");
            }
            for x in [u64::MAX, u64::MAX - d + 1, 1 << 63, (n - 1) * d, n * d] {
                assert_eq!(t.test(x), x % d == 0 && x / d < n, "{x} against {d} x {n}");
            }
        }
        for x in 1..(1u64 << 16) {
            assert!(!MultipleTest::NEVER.test(x));
        }
    }

    #[test]
    fn exact_for_object_sizes() {
        for d in [1u32, 3, 7, 24, 96, 192, 200, 8192, u32::MAX] {
            let r = ReciprocalValue::new(d);
            for a in (0..1u32 << 22).chain([u32::MAX - 1, u32::MAX, 1 << 31, (1 << 31) - 1]) {
                assert_eq!(r.divide(a), a / d, "{a} / {d}");
            }
        }
    }
}
