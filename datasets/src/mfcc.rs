//! The KWT front end: log-mel MFCCs matching librosa (`melspectrogram` with `center=False`,
//! Slaney mel filters, `power_to_db(ref=1, amin=1e-10, top_db=None)`, orthonormal DCT-II).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex, num_complex::Complex};

// The work runs in f64: near the -100 dB floor f32 FFT round-off alone moved coefficients by
// ~0.02 against librosa; f64 costs nothing noticeable at 98 frames of 480 samples.

use crate::error::{DatasetError, Result};

/// Front-end parameters; the defaults are KWT's (Table 2): 30 ms window, 10 ms hop, 40 x 40.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MfccConfig {
    pub sample_rate: u32,
    /// Hann window length in samples (480 = 30 ms).
    pub window_length: usize,
    /// Step between frames in samples (160 = 10 ms).
    pub hop_length: usize,
    /// FFT size and frame length; the window is centered in it when longer (as librosa does).
    pub fft_size: usize,
    pub n_mels: usize,
    /// DCT coefficients kept (at most `n_mels`).
    pub n_coefficients: usize,
    pub fmin: f32,
    pub fmax: f32,
    /// Floor of the power before the log (librosa's `amin`).
    pub log_floor: f32,
}

impl Default for MfccConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            window_length: 480,
            hop_length: 160,
            fft_size: 480,
            n_mels: 40,
            n_coefficients: 40,
            fmin: 0.0,
            fmax: 8_000.0,
            log_floor: 1e-10,
        }
    }
}

impl MfccConfig {
    fn validate(&self) -> Result<()> {
        let bad = |field, message: String| Err(DatasetError::InvalidConfig { field, message });
        if self.sample_rate == 0 || self.hop_length == 0 || self.n_mels == 0 {
            return bad(
                "MfccConfig",
                "sample_rate, hop_length and n_mels must be positive".into(),
            );
        }
        if self.window_length == 0 || self.window_length > self.fft_size {
            return bad(
                "MfccConfig.window_length",
                format!(
                    "must be in 1..=fft_size ({}), found {}",
                    self.fft_size, self.window_length
                ),
            );
        }
        if self.n_coefficients == 0 || self.n_coefficients > self.n_mels {
            return bad(
                "MfccConfig.n_coefficients",
                format!(
                    "must be in 1..=n_mels ({}), found {}",
                    self.n_mels, self.n_coefficients
                ),
            );
        }
        let nyquist = self.sample_rate as f32 / 2.0;
        if !(self.fmin >= 0.0 && self.fmin < self.fmax && self.fmax <= nyquist) {
            return bad(
                "MfccConfig.fmin/fmax",
                format!(
                    "need 0 <= fmin < fmax <= {nyquist}, found {} and {}",
                    self.fmin, self.fmax
                ),
            );
        }
        if self.log_floor.is_nan() || self.log_floor <= 0.0 {
            return bad(
                "MfccConfig.log_floor",
                format!("must be > 0, found {}", self.log_floor),
            );
        }
        Ok(())
    }
}

/// One mel filter: its weights start at FFT bin `start` (the rest of the row is zero).
#[derive(Debug, Clone)]
struct MelFilter {
    start: usize,
    weights: Vec<f64>,
}

/// A ready-to-run MFCC extractor: window, filters, DCT matrix and FFT plan are built once, and
/// the per-frame buffers are reused, so computing features allocates nothing but the output.
#[derive(Clone)]
pub struct Mfcc {
    config: MfccConfig,
    window: Vec<f64>,
    filters: Vec<MelFilter>,
    /// `n_coefficients x n_mels`, row-major.
    dct: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
    log_mel: Vec<f64>,
}

impl std::fmt::Debug for Mfcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mfcc")
            .field("config", &self.config)
            .finish()
    }
}

impl Mfcc {
    /// Builds the extractor, rejecting inconsistent parameters.
    pub fn new(config: MfccConfig) -> Result<Self> {
        config.validate()?;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(config.fft_size);
        let window = centered_hann(config.window_length, config.fft_size);
        let filters = slaney_mel_filters(&config);
        let dct = dct_ortho_matrix(config.n_mels, config.n_coefficients);
        Ok(Self {
            frame: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            power: vec![0.0; config.fft_size / 2 + 1],
            log_mel: vec![0.0; config.n_mels],
            window,
            filters,
            dct,
            fft,
            config,
        })
    }

