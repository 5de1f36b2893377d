//! KWT's augmentation policy (Table 2, after Rybakov et al.'s kws_streaming): resampling, time
//! shift and background noise on the waveform, SpecAugment masks on the MFCC matrix. Every random
//! draw comes from the caller's generator, so a seeded generator gives a repeatable epoch.

use rand::Rng;

use crate::error::{DatasetError, Result};
use crate::wav::{CLIP_SAMPLES, SAMPLE_RATE};

/// Which augmentations run and how strongly; defaults are KWT Table 2. Setting a range to
/// zero width, a probability to 0 or a mask count to 0 turns that augmentation off.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Shift drawn uniformly in [-max, +max] milliseconds; vacated samples are zero.
    pub time_shift_ms: f32,
    /// Resampling factor drawn uniformly in [min, max]; 1.0 leaves the clip unchanged.
    pub resample_min: f32,
    pub resample_max: f32,
    /// Probability of adding a background-noise crop (TF's `background_frequency`).
    pub background_probability: f32,
    /// Noise gain drawn uniformly in [0, background_volume].
    pub background_volume: f32,
    pub time_masks: usize,
    /// Each time mask covers a width drawn uniformly in 0..=time_mask_max frames.
    pub time_mask_max: usize,
    pub freq_masks: usize,
    /// Each frequency mask covers a width drawn uniformly in 0..=freq_mask_max coefficients.
    pub freq_mask_max: usize,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            time_shift_ms: 100.0,
            resample_min: 0.85,
            resample_max: 1.15,
            background_probability: 0.8,
            background_volume: 0.1,
            time_masks: 2,
            time_mask_max: 25,
            freq_masks: 2,
            freq_mask_max: 7,
        }
    }
}

impl AugmentConfig {
    /// Every augmentation off (for validation and testing).
    pub fn none() -> Self {
        Self {
            time_shift_ms: 0.0,
            resample_min: 1.0,
            resample_max: 1.0,
            background_probability: 0.0,
            background_volume: 0.0,
            time_masks: 0,
            time_mask_max: 0,
            freq_masks: 0,
            freq_mask_max: 0,
        }
    }

