//! A tiny synthetic data set in the Fashion-MNIST idx format and a search config sized for it,
//! a tiny TinyFormer search on synthesized key words' spectrograms and a tiny KWT search on
//! them, for tests (here and in the CLI's) and quick demonstrations.

use std::path::Path;

use cost::tiles::TilePolicy;

use training::tinyformer::ChoiceSpace;
use training::{DataSpec, TrainerConfig};

use crate::config::*;
use crate::error::{Result, SearchError};
use crate::kwt::config::{CandidateStage, CompressionStage, KwtSearchConfig, KwtSpace};

/// Writes `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` with `n` 12x12 images
/// in 10 classes: class k lights a 3x3 patch at one of ten positions, on seeded noise.
pub fn write_idx(dir: &Path, prefix: &str, n: usize, seed: u32) -> Result<()> {
    let (h, w) = (12usize, 12usize);
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, h as u32, w as u32] {
        images.extend(d.to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for i in 0..n {
        let k = i % 10;
        let (r0, c0) = (1 + (k / 5) * 5, 1 + (k % 5) * 2);
        for r in 0..h {
            for c in 0..w {
                // xorshift32: a fixed, seeded noise floor.
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let noise = (s % 60) as u8;
                let on = (r0..r0 + 3).contains(&r) && (c0..c0 + 3).contains(&c);
                images.push(if on { 200 + noise / 2 } else { noise });
            }
        }
        labels.push(k as u8);
    }
    for (name, bytes) in [
        (format!("{prefix}-images-idx3-ubyte"), images),
        (format!("{prefix}-labels-idx1-ubyte"), labels),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| SearchError::io(&path, e))?;
    }
    Ok(())
}

/// A search over 4..16-channel supernets on the [`write_idx`] images in `data`, with a tight
/// SRAM limit so the cost model rejects some candidates.
pub fn tiny_config(data: &Path, target: &Path) -> SearchConfig {
    SearchConfig {
        seed: 3,
        data: DataConfig {
            source: ImageData::FashionMnist {
                dir: data.to_path_buf(),
            },
            train_samples: Some(200),
            valid_samples: 60,
            test_samples: Some(100),
        },
        budget: BudgetConfig {
            target: target.to_path_buf(),
            sram_bytes: Some(6_000),
            flash_bytes: None,
            latency_ms: None,
            operand_tiles: TilePolicy::Always,
        },
        supernet_space: SupernetSpace {
            heads: vec![1, 2],
            mobilenets: vec![1],
            transformers: vec![1],
            dims: vec![vec![4, 8], vec![8, 16]],
            last_linear: vec![16],
            choices: ChoiceSpace {
                expansions: vec![1, 2],
                ..ChoiceSpace::default()
            },
        },
        sparse_space: SparseSpace {
            block_sizes: vec![2, 4],
            sparsities: vec![0.0, 0.5, 0.75],
        },
        analysis: AnalysisConfig {
            samples: 10,
            lambda_lo: 0.1,
            lambda_up: 2.8,
            accept: 0.9,
            max_adjustments: 1,
        },
        train: TrainConfig {
            batch_size: 16,
            lr: 0.005,
            weight_decay: 0.01,
            warmup_steps: 2,
            label_smoothing: 0.0,
            batch_shards: 1,
        },
        supernas: SuperNasConfig {
            iterations: 2,
            population: 1,
            test_paths: 6,
            train_steps: 6,
            paths: 2,
        },
        sparsenas: SparseNasConfig {
            iterations: 3,
            population: 2,
            train_steps: 4,
            prune_steps: 4,
            prune_frequency: 2,
            final_prune_steps: 6,
            final_finetune_steps: 4,
        },
        // a checkpoint inside every run: the resume tests go through them
        checkpoint_every_steps: 3,
    }
}

/// A TinyFormer search on the 96 x 40 MFCC spectrograms of three synthesized key words (60
/// clips each, in `dir/kw`; silence and unknown classes besides): 4..16-channel supernets,
/// one SuperNAS and one SparseNAS round, the STM32F746's own limits on `target`.
pub fn tiny_speech_config(dir: &Path, target: &Path) -> SearchConfig {
    let words: Vec<String> = ["yes", "no", "up"].map(String::from).to_vec();
    let mut cfg = tiny_config(dir, target);
    cfg.data = DataConfig {
        source: ImageData::Speech(DataSpec::SyntheticKeywords {
            folder: dir.join("kw"),
            words: Some(words.clone()),
            per_word: 60,
            seed: 2,
            task: datasets::Task::Keywords(words),
            augment: Default::default(),
            mfcc: Default::default(),
        }),
        train_samples: None,
        valid_samples: 20,
        test_samples: None,
    };
    cfg.budget.sram_bytes = None;
    cfg.supernet_space.heads = vec![1];
    cfg.supernas = SuperNasConfig {
        iterations: 1,
        population: 1,
        test_paths: 4,
        train_steps: 60,
        paths: 2,
    };
    cfg.sparsenas = SparseNasConfig {
        iterations: 1,
        population: 2,
        train_steps: 20,
        prune_steps: 10,
        prune_frequency: 5,
        final_prune_steps: 20,
        final_finetune_steps: 100,
    };
    cfg.checkpoint_every_steps = 0;
    cfg
}

/// A KWT search that finishes in seconds: three synthesized key words (60 clips each) in
/// `dir/kw`, one-block KWTs of width 8-12, every prunable layer 50-75 % sparse, a 40 KB SRAM
/// and 60 KB flash budget on `target`.
pub fn tiny_kwt_config(dir: &Path, target: &Path) -> KwtSearchConfig {
    let trainer = |epochs| TrainerConfig {
        epochs,
        batch_size: 16,
        learning_rate: 3e-3,
        final_learning_rate: 1e-4,
        warmup_epochs: 0,
        weight_decay: 0.01,
        label_smoothing: 0.1,
        seed: 0,
        augment: false,
        checkpoint_every_steps: 0,
        eval_batch_size: 64,
        distillation: None,
        batch_shards: 1,
    };
    KwtSearchConfig {
        seed: 5,
        data: DataSpec::SyntheticKeywords {
            folder: dir.join("kw"),
            words: Some(vec!["yes".into(), "no".into(), "up".into()]),
            per_word: 60,
            seed: 2,
            task: datasets::Task::Keywords(vec!["yes".into(), "no".into(), "up".into()]),
            augment: Default::default(),
            mfcc: Default::default(),
        },
        budget: BudgetConfig {
            target: target.to_path_buf(),
            sram_bytes: Some(40_000),
            flash_bytes: Some(60_000),
            latency_ms: None,
            operand_tiles: TilePolicy::Always,
        },
        kwt_space: KwtSpace {
            dims: vec![8, 12],
            depths: vec![1],
            heads: vec![1, 2],
            dim_heads: vec![4, 8],
            mlp_ratios: vec![1, 2],
        },
        sparse_space: SparseSpace {
            block_sizes: vec![2, 4],
            sparsities: vec![0.5, 0.75],
        },
        analysis: AnalysisConfig {
            samples: 30,
            lambda_lo: 0.05,
            lambda_up: 2.8,
            accept: 0.9,
            max_adjustments: 1,
        },
        candidates: CandidateStage {
            iterations: 3,
            population: 2,
            trainer: trainer(6),
            prune_frequency: 4,
        },
        compression: CompressionStage {
            trainer: trainer(10),
            prune_frequency: 4,
            calibration_samples: 16,
        },
    }
}
