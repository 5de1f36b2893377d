//! The Keyword Transformer (Berg et al. 2021, Sec. 3.1): MFCC frames are tokens, a class token
//! (and optionally a distillation token) is prepended, a learned position embedding is added,
//! and `depth` transformer layers feed a LayerNorm + linear head.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::block::{NormPlacement, TransformerBlock};
use crate::error::TrainingError;
use crate::fake_quant::{FakeQuant, fake_quant_abs_max};
use crate::feature_norm::FeatureNorm;
use crate::init;
use crate::qat::{HeadQuant, KwtQuant, layer_norm_q, linear, maybe};

/// Everything needed to build a KWT. A RON value that the trainer, the cost model and the
/// exporter all read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KwtConfig {
    /// Time frames of the input (98 for 1 s at a 10 ms hop with a 30 ms window).
    pub frames: usize,
    /// Features per frame (40 MFCC coefficients).
    pub features: usize,
    pub classes: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub dim_head: usize,
    pub mlp_dim: usize,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default)]
    pub norm: NormPlacement,
    /// Adds DeiT-style distillation token and head (KWT Sec. 3.2).
    #[serde(default)]
    pub distill_token: bool,
}

/// The named sizes: KWT-1/2/3 from the paper's Table 1 and two small ones for quick runs.
pub const PRESETS: &[&str] = &["kwt-1", "kwt-2", "kwt-3", "kwt-tiny", "kwt-micro"];

impl KwtConfig {
    /// A preset for a 98x40 MFCC input and `classes` outputs.
    pub fn preset(name: &str, classes: usize) -> Result<Self, TrainingError> {
        // (dim, depth, heads, dim_head, mlp_dim)
        let (dim, depth, heads, dim_head, mlp_dim) = match name {
            "kwt-1" => (64, 12, 1, 64, 256),
            "kwt-2" => (128, 12, 2, 64, 512),
            "kwt-3" => (192, 12, 3, 64, 768),
            "kwt-tiny" => (32, 2, 2, 16, 64),
            "kwt-micro" => (16, 1, 1, 16, 32),
            other => {
                return Err(TrainingError::UnknownPreset {
                    name: other.to_string(),
                    known: PRESETS.join(", "),
                });
            }
        };
        Ok(Self {
            frames: 98,
            features: 40,
            classes,
            dim,
            depth,
            heads,
            dim_head,
            mlp_dim,
            dropout: 0.0,
            norm: NormPlacement::PostNorm,
            distill_token: false,
        })
    }

    /// Number of prepended tokens (class, plus distillation if enabled).
    pub fn extra_tokens(&self) -> usize {
        1 + usize::from(self.distill_token)
    }

