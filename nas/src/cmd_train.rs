//! `nas train`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use training::{TrainOptions, TrainOutcome};

use crate::backend::Backend;
use crate::run_config::{QUICKSTART, RunConfig};

#[derive(Args)]
pub struct TrainArgs {
    /// Run configuration (RON): a KWT run (configs/quickstart.ron, built in, without it) or a
    /// TinyFormer path a search found (one with `arch: "runs/search/best/arch.ron"`,
    /// configs/fashion_mnist_retrain.ron).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Use this data folder instead of the config's (a Speech Commands layout; KWT runs).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output folder instead of the config's `out`.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        if search::path_train::is_path_train_config(&text) {
            return run_path(&args, path);
        }
    }
    let mut config = match &args.config {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::parse(QUICKSTART).context("the built-in quick-start config")?,
    };
    if let Some(dir) = &args.data {
        config.data = config.data.with_folder(dir.clone());
    }
    if let Some(out) = args.out {
        config.out = out;
    }
    // a resumed run must go on reading the data it started with
    config.data.check_resumable(&config.out)?;
    let device = args.backend.device()?;
    let data = config.data.load(config.trainer.augment)?;
    let model = config
        .model
        .resolve(data.frames, data.features, data.labels.len())?;
    tracing::info!(
        "training {} ({} classes, {} train / {} valid / {} test samples) into {}",
        config.model.preset,
        model.classes,
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        config.out.display()
    );
    // Evaluation and quantization read the data as training did (see DataSpec::beside).
    config.data.write_into(&config.out)?;
    let options = TrainOptions {
        progress: !args.quiet,
        ..Default::default()
    };
    match training::train(
        &model,
        &config.trainer,
        &data,
        &config.out,
        &device,
        &options,
    )? {
        TrainOutcome::Finished(summary) => {
            println!("{}", summary.test_confusion.to_table());
            println!(
                "test accuracy {:.2}% (best validation {:.2}% at epoch {}), {} parameters, {:.0} s",
                100.0 * summary.test_acc,
                100.0 * summary.best_valid_acc,
                summary.best_epoch + 1,
                summary.parameters,
                summary.train_seconds
            );
            println!(
                "checkpoint {}, curves {}, summary {}",
                summary.best_checkpoint.display(),
                config.out.join(training::trainer::CURVES_FILE).display(),
                config.out.join(training::trainer::SUMMARY_FILE).display()
            );
            Ok(())
        }
        TrainOutcome::Interrupted { global_step } => {
            println!("stopped at step {global_step}; run again to resume");
            Ok(())
        }
    }
}

/// Trains a TinyFormer single path (a search's `best/arch.ron`) at full length.
fn run_path(args: &TrainArgs, path: &std::path::Path) -> Result<()> {
    if args.data.is_some() {
        bail!(
            "--data reads a Speech Commands folder for KWT runs; {} names its images in `data`",
            path.display()
        );
    }
    let mut cfg = search::path_train::PathTrainConfig::load(path)?;
    if let Some(out) = &args.out {
        cfg.out = out.clone();
    }
    let device = args.backend.device()?;
    let opts = search::path_train::PathTrainOptions {
        progress: !args.quiet,
        stop_after_steps: None,
    };
    let summary = search::path_train::train_path_config(&cfg, &device, &opts)
        .with_context(|| format!("training {}", path.display()))?
        .context("the run stopped early; run again to resume")?;
    println!(
        "best checkpoint after step {} of {}: validation {:.2} %, test {:.2} % (float), {:.2} % \
         (int8); exported arena {} B, flash {} B{}; {:.0} s",
        summary.best_step,
        summary.steps,
        100.0 * summary.best_valid_accuracy,
        100.0 * summary.test_accuracy,
        100.0 * summary.int8.test_accuracy,
        summary.int8.arena_bytes,
        summary.int8.flash_bytes,
        if summary.fits {
            String::new()
        } else {
            format!(" (does not fit: {})", summary.violations.join("; "))
        },
        summary.seconds
    );
    println!(
        "{}: model.bpk, model.int8, cost.txt; curves {}, summary {}",
        cfg.out.join("best").display(),
        cfg.out.join("curves.svg").display(),
        cfg.out.join("summary.json").display()
    );
    Ok(())
}
