//! The Burn modules of TinyFormer's choice blocks. The supernet holds several candidates of each;
//! a single-path model holds one, so both are built from these same types.

use burn::module::Module;
use burn::nn::pool::{AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, conv::Conv2d};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;

use super::arch::{Downsample, Pooling};
use crate::attention::SelfAttention;
use crate::fused_ops::{conv2d, layer_norm, linear_layer};
use crate::init;
use crate::init::ConvInit::{He, PyTorch, Zero};

/// The Downsample module: halves the feature map and sets the stage's channels.
#[derive(Module, Debug)]
pub struct DownsampleBlock {
    pub conv: Conv2d,
    pub pool: Option<MaxPool2d>,
}

impl DownsampleBlock {
    pub fn new(rng: &mut StdRng, kind: Downsample, cin: usize, cout: usize, d: &Device) -> Self {
        match kind {
            Downsample::ConvStride2 => Self {
                conv: init::conv2d(rng, He, cin, cout, 3, 2, 1, 1, d),
                pool: None,
            },
            Downsample::ConvMaxPool => Self {
                conv: init::conv2d(rng, He, cin, cout, 3, 1, 1, 1, d),
                pool: Some(MaxPool2dConfig::new([2, 2]).init()),
            },
        }
    }

    pub fn kind(&self) -> Downsample {
        if self.pool.is_some() {
            Downsample::ConvMaxPool
        } else {
            Downsample::ConvStride2
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(conv2d(&self.conv, x));
        match &self.pool {
            Some(pool) => pool.forward(y),
            None => y,
        }
    }
}

/// MobileNetV2 inverted residual block, stride 1.
#[derive(Module, Debug)]
pub struct MobileNetBlock {
    pub expand: Conv2d,
    pub dw: Conv2d,
    pub project: Conv2d,
}

impl MobileNetBlock {
    pub fn new(rng: &mut StdRng, c: usize, expansion: usize, d: &Device) -> Self {
        let e = c * expansion;
        Self {
            expand: init::conv2d(rng, He, c, e, 1, 1, 0, 1, d),
            dw: init::conv2d(rng, He, e, e, 3, 1, 1, e, d),
            project: init::conv2d(rng, Zero, e, c, 1, 1, 0, 1, d),
        }
    }

    pub fn expansion(&self) -> usize {
        let [e, c, _, _] = self.expand.weight.dims();
        e / c
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(conv2d(&self.expand, x.clone()));
        let y = relu(conv2d(&self.dw, y));
        x + conv2d(&self.project, y)
    }
}

/// A pre-norm encoder layer with a ReLU MLP (TinyFormer uses ReLU for MCU efficiency).
#[derive(Module, Debug)]
pub struct Encoder {
    pub norm1: LayerNorm,
    pub attn: SelfAttention,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Encoder {
    pub fn new(rng: &mut StdRng, c: usize, heads: usize, mlp: usize, d: &Device) -> Self {
        Self {
            norm1: LayerNormConfig::new(c).init(d),
            attn: SelfAttention::new(rng, c, heads, c / heads, 0.0, d),
            norm2: LayerNormConfig::new(c).init(d),
            fc1: init::linear(rng, c, mlp, true, d),
            fc2: init::linear(rng, mlp, c, true, d),
        }
    }

    /// `x`: [batch, tokens, c].
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(layer_norm(&self.norm1, x));
        let h = relu(linear_layer(&self.fc1, layer_norm(&self.norm2, x.clone())));
        x + linear_layer(&self.fc2, h)
    }
}

/// The Transformer module: local convolutions, encoders over the pixels as tokens, fusion.
#[derive(Module, Debug)]
pub struct TransformerModule {
    pub local3: Conv2d,
    pub local1: Conv2d,
    pub encoders: Vec<Encoder>,
    pub fuse1: Conv2d,
    pub fuse3: Conv2d,
}

impl TransformerModule {
    pub fn new(
        rng: &mut StdRng,
        c: usize,
        heads: usize,
        mlp_ratio: usize,
        encoders: usize,
        d: &Device,
    ) -> Self {
        Self {
            local3: init::conv2d(rng, He, c, c, 3, 1, 1, 1, d),
            local1: init::conv2d(rng, PyTorch, c, c, 1, 1, 0, 1, d),
            encoders: (0..encoders)
                .map(|_| Encoder::new(rng, c, heads, mlp_ratio * c, d))
                .collect(),
            fuse1: init::conv2d(rng, He, c, c, 1, 1, 0, 1, d),
            fuse3: init::conv2d(rng, Zero, c, c, 3, 1, 1, 1, d),
        }
    }

    pub fn heads(&self) -> usize {
        self.encoders.first().map_or(1, |e| e.attn.heads)
    }

    pub fn mlp_ratio(&self) -> usize {
        self.encoders.first().map_or(1, |e| {
            let [c, m] = e.fc1.weight.dims();
            m / c
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let y = conv2d(&self.local1, relu(conv2d(&self.local3, x.clone())));
        let mut tokens: Tensor<3> = y.reshape([b, c, h * w]).swap_dims(1, 2);
        for enc in &self.encoders {
            tokens = enc.forward(tokens);
        }
        let y: Tensor<4> = tokens.swap_dims(1, 2).reshape([b, c, h, w]);
        x + conv2d(&self.fuse3, relu(conv2d(&self.fuse1, y)))
    }
}

/// Pooling module, last Linear (ReLU) and classifier. Without a sequence-pooling layer the
/// head average-pools 2x2 and flattens.
#[derive(Module, Debug)]
pub struct Head {
    /// Sequence pooling's attention scores (`c -> 1`); `None` for average pooling.
    pub seqpool: Option<Linear>,
    pub last: Linear,
    pub classifier: Linear,
}

impl Head {
    pub fn new(
        rng: &mut StdRng,
        pooling: Pooling,
        c: usize,
        pooled: usize,
        last: usize,
        classes: usize,
        d: &Device,
    ) -> Self {
        Self {
            seqpool: (pooling == Pooling::SeqPool).then(|| init::linear(rng, c, 1, true, d)),
            last: init::linear(rng, pooled, last, true, d),
            classifier: init::linear(rng, last, classes, true, d),
        }
    }

    pub fn pooling(&self) -> Pooling {
        if self.seqpool.is_some() {
            Pooling::SeqPool
        } else {
            Pooling::AvgPool
        }
    }

    /// `x`: [batch, c, h, w] -> logits [batch, classes].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, c, h, w] = x.dims();
        let pooled: Tensor<2> = match &self.seqpool {
            Some(score) => {
                let tokens: Tensor<3> = x.reshape([b, c, h * w]).swap_dims(1, 2);
                let weights = softmax(linear_layer(score, tokens.clone()), 1);
                (tokens * weights).sum_dim(1).reshape([b, c])
            }
            None => {
                // Flattened in [h, w, c] order, as the deployed integer graph stores feature
                // maps: the last Linear's blocks of consecutive inputs (what pruning zeroes)
                // are then consecutive in the deployed weights too, so they run-length code.
                let y = AvgPool2dConfig::new([2, 2]).init().forward(x);
                let [_, c2, h2, w2] = y.dims();
                y.permute([0, 2, 3, 1]).reshape([b, h2 * w2 * c2])
            }
        };
        linear_layer(&self.classifier, relu(linear_layer(&self.last, pooled)))
    }
}
