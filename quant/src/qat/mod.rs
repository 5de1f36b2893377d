//! Quantization-aware training with trained power-of-two thresholds (TQT, Jain et al. 2020).
//!
//! 1. [`thresholds::initial_thresholds`]: PTQ calibration of the float checkpoint gives every
//!    activation point its initial log2 threshold; weights start at `max|w|`.
//! 2. [`hook::QatHook`]: the existing trainer fine-tunes the checkpoint with
//!    [`training::qat::KwtQuant`] attached (fake quantization at every point the integer graph
//!    rounds), learning weights and thresholds together; on the labels, or on the float
//!    checkpoint's softened outputs when the trainer config distils from the checkpoint itself
//!    (`nas quantize` does by default: experiments/quantization, held-out accuracy closer
//!    to float).
//! 3. The best epoch by validation accuracy is kept if it beats the starting point (else the
//!    start, i.e. PTQ's rounding at the initial thresholds, is lowered).
//! 4. [`lower_qat`]: the fine-tuned weights are lowered by [`kwt_graph::lower_with`] at the
//!    power-of-two scales the learned thresholds imply (activations per scale group), weights
//!    per output channel at `max|w| / 127` as PTQ does ([`PtqOptions::per_channel`], the
//!    default) or per tensor at their learned power-of-two scales (TQT's original format).

pub mod fidelity;
pub mod hook;
pub mod thresholds;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use training::{
    DataSplits, Kwt, KwtConfig, RunSummary, TrainOptions, TrainOutcome, TrainerConfig,
    load_checkpoint, train_with_hook,
};

use crate::Graph;
use crate::ptq::error::{PtqError, Result};
use crate::ptq::float_graph::FloatGraph;
use crate::ptq::kwt_graph::{self, WeightScales, calibrate, scale_groups};
use crate::ptq::{
    GeluMethod, PtqOptions, PtqReport, calibration_slice, check_against_burn, layer_report,
};

pub use fidelity::{GraphFidelity, GraphScore, graph_fidelity};
pub use hook::{QatHook, attach, load_qat_checkpoint};
pub use thresholds::{
    LearnedExponents, initial_thresholds, initial_thresholds_from_graph, log2_threshold_for_exp,
};

/// `model` without its quantizers: the float network the integer graph is lowered from.
pub fn float_model(model: &Kwt) -> Kwt {
    let mut m = model.clone();
    m.qat = None;
    m
}

/// Lowers a fine-tuned QAT model to the integer graph at its learned power-of-two scales;
/// `samples` serve the float-graph check and the per-layer report (whose `estimator` field
/// then names only the estimator the thresholds were initialised with).
pub fn lower_qat(
    model: &Kwt,
    cfg: &KwtConfig,
    samples: &[Vec<f32>],
    opts: &PtqOptions,
) -> Result<(Graph, PtqReport)> {
    let q = model
        .qat
        .as_ref()
        .ok_or_else(|| PtqError::Qat("the model has no quantizers".into()))?;
    let learned = LearnedExponents::of(q);
    let float = float_model(model);
    let fg = FloatGraph::from_kwt(&float, cfg)?;
    let samples = calibration_slice(samples, cfg, opts)?;
    check_against_burn(&float, &fg, &samples[..samples.len().min(8)])?;
    let (groups, n_groups) = scale_groups(&fg);
    let exps = learned.group_exps(&fg, &groups, n_groups)?;
    // The quantizers, not the caller's options, say how the weights were rounded and which
    // LayerNorm and GELU were modelled.
    let per_channel = q.per_channel_weights();
    let opts = PtqOptions {
        per_channel,
        scaled_layer_norm: q.scaled_layer_norm(),
        gelu: GeluMethod::ibert_if(q.ibert_gelu()),
        ..opts.clone()
    };
    let weights = if per_channel {
        WeightScales::AbsMax
    } else {
        WeightScales::PowerOfTwo(&learned.weights)
    };
    // QAT's forward rounds every softmax at 2^-8 (training::int_softmax): no output shift.
    let graph = kwt_graph::lower_with(&fg, &groups, &exps, &Default::default(), weights, &opts)?;
    let observers = calibrate(&fg, &groups, n_groups, samples)?;
    let report = layer_report(&fg, &graph, &groups, &observers, samples, &opts)?;
    Ok((graph, report))
}

/// QAT's starting point lowered without fine-tuning: PTQ-calibrated activation thresholds and
/// weights per output channel (`opts.per_channel`: then this is PTQ's graph with every softmax
/// at `2^-8`, `softmax_out_shift: Some(0)`) or at one power-of-two scale per tensor. Separates
/// what QAT's scale format costs from what its training recovers. Returns the model with its
/// quantizers attached too.
pub fn quantize_kwt_untrained(
    model: &Kwt,
    cfg: &KwtConfig,
    samples: &[Vec<f32>],
    opts: &PtqOptions,
) -> Result<(Kwt, Graph, PtqReport)> {
    let float = float_model(model);
    let initial = initial_thresholds(&float, cfg, samples, opts)?;
    let quantized = attach(float, cfg, &initial, 1.0, opts.quant_format())?;
    let (graph, report) = lower_qat(&quantized, cfg, samples, opts)?;
    Ok((quantized, graph, report))
}

/// How a QAT run quantizes and trains.
#[derive(Debug, Clone, PartialEq)]
pub struct QatOptions {
    /// Calibration of the initial thresholds, LayerNorm kind, report size, and the weight
    /// format: per output channel (`per_channel`) or TQT's learned power-of-two per tensor.
    pub ptq: PtqOptions,
    /// Thresholds learn this many times faster than weights (TQT trains them at a much
    /// larger learning rate).
    pub threshold_lr_gain: f32,
    /// The initial thresholds when already known (from [`initial_thresholds_from_graph`] of
    /// PTQ's graph of the same samples and options); `None` calibrates them.
    pub initial: Option<BTreeMap<String, f32>>,
}

