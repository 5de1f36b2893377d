//! The cost graph: a topologically ordered list of ops, each producing one named int8 tensor.
//!
//! Dimensions are unsigned (a negative value in a RON file is a parse error naming its
//! position); zero dimensions, unknown tensor references, wrong arity and input size mismatches
//! are rejected by [`Graph::validate`], naming the op.

use crate::attention::AttentionSpec;
use crate::error::CostError;
use crate::tiles::TilePolicy;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Optional per-layer block sparsity: a fraction `rho` of the weight blocks of `block`
/// consecutive weights (along the reduction dimension) is zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sparsity {
    pub rho: f64,
    pub block: usize,
}

/// Op kinds with their shapes. Tokens-major layouts (`tokens x features`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OpKind {
    Linear {
        tokens: usize,
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    /// `batch` independent `(m x k) . (k x n)` products of two activations.
    MatMul {
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
    },
    Softmax {
        rows: usize,
        cols: usize,
    },
    LayerNorm {
        tokens: usize,
        dim: usize,
        /// TinyFormer's Scaled-LayerNorm (as searched TinyFormers are quantized) instead of
        /// I-BERT's: priced by `scaled_layernorm` per element.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        scaled: bool,
    },
    Gelu {
        elems: usize,
    },
    /// max(x, 0) elementwise (its own kernel, as the exporter runs it).
    Relu {
        elems: usize,
    },
    /// Elementwise sum of two tensors (residual).
    Add {
        elems: usize,
    },
    Conv2d {
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    },
    DepthwiseConv2d {
        h: usize,
        w: usize,
        c: usize,
        k: usize,
        stride: usize,
        pad: usize,
    },
    /// Average or max pooling, `k x k` window (the same cost either way).
    Pool {
        h: usize,
        w: usize,
        c: usize,
        k: usize,
        stride: usize,
    },
    /// Prepend a learned class token: `tokens x dim -> (tokens + 1) x dim`.
    ClassToken {
        tokens: usize,
        dim: usize,
    },
    /// Add a learned positional embedding table `tokens x dim`.
    PosEmbedding {
        tokens: usize,
        dim: usize,
    },
    /// Select the class token: `tokens x dim -> dim`.
    TakeToken {
        tokens: usize,
        dim: usize,
    },
    /// Fused attention stage (MHSA or FWSA): `seq x embed -> seq x embed`.
    Attention(AttentionSpec),
    /// The exporter's depth-first fused attention core without its projections: inputs Q, K,
    /// V (`seq x heads*proj` each), output `softmax(Q K^T) V` (`seq x heads*proj`), one query
    /// row and head at a time (with operand tiles: 4 rows), so its scratch is one int8 row of
    /// `seq` scores (with operand tiles, [`crate::ops::attention_scratch_bytes`]).
    AttentionCore {
        seq: usize,
        heads: usize,
        proj: usize,
    },
}

/// One op: consumes `inputs` (tensor names), produces the tensor named `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    pub name: String,
    pub kind: OpKind,
    pub inputs: Vec<String>,
    #[serde(default)]
    pub sparsity: Option<Sparsity>,
}

/// A graph input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphInput {
    pub name: String,
    pub bytes: u64,
}

/// How many dyadic requantization multipliers a Linear / Conv layer keeps in flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RequantGranularity {
    /// One per layer (per-tensor weight scales).
    #[default]
    PerTensor,
    /// One per output channel (per-channel weight scales).
    PerChannel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub name: String,
    pub inputs: Vec<GraphInput>,
    pub ops: Vec<Op>,
    /// Requantization granularity of the deployed weight layers.
    #[serde(default)]
    pub requant: RequantGranularity,
    /// Every softmax (standalone or inside attention) reads its exponents from a table of
    /// [`crate::ops::SOFTMAX_LUT_BYTES`] in flash (the exporter's default).
    #[serde(default = "default_softmax_lut")]
    pub softmax_lut: bool,
    /// Which layers plan the Cortex-M DSP kernels' operand tiles in the arena (the exporter's
    /// default: all); only on targets whose core has the DSP extension ([`Target::has_dsp`]).
    /// `true` / `false` still read as `Always` / `Never`.
    ///
    /// [`Target::has_dsp`]: crate::target::Target::has_dsp
    #[serde(default)]
    pub operand_tiles: TilePolicy,
}

