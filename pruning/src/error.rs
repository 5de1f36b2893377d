use std::path::PathBuf;

use thiserror::Error;

use crate::rle::RleError;

/// Errors of pruning: each names the layer, field or file at fault and what was expected.
#[derive(Debug, Error)]
pub enum PruneError {
    #[error(
        "pruning config names layer `{name}`, which the model does not have (known layers: {known})"
    )]
    UnknownLayer { name: String, known: String },
    #[error("layer `{layer}`: sparsity must be in [0, 1), got {value}")]
    SparsityOutOfRange { layer: String, value: f64 },
    #[error("layer `{layer}`: block size {block} is not allowed (allowed: {allowed})")]
    BlockNotAllowed {
        layer: String,
        block: usize,
        allowed: String,
    },
    #[error(
        "layer `{layer}`: block size {block} does not divide its {dim_name} dimension of {dim}"
    )]
    BlockDoesNotDivide {
        layer: String,
        block: usize,
        dim_name: &'static str,
        dim: usize,
    },
    #[error("layer `{layer}`: {message}")]
    Layout { layer: String, message: String },
    #[error("pruning schedule: {0}")]
    Schedule(String),
    #[error("layer `{layer}`: {len} weights, but its shape needs {expected}")]
    ShapeMismatch {
        layer: String,
        len: usize,
        expected: usize,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Rle(#[from] RleError),
    #[error(transparent)]
    Training(#[from] training::TrainingError),
}

impl PruneError {
    pub fn file(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Self::File {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

impl From<PruneError> for training::TrainingError {
    fn from(e: PruneError) -> Self {
        match e {
            PruneError::Training(t) => t,
            PruneError::File { path, message } => {
                training::TrainingError::Checkpoint { path, message }
            }
            other => training::TrainingError::InvalidConfig(other.to_string()),
        }
    }
}
