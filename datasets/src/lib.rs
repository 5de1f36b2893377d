//! Speech data pipeline: the Speech Commands folder format and its official splits, the KWT
//! MFCC front end, KWT's augmentation policy, and synthetic data generators for offline use.
//!
//! Burn-free on purpose: everything here works on plain `Vec<f32>` clips and feature matrices;
//! batching into tensors lives with the trainer.

pub mod augment;
pub mod download;
pub mod error;
pub mod images;
pub mod mfcc;
pub mod speech_commands;
pub mod splits;
pub mod synth;
pub mod wav;

pub use augment::AugmentConfig;
pub use download::{Archive, CIFAR10_BINARY_URL, SPEECH_COMMANDS_V1_URL, SPEECH_COMMANDS_V2_URL};
pub use error::{DatasetError, Result};
pub use images::{
    CIFAR10_CLASSES, FASHION_MNIST_CLASSES, Holdout, ImageSet, read_cifar10, read_fashion_mnist,
};
pub use mfcc::{Mfcc, MfccConfig};
pub use speech_commands::{
    Clip, KEYWORDS_12, LoadConfig, SpeechCommands, Task, WORDS_V1, WORDS_V2,
    load as load_speech_commands,
};
pub use splits::{Split, SplitPercentages};
pub use synth::{SynthSummary, synth_keywords, synth_speech_espeak};
