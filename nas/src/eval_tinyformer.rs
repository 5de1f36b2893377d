//! `nas eval --config`: a searched TinyFormer (its float checkpoint or its integer model)
//! scored on a split of the data its search config (or path training config) draws: the same
//! subsets, validation split, spectrogram crop and standardization the search used, so the
//! figures are the search's own and key-word models (MFCC spectrograms) can be scored too.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use search::data::ImageTensors;
use search::data_source::DataSource;

use crate::cmd_eval::{EvalSplit, Scored};
use crate::quantize_tinyformer::{check_input_and_classes, check_standardization};

/// The float TinyFormer path `checkpoint` (its `arch.ron` beside it) on `split`.
pub fn classify_checkpoint(
    checkpoint: &Path,
    config: &Path,
    split: EvalSplit,
    batch: usize,
    device: &Device,
) -> Result<Scored> {
    if !crate::quantize_tinyformer::is_tinyformer_path(checkpoint) {
        bail!(
            "--config scores a searched TinyFormer (a search's best/model.bpk, its arch.ron \
             beside it); {} has no arch.ron beside it: score a KWT checkpoint with --data",
            checkpoint.display()
        );
    }
    let (model, arch) = training::tinyformer::load_tinyformer(checkpoint, device)?;
    let source = DataSource::from_config(config)?;
    let data = source
        .load(arch.stages.len())
        .with_context(|| format!("reading the data of {}", config.display()))?;
    check_input_and_classes(checkpoint, &arch, config, &data)?;
    // The integer model beside the checkpoint holds the statistics it was trained with.
    match crate::quantize_tinyformer::saved_standardization(checkpoint)? {
        Some(stats) => check_standardization(checkpoint, config, &data, &stats)?,
        None => tracing::warn!(
            "no standardized integer model beside {}: the statistics of {} cannot be checked \
             against the ones it was trained with",
            checkpoint.display(),
            config.display()
        ),
    }
    let set = split_of(&data, split);
    let predicted = search::train::predictions(&model, set, batch, device);
    let pairs = set.labels.iter().copied().zip(predicted).collect();
    Ok((data.class_names.clone(), pairs))
}

/// The integer model `int8` (written by a search, by `nas train` of a searched path or by
/// `nas quantize` of one) on `split`. The model standardizes raw inputs itself; it is given
/// the search's standardized inputs with that step taken off (the same integer network at the
/// same scales), which scores it exactly as the search did.
pub fn classify_int8(int8: &Path, config: &Path, split: EvalSplit) -> Result<Scored> {
    let (mut graph, chw) = load_image_model(int8)?;
    let Some(stats) = graph.input_standardization.take() else {
        bail!(
            "{} holds no input standardization: only integer models written by `nas search`, \
             `nas train` of a searched path or `nas quantize` of one can be scored with --config",
            int8.display()
        );
    };
    let source = DataSource::from_config(config)?;
    let data = source
        .load(source.stages)
        .with_context(|| format!("reading the data of {}", config.display()))?;
    let set = split_of(&data, split);
    if set.shape != chw {
        bail!(
            "{} takes {chw:?} inputs (channels, height, width), the data of {} are {:?}",
            int8.display(),
            config.display(),
            set.shape
        );
    }
    check_standardization(int8, config, &data, &stats)?;
    let per: usize = chw.iter().product();
    let inputs: Vec<Vec<f32>> = set.values.chunks_exact(per).map(<[f32]>::to_vec).collect();
    let pairs =
        quant::ptq::classify_int8_images(&graph, &inputs, &set.labels, &data.class_names)
            .with_context(|| format!("evaluating {} on {}", int8.display(), config.display()))?;
    Ok((data.class_names.clone(), pairs))
}

/// The integer image model `int8` and its input's `[channels, height, width]`.
pub fn load_image_model(int8: &Path) -> Result<(quant::Graph, [usize; 3])> {
    let graph =
        quant::load(int8).with_context(|| format!("reading integer model {}", int8.display()))?;
    let chw = quant::ptq::tinyformer::image_input_chw(&graph).with_context(|| {
        format!(
            "{} is not an image model (a KWT's integer model: score it with --data)",
            int8.display()
        )
    })?;
    Ok((graph, chw))
}

fn split_of(data: &search::run::Data, split: EvalSplit) -> &ImageTensors {
    match split {
        EvalSplit::Train => &data.train,
        EvalSplit::Valid => &data.valid,
        EvalSplit::Test => &data.test,
    }
}
