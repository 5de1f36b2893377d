//! The search configuration (RON): data, target budget, TinyFormer's two search spaces
//! (S_sup of Table I and S_spa), and the budgets of each stage. Every random choice of a search
//! derives from `seed`.

use std::path::{Path, PathBuf};

use cost::tiles::TilePolicy;
use serde::{Deserialize, Serialize};
use training::tinyformer::ChoiceSpace;

use crate::error::{Result, SearchError};

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ImageData {
    /// MNIST idx files (`train-images-idx3-ubyte[.gz]`, ...), e.g. Debian's
    /// `/usr/share/datasets/fashion-mnist`.
    FashionMnist { dir: PathBuf },
    /// CIFAR-10 binary batches (`data_batch_1.bin` ... `test_batch.bin`).
    Cifar10 { dir: PathBuf },
    /// Key-word spotting: a speech data set as `nas train` describes it (a Speech Commands
    /// folder or key words synthesized in Rust), each clip's MFCC spectrogram (frames x
    /// coefficients, 98 x 40 by default) one single-channel image. Its own train / validation /
    /// test lists are used; the sample counts below cap them (a seeded random subset).
    Speech(training::speech_data::DataSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub source: ImageData,
    /// Training images used (a class-balanced subset; `None`: all).
    #[serde(default)]
    pub train_samples: Option<usize>,
    /// Images held out of the training set to rank candidates.
    pub valid_samples: usize,
    /// Test images the final model is measured on (`None`: all).
    #[serde(default)]
    pub test_samples: Option<usize>,
}

/// The hardware budget: a target file, optionally tightened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// A target description (configs/targets/*.ron).
    pub target: PathBuf,
    /// Peak SRAM limit in bytes (default: the target's arena limit).
    #[serde(default)]
    pub sram_bytes: Option<u64>,
    /// Flash limit in bytes (default: the target's flash).
    #[serde(default)]
    pub flash_bytes: Option<u64>,
    /// Latency limit in milliseconds (default: none).
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Deploy with the Cortex-M DSP kernels' operand tiles (on targets with the DSP
    /// extension): faster Linear and attention layers for more SRAM (a 4-row tile per Linear,
    /// 4 rows of scores, queries and probabilities per attention). `true` (default): every
    /// layer that can; `"auto"`: only where the tile does not raise the candidate's peak SRAM
    /// (`nas export --operand-tiles auto`); `false`: none (`--operand-tiles off`).
    #[serde(default)]
    pub operand_tiles: TilePolicy,
}

/// S_sup (TinyFormer Table I): the supernet hyper-parameters SuperNAS samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupernetSpace {
    pub heads: Vec<usize>,
    pub mobilenets: Vec<usize>,
    pub transformers: Vec<usize>,
    /// Embedding dimension candidates per DoT stage (`dims[i]` for stage `i`).
    pub dims: Vec<Vec<usize>>,
    pub last_linear: Vec<usize>,
    /// The single-path module choices inside every supernet.
    #[serde(default)]
    pub choices: ChoiceSpace,
}

/// S_spa's pruning part: per layer block size and sparsity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseSpace {
    pub block_sizes: Vec<usize>,
    pub sparsities: Vec<f64>,
}

/// Reads a RON config and checks it with `validate`; errors name the file.
pub(crate) fn load_ron<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl Fn(&T) -> std::result::Result<(), String>,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| SearchError::io(path, e))?;
    let cfg: T = ron::from_str(&text).map_err(|e| SearchError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    validate(&cfg).map_err(|message| SearchError::Config {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(cfg)
}

impl SparseSpace {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.block_sizes.is_empty() || self.block_sizes.iter().any(|b| ![2, 4].contains(b)) {
            return Err(format!(
                "sparse_space.block_sizes = {:?}: choose from 2 and 4",
                self.block_sizes
            ));
        }
        if self.sparsities.is_empty() || self.sparsities.iter().any(|r| !(0.0..1.0).contains(r)) {
            return Err(format!(
                "sparse_space.sparsities = {:?}: each must be in [0, 1)",
                self.sparsities
            ));
        }
        Ok(())
    }
}

impl BudgetConfig {
    /// The limits on `target` (the target's own where the budget does not tighten them).
    pub fn limits(&self, target: &cost::target::Target) -> crate::cost_graph::Limits {
        crate::cost_graph::Limits {
            sram_bytes: self.sram_bytes.unwrap_or(target.arena_limit()),
            flash_bytes: self.flash_bytes.unwrap_or(target.flash_bytes),
            latency_ms: self.latency_ms,
            operand_tiles: self.operand_tiles,
        }
    }
}

/// Alg. 1 and the Eq. 1-3 adjustment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// T_sup: sampled (supernet, sparse path) pairs.
    pub samples: usize,
    pub lambda_lo: f64,
    pub lambda_up: f64,
    /// Acceptance probability a space needs (the paper's 90 %).
    pub accept: f64,
    /// Adjustment rounds tried while the probability is below `accept`.
    pub max_adjustments: usize,
}

