//! TinyFormer (Yang et al.): the hybrid CNN-transformer of Fig. 3, as a single-path model and as
//! the weight-sharing supernet that SuperNAS and SparseNAS search.

pub mod arch;
pub mod fixtures;
pub mod model;
pub mod modules;
pub mod supernet;
#[cfg(test)]
mod tests;

pub use arch::{
    DotArch, Downsample, LayerKind, LayerSpec, MobileNetArch, Pooling, TinyFormerArch,
    TransformerArch,
};
pub use model::{ARCH_FILE, TinyFormer, load_tinyformer, save_tinyformer};
pub use supernet::{ChoiceSpace, PathChoice, StageChoice, Supernet, SupernetConfig};
