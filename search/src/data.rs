//! Images as normalized f32 in memory and batching into Burn tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use datasets::ImageSet;

/// A split of normalized images `[n, c, h, w]`.
pub struct ImageTensors {
    pub shape: [usize; 3],
    pub values: Vec<f32>,
    pub labels: Vec<usize>,
}

impl ImageTensors {
    /// Normalizes every image of `set` per channel with `mean`/`std` (from the training split).
    pub fn new(set: &ImageSet, mean: &[f32], std: &[f32]) -> Self {
        let mut values = Vec::with_capacity(set.len() * set.image_len());
        let mut labels = Vec::with_capacity(set.len());
        for i in 0..set.len() {
            values.extend(set.to_f32_normalized(i, mean, std));
            labels.push(set.label(i) as usize);
        }
        Self {
            shape: [set.channels, set.height, set.width],
            values,
            labels,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images `indices` as `[b, c, h, w]` and their labels.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let per = self.shape.iter().product::<usize>();
        let mut x = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            x.extend_from_slice(&self.values[i * per..(i + 1) * per]);
        }
        let [c, h, w] = self.shape;
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        (
            Tensor::from_data(TensorData::new(x, [indices.len(), c, h, w]), device),
            Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        )
    }
}
