//! The trainer hook of QAT fine-tuning: starts from a float checkpoint with fake-quantization
//! points attached, initialised from PTQ calibration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use training::checkpoint::{read_ron, write_ron};
use training::qat::{KwtQuant, QuantFormat};
use training::{HookStart, Kwt, KwtConfig, StepHook, TrainingError, load_checkpoint};

/// The hook's settings in its run folder: a resumed fine-tuning must start from the same
/// checkpoint and quantizers.
pub const QAT_SETTINGS_FILE: &str = "qat.ron";

/// Replaces the trainer's fresh model by the float checkpoint plus its quantizers; the
/// optimizer then updates weights and log2 thresholds together. As a float control it
/// attaches nothing: the same fine-tuning without fake quantization. An interrupted run
/// resumes: its checkpoints hold the quantizers' learned thresholds.
pub struct QatHook {
    config: KwtConfig,
    settings: QatSettings,
}

/// What a QAT run starts from (`qat.ron`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct QatSettings {
    /// The float checkpoint fine-tuned.
    checkpoint: PathBuf,
    /// `None` for the float control.
    quantizers: Option<Quantizers>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Quantizers {
    /// Initial log2 threshold of every point, by name.
    initial_log2_thresholds: BTreeMap<String, f32>,
    /// The thresholds' learning-rate multiplier.
    threshold_lr_gain: f32,
    /// Weights rounded per output channel at `max|w| / 127`, not at learned power-of-two
    /// scales.
    per_channel_weights: bool,
    /// LayerNorms as TinyFormer's Scaled-LayerNorm (absent in runs that predate it, which
    /// modelled I-BERT's).
    #[serde(default)]
    scaled_layer_norm: bool,
    /// GELUs as I-BERT's i-GELU (absent in runs that predate it, which modelled the exact
    /// table).
    #[serde(default)]
    ibert_gelu: bool,
}

impl Quantizers {
    fn format(&self) -> QuantFormat {
        QuantFormat {
            per_channel_weights: self.per_channel_weights,
            scaled_layer_norm: self.scaled_layer_norm,
            ibert_gelu: self.ibert_gelu,
        }
    }
}

impl QatSettings {
    /// With the checkpoint's path canonical, so that a resume from another working folder
    /// compares equal.
    fn canonical(&self) -> Self {
        Self {
            checkpoint: training::run_match::canonical_path(&self.checkpoint),
            ..self.clone()
        }
    }
}

impl QatHook {
    /// `log2_t`: the initial threshold of every point (see
    /// [`super::thresholds::initial_thresholds`]); `lr_gain`: the thresholds' learning-rate
    /// multiplier; `format`: the weight format and LayerNorm and GELU kernels of the graph.
    pub fn new(
        checkpoint: PathBuf,
        config: KwtConfig,
        log2_t: BTreeMap<String, f32>,
        lr_gain: f32,
        format: QuantFormat,
    ) -> Self {
        Self {
            config,
            settings: QatSettings {
                checkpoint,
                quantizers: Some(Quantizers {
                    initial_log2_thresholds: log2_t,
                    threshold_lr_gain: lr_gain,
                    per_channel_weights: format.per_channel_weights,
                    scaled_layer_norm: format.scaled_layer_norm,
                    ibert_gelu: format.ibert_gelu,
                }),
            },
        }
    }

    /// Fine-tuning of the float checkpoint without quantizers (what QAT's gains must be
    /// measured against: the same steps of plain training).
    pub fn float_control(checkpoint: PathBuf, config: KwtConfig) -> Self {
        Self {
            config,
            settings: QatSettings {
                checkpoint,
                quantizers: None,
            },
        }
    }

    /// Refuses to resume the run in `out` unless it started from these settings.
    fn check_resumable(&self, out: &Path) -> Result<(), TrainingError> {
        let path = out.join(QAT_SETTINGS_FILE);
        if !path.is_file() {
            // a plain training run, or a QAT run of a version that kept no settings
            return Err(TrainingError::RunMismatch {
                path: out.to_path_buf(),
                what: "QAT".into(),
                differences: format!("it has no {QAT_SETTINGS_FILE} naming what it started from"),
            });
        }
        let saved: QatSettings = read_ron(&path)?;
        training::run_match::check_resumable(
            out,
            "QAT",
            &saved.canonical(),
            &self.settings.canonical(),
            &[],
        )
    }
}

/// A QAT run's checkpoint (`best.bpk`, `last-*.bpk` in its run folder) with its quantizers as
/// the run trained them: the run's `qat.ron` gives the points, their learning-rate gain (the
/// file stores each threshold divided by it, and the gain itself is no tensor) and the graph
/// format; the file gives weights and thresholds.
pub fn load_qat_checkpoint(
    checkpoint: &Path,
    device: &Device,
) -> Result<(Kwt, KwtConfig), TrainingError> {
    let folder = checkpoint.parent().unwrap_or_else(|| Path::new("."));
    let settings: QatSettings = read_ron(&folder.join(QAT_SETTINGS_FILE))?;
    let Some(q) = settings.quantizers else {
        return Err(TrainingError::checkpoint(
            checkpoint,
            "is a float control run's: it has no quantizers",
        ));
    };
    let config: KwtConfig = read_ron(&training::checkpoint::model_config_path(checkpoint))?;
    let template = attach(
        config.init(0, device)?,
        &config,
        &q.initial_log2_thresholds,
        q.threshold_lr_gain,
        q.format(),
    )?;
    let model = template
        .try_load_file(checkpoint)
        .map_err(|e| TrainingError::checkpoint(checkpoint, e))?;
    Ok((model, config))
}

/// `model` with fake-quantization points starting at `log2_t`, on `model`'s device, modelling
/// a graph of `format`.
pub fn attach(
    mut model: Kwt,
    config: &KwtConfig,
    log2_t: &BTreeMap<String, f32>,
    lr_gain: f32,
    format: QuantFormat,
) -> Result<Kwt, TrainingError> {
    if model.blocks.len() != config.depth {
        return Err(TrainingError::InvalidModel(format!(
            "{} blocks, config says depth {}",
            model.blocks.len(),
            config.depth
        )));
    }
    let device = model.embed.weight.val().device();
    model.qat = Some(KwtQuant::new(config, log2_t, lr_gain, &device)?.with_format(format));
    Ok(model)
}

impl StepHook for QatHook {
    fn structure(&self, model: Kwt) -> Result<Kwt, TrainingError> {
        match &self.settings.quantizers {
            Some(q) => attach(
                model,
                &self.config,
                &q.initial_log2_thresholds,
                q.threshold_lr_gain,
                q.format(),
            ),
            None => Ok(model),
        }
    }

    fn on_start(&mut self, model: Kwt, start: &HookStart<'_>) -> Result<Kwt, TrainingError> {
        if start.resumed_at.is_some() {
            // the trainer loaded the checkpoint into `structure`: weights and thresholds
            self.check_resumable(start.out)?;
            return Ok(model);
        }
        let checkpoint = &self.settings.checkpoint;
        let (model, saved) = load_checkpoint(checkpoint, start.device)?;
        if saved != self.config {
            return Err(TrainingError::checkpoint(
                checkpoint,
                "is not a checkpoint of the model being fine-tuned",
            ));
        }
        write_ron(&start.out.join(QAT_SETTINGS_FILE), &self.settings)?;
        self.structure(model)
    }

    fn after_step(&mut self, model: Kwt, _global_step: usize) -> Result<Kwt, TrainingError> {
        Ok(model)
    }
}
