//! Activation observers: a one-pass histogram of `|x|` over calibration batches and the
//! estimators that turn it into a power-of-two (TQT-style) int8 scale.
//!
//! The histogram is logarithmic and exact to compute from the f32 bit pattern: one bin per
//! (binary exponent, top [`MANTISSA_BITS`] mantissa bits), i.e. 16 bins per octave, relative
//! bin width at most 1/16. Since the final scale is a power of two, that resolution is far
//! finer than the decision it feeds.

use serde::{Deserialize, Serialize};

/// Mantissa bits kept per bin (16 bins per octave).
pub const MANTISSA_BITS: u32 = 4;
const PER_OCTAVE: usize = 1 << MANTISSA_BITS;
/// Smallest binary exponent binned (smaller magnitudes count as zero).
pub const MIN_EXP: i32 = -40;
/// Largest binary exponent binned (larger magnitudes go to the last bin).
pub const MAX_EXP: i32 = 40;
const BINS: usize = (MAX_EXP - MIN_EXP + 1) as usize * PER_OCTAVE;

/// How a clipping threshold is estimated from the observed values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Estimator {
    /// The largest `|x|` seen: no value clips, coarsest resolution.
    MinMax,
    /// The given percentile (in percent, e.g. `99.99`) of `|x|`.
    Percentile(f64),
    /// The power-of-two scale minimising the expected squared quantization error (clipping
    /// plus rounding) over the observed distribution.
    Mse,
}

impl std::fmt::Display for Estimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Estimator::MinMax => write!(f, "min-max"),
            Estimator::Percentile(p) => write!(f, "percentile {p}%"),
            Estimator::Mse => write!(f, "mse"),
        }
    }
}

/// Range and magnitude histogram of one tensor (or of tensors that share one scale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observer {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
    /// Values seen.
    pub count: u64,
    /// Values with `|x| < 2^MIN_EXP` (including exact zeros).
    pub zeros: u64,
    bins: Vec<u64>,
}

impl Default for Observer {
    fn default() -> Self {
        Self::new()
    }
}

/// `2^e` for a possibly large `|e|`.
fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

