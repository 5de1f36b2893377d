//! How much of a KWT's int8 accuracy loss the softmax output resolution alone explains: the
//! float graph of a checkpoint, scored on the test split with only its softmax probabilities
//! rounded: at 2^-7 in int8 (0..127, what the integer kernels emitted up to graph format 1), at
//! 2^-8 in uint8 (0..255, what they emit since format 2), and not at all.
//!
//! `cargo run --release --example softmax_resolution -- runs/kwt1_espeak150/best.bpk
//! data/espeak35x150` (the data folder replaces the one in the run's `data.ron`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use quant::ptq::float_graph::{FOp, FloatGraph};
use quant::ptq::report::argmax;
use rayon::prelude::*;

/// Probabilities rounded to `round(p * 2^bits)` clamped to `max`, or untouched.
#[derive(Clone, Copy)]
struct Rounding {
    name: &'static str,
    step_exp: Option<i32>,
    max: f32,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checkpoint, data] = args.as_slice() else {
        bail!("usage: softmax_resolution CHECKPOINT DATA_FOLDER");
    };
    let checkpoint = PathBuf::from(checkpoint);
    let (model, config) = training::load_checkpoint(&checkpoint, &Device::flex())?;
    let spec = training::DataSpec::beside(&checkpoint)?
        .with_context(|| format!("no data.ron beside {}", checkpoint.display()))?
        .with_folder(PathBuf::from(data));
    let splits = spec.load(false)?;
    let fg = FloatGraph::from_kwt(&model, &config)?;
    let test = splits.test.as_ref();
    let roundings = [
        Rounding {
            name: "float softmax",
            step_exp: None,
            max: 1.0,
        },
        Rounding {
            name: "int8 at 2^-7 (0..127)",
            step_exp: Some(7),
            max: 127.0,
        },
        Rounding {
            name: "uint8 at 2^-8 (0..255)",
            step_exp: Some(8),
            max: 255.0,
        },
    ];
    println!("| softmax output | test accuracy ({} clips) |", test.len());
    println!("| --- | --- |");
    for r in roundings {
        let correct: usize = (0..test.len())
            .into_par_iter()
            .map(|i| -> Result<usize> {
                let (x, label) = test.sample(i, None)?;
                let vals = fg.run_with(&x, |node, y| {
                    if let (FOp::Softmax, Some(e)) = (&node.op, r.step_exp) {
                        let k = 2f32.powi(e);
                        for p in y.iter_mut() {
                            *p = (*p * k).round().min(r.max) / k;
                        }
                    }
                })?;
                Ok(usize::from(argmax(&vals[fg.output]) == label))
            })
            .sum::<Result<usize>>()?;
        println!(
            "| {} | {:.2}% ({correct}) |",
            r.name,
            100.0 * correct as f64 / test.len() as f64
        );
    }
    Ok(())
}
