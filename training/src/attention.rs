//! Multi-head self-attention as in ViT/KWT: one bias-free QKV projection, an output projection.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;

use crate::fake_quant::FakeQuant;
use crate::fused_ops::{self, matmul};
use crate::init;
use crate::qat::{AttentionQuant, LinearQuant, linear, linear_parts, maybe, softmax_q};

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
        self.forward_q(x, None, None)
    }

    /// [`Self::forward`], fake-quantized at the integer graph's points when `q` is given;
    /// `input` is the point that rounded `x`.
    pub fn forward_q(
        &self,
        x: Tensor<3>,
        q: Option<&AttentionQuant>,
        input: Option<&FakeQuant>,
    ) -> Tensor<3> {
        let [batch, tokens, _] = x.dims();
        let (h, dh) = (self.heads, self.dim_head);
        // Burn's dropout acts only on an autodiff device
        let dropout = self.dropout.prob > 0.0 && x.device().is_autodiff();
        let query = self.heads_of(0, x.clone(), q.map(|q| &q.q), input);
        let key = self.heads_of(1, x.clone(), q.map(|q| &q.k), input);
        let value = self.heads_of(2, x, q.map(|q| &q.v), input);
        let scale = (dh as f64).powf(-0.5);
        let ctx = match q {
            // one operation that never holds the scores (which dropout and QAT round)
            None if !dropout => fused_ops::attention(query, key, value, scale),
            _ => {
                let scores = maybe(
                    q.map(|q| &q.scores),
                    matmul(query, key.swap_dims(2, 3)).mul_scalar(scale),
                );
                let attn = self
                    .dropout
                    .forward(softmax_q(scores, q.map(|q| q.scores.scale_exp())));
                maybe(q.map(|q| &q.context), matmul(attn, value))
            }
        };
        let ctx = ctx.swap_dims(1, 2).reshape([batch, tokens, h * dh]);
        linear(&self.out, ctx, q.map(|q| &q.out), q.map(|q| &q.context))
    }

    /// Part `i` of the joint projection (0 q, 1 k, 2 v) as `[batch, heads, tokens, dim_head]`.
    /// Each part is its own product with the weight's `i`-th third (and, quantized, its own
    /// weight and output rounding, as the integer graph's three Linears): it comes out
    /// contiguous, so the heads are a view. Splitting one product's output instead costs a
    /// copy per part forward and, backward, a zero-filled gradient of the whole output per part.
    fn heads_of(
        &self,
        i: usize,
        x: Tensor<3>,
        q: Option<&LinearQuant>,
        input: Option<&FakeQuant>,
    ) -> Tensor<4> {
        let [batch, tokens, _] = x.dims();
        let (weight, bias) = self.qkv_part(i);
        linear_parts(x, weight, bias, q, input)
            .reshape([batch, tokens, self.heads, self.dim_head])
            .swap_dims(1, 2)
    }

    /// Weight `[dim, heads * dim_head]` and bias of part `i` of the joint projection (0 q,
    /// 1 k, 2 v): the integer graph's three Linears.
    pub fn qkv_part(&self, i: usize) -> (Tensor<2>, Option<Tensor<1>>) {
        let inner = self.heads * self.dim_head;
        let weight = self.qkv.weight.val().narrow(1, i * inner, inner);
        let bias = self
            .qkv
            .bias
            .as_ref()
            .map(|b| b.val().narrow(0, i * inner, inner));
        (weight, bias)
    }
}
