//! Calibration and lowering: observes every activation of the [`FloatGraph`] over calibration
//! samples, picks power-of-two activation scales (TQT), quantizes weights (per tensor or per
//! output channel) and emits the integer [`Graph`] op by op with [`GraphBuilder`].
//!
//! Op mapping (float node -> integer op):
//!
//! | float | integer | scales |
//! | --- | --- | --- |
//! | `Linear` (embed, q/k/v, attn.out, fc1, fc2, head fc) | `Linear` | weight `max|w|/127` per tensor or per row; bias int32 at `S_x S_w`; output `2^k` |
//! | attention `q k^T / sqrt(dh)` | `MatMul { transpose_b: true }` | `1/sqrt(dh)` folded into the requant `S_q S_k / (sqrt(dh) S_y)` |
//! | `softmax` | `Softmax` (I-BERT i-softmax) | output uint8 at `2^-(8 + o)` (zero point -128), `o` per node from [`PtqOptions::softmax_out_shift`] or the calibration ([`Observer::softmax_shift`]) |
//! | `p v` | `MatMul { transpose_b: false }` | |
//! | residual add | `Add` | exact for power-of-two ratios |
//! | LayerNorm | `LayerNorm` (I-BERT, G = 14) or `ScaledLayerNorm` (G = 7) | gamma per tensor |
//! | GELU | `Gelu` (i-GELU) | |
//! | class / distillation token | `ConcatClassToken` | token quantized at the embedding's scale |
//! | position embedding | `AddEmbedding` | embedding `max|e|/127` |
//! | heads split/merge | `Reshape` + `Transpose` | scale kept |
//! | head token | `SelectToken` | scale kept |
//! | two-head average | `Add` with `ma, mb ~ S/2` | |
//!
//! Scale-keeping ops share their producer's scale: one observer serves the whole group, so
//! the embedding's scale also covers the class and distillation tokens.

use std::collections::BTreeMap;

use crate::builder::GraphBuilder;
use crate::dyadic::pow2_exponent_of;
use crate::graph::{Graph, MAX_PRODUCT, Op};
use crate::ibert::SOFTMAX_MAX_OUT_SHIFT;
use crate::rounding::{abs_max_step, to_int8, to_int8_half_up, to_int32};
use crate::{AddParams, Dyadic};
use rayon::prelude::*;

use super::error::{PtqError, Result, at};
use super::float_graph::{FOp, FloatGraph};
use super::observer::Observer;
use super::{GeluMethod, PtqOptions};

/// The observer group of every tensor id (`None`: the scale is fixed, softmax outputs).
pub fn scale_groups(fg: &FloatGraph) -> (Vec<Option<usize>>, usize) {
    let mut groups = vec![Some(0)];
    let mut next = 1;
    for node in &fg.nodes {
        let g = if node.op.keeps_scale() {
            groups[node.inputs[0]]
        } else if matches!(node.op, FOp::Softmax) {
            None
        } else {
            next += 1;
            Some(next - 1)
        };
        groups.push(g);
    }
    (groups, next)
}

/// Observes every activation of the float graph over `samples`, clips spread over the cores
/// (observers count, so merging them in any order gives the same statistics).
pub fn calibrate(
    fg: &FloatGraph,
    groups: &[Option<usize>],
    n_groups: usize,
    samples: &[Vec<f32>],
) -> Result<Vec<Observer>> {
    Ok(calibrate_all(fg, groups, n_groups, samples, false)?.groups)
}

/// What [`calibrate_all`] observed.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// One observer per scale group.
    pub groups: Vec<Observer>,
    /// The probabilities of each softmax output, by tensor id (when asked for).
    pub softmax: BTreeMap<usize, Observer>,
}

impl Calibration {
    /// The shift of every softmax output of `fg`: `fixed`, or the one calibrated from its
    /// observed probabilities ([`Observer::softmax_shift`]; 0 where none were observed).
    pub fn softmax_shifts(&self, fg: &FloatGraph, fixed: Option<u32>) -> SoftmaxShifts {
        softmax_ids(fg)
            .map(|id| {
                let calibrated = || {
                    self.softmax
                        .get(&id)
                        .map_or(0, |o| o.softmax_shift(SOFTMAX_MAX_OUT_SHIFT))
                };
                (id, fixed.unwrap_or_else(calibrated))
            })
            .collect()
    }
}

/// Tensor ids of `fg`'s softmax outputs.
fn softmax_ids(fg: &FloatGraph) -> impl Iterator<Item = usize> + '_ {
    fg.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, FOp::Softmax))
        .map(|(i, _)| i + 1)
}

/// Output shift of each softmax node by tensor id; a softmax not listed has shift 0 (uint8 at
/// `2^-8`).
pub type SoftmaxShifts = BTreeMap<usize, u32>;

