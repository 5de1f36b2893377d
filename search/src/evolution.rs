//! EvolutionarySample of Alg. 2 and Alg. 3: random samples until the population is filled, then
//! mutations of a parent drawn from the better half of what has been evaluated.

use rand::Rng;
use rand::rngs::StdRng;
use training::tinyformer::{PathChoice, SupernetConfig};

use crate::config::{SparseSpace, SupernetSpace};
use crate::sparsity::{SparseConfig, allowed_blocks};

/// Probability that one gene of a parent is resampled.
const MUTATION: f64 = 0.3;

/// Index of a parent among `scored` (index, fitness): uniform over the better half.
pub fn parent(scored: &[(usize, f64)], rng: &mut StdRng) -> Option<usize> {
    if scored.is_empty() {
        return None;
    }
    let mut s = scored.to_vec();
    s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top = s.len().div_ceil(2);
    Some(s[rng.random_range(0..top)].0)
}

pub(crate) fn maybe<T: Copy>(rng: &mut StdRng, current: T, choices: &[T]) -> T {
    if rng.random_bool(MUTATION) {
        choices[rng.random_range(0..choices.len())]
    } else {
        current
    }
}

/// A mutated supernet configuration.
pub fn mutate_supernet(
    p: &SupernetConfig,
    space: &SupernetSpace,
    rng: &mut StdRng,
) -> SupernetConfig {
    SupernetConfig {
        channels: p
            .channels
            .iter()
            .zip(&space.dims)
            .map(|(&c, d)| maybe(rng, c, d))
            .collect(),
        mobilenets: maybe(rng, p.mobilenets, &space.mobilenets),
        transformers: maybe(rng, p.transformers, &space.transformers),
        heads: maybe(rng, p.heads, &space.heads),
        last_linear: maybe(rng, p.last_linear, &space.last_linear),
        ..p.clone()
    }
}

/// A mutated sparse single path: module choices and per-layer pruning settings.
pub fn mutate_candidate(
    sup: &SupernetConfig,
    path: &PathChoice,
    sparse: &SparseConfig,
    space: &SparseSpace,
    rng: &mut StdRng,
) -> (PathChoice, SparseConfig) {
    let ch = &sup.choices;
    let idx = |n: usize| (0..n).collect::<Vec<_>>();
    let mut p = path.clone();
    for s in &mut p.stages {
        s.downsample = maybe(rng, s.downsample, &idx(ch.downsample.len()));
        for m in &mut s.mobilenets {
            *m = maybe(rng, *m, &idx(ch.expansions.len()));
        }
        for t in &mut s.transformers {
            *t = maybe(rng, *t, &idx(ch.mlp_ratios.len()));
        }
    }
    p.pooling = maybe(rng, p.pooling, &idx(ch.pooling.len()));
    let Ok(arch) = sup.arch(&p) else {
        return (path.clone(), sparse.clone());
    };
    let mut out = SparseConfig::new();
    for spec in arch.layers() {
        let blocks = allowed_blocks(&spec, space);
        if blocks.is_empty() {
            continue;
        }
        let keep = sparse
            .get(&spec.name)
            .filter(|s| blocks.contains(&s.block) && !rng.random_bool(MUTATION));
        let chosen = match keep {
            Some(s) => *s,
            None if !sparse.contains_key(&spec.name) && !rng.random_bool(MUTATION) => continue,
            None => crate::sparsity::LayerSparsity {
                block: blocks[rng.random_range(0..blocks.len())],
                sparsity: space.sparsities[rng.random_range(0..space.sparsities.len())],
            },
        };
        if chosen.sparsity > 0.0 {
            out.insert(spec.name.clone(), chosen);
        }
    }
    (p, out)
}
