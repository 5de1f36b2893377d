//! A float mirror of the integer graph: the same nodes, names, shapes and layouts as the
//! [`crate::Graph`] that [`super::kwt_graph`] emits, with float parameters. It is extracted
//! once from a Burn [`training::Kwt`] and run in plain Rust, so every intermediate of the float
//! model is available by the name of the integer tensor it corresponds to (calibration and
//! per-layer error reports need exactly that). [`FloatGraph::from_kwt`] re-implements KWT's
//! forward pass; [`super::quantize_kwt`] checks it against the Burn model's logits.

use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Tensor, TensorData};
use training::{Kwt, KwtConfig};

use super::error::{PtqError, Result};
use super::float_matmul::{MatrixView, matmul_f64, widen};

/// A float op; the integer op of the same name in [`crate::Op`] is its quantized form.
#[derive(Debug, Clone, PartialEq)]
pub enum FOp {
    /// `[.., in] -> [.., out]`, weight `[out, in]` row-major (the integer layout).
    Linear {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// `[out, in]`.
        weight: Vec<f32>,
        /// `[out]` (zeros for a bias-free layer).
        bias: Vec<f32>,
    },
    /// `alpha * a b` (or `alpha * a b^T`) over the two trailing axes.
    MatMul {
        /// Second operand stored `[.., N, K]`.
        transpose_b: bool,
        /// Real factor folded into the requantization (attention's `1/sqrt(dim_head)`).
        alpha: f32,
    },
    /// `alpha_a a + alpha_b b`.
    Add {
        /// Factor of the first input.
        alpha_a: f32,
        /// Factor of the second input.
        alpha_b: f32,
    },
    /// Softmax over the last axis.
    Softmax,
    /// LayerNorm over the last axis (biased variance).
    LayerNorm {
        /// Gain.
        gamma: Vec<f32>,
        /// Offset.
        beta: Vec<f32>,
        /// Variance epsilon.
        eps: f64,
    },
    /// Exact (erf) GELU.
    Gelu,
    /// `[T, D] -> [T + 1, D]`, `token` first.
    ConcatToken {
        /// `[D]`.
        token: Vec<f32>,
    },
    /// `x + embedding` (same shape).
    AddEmbedding {
        /// Same shape as the input.
        embedding: Vec<f32>,
    },
    /// Same data, new shape.
    Reshape {
        /// New shape.
        shape: Vec<usize>,
    },
    /// Output axis `i` is input axis `perm[i]`.
    Transpose {
        /// Permutation.
        perm: Vec<usize>,
    },
    /// Slice `index` of axis 0.
    SelectToken {
        /// Index along axis 0.
        index: usize,
    },
    /// HWC convolution (TinyFormer), weight `[out_c, kh, kw, in_c]` (the integer layout).
    Conv2d {
        /// Input channels.
        in_c: usize,
        /// Output channels.
        out_c: usize,
        /// Kernel, stride, padding.
        window: crate::graph::Window,
        /// `[out_c, kh, kw, in_c]`.
        weight: Vec<f32>,
        /// `[out_c]`.
        bias: Vec<f32>,
    },
    /// HWC depthwise convolution (multiplier 1), weight `[kh, kw, c]`.
    DepthwiseConv2d {
        /// Channels.
        channels: usize,
        /// Kernel, stride, padding.
        window: crate::graph::Window,
        /// `[kh, kw, c]`.
        weight: Vec<f32>,
        /// `[c]`.
        bias: Vec<f32>,
    },
    /// HWC max pooling over the in-range positions of each window.
    MaxPool2d(crate::graph::Window),
    /// HWC average pooling over the in-range positions of each window.
    AvgPool2d(crate::graph::Window),
    /// `max(x, 0)`.
    Relu,
}