/// [`calibrate`], with the softmax outputs observed too when `softmax` holds.
pub fn calibrate_all(
    fg: &FloatGraph,
    groups: &[Option<usize>],
    n_groups: usize,
    samples: &[Vec<f32>],
    softmax: bool,
) -> Result<Calibration> {
    if samples.is_empty() {
        return Err(PtqError::Calibration("no calibration samples".into()));
    }
    let observed: Vec<usize> = if softmax {
        softmax_ids(fg).collect()
    } else {
        Vec::new()
    };
    let empty = || Calibration {
        groups: vec![Observer::new(); n_groups],
        softmax: observed.iter().map(|&id| (id, Observer::new())).collect(),
    };
    let observe = |chunk: &[Vec<f32>]| -> Result<Calibration> {
        let mut obs = empty();
        for s in chunk {
            let vals = fg.run(s)?;
            for (id, v) in vals.iter().enumerate() {
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(PtqError::NonFinite {
                        layer: fg.tensor_name(id).to_string(),
                    });
                }
                if let Some(g) = groups[id] {
                    obs.groups[g].observe(v);
                } else if let Some(o) = obs.softmax.get_mut(&id) {
                    o.observe(v);
                }
            }
        }
        Ok(obs)
    };
    // in clip order, so that the error reported is the first clip's
    let partial: Vec<Result<Calibration>> = samples
        .par_chunks(super::CLIPS_PER_TASK)
        .map(observe)
        .collect();
    let mut merged = empty();
    for part in partial {
        let part = part?;
        for (m, o) in merged.groups.iter_mut().zip(&part.groups) {
            m.merge(o);
        }
        for (m, o) in merged.softmax.values_mut().zip(part.softmax.values()) {
            m.merge(o);
        }
    }
    Ok(merged)
}

/// Symmetric int8 weight quantization of a `[out, in]` matrix: the scale per output row
/// (`per_channel`) or for the whole matrix is `max|w| / 127` (1 for an all-zero block), in f32
/// as QAT's forward computes it ([`crate::rounding`]).
pub fn quantize_weight(w: &[f32], in_f: usize, per_channel: bool) -> (Vec<i8>, Vec<f64>) {
    let scales: Vec<f32> = if per_channel {
        w.chunks_exact(in_f)
            .map(|r| abs_max_step(r.iter().copied()))
            .collect()
    } else {
        vec![abs_max_step(w.iter().copied())]
    };
    let q = w
        .chunks_exact(in_f)
        .enumerate()
        .flat_map(|(o, row)| {
            let s = scales[if per_channel { o } else { 0 }];
            row.iter().map(move |&v| to_int8(v, s))
        })
        .collect();
    (q, scales.into_iter().map(f64::from).collect())
}

/// Int8 codes of activation values at the power-of-two scale `2^exp`, rounded half up and
/// saturated to `[-128, 127]` as QAT's activation points (`training::fake_quant::fake_quant`)
/// and the graph's requantization round: the class token, stored at the embedding's scale.
pub fn quantize_activation(xs: &[f32], exp: i32) -> Vec<i8> {
    let s = 2f32.powi(exp);
    xs.iter().map(|&v| to_int8_half_up(v, s, -128.0)).collect()
}

/// Power-of-two weight quantization at scale `2^exp` (QAT's learned thresholds), symmetric
/// like [`quantize_weight`], rounded half up as QAT's weight points round.
pub fn quantize_weight_pow2(w: &[f32], exp: i32) -> (Vec<i8>, Vec<f64>) {
    let s = 2f32.powi(exp);
    let q = w.iter().map(|&v| to_int8_half_up(v, s, -127.0)).collect();
    (q, vec![2f64.powi(exp)])
}

/// Int32 biases at `S_x S_w(o)` (`S_x` a power of two), in f32 as QAT's forward rounds them
/// ([`crate::rounding`]), clamped so that the accumulator bound of the integer graph
/// (`terms * 2^14 + max|bias| < 2^31`) holds.
pub(super) fn quantize_bias(bias: &[f32], sx: f64, ws: &[f64], terms: usize) -> Vec<i32> {
    let limit = (i32::MAX as i64 - terms as i64 * MAX_PRODUCT).max(0) as i32;
    bias.iter()
        .enumerate()
        .map(|(o, &v)| {
            let step = ws[if ws.len() == 1 { 0 } else { o }] as f32 * sx as f32;
            to_int32(v, step, limit)
        })
        .collect()
}

/// How Linear weights get their scales.
#[derive(Debug, Clone, Copy)]
pub enum WeightScales<'a> {
    /// `max|w| / 127`, per tensor or per output row as [`PtqOptions::per_channel`] says.
    AbsMax,
    /// `2^exp` per tensor, `exp` by Linear name (learned by QAT).
    PowerOfTwo(&'a std::collections::BTreeMap<String, i32>),
}

/// Emits the integer graph. `exps[g]` is the scale exponent of observer group `g`.
pub fn lower(
    fg: &FloatGraph,
    groups: &[Option<usize>],
    exps: &[i32],
    softmax_shifts: &SoftmaxShifts,
    opts: &PtqOptions,
) -> Result<Graph> {
    lower_with(fg, groups, exps, softmax_shifts, WeightScales::AbsMax, opts)
}

