//! Models (KWT), the trainer, checkpoints and metrics.

pub mod attention;
pub mod attention_kernels;
pub mod block;
pub mod checkpoint;
pub mod config;
pub mod cpu_kernels;
pub mod data;
pub mod depthwise_kernels;
pub mod error;
pub mod fake_quant;
pub mod feature_norm;
pub mod fused_ops;
pub mod history;
pub mod init;
pub mod int_gelu;
pub mod int_softmax;
pub mod kwt;
pub mod loss;
pub mod matmul_kernels;
pub mod metrics;
pub mod plot;
pub mod qat;
pub mod run_match;
pub mod schedule;
pub mod shards;
pub mod speech_data;
#[cfg(test)]
mod test_random;
pub mod tinyformer;
pub mod toy_data;
pub mod trainer;

pub use block::NormPlacement;
pub use checkpoint::load_checkpoint;
pub use config::{DistillTargets, DistillationConfig, TrainerConfig};
pub use data::{DataSplits, InMemory, SampleSource};
pub use error::TrainingError;
pub use feature_norm::{FeatureNorm, FeatureStats, feature_stats};
pub use kwt::{Kwt, KwtConfig};
pub use metrics::ConfusionMatrix;
pub use speech_data::DataSpec;
pub use trainer::{
    HookStart, RunSummary, StepHook, TrainOptions, TrainOutcome, classify, evaluate, train,
    train_with_hook,
};
