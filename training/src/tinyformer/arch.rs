//! The single-path TinyFormer architecture as data (TinyFormer Fig. 3): two or more DoT stages
//! (Downsample, MobileNetV2 modules, Transformer modules), a pooling module, the "last Linear"
//! and the classifier. The trainer, the cost model, pruning and the exporter all read this value;
//! layer names come from [`TinyFormerArch::layers`] so that they agree everywhere.

use serde::{Deserialize, Serialize};

use crate::error::TrainingError;

/// The Downsample module's candidates (both halve height and width).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Downsample {
    /// 3x3 convolution, stride 2, padding 1, then ReLU.
    ConvStride2,
    /// 3x3 convolution, stride 1, padding 1, ReLU, then 2x2 max pooling.
    ConvMaxPool,
}

/// The Pooling module's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pooling {
    /// Sequence pooling (Hassani et al., CCT): softmax(Linear(x)) weighted sum of the tokens.
    SeqPool,
    /// 2x2 average pooling (stride 2), flattened.
    AvgPool,
}

/// One MobileNetV2 inverted residual block (stride 1, same channels, so always residual):
/// 1x1 expand, ReLU, depthwise 3x3, ReLU, 1x1 project, + input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MobileNetArch {
    pub expansion: usize,
}

/// One Transformer module (MobileViT-style, as TinyFormer Fig. 3): Conv 3x3 -> Conv 1x1, the
/// feature map unfolded to `h * w` tokens of `channels`, `encoders` pre-norm encoder layers
/// (MHSA + ReLU MLP of width `mlp_ratio * channels`), folded back, Conv 1x1 -> Conv 3x3, + input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformerArch {
    pub heads: usize,
    pub mlp_ratio: usize,
    pub encoders: usize,
}

/// One DoT stage: Downsample to `channels`, then the MobileNetV2 and Transformer modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DotArch {
    pub downsample: Downsample,
    pub channels: usize,
    pub mobilenets: Vec<MobileNetArch>,
    pub transformers: Vec<TransformerArch>,
}

/// A stand-alone single-path TinyFormer model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyFormerArch {
    /// Input image `[channels, height, width]`.
    pub input: [usize; 3],
    pub classes: usize,
    pub stages: Vec<DotArch>,
    pub pooling: Pooling,
    /// Width of the hidden Linear before the classifier ("Dimension of the Last Linear").
    pub last_linear: usize,
}

/// What kind of weight a layer holds, with its shape (the layouts pruning and lowering use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerKind {
    /// Dense `k x k` convolution, weights `[cout, cin, k, k]`.
    Conv { cin: usize, cout: usize, k: usize },
    /// Depthwise `k x k` convolution, weights `[c, 1, k, k]`.
    Depthwise { c: usize, k: usize },
    /// Linear, weights `[in, out]` (Burn's layout).
    Linear { d_in: usize, d_out: usize },
}

impl LayerKind {
    /// Weights (without bias).
    pub fn weights(&self) -> usize {
        match *self {
            LayerKind::Conv { cin, cout, k } => cin * cout * k * k,
            LayerKind::Depthwise { c, k } => c * k * k,
            LayerKind::Linear { d_in, d_out } => d_in * d_out,
        }
    }
}

/// A weight layer of the model, by its stable name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    pub name: String,
    pub kind: LayerKind,
    /// Spatial size (`h * w`) or tokens the layer runs over, for MAC counts.
    pub positions: usize,
    pub bias: bool,
}

impl LayerSpec {
    pub fn macs(&self) -> usize {
        self.kind.weights() * self.positions
    }
}

