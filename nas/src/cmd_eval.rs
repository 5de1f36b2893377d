//! `nas eval`: accuracy and confusion matrix of a checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::backend::Backend;
use datasets::Task;
use training::{ConfusionMatrix, DataSpec, DataSplits, KwtConfig};

#[derive(Args)]
pub struct EvalArgs {
    /// A `.bpk` checkpoint written by `nas train` (its `model.ron` beside it).
    #[arg(long, conflicts_with = "int8", required_unless_present = "int8")]
    checkpoint: Option<PathBuf>,
    /// An integer graph written by `nas quantize`, run by the integer reference interpreter.
    #[arg(long)]
    int8: Option<PathBuf>,
    /// A Speech Commands folder (word folders, validation_list.txt, testing_list.txt).
    #[arg(long)]
    data: PathBuf,
    /// The task; default: the one the run was trained on (its `data.ron` beside the model),
    /// else labels12.
    #[arg(long, value_enum)]
    task: Option<SpeechTask>,
    /// Which split to score.
    #[arg(long, value_enum, default_value = "test")]
    split: EvalSplit,
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Also write every clip's true and predicted label to this CSV (`index,truth,predicted`,
    /// in the split's order): two models scored on the same split can then be compared clip
    /// by clip (experiments/quantization/paired_test.py).
    #[arg(long)]
    predictions: Option<PathBuf>,
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

impl From<SpeechTask> for Task {
    fn from(t: SpeechTask) -> Task {
        match t {
            SpeechTask::Labels12 => Task::Labels12,
            SpeechTask::Labels35 => Task::Labels35,
        }
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    // Name a missing model before spending time on the data.
    for model in args.checkpoint.iter().chain(&args.int8) {
        if !model.is_file() {
            bail!("model file {} does not exist", model.display());
        }
    }
    let model_file = args.checkpoint.as_ref().or(args.int8.as_ref());
    let data = data_spec(model_file.map(|p| p.as_path()), &args.data, args.task)?.load(false)?;
    let source = match args.split {
        EvalSplit::Train => &data.train,
        EvalSplit::Valid => &data.valid,
        EvalSplit::Test => &data.test,
    };
    let pairs = match (&args.checkpoint, &args.int8) {
        (Some(checkpoint), None) => {
            let device = args.backend.device()?;
            let (model, config) = training::load_checkpoint(checkpoint, &device)?;
            check_shapes(checkpoint, &config, &args.data, &data)?;
            training::classify(
                &model,
                source.as_ref(),
                data.frames,
                data.features,
                args.batch_size,
                &device,
            )?
        }
        (None, Some(path)) => {
            let graph = quant::load(path)
                .with_context(|| format!("reading integer model {}", path.display()))?;
            quant::ptq::classify_int8(&graph, source.as_ref(), &data.labels).with_context(|| {
                format!("evaluating {} on {}", path.display(), args.data.display())
            })?
        }
        _ => bail!("give exactly one of --checkpoint FILE.bpk and --int8 FILE.int8"),
    };
    let confusion =
        ConfusionMatrix::from_pairs(data.labels.clone(), &pairs).map_err(|(truth, pred)| {
            anyhow::anyhow!(
                "label {truth} or prediction {pred} outside the {} classes of {}",
                data.labels.len(),
                args.data.display()
            )
        })?;
    if let Some(path) = &args.predictions {
        let mut csv = String::from("index,truth,predicted\n");
        for (i, (truth, pred)) in pairs.iter().enumerate() {
            csv += &format!("{i},{},{}\n", data.labels[*truth], data.labels[*pred]);
        }
        std::fs::write(path, csv)
            .with_context(|| format!("writing predictions to {}", path.display()))?;
    }
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

/// How to read `data` for `model`: the training run's description (`data.ron` beside the
/// model; its folder replaced by `data`) when there is one, so silence/unknown clips and the
/// front end match training; else a Speech Commands folder with default settings.
pub fn data_spec(model: Option<&Path>, data: &Path, task: Option<SpeechTask>) -> Result<DataSpec> {
    let saved = match model {
        Some(m) => DataSpec::beside(m)?,
        None => None,
    };
    Ok(match (saved, task) {
        (Some(spec), None) => spec.with_folder(data.to_path_buf()),
        (Some(spec), Some(t)) => spec.with_folder(data.to_path_buf()).with_task(t.into()),
        (None, t) => {
            if let Some(m) = model {
                // The silence crops and unknown clips drawn depend on these settings: two
                // models scored with different ones are scored on different clips.
                tracing::warn!(
                    "no data.ron beside {}: reading {} with the default Speech Commands \
                     settings (10 % silence, 10 % unknown, seed 0), which may not be the ones \
                     the model was trained with; copy the run's data.ron beside the model to \
                     use them",
                    m.display(),
                    data.display()
                );
            }
            DataSpec::speech_commands(data.to_path_buf(), t.unwrap_or(SpeechTask::Labels12).into())
        }
    })
}

/// The checkpoint must take the data's inputs and predict its labels.
pub fn check_shapes(
    checkpoint: &Path,
    config: &KwtConfig,
    data_dir: &Path,
    data: &DataSplits,
) -> Result<()> {
    if config.classes != data.labels.len()
        || config.frames != data.frames
        || config.features != data.features
    {
        bail!(
            "checkpoint {} is a model of {}x{} inputs into {} classes, but {} gives {}x{} into {} labels (try --task)",
            checkpoint.display(),
            config.frames,
            config.features,
            config.classes,
            data_dir.display(),
            data.frames,
            data.features,
            data.labels.len()
        );
    }
    Ok(())
}
