//! TinyFormer's supernet with weight sharing (single-path one-shot, SPOS): every choice block
//! holds all its candidates; a [`PathChoice`] picks one per block. Training samples a path per
//! step and updates only its weights; [`Supernet::extract`] clones a path into a stand-alone
//! [`TinyFormer`] that keeps the supernet's trained weights.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::arch::{DotArch, Downsample, MobileNetArch, Pooling, TinyFormerArch, TransformerArch};
use super::model::{Stage, TinyFormer, new_transformer};
use super::modules::{DownsampleBlock, Head, MobileNetBlock, TransformerModule};
use crate::error::TrainingError;

/// The candidates of each choice block (TinyFormer's S_spa module choices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceSpace {
    pub downsample: Vec<Downsample>,
    /// MobileNetV2 expansion factors (lambda).
    pub expansions: Vec<usize>,
    /// Encoder MLP width as a multiple of the channels.
    pub mlp_ratios: Vec<usize>,
    pub pooling: Vec<Pooling>,
}

impl Default for ChoiceSpace {
    fn default() -> Self {
        Self {
            downsample: vec![Downsample::ConvStride2, Downsample::ConvMaxPool],
            expansions: vec![2, 4, 6],
            mlp_ratios: vec![1, 2],
            pooling: vec![Pooling::SeqPool, Pooling::AvgPool],
        }
    }
}

/// One supernet: a point of TinyFormer's S_sup (Table I).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupernetConfig {
    pub input: [usize; 3],
    pub classes: usize,
    /// Embedding dimension (channels) of each DoT stage.
    pub channels: Vec<usize>,
    /// MobileNetV2 modules per DoT.
    pub mobilenets: usize,
    /// Transformer modules per DoT.
    pub transformers: usize,
    /// Heads of every MHSA.
    pub heads: usize,
    pub last_linear: usize,
    pub choices: ChoiceSpace,
}

/// The candidate picked in one DoT stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StageChoice {
    pub downsample: usize,
    pub mobilenets: Vec<usize>,
    pub transformers: Vec<usize>,
}

/// A single path through the supernet: one candidate index per choice block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PathChoice {
    pub stages: Vec<StageChoice>,
    pub pooling: usize,
}

fn pick(rng: &mut StdRng, n: usize) -> usize {
    rng.random_range(0..n)
}

impl SupernetConfig {
    pub fn validate(&self) -> Result<(), TrainingError> {
        let bad = |m: String| Err(TrainingError::InvalidModel(format!("supernet: {m}")));
        let ch = &self.choices;
        if ch.downsample.is_empty()
            || ch.expansions.is_empty()
            || ch.mlp_ratios.is_empty()
            || ch.pooling.is_empty()
        {
            return bad("every choice list (downsample, expansions, mlp_ratios, pooling) needs at least one candidate".into());
        }
        if self.channels.is_empty() {
            return bad("channels: need at least one DoT stage".into());
        }
        // The candidates only change widths inside a stage; the spatial sizes (what can make
        // a path invalid) depend on the stages and the pooling alone.
        for p in 0..ch.pooling.len() {
            self.arch(&self.first_path(p))?.validate()?;
        }
        Ok(())
    }

    /// The path of every block's first candidate, with pooling candidate `pooling`.
    pub fn first_path(&self, pooling: usize) -> PathChoice {
        PathChoice {
            stages: self
                .channels
                .iter()
                .map(|_| StageChoice {
                    downsample: 0,
                    mobilenets: vec![0; self.mobilenets],
                    transformers: vec![0; self.transformers],
                })
                .collect(),
            pooling,
        }
    }

    /// A uniformly random path (SPOS sampling).
    pub fn sample_path(&self, rng: &mut StdRng) -> PathChoice {
        let ch = &self.choices;
        PathChoice {
            stages: self
                .channels
                .iter()
                .map(|_| StageChoice {
                    downsample: pick(rng, ch.downsample.len()),
                    mobilenets: (0..self.mobilenets)
                        .map(|_| pick(rng, ch.expansions.len()))
                        .collect(),
                    transformers: (0..self.transformers)
                        .map(|_| pick(rng, ch.mlp_ratios.len()))
                        .collect(),
                })
                .collect(),
            pooling: pick(rng, ch.pooling.len()),
        }
    }

