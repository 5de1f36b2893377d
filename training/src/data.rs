//! What the trainer needs from a data set, and batching samples into Burn tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

use crate::error::TrainingError;

/// One split of a data set whose samples are `[frames, features]` matrices.
pub trait SampleSource: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Row-major `[frames * features]` values and the label of sample `index`.
    /// `augment` is `Some(seed)` while training: the same seed gives the same augmentation.
    fn sample(
        &self,
        index: usize,
        augment: Option<u64>,
    ) -> Result<(Vec<f32>, usize), TrainingError>;
}

/// Train/validation/test splits with their label names and sample shape.
pub struct DataSplits {
    pub train: Box<dyn SampleSource>,
    pub valid: Box<dyn SampleSource>,
    pub test: Box<dyn SampleSource>,
    pub labels: Vec<String>,
    pub frames: usize,
    pub features: usize,
}

/// Precomputed features held in memory (no augmentation).
pub struct InMemory {
    pub features: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
}

impl SampleSource for InMemory {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn sample(
        &self,
        index: usize,
        _augment: Option<u64>,
    ) -> Result<(Vec<f32>, usize), TrainingError> {
        Ok((self.features[index].clone(), self.labels[index]))
    }
}

/// A batch ready for the model: inputs [batch, frames, features] and labels `[batch]`.
pub struct Batch {
    pub inputs: TensorData,
    pub labels: Vec<usize>,
}

impl Batch {
    pub fn inputs(&self, device: &Device) -> Tensor<3> {
        Tensor::from_data(self.inputs.clone(), device)
    }

    pub fn targets(&self, device: &Device) -> Tensor<1, Int> {
        let labels: Vec<i64> = self.labels.iter().map(|&l| l as i64).collect();
        Tensor::from_data(TensorData::new(labels, [self.labels.len()]), device)
    }
}

/// At most `count` (at least one) evenly spaced indices of a split of `n` samples: they cover a
/// split ordered by class without a random draw.
pub fn evenly_spaced(n: usize, count: usize) -> Vec<usize> {
    let take = n.min(count.max(1));
    (0..take).map(|i| i * n / take).collect()
}

/// The un-augmented values of `count` evenly spaced samples of `source` (all of them when it
/// has fewer), e.g. to calibrate quantization.
pub fn evenly_spaced_samples(
    source: &dyn SampleSource,
    count: usize,
) -> Result<Vec<Vec<f32>>, TrainingError> {
    let n = source.len();
    if n == 0 || count == 0 {
        return Err(TrainingError::Data(format!(
            "calibration needs at least one training sample (the split has {n}, asked for {count})"
        )));
    }
    evenly_spaced(n, count)
        .into_iter()
        .map(|i| Ok(source.sample(i, None)?.0))
        .collect()
}

/// Gathers `indices` of `source` (in parallel: feature extraction dominates on CPU).
/// `augment_seed` gives sample `i` of the batch the seed `augment_seed + index`.
pub fn make_batch(
    source: &dyn SampleSource,
    indices: &[usize],
    frames: usize,
    features: usize,
    augment_seed: Option<u64>,
) -> Result<Batch, TrainingError> {
    let samples: Vec<(Vec<f32>, usize)> = indices
        .par_iter()
        .map(|&i| {
            let seed =
                augment_seed.map(|s| s.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            source.sample(i, seed)
        })
        .collect::<Result<_, _>>()?;
    let mut values = Vec::with_capacity(indices.len() * frames * features);
    let mut labels = Vec::with_capacity(indices.len());
    for (i, (x, y)) in samples.into_iter().enumerate() {
        if x.len() != frames * features {
            return Err(TrainingError::Data(format!(
                "sample {} has {} values, expected {frames}x{features} = {}",
                indices[i],
                x.len(),
                frames * features
            )));
        }
        values.extend_from_slice(&x);
        labels.push(y);
    }
    Ok(Batch {
        inputs: TensorData::new(values, [indices.len(), frames, features]),
        labels,
    })
}
