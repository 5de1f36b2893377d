//! Offline construction of an integer graph from real scales (floats allowed here only):
//! every method turns scales into the integer parameters the op stores, infers the output
//! shape and names the output tensor after the node.

use crate::dyadic::Dyadic;
use crate::error::{QuantError, Result};
use crate::gelu_table::GeluTable;
use crate::graph::{AddParams, Graph, Node, Op, Requant, TensorInfo, Window, infer_shape};
use crate::ibert::{ISoftmax, Int8Gelu, IntLayerNorm};

/// Builds a [`Graph`] node by node.
#[derive(Debug, Clone, Default)]
pub struct GraphBuilder {
    graph: Graph,
}

fn requant_for(
    node: &str,
    in_scale: f64,
    w_scales: &[f64],
    out_scale: f64,
    channels: usize,
) -> Result<Requant> {
    match w_scales.len() {
        1 => Ok(Requant::PerTensor(Dyadic::from_scale(
            in_scale * w_scales[0] / out_scale,
        )?)),
        n if n == channels => Ok(Requant::PerChannel(
            w_scales
                .iter()
                .map(|w| Dyadic::from_scale(in_scale * w / out_scale))
                .collect::<Result<_>>()?,
        )),
        n => Err(QuantError::InvalidParams {
            node: node.to_string(),
            reason: format!("{n} weight scales, expected 1 or {channels}"),
        }),
    }
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    fn info(&self, name: &str, node: &str) -> Result<&TensorInfo> {
        self.graph
            .tensor(name)
            .ok_or_else(|| QuantError::UnknownTensor {
                node: node.to_string(),
                tensor: name.to_string(),
            })
    }

    /// Real scale of a declared tensor.
    pub fn scale(&self, name: &str) -> Result<f64> {
        Ok(self.info(name, "<scale query>")?.scale.to_f64())
    }

    /// Shape of a declared tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.info(name, "<shape query>")?.shape.clone())
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, shape: &[usize], scale: f64) -> Result<String> {
        if self.graph.tensor(name).is_some() {
            return Err(QuantError::Duplicate { name: name.into() });
        }
        self.graph.tensors.push(TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            scale: Dyadic::from_scale(scale)?,
            zero_point: 0,
        });
        self.graph.inputs.push(name.into());
        Ok(name.into())
    }

    /// Adds a node with an explicit op; `out_scale` is ignored for scale-preserving ops and
    /// softmax. Returns the output tensor's name (= node name).
    pub fn node(&mut self, name: &str, op: Op, inputs: &[&str], out_scale: f64) -> Result<String> {
        if self.graph.tensor(name).is_some() {
            return Err(QuantError::Duplicate { name: name.into() });
        }
        let node = Node {
            name: name.into(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output: name.into(),
        };
        let ins = inputs
            .iter()
            .map(|i| self.info(i, name))
            .collect::<Result<Vec<_>>>()?;
        let shape = infer_shape(&node, &ins)?;
        let scale = if node.op.keeps_scale() {
            ins[0].scale
        } else if let Op::Softmax(sm) = &node.op {
            Dyadic::pow2(sm.out_exp())?
        } else {
            Dyadic::from_scale(out_scale)?
        };
        self.graph.tensors.push(TensorInfo {
            name: name.into(),
            shape,
            scale,
            zero_point: node.op.output_zero_point(),
        });
        self.graph.nodes.push(node);
        Ok(name.into())
    }

    /// Linear layer, weight `[out, in]`; `w_scales` has 1 (per tensor) or `out` values.
    pub fn linear(
        &mut self,
        name: &str,
        x: &str,
        weight: Vec<i8>,
        bias: Vec<i32>,
        w_scales: &[f64],
        out_scale: f64,
    ) -> Result<String> {
        let sx = self.scale(x)?;
        let in_features = *self.shape(x)?.last().unwrap_or(&0);
        let out_features = bias.len();
        let requant = requant_for(name, sx, w_scales, out_scale, out_features)?;
        self.node(
            name,
            Op::Linear {
                in_features,
                out_features,
                weight,
                bias,
                requant,
            },
            &[x],
            out_scale,
        )
    }

    /// Activation x activation matmul.
    pub fn matmul(
        &mut self,
        name: &str,
        a: &str,
        b: &str,
        transpose_b: bool,
        out_scale: f64,
    ) -> Result<String> {
        let requant = Dyadic::from_scale(self.scale(a)? * self.scale(b)? / out_scale)?;
        self.node(
            name,
            Op::MatMul {
                transpose_b,
                requant,
            },
            &[a, b],
            out_scale,
        )
    }

    /// `a + b`.
    pub fn add(&mut self, name: &str, a: &str, b: &str, out_scale: f64) -> Result<String> {
        let p = AddParams::from_scales(self.scale(a)?, self.scale(b)?, out_scale)?;
        self.node(name, Op::Add(p), &[a, b], out_scale)
    }

    /// HWC convolution, weight `[out_c, kh, kw, in_c]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        name: &str,
        x: &str,
        window: Window,
        weight: Vec<i8>,
        bias: Vec<i32>,
        w_scales: &[f64],
        out_scale: f64,
    ) -> Result<String> {
        let in_c = *self.shape(x)?.last().unwrap_or(&0);
        let out_c = bias.len();
        let requant = requant_for(name, self.scale(x)?, w_scales, out_scale, out_c)?;
        self.node(
            name,
            Op::Conv2d {
                in_c,
                out_c,
                window,
                weight,
                bias,
                requant,
            },
            &[x],
            out_scale,
        )
    }

    /// HWC depthwise convolution, weight `[kh, kw, c]`.
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise_conv2d(
        &mut self,
        name: &str,
        x: &str,
        window: Window,
        weight: Vec<i8>,
        bias: Vec<i32>,
        w_scales: &[f64],
        out_scale: f64,
    ) -> Result<String> {
        let channels = bias.len();
        let requant = requant_for(name, self.scale(x)?, w_scales, out_scale, channels)?;
        self.node(
            name,
            Op::DepthwiseConv2d {
                channels,
                window,
                weight,
                bias,
                requant,
            },
            &[x],
            out_scale,
        )
    }

    /// i-GELU.
    pub fn gelu(&mut self, name: &str, x: &str, out_scale: f64) -> Result<String> {
        let g = Int8Gelu::new(self.scale(x)?, out_scale)?;
        self.node(name, Op::Gelu(g), &[x], out_scale)
    }

    /// GELU as the exact table ([`GeluTable`]).
    pub fn gelu_table(&mut self, name: &str, x: &str, out_scale: f64) -> Result<String> {
        let t = GeluTable::exact(self.scale(x)?, out_scale)?;
        self.node(name, Op::GeluTable(t), &[x], out_scale)
    }

    /// i-softmax over the last axis (output scale `2^-8`, zero point `-128`); see
    /// [`Self::softmax_at`] for finer steps.
    pub fn softmax(&mut self, name: &str, x: &str) -> Result<String> {
        self.softmax_at(name, x, 0)
    }

    /// i-softmax over the last axis with output scale `2^-(8 + out_shift)`.
    pub fn softmax_at(&mut self, name: &str, x: &str, out_shift: u32) -> Result<String> {
        let len = *self.shape(x)?.last().unwrap_or(&0);
        let sm = ISoftmax::with_out_shift(len, self.scale(x)?, out_shift)?;
        let scale = 2f64.powi(sm.out_exp());
        self.node(name, Op::Softmax(sm), &[x], scale)
    }

    /// I-BERT i-LayerNorm (`G = 14`).
    pub fn layer_norm(
        &mut self,
        name: &str,
        x: &str,
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        out_scale: f64,
    ) -> Result<String> {
        let g = crate::ibert::IBERT_NORM_FRAC;
        let ln = self.int_layer_norm(x, gamma, beta, eps, out_scale, g)?;
        self.node(name, Op::LayerNorm(ln), &[x], out_scale)
    }

    /// TinyFormer Scaled-LayerNorm (`G = 7`, [`crate::ibert::SCALED_NORM_FRAC`]).
    pub fn scaled_layer_norm(
        &mut self,
        name: &str,
        x: &str,
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        out_scale: f64,
    ) -> Result<String> {
        let g = crate::ibert::SCALED_NORM_FRAC;
        let ln = self.int_layer_norm(x, gamma, beta, eps, out_scale, g)?;
        self.node(name, Op::ScaledLayerNorm(ln), &[x], out_scale)
    }

    /// The integer LayerNorm of tensor `x` with `g` fractional bits of the normalised value.
    fn int_layer_norm(
        &self,
        x: &str,
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        out_scale: f64,
        g: u32,
    ) -> Result<IntLayerNorm> {
        IntLayerNorm::from_float(gamma, beta, eps, self.scale(x)?, out_scale, g)
    }

    /// Adds a learned embedding quantized at `emb_scale`.
    pub fn add_embedding(
        &mut self,
        name: &str,
        x: &str,
        embedding: Vec<i8>,
        emb_scale: f64,
        out_scale: f64,
    ) -> Result<String> {
        let add = AddParams::from_scales(self.scale(x)?, emb_scale, out_scale)?;
        self.node(name, Op::AddEmbedding { embedding, add }, &[x], out_scale)
    }

    /// Int8 rescale.
    pub fn requant(&mut self, name: &str, x: &str, out_scale: f64) -> Result<String> {
        let d = Dyadic::from_scale(self.scale(x)? / out_scale)?;
        self.node(name, Op::Requant(d), &[x], out_scale)
    }

    /// A scale-preserving op (pooling, ReLU, reshape, transpose, token ops).
    pub fn same_scale(&mut self, name: &str, x: &str, op: Op) -> Result<String> {
        self.node(name, op, &[x], 1.0)
    }

    /// Attention head split of `x` (`[S, H P]`): reshape to `[S, H, P]` (`{x}_r`), then
    /// transpose to `[H, S, P]` (`{x}_h`, returned).
    pub fn split_heads(&mut self, x: &str, heads: usize) -> Result<String> {
        let shape = self.shape(x)?;
        let (s, e) = match shape[..] {
            [s, e] if heads > 0 && e % heads == 0 => (s, e),
            _ => {
                return Err(QuantError::InvalidParams {
                    node: format!("{x}_r"),
                    reason: format!("cannot split {shape:?} into {heads} heads"),
                });
            }
        };
        let r = self.same_scale(
            &format!("{x}_r"),
            x,
            Op::Reshape {
                shape: vec![s, heads, e / heads],
            },
        )?;
        self.same_scale(
            &format!("{x}_h"),
            &r,
            Op::Transpose {
                perm: vec![1, 0, 2],
            },
        )
    }

    /// Attention head merge of `x` (`[H, S, P]`): transpose to `[S, H, P]` (`{name}_t`), then
    /// reshape to `[S, H P]` (`name`, returned).
    pub fn merge_heads(&mut self, name: &str, x: &str) -> Result<String> {
        let shape = self.shape(x)?;
        let [h, s, p] = shape[..] else {
            return Err(QuantError::InvalidParams {
                node: format!("{name}_t"),
                reason: format!("head merge needs [H, S, P], got {shape:?}"),
            });
        };
        let t = self.same_scale(
            &format!("{name}_t"),
            x,
            Op::Transpose {
                perm: vec![1, 0, 2],
            },
        )?;
        self.same_scale(
            name,
            &t,
            Op::Reshape {
                shape: vec![s, h * p],
            },
        )
    }

    /// Marks a graph output.
    pub fn output(&mut self, name: &str) {
        self.graph.outputs.push(name.into());
    }

    /// Validates and returns the graph.
    pub fn finish(self) -> Result<Graph> {
        self.graph.validate()?;
        Ok(self.graph)
    }
}
