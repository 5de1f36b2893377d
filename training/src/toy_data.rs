//! A tiny deterministic classification task for tests and smoke runs: three classes, each a
//! bump on its own band of frames and features, under uniform noise. A small KWT learns it
//! well above chance in seconds on a CPU.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{DataSplits, InMemory};

/// Frames of one toy sample.
pub const TOY_FRAMES: usize = 12;
/// Features of one toy frame.
pub const TOY_FEATURES: usize = 8;

/// `per_class` samples of each of the three classes, drawn from `seed`.
pub fn toy_split(per_class: usize, seed: u64) -> InMemory {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..per_class * 3 {
        let class = i % 3;
        let mut x = vec![0f32; TOY_FRAMES * TOY_FEATURES];
        for (j, v) in x.iter_mut().enumerate() {
            let (t, f) = (j / TOY_FEATURES, j % TOY_FEATURES);
            let on = t / 4 == class && f / 3 == class;
            *v = if on { 1.5 } else { 0.0 } + rng.random_range(-1.0..1.0);
        }
        features.push(x);
        labels.push(class);
    }
    InMemory { features, labels }
}

/// 180 training, 30 validation and 60 test samples, labels `a`, `b`, `c`.
pub fn toy_splits() -> DataSplits {
    DataSplits {
        train: Box::new(toy_split(60, 1)),
        valid: Box::new(toy_split(10, 2)),
        test: Box::new(toy_split(20, 3)),
        labels: vec!["a".into(), "b".into(), "c".into()],
        frames: TOY_FRAMES,
        features: TOY_FEATURES,
    }
}
