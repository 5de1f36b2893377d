//! The stand-alone single-path TinyFormer model, built from a [`TinyFormerArch`].

use std::fs;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::arch::{TinyFormerArch, TransformerArch};
use super::modules::{DownsampleBlock, Head, MobileNetBlock, TransformerModule};
use crate::checkpoint::{read_ron, save_model, write_ron};
use crate::error::TrainingError;

/// One DoT stage.
#[derive(Module, Debug)]
pub struct Stage {
    pub down: DownsampleBlock,
    pub mobilenets: Vec<MobileNetBlock>,
    pub transformers: Vec<TransformerModule>,
}

impl Stage {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.down.forward(x);
        for m in &self.mobilenets {
            x = m.forward(x);
        }
        for t in &self.transformers {
            x = t.forward(x);
        }
        x
    }
}

/// A single-path TinyFormer: images `[batch, c, h, w]` to logits.
#[derive(Module, Debug)]
pub struct TinyFormer {
    pub stages: Vec<Stage>,
    pub head: Head,
}

pub(crate) fn new_transformer(
    rng: &mut StdRng,
    c: usize,
    t: &TransformerArch,
    d: &Device,
) -> TransformerModule {
    TransformerModule::new(rng, c, t.heads, t.mlp_ratio, t.encoders, d)
}

impl TinyFormer {
    /// A freshly initialised model; the same seed gives the same weights.
    pub fn init(arch: &TinyFormerArch, seed: u64, device: &Device) -> Result<Self, TrainingError> {
        arch.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cin = arch.input[0];
        let mut stages = Vec::with_capacity(arch.stages.len());
        for s in &arch.stages {
            let c = s.channels;
            stages.push(Stage {
                down: DownsampleBlock::new(&mut rng, s.downsample, cin, c, device),
                mobilenets: s
                    .mobilenets
                    .iter()
                    .map(|m| MobileNetBlock::new(&mut rng, c, m.expansion, device))
                    .collect(),
                transformers: s
                    .transformers
                    .iter()
                    .map(|t| new_transformer(&mut rng, c, t, device))
                    .collect(),
            });
            cin = c;
        }
        let head = Head::new(
            &mut rng,
            arch.pooling,
            cin,
            arch.pooled_features(),
            arch.last_linear,
            arch.classes,
            device,
        );
        Ok(Self { stages, head })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        for s in &self.stages {
            x = s.forward(x);
        }
        self.head.forward(x)
    }
}

/// Architecture file written beside a TinyFormer checkpoint.
pub const ARCH_FILE: &str = "arch.ron";

/// Saves weights to `checkpoint` (burnpack) and the architecture to `arch.ron` beside it.
pub fn save_tinyformer(
    model: &TinyFormer,
    arch: &TinyFormerArch,
    checkpoint: &Path,
) -> Result<(), TrainingError> {
    let dir = checkpoint.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).map_err(|e| TrainingError::io(dir, e))?;
    write_ron(&dir.join(ARCH_FILE), arch)?;
    save_model(model, checkpoint)
}

/// Loads a checkpoint written by [`save_tinyformer`].
pub fn load_tinyformer(
    checkpoint: &Path,
    device: &Device,
) -> Result<(TinyFormer, TinyFormerArch), TrainingError> {
    if !checkpoint.is_file() {
        return Err(TrainingError::checkpoint(checkpoint, "no such file"));
    }
    let arch_path = checkpoint
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(ARCH_FILE);
    if !arch_path.is_file() {
        return Err(TrainingError::checkpoint(
            checkpoint,
            format!("the architecture file {} is missing", arch_path.display()),
        ));
    }
    let arch: TinyFormerArch = read_ron(&arch_path)?;
    let model = TinyFormer::init(&arch, 0, device)?
        .try_load_file(checkpoint)
        .map_err(|e| crate::checkpoint::unreadable_weights(checkpoint, &arch_path, e))?;
    Ok((model, arch))
}