impl TinyFormerArch {
    /// Checks every dimension; errors name the field.
    pub fn validate(&self) -> Result<(), TrainingError> {
        let bad = |m: String| Err(TrainingError::InvalidModel(m));
        let [c, h, w] = self.input;
        if c == 0 || h == 0 || w == 0 {
            return bad(format!(
                "input {:?}: every dimension must be > 0",
                self.input
            ));
        }
        if self.classes < 2 {
            return bad(format!("classes = {}: need at least 2", self.classes));
        }
        if self.stages.is_empty() {
            return bad("stages: need at least one DoT stage".into());
        }
        if self.last_linear == 0 {
            return bad("last_linear must be > 0".into());
        }
        let (mut h, mut w) = (h, w);
        for (i, s) in self.stages.iter().enumerate() {
            if s.channels == 0 {
                return bad(format!("stages[{i}].channels must be > 0"));
            }
            if h < 2 || w < 2 {
                return bad(format!(
                    "stages[{i}]: the feature map is {h}x{w}, too small to downsample"
                ));
            }
            // A stride-2 convolution rounds an odd side up, a 2x2 max pool down: only even
            // sides give every downsample the same, halved map.
            if h % 2 != 0 || w % 2 != 0 {
                return bad(format!(
                    "stages[{i}]: the feature map is {h}x{w}; each stage halves it, so every side \
                     must be even there (input {:?}: make height and width multiples of {})",
                    self.input,
                    1usize << self.stages.len()
                ));
            }
            h /= 2;
            w /= 2;
            for (j, m) in s.mobilenets.iter().enumerate() {
                if m.expansion == 0 {
                    return bad(format!("stages[{i}].mobilenets[{j}].expansion must be > 0"));
                }
            }
            for (j, t) in s.transformers.iter().enumerate() {
                if t.heads == 0 || s.channels % t.heads != 0 {
                    return bad(format!(
                        "stages[{i}].transformers[{j}].heads = {}: must divide channels = {}",
                        t.heads, s.channels
                    ));
                }
                if t.mlp_ratio == 0 || t.encoders == 0 {
                    return bad(format!(
                        "stages[{i}].transformers[{j}]: mlp_ratio and encoders must be > 0"
                    ));
                }
            }
        }
        if self.pooling == Pooling::AvgPool && (h < 2 || w < 2) {
            return bad(format!(
                "pooling AvgPool needs a feature map of at least 2x2, the last stage gives {h}x{w}"
            ));
        }
        Ok(())
    }

    /// Feature-map size after stage `i` (every stage halves it).
    pub fn spatial_after(&self, stage: usize) -> (usize, usize) {
        let (mut h, mut w) = (self.input[1], self.input[2]);
        for _ in 0..=stage {
            h /= 2;
            w /= 2;
        }
        (h, w)
    }

    /// Width of the pooled feature vector the last Linear reads.
    pub fn pooled_features(&self) -> usize {
        let last = self.stages.len() - 1;
        let c = self.stages[last].channels;
        match self.pooling {
            Pooling::SeqPool => c,
            Pooling::AvgPool => {
                let (h, w) = self.spatial_after(last);
                c * (h / 2) * (w / 2)
            }
        }
    }

    /// Every weight layer in execution order, with stable names.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut out = Vec::new();
        let mut push = |name: String, kind: LayerKind, positions: usize| {
            out.push(LayerSpec {
                name,
                kind,
                positions,
                bias: true,
            })
        };
        let mut cin = self.input[0];
        let (mut h, mut w) = (self.input[1], self.input[2]);
        for (i, s) in self.stages.iter().enumerate() {
            let c = s.channels;
            let conv_positions = match s.downsample {
                Downsample::ConvStride2 => (h / 2) * (w / 2),
                Downsample::ConvMaxPool => h * w,
            };
            push(
                format!("s{i}.down"),
                LayerKind::Conv { cin, cout: c, k: 3 },
                conv_positions,
            );
            h /= 2;
            w /= 2;
            let hw = h * w;
            for (j, m) in s.mobilenets.iter().enumerate() {
                let e = c * m.expansion;
                let p = format!("s{i}.mb{j}");
                push(
                    format!("{p}.expand"),
                    LayerKind::Conv {
                        cin: c,
                        cout: e,
                        k: 1,
                    },
                    hw,
                );
                push(format!("{p}.dw"), LayerKind::Depthwise { c: e, k: 3 }, hw);
                push(
                    format!("{p}.project"),
                    LayerKind::Conv {
                        cin: e,
                        cout: c,
                        k: 1,
                    },
                    hw,
                );
            }
            for (j, t) in s.transformers.iter().enumerate() {
                let p = format!("s{i}.tr{j}");
                push(
                    format!("{p}.local3"),
                    LayerKind::Conv {
                        cin: c,
                        cout: c,
                        k: 3,
                    },
                    hw,
                );
                push(
                    format!("{p}.local1"),
                    LayerKind::Conv {
                        cin: c,
                        cout: c,
                        k: 1,
                    },
                    hw,
                );
                for e in 0..t.encoders {
                    let q = format!("{p}.enc{e}");
                    let lin = |d_in, d_out| LayerKind::Linear { d_in, d_out };
                    push(format!("{q}.qkv"), lin(c, 3 * c), hw);
                    push(format!("{q}.out"), lin(c, c), hw);
                    push(format!("{q}.fc1"), lin(c, t.mlp_ratio * c), hw);
                    push(format!("{q}.fc2"), lin(t.mlp_ratio * c, c), hw);
                }
                push(
                    format!("{p}.fuse1"),
                    LayerKind::Conv {
                        cin: c,
                        cout: c,
                        k: 1,
                    },
                    hw,
                );
                push(
                    format!("{p}.fuse3"),
                    LayerKind::Conv {
                        cin: c,
                        cout: c,
                        k: 3,
                    },
                    hw,
                );
            }
            cin = c;
        }
        if self.pooling == Pooling::SeqPool {
            push(
                "head.seqpool".into(),
                LayerKind::Linear {
                    d_in: cin,
                    d_out: 1,
                },
                h * w,
            );
        }
        push(
            "head.last".into(),
            LayerKind::Linear {
                d_in: self.pooled_features(),
                d_out: self.last_linear,
            },
            1,
        );
        push(
            "head.classifier".into(),
            LayerKind::Linear {
                d_in: self.last_linear,
                d_out: self.classes,
            },
            1,
        );
        // The attention's fused QKV projection has no bias (as KWT's and ViT's reference).
        for l in &mut out {
            if l.name.ends_with(".qkv") {
                l.bias = false;
            }
        }
        out
    }

    /// Trainable parameters: weights, biases and the encoders' LayerNorm scales and shifts.
    pub fn parameters(&self) -> usize {
        let weights: usize = self
            .layers()
            .iter()
            .map(|l| l.kind.weights() + if l.bias { l.kind.outputs() } else { 0 })
            .sum();
        let norms: usize = self
            .stages
            .iter()
            .map(|s| {
                s.transformers
                    .iter()
                    .map(|t| t.encoders * 4 * s.channels)
                    .sum::<usize>()
            })
            .sum();
        weights + norms
    }

    /// Multiply-accumulates of one inference (weight layers and attention products).
    pub fn macs(&self) -> usize {
        let layers: usize = self.layers().iter().map(LayerSpec::macs).sum();
        let attention: usize = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (h, w) = self.spatial_after(i);
                let n = h * w;
                s.transformers
                    .iter()
                    .map(|t| t.encoders * 2 * n * n * s.channels)
                    .sum::<usize>()
            })
            .sum();
        layers + attention
    }
}

