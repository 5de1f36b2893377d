//! `nas train`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use training::{DataSpec, TrainOptions, TrainOutcome};

use crate::backend::Backend;
use crate::run_config::{QUICKSTART, RunConfig};

#[derive(Args)]
pub struct TrainArgs {
    /// Run configuration (RON). Without it: configs/quickstart.ron, built in.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Use this data folder instead of the config's (a Speech Commands layout).
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
    let data_path = config.out.join(training::speech_data::DATA_SPEC_FILE);
    if config.out.join(training::trainer::STATE_FILE).is_file() && data_path.is_file() {
        // a resumed run must go on reading the data it started with
        let saved: DataSpec = training::checkpoint::read_ron(&data_path)?;
        training::run_match::check_resumable(
            &config.out,
            "data",
            &saved.with_canonical_folder(),
            &config.data.clone().with_canonical_folder(),
            &[],
        )?;
    }
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
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("creating {}", config.out.display()))?;
    training::checkpoint::write_ron(&data_path, &config.data)?;
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
