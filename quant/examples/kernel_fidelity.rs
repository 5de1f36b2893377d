//! Where an integer graph's kernels differ from the ops they stand for: every node of the
//! graph is recomputed in float from the interpreter's own (dequantized) inputs, rounded at the
//! node's output scale, and compared code by code with what the integer kernel wrote. Linear
//! layers differ by their weight rounding (float weights here), softmax, GELU, LayerNorm and the
//! embedding addition by their integer approximations and stored constants: what QAT's forward
//! must model to train against the graph it is lowered to (see `training::qat`; the rows "as
//! QAT computes it" are its forward's LayerNorm and softmax). Prints, per op kind, the share of
//! output codes that differ and their mean |diff|.
//!
//! `cargo run --release -p quant --example kernel_fidelity -- CHECKPOINT GRAPH DATA [N]`
//! (CHECKPOINT: the model the graph was lowered from, e.g. a QAT run's `best.bpk`; DATA: its
//! Speech Commands folder, 12-label task unless a `data.ron` beside CHECKPOINT says otherwise;
//! N: test clips for the per-op table, default 32; the accuracies use the whole test split).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use quant::Interpreter;
use quant::ptq::float_graph::{FOp, FloatGraph};
use quant::ptq::report::argmax;
use training::{Kwt, KwtConfig};

#[derive(Default)]
struct Tally {
    codes: u64,
    differ: u64,
    abs_diff: u64,
    max_diff: i32,
}

fn kind(op: &FOp) -> &'static str {
    match op {
        FOp::Linear { .. } => "Linear (float weights)",
        FOp::MatMul { .. } => "MatMul",
        FOp::Add { .. } => "Add",
        FOp::Softmax => "Softmax",
        FOp::LayerNorm { .. } => "LayerNorm",
        FOp::Gelu => "Gelu",
        FOp::AddEmbedding { .. } => "AddEmbedding",
        _ => "layout",
    }
}

/// `f` rounded half up at `scale` (as the integer requantization rounds), clamped to int8.
fn code(f: f32, scale: f64, zero_point: i32) -> i64 {
    ((f as f64 / scale + 0.5).floor() as i64 + zero_point as i64).clamp(-128, 127)
}

/// `training::qat::int_layer_norm` of rows of `x` (on the grid of `2^exp`), then
/// `int_layer_norm_affine` with `gamma` and `beta`: QAT's forward of an I-BERT LayerNorm.
fn qat_layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], exp: i32) -> Vec<f32> {
    let device = Device::flex();
    let d = gamma.len();
    let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [x.len() / d, d]), &device);
    let vector = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [d]), &device);
    let n = training::qat::int_layer_norm(t, exp);
    let kernel = training::qat::NormKernel::IBert;
    training::qat::int_layer_norm_affine(n, vector(gamma), Some(vector(beta)), kernel)
        .into_data()
        .iter::<f32>()
        .collect()
}

/// A Linear of per-channel int8-rounded weights whose bias is rounded as the integer graph
/// stores it: int32 at the accumulator's scale `S_x S_w` of each output channel.
fn linear_int32_bias(x: &[f32], weight: &[f32], bias: &[f32], d_in: usize, sx: f64) -> Vec<f32> {
    x.chunks_exact(d_in)
        .flat_map(|row| {
            weight.chunks_exact(d_in).zip(bias).map(move |(w, &b)| {
                let sw = w.iter().fold(0f64, |m, &v| m.max((v as f64).abs())) / 127.0;
                let step = sx * sw;
                let b = if step > 0.0 {
                    (b as f64 / step).round() * step
                } else {
                    b as f64
                };
                let acc: f64 = row.iter().zip(w).map(|(&a, &c)| a as f64 * c as f64).sum();
                (acc + b) as f32
            })
        })
        .collect()
}

