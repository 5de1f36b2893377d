//! The per-epoch record of a run, kept in the resumable run state and the summary.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub valid_acc: f64,
    pub lr: f64,
    pub seconds: f64,
}
