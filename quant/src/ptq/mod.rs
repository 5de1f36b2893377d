//! Post-training quantization of a trained float KWT into the integer [`crate::Graph`].
//! [`tinyformer`] does the same for a single-path TinyFormer with the same machinery.
//!
//! 1. [`FloatGraph::from_kwt`] walks the Burn model into a float graph whose nodes carry the
//!    names, shapes and layouts of the integer graph to come. The model's frozen input
//!    standardization stays outside the integer graph, in its `input_standardization`: one
//!    power-of-two input scale cannot cover raw MFCCs (c0 spans hundreds, the high coefficients
//!    units), so the front end standardizes per feature before quantizing.
//! 2. The float graph is checked against the Burn model's logits on the calibration samples.
//! 3. [`kwt_graph::calibrate`] observes every activation; an [`Estimator`] picks a
//!    power-of-two scale per observer group (TQT-style).
//! 4. [`kwt_graph::lower`] emits the integer graph; [`report::build`] measures it layer by
//!    layer against the float graph.

pub mod error;
pub mod eval;
pub mod float_graph;
mod float_matmul;
mod image_ops;
pub mod kwt_graph;
pub mod observer;
pub mod report;
pub mod tinyformer;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use training::{Kwt, KwtConfig};

pub use error::{PtqError, Result};
pub use eval::{
    classify_int8, classify_int8_images, evaluate_int8, evaluate_int8_images, int8_outputs,
};
pub use float_graph::FloatGraph;
pub use observer::{Estimator, Observer};
pub use report::PtqReport;
pub use tinyformer::{
    chw_to_hwc, quantize_image, quantize_tinyformer, set_channel_standardization,
    tinyformer_float_error,
};

use crate::Graph;

/// How the integer graph computes GELU. Both run as a 256-entry table of the int8 input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeluMethod {
    /// The exact (erf) GELU rounded once ([`crate::GeluTable`]).
    #[default]
    Exact,
    /// I-BERT's i-GELU polynomial ([`crate::Int8Gelu`]); off by up to 2 codes.
    IBert,
}

impl GeluMethod {
    /// I-BERT's i-GELU where `ibert`, else the exact table (QAT's forward models either:
    /// `training::qat::QuantFormat::ibert_gelu`).
    pub fn ibert_if(ibert: bool) -> Self {
        if ibert { Self::IBert } else { Self::Exact }
    }
}

/// How a float model is quantized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PtqOptions {
    /// Activation clipping estimator.
    pub estimator: Estimator,
    /// One weight scale per output channel instead of one per tensor.
    pub per_channel: bool,
    /// TinyFormer's Scaled-LayerNorm (G = 7) instead of I-BERT's LayerNorm (G = 14).
    pub scaled_layer_norm: bool,
    /// How GELU's int8 table is filled.
    pub gelu: GeluMethod,
    /// Samples observed to choose activation scales.
    pub calibration_samples: usize,
    /// Samples (the first calibration samples) the per-layer report is measured on.
    pub report_samples: usize,
    /// Output step `2^-(8 + o)` of every softmax: `Some(o)`, or `None` for each node's own
    /// shift of least squared error on the calibration probabilities
    /// ([`observer::Observer::softmax_shift`]): long attention rows (a key-word TinyFormer's
    /// 960 tokens) need steps below `2^-8`. `Some(0)` is the uint8 at `2^-8` of graphs before
    /// format 4.
    pub softmax_out_shift: Option<u32>,
}

impl Default for PtqOptions {
    fn default() -> Self {
        Self {
            estimator: Estimator::Percentile(99.99),
            per_channel: true,
            scaled_layer_norm: false,
            gelu: GeluMethod::Exact,
            calibration_samples: 256,
            report_samples: 64,
            softmax_out_shift: None,
        }
    }
}

impl PtqOptions {
    /// The weight format and LayerNorm and GELU kernels these options lower to, which QAT's
    /// forward models.
    pub fn quant_format(&self) -> training::qat::QuantFormat {
        training::qat::QuantFormat {
            per_channel_weights: self.per_channel,
            scaled_layer_norm: self.scaled_layer_norm,
            ibert_gelu: self.gelu == GeluMethod::IBert,
        }
    }
}

impl PtqOptions {
    pub fn validate(&self) -> Result<()> {
        if self.calibration_samples == 0 {
            return Err(PtqError::Options(
                "calibration_samples must be at least 1".into(),
            ));
        }
        if let Some(o) = self.softmax_out_shift
            && o > crate::ibert::SOFTMAX_MAX_OUT_SHIFT
        {
            return Err(PtqError::Options(format!(
                "softmax_out_shift {o} is above {}",
                crate::ibert::SOFTMAX_MAX_OUT_SHIFT
            )));
        }
        if let Estimator::Percentile(p) = self.estimator
            && !(p > 0.0 && p <= 100.0)
        {
            return Err(PtqError::Options(format!(
                "percentile {p} is not in (0, 100]"
            )));
        }
        Ok(())
    }
}

/// Relative logit difference above which the float re-implementation is declared wrong.
const FLOAT_CHECK_TOLERANCE: f32 = 1e-3;