/// `training::int_softmax::int_softmax` of rows of `len` values of `x` (on the grid of
/// `2^exp`): QAT's forward of a softmax.
fn qat_softmax(x: &[f32], len: usize, exp: i32) -> Result<Vec<f32>> {
    let device = Device::flex();
    let t = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [x.len() / len, len]), &device);
    let p = training::int_softmax::int_softmax(t, exp)
        .context("no integer softmax constants for this row length and scale")?;
    Ok(p.into_data().iter::<f32>().collect())
}

/// The float model of a plain checkpoint or of a QAT run's (quantizers attached at thresholds
/// calibrated on a few `data` samples, then replaced by the file's, then dropped).
fn load_model(checkpoint: &Path, data: &dyn training::SampleSource) -> Result<(Kwt, KwtConfig)> {
    let device = Device::flex();
    let plain = match training::load_checkpoint(checkpoint, &device) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let config: KwtConfig =
        training::checkpoint::read_ron(&training::checkpoint::model_config_path(checkpoint))?;
    let template = config.init(0, &device)?;
    let samples = (0..8.min(data.len()))
        .map(|i| Ok(data.sample(i, None)?.0))
        .collect::<Result<Vec<_>>>()?;
    let opts = quant::ptq::PtqOptions::default();
    let t = quant::qat::initial_thresholds(&template, &config, &samples, &opts)?;
    let template = quant::qat::attach(template, &config, &t, 1.0, opts.quant_format())?;
    let model = template
        .try_load_file(checkpoint)
        .map_err(|e| anyhow::anyhow!("{plain}; as a QAT checkpoint: {e}"))?;
    Ok((quant::qat::float_model(&model), config))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (checkpoint, graph, data, n) = match args.as_slice() {
        [c, g, d] => (c, g, d, 32),
        [c, g, d, n] => (c, g, d, n.parse().context("N")?),
        _ => bail!("usage: kernel_fidelity CHECKPOINT GRAPH DATA [N]"),
    };
    let checkpoint = PathBuf::from(checkpoint);
    let graph = quant::format::load(graph)?;
    // a QAT run folder has no data.ron: the 12-label Speech Commands task then
    let spec = training::DataSpec::beside(&checkpoint)?
        .unwrap_or_else(|| {
            training::DataSpec::speech_commands(PathBuf::new(), datasets::Task::Labels12)
        })
        .with_folder(PathBuf::from(data));
    let splits = spec.load(false)?;
    let test = splits.test.as_ref();
    let (model, config) = load_model(&checkpoint, test)?;
    let fg = FloatGraph::from_kwt(&model, &config)?;
    let infos: Vec<_> = (0..=fg.nodes.len())
        .map(|id| {
            graph
                .tensor(fg.tensor_name(id))
                .with_context(|| format!("{} not in the graph", fg.tensor_name(id)))
        })
        .collect::<Result<_>>()?;
    // LayerNorm gains and the position embedding rounded to int8 at max|v| / 127, as the
    // integer graph stores them
    let mut fg_int8 = fg.clone();
    for n in &mut fg_int8.nodes {
        // Linear weights per output channel at max|w| / 127, as PTQ and per-channel QAT do
        if let FOp::Linear {
            weight,
            in_features,
            ..
        } = &mut n.op
        {
            for row in weight.chunks_mut(*in_features) {
                let s = row.iter().fold(0f32, |m, &x| m.max(x.abs())) / 127.0;
                if s > 0.0 {
                    row.iter_mut().for_each(|x| *x = (*x / s).round() * s);
                }
            }
            continue;
        }
        let v = match &mut n.op {
            FOp::LayerNorm { gamma, .. } => gamma,
            FOp::AddEmbedding { embedding } => embedding,
            _ => continue,
        };
        let s = v.iter().fold(0f32, |m, &x| m.max(x.abs())) / 127.0;
        if s > 0.0 {
            v.iter_mut().for_each(|x| *x = (*x / s).round() * s);
        }
    }
    let tallies = op_table(&fg, &fg_int8, &graph, &infos, test, n)?;
    let (correct, snr, m) = accuracies(&fg, &graph, &infos, test)?;
    for (i, (name, c)) in [
        "float graph",
        "every tensor rounded, exact GELU",
        "every tensor rounded, the graph's GELU table",
        "integer graph",
    ]
    .iter()
    .zip(correct)
    .enumerate()
    {
        let vs = snr
            .get(i)
            .map(|db| format!("; logits {db:.1} dB from the integer graph's"))
            .unwrap_or_default();
        println!("{name}: {:.2} % ({c}/{m}){vs}", 100.0 * c as f64 / m as f64);
    }
    println!("| op | codes | differ | mean abs diff (codes) | max diff |");
    println!("| --- | --- | --- | --- | --- |");
    for (k, t) in &tallies {
        println!(
            "| {k} | {} | {:.3} % | {:.4} | {} |",
            t.codes,
            100.0 * t.differ as f64 / t.codes as f64,
            t.abs_diff as f64 / t.codes as f64,
            t.max_diff
        );
    }
    Ok(())
}

