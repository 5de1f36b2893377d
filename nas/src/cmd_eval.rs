//! `nas eval`: accuracy and confusion matrix of a checkpoint.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::backend::Backend;
use datasets::Task;
use training::DataSpec;

#[derive(Args)]
pub struct EvalArgs {
    /// A `.bpk` checkpoint written by `nas train` (its `model.ron` beside it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// A Speech Commands folder (word folders, validation_list.txt, testing_list.txt).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "labels12")]
    task: SpeechTask,
    /// Which split to score.
    #[arg(long, value_enum, default_value = "test")]
    split: EvalSplit,
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SpeechTask {
    /// 10 key words + silence + unknown.
    Labels12,
    /// All 35 words of v0.02 (30 of v0.01).
    Labels35,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EvalSplit {
    Train,
    Valid,
    Test,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.backend.device()?;
    let (model, config) = training::load_checkpoint(&args.checkpoint, &device)?;
    let data = DataSpec::speech_commands(
        args.data.clone(),
        match args.task {
            SpeechTask::Labels12 => Task::Labels12,
            SpeechTask::Labels35 => Task::Labels35,
        },
    )
    .load(false)?;
    if config.classes != data.labels.len()
        || config.frames != data.frames
        || config.features != data.features
    {
        bail!(
            "checkpoint {} is a model of {}x{} inputs into {} classes, but {} gives {}x{} into {} labels (try --task)",
            args.checkpoint.display(),
            config.frames,
            config.features,
            config.classes,
            args.data.display(),
            data.frames,
            data.features,
            data.labels.len()
        );
    }
    let source = match args.split {
        EvalSplit::Train => &data.train,
        EvalSplit::Valid => &data.valid,
        EvalSplit::Test => &data.test,
    };
    let confusion = training::evaluate(
        &model,
        source.as_ref(),
        &data.labels,
        data.frames,
        data.features,
        args.batch_size,
        &device,
    )?;
    println!("{}", confusion.to_table());
    println!(
        "{:?} accuracy {:.2}% ({} / {})",
        args.split,
        100.0 * confusion.accuracy(),
        confusion.correct(),
        confusion.total()
    );
    Ok(())
}