    /// The architecture of `path`; an index out of range is an error naming the block.
    pub fn arch(&self, path: &PathChoice) -> Result<TinyFormerArch, TrainingError> {
        let ch = &self.choices;
        let bad = |m: String| Err(TrainingError::InvalidModel(format!("path: {m}")));
        if path.stages.len() != self.channels.len() {
            return bad(format!(
                "{} stages, the supernet has {}",
                path.stages.len(),
                self.channels.len()
            ));
        }
        let get = |list_len: usize, i: usize, what: String| -> Result<usize, TrainingError> {
            if i < list_len {
                Ok(i)
            } else {
                Err(TrainingError::InvalidModel(format!(
                    "path: {what} = {i}, only {list_len} candidates"
                )))
            }
        };
        let mut stages = Vec::new();
        for (i, (s, &c)) in path.stages.iter().zip(&self.channels).enumerate() {
            if s.mobilenets.len() != self.mobilenets || s.transformers.len() != self.transformers {
                return bad(format!(
                    "stage {i} has {} MobileNetV2 and {} Transformer choices, the supernet {} and {}",
                    s.mobilenets.len(),
                    s.transformers.len(),
                    self.mobilenets,
                    self.transformers
                ));
            }
            let d = get(
                ch.downsample.len(),
                s.downsample,
                format!("stage {i} downsample"),
            )?;
            let mut mobilenets = Vec::new();
            for (j, &m) in s.mobilenets.iter().enumerate() {
                let m = get(ch.expansions.len(), m, format!("stage {i} mobilenet {j}"))?;
                mobilenets.push(MobileNetArch {
                    expansion: ch.expansions[m],
                });
            }
            let mut transformers = Vec::new();
            for (j, &t) in s.transformers.iter().enumerate() {
                let t = get(ch.mlp_ratios.len(), t, format!("stage {i} transformer {j}"))?;
                transformers.push(TransformerArch {
                    heads: self.heads,
                    mlp_ratio: ch.mlp_ratios[t],
                    encoders: 1,
                });
            }
            stages.push(DotArch {
                downsample: ch.downsample[d],
                channels: c,
                mobilenets,
                transformers,
            });
        }
        let p = get(ch.pooling.len(), path.pooling, "pooling".into())?;
        Ok(TinyFormerArch {
            input: self.input,
            classes: self.classes,
            stages,
            pooling: ch.pooling[p],
            last_linear: self.last_linear,
        })
    }

    /// Every path (for small spaces; the count is [`Self::path_count`]).
    pub fn path_count(&self) -> u128 {
        let ch = &self.choices;
        let per_stage = ch.downsample.len() as u128
            * (ch.expansions.len() as u128).pow(self.mobilenets as u32)
            * (ch.mlp_ratios.len() as u128).pow(self.transformers as u32);
        per_stage.pow(self.channels.len() as u32) * ch.pooling.len() as u128
    }
}

/// One DoT stage's candidates.
#[derive(Module, Debug)]
pub struct SuperStage {
    pub down: Vec<DownsampleBlock>,
    /// `[slot][candidate]`.
    pub mobilenets: Vec<Vec<MobileNetBlock>>,
    /// `[slot][candidate]`.
    pub transformers: Vec<Vec<TransformerModule>>,
}

/// The weight-sharing supernet.
#[derive(Module, Debug)]
pub struct Supernet {
    pub stages: Vec<SuperStage>,
    /// One head per pooling candidate.
    pub heads: Vec<Head>,
}

impl Supernet {
    pub fn init(cfg: &SupernetConfig, seed: u64, device: &Device) -> Result<Self, TrainingError> {
        cfg.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let ch = &cfg.choices;
        let mut cin = cfg.input[0];
        let mut stages = Vec::new();
        for &c in &cfg.channels {
            let down = ch
                .downsample
                .iter()
                .map(|&k| DownsampleBlock::new(&mut rng, k, cin, c, device))
                .collect();
            let mobilenets = (0..cfg.mobilenets)
                .map(|_| {
                    ch.expansions
                        .iter()
                        .map(|&e| MobileNetBlock::new(&mut rng, c, e, device))
                        .collect()
                })
                .collect();
            let transformers = (0..cfg.transformers)
                .map(|_| {
                    ch.mlp_ratios
                        .iter()
                        .map(|&r| {
                            let t = TransformerArch {
                                heads: cfg.heads,
                                mlp_ratio: r,
                                encoders: 1,
                            };
                            new_transformer(&mut rng, c, &t, device)
                        })
                        .collect()
                })
                .collect();
            stages.push(SuperStage {
                down,
                mobilenets,
                transformers,
            });
            cin = c;
        }
        let mut heads = Vec::new();
        for (k, &p) in ch.pooling.iter().enumerate() {
            let path_arch = cfg.arch(&cfg.first_path(k))?;
            heads.push(Head::new(
                &mut rng,
                p,
                cin,
                path_arch.pooled_features(),
                cfg.last_linear,
                cfg.classes,
                device,
            ));
        }
        Ok(Self { stages, heads })
    }

    /// The single-path model of `path`, sharing (cloning) the supernet's weights. Parameters
    /// keep their ids, so gradients of the extracted model update the supernet's candidates.
    pub fn extract(
        &self,
        cfg: &SupernetConfig,
        path: &PathChoice,
    ) -> Result<TinyFormer, TrainingError> {
        cfg.arch(path)?;
        let stages = self
            .stages
            .iter()
            .zip(&path.stages)
            .map(|(s, c)| Stage {
                down: s.down[c.downsample].clone(),
                mobilenets: s
                    .mobilenets
                    .iter()
                    .zip(&c.mobilenets)
                    .map(|(cands, &k)| cands[k].clone())
                    .collect(),
                transformers: s
                    .transformers
                    .iter()
                    .zip(&c.transformers)
                    .map(|(cands, &k)| cands[k].clone())
                    .collect(),
            })
            .collect();
        Ok(TinyFormer {
            stages,
            head: self.heads[path.pooling].clone(),
        })
    }

    pub fn forward(
        &self,
        cfg: &SupernetConfig,
        path: &PathChoice,
        x: Tensor<4>,
    ) -> Result<Tensor<2>, TrainingError> {
        Ok(self.extract(cfg, path)?.forward(x))
    }
}