impl FOp {
    /// Whether the integer form of this op keeps its input's scale (see
    /// [`crate::Op::keeps_scale`]).
    pub fn keeps_scale(&self) -> bool {
        matches!(
            self,
            FOp::ConcatToken { .. }
                | FOp::Reshape { .. }
                | FOp::Transpose { .. }
                | FOp::SelectToken { .. }
                | FOp::MaxPool2d(_)
                | FOp::AvgPool2d(_)
                | FOp::Relu
        )
    }
}

/// One float node. Tensor ids: 0 is the graph input, `i + 1` the output of node `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct FNode {
    /// Name (= name of its output tensor and of the integer node).
    pub name: String,
    /// The op.
    pub op: FOp,
    /// Input tensor ids.
    pub inputs: Vec<usize>,
    /// Per-sample output shape.
    pub shape: Vec<usize>,
}

/// The float graph of a KWT, single sample, no batch axis.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatGraph {
    /// Input name (`input`).
    pub input: String,
    /// `[frames, features]`.
    pub input_shape: Vec<usize>,
    /// Nodes in execution order.
    pub nodes: Vec<FNode>,
    /// Id of the output tensor (the logits).
    pub output: usize,
    /// The model's frozen input standardization: tensor 0 (`input`) is the standardized
    /// features, as in the integer graph.
    pub standardization: crate::graph::Standardization,
}

/// Name of the graph input.
pub const INPUT: &str = "input";
/// Name of the final logits tensor.
pub const LOGITS: &str = "logits";

pub(super) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// `[out, in]` weight and `[out]` bias of a Burn `Linear` (stored `[in, out]`).
pub(super) fn linear_params(l: &Linear, name: &str, d_in: usize, d_out: usize) -> Result<FOp> {
    let w = l.weight.val();
    let dims = w.dims();
    if dims != [d_in, d_out] {
        return Err(PtqError::Model(format!(
            "`{name}` weight is {dims:?}, expected [{d_in}, {d_out}]"
        )));
    }
    let w = values(w);
    let mut weight = vec![0f32; d_in * d_out];
    for i in 0..d_in {
        for o in 0..d_out {
            weight[o * d_in + i] = w[i * d_out + o];
        }
    }
    let bias = match &l.bias {
        Some(b) => values(b.val()),
        None => vec![0.0; d_out],
    };
    if bias.len() != d_out {
        return Err(PtqError::Model(format!(
            "`{name}` bias has {} values, expected {d_out}",
            bias.len()
        )));
    }
    Ok(FOp::Linear {
        in_features: d_in,
        out_features: d_out,
        weight,
        bias,
    })
}

/// The epsilon of a Burn LayerNorm (a private field): recovered exactly enough from one
/// forward pass on a row of variance `1e-5` with zero mean.
fn layer_norm_eps(ln: &LayerNorm, gamma: &[f32], beta: &[f32]) -> f64 {
    const DEFAULT: f64 = 1e-5;
    let d = gamma.len();
    let (i, g) = gamma
        .iter()
        .enumerate()
        .fold((0, 0f32), |(bi, bg), (i, &g)| {
            if g.abs() > bg.abs() { (i, g) } else { (bi, bg) }
        });
    if d < 2 || g == 0.0 {
        return DEFAULT;
    }
    // Row [a, -a, 0, ...] (rotated so that `a` sits at channel i): mean 0, var 2 a^2 / d.
    let v = 1e-5f64;
    let a = (v * d as f64 / 2.0).sqrt();
    let mut row = vec![0f32; d];
    row[i] = a as f32;
    row[(i + 1) % d] = -a as f32;
    let v = 2.0 * (a as f32 as f64).powi(2) / d as f64;
    let device = ln.gamma.val().device();
    let x = Tensor::<2>::from_data(TensorData::new(row, [1, d]), &device);
    let y = values(ln.forward(x));
    let z = (y[i] - beta[i]) as f64 / g as f64; // = a / sqrt(v + eps)
    if !(z.is_finite() && z > 0.0) {
        return DEFAULT;
    }
    let eps = (a as f32 as f64 / z).powi(2) - v;
    // Relative precision of the probe is about 1e-6 of v: snap tiny values to zero.
    if eps < 1e-11 { 0.0 } else { eps }
}

