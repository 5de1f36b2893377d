//! How much of a model's int8 accuracy loss its softmax output resolution alone explains: the
//! float graph of a checkpoint, scored on its test split with only its softmax probabilities
//! rounded (all of them, or one stage's), at the integer kernels' uint8 codes at 2^-8 and at
//! other steps.
//!
//! A KWT checkpoint (its `model.ron` beside it) with the Speech Commands folder it was trained on
//! (replacing the one in its `data.ron`): rounded at 2^-7 in int8 (0..127, what the integer
//! kernels emitted up to graph format 1), at 2^-8 in uint8 (what they emit since format 2), and
//! not at all.
//! `cargo run --release -p search --example softmax_resolution -- runs/kwt1_espeak150/best.bpk
//! data/espeak35x150`
//!
//! A searched TinyFormer path (its `arch.ron` beside it) with the config it was searched with
//! (its data and subsets): also each stage alone and finer steps. Key-word TinyFormers attend
//! over 960 tokens in their first stage, where most probabilities are below 1/256.
//! `cargo run --release -p search --example softmax_resolution -- RUN/best/model.bpk
//! configs/speech_search.ron`

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use quant::ptq::float_graph::{FOp, FloatGraph};
use quant::ptq::report::argmax;

/// Probabilities of the softmax nodes whose name starts with `prefix` rounded to
/// `round(p 2^step_exp)` clamped to `max` codes, or untouched.
struct Rounding {
    name: &'static str,
    prefix: &'static str,
    step_exp: Option<i32>,
    max: f32,
}

const FLOAT: Rounding = Rounding {
    name: "float softmax",
    prefix: "",
    step_exp: None,
    max: 1.0,
};

fn at(name: &'static str, prefix: &'static str, step_exp: i32, max: f32) -> Rounding {
    Rounding {
        name,
        prefix,
        step_exp: Some(step_exp),
        max,
    }
}

/// A float graph, its test inputs (as the graph reads them) and labels, and what to try.
type Experiment = (FloatGraph, Vec<Vec<f32>>, Vec<usize>, Vec<Rounding>);

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
        FLOAT,
        at("int8 at 2^-7 (0..127)", "", 7, 127.0),
        at("uint8 at 2^-8 (0..255)", "", 8, 255.0),
    ];
    Ok((
        FloatGraph::from_kwt(&model, &config)?,
        inputs,
        labels,
        roundings,
    ))
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
    let roundings = vec![
        FLOAT,
        at("uint8 at 2^-8 (0..255), all stages", "", 8, 255.0),
        at("uint8 at 2^-8, first stage only", "s0.", 8, 255.0),
        at("uint8 at 2^-8, second stage only", "s1.", 8, 255.0),
        at("uint8 at 2^-10 (0..255: at most 0.249)", "", 10, 255.0),
        at("uint16 at 2^-16 (0..65535)", "", 16, 65_535.0),
    ];
    let fg = FloatGraph::from_tinyformer(&model, &arch)?;
    Ok((fg, inputs, test.labels, roundings))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checkpoint, data] = args.as_slice() else {
        bail!(
            "usage: softmax_resolution CHECKPOINT (DATA_FOLDER for a KWT | CONFIG for a TinyFormer)"
        );
    };
    let (checkpoint, data) = (PathBuf::from(checkpoint), PathBuf::from(data));
    let (fg, inputs, labels, roundings) = if checkpoint.with_file_name("model.ron").is_file() {
        kwt(&checkpoint, &data)?
    } else {
        tinyformer(&checkpoint, &data)?
    };
    println!(
        "| softmax output | test accuracy ({} inputs) |",
        inputs.len()
    );
    println!("| --- | --- |");
    for r in roundings {
        let mut correct = 0;
        for (x, &label) in inputs.iter().zip(&labels) {
            let vals = fg.run_with(x, |node, y| {
                let chosen = node.name.starts_with(r.prefix);
                if let (FOp::Softmax, Some(e), true) = (&node.op, r.step_exp, chosen) {
                    let k = 2f32.powi(e);
                    for p in y.iter_mut() {
                        *p = (*p * k).round().min(r.max) / k;
                    }
                }
            })?;
            correct += usize::from(argmax(&vals[fg.output]) == label);
        }
        println!(
            "| {} | {:.2} % ({correct}) |",
            r.name,
            100.0 * correct as f64 / inputs.len() as f64
        );
    }
    Ok(())
}