fn default_softmax_lut() -> bool {
    true
}

/// Upper bound on any op's work product (2^50): keeps all u64 cost arithmetic exact.
pub const MAX_WORK: f64 = 1_125_899_906_842_624.0;

fn conv_out(x: usize, k: usize, stride: usize, pad: usize) -> usize {
    (x + 2 * pad).saturating_sub(k) / stride + 1
}

impl OpKind {
    /// Short kind label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            OpKind::Linear { .. } => "linear",
            OpKind::MatMul { .. } => "matmul",
            OpKind::Softmax { .. } => "softmax",
            OpKind::LayerNorm { .. } => "layernorm",
            OpKind::Gelu { .. } => "gelu",
            OpKind::Relu { .. } => "relu",
            OpKind::Add { .. } => "add",
            OpKind::Conv2d { .. } => "conv2d",
            OpKind::DepthwiseConv2d { .. } => "dwconv2d",
            OpKind::Pool { .. } => "pool",
            OpKind::ClassToken { .. } => "cls_token",
            OpKind::PosEmbedding { .. } => "pos_emb",
            OpKind::TakeToken { .. } => "take_token",
            OpKind::Attention(_) => "attention",
            OpKind::AttentionCore { .. } => "attn_core",
        }
    }

    /// Named dimensions, for zero checks.
    fn dims(&self) -> Vec<(&'static str, usize)> {
        match *self {
            OpKind::Linear {
                tokens,
                in_features,
                out_features,
                ..
            } => vec![
                ("tokens", tokens),
                ("in_features", in_features),
                ("out_features", out_features),
            ],
            OpKind::MatMul { batch, m, k, n } => {
                vec![("batch", batch), ("m", m), ("k", k), ("n", n)]
            }
            OpKind::Softmax { rows, cols } => vec![("rows", rows), ("cols", cols)],
            OpKind::LayerNorm { tokens, dim, .. } => vec![("tokens", tokens), ("dim", dim)],
            OpKind::Gelu { elems } | OpKind::Add { elems } | OpKind::Relu { elems } => {
                vec![("elems", elems)]
            }
            OpKind::Conv2d {
                h,
                w,
                cin,
                cout,
                k,
                stride,
                ..
            } => vec![
                ("h", h),
                ("w", w),
                ("cin", cin),
                ("cout", cout),
                ("k", k),
                ("stride", stride),
            ],
            OpKind::DepthwiseConv2d {
                h, w, c, k, stride, ..
            } => vec![("h", h), ("w", w), ("c", c), ("k", k), ("stride", stride)],
            OpKind::Pool { h, w, c, k, stride } => {
                vec![("h", h), ("w", w), ("c", c), ("k", k), ("stride", stride)]
            }
            OpKind::ClassToken { tokens, dim }
            | OpKind::PosEmbedding { tokens, dim }
            | OpKind::TakeToken { tokens, dim } => vec![("tokens", tokens), ("dim", dim)],
            OpKind::Attention(a) => vec![
                ("seq", a.seq),
                ("embed", a.embed),
                ("proj", a.proj),
                ("heads", a.heads),
            ],
            OpKind::AttentionCore { seq, heads, proj } => {
                vec![("seq", seq), ("heads", heads), ("proj", proj)]
            }
        }
    }

    /// Largest product of dimensions the cost formulas form (as f64, so it cannot overflow);
    /// [`Graph::validate`] rejects ops above [`MAX_WORK`] so later integer math cannot overflow.
    pub fn work_bound(&self) -> f64 {
        let f = |x: usize| x as f64;
        match *self {
            OpKind::Linear {
                tokens,
                in_features,
                out_features,
                ..
            } => f(tokens) * f(in_features) * f(out_features),
            OpKind::MatMul { batch, m, k, n } => f(batch) * f(m) * f(k) * f(n),
            OpKind::Softmax { rows, cols } => f(rows) * f(cols) * 4.0,
            OpKind::LayerNorm { tokens, dim, .. } => f(tokens) * f(dim) * 8.0,
            OpKind::Gelu { elems } | OpKind::Add { elems } | OpKind::Relu { elems } => f(elems),
            OpKind::Conv2d {
                h,
                w,
                cin,
                cout,
                k,
                pad,
                ..
            } => {
                let (hp, wp) = (f(h) + 2.0 * f(pad), f(w) + 2.0 * f(pad));
                hp * wp * f(cout) * f(k) * f(k) * f(cin) * 4.0
            }
            OpKind::DepthwiseConv2d {
                h, w, c, k, pad, ..
            } => (f(h) + 2.0 * f(pad)) * (f(w) + 2.0 * f(pad)) * f(c) * f(k) * f(k) * 4.0,
            OpKind::Pool { h, w, c, k, .. } => f(h) * f(w) * f(c) * f(k) * f(k),
            OpKind::ClassToken { tokens, dim }
            | OpKind::PosEmbedding { tokens, dim }
            | OpKind::TakeToken { tokens, dim } => (f(tokens) + 1.0) * f(dim),
            OpKind::Attention(a) => {
                let (s, e, p, h) = (f(a.seq), f(a.embed), f(a.proj), f(a.heads));
                4.0 * h * s * (s + e + p) * (e + p + 1.0)
            }
            OpKind::AttentionCore { seq, heads, proj } => {
                4.0 * f(heads) * f(seq) * f(seq) * (f(proj) + 1.0)
            }
        }
    }

    /// Expected byte size of each input (int8).
    pub fn input_bytes(&self) -> Vec<u64> {
        let v = |x: usize| x as u64;
        match *self {
            OpKind::Linear {
                tokens,
                in_features,
                ..
            } => vec![v(tokens * in_features)],
            OpKind::MatMul { batch, m, k, n } => vec![v(batch * m * k), v(batch * k * n)],
            OpKind::Softmax { rows, cols } => vec![v(rows * cols)],
            OpKind::LayerNorm { tokens, dim, .. } => vec![v(tokens * dim)],
            OpKind::Gelu { elems } | OpKind::Relu { elems } => vec![v(elems)],
            OpKind::Add { elems } => vec![v(elems), v(elems)],
            OpKind::Conv2d { h, w, cin, .. } => vec![v(h * w * cin)],
            OpKind::DepthwiseConv2d { h, w, c, .. } | OpKind::Pool { h, w, c, .. } => {
                vec![v(h * w * c)]
            }
            OpKind::ClassToken { tokens, dim }
            | OpKind::PosEmbedding { tokens, dim }
            | OpKind::TakeToken { tokens, dim } => vec![v(tokens * dim)],
            OpKind::Attention(a) => vec![v(a.seq * a.embed)],
            OpKind::AttentionCore { seq, heads, proj } => vec![v(seq * heads * proj); 3],
        }
    }

    /// Elements (= int8 bytes) of the output tensor.
    pub fn output_elems(&self) -> u64 {
        let v = |x: usize| x as u64;
        match *self {
            OpKind::Linear {
                tokens,
                out_features,
                ..
            } => v(tokens * out_features),
            OpKind::MatMul { batch, m, n, .. } => v(batch * m * n),
            OpKind::Softmax { rows, cols } => v(rows * cols),
            OpKind::LayerNorm { tokens, dim, .. } => v(tokens * dim),
            OpKind::Gelu { elems } | OpKind::Add { elems } | OpKind::Relu { elems } => v(elems),
            OpKind::Conv2d {
                h,
                w,
                cout,
                k,
                stride,
                pad,
                ..
            } => v(conv_out(h, k, stride, pad) * conv_out(w, k, stride, pad) * cout),
            OpKind::DepthwiseConv2d {
                h,
                w,
                c,
                k,
                stride,
                pad,
            } => v(conv_out(h, k, stride, pad) * conv_out(w, k, stride, pad) * c),
            OpKind::Pool { h, w, c, k, stride } => {
                v(conv_out(h, k, stride, 0) * conv_out(w, k, stride, 0) * c)
            }
            OpKind::ClassToken { tokens, dim } => v((tokens + 1) * dim),
            OpKind::PosEmbedding { tokens, dim } => v(tokens * dim),
            OpKind::TakeToken { dim, .. } => v(dim),
            OpKind::Attention(a) => v(a.seq * a.embed),
            OpKind::AttentionCore { seq, heads, proj } => v(seq * heads * proj),
        }
    }

    /// `(rows, cols)` of the weight matrix that block sparsity applies to, if any.
    pub fn sparse_matrix(&self) -> Option<(usize, usize)> {
        match *self {
            OpKind::Linear {
                in_features,
                out_features,
                ..
            } => Some((out_features, in_features)),
            OpKind::Conv2d { cin, cout, k, .. } => Some((cout, k * k * cin)),
            OpKind::DepthwiseConv2d { c, k, .. } => Some((c, k * k)),
            _ => None,
        }
    }
}