impl Observer {
    /// An empty observer.
    pub fn new() -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
            zeros: 0,
            bins: vec![0; BINS],
        }
    }

    /// Bin of a finite non-zero `|x|` (or `None`: counts as zero).
    #[inline]
    fn bin(x: f32) -> Option<usize> {
        let bits = x.abs().to_bits();
        let e = ((bits >> 23) & 0xff) as i32 - 127;
        if e < MIN_EXP {
            return None;
        }
        let e = e.min(MAX_EXP);
        let m = ((bits >> (23 - MANTISSA_BITS)) as usize) & (PER_OCTAVE - 1);
        Some((e - MIN_EXP) as usize * PER_OCTAVE + m)
    }

    /// `[lower, upper)` edges of bin `b`.
    fn edges(b: usize) -> (f64, f64) {
        let e = (b / PER_OCTAVE) as i32 + MIN_EXP;
        let m = (b % PER_OCTAVE) as f64;
        let base = pow2(e);
        (
            base * (1.0 + m / PER_OCTAVE as f64),
            base * (1.0 + (m + 1.0) / PER_OCTAVE as f64),
        )
    }

    /// Adds values (non-finite values are the caller's error; they are skipped here).
    pub fn observe(&mut self, xs: &[f32]) {
        for &x in xs {
            if !x.is_finite() {
                continue;
            }
            self.min = self.min.min(x);
            self.max = self.max.max(x);
            self.count += 1;
            match Self::bin(x) {
                Some(b) => self.bins[b] += 1,
                None => self.zeros += 1,
            }
        }
    }

    /// Merges another observer's statistics.
    pub fn merge(&mut self, other: &Observer) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.zeros += other.zeros;
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
    }

    /// Largest `|x|` seen (0 when nothing was seen).
    pub fn abs_max(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.min.abs().max(self.max.abs())) as f64
        }
    }

    /// The `p`-th percentile (percent) of `|x|`: the upper edge of the bin where the
    /// cumulative count reaches `p%`, capped at the largest `|x|`.
    pub fn percentile(&self, p: f64) -> f64 {
        let absmax = self.abs_max();
        if self.count == 0 {
            return 0.0;
        }
        let target = (p / 100.0 * self.count as f64).ceil() as u64;
        let mut cum = self.zeros;
        if cum >= target {
            return 0.0;
        }
        for (b, &c) in self.bins.iter().enumerate() {
            cum += c;
            if cum >= target {
                return Self::edges(b).1.min(absmax);
            }
        }
        absmax
    }

    /// Expected total squared error of int8 quantization at scale `2^k` over the histogram:
    /// values beyond the int8 range clip, values below half a step round to zero, and the
    /// rest carry uniform rounding noise `step^2 / 12`.
    pub fn sq_error(&self, k: i32) -> f64 {
        self.sq_error_within(k, 127.0)
    }

    /// Expected total squared error of a softmax output's uint8 codes at step `2^k` (values
    /// are probabilities, `>= 0`): above `255 2^k` they saturate, the rest as [`Self::sq_error`].
    pub fn sq_error_unsigned(&self, k: i32) -> f64 {
        self.sq_error_within(k, 255.0)
    }

    /// [`Self::sq_error`] for codes up to `codes` steps of `2^k`.
    fn sq_error_within(&self, k: i32, codes: f64) -> f64 {
        let s = pow2(k);
        let lim = codes * s;
        let mut err = 0.0;
        for (b, &c) in self.bins.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let (lo, hi) = Self::edges(b);
            let v = 0.5 * (lo + hi);
            let e = if v > lim {
                (v - lim).powi(2)
            } else if v < 0.5 * s {
                v * v
            } else {
                s * s / 12.0
            };
            err += c as f64 * e;
        }
        err
    }

    /// The output shift `o` (step `2^-(8 + o)`, `o <= max_shift`) of least expected squared
    /// error for the probabilities observed at a softmax output; the coarsest on ties (0 when
    /// nothing was seen). Squared error, rather than a percentile, weighs the few saturated
    /// large probabilities (each a large error) against the many small ones that round to zero.
    pub fn softmax_shift(&self, max_shift: u32) -> u32 {
        (0..=max_shift)
            .map(|o| (o, self.sq_error_unsigned(-8 - o as i32)))
            .fold(
                (0, f64::INFINITY),
                |(bo, be), (o, e)| {
                    if e < be { (o, e) } else { (bo, be) }
                },
            )
            .0
    }

    /// The clipping threshold of an estimator (`>= 0`).
    pub fn clip(&self, est: Estimator) -> f64 {
        match est {
            Estimator::MinMax => self.abs_max(),
            Estimator::Percentile(p) => self.percentile(p),
            Estimator::Mse => 127.0 * pow2(self.exponent(est)),
        }
    }

    /// The power-of-two exponent `k` of the int8 scale `2^k` for an estimator: the smallest
    /// `k` with `127 * 2^k >= clip` (min-max, percentile), or the `k` of least expected
    /// squared error among the 16 exponents at and below min-max's (mse).
    pub fn exponent(&self, est: Estimator) -> i32 {
        match est {
            Estimator::Mse => {
                let top = exponent_for_clip(self.abs_max());
                (top - 15..=top)
                    .rev()
                    .map(|k| (k, self.sq_error(k)))
                    .fold(
                        (top, f64::INFINITY),
                        |(bk, be), (k, e)| if e < be { (k, e) } else { (bk, be) },
                    )
                    .0
            }
            _ => exponent_for_clip(self.clip(est)),
        }
    }
}

