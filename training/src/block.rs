//! One KWT transformer layer: attention and a GELU MLP, each with a residual and a LayerNorm.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Gelu, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::attention::SelfAttention;
use crate::init;

/// Where the LayerNorm sits. KWT's paper finds PostNorm better for keyword spotting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NormPlacement {
    /// `x = LN(x + f(x))` (KWT default).
    #[default]
    PostNorm,
    /// `x = x + f(LN(x))` (ViT).
    PreNorm,
}

#[derive(Module, Debug)]
pub struct FeedForward {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Gelu,
    pub dropout: Dropout,
}

impl FeedForward {
    pub fn new(
        rng: &mut StdRng,
        dim: usize,
        mlp_dim: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        Self {
            fc1: init::linear(rng, dim, mlp_dim, true, device),
            fc2: init::linear(rng, mlp_dim, dim, true, device),
            act: Gelu::new(),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.dropout.forward(self.act.forward(self.fc1.forward(x)));
        self.dropout.forward(self.fc2.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct TransformerBlock {
    pub attn: SelfAttention,
    pub norm1: LayerNorm,
    pub mlp: FeedForward,
    pub norm2: LayerNorm,
    pub post_norm: bool,
}

impl TransformerBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: &mut StdRng,
        dim: usize,
        heads: usize,
        dim_head: usize,
        mlp_dim: usize,
        dropout: f64,
        norm: NormPlacement,
        device: &Device,
    ) -> Self {
        Self {
            attn: SelfAttention::new(rng, dim, heads, dim_head, dropout, device),
            norm1: LayerNormConfig::new(dim).init(device),
            mlp: FeedForward::new(rng, dim, mlp_dim, dropout, device),
            norm2: LayerNormConfig::new(dim).init(device),
            post_norm: norm == NormPlacement::PostNorm,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if self.post_norm {
            let x = self.norm1.forward(x.clone() + self.attn.forward(x));
            self.norm2.forward(x.clone() + self.mlp.forward(x))
        } else {
            let x = x.clone() + self.attn.forward(self.norm1.forward(x));
            x.clone() + self.mlp.forward(self.norm2.forward(x))
        }
    }
}