impl Graph {
    /// Check dimensions, names, references, arity and input sizes. Returns the byte size of
    /// every tensor (graph inputs, then op outputs), by name.
    pub fn validate(&self) -> Result<HashMap<&str, u64>, CostError> {
        if self.ops.is_empty() {
            return Err(CostError::EmptyGraph {
                graph: self.name.clone(),
            });
        }
        let g = || self.name.clone();
        let mut sizes: HashMap<&str, u64> = HashMap::new();
        for i in &self.inputs {
            if i.bytes == 0 {
                return Err(CostError::ZeroDimension {
                    graph: g(),
                    op: format!("input {}", i.name),
                    field: "bytes",
                });
            }
            if sizes.insert(&i.name, i.bytes).is_some() {
                return Err(CostError::DuplicateName {
                    graph: g(),
                    op: i.name.clone(),
                    name: i.name.clone(),
                });
            }
        }
        for op in &self.ops {
            for (field, d) in op.kind.dims() {
                if d == 0 {
                    return Err(CostError::ZeroDimension {
                        graph: g(),
                        op: op.name.clone(),
                        field,
                    });
                }
            }
            let invalid = |problem: String| CostError::InvalidOp {
                graph: g(),
                op: op.name.clone(),
                problem,
            };
            let bound = op.kind.work_bound();
            if bound > MAX_WORK {
                return Err(invalid(format!(
                    "dimensions too large: work product {bound:.3e} exceeds 2^50"
                )));
            }
            match op.kind {
                OpKind::Conv2d { h, w, k, pad, .. }
                | OpKind::DepthwiseConv2d { h, w, k, pad, .. }
                    if k > h + 2 * pad || k > w + 2 * pad =>
                {
                    return Err(invalid(format!(
                        "kernel {k} larger than padded input {h}x{w} (pad {pad})"
                    )));
                }
                OpKind::Pool { h, w, k, .. } if k > h || k > w => {
                    return Err(invalid(format!("window {k} larger than input {h}x{w}")));
                }
                _ => {}
            }
            if let Some(sp) = op.sparsity {
                if op.kind.sparse_matrix().is_none() {
                    return Err(invalid(format!(
                        "sparsity is only supported on linear/conv layers, not `{}`",
                        op.kind.label()
                    )));
                }
                if !(0.0..=1.0).contains(&sp.rho) || sp.block == 0 || sp.block > 255 {
                    return Err(invalid(format!(
                        "sparsity needs rho in [0, 1] and block in 1..=255, got rho {} block {}",
                        sp.rho, sp.block
                    )));
                }
            }
            let expected = op.kind.input_bytes();
            if expected.len() != op.inputs.len() {
                return Err(CostError::Arity {
                    graph: g(),
                    op: op.name.clone(),
                    expected: expected.len(),
                    got: op.inputs.len(),
                });
            }
            for (index, (t, &want)) in op.inputs.iter().zip(&expected).enumerate() {
                let got = *sizes
                    .get(t.as_str())
                    .ok_or_else(|| CostError::UnknownTensor {
                        graph: g(),
                        op: op.name.clone(),
                        tensor: t.clone(),
                    })?;
                if got != want {
                    return Err(CostError::ShapeMismatch {
                        graph: g(),
                        op: op.name.clone(),
                        index,
                        tensor: t.clone(),
                        expected: want,
                        got,
                    });
                }
            }
            if sizes.insert(&op.name, op.kind.output_elems()).is_some() {
                return Err(CostError::DuplicateName {
                    graph: g(),
                    op: op.name.clone(),
                    name: op.name.clone(),
                });
            }
        }
        Ok(sizes)
    }
}