    pub fn validate(&self) -> Result<(), TrainingError> {
        let positive = [
            ("frames", self.frames),
            ("features", self.features),
            ("classes", self.classes),
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
            ("dim_head", self.dim_head),
            ("mlp_dim", self.mlp_dim),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(TrainingError::InvalidModel(format!(
                    "KWT field `{field}` must be positive, got 0"
                )));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(TrainingError::InvalidModel(format!(
                "KWT field `dropout` must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }

    /// A freshly initialised model; the same `seed` gives the same weights.
    pub fn init(&self, seed: u64, device: &Device) -> Result<Kwt, TrainingError> {
        self.validate()?;
        let rng = &mut StdRng::seed_from_u64(seed);
        let tokens = self.frames + self.extra_tokens();
        // Tokens and position embedding ~ N(0, 1) as in the KWT reference implementation.
        Ok(Kwt {
            input_norm: FeatureNorm::identity(self.features, device),
            embed: init::linear(rng, self.features, self.dim, true, device),
            cls_token: Param::from_tensor(init::normal(rng, [1, 1, self.dim], 1.0, device)),
            dist_token: self
                .distill_token
                .then(|| Param::from_tensor(init::normal(rng, [1, 1, self.dim], 1.0, device))),
            pos_embedding: Param::from_tensor(init::normal(
                rng,
                [1, tokens, self.dim],
                1.0,
                device,
            )),
            blocks: (0..self.depth)
                .map(|_| {
                    TransformerBlock::new(
                        rng,
                        self.dim,
                        self.heads,
                        self.dim_head,
                        self.mlp_dim,
                        self.dropout,
                        self.norm,
                        device,
                    )
                })
                .collect(),
            head: Head::new(rng, self.dim, self.classes, device),
            dist_head: self
                .distill_token
                .then(|| Head::new(rng, self.dim, self.classes, device)),
            qat: None,
        })
    }
}

/// LayerNorm then a linear classifier, as in the KWT reference implementation.
#[derive(Module, Debug)]
pub struct Head {
    pub norm: LayerNorm,
    pub fc: Linear,
}

impl Head {
    fn new(rng: &mut StdRng, dim: usize, classes: usize, device: &Device) -> Self {
        Self {
            norm: LayerNormConfig::new(dim).init(device),
            fc: init::linear(rng, dim, classes, true, device),
        }
    }

    /// `input`: the point that rounded `x` (under QAT).
    fn forward(&self, x: Tensor<2>, q: Option<&HeadQuant>, input: Option<&FakeQuant>) -> Tensor<2> {
        let input = input.filter(|_| q.is_some());
        let kernel = q.map(HeadQuant::norm_kernel).unwrap_or_default();
        let x = maybe(
            q.map(|q| &q.norm),
            layer_norm_q(&self.norm, x, input, kernel),
        );
        linear(&self.fc, x, q.map(|q| &q.fc), q.map(|q| &q.norm))
    }
}

#[derive(Module, Debug)]
pub struct Kwt {
    pub input_norm: FeatureNorm,
    pub embed: Linear,
    pub cls_token: Param<Tensor<3>>,
    pub dist_token: Option<Param<Tensor<3>>>,
    pub pos_embedding: Param<Tensor<3>>,
    pub blocks: Vec<TransformerBlock>,
    pub head: Head,
    pub dist_head: Option<Head>,
    /// Fake-quantization points during quantization-aware training; `None` (the float model)
    /// everywhere else. Checkpoints of float models hold no such tensors.
    pub qat: Option<KwtQuant>,
}

/// Logits of the class head and, when the model has one, of the distillation head.
pub struct KwtOutput {
    pub class: Tensor<2>,
    pub distill: Option<Tensor<2>>,
    /// Under QAT, the point that rounds the two heads' average (`KwtQuant::logits`).
    pub average_point: Option<FakeQuant>,
}

impl KwtOutput {
    /// Inference logits: with a distillation token the two heads are averaged (KWT Sec. 3.2),
    /// under QAT rounded at `average_point` as the graph's `Add` rounds them (with
    /// power-of-two scales its multipliers are exact and the sum of two halves is exact in
    /// f32, so the codes are the kernel's).
    pub fn logits(self) -> Tensor<2> {
        match self.distill {
            Some(d) => maybe(
                self.average_point.as_ref(),
                (self.class + d).mul_scalar(0.5),
            ),
            None => self.class,
        }
    }
}

impl Kwt {
    /// `x`: [batch, frames, features]. With [`Kwt::qat`] set, every quantization point of the
    /// integer graph is fake-quantized.
    pub fn forward(&self, x: Tensor<3>) -> KwtOutput {
        let q = self.qat.as_ref();
        let [batch, _, _] = x.dims();
        let x = maybe(q.map(|q| &q.input), self.input_norm.forward(x));
        let x = linear(&self.embed, x, q.map(|q| &q.embed), q.map(|q| &q.input));
        let dim = x.dims()[2];
        // The integer graph quantizes the tokens at the embedding's output scale.
        let token = |t: &Param<Tensor<3>>| {
            maybe(q.map(|q| &q.embed.output), t.val().expand([batch, 1, dim]))
        };
        let mut parts = vec![token(&self.cls_token)];
        if let Some(dist) = &self.dist_token {
            parts.push(token(dist));
        }
        parts.push(x);
        // The integer graph stores the embedding as int8 at its own scale before adding it.
        let pos = match q {
            Some(_) => fake_quant_abs_max(self.pos_embedding.val()),
            None => self.pos_embedding.val(),
        };
        let mut x = maybe(q.map(|q| &q.pos_embedding), Tensor::cat(parts, 1) + pos);
        // the point whose scale `x` is on: a block's output is its norm2 (PostNorm) or its
        // add2 (PreNorm)
        let mut point = q.map(|q| &q.pos_embedding);
        for (l, block) in self.blocks.iter().enumerate() {
            let bq = q.and_then(|q| q.blocks.get(l));
            x = block.forward_q(x, bq, point);
            point = bq.map(|b| if block.post_norm { &b.norm2 } else { &b.add2 });
        }
        let token = |i: usize| -> Tensor<2> { x.clone().narrow(1, i, 1).squeeze_dim(1) };
        KwtOutput {
            class: self.head.forward(token(0), q.map(|q| &q.head), point),
            distill: self
                .dist_head
                .as_ref()
                .map(|h| h.forward(token(1), q.and_then(|q| q.dist_head.as_ref()), point)),
            average_point: q.and_then(|q| q.logits.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(name: &str) -> usize {
        let device = Device::flex();
        KwtConfig::preset(name, 12)
            .unwrap()
            .init(0, &device)
            .unwrap()
            .num_params()
    }

    #[test]
    fn parameter_counts_match_kwt_table_1() {
        // Table 1 of the KWT paper: 607K, 2,394K, 5,361K parameters for 12 classes.
        assert_eq!(params("kwt-1") / 1000, 607);
        assert_eq!(params("kwt-2") / 1000, 2394);
        assert_eq!(params("kwt-3") / 1000, 5361);
    }

    #[test]
    fn forward_shapes_with_and_without_distillation_token() {
        let device = Device::flex();
        for distill in [false, true] {
            let mut cfg = KwtConfig::preset("kwt-micro", 5).unwrap();
            cfg.distill_token = distill;
            cfg.norm = if distill {
                NormPlacement::PreNorm
            } else {
                NormPlacement::PostNorm
            };
            let model = cfg.init(1, &device).unwrap();
            let out = model.forward(Tensor::zeros([3, 98, 40], &device));
            assert_eq!(out.class.dims(), [3, 5]);
            assert_eq!(
                out.distill.as_ref().map(|d| d.dims()),
                distill.then_some([3, 5])
            );
            assert_eq!(out.logits().dims(), [3, 5]);
        }
    }

    #[test]
    fn unknown_preset_and_bad_fields_are_errors() {
        let err = KwtConfig::preset("kwt-9", 12).unwrap_err().to_string();
        assert!(err.contains("kwt-9") && err.contains("kwt-1"), "{err}");
        let mut cfg = KwtConfig::preset("kwt-micro", 12).unwrap();
        cfg.heads = 0;
        let err = cfg.init(0, &Device::flex()).unwrap_err().to_string();
        assert!(err.contains("heads"), "{err}");
    }
}
