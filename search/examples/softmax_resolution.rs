//! How much of a searched TinyFormer's int8 accuracy loss its softmax output resolution alone
//! explains: the float graph of a checkpoint, scored on the test split of the config it was
//! searched with, with only its softmax probabilities rounded (all of them, or one stage's),
//! at the integer kernels' uint8 codes at 2^-8 and at finer steps. Key-word TinyFormers attend
//! over 960 tokens in their first stage, where most probabilities are below 1/256.
//!
//! `cargo run --release -p search --example softmax_resolution -- RUN/best/model.bpk
//! configs/speech_search.ron`

use std::path::PathBuf;

use anyhow::{Result, bail};
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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checkpoint, config] = args.as_slice() else {
        bail!("usage: softmax_resolution CHECKPOINT CONFIG");
    };
    let (model, arch) =
        training::tinyformer::load_tinyformer(&PathBuf::from(checkpoint), &Device::flex())?;
    let data = search::data_source::DataSource::from_config(&PathBuf::from(config))?
        .load(arch.stages.len())?;
    let fg = FloatGraph::from_tinyformer(&model, &arch)?;
    let test = &data.test;
    let per: usize = test.shape.iter().product();
    let inputs = test
        .values
        .chunks_exact(per)
        .map(|im| quant::ptq::chw_to_hwc(im, test.shape))
        .collect::<quant::ptq::Result<Vec<_>>>()?;
    let at = |name, prefix, e: i32, max| Rounding {
        name,
        prefix,
        step_exp: Some(e),
        max,
    };
    let roundings = [
        Rounding {
            name: "float softmax",
            prefix: "",
            step_exp: None,
            max: 1.0,
        },
        at("uint8 at 2^-8 (0..255), all stages", "", 8, 255.0),
        at("uint8 at 2^-8, first stage only", "s0.", 8, 255.0),
        at("uint8 at 2^-8, second stage only", "s1.", 8, 255.0),
        at("uint8 at 2^-10 (0..255: at most 0.249)", "", 10, 255.0),
        at("uint16 at 2^-16 (0..65535)", "", 16, 65_535.0),
    ];
    println!(
        "| softmax output | test accuracy ({} inputs) |",
        inputs.len()
    );
    println!("| --- | --- |");
    for r in roundings {
        let mut correct = 0;
        for (x, &label) in inputs.iter().zip(&test.labels) {
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