pub(super) fn layer_norm_params(ln: &LayerNorm, name: &str, dim: usize) -> Result<FOp> {
    let gamma = values(ln.gamma.val());
    if gamma.len() != dim {
        return Err(PtqError::Model(format!(
            "`{name}` has {} channels, expected {dim}",
            gamma.len()
        )));
    }
    let beta = match &ln.beta {
        Some(b) => values(b.val()),
        None => vec![0.0; dim],
    };
    let eps = layer_norm_eps(ln, &gamma, &beta);
    Ok(FOp::LayerNorm { gamma, beta, eps })
}

pub(super) struct Walker {
    pub(super) nodes: Vec<FNode>,
    pub(super) shapes: Vec<Vec<usize>>,
}

impl Walker {
    pub(super) fn push(&mut self, name: &str, op: FOp, inputs: &[usize]) -> Result<usize> {
        let xs = &self.shapes[inputs[0]];
        let shape = match &op {
            FOp::Linear {
                in_features,
                out_features,
                ..
            } => {
                if xs.last() != Some(in_features) {
                    return Err(PtqError::Model(format!(
                        "`{name}`: input {xs:?} does not end in {in_features}"
                    )));
                }
                let mut s = xs.clone();
                *s.last_mut().expect("checked") = *out_features;
                s
            }
            FOp::MatMul { transpose_b, .. } => {
                let bs = &self.shapes[inputs[1]];
                let r = xs.len();
                let n = if *transpose_b { bs[r - 2] } else { bs[r - 1] };
                let mut s = xs.clone();
                s[r - 1] = n;
                s
            }
            FOp::Add { .. }
            | FOp::Softmax
            | FOp::LayerNorm { .. }
            | FOp::Gelu
            | FOp::AddEmbedding { .. } => xs.clone(),
            FOp::ConcatToken { .. } => vec![xs[0] + 1, xs[1]],
            FOp::Reshape { shape } => shape.clone(),
            FOp::Transpose { perm } => perm.iter().map(|&p| xs[p]).collect(),
            FOp::SelectToken { .. } => xs[1..].to_vec(),
            // Image ops (TinyFormer): shapes and parameters checked in `image_ops`.
            op @ (FOp::Conv2d { .. }
            | FOp::DepthwiseConv2d { .. }
            | FOp::MaxPool2d(_)
            | FOp::AvgPool2d(_)
            | FOp::Relu) => super::image_ops::out_shape(name, op, xs)?,
        };
        self.shapes.push(shape.clone());
        self.nodes.push(FNode {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            shape,
        });
        Ok(self.nodes.len())
    }

    fn attention(
        &mut self,
        p: &str,
        a: &training::attention::SelfAttention,
        x: usize,
        cfg: &KwtConfig,
    ) -> Result<usize> {
        self.attention_dim(p, a, x, cfg.dim)
    }