impl LayerKind {
    /// Output channels / features (bias length).
    pub fn outputs(&self) -> usize {
        match *self {
            LayerKind::Conv { cout, .. } => cout,
            LayerKind::Depthwise { c, .. } => c,
            LayerKind::Linear { d_out, .. } => d_out,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small two-stage model on 1x16x16 inputs used by the tests of this module.
    pub(crate) fn small_arch() -> TinyFormerArch {
        TinyFormerArch {
            input: [1, 16, 16],
            classes: 4,
            stages: vec![
                DotArch {
                    downsample: Downsample::ConvStride2,
                    channels: 8,
                    mobilenets: vec![MobileNetArch { expansion: 2 }],
                    transformers: vec![],
                },
                DotArch {
                    downsample: Downsample::ConvMaxPool,
                    channels: 12,
                    mobilenets: vec![MobileNetArch { expansion: 2 }],
                    transformers: vec![TransformerArch {
                        heads: 2,
                        mlp_ratio: 2,
                        encoders: 1,
                    }],
                },
            ],
            pooling: Pooling::SeqPool,
            last_linear: 16,
        }
    }

    #[test]
    fn layer_names_are_unique_and_ordered() {
        let arch = small_arch();
        let names: Vec<String> = arch.layers().into_iter().map(|l| l.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert_eq!(names.first().unwrap(), "s0.down");
        assert_eq!(names.last().unwrap(), "head.classifier");
        assert!(names.contains(&"s1.tr0.enc0.qkv".to_string()));
    }

    #[test]
    fn validation_names_the_field() {
        let mut arch = small_arch();
        arch.stages[1].transformers[0].heads = 5;
        let msg = arch.validate().unwrap_err().to_string();
        assert!(msg.contains("stages[1].transformers[0].heads"), "{msg}");
        let mut arch = small_arch();
        arch.input = [1, 4, 4];
        arch.pooling = Pooling::AvgPool;
        let msg = arch.validate().unwrap_err().to_string();
        assert!(msg.contains("AvgPool"), "{msg}");
    }

    #[test]
    fn ron_round_trip() {
        let arch = small_arch();
        let text = ron::to_string(&arch).unwrap();
        let back: TinyFormerArch = ron::from_str(&text).unwrap();
        assert_eq!(arch, back);
    }

    #[test]
    fn odd_feature_maps_are_refused_before_a_stage() {
        let mut a = small_arch();
        a.input = [1, 98, 40];
        a.stages = vec![a.stages[0].clone(), a.stages[0].clone()];
        let e = a.validate().unwrap_err().to_string();
        assert!(
            e.contains("stages[1]") && e.contains("49x20") && e.contains("multiples of 4"),
            "{e}"
        );
        a.input = [1, 96, 40];
        a.validate().unwrap();
    }
}
