//! `nas quantize` of a TinyFormer single path (a search's or a path training's `best/`):
//! post-training quantization with the options a user chooses, calibrated on training images
//! as the model saw them (standardized with the statistics its integer model holds), scored
//! float and int8 on the test split. The data: an image folder (Fashion-MNIST or CIFAR-10,
//! whole splits), or the search config (or path training config) the model came from, which
//! also serves key-word TinyFormers (MFCC spectrograms) and reproduces the search's subsets.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use quant::Standardization;
use quant::ptq::PtqOptions;
use search::data::ImageTensors;
use search::data_source::DataSource;
use training::tinyformer::TinyFormerArch;

/// Where a TinyFormer path's data come from.
pub enum TinyFormerData<'a> {
    /// A Fashion-MNIST (idx) or CIFAR-10 (binary) folder.
    Images(&'a Path),
    /// The search config or path training config the model was found or trained with.
    Config(&'a Path),
}

/// What `nas quantize` needs for a TinyFormer path.
pub struct TinyFormerQuantize<'a> {
    pub checkpoint: &'a Path,
    pub data: TinyFormerData<'a>,
    pub out: &'a Path,
    pub opts: PtqOptions,
    pub no_eval: bool,
    pub device: Device,
}

/// Whether `checkpoint` is a TinyFormer path's: its `arch.ron` beside it and no KWT
/// `model.ron`.
pub fn is_tinyformer_path(checkpoint: &Path) -> bool {
    let beside = |name: &str| checkpoint.with_file_name(name).is_file();
    beside(training::tinyformer::ARCH_FILE) && !beside("model.ron")
}

/// The integer model written beside a TinyFormer path's checkpoint, which holds the training
/// images' per-channel statistics.
fn integer_model_beside(checkpoint: &Path) -> PathBuf {
    checkpoint.with_file_name("model.int8")
}

/// Calibration inputs and the scored split, standardized as the model was trained.
struct Prepared {
    calibration: Vec<Vec<f32>>,
    test: ImageTensors,
    class_names: Vec<String>,
    /// "images" or "clips", for the printed line.
    unit: &'static str,
}

pub fn run(q: TinyFormerQuantize) -> Result<()> {
    let stats = standardization_beside(q.checkpoint)?;
    let (model, arch) = training::tinyformer::load_tinyformer(q.checkpoint, &q.device)?;
    let n = q.opts.calibration_samples;
    let data = match q.data {
        TinyFormerData::Images(dir) => from_image_folder(q.checkpoint, &arch, dir, &stats, n)?,
        TinyFormerData::Config(path) => from_config(q.checkpoint, &arch, path, &stats, n)?,
    };
    crate::cmd_quantize::create_out_folder(q.out)?;
    tracing::info!(
        inputs = data.calibration.len(),
        estimator = %q.opts.estimator,
        "calibrating"
    );
    let (mut graph, report) =
        quant::ptq::quantize_tinyformer(&model, &arch, &data.calibration, &q.opts)
            .with_context(|| format!("quantizing {}", q.checkpoint.display()))?;
    // the deployed graph takes raw inputs (pixels in [0, 1], MFCCs), as the search's does
    let scored = graph.clone();
    quant::ptq::set_channel_standardization(&mut graph, &stats.mean, &stats.std)?;
    crate::cmd_quantize::write_outputs(q.out, &graph, &report)?;
    if !q.no_eval {
        let test = &data.test;
        let float = search::train::accuracy(&model, test, 256, &q.device);
        let per: usize = test.shape.iter().product();
        let inputs: Vec<Vec<f32>> = test.values.chunks_exact(per).map(<[f32]>::to_vec).collect();
        let int8 =
            quant::ptq::evaluate_int8_images(&scored, &inputs, &test.labels, &data.class_names)?;
        let pct = |a: f64| 100.0 * a;
        println!(
            "test accuracy on {} {}: float {:.2}%, int8 {:.2}% ({:+.2} points)",
            test.len(),
            data.unit,
            pct(float),
            pct(int8.accuracy()),
            pct(int8.accuracy() - float)
        );
    }
    Ok(())
}

