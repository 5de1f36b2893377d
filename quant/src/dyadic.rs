//! Dyadic scales (`m * 2^-s`) and requantization, pulp-transformer Eq. 10 (psi).
//!
//! A real scale is represented as an integer multiplier `m` and a right shift `s`:
//! `scale ~= m * 2^-s`. Requantizing an int32 accumulator is then
//!
//! ```text
//! requantize(acc, m, s) = clamp( floor((acc * m + 2^(s-1)) / 2^s), -128, 127 )   (s >= 1)
//! requantize(acc, m, 0) = clamp( acc * m, -128, 127 )
//! ```
//!
//! i.e. round half up (toward +infinity) followed by saturation to int8. `floor(x / 2^s)` is an
//! arithmetic right shift. The product `acc * m` is 32 x 32 -> 64 bit: this is the one place the
//! integer semantics use a 64-bit intermediate, and a 32-bit MCU does exactly the same with a
//! single instruction (`SMULL` on Cortex-M3/M4/M7, `mul` + `mulh` on RV32IM), as CMSIS-NN's
//! `arm_nn_requantize` does. `|acc * m| <= 2^31 * 2^31 = 2^62`, and adding the rounding term
//! `2^(s-1) <= 2^61` keeps it below `2^63`: no 64-bit overflow for any input.
//!
//! TQT-style scales are powers of two (`2^k`); [`Dyadic::pow2`] builds them exactly and
//! [`Dyadic::pow2_exponent`] recognises them.

use serde::{Deserialize, Serialize};

use crate::error::{QuantError, Result};

/// Largest right shift a [`Dyadic`] may carry.
pub const MAX_SHIFT: u32 = 62;

/// A non-negative dyadic number `m * 2^-s` with `0 <= m <= i32::MAX` and `s <= 62`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dyadic {
    /// Integer multiplier.
    pub m: i32,
    /// Right shift.
    pub s: u32,
}

impl Dyadic {
    /// A checked dyadic value.
    pub fn new(m: i32, s: u32) -> Result<Self> {
        let d = Dyadic { m, s };
        d.check("dyadic")?;
        Ok(d)
    }

    /// The identity scale `1 * 2^0`.
    pub const ONE: Dyadic = Dyadic { m: 1, s: 0 };

    /// Checks the invariants (`m >= 0`, `s <= 62`); `what` names the owner in the error.
    pub fn check(self, what: &str) -> Result<()> {
        if self.m < 0 || self.s > MAX_SHIFT {
            return Err(QuantError::InvalidDyadic {
                what: what.to_string(),
                reason: format!(
                    "m = {}, s = {}: expected 0 <= m <= 2^31-1 and s <= {MAX_SHIFT}",
                    self.m, self.s
                ),
            });
        }
        Ok(())
    }

    /// Checks the invariants and that the value is non-zero (a tensor scale).
    pub fn check_positive(self, what: &str) -> Result<()> {
        self.check(what)?;
        if self.m == 0 {
            return Err(QuantError::InvalidDyadic {
                what: what.to_string(),
                reason: "m = 0: a tensor scale must be positive".into(),
            });
        }
        Ok(())
    }