/// [`lower`] with the weight scales chosen by `weights`.
pub fn lower_with(
    fg: &FloatGraph,
    groups: &[Option<usize>],
    exps: &[i32],
    softmax_shifts: &SoftmaxShifts,
    weights: WeightScales<'_>,
    opts: &PtqOptions,
) -> Result<Graph> {
    let shift_of = |id: usize| softmax_shifts.get(&id).copied().unwrap_or(0);
    let scale_of = |id: usize| -> f64 {
        match groups[id] {
            Some(g) => 2f64.powi(exps[g]),
            None => 2f64.powi(crate::ibert::SOFTMAX_OUT_EXP - shift_of(id) as i32),
        }
    };
    let mut b = GraphBuilder::new();
    b.input(&fg.input, &fg.input_shape, scale_of(0))
        .map_err(at(&fg.input))?;
    for (i, node) in fg.nodes.iter().enumerate() {
        let id = i + 1;
        let name = node.name.as_str();
        let ins: Vec<&str> = node.inputs.iter().map(|&j| fg.tensor_name(j)).collect();
        let so = scale_of(id);
        let x = ins[0];
        let sx = b.scale(x).map_err(at(name))?;
        match &node.op {
            FOp::Linear {
                in_features,
                weight,
                bias,
                ..
            } => {
                let (wq, ws) = match weights {
                    WeightScales::AbsMax => quantize_weight(weight, *in_features, opts.per_channel),
                    WeightScales::PowerOfTwo(by_name) => {
                        let exp = by_name.get(name).ok_or_else(|| {
                            PtqError::Model(format!("no weight scale for Linear `{name}`"))
                        })?;
                        quantize_weight_pow2(weight, *exp)
                    }
                };
                let bq = quantize_bias(bias, sx, &ws, *in_features);
                b.linear(name, x, wq, bq, &ws, so).map_err(at(name))?;
            }
            FOp::MatMul { transpose_b, alpha } => {
                let sb = b.scale(ins[1]).map_err(at(name))?;
                let requant = Dyadic::from_scale(*alpha as f64 * sx * sb / so).map_err(at(name))?;
                b.node(
                    name,
                    Op::MatMul {
                        transpose_b: *transpose_b,
                        requant,
                    },
                    &ins,
                    so,
                )
                .map_err(at(name))?;
            }
            FOp::Add { alpha_a, alpha_b } => {
                let sb = b.scale(ins[1]).map_err(at(name))?;
                let p = AddParams::from_scales(*alpha_a as f64 * sx, *alpha_b as f64 * sb, so)
                    .map_err(at(name))?;
                b.node(name, Op::Add(p), &ins, so).map_err(at(name))?;
            }
            FOp::Softmax => {
                b.softmax_at(name, x, shift_of(id)).map_err(at(name))?;
            }
            FOp::LayerNorm { gamma, beta, eps } => {
                if opts.scaled_layer_norm {
                    b.scaled_layer_norm(name, x, gamma, beta, *eps, so)
                } else {
                    b.layer_norm(name, x, gamma, beta, *eps, so)
                }
                .map_err(at(name))?;
            }
            FOp::Gelu => {
                match opts.gelu {
                    GeluMethod::Exact => b.gelu_table(name, x, so),
                    GeluMethod::IBert => b.gelu(name, x, so),
                }
                .map_err(at(name))?;
            }
            FOp::ConcatToken { token } => {
                let exp = pow2_exponent_of(sx).ok_or_else(|| {
                    PtqError::Model(format!(
                        "`{name}`: the token scale {sx} is not a power of two"
                    ))
                })?;
                let token = quantize_activation(token, exp);
                b.same_scale(name, x, Op::ConcatClassToken { token })
                    .map_err(at(name))?;
            }
            FOp::AddEmbedding { embedding } => {
                let es = abs_max_step(embedding.iter().copied());
                let eq = embedding.iter().map(|&v| to_int8(v, es)).collect();
                b.add_embedding(name, x, eq, es as f64, so)
                    .map_err(at(name))?;
            }
            FOp::Reshape { shape } => {
                b.same_scale(
                    name,
                    x,
                    Op::Reshape {
                        shape: shape.clone(),
                    },
                )
                .map_err(at(name))?;
            }
            FOp::Transpose { perm } => {
                b.same_scale(name, x, Op::Transpose { perm: perm.clone() })
                    .map_err(at(name))?;
            }
            FOp::SelectToken { index } => {
                b.same_scale(name, x, Op::SelectToken { index: *index })
                    .map_err(at(name))?;
            }
            // Image ops (TinyFormer): lowered in `image_ops`.
            op @ (FOp::Conv2d { .. }
            | FOp::DepthwiseConv2d { .. }
            | FOp::MaxPool2d(_)
            | FOp::AvgPool2d(_)
            | FOp::Relu) => super::image_ops::lower(&mut b, name, x, op, so, opts)?,
        }
    }
    b.output(fg.tensor_name(fg.output));
    let mut graph = b.finish()?;
    graph.input_standardization = Some(fg.standardization.clone());
    graph.validate()?;
    Ok(graph)
}
