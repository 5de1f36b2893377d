//! Labelled 8-bit image data sets: [`ImageSet`] (a flat CHW buffer with seeded stratified
//! splits, balanced subsets and normalisation), the idx reader of MNIST / Fashion-MNIST, and the
//! CIFAR-10 binary reader. Every reader checks its input and reports a [`DatasetError`] that
//! names the file; none panics on bad data.

pub mod cifar10;
pub mod idx;
pub mod set;

use std::path::Path;

pub use cifar10::{CIFAR10_RECORD_LEN, is_cifar10_dir, read_cifar10, read_cifar10_batch};
pub use idx::{
    IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, IdxImages, read_fashion_mnist, read_idx_dir,
    read_idx_images, read_idx_labels, read_idx_pair,
};
pub use set::{Holdout, ImageSet};

use crate::error::{DatasetError, Result};

/// The ten Fashion-MNIST classes, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The ten CIFAR-10 classes, indexed by label (the order of `batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Fails with [`DatasetError::LabelOutOfRange`] at the first label not below `classes`.
pub(crate) fn check_labels(path: &Path, labels: &[u8], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        Some(index) => Err(DatasetError::LabelOutOfRange {
            path: path.into(),
            index,
            label: labels[index],
            classes,
        }),
        None => Ok(()),
    }
}
