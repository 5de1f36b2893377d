//! S_spa's pruning half: a block size and a sparsity per prunable layer of a single-path model.
//! Prunable: every Conv2d (block along input channels), depthwise Conv2d (a kernel row of 3) and
//! MLP / head Linear. The attention projections stay dense: the cost model and the exporter run
//! them inside the fused attention kernel, which reads dense weights.

use std::collections::BTreeMap;

use pruning::WeightLayout;
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use training::tinyformer::{LayerKind, LayerSpec, TinyFormerArch};

use crate::config::SparseSpace;

/// Block size and target sparsity of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    pub block: usize,
    pub sparsity: f64,
}

/// Per-layer sparsity by layer name; layers not named are dense.
pub type SparseConfig = BTreeMap<String, LayerSparsity>;

/// The pruning layout of a layer, or `None` when it is never pruned.
pub fn layout(spec: &LayerSpec) -> Option<WeightLayout> {
    if spec.name.ends_with(".qkv") || spec.name.ends_with(".out") || spec.name == "head.seqpool" {
        return None;
    }
    Some(match spec.kind {
        LayerKind::Conv { cin, cout, k } => WeightLayout::Conv2d {
            c_out: cout,
            c_in: cin,
            kh: k,
            kw: k,
        },
        LayerKind::Depthwise { c, k } => WeightLayout::Depthwise {
            channels: c,
            kh: k,
            kw: k,
        },
        LayerKind::Linear { d_in, d_out } => WeightLayout::LinearInOut { d_in, d_out },
    })
}

/// Block sizes of `space` that `spec` allows (a depthwise layer always uses its kernel width).
pub fn allowed_blocks(spec: &LayerSpec, space: &SparseSpace) -> Vec<usize> {
    match layout(spec) {
        None => vec![],
        Some(WeightLayout::Depthwise { kw, .. }) => vec![kw],
        Some(l) => {
            let (_, dim) = l.reduction_dim();
            space
                .block_sizes
                .iter()
                .copied()
                .filter(|b| dim % b == 0)
                .collect()
        }
    }
}

/// A random sparse configuration of `arch` (TinyFormer: each choice module gets a random
/// sparsity and block size).
pub fn sample(arch: &TinyFormerArch, space: &SparseSpace, rng: &mut StdRng) -> SparseConfig {
    let mut out = SparseConfig::new();
    for spec in arch.layers() {
        let blocks = allowed_blocks(&spec, space);
        if blocks.is_empty() {
            continue;
        }
        let block = blocks[rng.random_range(0..blocks.len())];
        let sparsity = space.sparsities[rng.random_range(0..space.sparsities.len())];
        if sparsity > 0.0 {
            out.insert(spec.name.clone(), LayerSparsity { block, sparsity });
        }
    }
    out
}

/// Weights that stay nonzero (plus biases and norms): the capacity Alg. 1 bounds.
pub fn effective_parameters(arch: &TinyFormerArch, sparse: &SparseConfig) -> usize {
    let pruned: usize = arch
        .layers()
        .iter()
        .filter_map(|l| {
            sparse
                .get(&l.name)
                .map(|s| (l.kind.weights() as f64 * s.sparsity).round() as usize)
        })
        .sum();
    arch.parameters() - pruned
}

/// Global weight sparsity of the prunable layers.
pub fn global_sparsity(arch: &TinyFormerArch, sparse: &SparseConfig) -> f64 {
    let (mut total, mut zero) = (0.0, 0.0);
    for l in arch.layers() {
        if layout(&l).is_some() {
            let w = l.kind.weights() as f64;
            total += w;
            zero += sparse.get(&l.name).map_or(0.0, |s| s.sparsity) * w;
        }
    }
    if total == 0.0 { 0.0 } else { zero / total }
}