impl AnalysisConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.lambda_lo > 0.0 && self.lambda_lo < self.lambda_up) {
            return Err("analysis: need 0 < lambda_lo < lambda_up".into());
        }
        if !(0.0..=1.0).contains(&self.accept) {
            return Err("analysis.accept must be in [0, 1]".into());
        }
        Ok(())
    }
}

/// Optimizer settings shared by every training run of the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub label_smoothing: f64,
    /// Parts of each batch trained on their own threads (`training::shards`; 1 when absent):
    /// about 1.4x faster searches on 2 CPU cores with 2. Part of the result, as batch_size is.
    #[serde(default = "one")]
    pub batch_shards: usize,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.batch_size == 0 || self.lr <= 0.0 || !(0.0..1.0).contains(&self.label_smoothing) {
            return Err("train: batch_size > 0, lr > 0 and label_smoothing in [0, 1)".into());
        }
        if self.batch_shards == 0 || self.batch_shards > self.batch_size {
            return Err("train: batch_shards must be in [1, batch_size]".into());
        }
        Ok(())
    }
}

/// Alg. 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperNasConfig {
    /// T_i: supernets sampled.
    pub iterations: usize,
    /// Random samples before evolution starts (mutating the best so far).
    pub population: usize,
    /// Paths sampled by TestSupernet (the paper's 100).
    pub test_paths: usize,
    /// SPOS training steps of each supernet.
    pub train_steps: usize,
    /// T_j: sparse paths evaluated per supernet.
    pub paths: usize,
}

/// Alg. 3 and the compression stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseNasConfig {
    /// T_spa: sparse single-path candidates.
    pub iterations: usize,
    pub population: usize,
    /// Training steps of a candidate before its iterative pruning.
    pub train_steps: usize,
    /// AGP steps (pruning every `prune_frequency` steps, fine-tuning between).
    pub prune_steps: usize,
    pub prune_frequency: usize,
    /// Compression stage: AGP and fine-tuning steps of the winner.
    pub final_prune_steps: usize,
    pub final_finetune_steps: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    pub seed: u64,
    pub data: DataConfig,
    pub budget: BudgetConfig,
    pub supernet_space: SupernetSpace,
    pub sparse_space: SparseSpace,
    pub analysis: AnalysisConfig,
    pub train: TrainConfig,
    pub supernas: SuperNasConfig,
    pub sparsenas: SparseNasConfig,
    /// Steps between checkpoints inside one training run (a supernet's, a candidate's, the
    /// compression stage): a killed search loses at most these steps (500 when absent; 0:
    /// none, the run starts over). May change when resuming: it does not change the result.
    #[serde(default = "default_checkpoint_every_steps")]
    pub checkpoint_every_steps: usize,
}

fn default_checkpoint_every_steps() -> usize {
    500
}

impl SearchConfig {
    /// Top-level settings a resumed search may change (they do not change its result).
    pub const RESUME_FREE_SETTINGS: &[&str] = &["checkpoint_every_steps"];

    /// Reads and validates a config; relative paths inside it are resolved against the
    /// current directory (as the CLI documents).
    pub fn load(path: &Path) -> Result<Self> {
        load_ron(path, Self::validate)
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let s = &self.supernet_space;
        let nonempty = |name: &str, len: usize| {
            if len == 0 {
                Err(format!(
                    "supernet_space.{name} needs at least one candidate"
                ))
            } else {
                Ok(())
            }
        };
        nonempty("heads", s.heads.len())?;
        nonempty("mobilenets", s.mobilenets.len())?;
        nonempty("transformers", s.transformers.len())?;
        nonempty("dims", s.dims.len())?;
        nonempty("last_linear", s.last_linear.len())?;
        for (i, d) in s.dims.iter().enumerate() {
            if d.is_empty() || d.contains(&0) {
                return Err(format!(
                    "supernet_space.dims[{i}] needs at least one candidate, all > 0"
                ));
            }
            for &dim in d {
                if let Some(&h) = s.heads.iter().find(|&&h| h == 0 || dim % h != 0) {
                    return Err(format!(
                        "supernet_space.dims[{i}]: {dim} is not a multiple of heads {h}"
                    ));
                }
            }
        }
        if s.heads.contains(&0) || s.last_linear.contains(&0) {
            return Err("supernet_space.heads and last_linear must be > 0".into());
        }
        self.sparse_space.validate()?;
        self.analysis.validate()?;
        self.train.validate()?;
        if self.supernas.iterations == 0 || self.supernas.paths == 0 {
            return Err("supernas: iterations and paths must be > 0".into());
        }
        if self.sparsenas.iterations == 0 || self.sparsenas.prune_frequency == 0 {
            return Err("sparsenas: iterations and prune_frequency must be > 0".into());
        }
        if self.data.valid_samples == 0 {
            return Err("data.valid_samples must be > 0".into());
        }
        Ok(())
    }
}
