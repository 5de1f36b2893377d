//! `nas eval`: accuracy and confusion matrix of a checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::backend::Backend;
use datasets::Task;
use training::{ConfusionMatrix, DataSpec, DataSplits, KwtConfig};

#[derive(Args)]
pub struct EvalArgs {
    /// A `.bpk` checkpoint written by `nas train` (its `model.ron` beside it), or with
    /// `--config` a searched TinyFormer's (`best/model.bpk`, its `arch.ron` beside it).
    #[arg(long, conflicts_with = "int8", required_unless_present = "int8")]
    checkpoint: Option<PathBuf>,
    /// An integer graph written by `nas quantize`, run by the integer reference interpreter.
    #[arg(long)]
    int8: Option<PathBuf>,
    /// A Speech Commands folder (word folders, validation_list.txt, testing_list.txt).
    #[arg(long, required_unless_present_any = ["images", "config"])]
    data: Option<PathBuf>,
    /// Instead of --data: an image set, for the integer model a search (or `nas train` of a
    /// searched path) wrote: a Fashion-MNIST idx folder or a CIFAR-10 binary folder.
    #[arg(long, conflicts_with_all = ["data", "task", "checkpoint"], requires = "int8")]
    images: Option<PathBuf>,
    /// Instead of --data or --images: the search config (or path training config) a searched
    /// TinyFormer came from. Its split of the data the search drew (the same subsets, crop and
    /// standardization: the search's own figures; key-word models too) scores the integer
    /// model (`--int8`) or the float checkpoint (`--checkpoint`).
    #[arg(long, conflicts_with_all = ["data", "images", "task"])]
    config: Option<PathBuf>,
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
    let (labels, pairs, source_dir) = match (&args.config, &args.images, &args.data) {
        (Some(config), _, _) => {
            let (labels, pairs) = match (&args.checkpoint, &args.int8) {
                (Some(checkpoint), _) => crate::eval_tinyformer::classify_checkpoint(
                    checkpoint,
                    config,
                    args.split,
                    args.batch_size,
                    &args.backend.device()?,
                )?,
                (None, Some(int8)) => {
                    crate::eval_tinyformer::classify_int8(int8, config, args.split)?
                }
                (None, None) => bail!("give --checkpoint FILE.bpk or --int8 FILE.int8"),
            };
            (labels, pairs, config)
        }
        (None, Some(dir), _) => {
            let int8 = args
                .int8
                .as_deref()
                .context("--images scores an --int8 model")?;
            let (labels, pairs) = classify_images(int8, dir, args.split)?;
            (labels, pairs, dir)
        }
        (None, None, Some(dir)) => {
            let (labels, pairs) = classify_speech(&args, dir)?;
            (labels, pairs, dir)
        }
        (None, None, None) => {
            bail!("give --data DIR (speech), --images DIR or --config FILE.ron (a search's)")
        }
    };
    let confusion =
        ConfusionMatrix::from_pairs(labels.clone(), &pairs).map_err(|(truth, pred)| {
            anyhow::anyhow!(
                "label {truth} or prediction {pred} outside the {} classes of {}",
                labels.len(),
                source_dir.display()
            )
        })?;
    if let Some(path) = &args.predictions {
        let mut csv = String::from("index,truth,predicted\n");
        for (i, (truth, pred)) in pairs.iter().enumerate() {
            csv += &format!("{i},{},{}\n", labels[*truth], labels[*pred]);
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

/// The class names and every sample's (truth, prediction) pair.
pub(crate) type Scored = (Vec<String>, Vec<(usize, usize)>);

/// Every clip of the split of the Speech Commands folder `dir`: (label names, (truth,
/// prediction) pairs) of the float checkpoint or the integer model.
fn classify_speech(args: &EvalArgs, dir: &Path) -> Result<Scored> {
    let model_file = args.checkpoint.as_ref().or(args.int8.as_ref());
    let data = data_spec(model_file.map(|p| p.as_path()), dir, args.task)?.load(false)?;
    let source = match args.split {
        EvalSplit::Train => &data.train,
        EvalSplit::Valid => &data.valid,
        EvalSplit::Test => &data.test,
    };
    let pairs = match (&args.checkpoint, &args.int8) {
        (Some(checkpoint), None) => {
            let device = args.backend.device()?;
            let (model, config) = training::load_checkpoint(checkpoint, &device)?;
            check_shapes(checkpoint, &config, dir, &data)?;
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
            quant::ptq::classify_int8(&graph, source.as_ref(), &data.labels)
                .with_context(|| format!("evaluating {} on {}", path.display(), dir.display()))?
        }
        _ => bail!("give exactly one of --checkpoint FILE.bpk and --int8 FILE.int8"),
    };
    Ok((data.labels, pairs))
}

/// Every image of the split of the image set in `dir` (Fashion-MNIST idx or CIFAR-10
/// binary) through the integer image model `int8`, which takes raw pixels in [0, 1] (it holds
/// the training set's standardization).
fn classify_images(int8: &Path, dir: &Path, split: EvalSplit) -> Result<Scored> {
    let (graph, chw) = crate::eval_tinyformer::load_image_model(int8)?;
    if graph.input_standardization.is_none() {
        bail!(
            "{} takes images standardized by its training set's statistics, which it does not \
             hold; only models written by `nas search` or by `nas train` of a searched path \
             take raw images",
            int8.display()
        );
    }
    let (train, test) = if datasets::images::is_cifar10_dir(dir) {
        datasets::read_cifar10(dir)?
    } else {
        datasets::read_fashion_mnist(dir)?
    };
    let set = match split {
        EvalSplit::Train => train,
        EvalSplit::Test => test,
        EvalSplit::Valid => bail!(
            "image sets have a train and a test split; the validation images of a search are a \
             seeded part of train"
        ),
    };
    let shape = [set.channels, set.height, set.width];
    if shape != chw {
        bail!(
            "{} takes {chw:?} images (channels, height, width), {} holds {shape:?}",
            int8.display(),
            dir.display()
        );
    }
    let (zero, one) = (vec![0.0; set.channels], vec![1.0; set.channels]);
    let features = (0..set.len())
        .map(|i| quant::ptq::chw_to_hwc(&set.to_f32_normalized(i, &zero, &one), chw))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let source = training::InMemory {
        features,
        labels: set.labels.iter().map(|&l| l as usize).collect(),
    };
    let pairs = quant::ptq::classify_int8(&graph, &source, &set.classes)
        .with_context(|| format!("evaluating {} on {}", int8.display(), dir.display()))?;
    Ok((set.classes, pairs))
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
