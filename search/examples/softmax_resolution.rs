//! Where a model's int8 accuracy loss comes from: its float graph, scored on its test split with
//! only some tensors rounded. First of all the softmax outputs, whose resolution the integer
//! kernels fix per node (uint8 codes at `2^-(8 + o)`).
//!
//! A KWT checkpoint (its `model.ron` beside it) with the Speech Commands folder it was trained on
//! (replacing the one in its `data.ron`): rounded at 2^-7 in int8 (0..127, what the integer
//! kernels emitted up to graph format 1), at 2^-8 in uint8 (graph formats 2 and 3), and not at
//! all.
//! `cargo run --release -p search --example softmax_resolution -- runs/kwt1_espeak150/best.bpk
//! data/espeak35x150`
//!
//! A searched TinyFormer path (its `arch.ron` beside it) with the config it was searched with
//! (its data and subsets): also each stage alone and finer steps. Key-word TinyFormers attend
//! over 960 tokens in their first stage, where most probabilities are below 1/256. With a
//! `model.int8` beside the checkpoint (a search's `best/`), also every activation at that
//! graph's scales (its softmax steps included, or every softmax at 2^-8, or none rounded) and
//! the weights alone rounded as PTQ rounds them: what the rest of the integer graph costs.
//! `cargo run --release -p search --example softmax_resolution -- RUN/best/model.bpk
//! configs/speech_search.ron`

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use quant::Graph;
use quant::ptq::float_graph::{FNode, FOp, FloatGraph};
use quant::ptq::report::argmax;

/// Which tensors of the float graph a row rounds.
enum Rounding {
    /// Nothing.
    Float,
    /// The softmax nodes whose name starts with `prefix`, at `round(p 2^step_exp)` clamped to
    /// `max` codes.
    Softmax {
        prefix: &'static str,
        step_exp: i32,
        max: f32,
    },
    /// Every activation at the integer graph's scale and zero point (int8 codes, half up), the
    /// softmax outputs as `softmax` says.
    Activations { softmax: SoftmaxCodes },
    /// The weights alone, per output channel at `max|w| / 127` as PTQ stores them.
    Weights,
}

/// How [`Rounding::Activations`] rounds the softmax outputs.
#[derive(Clone, Copy)]
enum SoftmaxCodes {
    /// At the integer graph's steps.
    GraphSteps,
    /// uint8 at `2^-e`.
    Step(i32),
    /// Not at all.
    Float,
}

