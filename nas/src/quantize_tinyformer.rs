//! `nas quantize` of a TinyFormer single path (a search's or a path training's `best/`):
//! post-training quantization with the options a user chooses, calibrated on the image set's
//! training images as the model saw them (standardized with the statistics its integer model
//! holds), scored float and int8 on the test images.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use quant::Standardization;
use quant::ptq::PtqOptions;
use search::data::ImageTensors;

/// What `nas quantize` needs for a TinyFormer path.
pub struct TinyFormerQuantize<'a> {
    pub checkpoint: &'a Path,
    /// Fashion-MNIST (idx) or CIFAR-10 (binary) folder.
    pub images: &'a Path,
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

pub fn run(q: TinyFormerQuantize) -> Result<()> {
    let stats = standardization_beside(q.checkpoint)?;
    let (model, arch) = training::tinyformer::load_tinyformer(q.checkpoint, &q.device)?;
    let (train, test) = if datasets::images::is_cifar10_dir(q.images) {
        datasets::read_cifar10(q.images)?
    } else {
        datasets::read_fashion_mnist(q.images)?
    };
    let shape = [train.channels, train.height, train.width];
    if shape != arch.input {
        bail!(
            "{} takes {:?} images (channels, height, width), {} holds {shape:?}",
            q.checkpoint.display(),
            arch.input,
            q.images.display()
        );
    }
    if stats.mean.len() != train.channels {
        bail!(
            "{} standardizes {} channels, the images have {}",
            integer_model_beside(q.checkpoint).display(),
            stats.mean.len(),
            train.channels
        );
    }
    if train.classes.len() != arch.classes {
        bail!(
            "{} has {} classes, {} holds {}",
            q.checkpoint.display(),
            arch.classes,
            q.images.display(),
            train.classes.len()
        );
    }
    crate::cmd_quantize::create_out_folder(q.out)?;
    let calibration = evenly_spaced(&train, q.opts.calibration_samples, &stats);
    tracing::info!(
        images = calibration.len(),
        estimator = %q.opts.estimator,
        "calibrating"
    );
    let (mut graph, report) = quant::ptq::quantize_tinyformer(&model, &arch, &calibration, &q.opts)
        .with_context(|| format!("quantizing {}", q.checkpoint.display()))?;
    // the deployed graph takes raw pixels in [0, 1], as the search's does
    let scored = graph.clone();
    quant::ptq::set_channel_standardization(&mut graph, &stats.mean, &stats.std)?;
    crate::cmd_quantize::write_outputs(q.out, &graph, &report)?;
    if !q.no_eval {
        let test = ImageTensors::new(&test, &stats.mean, &stats.std);
        let float = search::train::accuracy(&model, &test, 256, &q.device);
        let per: usize = test.shape.iter().product();
        let images: Vec<Vec<f32>> = test.values.chunks_exact(per).map(<[f32]>::to_vec).collect();
        let int8 =
            quant::ptq::evaluate_int8_images(&scored, &images, &test.labels, &train.classes)?;
        let pct = |a: f64| 100.0 * a;
        println!(
            "test accuracy on {} images: float {:.2}%, int8 {:.2}% ({:+.2} points)",
            test.len(),
            pct(float),
            pct(int8.accuracy()),
            pct(int8.accuracy() - float)
        );
    }
    Ok(())
}

/// The per-channel statistics the path was trained with, from the integer model its search or
/// training wrote beside it.
fn standardization_beside(checkpoint: &Path) -> Result<Standardization> {
    let path = integer_model_beside(checkpoint);
    let missing = || {
        format!(
            "{} needs the training images' per-channel statistics, which the integer model its \
             search (or `nas train`) wrote beside it holds: {} is missing or holds none",
            checkpoint.display(),
            path.display()
        )
    };
    if !path.is_file() {
        bail!(missing());
    }
    let graph = quant::load(&path).with_context(|| format!("reading {}", path.display()))?;
    graph.input_standardization.with_context(missing)
}

/// `n` training images spread evenly over the split (all of them when it has fewer),
/// standardized.
fn evenly_spaced(set: &datasets::ImageSet, n: usize, st: &Standardization) -> Vec<Vec<f32>> {
    training::data::evenly_spaced(set.len(), n)
        .into_iter()
        .map(|i| set.to_f32_normalized(i, &st.mean, &st.std))
        .collect()
}