    /// Self-attention over `[T, dim]` tokens (shared by KWT and TinyFormer).
    pub(super) fn attention_dim(
        &mut self,
        p: &str,
        a: &training::attention::SelfAttention,
        x: usize,
        dim: usize,
    ) -> Result<usize> {
        let (h, dh) = (a.heads, a.dim_head);
        let inner = h * dh;
        let t = self.shapes[x][0];
        let FOp::Linear { weight, .. } =
            linear_params(&a.qkv, &format!("{p}.qkv"), dim, 3 * inner)?
        else {
            unreachable!("linear_params returns a Linear")
        };
        // Burn: qkv output column c * inner + head * dh + d, c in (q, k, v). One Linear per
        // part, so that q, k and v each get their own activation scale.
        let mut parts = [0usize; 3];
        for (c, part) in ["q", "k", "v"].iter().enumerate() {
            let rows = weight[c * inner * dim..(c + 1) * inner * dim].to_vec();
            let bias = match &a.qkv.bias {
                Some(b) => values(b.val())[c * inner..(c + 1) * inner].to_vec(),
                None => vec![0.0; inner],
            };
            let lin = self.push(
                &format!("{p}.{part}"),
                FOp::Linear {
                    in_features: dim,
                    out_features: inner,
                    weight: rows,
                    bias,
                },
                &[x],
            )?;
            let heads = self.push(
                &format!("{p}.{part}.heads"),
                FOp::Reshape {
                    shape: vec![t, h, dh],
                },
                &[lin],
            )?;
            parts[c] = self.push(
                &format!("{p}.{part}.t"),
                FOp::Transpose {
                    perm: vec![1, 0, 2],
                },
                &[heads],
            )?;
        }
        let scores = self.push(
            &format!("{p}.scores"),
            FOp::MatMul {
                transpose_b: true,
                alpha: (dh as f64).powf(-0.5) as f32,
            },
            &[parts[0], parts[1]],
        )?;
        let probs = self.push(&format!("{p}.softmax"), FOp::Softmax, &[scores])?;
        let ctx = self.push(
            &format!("{p}.context"),
            FOp::MatMul {
                transpose_b: false,
                alpha: 1.0,
            },
            &[probs, parts[2]],
        )?;
        let ctx_t = self.push(
            &format!("{p}.context.t"),
            FOp::Transpose {
                perm: vec![1, 0, 2],
            },
            &[ctx],
        )?;
        let merged = self.push(
            &format!("{p}.merge"),
            FOp::Reshape {
                shape: vec![t, inner],
            },
            &[ctx_t],
        )?;
        self.push(
            &format!("{p}.out"),
            linear_params(&a.out, &format!("{p}.out"), inner, dim)?,
            &[merged],
        )
    }

    fn mlp(
        &mut self,
        p: &str,
        m: &training::block::FeedForward,
        x: usize,
        cfg: &KwtConfig,
    ) -> Result<usize> {
        let fc1 = self.push(
            &format!("{p}.fc1"),
            linear_params(&m.fc1, &format!("{p}.fc1"), cfg.dim, cfg.mlp_dim)?,
            &[x],
        )?;
        let g = self.push(&format!("{p}.gelu"), FOp::Gelu, &[fc1])?;
        self.push(
            &format!("{p}.fc2"),
            linear_params(&m.fc2, &format!("{p}.fc2"), cfg.mlp_dim, cfg.dim)?,
            &[g],
        )
    }

    fn add(&mut self, name: &str, a: usize, b: usize) -> Result<usize> {
        self.push(
            name,
            FOp::Add {
                alpha_a: 1.0,
                alpha_b: 1.0,
            },
            &[a, b],
        )
    }

    fn head(
        &mut self,
        p: &str,
        head: &training::kwt::Head,
        x: usize,
        index: usize,
        cfg: &KwtConfig,
    ) -> Result<usize> {
        let tok = self.push(&format!("{p}.token"), FOp::SelectToken { index }, &[x])?;
        let n = self.push(
            &format!("{p}.norm"),
            layer_norm_params(&head.norm, &format!("{p}.norm"), cfg.dim)?,
            &[tok],
        )?;
        self.push(
            &format!("{p}.fc"),
            linear_params(&head.fc, &format!("{p}.fc"), cfg.dim, cfg.classes)?,
            &[n],
        )
    }
}