/// A whole image set's training split (calibration) and test split.
fn from_image_folder(
    checkpoint: &Path,
    arch: &TinyFormerArch,
    dir: &Path,
    stats: &Standardization,
    calibration_samples: usize,
) -> Result<Prepared> {
    let (train, test) = if datasets::images::is_cifar10_dir(dir) {
        datasets::read_cifar10(dir)?
    } else {
        datasets::read_fashion_mnist(dir)?
    };
    let shape = [train.channels, train.height, train.width];
    if shape != arch.input {
        bail!(
            "{} takes {:?} images (channels, height, width), {} holds {shape:?}",
            checkpoint.display(),
            arch.input,
            dir.display()
        );
    }
    if stats.mean.len() != train.channels {
        bail!(
            "{} standardizes {} channels, the images have {}",
            integer_model_beside(checkpoint).display(),
            stats.mean.len(),
            train.channels
        );
    }
    if train.classes.len() != arch.classes {
        bail!(
            "{} has {} classes, {} holds {}",
            checkpoint.display(),
            arch.classes,
            dir.display(),
            train.classes.len()
        );
    }
    Ok(Prepared {
        calibration: evenly_spaced(&train, calibration_samples, stats),
        test: ImageTensors::new(&test, &stats.mean, &stats.std),
        class_names: train.classes,
        unit: "images",
    })
}

/// The splits the search (or path training) config draws, checked against the model: same
/// input shape, classes and standardization.
fn from_config(
    checkpoint: &Path,
    arch: &TinyFormerArch,
    config: &Path,
    stats: &Standardization,
    calibration_samples: usize,
) -> Result<Prepared> {
    let source = DataSource::from_config(config)?;
    let data = source
        .load(arch.stages.len())
        .with_context(|| format!("reading the data of {}", config.display()))?;
    check_input_and_classes(checkpoint, arch, config, &data)?;
    check_standardization(checkpoint, config, &data, stats)?;
    // The first inputs of the training split, as the search calibrated (the split is in a
    // seeded random order): the search's options then give its integer model byte for byte.
    let per: usize = data.train.shape.iter().product();
    let calibration = data
        .train
        .values
        .chunks_exact(per)
        .take(calibration_samples)
        .map(<[f32]>::to_vec)
        .collect();
    let speech = matches!(source.data.source, search::config::ImageData::Speech(_));
    Ok(Prepared {
        calibration,
        test: data.test,
        class_names: data.class_names,
        unit: if speech { "clips" } else { "images" },
    })
}

/// A config's data fit the model `model` (with `arch`) only if they have its input shape and
/// classes (and, [`check_standardization`], its training statistics).
pub fn check_input_and_classes(
    model: &Path,
    arch: &TinyFormerArch,
    config: &Path,
    data: &search::run::Data,
) -> Result<()> {
    if data.train.shape != arch.input || data.classes != arch.classes {
        bail!(
            "{} is a model of {:?} inputs (channels, height, width) into {} classes, but the data \
             of {} are {:?} into {} classes",
            model.display(),
            arch.input,
            arch.classes,
            config.display(),
            data.train.shape,
            data.classes
        );
    }
    Ok(())
}

/// The config's training-split statistics must be the model's `stats` (to float precision):
/// another config (another subset, another data set) would calibrate and score it on inputs
/// it never saw in that form.
pub fn check_standardization(
    model: &Path,
    config: &Path,
    data: &search::run::Data,
    stats: &Standardization,
) -> Result<()> {
    let close = |a: &[f32], b: &[f32]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1e-3))
    };
    if !close(&data.mean, &stats.mean) || !close(&data.std, &stats.std) {
        bail!(
            "{} was trained on inputs standardized with mean {:?} and std {:?}, but the training \
             split of {} gives mean {:?} and std {:?}: not the data (or not the subset and seed) \
             the model was searched or trained with",
            model.display(),
            stats.mean,
            stats.std,
            config.display(),
            data.mean,
            data.std
        );
    }
    Ok(())
}

/// The per-channel statistics the path was trained with, from the integer model its search or
/// training wrote beside it.
fn standardization_beside(checkpoint: &Path) -> Result<Standardization> {
    saved_standardization(checkpoint)?.with_context(|| {
        format!(
            "{} needs the training images' per-channel statistics, which the integer model its \
             search (or `nas train`) wrote beside it holds: {} is missing or holds none",
            checkpoint.display(),
            integer_model_beside(checkpoint).display()
        )
    })
}

/// The statistics of the integer model beside `checkpoint`; `None` when there is no such
/// model or it holds none (a model that cannot be read is an error).
pub fn saved_standardization(checkpoint: &Path) -> Result<Option<Standardization>> {
    let path = integer_model_beside(checkpoint);
    if !path.is_file() {
        return Ok(None);
    }
    let graph = quant::load(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(graph.input_standardization)
}

/// `n` training images spread evenly over the split (all of them when it has fewer),
/// standardized.
fn evenly_spaced(set: &datasets::ImageSet, n: usize, st: &Standardization) -> Vec<Vec<f32>> {
    training::data::evenly_spaced(set.len(), n)
        .into_iter()
        .map(|i| set.to_f32_normalized(i, &st.mean, &st.std))
        .collect()
}