/// Per op kind, how the integer kernels' output codes differ from the op recomputed in float on
/// the kernels' own inputs, over the first `n` clips of `test`.
fn op_table(
    fg: &FloatGraph,
    fg_int8: &FloatGraph,
    graph: &quant::Graph,
    infos: &[&quant::TensorInfo],
    test: &dyn training::SampleSource,
    n: usize,
) -> Result<BTreeMap<&'static str, Tally>> {
    let mut interp = Interpreter::new(graph.clone())?;
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    for i in 0..n.min(test.len()) {
        let (x, _) = test.sample(i, None)?;
        interp.execute(&[&graph.quantize_input(&x)?])?;
        let codes: Vec<&[i8]> = (0..=fg.nodes.len())
            .map(|id| interp.tensor(fg.tensor_name(id)).expect("checked above"))
            .collect();
        let vals: Vec<Vec<f32>> = codes
            .iter()
            .zip(infos)
            .map(|(q, t)| q.iter().map(|&v| t.dequantize(v) as f32).collect())
            .collect();
        for (idx, node) in fg.nodes.iter().enumerate() {
            let t = infos[idx + 1];
            let sc = t.scale.to_f64();
            let mut versions = vec![(kind(&node.op), fg.eval_node(idx, &vals))];
            match &fg_int8.nodes[idx].op {
                FOp::LayerNorm { gamma, beta, .. } => {
                    versions.push(("LayerNorm (int8 gamma)", fg_int8.eval_node(idx, &vals)));
                    let input = node.inputs[0];
                    let exp = infos[input]
                        .scale
                        .pow2_exponent()
                        .context("a LayerNorm input scale that is not a power of two")?;
                    versions.push((
                        "LayerNorm (as QAT computes it)",
                        qat_layer_norm(&vals[input], gamma, beta, exp),
                    ));
                }
                FOp::Linear {
                    in_features,
                    weight,
                    bias,
                    ..
                } => {
                    versions.push((
                        "Linear (int8 weights per channel)",
                        fg_int8.eval_node(idx, &vals),
                    ));
                    let sx = infos[node.inputs[0]].scale.to_f64();
                    versions.push((
                        "Linear (int8 weights, int32 bias)",
                        linear_int32_bias(&vals[node.inputs[0]], weight, bias, *in_features, sx),
                    ));
                }
                FOp::AddEmbedding { .. } => versions.push((
                    "AddEmbedding (int8 embedding)",
                    fg_int8.eval_node(idx, &vals),
                )),
                FOp::Softmax => {
                    let input = node.inputs[0];
                    let exp = infos[input]
                        .scale
                        .pow2_exponent()
                        .context("a softmax input scale that is not a power of two")?;
                    let len = *infos[input]
                        .shape
                        .last()
                        .context("a scalar softmax input")?;
                    versions.push((
                        "Softmax (as QAT computes it)",
                        qat_softmax(&vals[input], len, exp)?,
                    ));
                }
                _ => {}
            }
            for (k, y) in versions {
                let tally = tallies.entry(k).or_default();
                for (&f, &q) in y.iter().zip(codes[idx + 1]) {
                    let sim = code(f, sc, t.zero_point);
                    let d = (sim - q as i64).unsigned_abs();
                    tally.codes += 1;
                    tally.differ += u64::from(d != 0);
                    tally.abs_diff += d;
                    tally.max_diff = tally.max_diff.max(d as i32);
                }
            }
        }
    }
    Ok(tallies)
}

