//! The KWT search space: sampling and mutating (shape, per-layer sparsity) candidates, their
//! prunable layers and capacity, and Alg. 1's acceptance analysis on this space.

use pruning::{LayerInfo, WeightLayout};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use training::{KwtConfig, NormPlacement};

use super::config::KwtSpace;
use super::cost::evaluate_kwt;
use crate::config::{AnalysisConfig, SparseSpace};
use crate::cost_graph::Limits;
use crate::error::Result;
use crate::evolution::maybe;
use crate::space::{Acceptance, SmallestCost};
use crate::sparsity::{LayerSparsity, SparseConfig};

/// What the data fixes: input size and classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    pub frames: usize,
    pub features: usize,
    pub classes: usize,
}

fn pick<T: Copy>(rng: &mut StdRng, v: &[T]) -> T {
    v[rng.random_range(0..v.len())]
}

/// A KWT of the given shape (post-norm, no distillation token, as the paper's KWT-1..3).
pub fn model(
    input: InputShape,
    dim: usize,
    depth: usize,
    heads: usize,
    dim_head: usize,
    mlp_dim: usize,
) -> KwtConfig {
    KwtConfig {
        frames: input.frames,
        features: input.features,
        classes: input.classes,
        dim,
        depth,
        heads,
        dim_head,
        mlp_dim,
        dropout: 0.0,
        norm: NormPlacement::PostNorm,
        distill_token: false,
    }
}

/// A random KWT of `space`.
pub fn sample_model(space: &KwtSpace, input: InputShape, rng: &mut StdRng) -> KwtConfig {
    let dim = pick(rng, &space.dims);
    model(
        input,
        dim,
        pick(rng, &space.depths),
        pick(rng, &space.heads),
        pick(rng, &space.dim_heads),
        dim * pick(rng, &space.mlp_ratios),
    )
}

/// Every Linear layer of a KWT of `cfg` with its path and layout, in the order of
/// `pruning::kwt_layers` (what a pruning plan is checked against).
pub fn layer_infos(cfg: &KwtConfig) -> Vec<LayerInfo> {
    let lin = |name: String, d_in: usize, d_out: usize| LayerInfo {
        name,
        layout: WeightLayout::LinearInOut { d_in, d_out },
    };
    let inner = cfg.heads * cfg.dim_head;
    let mut out = vec![lin("embed".into(), cfg.features, cfg.dim)];
    for i in 0..cfg.depth {
        out.push(lin(format!("blocks.{i}.attn.qkv"), cfg.dim, 3 * inner));
        out.push(lin(format!("blocks.{i}.attn.out"), inner, cfg.dim));
        out.push(lin(format!("blocks.{i}.mlp.fc1"), cfg.dim, cfg.mlp_dim));
        out.push(lin(format!("blocks.{i}.mlp.fc2"), cfg.mlp_dim, cfg.dim));
    }
    out.push(lin("head.fc".into(), cfg.dim, cfg.classes));
    out
}

/// Whether the search prunes layer `name`. The attention projections stay dense: the exporter
/// runs them around the fused attention kernel, which reads dense weights (as in the TinyFormer
/// search).
pub fn prunable(name: &str) -> bool {
    !(name.ends_with(".qkv") || name.ends_with(".out"))
}

/// Block sizes of `space` that a layer with `d_in` inputs allows (blocks run along the inputs).
fn allowed_blocks(d_in: usize, space: &SparseSpace) -> Vec<usize> {
    space
        .block_sizes
        .iter()
        .copied()
        .filter(|&b| d_in.is_multiple_of(b))
        .collect()
}

fn d_in(info: &LayerInfo) -> usize {
    info.layout.reduction_dim().1
}

/// A random per-layer sparsity of `cfg`: each prunable layer gets a sparsity and block size.
pub fn sample_sparsity(cfg: &KwtConfig, space: &SparseSpace, rng: &mut StdRng) -> SparseConfig {
    let mut out = SparseConfig::new();
    for info in layer_infos(cfg).iter().filter(|l| prunable(&l.name)) {
        let blocks = allowed_blocks(d_in(info), space);
        if blocks.is_empty() {
            continue;
        }
        let block = pick(rng, &blocks);
        let sparsity = pick(rng, &space.sparsities);
        if sparsity > 0.0 {
            out.insert(info.name.clone(), LayerSparsity { block, sparsity });
        }
    }
    out
}

/// A mutated candidate: each shape gene and each layer's pruning setting is resampled with the
/// evolution's mutation probability; layers new to a deeper model are sampled afresh.
pub fn mutate(
    parent: &KwtConfig,
    sparse: &SparseConfig,
    space: &KwtSpace,
    sparse_space: &SparseSpace,
    rng: &mut StdRng,
) -> (KwtConfig, SparseConfig) {
    let ratio = (parent.mlp_dim / parent.dim.max(1)).max(1);
    let dim = maybe(rng, parent.dim, &space.dims);
    let child = model(
        InputShape {
            frames: parent.frames,
            features: parent.features,
            classes: parent.classes,
        },
        dim,
        maybe(rng, parent.depth, &space.depths),
        maybe(rng, parent.heads, &space.heads),
        maybe(rng, parent.dim_head, &space.dim_heads),
        dim * maybe(rng, ratio, &space.mlp_ratios),
    );
    let fresh = sample_sparsity(&child, sparse_space, rng);
    let mut out = SparseConfig::new();
    for info in layer_infos(&child).iter().filter(|l| prunable(&l.name)) {
        let blocks = allowed_blocks(d_in(info), sparse_space);
        let kept = sparse
            .get(&info.name)
            .filter(|s| blocks.contains(&s.block) && !rng.random_bool(0.3))
            .copied();
        let chosen = match kept {
            Some(s) => Some(s),
            None if sparse.contains_key(&info.name) || !parent_has(parent, &info.name) => {
                fresh.get(&info.name).copied()
            }
            // a layer the parent kept dense stays dense unless mutated
            None if rng.random_bool(0.3) => fresh.get(&info.name).copied(),
            None => None,
        };
        if let Some(s) = chosen {
            out.insert(info.name.clone(), s);
        }
    }
    (child, out)
}