/// A float graph, its test inputs (as the graph reads them) and labels, what to try, and the
/// integer graph whose scales the activation rows use.
type Experiment = (
    FloatGraph,
    Vec<Vec<f32>>,
    Vec<usize>,
    Vec<(&'static str, Rounding)>,
    Option<Graph>,
);

fn softmax(prefix: &'static str, step_exp: i32, max: f32) -> Rounding {
    Rounding::Softmax {
        prefix,
        step_exp,
        max,
    }
}

fn kwt(checkpoint: &Path, data: &Path) -> Result<Experiment> {
    let (model, config) = training::load_checkpoint(checkpoint, &Device::flex())?;
    let spec = training::DataSpec::beside(checkpoint)?
        .with_context(|| format!("no data.ron beside {}", checkpoint.display()))?
        .with_folder(data.to_path_buf());
    let splits = spec.load(false)?;
    let test = splits.test.as_ref();
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    for i in 0..test.len() {
        let (x, label) = test.sample(i, None)?;
        inputs.push(x);
        labels.push(label);
    }
    let roundings = vec![
        ("float softmax", Rounding::Float),
        ("int8 at 2^-7 (0..127)", softmax("", 7, 127.0)),
        ("uint8 at 2^-8 (0..255)", softmax("", 8, 255.0)),
    ];
    let fg = FloatGraph::from_kwt(&model, &config)?;
    Ok((fg, inputs, labels, roundings, None))
}

fn tinyformer(checkpoint: &Path, config: &Path) -> Result<Experiment> {
    let (model, arch) = training::tinyformer::load_tinyformer(checkpoint, &Device::flex())?;
    let data = search::data_source::DataSource::from_config(config)?.load(arch.stages.len())?;
    let test = data.test;
    let per: usize = test.shape.iter().product();
    let inputs = test
        .values
        .chunks_exact(per)
        .map(|im| quant::ptq::chw_to_hwc(im, test.shape))
        .collect::<quant::ptq::Result<Vec<_>>>()?;
    let mut roundings = vec![
        ("float", Rounding::Float),
        (
            "softmax only: uint8 at 2^-8 (0..255), all stages",
            softmax("", 8, 255.0),
        ),
        (
            "softmax only: uint8 at 2^-8, first stage",
            softmax("s0.", 8, 255.0),
        ),
        (
            "softmax only: uint8 at 2^-8, second stage",
            softmax("s1.", 8, 255.0),
        ),
        (
            "softmax only: uint8 at 2^-10 (at most 0.249)",
            softmax("", 10, 255.0),
        ),
        ("softmax only: uint16 at 2^-16", softmax("", 16, 65_535.0)),
    ];
    let int8 = checkpoint.with_file_name("model.int8");
    let graph = if int8.is_file() {
        roundings.extend([
            (
                "weights only (per channel, max|w| / 127)",
                Rounding::Weights,
            ),
            (
                "every activation at model.int8's scales and softmax steps",
                Rounding::Activations {
                    softmax: SoftmaxCodes::GraphSteps,
                },
            ),
            (
                "every activation at model.int8's scales, softmax at 2^-8",
                Rounding::Activations {
                    softmax: SoftmaxCodes::Step(8),
                },
            ),
            (
                "every activation at model.int8's scales but the softmax",
                Rounding::Activations {
                    softmax: SoftmaxCodes::Float,
                },
            ),
        ]);
        Some(quant::load(&int8).with_context(|| int8.display().to_string())?)
    } else {
        None
    };
    let fg = FloatGraph::from_tinyformer(&model, &arch)?;
    Ok((fg, inputs, test.labels, roundings, graph))
}

/// `w` (`rows` output channels, each contiguous, or every `rows`-th value for a depthwise
/// `[kh, kw, c]` kernel) rounded per channel at `max|w| / 127`.
fn round_per_channel(w: &mut [f32], rows: usize, interleaved: bool) {
    let n = w.len() / rows;
    for r in 0..rows {
        let idx: Vec<usize> = if interleaved {
            (0..n).map(|k| k * rows + r).collect()
        } else {
            (r * n..(r + 1) * n).collect()
        };
        let m = idx.iter().fold(0f32, |m, &i| m.max(w[i].abs()));
        if m > 0.0 {
            let s = m / 127.0;
            for i in idx {
                w[i] = (w[i] / s).round() * s;
            }
        }
    }
}

fn weights_rounded(fg: &FloatGraph) -> FloatGraph {
    let mut fg = fg.clone();
    for n in &mut fg.nodes {
        match &mut n.op {
            FOp::Linear {
                out_features,
                weight,
                ..
            } => round_per_channel(weight, *out_features, false),
            FOp::Conv2d { out_c, weight, .. } => round_per_channel(weight, *out_c, false),
            FOp::DepthwiseConv2d {
                channels, weight, ..
            } => round_per_channel(weight, *channels, true),
            _ => {}
        }
    }
    fg
}

/// The step, zero point and largest code `r` rounds `node`'s output to, or `None`: untouched.
fn codes(r: &Rounding, graph: Option<&Graph>, node: &FNode) -> Option<(f32, f32, f32)> {
    // the integer graph's own scale and zero point for this tensor
    let graph_step = || {
        let t = graph?.tensor(&node.name)?;
        Some((t.scale.to_f64() as f32, t.zero_point as f32, 127.0))
    };
    match (r, matches!(node.op, FOp::Softmax)) {
        (
            Rounding::Softmax {
                prefix,
                step_exp,
                max,
            },
            true,
        ) if node.name.starts_with(prefix) => Some((2f32.powi(-step_exp), 0.0, *max)),
        (Rounding::Activations { softmax }, true) => match softmax {
            SoftmaxCodes::Step(e) => Some((2f32.powi(-e), -128.0, 127.0)),
            SoftmaxCodes::GraphSteps => graph_step(),
            SoftmaxCodes::Float => None,
        },
        (Rounding::Activations { .. }, false) => graph_step(),
        _ => None,
    }
}

/// Rounds `y`, the output of `node`, as `r` says.
fn round(r: &Rounding, graph: Option<&Graph>, node: &FNode, y: &mut [f32]) {
    let Some((step, zero_point, max)) = codes(r, graph, node) else {
        return;
    };
    if matches!(r, Rounding::Softmax { .. }) {
        for p in y.iter_mut() {
            *p = (*p / step).round().min(max) * step;
        }
        return;
    }
    for v in y.iter_mut() {
        let q = (*v / step + 0.5).floor() + zero_point;
        *v = (q.clamp(-128.0, max) - zero_point) * step;
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checkpoint, data] = args.as_slice() else {
        bail!(
            "usage: softmax_resolution CHECKPOINT (DATA_FOLDER for a KWT | CONFIG for a TinyFormer)"
        );
    };
    let (checkpoint, data) = (PathBuf::from(checkpoint), PathBuf::from(data));
    let (fg, inputs, labels, roundings, graph) = if checkpoint.with_file_name("model.ron").is_file()
    {
        kwt(&checkpoint, &data)?
    } else {
        tinyformer(&checkpoint, &data)?
    };
    let with_weights = weights_rounded(&fg);
    println!("| rounded | test accuracy ({} inputs) |", inputs.len());
    println!("| --- | --- |");
    for (name, r) in roundings {
        let g = if matches!(r, Rounding::Weights) {
            &with_weights
        } else {
            &fg
        };
        let mut correct = 0;
        for (x, &label) in inputs.iter().zip(&labels) {
            let vals = g.run_with(x, |node, y| round(&r, graph.as_ref(), node, y))?;
            correct += usize::from(argmax(&vals[g.output]) == label);
        }
        println!(
            "| {name} | {:.2} % ({correct}) |",
            100.0 * correct as f64 / inputs.len() as f64
        );
    }
    Ok(())
}
