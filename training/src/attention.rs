//! Multi-head self-attention as in ViT/KWT: one bias-free QKV projection, an output projection.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;

use crate::init;

/// KWT's attention: `heads` heads of `dim_head` each (inner width `heads * dim_head`).
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub qkv: Linear,
    pub out: Linear,
    pub dropout: Dropout,
    pub heads: usize,
    pub dim_head: usize,
}

impl SelfAttention {
    pub fn new(
        rng: &mut StdRng,
        dim: usize,
        heads: usize,
        dim_head: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        let inner = heads * dim_head;
        Self {
            // The KWT reference has no bias on QKV; the published parameter counts depend on it.
            qkv: init::linear(rng, dim, 3 * inner, false, device),
            out: init::linear(rng, inner, dim, true, device),
            dropout: DropoutConfig::new(dropout).init(),
            heads,
            dim_head,
        }
    }

    /// `x`: [batch, tokens, dim] -> [batch, tokens, dim].
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, tokens, _] = x.dims();
        let (h, dh) = (self.heads, self.dim_head);
        // [b, t, 3, h, dh] -> [3, b, h, t, dh]
        let qkv = self
            .qkv
            .forward(x)
            .reshape([batch, tokens, 3, h, dh])
            .permute([2, 0, 3, 1, 4]);
        let q: Tensor<4> = qkv.clone().narrow(0, 0, 1).squeeze_dim(0);
        let k: Tensor<4> = qkv.clone().narrow(0, 1, 1).squeeze_dim(0);
        let v: Tensor<4> = qkv.narrow(0, 2, 1).squeeze_dim(0);
        let scale = (dh as f64).powf(-0.5);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        let attn = self.dropout.forward(softmax(scores, 3));
        let ctx = attn
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, tokens, h * dh]);
        self.out.forward(ctx)
    }
}
