//! Per-layer quantization report: every tensor's scale, its calibration range, how often the
//! float values clip at that scale, and the error of the integer interpreter's output
//! (dequantized) against the float model's value of the same tensor. Errors accumulate along
//! the graph: a layer's figure includes everything upstream of it.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::graph::Graph;
use crate::interpreter::Interpreter;

use super::error::Result;
use super::float_graph::FloatGraph;
use super::observer::{Estimator, Observer};

/// One tensor of the integer graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Tensor (= node) name.
    pub name: String,
    /// Op kind (`Input` for the graph input).
    pub op: String,
    /// Per-sample shape.
    pub shape: Vec<usize>,
    /// Real scale of the int8 tensor.
    pub scale: f64,
    /// `k` when the scale is exactly `2^k`.
    pub scale_exp: Option<i32>,
    /// Largest `|x|` seen during calibration by this tensor's observer (its scale group).
    pub calib_abs_max: f64,
    /// Fraction of the report samples' float values outside `[-128 S, 127 S]` (after rounding).
    pub clip_rate: f64,
    /// `10 log10(sum f^2 / sum (f - q S)^2)` over the report samples
    /// ([`MAX_SNR_DB`] when exact).
    pub snr_db: f64,
    /// Largest `|f - q S|`.
    pub max_abs_err: f64,
}

/// The report of one quantization run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PtqReport {
    /// Estimator used for activation scales.
    pub estimator: Estimator,
    /// Per-channel weight scales.
    pub per_channel: bool,
    /// Calibration samples observed.
    pub calibration_samples: usize,
    /// Samples the per-layer errors were measured on (the first calibration samples).
    pub report_samples: usize,
    /// One entry per tensor, input first, in execution order.
    pub layers: Vec<LayerReport>,
    /// SNR of the output logits.
    pub logits_snr_db: f64,
    /// Fraction of report samples whose integer arg-max equals the float arg-max.
    pub argmax_agreement: f64,
}

/// Index of the largest value (the first one on ties).
pub fn argmax<T: PartialOrd + Copy>(xs: &[T]) -> usize {
    let mut best = 0;
    for (i, &v) in xs.iter().enumerate() {
        if v > xs[best] {
            best = i;
        }
    }
    best
}

/// SNR reported for an exact tensor (keeps the report JSON-friendly).
pub const MAX_SNR_DB: f64 = 200.0;

#[derive(Default, Clone)]
struct Acc {
    sig: f64,
    noise: f64,
    max_err: f64,
    clipped: u64,
    n: u64,
}

impl Acc {
    fn merge(&mut self, other: &Acc) {
        self.sig += other.sig;
        self.noise += other.noise;
        self.max_err = self.max_err.max(other.max_err);
        self.clipped += other.clipped;
        self.n += other.n;
    }
}

pub(crate) fn snr(sig: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        MAX_SNR_DB
    } else {
        (10.0 * (sig / noise).log10()).min(MAX_SNR_DB)
    }
}

