//! SuperNAS's search space: sampling S_sup, Alg. 1 (acceptance probability of a space under
//! the memory and storage limits) and the Eq. 1-3 adjustment of its dimension settings.

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use training::tinyformer::SupernetConfig;

use crate::config::{AnalysisConfig, SparseSpace, SupernetSpace};
use crate::cost_graph::{Limits, evaluate};
use crate::error::Result;
use crate::sparsity::{effective_parameters, sample};

fn pick<T: Copy>(rng: &mut StdRng, v: &[T]) -> T {
    v[rng.random_range(0..v.len())]
}

/// A random supernet of the space for `input` images and `classes` classes.
pub fn sample_supernet(
    space: &SupernetSpace,
    input: [usize; 3],
    classes: usize,
    rng: &mut StdRng,
) -> SupernetConfig {
    SupernetConfig {
        input,
        classes,
        channels: space.dims.iter().map(|d| pick(rng, d)).collect(),
        mobilenets: pick(rng, &space.mobilenets),
        transformers: pick(rng, &space.transformers),
        heads: pick(rng, &space.heads),
        last_linear: pick(rng, &space.last_linear),
        choices: space.choices.clone(),
    }
}

/// Alg. 1's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub space: SupernetSpace,
    pub sampled: usize,
    /// n_eval: samples within the memory and storage limits.
    pub evaluated: usize,
    /// n_accept: of those, samples whose effective parameter count lies in
    /// [lambda_lo, lambda_up] x the memory limit.
    pub accepted: usize,
    pub probability: f64,
    /// Effective parameter counts of the evaluated samples.
    pub params: Vec<usize>,
    /// The smallest cost any sample reached (none in states written before it was kept).
    #[serde(default)]
    pub smallest: Option<SmallestCost>,
}

/// The smallest peak SRAM, flash and latency over a set of sampled models (each minimum on its
/// own; no one model need reach all three), for the "cannot meet the budget" message.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SmallestCost {
    pub sram_bytes: u64,
    pub flash_bytes: u64,
    pub latency_ms: f64,
}

impl SmallestCost {
    fn of(res: &crate::cost_graph::Resources) -> Self {
        Self {
            sram_bytes: res.sram_bytes,
            flash_bytes: res.flash_bytes,
            latency_ms: res.latency_ms,
        }
    }

    fn min(self, o: Self) -> Self {
        Self {
            sram_bytes: self.sram_bytes.min(o.sram_bytes),
            flash_bytes: self.flash_bytes.min(o.flash_bytes),
            latency_ms: self.latency_ms.min(o.latency_ms),
        }
    }

    /// The smallest over several analyses.
    pub fn over(all: impl IntoIterator<Item = Option<Self>>) -> Option<Self> {
        all.into_iter().flatten().reduce(Self::min)
    }
}

/// The error for a space none of whose analysed samples fits the memory and storage limits:
/// it names the budget, the smallest cost reached and what to change.
pub fn budget_unreachable(
    models: &str,
    target: &cost::target::Target,
    limits: &Limits,
    smallest: Option<SmallestCost>,
    advice: &str,
) -> crate::error::SearchError {
    let reached = match smallest {
        Some(s) => format!(
            "the smallest reached were SRAM {} B, flash {} B and latency {:.2} ms",
            s.sram_bytes, s.flash_bytes, s.latency_ms
        ),
        None => "no model was sampled".into(),
    };
    let latency = limits
        .latency_ms
        .map(|ms| format!(", latency {ms} ms"))
        .unwrap_or_default();
    crate::error::SearchError::Search(format!(
        "no sampled {models} of the space fits the budget of {}: SRAM {} B, flash {} B{latency}; \
         {reached} ({advice})",
        target.name, limits.sram_bytes, limits.flash_bytes
    ))
}

/// Alg. 1's tally: samples within the memory and storage limits, and those whose effective
/// parameter count lies in [lambda_lo, lambda_up] x the memory limit.
#[derive(Debug, Default)]
pub struct Acceptance {
    lo: f64,
    hi: f64,
    pub evaluated: usize,
    pub accepted: usize,
    pub params: Vec<usize>,
    pub smallest: Option<SmallestCost>,
}

impl Acceptance {
    pub fn new(cfg: &AnalysisConfig, limits: &Limits) -> Self {
        Self {
            lo: cfg.lambda_lo * limits.sram_bytes as f64,
            hi: cfg.lambda_up * limits.sram_bytes as f64,
            ..Default::default()
        }
    }

    /// Counts one sample. Alg. 1 checks memory and storage only; latency is the search's own
    /// extra limit.
    pub fn add(
        &mut self,
        res: &crate::cost_graph::Resources,
        limits: &Limits,
        params: impl FnOnce() -> usize,
    ) {
        let this = SmallestCost::of(res);
        self.smallest = Some(self.smallest.map_or(this, |s| s.min(this)));
        if res.sram_bytes <= limits.sram_bytes && res.flash_bytes <= limits.flash_bytes {
            self.evaluated += 1;
            let n = params();
            self.params.push(n);
            if (self.lo..=self.hi).contains(&(n as f64)) {
                self.accepted += 1;
            }
        }
    }