    /// Closest dyadic to a positive finite `scale`, with the multiplier normalised to
    /// `[2^30, 2^31)` (31 significant bits) whenever the shift range allows it.
    ///
    /// Offline only (uses floats). Fails for scales that are not finite and positive, that are
    /// below `2^-62` (would round to zero) or above `2^31 - 1`.
    pub fn from_scale(scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(QuantError::InvalidScale {
                what: "Dyadic::from_scale".into(),
                scale: format!("{scale}"),
            });
        }
        let e = scale.log2().floor() as i64;
        let mut s = (30 - e).clamp(0, MAX_SHIFT as i64) as u32;
        let mut m = (scale * 2f64.powi(s as i32)).round();
        if m >= 2f64.powi(31) {
            if s == 0 {
                return Err(QuantError::InvalidScale {
                    what: "Dyadic::from_scale (too large for a 31-bit multiplier)".into(),
                    scale: format!("{scale}"),
                });
            }
            s -= 1;
            m = (scale * 2f64.powi(s as i32)).round();
        }
        if m < 1.0 {
            return Err(QuantError::InvalidScale {
                what: "Dyadic::from_scale (below 2^-62)".into(),
                scale: format!("{scale}"),
            });
        }
        Ok(Dyadic { m: m as i32, s })
    }

    /// Closest dyadic to `scale` whose multiplier has at most `bits` significant bits
    /// (`1 <= bits <= 31`): `m < 2^bits`. Offline only.
    pub fn from_scale_bits(scale: f64, bits: u32) -> Result<Self> {
        let d = Dyadic::from_scale(scale)?;
        let bits = bits.clamp(1, 31);
        let mut m = d.m as i64;
        let mut s = d.s;
        while m >= (1i64 << bits) && s > 0 {
            m = (m + 1) >> 1;
            s -= 1;
        }
        if m >= (1i64 << bits) {
            return Err(QuantError::InvalidScale {
                what: format!("Dyadic::from_scale_bits (needs more than {bits} bits)"),
                scale: format!("{scale}"),
            });
        }
        Ok(Dyadic { m: m as i32, s })
    }

    /// The exact power of two `2^k`, for `-62 <= k <= 30`.
    pub fn pow2(k: i32) -> Result<Self> {
        if k <= 0 && -k <= MAX_SHIFT as i32 {
            Ok(Dyadic {
                m: 1,
                s: (-k) as u32,
            })
        } else if (1..=30).contains(&k) {
            Ok(Dyadic { m: 1 << k, s: 0 })
        } else {
            Err(QuantError::InvalidDyadic {
                what: "Dyadic::pow2".into(),
                reason: format!("2^{k} is outside [2^-62, 2^30]"),
            })
        }
    }

    /// `Some(k)` when this value is exactly `2^k`.
    pub fn pow2_exponent(self) -> Option<i32> {
        if self.m > 0 && (self.m as u32).is_power_of_two() {
            Some(self.m.trailing_zeros() as i32 - self.s as i32)
        } else {
            None
        }
    }

    /// The real value (offline / tests only).
    pub fn to_f64(self) -> f64 {
        self.m as f64 * 2f64.powi(-(self.s as i32))
    }

    /// `round_half_up(acc * m / 2^s)` without saturation (exact; fits i64, see module docs).
    #[inline]
    pub fn apply(self, acc: i32) -> i64 {
        round_shift_i64(acc as i64 * self.m as i64, self.s)
    }

    /// Eq. 10: requantize an int32 accumulator to int8 (round half up, saturate).
    #[inline]
    pub fn requantize(self, acc: i32) -> i8 {
        sat_i8(self.apply(acc))
    }

    /// Requantize to int16 (round half up, saturate to `[-32768, 32767]`).
    #[inline]
    pub fn requantize_i16(self, acc: i32) -> i16 {
        self.apply(acc).clamp(i16::MIN as i64, i16::MAX as i64) as i16
    }
}

/// Eq. 10 as a free function: `clamp(floor((acc*m + 2^(s-1)) / 2^s), -128, 127)`.
///
/// `m` must be non-negative and `s <= 62`; other values are clamped into range (never panics).
#[inline]
pub fn requantize(acc: i32, m: i32, s: u32) -> i8 {
    Dyadic {
        m: m.max(0),
        s: s.min(MAX_SHIFT),
    }
    .requantize(acc)
}

/// `floor((x + 2^(s-1)) / 2^s)` (round half up); `x` unchanged for `s = 0`.
/// Caller guarantees `x + 2^(s-1)` does not overflow (true for `|x| <= 2^62`, `s <= 62`).
#[inline]
pub fn round_shift_i64(x: i64, s: u32) -> i64 {
    if s == 0 {
        x
    } else {
        (x + (1i64 << (s - 1))) >> s
    }
}

/// 32-bit version of [`round_shift_i64`]: `floor((x + 2^(s-1)) / 2^s)` for `1 <= s <= 31`.
/// Caller guarantees `x + 2^(s-1)` fits in i32.
#[inline]
pub fn round_shift_i32(x: i32, s: u32) -> i32 {
    if s == 0 {
        x
    } else {
        (x + (1i32 << (s - 1))) >> s
    }
}

/// Saturate to int8.
#[inline]
pub fn sat_i8(x: i64) -> i8 {
    x.clamp(i8::MIN as i64, i8::MAX as i64) as i8
}