/// Smallest `k` with `127 * 2^k >= clip`, kept in `[-40, 20]`; `-7` (scale 1/128) for an
/// all-zero tensor.
pub fn exponent_for_clip(clip: f64) -> i32 {
    if !(clip.is_finite() && clip > 0.0) {
        return -7;
    }
    let k = (clip / 127.0).log2().ceil() as i32;
    // Guard against log2 rounding just above an exact power.
    let k = if 127.0 * pow2(k - 1) >= clip {
        k - 1
    } else {
        k
    };
    k.clamp(-40, 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_percentile_and_mse_on_a_heavy_tail() {
        let mut o = Observer::new();
        // 100000 values in [-1, 1] and 5 outliers at 40.
        let xs: Vec<f32> = (0..100_000).map(|i| (i as f32) / 50_000.0 - 1.0).collect();
        o.observe(&xs);
        o.observe(&[40.0, -40.0, 40.0, 39.0, 40.0]);
        assert_eq!(o.count, 100_005);
        assert_eq!(o.abs_max(), 40.0);
        // Min-max covers the outliers: 127 * 2^-1 = 63.5 >= 40 > 31.75.
        assert_eq!(o.exponent(Estimator::MinMax), -1);
        // 99.9% ignores them: clip about 1, scale 2^-6 (127/64 >= 1).
        let p = o.percentile(99.9);
        assert!((0.99..=1.07).contains(&p), "{p}");
        assert_eq!(o.exponent(Estimator::Percentile(99.9)), -6);
        // MSE trades: at 2^-2 the outliers clip to 31.75 (4 x 8.25^2 + 7.25^2 = 325) but the
        // rounding noise of the bulk (1e5 x 2^-4 / 12 = 521) is a quarter of min-max's; clipping
        // them at 2^-6 would cost 5 x 38^2 = 7220.
        let k = o.exponent(Estimator::Mse);
        assert_eq!(k, -2);
        assert!(o.sq_error(k) < o.sq_error(-1) && o.sq_error(k) < o.sq_error(-6));
    }

    #[test]
    fn softmax_shift_follows_the_row_length_and_keeps_peaks() {
        // Uniform rows of N: p = 1/N. The finest step that does not saturate wins: 1/16 is 16
        // codes at 2^-8 and 128 at 2^-11, while 2^-12 saturates at 255 2^-12 < 1/16; 1/1024
        // is a quarter code at 2^-8 and rounds to zero, 64 codes at 2^-16.
        let uniform = |n: usize, rows: usize| {
            let mut o = Observer::new();
            for _ in 0..rows {
                o.observe(&vec![1.0 / n as f32; n]);
            }
            o
        };
        assert_eq!(uniform(16, 8).softmax_shift(8), 3);
        let long = uniform(1024, 2);
        assert_eq!(long.softmax_shift(8), 8);
        assert_eq!(long.softmax_shift(0), 0);
        // Rows of 1024 with one peak of 0.9: a step finer than 2^-8 saturates it at 255 2^-9 <
        // 0.9; the squared error of that one value outweighs the rounding of a thousand
        // 1e-4 probabilities, so the peak keeps shift 0.
        let mut peaked = Observer::new();
        for _ in 0..4 {
            let mut row = vec![0.1 / 1023.0; 1024];
            row[0] = 0.9;
            peaked.observe(&row);
        }
        assert_eq!(peaked.softmax_shift(8), 0);
        assert!(peaked.sq_error_unsigned(-9) > peaked.sq_error_unsigned(-8));
        assert_eq!(Observer::new().softmax_shift(8), 0);
    }

    #[test]
    fn exponent_edges() {
        assert_eq!(exponent_for_clip(127.0), 0);
        assert_eq!(exponent_for_clip(127.5), 1);
        assert_eq!(exponent_for_clip(1.0), -6);
        assert_eq!(exponent_for_clip(0.0), -7);
        let mut o = Observer::new();
        o.observe(&[0.0, 0.0]);
        assert_eq!(o.percentile(50.0), 0.0);
        assert_eq!(o.exponent(Estimator::Mse), -7);
    }
}
