//! One KWT transformer layer: attention and a GELU MLP, each with a residual and a LayerNorm.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Gelu, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::attention::SelfAttention;
use crate::fake_quant::FakeQuant;
use crate::init;
use crate::qat::{BlockQuant, gelu_q, layer_norm_q, linear, maybe};

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
        self.forward_q(x, None, None)
    }

    /// [`Self::forward`] with fake-quantized fc1, GELU and fc2 when `q` is given; `input` is
    /// the point that rounded `x`.
    pub fn forward_q(
        &self,
        x: Tensor<3>,
        q: Option<&BlockQuant>,
        input: Option<&FakeQuant>,
    ) -> Tensor<3> {
        // `gelu_q` is `self.act`'s function, vectorized on flex (the field stays so that
        // checkpoints keep their layout), or the graph's i-GELU at fc1's output scale.
        let ibert_exp = q.filter(|q| q.ibert_gelu).map(|q| q.fc1.output.scale_exp());
        let h = gelu_q(linear(&self.fc1, x, q.map(|q| &q.fc1), input), ibert_exp);
        let h = self.dropout.forward(maybe(q.map(|q| &q.gelu), h));
        self.dropout
            .forward(linear(&self.fc2, h, q.map(|q| &q.fc2), q.map(|q| &q.gelu)))
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
        self.forward_q(x, None, None)
    }

    /// [`Self::forward`], fake-quantized at the integer graph's points when `q` is given;
    /// `input` is the point that rounded `x` (the scale of the PostNorm attention's input and
    /// of the PreNorm LayerNorm's).
    pub fn forward_q(
        &self,
        x: Tensor<3>,
        q: Option<&BlockQuant>,
        input: Option<&FakeQuant>,
    ) -> Tensor<3> {
        let input = input.filter(|_| q.is_some());
        let attn = |x, input| self.attn.forward_q(x, q.map(|q| &q.attn), input);
        let at = |f: fn(&BlockQuant) -> &FakeQuant, x| maybe(q.map(f), x);
        let point = |f: fn(&BlockQuant) -> &FakeQuant| q.map(f);
        let kernel = q.map(BlockQuant::norm_kernel).unwrap_or_default();
        if self.post_norm {
            let r1 = at(|q| &q.add1, x.clone() + attn(x, input));
            let x = at(
                |q| &q.norm1,
                layer_norm_q(&self.norm1, r1, point(|q| &q.add1), kernel),
            );
            let r2 = at(
                |q| &q.add2,
                x.clone() + self.mlp.forward_q(x, q, point(|q| &q.norm1)),
            );
            at(
                |q| &q.norm2,
                layer_norm_q(&self.norm2, r2, point(|q| &q.add2), kernel),
            )
        } else {
            let n1 = at(
                |q| &q.norm1,
                layer_norm_q(&self.norm1, x.clone(), input, kernel),
            );
            let x = at(|q| &q.add1, x + attn(n1, point(|q| &q.norm1)));
            let n2 = at(
                |q| &q.norm2,
                layer_norm_q(&self.norm2, x.clone(), point(|q| &q.add1), kernel),
            );
            at(
                |q| &q.add2,
                x + self.mlp.forward_q(n2, q, point(|q| &q.norm2)),
            )
        }
    }
}