/// Measures the integer graph against the float graph on `samples`.
#[allow(clippy::too_many_arguments)]
pub fn build(
    fg: &FloatGraph,
    graph: &Graph,
    groups: &[Option<usize>],
    observers: &[Observer],
    samples: &[Vec<f32>],
    calibration_samples: usize,
    estimator: Estimator,
    per_channel: bool,
) -> Result<PtqReport> {
    let n_t = fg.nodes.len() + 1;
    let infos: Vec<&crate::graph::TensorInfo> = (0..n_t)
        .map(|id| {
            graph
                .tensor(fg.tensor_name(id))
                .expect("every float tensor is in the integer graph")
        })
        .collect();
    let scales: Vec<f64> = infos.iter().map(|t| t.scale.to_f64()).collect();
    // Fixed chunks, merged in order: the sums do not depend on how many cores ran them.
    let measure = |chunk: &[Vec<f32>]| -> Result<(Vec<Acc>, usize)> {
        let mut interp = Interpreter::new(graph.clone())?;
        let mut accs = vec![Acc::default(); n_t];
        let mut agree = 0usize;
        for s in chunk {
            let vals = fg.run(s)?;
            let q = graph.quantize_input(s)?;
            interp.execute(&[&q])?;
            for (id, f) in vals.iter().enumerate() {
                let qs = interp
                    .tensor(fg.tensor_name(id))
                    .expect("every float tensor is in the integer graph");
                let (sc, t) = (scales[id], infos[id]);
                // the stored int8 range, shifted by the zero point (softmax: probabilities 0..=255)
                let (lo, hi) = ((-128 - t.zero_point) as f64, (127 - t.zero_point) as f64);
                let a = &mut accs[id];
                for (&fv, &qv) in f.iter().zip(qs) {
                    let fv = fv as f64;
                    let e = fv - t.dequantize(qv);
                    a.sig += fv * fv;
                    a.noise += e * e;
                    a.max_err = a.max_err.max(e.abs());
                    let r = (fv / sc).round();
                    a.clipped += u64::from(!(lo..=hi).contains(&r));
                    a.n += 1;
                }
            }
            let fl = &vals[fg.output];
            let il = interp
                .tensor(fg.tensor_name(fg.output))
                .expect("output is in the graph");
            agree += usize::from(argmax(fl) == argmax(il));
        }
        Ok((accs, agree))
    };
    let parts: Vec<Result<(Vec<Acc>, usize)>> = samples
        .par_chunks(super::CLIPS_PER_TASK)
        .map(measure)
        .collect();
    let mut accs = vec![Acc::default(); n_t];
    let mut agree = 0usize;
    for part in parts {
        let (part, a) = part?;
        agree += a;
        for (m, p) in accs.iter_mut().zip(&part) {
            m.merge(p);
        }
    }
    let layers = (0..n_t)
        .map(|id| {
            let name = fg.tensor_name(id).to_string();
            let t = graph.tensor(&name).expect("declared");
            let op = if id == 0 {
                "Input".to_string()
            } else {
                graph
                    .nodes
                    .iter()
                    .find(|n| n.name == name)
                    .map(|n| n.op.kind().to_string())
                    .unwrap_or_default()
            };
            let a = &accs[id];
            LayerReport {
                name,
                op,
                shape: t.shape.clone(),
                scale: scales[id],
                scale_exp: t.scale.pow2_exponent(),
                calib_abs_max: groups[id].map_or(1.0, |g| observers[g].abs_max()),
                clip_rate: if a.n == 0 {
                    0.0
                } else {
                    a.clipped as f64 / a.n as f64
                },
                snr_db: snr(a.sig, a.noise),
                max_abs_err: a.max_err,
            }
        })
        .collect();
    let out = &accs[fg.output];
    Ok(PtqReport {
        estimator,
        per_channel,
        calibration_samples,
        report_samples: samples.len(),
        layers,
        logits_snr_db: snr(out.sig, out.noise),
        argmax_agreement: if samples.is_empty() {
            0.0
        } else {
            agree as f64 / samples.len() as f64
        },
    })
}

impl PtqReport {
    /// A plain-text table, one line per tensor.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "estimator {}, weights {}, {} calibration / {} report samples: logits SNR {:.1} dB, \
             arg-max agreement {:.1}%\n",
            self.estimator,
            if self.per_channel {
                "per-channel"
            } else {
                "per-tensor"
            },
            self.calibration_samples,
            self.report_samples,
            self.logits_snr_db,
            100.0 * self.argmax_agreement
        );
        out += &format!(
            "{:<24} {:<16} {:<14} {:>7} {:>10} {:>8} {:>8} {:>9}\n",
            "tensor", "op", "shape", "scale", "calib|x|", "clip%", "SNR dB", "max|err|"
        );
        for l in &self.layers {
            let scale = match l.scale_exp {
                Some(k) => format!("2^{k}"),
                None => format!("{:.2e}", l.scale),
            };
            out += &format!(
                "{:<24} {:<16} {:<14} {:>7} {:>10.4} {:>8.4} {:>8.1} {:>9.4}\n",
                l.name,
                l.op,
                format!("{:?}", l.shape),
                scale,
                l.calib_abs_max,
                100.0 * l.clip_rate,
                l.snr_db,
                l.max_abs_err
            );
        }
        out
    }

    /// The layer with the lowest SNR (the input excluded).
    pub fn worst_layer(&self) -> Option<&LayerReport> {
        self.layers
            .iter()
            .skip(1)
            .min_by(|a, b| a.snr_db.total_cmp(&b.snr_db))
    }
}
