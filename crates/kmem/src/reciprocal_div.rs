//! Division by a run-time constant with a multiply and shifts (the kernel's
//! `lib/reciprocal_div.c`).
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

#[cfg(test)]
mod tests {
    use super::*;

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