    /// Checks ranges so that sampling can never panic.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: String| Err(DatasetError::InvalidConfig { field, message });
        if !(self.time_shift_ms >= 0.0 && self.time_shift_ms.is_finite()) {
            return bad(
                "AugmentConfig.time_shift_ms",
                format!("must be finite and >= 0, found {}", self.time_shift_ms),
            );
        }
        // Written so that NaN fails too.
        let resample_ok = self.resample_min > 0.0
            && self.resample_min <= self.resample_max
            && self.resample_max.is_finite();
        if !resample_ok {
            return bad(
                "AugmentConfig.resample_min/max",
                format!(
                    "need 0 < min <= max, found {} and {}",
                    self.resample_min, self.resample_max
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.background_probability) {
            return bad(
                "AugmentConfig.background_probability",
                format!("must be in [0, 1], found {}", self.background_probability),
            );
        }
        if !(self.background_volume >= 0.0 && self.background_volume.is_finite()) {
            return bad(
                "AugmentConfig.background_volume",
                format!("must be finite and >= 0, found {}", self.background_volume),
            );
        }
        Ok(())
    }

    /// The waveform chain, in kws_streaming's order: resample, shift, add noise, clamp to
    /// [-1, 1]. Returns exactly [`CLIP_SAMPLES`] samples.
    pub fn augment_waveform(
        &self,
        clip: &[f32],
        backgrounds: &[Vec<f32>],
        rng: &mut impl Rng,
    ) -> Result<Vec<f32>> {
        self.validate()?;
        let mut out = if self.resample_min < self.resample_max || self.resample_min != 1.0 {
            let factor = rng.random_range(self.resample_min..=self.resample_max);
            resample(clip, factor)
        } else {
            crate::wav::fit_length(clip.to_vec(), CLIP_SAMPLES)
        };
        let max_shift = (self.time_shift_ms * SAMPLE_RATE as f32 / 1000.0).round() as i64;
        if max_shift > 0 {
            time_shift(&mut out, rng.random_range(-max_shift..=max_shift));
        }
        if self.background_probability > 0.0 && self.background_volume > 0.0 {
            add_background(
                &mut out,
                backgrounds,
                self.background_probability,
                self.background_volume,
                rng,
            );
        }
        for s in &mut out {
            *s = s.clamp(-1.0, 1.0);
        }
        Ok(out)
    }

    /// SpecAugment on a `frames x coefficients` row-major matrix, in place.
    pub fn augment_features(
        &self,
        features: &mut [f32],
        frames: usize,
        coefficients: usize,
        rng: &mut impl Rng,
    ) -> Result<()> {
        spec_augment(features, frames, coefficients, self, rng)
    }
}

/// Moves the clip by `shift` samples (positive = later), filling the gap with zeros.
pub fn time_shift(samples: &mut [f32], shift: i64) {
    let n = samples.len();
    let k = shift.unsigned_abs().min(n as u64) as usize;
    if shift > 0 {
        samples.copy_within(0..n - k, k);
        samples[..k].fill(0.0);
    } else if shift < 0 {
        samples.copy_within(k..n, 0);
        samples[n - k..].fill(0.0);
    }
}

/// Plays the clip `factor` times faster (factor > 1 shortens it and raises the pitch) by linear
/// interpolation, then pads or cuts symmetrically to [`CLIP_SAMPLES`] so the word stays centered.
pub fn resample(samples: &[f32], factor: f32) -> Vec<f32> {
    let mut out = vec![0.0; CLIP_SAMPLES];
    if samples.is_empty() || !(factor > 0.0 && factor.is_finite()) {
        return out;
    }
    let stretched = ((samples.len() as f64) / f64::from(factor)).round() as usize;
    // Offset of the stretched clip inside the output: positive pads, negative cuts.
    let offset = (CLIP_SAMPLES as i64 - stretched as i64) / 2;
    let last = samples.len() - 1;
    for (i, o) in out.iter_mut().enumerate() {
        let j = i as i64 - offset;
        if j < 0 || j >= stretched as i64 {
            continue;
        }
        let pos = j as f64 * f64::from(factor);
        let lo = (pos.floor() as usize).min(last);
        let hi = (lo + 1).min(last);
        let frac = (pos - lo as f64) as f32;
        *o = samples[lo] * (1.0 - frac) + samples[hi] * frac;
    }
    out
}

/// With probability `probability`, adds a random one-clip crop of a random background recording
/// scaled by a gain uniform in [0, volume] (TensorFlow's input_data.py policy). Does nothing when
/// there are no recordings.
pub fn add_background(
    samples: &mut [f32],
    backgrounds: &[Vec<f32>],
    probability: f32,
    volume: f32,
    rng: &mut impl Rng,
) {
    let usable: Vec<&Vec<f32>> = backgrounds.iter().filter(|b| !b.is_empty()).collect();
    if usable.is_empty() || !rng.random_bool(f64::from(probability.clamp(0.0, 1.0))) {
        return;
    }
    let noise = usable[rng.random_range(0..usable.len())];
    let gain = rng.random_range(0.0..=volume.max(0.0));
    add_crop(samples, noise, gain, rng);
}

/// Adds `gain` times a random window of `noise` (zero beyond its end when it is short).
pub fn add_crop(samples: &mut [f32], noise: &[f32], gain: f32, rng: &mut impl Rng) {
    let start = if noise.len() > samples.len() {
        rng.random_range(0..=noise.len() - samples.len())
    } else {
        0
    };
    for (s, n) in samples.iter_mut().zip(&noise[start..]) {
        *s += gain * n;
    }
}

/// SpecAugment: `time_masks` bands of whole frames and `freq_masks` bands of coefficients set
/// to zero, each of a width uniform in 0..=max and at a uniform position.
pub fn spec_augment(
    features: &mut [f32],
    frames: usize,
    coefficients: usize,
    config: &AugmentConfig,
    rng: &mut impl Rng,
) -> Result<()> {
    if features.len() != frames * coefficients {
        return Err(DatasetError::Shape {
            what: "SpecAugment feature matrix (frames x coefficients)",
            expected: frames * coefficients,
            found: features.len(),
        });
    }
    for _ in 0..config.time_masks {
        let (start, width) = random_band(frames, config.time_mask_max, rng);
        features[start * coefficients..(start + width) * coefficients].fill(0.0);
    }
    for _ in 0..config.freq_masks {
        let (start, width) = random_band(coefficients, config.freq_mask_max, rng);
        for row in features.chunks_exact_mut(coefficients) {
            row[start..start + width].fill(0.0);
        }
    }
    Ok(())
}

/// A band of width uniform in 0..=max (clipped to `len`) at a uniform start that keeps it inside.
fn random_band(len: usize, max: usize, rng: &mut impl Rng) -> (usize, usize) {
    let width = rng.random_range(0..=max.min(len));
    let start = rng.random_range(0..=len - width);
    (start, width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn ramp() -> Vec<f32> {
        (0..CLIP_SAMPLES)
            .map(|i| i as f32 / CLIP_SAMPLES as f32)
            .collect()
    }

    #[test]
    fn time_shift_moves_and_zero_fills() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        time_shift(&mut x, 1);
        assert_eq!(x, [0.0, 1.0, 2.0, 3.0]);
        time_shift(&mut x, -2);
        assert_eq!(x, [2.0, 3.0, 0.0, 0.0]);
        time_shift(&mut x, 99);
        assert_eq!(x, [0.0; 4]);
    }

    #[test]
    fn resample_identity_and_stretch_keep_length_and_center() {
        let x = ramp();
        let same = resample(&x, 1.0);
        assert_eq!(same, x);
        let fast = resample(&x, 1.25);
        assert_eq!(fast.len(), CLIP_SAMPLES);
        // 12800 stretched samples centered: 1600 zeros each side.
        assert_eq!(fast[1599], 0.0);
        assert!(fast[1600] == 0.0 && fast[1601] > 0.0);
        assert_eq!(fast[CLIP_SAMPLES - 1600], 0.0);
        let slow = resample(&x, 0.8);
        // 20000 stretched samples, 2000 cut from each end: starts at input position 1600.
        assert!((slow[0] - 1600.0 / CLIP_SAMPLES as f32).abs() < 1e-4);
    }

    #[test]
    fn background_respects_probability_and_volume() {
        let noise = vec![vec![1.0f32; 3 * CLIP_SAMPLES]];
        let mut rng = StdRng::seed_from_u64(7);
        let mut x = vec![0.0f32; CLIP_SAMPLES];
        add_background(&mut x, &noise, 0.0, 0.1, &mut rng);
        assert!(x.iter().all(|&s| s == 0.0));
        let mut added = 0;
        for _ in 0..200 {
            let mut x = vec![0.0f32; CLIP_SAMPLES];
            add_background(&mut x, &noise, 0.8, 0.1, &mut rng);
            assert!(x.iter().all(|&s| (0.0..=0.1).contains(&s)));
            added += usize::from(x[0] > 0.0);
        }
        assert!((130..=190).contains(&added), "{added}");
        // No recordings: silently nothing.
        add_background(&mut x, &[], 1.0, 0.1, &mut rng);
    }

    #[test]
    fn spec_augment_masks_bands_within_limits() {
        let cfg = AugmentConfig::default();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            let mut f = vec![1.0f32; 98 * 40];
            spec_augment(&mut f, 98, 40, &cfg, &mut rng).unwrap();
            let zero_rows = f.chunks(40).filter(|r| r.iter().all(|&v| v == 0.0)).count();
            let zero_cols = (0..40)
                .filter(|&c| (0..98).all(|t| f[t * 40 + c] == 0.0))
                .count();
            assert!(
                zero_rows <= 50 && zero_cols <= 14,
                "{zero_rows} {zero_cols}"
            );
        }
        let mut wrong = vec![0.0; 10];
        assert!(spec_augment(&mut wrong, 98, 40, &cfg, &mut rng).is_err());
    }