impl Default for QatOptions {
    fn default() -> Self {
        Self {
            ptq: PtqOptions::default(),
            threshold_lr_gain: 50.0,
            initial: None,
        }
    }
}

/// The float control of a QAT run: the same fine-tuning of `checkpoint` without fake
/// quantization, into `out`. Returns the best fine-tuned float model (plain device).
pub fn fine_tune_float(
    checkpoint: &Path,
    trainer: &TrainerConfig,
    data: &DataSplits,
    out: &Path,
    device: &Device,
    options: &TrainOptions,
) -> Result<(Kwt, RunSummary)> {
    let plain = device.clone().without_autodiff();
    let config: KwtConfig =
        training::checkpoint::read_ron(&training::checkpoint::model_config_path(checkpoint))?;
    let mut hook = QatHook::float_control(checkpoint.to_path_buf(), config.clone());
    let summary = match train_with_hook(&config, trainer, data, out, device, options, &mut hook)? {
        TrainOutcome::Finished(s) => *s,
        TrainOutcome::Interrupted { global_step } => {
            return Err(PtqError::Qat(format!(
                "fine-tuning stopped at step {global_step}"
            )));
        }
    };
    let (model, _) = load_checkpoint(&summary.best_checkpoint, &plain)?;
    Ok((model, summary))
}

/// Everything a QAT run produces.
pub struct QatRun {
    /// The integer graph at the learned scales.
    pub graph: Graph,
    pub report: PtqReport,
    /// The trainer's summary (its test accuracy is the best fine-tuned model's).
    pub summary: RunSummary,
    /// The lowered model, quantizers attached (on the plain device): the best fine-tuned one,
    /// or the starting point when no epoch beat its validation accuracy.
    pub model: Kwt,
    /// Validation accuracy of the starting point (the float checkpoint with its quantizers at
    /// the initial thresholds).
    pub start_valid_acc: f64,
    /// No fine-tuned epoch beat `start_valid_acc`: `model` is the starting point.
    pub kept_start: bool,
    /// Test accuracy of `model`, fake-quantized.
    pub fake_quant_test_acc: f64,
    pub config: KwtConfig,
    /// Log2 thresholds before and after fine-tuning, by point name.
    pub initial: BTreeMap<String, f32>,
    pub learned: BTreeMap<String, f32>,
}

/// Fine-tunes `checkpoint` with fake quantization into the run folder `out` (an interrupted
/// run there, of the same settings, resumes), then lowers the best model by validation
/// accuracy: the best epoch, or the starting point if no epoch beats it. `samples` (raw training features)
/// calibrate the initial thresholds and feed the report. [`graph_fidelity`] compares the
/// returned model with its graph.
#[allow(clippy::too_many_arguments)]
pub fn quantize_kwt_qat(
    checkpoint: &Path,
    trainer: &TrainerConfig,
    data: &DataSplits,
    out: &Path,
    device: &Device,
    options: &TrainOptions,
    samples: &[Vec<f32>],
    qat: &QatOptions,
) -> Result<QatRun> {
    let opts = &qat.ptq;
    let gain = qat.threshold_lr_gain;
    let plain = device.clone().without_autodiff();
    let (float, config) = load_checkpoint(checkpoint, &plain)?;
    let initial = match &qat.initial {
        Some(t) => t.clone(),
        None => initial_thresholds(&float, &config, samples, opts)?,
    };
    let format = opts.quant_format();
    let start = attach(float, &config, &initial, gain, format)?;
    let accuracy = |model: &Kwt, split: &dyn training::SampleSource| -> Result<f64> {
        let labels = &data.labels;
        let (frames, features, batch) = (data.frames, data.features, trainer.eval_batch_size);
        Ok(training::evaluate(model, split, labels, frames, features, batch, &plain)?.accuracy())
    };
    let start_valid_acc = accuracy(&start, data.valid.as_ref())?;
    let mut hook = QatHook::new(
        checkpoint.to_path_buf(),
        config.clone(),
        initial.clone(),
        gain,
        format,
    );
    let summary = match train_with_hook(&config, trainer, data, out, device, options, &mut hook)? {
        TrainOutcome::Finished(s) => *s,
        TrainOutcome::Interrupted { global_step } => {
            return Err(PtqError::Qat(format!(
                "fine-tuning stopped at step {global_step}"
            )));
        }
    };
    // every parameter and threshold is replaced by the checkpoint's
    let tuned = burn::module::Module::try_load_file(start.clone(), &summary.best_checkpoint)
        .map_err(|e| {
            PtqError::Training(Box::new(training::TrainingError::checkpoint(
                &summary.best_checkpoint,
                e,
            )))
        })?;
    // Fine-tuning must earn its place: on a small validation split an epoch's accuracy moves
    // by a few samples either way, and a run whose best epoch only ties its starting point
    // (PTQ's rounding at the initial thresholds) would trade a known model for noise.
    let kept_start = summary.best_valid_acc <= start_valid_acc;
    let (model, fake_quant_test_acc) = if kept_start {
        let acc = accuracy(&start, data.test.as_ref())?;
        (start, acc)
    } else {
        (tuned, summary.test_acc)
    };
    let learned = model
        .qat
        .as_ref()
        .map(|q| q.thresholds())
        .unwrap_or_default();
    let (graph, report) = lower_qat(&model, &config, samples, opts)?;
    Ok(QatRun {
        graph,
        report,
        summary,
        model,
        config,
        initial,
        learned,
        start_valid_acc,
        kept_start,
        fake_quant_test_acc,
    })
}

#[cfg(test)]
mod tests;
