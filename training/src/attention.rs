//! Multi-head self-attention as in ViT/KWT: one bias-free QKV projection, an output projection.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;

use crate::fused_ops::{self, linear_layer, matmul, softmax};
use crate::init;
use crate::qat::{AttentionQuant, linear, maybe, maybe_softmax};

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
        self.forward_q(x, None)
    }

    /// [`Self::forward`], fake-quantized at the integer graph's points when `q` is given.
    pub fn forward_q(&self, x: Tensor<3>, q: Option<&AttentionQuant>) -> Tensor<3> {
        let [batch, tokens, _] = x.dims();
        let (h, dh) = (self.heads, self.dim_head);
        // [b, t, 3, h, dh] -> [3, b, h, t, dh]
        let qkv = self
            .qkv_projection(x, q)
            .reshape([batch, tokens, 3, h, dh])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| -> Tensor<4> { qkv.clone().narrow(0, i, 1).squeeze_dim(0) };
        let query = maybe(q.map(|q| &q.q.output), part(0));
        let key = maybe(q.map(|q| &q.k.output), part(1));
        let value = maybe(q.map(|q| &q.v.output), part(2));
        let scale = (dh as f64).powf(-0.5);
        let scores = maybe(
            q.map(|q| &q.scores),
            matmul(query, key.swap_dims(2, 3)).mul_scalar(scale),
        );
        let attn = self
            .dropout
            .forward(maybe_softmax(q.is_some(), softmax(scores, 3)));
        let ctx = maybe(q.map(|q| &q.context), matmul(attn, value))
            .swap_dims(1, 2)
            .reshape([batch, tokens, h * dh]);
        linear(&self.out, ctx, q.map(|q| &q.out))
    }

    /// The joint q/k/v projection; quantized, each third of the weight has its own threshold
    /// (the integer graph splits it into three Linears). Output rounding happens per part.
    fn qkv_projection(&self, x: Tensor<3>, q: Option<&AttentionQuant>) -> Tensor<3> {
        let Some(q) = q else {
            return linear_layer(&self.qkv, x);
        };
        let w = self.qkv.weight.val();
        let inner = self.heads * self.dim_head;
        let parts = [&q.q, &q.k, &q.v]
            .iter()
            .enumerate()
            .map(|(i, lq)| lq.weight.forward(w.clone().narrow(1, i * inner, inner)))
            .collect();
        let bias = self.qkv.bias.as_ref().map(|b| b.val());
        fused_ops::linear(x, Tensor::cat(parts, 1), bias)
    }
}
