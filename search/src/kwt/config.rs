//! The KWT search configuration (RON): speech data, the target budget, the KWT space, S_spa,
//! Alg. 1's settings and the two training stages.

use std::path::Path;

use serde::{Deserialize, Serialize};
use training::{DataSpec, TrainerConfig};

use crate::config::{AnalysisConfig, BudgetConfig, SparseSpace};
use crate::error::Result;

/// The KWT hyper-parameters the search samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KwtSpace {
    /// Embedding dimension candidates (multiples of 4, the largest pruning block).
    pub dims: Vec<usize>,
    pub depths: Vec<usize>,
    pub heads: Vec<usize>,
    /// Per-head dimension candidates (multiples of 4).
    pub dim_heads: Vec<usize>,
    /// MLP width as a multiple of the embedding dimension.
    pub mlp_ratios: Vec<usize>,
}

/// The selection stage: evolutionary sampling and short training of candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateStage {
    /// Candidates trained.
    pub iterations: usize,
    /// Random candidates before mutation of the better half starts.
    pub population: usize,
    /// Each candidate's training run (its `seed` is replaced by one derived from the search's).
    pub trainer: TrainerConfig,
    /// Optimizer steps between AGP mask updates.
    pub prune_frequency: usize,
}

/// The compression stage: AGP pruning and fine-tuning of the winner, then PTQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionStage {
    pub trainer: TrainerConfig,
    pub prune_frequency: usize,
    /// Training clips observed to choose the integer graph's activation scales.
    #[serde(default = "default_calibration")]
    pub calibration_samples: usize,
}

fn default_calibration() -> usize {
    256
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KwtSearchConfig {
    pub seed: u64,
    /// A Speech Commands folder or synthetic key words, as `nas train` reads them.
    pub data: DataSpec,
    pub budget: BudgetConfig,
    pub kwt_space: KwtSpace,
    pub sparse_space: SparseSpace,
    pub analysis: AnalysisConfig,
    pub candidates: CandidateStage,
    pub compression: CompressionStage,
}

/// Whether the RON text is a KWT search configuration (it has a `kwt_space` field) rather than
/// a TinyFormer one.
pub fn is_kwt_config(text: &str) -> bool {
    has_top_level_field(text, "kwt_space")
}

/// Whether the RON text's top-level struct has the field `name`. Text that does not parse is
/// told apart by `name:` outside line comments, so that its syntax error comes from the
/// loader it was written for.
pub fn has_top_level_field(text: &str, name: &str) -> bool {
    match ron::from_str::<ron::Value>(text) {
        Ok(ron::Value::Map(m)) => m
            .keys()
            .any(|k| matches!(k, ron::Value::String(s) if s == name)),
        Ok(_) => false,
        Err(_) => text.lines().any(|l| {
            let code = l.split("//").next().unwrap_or("");
            code.split(name)
                .skip(1)
                .any(|rest| rest.trim_start().starts_with(':'))
        }),
    }
}

impl KwtSearchConfig {
    /// Reads and validates a config; relative paths inside it are resolved against the
    /// current directory.
    pub fn load(path: &Path) -> Result<Self> {
        crate::config::load_ron(path, Self::validate)
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let s = &self.kwt_space;
        let lists: [(&str, &[usize], usize); 5] = [
            ("dims", &s.dims, 4),
            ("depths", &s.depths, 1),
            ("heads", &s.heads, 1),
            ("dim_heads", &s.dim_heads, 4),
            ("mlp_ratios", &s.mlp_ratios, 1),
        ];
        for (name, values, multiple) in lists {
            if values.is_empty() {
                return Err(format!("kwt_space.{name} needs at least one candidate"));
            }
            if let Some(v) = values.iter().find(|&&v| v == 0 || v % multiple != 0) {
                return Err(format!(
                    "kwt_space.{name}: {v} must be a positive multiple of {multiple}"
                ));
            }
        }
        self.sparse_space.validate()?;
        self.analysis.validate()?;
        if self.candidates.iterations == 0 {
            return Err("candidates.iterations must be > 0".into());
        }
        for (name, freq, t) in [
            (
                "candidates",
                self.candidates.prune_frequency,
                &self.candidates.trainer,
            ),
            (
                "compression",
                self.compression.prune_frequency,
                &self.compression.trainer,
            ),
        ] {
            if freq == 0 {
                return Err(format!("{name}.prune_frequency must be > 0"));
            }
            if t.epochs == 0 || t.batch_size == 0 {
                return Err(format!("{name}.trainer: epochs and batch_size must be > 0"));
            }
            if t.distillation.is_some() {
                return Err(format!(
                    "{name}.trainer.distillation: not supported in a search (candidates have no \
                     distillation token)"
                ));
            }
        }
        if self.compression.calibration_samples == 0 {
            return Err("compression.calibration_samples must be > 0".into());
        }
        Ok(())
    }
}
