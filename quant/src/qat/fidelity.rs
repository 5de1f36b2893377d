//! How closely QAT's training forward (the fake-quantized Burn model) computes what the integer
//! graph lowered from it computes. QAT optimises the first and deploys the second: where they
//! differ (an integer kernel the forward does not model, a scale the lowering picks otherwise)
//! the fine-tuning trains against a network that is not the one shipped.

use serde::{Deserialize, Serialize};
use training::{ConfusionMatrix, Kwt, KwtConfig, SampleSource};

use crate::Graph;
use crate::ptq::burn_logits;
use crate::ptq::error::{PtqError, Result};
use crate::ptq::eval::{confusion, int8_outputs};
use crate::ptq::report::argmax;

/// The fake-quantized forward against the integer graph, over one data split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GraphFidelity {
    /// Samples compared.
    pub samples: usize,
    /// SNR (dB) of the graph's dequantized logits against the forward's.
    pub logits_snr_db: f64,
    /// Share of samples on which both pick the same class.
    pub argmax_agreement: f64,
}

/// What one pass of QAT's model and its integer graph over a labelled split gives.
#[derive(Debug, Clone)]
pub struct GraphScore {
    pub fidelity: GraphFidelity,
    /// The graph's own accuracy on the split (the interpreter runs each sample once for both).
    pub int8: ConfusionMatrix,
}

/// Runs `model` (quantizers attached) on every sample of `split`, `batch` samples per
/// forward, and `graph` (one output per entry of `labels`) on each with the reference
/// interpreter.
pub fn graph_fidelity(
    model: &Kwt,
    cfg: &KwtConfig,
    graph: &Graph,
    split: &dyn SampleSource,
    labels: &[String],
    batch: usize,
) -> Result<GraphScore> {
    if model.qat.is_none() {
        return Err(PtqError::Qat("the model has no quantizers".into()));
    }
    let out = graph
        .outputs
        .first()
        .and_then(|name| graph.tensor(name))
        .ok_or_else(|| PtqError::Qat("the integer graph has no output".into()))?
        .clone();
    let int8 = int8_outputs(graph, split, labels)?;
    let (mut sig, mut noise, mut agree) = (0f64, 0f64, 0usize);
    let mut pairs = Vec::with_capacity(int8.len());
    let indices: Vec<usize> = (0..split.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let samples = chunk
            .iter()
            .map(|&i| split.sample(i, None).map(|(x, _)| x))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let fake = burn_logits(model, &samples, cfg.frames, cfg.features);
        let classes = fake.len() / samples.len();
        for (&i, f) in chunk.iter().zip(fake.chunks_exact(classes)) {
            let (label, q) = &int8[i];
            let deq: Vec<f64> = q.iter().map(|&v| out.dequantize(v)).collect();
            for (&fv, &qv) in f.iter().zip(&deq) {
                sig += (fv as f64).powi(2);
                noise += (fv as f64 - qv).powi(2);
            }
            let predicted = argmax(q);
            agree += usize::from(argmax(f) == predicted);
            pairs.push((*label, predicted));
        }
    }
    let samples = split.len();
    Ok(GraphScore {
        fidelity: GraphFidelity {
            samples,
            logits_snr_db: crate::ptq::report::snr(sig, noise),
            argmax_agreement: if samples == 0 {
                0.0
            } else {
                agree as f64 / samples as f64
            },
        },
        int8: confusion(labels, &pairs)?,
    })
}