    pub fn config(&self) -> &MfccConfig {
        &self.config
    }

    /// Frames produced for `n_samples` input samples (98 for one second with the defaults).
    pub fn num_frames(&self, n_samples: usize) -> usize {
        if n_samples < self.config.fft_size {
            0
        } else {
            1 + (n_samples - self.config.fft_size) / self.config.hop_length
        }
    }

    /// Coefficients per frame.
    pub fn num_coefficients(&self) -> usize {
        self.config.n_coefficients
    }

    /// MFCCs of `samples` as a `frames x coefficients` row-major matrix.
    pub fn compute(&mut self, samples: &[f32]) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.num_frames(samples.len()) * self.config.n_coefficients];
        self.compute_into(samples, &mut out)?;
        Ok(out)
    }

    /// Like [`Mfcc::compute`], writing into `out`, which must hold exactly
    /// `num_frames(samples.len()) * num_coefficients()` values.
    pub fn compute_into(&mut self, samples: &[f32], out: &mut [f32]) -> Result<()> {
        let frames = self.num_frames(samples.len());
        if frames == 0 {
            return Err(DatasetError::InvalidConfig {
                field: "MFCC input",
                message: format!(
                    "needs at least fft_size = {} samples, found {}",
                    self.config.fft_size,
                    samples.len()
                ),
            });
        }
        let n_coef = self.config.n_coefficients;
        if out.len() != frames * n_coef {
            return Err(DatasetError::Shape {
                what: "MFCC output buffer",
                expected: frames * n_coef,
                found: out.len(),
            });
        }
        for (t, row) in out.chunks_exact_mut(n_coef).enumerate() {
            let start = t * self.config.hop_length;
            self.frame_into(&samples[start..start + self.config.fft_size], row)?;
        }
        Ok(())
    }

    fn frame_into(&mut self, input: &[f32], row: &mut [f32]) -> Result<()> {
        for ((f, &x), &w) in self.frame.iter_mut().zip(input).zip(&self.window) {
            *f = f64::from(x) * w;
        }
        self.fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
            .map_err(|e| DatasetError::InvalidConfig {
                field: "MFCC FFT buffers",
                message: e.to_string(),
            })?;
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr();
        }
        for (m, filter) in self.log_mel.iter_mut().zip(&self.filters) {
            let bins = &self.power[filter.start..filter.start + filter.weights.len()];
            let energy: f64 = bins.iter().zip(&filter.weights).map(|(p, w)| p * w).sum();
            *m = 10.0 * energy.max(f64::from(self.config.log_floor)).log10();
        }
        let n_mels = self.config.n_mels;
        for (c, dct_row) in row.iter_mut().zip(self.dct.chunks_exact(n_mels)) {
            *c = dct_row
                .iter()
                .zip(&self.log_mel)
                .map(|(d, m)| d * m)
                .sum::<f64>() as f32;
        }
        Ok(())
    }
}

/// Periodic Hann window of `len` samples (scipy's `get_window('hann', len, fftbins=True)`),
/// zero-padded to `frame` samples with the window in the middle (librosa's `pad_center`).
fn centered_hann(len: usize, frame: usize) -> Vec<f64> {
    let offset = (frame - len) / 2;
    let mut w = vec![0.0f64; frame];
    for n in 0..len {
        let phase = 2.0 * std::f64::consts::PI * n as f64 / len as f64;
        w[offset + n] = 0.5 - 0.5 * phase.cos();
    }
    w
}

