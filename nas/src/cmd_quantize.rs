//! `nas quantize`: a trained float checkpoint to the integer-only int8 graph.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use quant::ptq::{Estimator, PtqOptions, evaluate_int8, quantize_kwt};
use training::{DataSpec, SampleSource};

use crate::backend::Backend;
use crate::cmd_eval::SpeechTask;

#[derive(Args)]
pub struct QuantizeArgs {
    /// A `.bpk` checkpoint written by `nas train` (its `model.ron` beside it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The Speech Commands folder the model was trained on: calibration uses its training
    /// split (un-augmented), the comparison its test split.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "labels12")]
    task: SpeechTask,
    /// Post-training quantization (calibrated power-of-two scales).
    #[arg(long, value_enum, default_value = "ptq")]
    mode: Mode,
    /// Activation clipping estimator.
    #[arg(long, value_enum, default_value = "percentile")]
    estimator: EstimatorArg,
    /// Percentile of |x| kept unclipped with `--estimator percentile`.
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// One weight scale per tensor instead of per output channel.
    #[arg(long)]
    per_tensor: bool,
    /// TinyFormer's Scaled-LayerNorm instead of I-BERT's integer LayerNorm.
    #[arg(long)]
    scaled_layer_norm: bool,
    /// Training samples observed for calibration.
    #[arg(long, default_value_t = 512)]
    calibration_samples: usize,
    /// Output integer graph; the report is written beside it (`.report.txt`, `.report.json`).
    #[arg(long)]
    out: PathBuf,
    /// Skip scoring float and int8 on the test split.
    #[arg(long)]
    no_eval: bool,
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Ptq,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EstimatorArg {
    Minmax,
    Percentile,
    Mse,
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    let Mode::Ptq = args.mode;
    let device = args.backend.device()?;
    let (model, config) = training::load_checkpoint(&args.checkpoint, &device)?;
    let data = DataSpec::speech_commands(args.data.clone(), args.task.into()).load(false)?;
    crate::cmd_eval::check_shapes(&args.checkpoint, &config, &args.data, &data)?;
    let opts = PtqOptions {
        estimator: match args.estimator {
            EstimatorArg::Minmax => Estimator::MinMax,
            EstimatorArg::Percentile => Estimator::Percentile(args.percentile),
            EstimatorArg::Mse => Estimator::Mse,
        },
        per_channel: !args.per_tensor,
        scaled_layer_norm: args.scaled_layer_norm,
        calibration_samples: args.calibration_samples,
        ..PtqOptions::default()
    };
    let samples = calibration_set(data.train.as_ref(), args.calibration_samples)?;
    tracing::info!(samples = samples.len(), estimator = %opts.estimator, "calibrating");
    let (graph, report) = quantize_kwt(&model, &config, &samples, &opts)
        .with_context(|| format!("quantizing {}", args.checkpoint.display()))?;
    quant::save(&graph, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    let table = report.to_table();
    write(&sibling(&args.out, "report.txt"), &table)?;
    write(
        &sibling(&args.out, "report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    println!("{table}");
    if let Some(worst) = report.worst_layer() {
        println!("lowest SNR: {} ({:.1} dB)", worst.name, worst.snr_db);
    }
    println!(
        "integer graph {} ({} nodes)",
        args.out.display(),
        graph.nodes.len()
    );
    if !args.no_eval {
        let float = training::evaluate(
            &model,
            data.test.as_ref(),
            &data.labels,
            data.frames,
            data.features,
            256,
            &device,
        )?;
        let int8 = evaluate_int8(&graph, data.test.as_ref(), &data.labels)?;
        println!(
            "test accuracy: float {:.2}%, int8 {:.2}% ({:+.2} points) on {} clips",
            100.0 * float.accuracy(),
            100.0 * int8.accuracy(),
            100.0 * (int8.accuracy() - float.accuracy()),
            int8.total()
        );
    }
    Ok(())
}

/// `count` evenly spaced training samples (un-augmented): covers every class without a
/// random draw.
fn calibration_set(source: &dyn SampleSource, count: usize) -> Result<Vec<Vec<f32>>> {
    let n = source.len();
    if n == 0 || count == 0 {
        bail!(
            "calibration needs at least one training sample (the split has {n}, asked for {count})"
        );
    }
    let take = n.min(count);
    (0..take)
        .map(|i| Ok(source.sample(i * n / take, None)?.0))
        .collect()
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
