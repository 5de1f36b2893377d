//! Initial TQT thresholds from PTQ calibration, and the power-of-two exponents that learned
//! thresholds imply.

use std::collections::BTreeMap;

use training::qat::{KwtQuant, PointKind};
use training::{Kwt, KwtConfig};

use crate::Graph;
use crate::ptq::PtqOptions;
use crate::ptq::error::{PtqError, Result};
use crate::ptq::float_graph::{FOp, FloatGraph};
use crate::ptq::kwt_graph::{calibrate, scale_groups};
use crate::ptq::observer::exponent_for_clip;

/// Bits of every point (int8 graph).
const BITS: i32 = 8;

/// Suffix of weight points' names.
const WEIGHT_SUFFIX: &str = ".weight";

/// A log2 threshold whose scale `2^(ceil(l) - 7)` is `2^exp`. It sits in the middle of the
/// interval `(exp + 6, exp + 7]` that maps to `exp`, so that the first small updates do not
/// flip the scale back and forth.
pub fn log2_threshold_for_exp(exp: i32) -> f32 {
    (exp + BITS - 1) as f32 - 0.5
}

/// The name of the tensor that starts each observer group (the op that sets its scale).
pub fn group_names(fg: &FloatGraph, groups: &[Option<usize>], n_groups: usize) -> Vec<String> {
    let mut names = vec![String::new(); n_groups];
    for (id, g) in groups.iter().enumerate().rev() {
        if let Some(g) = g {
            names[*g] = fg.tensor_name(id).to_string();
        }
    }
    names
}

/// Initial log2 thresholds of every point of `model`: activations from the PTQ calibration of
/// `samples` (the estimator's power-of-two scale of each observer group), weights from
/// `max|w|` (no weight clips at the start).
pub fn initial_thresholds(
    model: &Kwt,
    cfg: &KwtConfig,
    samples: &[Vec<f32>],
    opts: &PtqOptions,
) -> Result<BTreeMap<String, f32>> {
    let fg = FloatGraph::from_kwt(model, cfg)?;
    let samples = crate::ptq::calibration_slice(samples, cfg, opts)?;
    let (groups, n_groups) = scale_groups(&fg);
    let observers = calibrate(&fg, &groups, n_groups, samples)?;
    let exps = observers.iter().map(|o| o.exponent(opts.estimator));
    Ok(thresholds(&fg, &groups, n_groups, exps))
}

/// [`initial_thresholds`] read off `graph`, PTQ's graph of the same model calibrated with the
/// same samples and options (its activation scales are those exponents): no second
/// calibration.
pub fn initial_thresholds_from_graph(
    model: &Kwt,
    cfg: &KwtConfig,
    graph: &Graph,
) -> Result<BTreeMap<String, f32>> {
    let fg = FloatGraph::from_kwt(model, cfg)?;
    let (groups, n_groups) = scale_groups(&fg);
    let exps = group_names(&fg, &groups, n_groups)
        .iter()
        .map(|name| {
            graph
                .tensor(name)
                .and_then(|t| t.scale.pow2_exponent())
                .ok_or_else(|| {
                    PtqError::Qat(format!(
                        "the PTQ graph has no power-of-two scale for `{name}`"
                    ))
                })
        })
        .collect::<Result<Vec<i32>>>()?;
    Ok(thresholds(&fg, &groups, n_groups, exps))
}

/// Every point's log2 threshold: each observer group's at the exponent `exps` gives it, each
/// Linear weight's at its `max|w|`.
fn thresholds(
    fg: &FloatGraph,
    groups: &[Option<usize>],
    n_groups: usize,
    exps: impl IntoIterator<Item = i32>,
) -> BTreeMap<String, f32> {
    let mut out: BTreeMap<String, f32> = group_names(fg, groups, n_groups)
        .into_iter()
        .zip(exps)
        .map(|(name, exp)| (name, log2_threshold_for_exp(exp)))
        .collect();
    for node in &fg.nodes {
        if let FOp::Linear { weight, .. } = &node.op {
            let m = weight.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
            out.insert(
                format!("{}{WEIGHT_SUFFIX}", node.name),
                log2_threshold_for_exp(exponent_for_clip(m)),
            );
        }
    }
    out
}

/// Power-of-two exponents the learned thresholds imply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LearnedExponents {
    /// Activation scale `2^k` by tensor name (the group's first tensor).
    pub activations: BTreeMap<String, i32>,
    /// Weight scale `2^k` by Linear name.
    pub weights: BTreeMap<String, i32>,
}

impl LearnedExponents {
    pub fn of(q: &KwtQuant) -> Self {
        let mut out = Self::default();
        for (name, kind, point) in q.points() {
            match kind {
                PointKind::Activation => {
                    out.activations.insert(name, point.scale_exp());
                }
                PointKind::Weight => {
                    let layer = name.strip_suffix(WEIGHT_SUFFIX).unwrap_or(&name);
                    out.weights.insert(layer.to_string(), point.scale_exp());
                }
            }
        }
        out
    }

    /// Exponent of every observer group, in group order.
    pub fn group_exps(
        &self,
        fg: &FloatGraph,
        groups: &[Option<usize>],
        n_groups: usize,
    ) -> Result<Vec<i32>> {
        group_names(fg, groups, n_groups)
            .iter()
            .map(|name| {
                self.activations
                    .get(name)
                    .copied()
                    .ok_or_else(|| PtqError::Qat(format!("no learned threshold for `{name}`")))
            })
            .collect()
    }
}
