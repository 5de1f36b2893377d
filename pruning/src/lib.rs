//! Blockwise pruning for the model zoo (TinyFormer III-C2 and III-D1):
//!
//! - [`mask`]: block masks on plain weight slices for Linear, Conv2d/pointwise and depthwise
//!   layouts, L1/L2 block scores, one-shot pruning;
//! - [`schedule`]: one-shot and AGP (Zhu and Gupta 2017) sparsity schedules;
//! - [`config`]: the per-layer RON configuration and its validation against a model;
//! - [`hook`]: the trainer's step hook that prunes during fine-tuning and keeps its masks
//!   with the checkpoints;
//! - [`report`]: per-layer sparsity and storage report, accuracy-vs-sparsity plot;
//! - [`rle`]: blockwise run-length sparse coding of int8 weights.

pub mod config;
// The format lives in its own Burn-free crate (the cost model reads it); `pruning::rle` stays.
pub use ::rle;
pub mod error;
pub mod hook;
pub mod mask;
pub mod model;
pub mod report;
pub mod schedule;

pub use config::{LayerInfo, LayerPlan, LayerRule, PruningConfig, PruningPlan};
pub use error::PruneError;
pub use hook::{MASKS_KIND, MaskSet, PruningHook, mask_violations, masks_file, prune_once};
pub use mask::{BlockGeometry, BlockMask, Score, WeightLayout};
pub use model::kwt_layers;
pub use report::{SparsityReport, SweepPoint, plot_sweep, sparsity_report};
pub use schedule::Schedule;
