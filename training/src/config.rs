//! Hyper-parameters of a training run (KWT paper Table 2 gives the defaults).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::TrainingError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate after warm-up.
    pub learning_rate: f64,
    /// Learning rate at the end of the cosine decay.
    pub final_learning_rate: f64,
    pub warmup_epochs: usize,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    /// Seeds the model initialisation, the batch order and the augmentation.
    pub seed: u64,
    /// Apply the data set's augmentation to training samples.
    pub augment: bool,
    /// Also write a resumable checkpoint every this many steps (0: only at the end of each epoch).
    pub checkpoint_every_steps: usize,
    pub eval_batch_size: usize,
    pub distillation: Option<DistillationConfig>,
    /// Split each batch into this many parts whose forward and backward passes run on their own
    /// threads, the gradients summed in a fixed order (`trainer::optimizer_step`). Burn's
    /// CPU backends run most of a step on one core: 2 on a 2-core machine trains KWT 1.4-1.6x
    /// faster (experiments/kwt_throughput). Part of the result, as the batch size is:
    /// the same value gives the same run on any machine; 1 on a GPU.
    pub batch_shards: usize,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        // KWT Table 2: 140 epochs, batch 512, lr 0.001, 10 warm-up epochs, weight decay 0.1,
        // label smoothing 0.1.
        Self {
            epochs: 140,
            batch_size: 512,
            learning_rate: 1e-3,
            final_learning_rate: 0.0,
            warmup_epochs: 10,
            weight_decay: 0.1,
            label_smoothing: 0.1,
            seed: 0,
            augment: true,
            checkpoint_every_steps: 0,
            eval_batch_size: 256,
            distillation: None,
            batch_shards: 1,
        }
    }
}

/// Distillation from a trained teacher: its hard decisions (KWT Sec. 3.2, Eq. 6, the default)
/// or its softened output distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillationConfig {
    /// A checkpoint file (`.bpk`) written by `nas train`; its `model.ron` sits beside it.
    pub teacher: PathBuf,
    #[serde(default)]
    pub targets: DistillTargets,
}

/// What the student learns from its teacher.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum DistillTargets {
    /// KWT Eq. 6: the class head learns the labels, the distillation head (or the class head
    /// again) the teacher's arg-max, each half of the loss.
    #[default]
    Hard,
    /// Hinton et al.'s soft targets: `(1 - weight)` times the labels' cross-entropy on the
    /// class head plus `weight` times `temperature^2 KL(teacher || student)` of the
    /// distributions softened by `temperature`, on the distillation head (or the class head).
    /// With the float model as its own teacher this is what QAT fine-tunes towards: the
    /// float network's function rather than the labels once more.
    Soft { temperature: f64, weight: f64 },
}

impl DistillTargets {
    fn validate(&self) -> Result<(), TrainingError> {
        match *self {
            Self::Hard => Ok(()),
            Self::Soft { temperature, .. } if !(temperature > 0.0 && temperature.is_finite()) => {
                Err(TrainingError::InvalidConfig(format!(
                    "`distillation.targets.temperature` must be a positive number, got {temperature}"
                )))
            }
            Self::Soft { weight, .. } if !(0.0..=1.0).contains(&weight) => {
                Err(TrainingError::InvalidConfig(format!(
                    "`distillation.targets.weight` must be in [0, 1], got {weight}"
                )))
            }
            Self::Soft { .. } => Ok(()),
        }
    }
}

impl TrainerConfig {
    /// The same settings with the teacher's path made absolute where the file exists, so a
    /// run resumed from another working directory compares equal.
    pub fn with_canonical_teacher(mut self) -> Self {
        if let Some(d) = &mut self.distillation {
            d.teacher = crate::run_match::canonical_path(&d.teacher);
        }
        self
    }

    pub fn validate(&self) -> Result<(), TrainingError> {
        let bad =
            |field: &str, why: &str| Err(TrainingError::InvalidConfig(format!("`{field}` {why}")));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.eval_batch_size == 0 {
            return bad("eval_batch_size", "must be at least 1");
        }
        if self.batch_shards == 0 || self.batch_shards > self.batch_size {
            return bad("batch_shards", "must be in [1, batch_size]");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate", "must be a positive number");
        }
        if !(self.final_learning_rate >= 0.0 && self.final_learning_rate <= self.learning_rate) {
            return bad("final_learning_rate", "must be in [0, learning_rate]");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label_smoothing", "must be in [0, 1)");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay", "must be >= 0");
        }
        if self.warmup_epochs >= self.epochs && self.epochs > 1 {
            return bad("warmup_epochs", "must be smaller than `epochs`");
        }
        if let Some(d) = &self.distillation {
            d.targets.validate()?;
        }
        Ok(())
    }
}