/// Slaney's mel scale (librosa `hz_to_mel` with `htk=False`): linear below 1 kHz, log above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// librosa's `filters.mel(norm='slaney', htk=False)`: triangles between adjacent mel points,
/// each scaled by 2 / bandwidth so every filter has the same area. Computed in f64 like librosa.
fn slaney_mel_filters(config: &MfccConfig) -> Vec<MelFilter> {
    let n_bins = config.fft_size / 2 + 1;
    let (mel_lo, mel_hi) = (hz_to_mel(config.fmin.into()), hz_to_mel(config.fmax.into()));
    let points: Vec<f64> = (0..config.n_mels + 2)
        .map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (config.n_mels + 1) as f64))
        .collect();
    let bin_hz = |k: usize| k as f64 * f64::from(config.sample_rate) / config.fft_size as f64;
    (0..config.n_mels)
        .map(|i| {
            let (lo, mid, hi) = (points[i], points[i + 1], points[i + 2]);
            let enorm = 2.0 / (hi - lo);
            let row: Vec<f64> = (0..n_bins)
                .map(|k| {
                    let f = bin_hz(k);
                    let rising = (f - lo) / (mid - lo);
                    let falling = (hi - f) / (hi - mid);
                    rising.min(falling).max(0.0) * enorm
                })
                .collect();
            // Keep only the non-zero span so the per-frame product skips the zeros.
            let start = row.iter().position(|&w| w != 0.0).unwrap_or(0);
            let end = row.iter().rposition(|&w| w != 0.0).map_or(start, |e| e + 1);
            MelFilter {
                start,
                weights: row[start..end].to_vec(),
            }
        })
        .collect()
}

/// Orthonormal DCT-II (scipy `dct(type=2, norm='ortho')`), first `keep` rows of an `n x n` matrix.
fn dct_ortho_matrix(n: usize, keep: usize) -> Vec<f64> {
    let mut m = Vec::with_capacity(n * keep);
    for k in 0..keep {
        let scale = if k == 0 {
            (1.0 / n as f64).sqrt()
        } else {
            (2.0 / n as f64).sqrt()
        };
        for i in 0..n {
            let angle = std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2 * n) as f64;
            m.push(scale * angle.cos());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_gives_98_by_40() {
        let mut mfcc = Mfcc::new(MfccConfig::default()).unwrap();
        assert_eq!(mfcc.num_frames(16_000), 98);
        let out = mfcc.compute(&vec![0.0; 16_000]).unwrap();
        assert_eq!(out.len(), 98 * 40);
        // Silence hits the log floor: every mel band is -100 dB, so only c0 is non-zero.
        assert!(
            (out[0] - (-100.0 * 40f32.sqrt())).abs() < 1e-2,
            "{}",
            out[0]
        );
        assert!(out[1].abs() < 1e-3);
    }

    #[test]
    fn mel_scale_round_trips_and_filters_match_librosa_shape() {
        for hz in [0.0, 500.0, 1000.0, 3000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6);
        }
        let filters = slaney_mel_filters(&MfccConfig::default());
        assert_eq!(filters.len(), 40);
        // Every filter must catch at least one FFT bin at this resolution except possibly the
        // lowest ones, as in librosa (which warns about empty filters).
        assert!(filters[20..].iter().all(|f| !f.weights.is_empty()));
    }

    #[test]
    fn dct_rows_are_orthonormal() {
        let m = dct_ortho_matrix(40, 40);
        for a in 0..40 {
            for b in 0..40 {
                let dot: f64 = (0..40).map(|i| m[a * 40 + i] * m[b * 40 + i]).sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn rejects_bad_config_and_short_input() {
        let bad = MfccConfig {
            n_coefficients: 41,
            ..MfccConfig::default()
        };
        let msg = Mfcc::new(bad).unwrap_err().to_string();
        assert!(msg.contains("n_coefficients"), "{msg}");
        let bad = MfccConfig {
            fmax: 9000.0,
            ..MfccConfig::default()
        };
        assert!(Mfcc::new(bad).is_err());
        let mut mfcc = Mfcc::new(MfccConfig::default()).unwrap();
        assert!(mfcc.compute(&[0.0; 100]).is_err());
        let mut out = vec![0.0; 10];
        assert!(mfcc.compute_into(&[0.0; 16_000], &mut out).is_err());
    }

    #[test]
    fn config_round_trips_through_serde() {
        let cfg = MfccConfig::default();
        let json = serde_json::to_string(&cfg).unwrap();
        let back: MfccConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(cfg, back);
        let partial: MfccConfig =
            serde_json::from_str(r#"{"n_mels": 20, "n_coefficients": 10}"#).unwrap();
        assert_eq!(partial.window_length, 480);
    }
}
