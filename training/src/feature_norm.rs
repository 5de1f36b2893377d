//! Per-coefficient input standardization, held inside the model.
//!
//! MFCCs span hundreds (c0) down to fractions (high coefficients); unscaled they make the
//! embedding's gradients lopsided and training crawls. The model therefore carries a frozen
//! `(x - mean) / std` taken from the training set: checkpoints take raw features, and the
//! quantizer folds the affine map into the embedding layer, so the MCU also takes raw MFCCs.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::data::{SampleSource, make_batch};
use crate::error::TrainingError;

/// Frozen per-feature affine map applied to the inputs: `(x - mean) * inv_std`.
#[derive(Module, Debug)]
pub struct FeatureNorm {
    pub mean: Param<Tensor<1>>,
    pub inv_std: Param<Tensor<1>>,
}

impl FeatureNorm {
    /// The identity map (what a fresh model starts with).
    pub fn identity(features: usize, device: &Device) -> Self {
        Self::from_stats(&FeatureStats::identity(features), device)
    }

    pub fn from_stats(stats: &FeatureStats, device: &Device) -> Self {
        let n = stats.mean.len();
        let inv: Vec<f32> = stats.std.iter().map(|s| 1.0 / s).collect();
        let tensor = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), device);
        Self {
            mean: Param::from_tensor(tensor(stats.mean.clone())).set_require_grad(false),
            inv_std: Param::from_tensor(tensor(inv)).set_require_grad(false),
        }
    }

    /// `x`: `[batch, frames, features]`. Gradients never reach the statistics.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let n = self.mean.dims()[0];
        let mean = self.mean.val().detach().reshape([1, 1, n]);
        let inv = self.inv_std.val().detach().reshape([1, 1, n]);
        (x - mean) * inv
    }

    /// The statistics back as plain numbers (for the quantizer and reports).
    pub fn stats(&self) -> FeatureStats {
        let read =
            |p: &Param<Tensor<1>>| p.val().into_data().try_to_vec::<f32>().unwrap_or_default();
        FeatureStats {
            mean: read(&self.mean),
            std: read(&self.inv_std).into_iter().map(|v| 1.0 / v).collect(),
        }
    }
}

/// Mean and standard deviation of every input feature.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// A feature whose spread is below this is left unscaled (a constant input would divide by 0).
const MIN_STD: f32 = 1e-3;

impl FeatureStats {
    pub fn identity(features: usize) -> Self {
        Self {
            mean: vec![0.0; features],
            std: vec![1.0; features],
        }
    }
}

/// Statistics over at most `max_samples` evenly spaced, un-augmented samples of `source`.
pub fn feature_stats(
    source: &dyn SampleSource,
    frames: usize,
    features: usize,
    max_samples: usize,
) -> Result<FeatureStats, TrainingError> {
    let n = source.len();
    if n == 0 {
        return Err(TrainingError::Data("the training split is empty".into()));
    }
    let indices = crate::data::evenly_spaced(n, max_samples);
    let mut sum = vec![0f64; features];
    let mut sum_sq = vec![0f64; features];
    for chunk in indices.chunks(256) {
        let batch = make_batch(source, chunk, frames, features, None)?;
        let values = batch
            .inputs
            .as_slice::<f32>()
            .map_err(|e| TrainingError::Data(format!("feature batch: {e:?}")))?;
        for row in values.chunks_exact(features) {
            for (f, &v) in row.iter().enumerate() {
                sum[f] += v as f64;
                sum_sq[f] += (v as f64) * (v as f64);
            }
        }
    }
    let count = (indices.len() * frames) as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let std = sum_sq
        .iter()
        .zip(&sum)
        .map(|(sq, s)| {
            let m = s / count;
            let var = (sq / count - m * m).max(0.0);
            let sd = var.sqrt() as f32;
            if sd < MIN_STD { 1.0 } else { sd }
        })
        .collect();
    Ok(FeatureStats { mean, std })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::InMemory;

    #[test]
    fn stats_standardize_the_training_features() {
        // Feature 0 ~ 100 + {-2, 2}; feature 1 constant 5.
        let source = InMemory {
            features: vec![vec![98.0, 5.0, 102.0, 5.0], vec![102.0, 5.0, 98.0, 5.0]],
            labels: vec![0, 1],
        };
        let stats = feature_stats(&source, 2, 2, 100).unwrap();
        assert_eq!(stats.mean, vec![100.0, 5.0]);
        assert_eq!(stats.std, vec![2.0, 1.0], "a constant feature keeps std 1");
        let device = Device::flex();
        let norm = FeatureNorm::from_stats(&stats, &device);
        let x = Tensor::<3>::from_data(TensorData::new(vec![104.0f32, 6.0], [1, 1, 2]), &device);
        let y = norm.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![2.0, 1.0]);
        assert_eq!(norm.stats(), stats);
    }

    #[test]
    fn empty_split_is_an_error() {
        let source = InMemory {
            features: vec![],
            labels: vec![],
        };
        assert!(feature_stats(&source, 1, 1, 10).is_err());
    }
}