/// Incremental construction; `op` returns the produced tensor's name for chaining.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    graph: Graph,
}

impl GraphBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder {
            graph: Graph {
                name: name.into(),
                inputs: Vec::new(),
                ops: Vec::new(),
                requant: RequantGranularity::PerTensor,
                softmax_lut: true,
                operand_tiles: TilePolicy::Always,
            },
        }
    }

    /// Sets which layers plan the DSP kernels' operand tiles (where the target has DSP); a
    /// bool is `Always` / `Never`.
    pub fn operand_tiles(&mut self, policy: impl Into<TilePolicy>) -> &mut Self {
        self.graph.operand_tiles = policy.into();
        self
    }

    /// Sets whether softmaxes use the exponent table.
    pub fn softmax_lut(&mut self, on: bool) -> &mut Self {
        self.graph.softmax_lut = on;
        self
    }

    /// Sets the requantization granularity of the weight layers.
    pub fn requant(&mut self, g: RequantGranularity) -> &mut Self {
        self.graph.requant = g;
        self
    }

    pub fn input(&mut self, name: impl Into<String>, bytes: u64) -> String {
        let name = name.into();
        self.graph.inputs.push(GraphInput {
            name: name.clone(),
            bytes,
        });
        name
    }

    pub fn op(&mut self, name: impl Into<String>, kind: OpKind, inputs: &[&str]) -> String {
        let name = name.into();
        self.graph.ops.push(Op {
            name: name.clone(),
            kind,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            sparsity: None,
        });
        name
    }

    /// Set the sparsity of the last added op.
    pub fn sparsity(&mut self, s: Sparsity) -> &mut Self {
        if let Some(op) = self.graph.ops.last_mut() {
            op.sparsity = Some(s);
        }
        self
    }

    /// Validate and return the graph.
    pub fn build(self) -> Result<Graph, CostError> {
        self.graph.validate()?;
        Ok(self.graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lin(t: usize, i: usize, o: usize) -> OpKind {
        OpKind::Linear {
            tokens: t,
            in_features: i,
            out_features: o,
            bias: true,
        }
    }

    #[test]
    fn validation_names_the_op() {
        let mut b = GraphBuilder::new("g");
        let x = b.input("x", 8);
        b.op("fc", lin(2, 4, 0), &[&x]);
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("`fc`") && e.contains("out_features"), "{e}");

        let mut b = GraphBuilder::new("g");
        b.input("x", 8);
        b.op("fc", lin(2, 4, 3), &["y"]);
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("`fc`") && e.contains("`y`"), "{e}");

        let mut b = GraphBuilder::new("g");
        let x = b.input("x", 9);
        b.op("fc", lin(2, 4, 3), &[&x]);
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("expects 8") && e.contains("9 bytes"), "{e}");

        let mut b = GraphBuilder::new("g");
        let x = b.input("x", 8);
        b.op("add", OpKind::Add { elems: 8 }, &[&x]);
        assert!(matches!(
            b.build(),
            Err(CostError::Arity {
                expected: 2,
                got: 1,
                ..
            })
        ));

        let mut b = GraphBuilder::new("g");
        let x = b.input("x", 8);
        b.op("sm", OpKind::Softmax { rows: 2, cols: 4 }, &[&x]);
        b.sparsity(Sparsity { rho: 0.5, block: 4 });
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("`sm`") && e.contains("sparsity"), "{e}");

        let mut b = GraphBuilder::new("g");
        let x = b.input("x", 8);
        b.op("huge", lin(1 << 30, 1 << 30, 1 << 30), &[&x]);
        let e = b.build().unwrap_err().to_string();
        assert!(e.contains("`huge`") && e.contains("too large"), "{e}");

        assert!(matches!(
            GraphBuilder::new("e").build(),
            Err(CostError::EmptyGraph { .. })
        ));
    }

    #[test]
    fn negative_dimension_in_ron_is_a_parse_error() {
        let text = r#"(name: "g", inputs: [(name: "x", bytes: 8)],
            ops: [(name: "fc", kind: Linear(tokens: -2, in_features: 4, out_features: 3, bias: true), inputs: ["x"])])"#;
        assert!(ron::from_str::<Graph>(text).is_err());
        let ok = text.replace("-2", "2");
        let g: Graph = ron::from_str(&ok).unwrap();
        g.validate().unwrap();
    }

    #[test]
    fn conv_shapes() {
        let k = OpKind::Conv2d {
            h: 32,
            w: 32,
            cin: 3,
            cout: 16,
            k: 3,
            stride: 2,
            pad: 1,
        };
        assert_eq!(k.output_elems(), 16 * 16 * 16);
        assert_eq!(k.sparse_matrix(), Some((16, 27)));
    }
}