/// Quantizes `model` with `samples` (each `[frames * features]`, raw features) as the
/// calibration set; returns the integer graph and its per-layer report.
pub fn quantize_kwt(
    model: &Kwt,
    cfg: &KwtConfig,
    samples: &[Vec<f32>],
    opts: &PtqOptions,
) -> Result<(Graph, PtqReport)> {
    let fg = FloatGraph::from_kwt(model, cfg)?;
    let samples = calibration_slice(samples, cfg, opts)?;
    check_against_burn(model, &fg, &samples[..samples.len().min(8)])?;
    calibrate_and_lower(&fg, samples, opts)
}

/// Clips one core takes at a time when calibration and the layer report run the float graph
/// over many: enough to amortise a worker's observers or interpreter, few enough to balance.
/// Fixed, so that sums merged chunk by chunk do not depend on the number of cores.
pub(crate) const CLIPS_PER_TASK: usize = 8;

/// What every PTQ front end does once its float graph is checked: observe the activations on
/// `samples`, take each scale group's power-of-two exponent from `opts.estimator`, lower to the
/// integer graph and measure it layer by layer.
pub(crate) fn calibrate_and_lower(
    fg: &FloatGraph,
    samples: &[Vec<f32>],
    opts: &PtqOptions,
) -> Result<(Graph, PtqReport)> {
    let (groups, n_groups) = kwt_graph::scale_groups(fg);
    let calibrated = opts.softmax_out_shift.is_none();
    let cal = kwt_graph::calibrate_all(fg, &groups, n_groups, samples, calibrated)?;
    let exps: Vec<i32> = cal
        .groups
        .iter()
        .map(|o| o.exponent(opts.estimator))
        .collect();
    let shifts = cal.softmax_shifts(fg, opts.softmax_out_shift);
    let graph = kwt_graph::lower(fg, &groups, &exps, &shifts, opts)?;
    let report = layer_report(fg, &graph, &groups, &cal.groups, samples, opts)?;
    Ok((graph, report))
}

/// The per-layer report of `graph` against `fg`, measured on the first
/// `opts.report_samples` of `samples`; `opts.per_channel` names the weight granularity.
pub(crate) fn layer_report(
    fg: &FloatGraph,
    graph: &Graph,
    groups: &[Option<usize>],
    observers: &[Observer],
    samples: &[Vec<f32>],
    opts: &PtqOptions,
) -> Result<PtqReport> {
    let report_n = samples.len().min(opts.report_samples.max(1));
    report::build(
        fg,
        graph,
        groups,
        observers,
        &samples[..report_n],
        samples.len(),
        opts.estimator,
        opts.per_channel,
    )
}

/// The first `opts.calibration_samples` samples, checked: at least one, each of the model's
/// input size. Validates `opts` too.
pub(crate) fn calibration_slice<'a>(
    samples: &'a [Vec<f32>],
    cfg: &KwtConfig,
    opts: &PtqOptions,
) -> Result<&'a [Vec<f32>]> {
    opts.validate()?;
    let take = samples.len().min(opts.calibration_samples);
    if take == 0 {
        return Err(PtqError::Calibration("no calibration samples".into()));
    }
    let samples = &samples[..take];
    let len = cfg.frames * cfg.features;
    if let Some(i) = samples.iter().position(|s| s.len() != len) {
        return Err(PtqError::Calibration(format!(
            "sample {i} has {} values, expected {}x{} = {len}",
            samples[i].len(),
            cfg.frames,
            cfg.features
        )));
    }
    Ok(samples)
}

/// `model`'s logits (fake-quantized when it has quantizers) for `samples`, each `[frames *
/// features]`, in one forward on the model's device; row-major `[samples, classes]`.
pub(crate) fn burn_logits(
    model: &Kwt,
    samples: &[Vec<f32>],
    frames: usize,
    features: usize,
) -> Vec<f32> {
    let device: Device = model.embed.weight.val().device();
    let flat: Vec<f32> = samples.iter().flatten().copied().collect();
    let x = Tensor::<3>::from_data(
        TensorData::new(flat, [samples.len(), frames, features]),
        &device,
    );
    model
        .forward(x)
        .logits()
        .into_data()
        .iter::<f32>()
        .collect()
}

/// The float graph must reproduce the Burn model: otherwise calibration would measure a
/// different network than the one trained.
pub(crate) fn check_against_burn(model: &Kwt, fg: &FloatGraph, samples: &[Vec<f32>]) -> Result<()> {
    let [frames, features] = [fg.input_shape[0], fg.input_shape[1]];
    let burn_logits = burn_logits(model, samples, frames, features);
    let classes = burn_logits.len() / samples.len();
    for (i, s) in samples.iter().enumerate() {
        let ours = fg.logits(s)?;
        let theirs = &burn_logits[i * classes..(i + 1) * classes];
        let scale = theirs.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (a, b) in ours.iter().zip(theirs) {
            if (a - b).abs() > FLOAT_CHECK_TOLERANCE * scale {
                return Err(PtqError::FloatMismatch(format!(
                    "sample {i}: logits {ours:?} vs Burn {theirs:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
