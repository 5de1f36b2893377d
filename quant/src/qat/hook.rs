//! The trainer hook of QAT fine-tuning: starts from a float checkpoint with fake-quantization
//! points attached, initialised from PTQ calibration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use training::qat::KwtQuant;
use training::{HookStart, Kwt, KwtConfig, StepHook, TrainingError, load_checkpoint};

/// Replaces the trainer's fresh model by the float checkpoint plus its quantizers; the
/// optimizer then updates weights and log2 thresholds together. As a float control it
/// attaches nothing: the same fine-tuning without fake quantization.
pub struct QatHook {
    checkpoint: PathBuf,
    config: KwtConfig,
    /// Initial log2 thresholds, their learning-rate gain and whether weights round per
    /// channel; `None` for the float control.
    quantizers: Option<(BTreeMap<String, f32>, f32, bool)>,
}

impl QatHook {
    /// `log2_t`: the initial threshold of every point (see
    /// [`super::thresholds::initial_thresholds`]); `lr_gain`: the thresholds' learning-rate
    /// multiplier; `per_channel`: weights rounded per output channel at `max|w| / 127`
    /// instead of at learned power-of-two scales.
    pub fn new(
        checkpoint: PathBuf,
        config: KwtConfig,
        log2_t: BTreeMap<String, f32>,
        lr_gain: f32,
        per_channel: bool,
    ) -> Self {
        Self {
            checkpoint,
            config,
            quantizers: Some((log2_t, lr_gain, per_channel)),
        }
    }

    /// Fine-tuning of the float checkpoint without quantizers (what QAT's gains must be
    /// measured against: the same steps of plain training).
    pub fn float_control(checkpoint: PathBuf, config: KwtConfig) -> Self {
        Self {
            checkpoint,
            config,
            quantizers: None,
        }
    }
}

/// `model` with fake-quantization points starting at `log2_t`, on `model`'s device; weights
/// per output channel (`per_channel`) or at their points' power-of-two scales.
pub fn attach(
    mut model: Kwt,
    config: &KwtConfig,
    log2_t: &BTreeMap<String, f32>,
    lr_gain: f32,
    per_channel: bool,
) -> Result<Kwt, TrainingError> {
    if model.blocks.len() != config.depth {
        return Err(TrainingError::InvalidModel(format!(
            "{} blocks, config says depth {}",
            model.blocks.len(),
            config.depth
        )));
    }
    let device = model.embed.weight.val().device();
    model.qat = Some(
        KwtQuant::new(config, log2_t, lr_gain, &device)?.with_per_channel_weights(per_channel),
    );
    Ok(model)
}

impl StepHook for QatHook {
    fn on_start(&mut self, _fresh: Kwt, start: &HookStart<'_>) -> Result<Kwt, TrainingError> {
        if start.resumed_at.is_some() {
            // The trainer reloads `last.bpk` into a float model before this hook runs, which
            // cannot hold the quantizers' thresholds.
            return Err(TrainingError::InvalidConfig(format!(
                "{} holds an interrupted run; QAT fine-tuning starts afresh: remove it first",
                start.out.display()
            )));
        }
        let (model, saved) = load_checkpoint(&self.checkpoint, start.device)?;
        if saved != self.config {
            return Err(TrainingError::checkpoint(
                &self.checkpoint,
                "is not a checkpoint of the model being fine-tuned",
            ));
        }
        match &self.quantizers {
            Some((log2_t, gain, per_channel)) => {
                attach(model, &self.config, log2_t, *gain, *per_channel)
            }
            None => Ok(model),
        }
    }

    fn after_step(&mut self, model: Kwt, _global_step: usize) -> Result<Kwt, TrainingError> {
        Ok(model)
    }
}