fn parent_has(parent: &KwtConfig, name: &str) -> bool {
    layer_infos(parent).iter().any(|l| l.name == name)
}

/// The per-layer sparsity a pruning configuration (a KWT search's `best/sparsity.ron`, or the
/// `pruning` section of a `nas prune` config) gives a KWT of `cfg`, keyed as the cost graph
/// reads it. Attention projections must stay dense: the deployed graph costs them dense.
pub fn sparse_from_pruning(
    cfg: &KwtConfig,
    pruning: &pruning::PruningConfig,
) -> std::result::Result<SparseConfig, String> {
    let infos = layer_infos(cfg);
    if let Some(name) = pruning
        .layers
        .keys()
        .find(|n| !infos.iter().any(|l| &l.name == *n))
    {
        return Err(format!(
            "layer `{name}` is not a layer of this KWT (known: {})",
            infos
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut out = SparseConfig::new();
    for info in &infos {
        let rule = pruning.layers.get(&info.name).unwrap_or(&pruning.default);
        if rule.sparsity <= 0.0 {
            continue;
        }
        if !prunable(&info.name) {
            return Err(format!(
                "layer `{}` is {:.0} % sparse, but attention projections are costed dense (the                  fused attention kernel reads dense weights); cost the quantized model instead                  with --int8",
                info.name,
                100.0 * rule.sparsity
            ));
        }
        out.insert(
            info.name.clone(),
            LayerSparsity {
                block: rule.block,
                sparsity: rule.sparsity,
            },
        );
    }
    Ok(out)
}

/// Trainable parameters of a KWT of `cfg` (the input standardization is not trained).
pub fn parameters(cfg: &KwtConfig) -> usize {
    let (d, m, i) = (cfg.dim, cfg.mlp_dim, cfg.heads * cfg.dim_head);
    let tokens = cfg.frames + cfg.extra_tokens();
    let block = d * 3 * i + (i * d + d) + 4 * d + (d * m + m) + (m * d + d);
    let head = 2 * d + d * cfg.classes + cfg.classes;
    let heads = if cfg.distill_token { 2 } else { 1 };
    cfg.features * d + d + cfg.extra_tokens() * d + tokens * d + cfg.depth * block + heads * head
}

/// Parameters left after pruning: the capacity Alg. 1 bounds.
pub fn effective_parameters(cfg: &KwtConfig, sparse: &SparseConfig) -> usize {
    let pruned: usize = layer_infos(cfg)
        .iter()
        .filter_map(|l| {
            sparse
                .get(&l.name)
                .map(|s| (l.layout.len() as f64 * s.sparsity).round() as usize)
        })
        .sum();
    parameters(cfg) - pruned
}

/// Global weight sparsity of the prunable layers.
pub fn global_sparsity(cfg: &KwtConfig, sparse: &SparseConfig) -> f64 {
    let (mut total, mut zero) = (0.0, 0.0);
    for l in layer_infos(cfg).iter().filter(|l| prunable(&l.name)) {
        let w = l.layout.len() as f64;
        total += w;
        zero += sparse.get(&l.name).map_or(0.0, |s| s.sparsity) * w;
    }
    if total == 0.0 { 0.0 } else { zero / total }
}

/// Alg. 1 on the KWT space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KwtAnalysis {
    pub space: KwtSpace,
    pub sampled: usize,
    /// Samples within the memory and storage limits.
    pub evaluated: usize,
    /// Of those, samples whose effective parameter count lies in [lambda_lo, lambda_up] x the
    /// memory limit.
    pub accepted: usize,
    pub probability: f64,
    pub params: Vec<usize>,
    /// The smallest cost any sample reached (none in states written before it was kept).
    #[serde(default)]
    pub smallest: Option<SmallestCost>,
}

/// Alg. 1: samples (KWT, sparsity) pairs and counts the acceptable ones.
pub fn analyse(
    space: &KwtSpace,
    sparse: &SparseSpace,
    cfg: &AnalysisConfig,
    input: InputShape,
    target: &cost::target::Target,
    limits: &Limits,
    rng: &mut StdRng,
) -> Result<KwtAnalysis> {
    let mut tally = Acceptance::new(cfg, limits);
    for _ in 0..cfg.samples {
        let m = sample_model(space, input, rng);
        let sp = sample_sparsity(&m, sparse, rng);
        let (res, _) = evaluate_kwt(&m, &sp, target, limits)?;
        tally.add(&res, limits, || effective_parameters(&m, &sp));
    }
    Ok(KwtAnalysis {
        space: space.clone(),
        sampled: cfg.samples,
        evaluated: tally.evaluated,
        accepted: tally.accepted,
        probability: tally.probability(),
        params: tally.params,
        smallest: tally.smallest,
    })
}

/// Eq. 1-3 on the embedding and per-head dimensions (multiples of 4); depths, heads and MLP
/// ratios stay, as the paper keeps the module counts.
pub fn adjust_space(space: &KwtSpace, a: &KwtAnalysis) -> KwtSpace {
    let adjust = |xs: &[usize]| crate::space::adjust_values(xs, a.probability, &a.params, 4);
    KwtSpace {
        dims: adjust(&space.dims),
        dim_heads: adjust(&space.dim_heads),
        ..space.clone()
    }
}