/// Correct test clips of: the float graph; the float graph with every node output rounded at its
/// integer tensor's scale (what fake quantization models, weights aside) with GELU computed
/// exactly, or by the graph's table (i-GELU or exact) on the rounded input code; and the
/// integer graph; the SNR of the first three's logits against the integer graph's. Returns them and
/// the number of clips.
fn accuracies(
    fg: &FloatGraph,
    graph: &quant::Graph,
    infos: &[&quant::TensorInfo],
    test: &dyn training::SampleSource,
) -> Result<([usize; 4], [f64; 3], usize)> {
    let mut interp = Interpreter::new(graph.clone())?;
    let gelus: BTreeMap<&str, Box<[i8; 256]>> = graph
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.as_str(), n.op.gelu_lut()?)))
        .collect();
    let m = test.len();
    let mut correct = [0usize; 4];
    // signal and noise of each variant's logits against the integer graph's
    let mut energy = [(0f64, 0f64); 3];
    let out_info = infos[fg.output];
    for i in 0..m {
        let (x, label) = test.sample(i, None)?;
        let out = interp.run_single(&graph.quantize_input(&x)?)?;
        correct[3] += usize::from(argmax(&out) == label);
        let int_logits: Vec<f64> = out.iter().map(|&q| out_info.dequantize(q)).collect();
        let mut compare = |slot: usize, logits: &[f32]| {
            for (&f, &q) in logits.iter().zip(&int_logits) {
                energy[slot].0 += q * q;
                energy[slot].1 += (f as f64 - q).powi(2);
            }
        };
        let float = fg.run(&x)?;
        correct[0] += usize::from(argmax(&float[fg.output]) == label);
        compare(0, &float[fg.output]);
        for (slot, igelu) in [(1, false), (2, true)] {
            let mut vals = vec![
                float[0]
                    .iter()
                    .map(|&v| {
                        (code(v, infos[0].scale.to_f64(), 0) as f64 * infos[0].scale.to_f64())
                            as f32
                    })
                    .collect::<Vec<f32>>(),
            ];
            for (idx, node) in fg.nodes.iter().enumerate() {
                let t = infos[idx + 1];
                let sc = t.scale.to_f64();
                let deq = |c: i64| ((c - t.zero_point as i64) as f64 * sc) as f32;
                let y = match gelus.get(node.name.as_str()) {
                    Some(g) if igelu => {
                        let ti = infos[node.inputs[0]];
                        vals[node.inputs[0]]
                            .iter()
                            .map(|&u| deq(g[(code(u, ti.scale.to_f64(), 0) + 128) as usize] as i64))
                            .collect()
                    }
                    _ => fg
                        .eval_node(idx, &vals)
                        .into_iter()
                        .map(|v| deq(code(v, sc, t.zero_point)))
                        .collect(),
                };
                vals.push(y);
            }
            correct[slot] += usize::from(argmax(&vals[fg.output]) == label);
            compare(slot, &vals[fg.output]);
        }
    }
    let snr = energy.map(|(sig, noise)| 10.0 * (sig / noise.max(f64::MIN_POSITIVE)).log10());
    Ok((correct, snr, m))
}
