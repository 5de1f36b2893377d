//! Holds `datasets::mfcc` to librosa's output (fixture written by
//! experiments/mfcc_reference/make_fixture.py).

use datasets::{Mfcc, MfccConfig};

const FIXTURE: &str = include_str!("fixtures/mfcc_reference.json");
const N: usize = 16_000;

fn chirp() -> Vec<f32> {
    (0..N)
        .map(|n| {
            let t = n as f64 / 16_000.0;
            let (f0, f1) = (100.0, 7000.0);
            let phase = 2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) * t * t / 2.0);
            (0.5 * phase.sin()) as f32
        })
        .collect()
}

fn tones() -> Vec<f32> {
    use std::f64::consts::PI;
    (0..N)
        .map(|n| {
            if n < N / 5 {
                return 0.0;
            }
            let t = n as f64 / 16_000.0;
            let x = 0.3 * (2.0 * PI * 440.0 * t).sin()
                + 0.2 * (2.0 * PI * 1234.5 * t + 0.3).sin()
                + 0.1 * (2.0 * PI * 3000.0 * t).sin() * (0.5 + 0.5 * (2.0 * PI * 3.0 * t).sin());
            x as f32
        })
        .collect()
}

#[test]
fn matches_librosa_reference() {
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let mut mfcc = Mfcc::new(MfccConfig::default()).unwrap();
    for signal in fixture["signals"].as_array().unwrap() {
        let name = signal["name"].as_str().unwrap();
        let samples = match name {
            "chirp" => chirp(),
            "tones" => tones(),
            _ => signal["samples_i16"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as f32 / 32768.0)
                .collect(),
        };
        let want: Vec<f32> = signal["mfcc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let start = std::time::Instant::now();
        let got = mfcc.compute(&samples).unwrap();
        println!("{name}: one 98x40 MFCC in {:?}", start.elapsed());
        assert_eq!(got.len(), want.len(), "{name}");
        let (mut max_abs, mut max_c0, mut max_rest) = (0.0f32, 0.0f32, 0.0f32);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = (g - w).abs();
            max_abs = max_abs.max(err);
            if i % 40 == 0 {
                max_c0 = max_c0.max(err);
            } else {
                max_rest = max_rest.max(err);
            }
        }
        println!("{name}: max abs error {max_abs:.3e} (c0 {max_c0:.3e}, c1..c39 {max_rest:.3e})");
        // Measured about 5e-4, mostly the fixture's 6-significant-digit rounding of values up to
        // ~600 in magnitude (c0 sums 40 dB values).
        assert!(max_c0 < 2e-3, "{name}: c0 error {max_c0}");
        assert!(max_rest < 2e-3, "{name}: c1..c39 error {max_rest}");
    }
}