impl FloatGraph {
    /// Walks a float KWT (PostNorm or PreNorm, with or without distillation token) into the
    /// float graph. Node names: `embed`, `dist_token`, `cls_token`, `pos_embedding`,
    /// `block{i}.{attn.{q,k,v}[.heads|.t], attn.scores, attn.softmax, attn.context[.t],
    /// attn.merge, attn.out, add1, norm1, mlp.{fc1,gelu,fc2}, add2, norm2}`,
    /// `head.{token,norm,fc}`, `dist_head.{token,norm,fc}`, `logits`.
    pub fn from_kwt(model: &Kwt, cfg: &KwtConfig) -> Result<Self> {
        cfg.validate()?;
        let dim = cfg.dim;
        if model.blocks.len() != cfg.depth {
            return Err(PtqError::Model(format!(
                "{} blocks, config says depth {}",
                model.blocks.len(),
                cfg.depth
            )));
        }
        if model.dist_token.is_some() != cfg.distill_token
            || model.dist_head.is_some() != cfg.distill_token
        {
            return Err(PtqError::Model(
                "distillation token/head presence does not match the config".into(),
            ));
        }
        let mut w = Walker {
            nodes: Vec::new(),
            shapes: vec![vec![cfg.frames, cfg.features]],
        };
        let stats = model.input_norm.stats();
        if stats.mean.len() != cfg.features
            || !stats.mean.iter().all(|m| m.is_finite())
            || !stats.std.iter().all(|s| s.is_finite() && *s > 0.0)
        {
            return Err(PtqError::Model(format!(
                "input_norm must hold {} finite means and positive stds",
                cfg.features
            )));
        }
        let mut x = w.push(
            "embed",
            linear_params(&model.embed, "embed", cfg.features, dim)?,
            &[0],
        )?;
        if let Some(dist) = &model.dist_token {
            let token = values(dist.val());
            if token.len() != dim {
                return Err(PtqError::Model(format!(
                    "dist_token has {} values",
                    token.len()
                )));
            }
            x = w.push("dist_token", FOp::ConcatToken { token }, &[x])?;
        }
        let token = values(model.cls_token.val());
        if token.len() != dim {
            return Err(PtqError::Model(format!(
                "cls_token has {} values",
                token.len()
            )));
        }
        x = w.push("cls_token", FOp::ConcatToken { token }, &[x])?;
        let embedding = values(model.pos_embedding.val());
        let tokens = cfg.frames + cfg.extra_tokens();
        if embedding.len() != tokens * dim {
            return Err(PtqError::Model(format!(
                "pos_embedding has {} values, expected {tokens} x {dim}",
                embedding.len()
            )));
        }
        x = w.push("pos_embedding", FOp::AddEmbedding { embedding }, &[x])?;
        for (l, block) in model.blocks.iter().enumerate() {
            let p = format!("block{l}");
            if block.attn.heads * block.attn.dim_head != cfg.heads * cfg.dim_head {
                return Err(PtqError::Model(format!(
                    "{p}.attn: heads x dim_head differs from the config"
                )));
            }
            let norm1 = layer_norm_params(&block.norm1, &format!("{p}.norm1"), dim)?;
            let norm2 = layer_norm_params(&block.norm2, &format!("{p}.norm2"), dim)?;
            if block.post_norm {
                let a = w.attention(&format!("{p}.attn"), &block.attn, x, cfg)?;
                let r1 = w.add(&format!("{p}.add1"), x, a)?;
                let x1 = w.push(&format!("{p}.norm1"), norm1, &[r1])?;
                let m = w.mlp(&format!("{p}.mlp"), &block.mlp, x1, cfg)?;
                let r2 = w.add(&format!("{p}.add2"), x1, m)?;
                x = w.push(&format!("{p}.norm2"), norm2, &[r2])?;
            } else {
                let n1 = w.push(&format!("{p}.norm1"), norm1, &[x])?;
                let a = w.attention(&format!("{p}.attn"), &block.attn, n1, cfg)?;
                let x1 = w.add(&format!("{p}.add1"), x, a)?;
                let n2 = w.push(&format!("{p}.norm2"), norm2, &[x1])?;
                let m = w.mlp(&format!("{p}.mlp"), &block.mlp, n2, cfg)?;
                x = w.add(&format!("{p}.add2"), x1, m)?;
            }
        }
        let mut out = w.head("head", &model.head, x, 0, cfg)?;
        if let Some(dh) = &model.dist_head {
            let d = w.head("dist_head", dh, x, 1, cfg)?;
            // KWT Sec. 3.2: inference logits are the average of the two heads.
            out = w.push(
                LOGITS,
                FOp::Add {
                    alpha_a: 0.5,
                    alpha_b: 0.5,
                },
                &[out, d],
            )?;
        }
        Ok(FloatGraph {
            input: INPUT.to_string(),
            input_shape: vec![cfg.frames, cfg.features],
            nodes: w.nodes,
            output: out,
            standardization: crate::graph::Standardization {
                mean: stats.mean,
                std: stats.std,
            },
        })
    }