    pub fn probability(&self) -> f64 {
        if self.evaluated == 0 {
            0.0
        } else {
            self.accepted as f64 / self.evaluated as f64
        }
    }
}

/// Alg. 1: samples (supernet, path, sparsity) triples and counts the acceptable ones.
#[allow(clippy::too_many_arguments)]
pub fn analyse(
    space: &SupernetSpace,
    sparse: &SparseSpace,
    cfg: &AnalysisConfig,
    input: [usize; 3],
    classes: usize,
    target: &cost::target::Target,
    limits: &Limits,
    rng: &mut StdRng,
) -> Result<Analysis> {
    let mut tally = Acceptance::new(cfg, limits);
    for _ in 0..cfg.samples {
        let sup = sample_supernet(space, input, classes, rng);
        let arch = sup.arch(&sup.sample_path(rng))?;
        let sp = sample(&arch, sparse, rng);
        let (res, _) = evaluate(&arch, &sp, target, limits)?;
        tally.add(&res, limits, || effective_parameters(&arch, &sp));
    }
    Ok(Analysis {
        space: space.clone(),
        sampled: cfg.samples,
        evaluated: tally.evaluated,
        accepted: tally.accepted,
        probability: tally.probability(),
        params: tally.params,
        smallest: tally.smallest,
    })
}

/// Eq. 1-3: `y = round(k (x - mean(x)) + b)`, `k = n_accept / n_eval + 0.1`,
/// `b = x_min + (mean(N) - N_min) / (N_max - N_min) (x_max - x_min)`, applied to one dimension
/// setting's candidates. Results are rounded to multiples of `multiple` (at least one
/// multiple), deduplicated and sorted.
pub fn adjust_dims(xs: &[usize], a: &Analysis, multiple: usize) -> Vec<usize> {
    adjust_values(xs, a.probability, &a.params, multiple)
}

/// [`adjust_dims`] from an analysis' acceptance probability and effective parameter counts
/// (any search space's).
pub fn adjust_values(
    xs: &[usize],
    probability: f64,
    params: &[usize],
    multiple: usize,
) -> Vec<usize> {
    if xs.is_empty() || params.is_empty() {
        return xs.to_vec();
    }
    let k = probability + 0.1;
    let mean_x = xs.iter().sum::<usize>() as f64 / xs.len() as f64;
    let (x_min, x_max) = (
        *xs.iter().min().unwrap_or(&0) as f64,
        *xs.iter().max().unwrap_or(&0) as f64,
    );
    let n_min = *params.iter().min().unwrap_or(&0) as f64;
    let n_max = *params.iter().max().unwrap_or(&0) as f64;
    let n_mean = params.iter().sum::<usize>() as f64 / params.len() as f64;
    let frac = if n_max > n_min {
        (n_mean - n_min) / (n_max - n_min)
    } else {
        0.5
    };
    let b = x_min + frac * (x_max - x_min);
    let m = multiple.max(1) as f64;
    let mut out: Vec<usize> = xs
        .iter()
        .map(|&x| {
            let y = (k * (x as f64 - mean_x) + b).round();
            ((y / m).round().max(1.0) * m) as usize
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The adjusted space: only the dimension settings change (heads and module counts stay, as
/// the paper prescribes); dimensions stay multiples of every head count.
pub fn adjust_space(space: &SupernetSpace, a: &Analysis) -> SupernetSpace {
    let lcm_heads = space.heads.iter().fold(4, |acc, &h| lcm(acc, h));
    SupernetSpace {
        dims: space
            .dims
            .iter()
            .map(|d| adjust_dims(d, a, lcm_heads))
            .collect(),
        last_linear: adjust_dims(&space.last_linear, a, 4),
        ..space.clone()
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq1_to_3_pull_dimensions_towards_the_accepted_capacity() {
        let a = Analysis {
            space: SupernetSpace {
                heads: vec![1],
                mobilenets: vec![1],
                transformers: vec![1],
                dims: vec![],
                last_linear: vec![],
                choices: Default::default(),
            },
            sampled: 10,
            evaluated: 10,
            accepted: 3,
            probability: 0.3,
            // Mean capacity at a quarter of the observed range: b = x_min + 0.25 (x_max - x_min).
            params: vec![0, 0, 0, 400],
            smallest: None,
        };
        // k = 0.4, mean x = 160, b = 96 + 0.25 * 160 = 136:
        // 96 -> 110.4, 128 -> 123.2, 256 -> 174.4.
        let y = adjust_dims(&[96, 128, 256], &a, 1);
        assert_eq!(y, vec![110, 123, 174]);
        let y4 = adjust_dims(&[96, 128, 256], &a, 4);
        assert!(y4.iter().all(|v| v % 4 == 0));
        // A shrinking slope: the adjusted range is narrower than the original.
        assert!(y[2] - y[0] < 256 - 96);
    }
}
