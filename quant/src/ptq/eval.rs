//! Scoring an integer graph on a data split with the reference interpreter (raw features are
//! standardized and quantized as the graph says, then everything runs in integers).

use rayon::prelude::*;
use training::{ConfusionMatrix, SampleSource};

use super::error::{PtqError, Result};
use super::report::argmax;
use crate::{Graph, Interpreter};

/// Samples handed to one worker at a time.
const CHUNK: usize = 64;

/// The true class and the graph's output codes for every sample of `source`, in order; the
/// graph must have one output per label.
pub fn int8_outputs(
    graph: &Graph,
    source: &dyn SampleSource,
    labels: &[String],
) -> Result<Vec<(usize, Vec<i8>)>> {
    single_input(graph)?;
    let classes = output_len(graph)?;
    if classes != labels.len() {
        return Err(PtqError::Model(format!(
            "the integer graph has {classes} outputs but the data has {} labels",
            labels.len()
        )));
    }
    let indices: Vec<usize> = (0..source.len()).collect();
    let results: Vec<Vec<(usize, Vec<i8>)>> = indices
        .par_chunks(CHUNK)
        .map(|chunk| -> Result<Vec<(usize, Vec<i8>)>> {
            let mut interp = Interpreter::new(graph.clone())?;
            chunk
                .iter()
                .map(|&i| {
                    let (x, label) = source.sample(i, None)?;
                    let q = graph
                        .quantize_input(&x)
                        .map_err(|e| PtqError::Calibration(format!("sample {i}: {e}")))?;
                    Ok((label, interp.run_single(&q)?))
                })
                .collect()
        })
        .collect::<Result<_>>()?;
    Ok(results.into_iter().flatten().collect())
}

/// The true and predicted class of every sample of `source`, in order; the graph must have
/// one output per label.
pub fn classify_int8(
    graph: &Graph,
    source: &dyn SampleSource,
    labels: &[String],
) -> Result<Vec<(usize, usize)>> {
    Ok(int8_outputs(graph, source, labels)?
        .into_iter()
        .map(|(label, logits)| (label, argmax(&logits)))
        .collect())
}

/// The confusion matrix of `(truth, predicted)` pairs over `labels`.
pub(crate) fn confusion(labels: &[String], pairs: &[(usize, usize)]) -> Result<ConfusionMatrix> {
    ConfusionMatrix::from_pairs(labels.to_vec(), pairs).map_err(|(truth, _)| {
        PtqError::Model(format!(
            "label {truth} outside the {} classes",
            labels.len()
        ))
    })
}

/// Accuracy and confusion matrix of `graph` on `source`.
pub fn evaluate_int8(
    graph: &Graph,
    source: &dyn SampleSource,
    labels: &[String],
) -> Result<ConfusionMatrix> {
    confusion(labels, &classify_int8(graph, source, labels)?)
}

/// Accuracy and confusion matrix of an image graph (from [`super::quantize_tinyformer`]) on
/// `images` (each CHW, as the graph's front end takes them: normalized unless
/// [`super::set_channel_standardization`] was applied) with `labels` (class indices).
pub fn evaluate_int8_images(
    graph: &Graph,
    images: &[Vec<f32>],
    labels: &[usize],
    class_names: &[String],
) -> Result<ConfusionMatrix> {
    confusion(
        class_names,
        &classify_int8_images(graph, images, labels, class_names)?,
    )
}

/// Every image's `(truth, predicted)` pair, in order: [`evaluate_int8_images`] before the
/// confusion matrix.
pub fn classify_int8_images(
    graph: &Graph,
    images: &[Vec<f32>],
    labels: &[usize],
    class_names: &[String],
) -> Result<Vec<(usize, usize)>> {
    single_input(graph)?;
    let classes = output_len(graph)?;
    if classes != class_names.len() {
        return Err(PtqError::Model(format!(
            "the integer graph has {classes} outputs but {} class names were given",
            class_names.len()
        )));
    }
    if images.len() != labels.len() {
        return Err(PtqError::Calibration(format!(
            "{} images but {} labels",
            images.len(),
            labels.len()
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
        return Err(PtqError::Model(format!(
            "label {bad} outside the {classes} classes"
        )));
    }
    let indices: Vec<usize> = (0..images.len()).collect();
    let preds: Vec<Vec<usize>> = indices
        .par_chunks(CHUNK)
        .map(|chunk| -> Result<Vec<usize>> {
            let mut interp = Interpreter::new(graph.clone())?;
            chunk
                .iter()
                .map(|&i| {
                    let q = super::quantize_image(graph, &images[i])
                        .map_err(|e| PtqError::Calibration(format!("image {i}: {e}")))?;
                    Ok(argmax(&interp.run_single(&q)?))
                })
                .collect()
        })
        .collect::<Result<_>>()?;
    Ok(labels
        .iter()
        .copied()
        .zip(preds.into_iter().flatten())
        .collect())
}

/// `run_single` and `quantize_input` serve single-input graphs only.
fn single_input(graph: &Graph) -> Result<()> {
    if graph.inputs.len() != 1 {
        return Err(PtqError::Model(format!(
            "expected one graph input, found {}",
            graph.inputs.len()
        )));
    }
    Ok(())
}

fn output_len(graph: &Graph) -> Result<usize> {
    let [name] = graph.outputs.as_slice() else {
        return Err(PtqError::Model(format!(
            "expected one graph output, found {}",
            graph.outputs.len()
        )));
    };
    graph
        .tensor(name)
        .map(|t| t.shape.iter().product())
        .ok_or_else(|| PtqError::Model(format!("output `{name}` is not declared")))
}