    /// Name of tensor `id`.
    pub fn tensor_name(&self, id: usize) -> &str {
        if id == 0 {
            &self.input
        } else {
            &self.nodes[id - 1].name
        }
    }

    /// Shape of tensor `id`.
    pub fn tensor_shape(&self, id: usize) -> &[usize] {
        if id == 0 {
            &self.input_shape
        } else {
            &self.nodes[id - 1].shape
        }
    }

    /// Runs one sample (`[frames * features]`, row-major); returns every tensor by id.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.run_with(input, |_, _| {})
    }

    /// [`FloatGraph::run`] with `after` applied to each node's output before later nodes read
    /// it: experiments that put one kind of rounding into an otherwise float model.
    pub fn run_with(
        &self,
        input: &[f32],
        mut after: impl FnMut(&FNode, &mut Vec<f32>),
    ) -> Result<Vec<Vec<f32>>> {
        let n: usize = self.input_shape.iter().product();
        if input.len() != n {
            return Err(PtqError::Calibration(format!(
                "sample has {} values, expected {:?} = {n}",
                input.len(),
                self.input_shape
            )));
        }
        let mut vals: Vec<Vec<f32>> = Vec::with_capacity(self.nodes.len() + 1);
        let st = &self.standardization;
        let f = st.mean.len();
        vals.push(
            input
                .iter()
                .enumerate()
                .map(|(i, &v)| (v - st.mean[i % f]) / st.std[i % f])
                .collect(),
        );
        for node in &self.nodes {
            let x = &vals[node.inputs[0]];
            let xs = self.tensor_shape(node.inputs[0]);
            let mut y = eval(node, x, xs, &vals, self);
            after(node, &mut y);
            vals.push(y);
        }
        Ok(vals)
    }

    /// Output of node `index` computed from `vals` (every tensor by id, as [`FloatGraph::run`]
    /// returns them; only the node's inputs are read): one op on given inputs, e.g. on the
    /// dequantized tensors of the integer graph to see what its kernel does differently.
    pub fn eval_node(&self, index: usize, vals: &[Vec<f32>]) -> Vec<f32> {
        let node = &self.nodes[index];
        let x = &vals[node.inputs[0]];
        eval(node, x, self.tensor_shape(node.inputs[0]), vals, self)
    }

    /// The logits of one sample.
    pub fn logits(&self, input: &[f32]) -> Result<Vec<f32>> {
        let mut v = self.run(input)?;
        Ok(std::mem::take(&mut v[self.output]))
    }
}