    #[test]
    fn waveform_chain_is_seeded_and_off_means_identity() {
        let x: Vec<f32> = ramp().iter().map(|v| v - 0.5).collect();
        let bg = vec![vec![0.5f32; 2 * CLIP_SAMPLES]];
        let cfg = AugmentConfig::default();
        let a = cfg
            .augment_waveform(&x, &bg, &mut StdRng::seed_from_u64(11))
            .unwrap();
        let b = cfg
            .augment_waveform(&x, &bg, &mut StdRng::seed_from_u64(11))
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), CLIP_SAMPLES);
        assert!(a.iter().all(|s| (-1.0..=1.0).contains(s)));
        let off = AugmentConfig::none()
            .augment_waveform(&x, &bg, &mut StdRng::seed_from_u64(11))
            .unwrap();
        assert_eq!(off, x);
        let bad = AugmentConfig {
            resample_min: 0.0,
            ..AugmentConfig::default()
        };
        assert!(
            bad.augment_waveform(&x, &bg, &mut StdRng::seed_from_u64(1))
                .is_err()
        );
    }

    #[test]
    fn config_serde_defaults() {
        let c: AugmentConfig = serde_json::from_str(r#"{"time_masks": 0}"#).unwrap();
        assert_eq!(c.time_masks, 0);
        assert_eq!(c.freq_mask_max, 7);
    }
}