/// Integer division of `n` by `d > 0`, rounding half away from zero. In C:
/// `n >= 0 ? (n + d/2) / d : -((-n + d/2) / d)`. Requires `|n| + d/2 <= i32::MAX`.
#[inline]
pub fn div_round(n: i32, d: i32) -> i32 {
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

/// `Some(k)` when `scale` is exactly `2^k` (offline helper).
pub fn pow2_exponent_of(scale: f64) -> Option<i32> {
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    let k = scale.log2().round() as i32;
    (2f64.powi(k) == scale).then_some(k)
}

/// TQT rounding of a scale to the nearest power of two in the log domain: `round(log2(scale))`
/// (offline helper). `None` for non-finite or non-positive scales.
pub fn nearest_pow2_exponent(scale: f64) -> Option<i32> {
    (scale.is_finite() && scale > 0.0).then(|| scale.log2().round() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn from_scale_is_accurate() {
        for &sc in &[1e-9, 3.7e-5, 0.0123, 0.5, 1.0, 1.5, 7.25, 1000.0, 1.0e6] {
            let d = Dyadic::from_scale(sc).unwrap();
            assert!(((d.to_f64() - sc) / sc).abs() < 1e-9, "{sc} -> {d:?}");
        }
        assert!(Dyadic::from_scale(0.0).is_err());
        assert!(Dyadic::from_scale(f64::NAN).is_err());
        assert!(Dyadic::from_scale(-1.0).is_err());
        assert!(Dyadic::from_scale(1e-30).is_err());
        assert!(Dyadic::from_scale(3.0e9).is_err());
    }

    #[test]
    fn pow2_helpers() {
        let d = Dyadic::pow2(-7).unwrap();
        assert_eq!(d, Dyadic { m: 1, s: 7 });
        assert_eq!(d.pow2_exponent(), Some(-7));
        assert_eq!(Dyadic::pow2(3).unwrap().pow2_exponent(), Some(3));
        assert_eq!(Dyadic::from_scale(0.25).unwrap().pow2_exponent(), Some(-2));
        assert_eq!(Dyadic { m: 3, s: 2 }.pow2_exponent(), None);
        assert!(Dyadic::pow2(31).is_err());
        assert!(Dyadic::pow2(-63).is_err());
        assert_eq!(pow2_exponent_of(0.125), Some(-3));
        assert_eq!(pow2_exponent_of(0.126), None);
        assert_eq!(nearest_pow2_exponent(0.13), Some(-3));
    }

    #[test]
    fn rounding_is_half_up() {
        // scale 1/2: 1 -> 0.5 -> 1, -1 -> -0.5 -> 0, 3 -> 1.5 -> 2, -3 -> -1.5 -> -1
        let half = Dyadic { m: 1, s: 1 };
        assert_eq!(half.requantize(1), 1);
        assert_eq!(half.requantize(-1), 0);
        assert_eq!(half.requantize(3), 2);
        assert_eq!(half.requantize(-3), -1);
        assert_eq!(requantize(1000, 1, 0), 127);
        assert_eq!(requantize(-1000, 1, 0), -128);
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(-5, 2), -3);
        assert_eq!(div_round(-4, 3), -1);
    }

    #[test]
    fn from_scale_bits_limits_multiplier() {
        let d = Dyadic::from_scale_bits(0.3, 12).unwrap();
        assert!(d.m < 1 << 12);
        assert!((d.to_f64() - 0.3).abs() < 0.3 / 2048.0);
    }

    proptest! {
        #[test]
        fn requantize_matches_real_rounding(acc in any::<i32>(), m in 0i32..=i32::MAX, s in 0u32..=62) {
            let exact = (acc as i128 * m as i128) as f64 / 2f64.powi(s as i32);
            let got = requantize(acc, m, s) as f64;
            let want = (exact + 0.5).floor().clamp(-128.0, 127.0);
            // f64 rounding of the exact value may differ only at ties that are not
            // representable; allow the exact integer reference instead:
            let num = acc as i128 * m as i128;
            let r = if s == 0 { num } else { (num + (1i128 << (s - 1))) >> s };
            prop_assert_eq!(got as i128, r.clamp(-128, 127));
            prop_assert!((got - want).abs() <= 1.0);
        }

        #[test]
        fn requantize_saturates_exactly(m in 1i32..=i32::MAX, s in 0u32..=30) {
            let d = Dyadic { m, s };
            // the smallest accumulator whose rounded value reaches 128 must give 127 and
            // everything at or beyond the int8 limits saturates.
            for acc in [i32::MAX, i32::MIN, i32::MAX / 2, i32::MIN / 2] {
                let r = d.apply(acc);
                let q = d.requantize(acc) as i64;
                if r >= 127 { prop_assert_eq!(q, 127); }
                else if r <= -128 { prop_assert_eq!(q, -128); }
                else { prop_assert_eq!(q, r); }
            }
        }

        #[test]
        fn from_scale_round_trip(e in -31.0f64..20.0) {
            let sc = 2f64.powf(e);
            let d = Dyadic::from_scale(sc).unwrap();
            prop_assert!(((d.to_f64() - sc) / sc).abs() < 1e-9);
        }
    }

    #[test]
    fn saturation_boundaries_are_exact() {
        // identity scale: the int8 limits pass through, one beyond saturates.
        let one = Dyadic::ONE;
        assert_eq!(one.requantize(127), 127);
        assert_eq!(one.requantize(128), 127);
        assert_eq!(one.requantize(-128), -128);
        assert_eq!(one.requantize(-129), -128);
        // half scale: 254 -> 127, 255 -> 127.5 -> 128 -> saturates to 127; -256 -> -128,
        // -257 -> -128.5 -> -128 (half up), -258 -> -129 -> -128.
        let half = Dyadic { m: 1, s: 1 };
        assert_eq!(half.apply(255), 128);
        assert_eq!(half.requantize(255), 127);
        assert_eq!(half.requantize(-257), -128);
        assert_eq!(half.apply(-259), -129);
    }
}