fn eval(node: &FNode, x: &[f32], xs: &[usize], vals: &[Vec<f32>], g: &FloatGraph) -> Vec<f32> {
    match &node.op {
        FOp::Linear {
            in_features,
            out_features,
            weight,
            bias,
        } => {
            let rows = x.len() / in_features;
            let (xw, ww) = (widen(x), widen(weight));
            let mut acc = vec![0f64; rows * out_features];
            matmul_f64(
                MatrixView::row_major(&xw, rows, *in_features),
                // weight is [out, in]: its transpose is the [in, out] right operand
                MatrixView::transposed(&ww, *in_features, *out_features),
                &mut acc,
            );
            acc.chunks_exact(*out_features)
                .flat_map(|r| r.iter().zip(bias).map(|(&s, &b)| (s + b as f64) as f32))
                .collect()
        }
        FOp::MatMul { transpose_b, alpha } => {
            let b = &vals[node.inputs[1]];
            let bs = g.tensor_shape(node.inputs[1]);
            let r = xs.len();
            let (m, k) = (xs[r - 2], xs[r - 1]);
            let n = if *transpose_b { bs[r - 2] } else { bs[r - 1] };
            let batch: usize = xs[..r - 2].iter().product();
            let (aw, bw) = (widen(x), widen(b));
            let mut acc = vec![0f64; m * n];
            let mut y = Vec::with_capacity(batch * m * n);
            for bi in 0..batch {
                let a = &aw[bi * m * k..(bi + 1) * m * k];
                let bb = &bw[bi * k * n..(bi + 1) * k * n];
                let rhs = if *transpose_b {
                    MatrixView::transposed(bb, k, n)
                } else {
                    MatrixView::row_major(bb, k, n)
                };
                matmul_f64(MatrixView::row_major(a, m, k), rhs, &mut acc);
                y.extend(acc.iter().map(|&s| (s * *alpha as f64) as f32));
            }
            y
        }
        FOp::Add { alpha_a, alpha_b } => {
            let b = &vals[node.inputs[1]];
            x.iter()
                .zip(b)
                .map(|(&u, &v)| alpha_a * u + alpha_b * v)
                .collect()
        }
        FOp::Softmax => {
            let n = *xs.last().expect("rank >= 1");
            let mut y = Vec::with_capacity(x.len());
            for row in x.chunks_exact(n) {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let e: Vec<f64> = row.iter().map(|&v| ((v - m) as f64).exp()).collect();
                let s: f64 = e.iter().sum();
                y.extend(e.iter().map(|&v| (v / s) as f32));
            }
            y
        }
        FOp::LayerNorm { gamma, beta, eps } => {
            let n = gamma.len();
            let mut y = Vec::with_capacity(x.len());
            for row in x.chunks_exact(n) {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
                let inv = 1.0 / (var + eps).sqrt();
                y.extend(
                    row.iter()
                        .zip(gamma.iter().zip(beta))
                        .map(|(&v, (&g, &b))| {
                            ((v as f64 - mean) * inv * g as f64 + b as f64) as f32
                        }),
                );
            }
            y
        }
        FOp::Gelu => x
            .iter()
            .map(|&v| crate::ibert_error::gelu(v as f64) as f32)
            .collect(),
        FOp::ConcatToken { token } => token.iter().chain(x.iter()).copied().collect(),
        FOp::AddEmbedding { embedding } => x.iter().zip(embedding).map(|(&u, &v)| u + v).collect(),
        FOp::Reshape { .. } => x.to_vec(),
        FOp::Transpose { perm } => transpose(x, xs, perm),
        FOp::SelectToken { index } => {
            let n: usize = xs[1..].iter().product();
            x[index * n..(index + 1) * n].to_vec()
        }
        op @ (FOp::Conv2d { .. }
        | FOp::DepthwiseConv2d { .. }
        | FOp::MaxPool2d(_)
        | FOp::AvgPool2d(_)
        | FOp::Relu) => super::image_ops::eval(op, x, xs),
    }
}

/// `sum a[i] * b[i]` in f64 (every f32 product is exact there), over independent partial
/// sums: one running sum is a chain of dependent adds, several keep the FPU's pipelines full.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0f64; LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for l in 0..LANES {
            lanes[l] += x[l] as f64 * y[l] as f64;
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&x, &y)| x as f64 * y as f64).sum();
    lanes.iter().sum::<f64>() + tail
}

/// General axis permutation (same index order as [`crate::kernels::transpose`]).
pub fn transpose<T: Copy + Default>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let r = shape.len();
    let mut in_strides = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let oshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let ostrides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut idx = vec![0usize; r];
    let mut out = vec![T::default(); x.len()];
    for o in out.iter_mut() {
        let off: usize = idx.iter().zip(&ostrides).map(|(i, s)| i * s).sum();
        *o = x[off];
        for ax in (0..r).rev() {
            idx[ax] += 1;
            if idx[ax] < oshape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}
