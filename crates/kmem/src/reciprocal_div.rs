//! Division by a run-time constant with a multiply and shifts (the kernel's
//! `lib/reciprocal_div.c`), and the divisibility test that goes with it
//! ([`MultipleTest`]).
//!
//! SLUB stores `reciprocal_value(s->size)` in every cache and turns an
//! object's offset in its slab into its index with `reciprocal_divide`
//! (`obj_to_index`) instead of a `div` instruction, whose latency is tens of
//! cycles. kmem does the same where a hot path divides by the object size:
//! `kfree`'s exact check of a pointer into a cache whose objects are not a
//! power of two (`kmalloc-96`, `kmalloc-192`) when the inline test
//! ([`MultipleTest`]) could not decide.
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
/// compare, without a division: `kfree`'s inline check of a pointer's
/// offset from its slab's first object, one test for every object size.
///
/// The method (Granlund and Montgomery, "Division by invariant integers
/// using multiplication", section 9): with `d = m * 2^k`, `m` odd, and `inv`
/// the inverse of `m` modulo 2^64, `(x * inv)` rotated right by `k` is `x / d`
/// when `d` divides `x`, and above `(2^64 - 1) / d` when it does not; so one
/// unsigned comparison with `n - 1` (at most that bound) answers both "a
/// multiple" and "below `n * d`". Here the rotation is the constant
/// [`MultipleTest::ROT`] for every `d` (an immediate operand, no load of
/// `k`): the multiplier carries the difference, `inv * 2^(ROT - k)`. Then
/// `(x * inv)` rotated by `ROT` is `x / d` for multiples, and `x * inv`
/// equals `j * 2^ROT` only if `x ≡ j * d` modulo `2^(64 - ROT + k)`: exact
/// for every offset `x` with `|x| < 2^40` (as a signed number) when
/// `n * d <= 2^40`, which a slab's offsets are. `NEVER` answers no for every
/// nonzero `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultipleTest {
    /// `-(inv * 2^(ROT - k))`: [`MultipleTest::test_at`] multiplies the
    /// negated offset, so the caller subtracts into the loaded base.
    pub(crate) neg_inv: u64,
    pub(crate) max: u64,
    /// `-neg_inv`, for an offset already taken from the base
    /// ([`MultipleTest::test_offset`]).
    pub(crate) inv: u64,
}

impl MultipleTest {
    /// The rotation: divisors with more than `ROT` trailing zero bits have
    /// no test.
    pub const ROT: u32 = 20;

    /// No nonzero `x` passes.
    pub const NEVER: Self = MultipleTest {
        neg_inv: u64::MAX,
        max: 0,
        inv: 1,
    };

    /// The test for multiples of `d` below `n * d`, for `d` and `n` nonzero
    /// with `n * d <= 2^40`; None if `d` has more than `ROT` trailing zeros.
    pub const fn new(d: u64, n: u64) -> Option<Self> {
        assert!(d != 0 && n != 0 && n <= (1 << 40) / d);
        let k = d.trailing_zeros();
        if k > Self::ROT {
            return None;
        }
        let m = d >> k;
        // Newton's iteration doubles the correct low bits: m is its own
        // inverse modulo 2^3, and five steps reach 2^96.
        let mut inv = m;
        let mut i = 0;
        while i < 5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
            i += 1;
        }
        let inv = inv << (Self::ROT - k);
        Some(MultipleTest {
            neg_inv: inv.wrapping_neg(),
            max: n - 1,
            inv,
        })
    }

    /// Whether `x` is `i * d` for some `i < n`.
    #[inline(always)]
    pub const fn test(self, x: u64) -> bool {
        self.test_at(0, x)
    }

    /// Whether the offset `x` is `i * d` for some `i < n` (`test`, with the
    /// positive multiplier: no negation where the offset is at hand).
    #[inline(always)]
    pub const fn test_offset(self, x: u64) -> bool {
        x.wrapping_mul(self.inv).rotate_right(Self::ROT) <= self.max
    }

    /// Whether `x - base` is `i * d` for some `i < n` (an object start of a
    /// slab whose first object is at `base`).
    #[inline(always)]
    pub const fn test_at(self, base: u64, x: u64) -> bool {
        base.wrapping_sub(x)
            .wrapping_mul(self.neg_inv)
            .rotate_right(Self::ROT)
            <= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn multiples_exactly() {
        for (d, n) in [
            (96u64, 42u64),
            (192, 21),
            (24, 170),
            (3, 1000),
            (64, 64),
            (8, 512),
            (8192, 4),
            (1 << 20, 2),
            (3 << 20, 2),
            (1, 7),
            (200, 20),
        ] {
            let t = MultipleTest::new(d, n).unwrap();
            let exact = |x: u64| x.is_multiple_of(d) && x / d < n;
            for x in 0..(1u64 << 16) {
                assert_eq!(t.test(x), exact(x), "{x} against {d} x {n}");
                assert_eq!(t.test_offset(x), exact(x), "{x} against {d} x {n}");
            }
            // Offsets up to 2^40 either side: around the multiples, the
            // slab's end, powers of two, and negative ones.
            let mut xs = vec![(n - 1) * d, n * d, n * d + d, 1 << 39, (1 << 40) - 1];
            for j in [1u64, 2, n - 1, n, n + 1, 1 << 20, (1 << 40) / d] {
                for delta in [0u64, 1, d / 2, d - 1] {
                    xs.push((j * d).wrapping_add(delta));
                    xs.push((j * d).wrapping_sub(delta));
                }
            }
            for x in xs {
                assert_eq!(t.test(x), exact(x), "{x} against {d} x {n}");
                assert_eq!(t.test_offset(x), exact(x), "{x} against {d} x {n}");
                let neg = x.wrapping_neg();
                assert_eq!(t.test(neg), neg == 0, "-{x} against {d} x {n}");
                assert_eq!(t.test_offset(neg), neg == 0, "-{x} against {d} x {n}");
            }
        }
        assert_eq!(MultipleTest::new(1 << 21, 2), None);
        for x in 1..(1u64 << 16) {
            assert!(!MultipleTest::NEVER.test(x));
            assert!(!MultipleTest::NEVER.test(x.wrapping_neg()));
            assert!(!MultipleTest::NEVER.test(x << 40));
            assert!(!MultipleTest::NEVER.test_offset(x));
            assert!(!MultipleTest::NEVER.test_offset(x.wrapping_neg()));
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
