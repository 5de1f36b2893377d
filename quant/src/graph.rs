//! The deployable integer graph: int8 activations (dyadic scale, zero-point 0 except softmax
//! outputs, whose zero point is -128), int8 weights, int32 biases, and the ops whose exact
//! integer semantics the interpreter implements.
//!
//! Layout conventions: tensor shapes are per sample (no batch axis), row-major. Images are
//! HWC (NHWC without the N); convolution weights are `[out_c, kh, kw, in_c]` (OHWI, as in
//! CMSIS-NN / TFLite), depthwise weights `[kh, kw, c]`, linear weights `[out, in]`.
//! Padding is zero padding (the zero-point is 0).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::dyadic::Dyadic;
use crate::error::{QuantError, Result, params};
use crate::gelu_table::GeluTable;
use crate::ibert::{ISoftmax, Int8Gelu, IntLayerNorm, SOFTMAX_OUT_ZERO_POINT};

/// Largest number of elements of one tensor (guards allocations of loaded files).
pub const MAX_TENSOR_ELEMS: usize = 1 << 26;
/// Largest `|int8 * int8|` product.
pub const MAX_PRODUCT: i64 = 128 * 128;
/// Largest `|(a - zp) * int8|` product of a MatMul whose first operand is a softmax output
/// (`a - zp` in `0..=255`).
pub const MAX_PRODUCT_UNSIGNED: i64 = 255 * 128;

/// An activation tensor: int8, real value `(q - zero_point) * scale`. The zero point is 0 for
/// every tensor but softmax outputs (uint8 probabilities stored as `p - 128`), which only a
/// MatMul's first operand may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// Unique name.
    pub name: String,
    /// Per-sample shape.
    pub shape: Vec<usize>,
    /// Dyadic scale.
    pub scale: Dyadic,
    /// Zero point: 0, or [`SOFTMAX_OUT_ZERO_POINT`] for a softmax output.
    #[serde(default)]
    pub zero_point: i32,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The real value of a stored int8.
    #[inline]
    pub fn dequantize(&self, q: i8) -> f64 {
        (q as i32 - self.zero_point) as f64 * self.scale.to_f64()
    }
}

/// Requantization of an int32 accumulator: one dyadic for the tensor or one per output channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Requant {
    /// Same multiplier for every channel.
    PerTensor(Dyadic),
    /// One multiplier per output channel.
    PerChannel(Vec<Dyadic>),
}

impl Requant {
    /// Multiplier of output channel `c`.
    #[inline]
    pub fn get(&self, c: usize) -> Dyadic {
        match self {
            Requant::PerTensor(d) => *d,
            Requant::PerChannel(v) => v[c],
        }
    }

    fn validate(&self, node: &str, channels: usize) -> Result<()> {
        match self {
            Requant::PerTensor(d) => d.check(node),
            Requant::PerChannel(v) => {
                if v.len() != channels {
                    return Err(params(
                        node,
                        format!(
                            "{} per-channel requant values, expected {channels}",
                            v.len()
                        ),
                    ));
                }
                v.iter().try_for_each(|d| d.check(node))
            }
        }
    }
}

/// Parameters of the int8 + int8 -> int8 addition:
/// `out = sat8(floor((qa * ma + qb * mb + 2^(s-1)) / 2^s))` (no rounding term when `s = 0`).
/// Bounds: `0 <= ma, mb < 2^22`, `s <= 31`, so `|qa ma + qb mb| < 2^30` and the rounding term
/// `<= 2^30`: int32 throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddParams {
    /// Multiplier of the first input.
    pub ma: i32,
    /// Multiplier of the second input.
    pub mb: i32,
    /// Common right shift.
    pub s: u32,
}

/// Exclusive bound of [`AddParams`] multipliers.
pub const ADD_MAX_MULT: i32 = 1 << 22;

impl AddParams {
    /// From real scales (offline): `ma 2^-s ~= sa / so`, `mb 2^-s ~= sb / so`.
    pub fn from_scales(sa: f64, sb: f64, so: f64) -> Result<Self> {
        let (ra, rb) = (sa / so, sb / so);
        let r = ra.max(rb);
        if !(ra.is_finite() && rb.is_finite() && ra > 0.0 && rb > 0.0) {
            return Err(params(
                "AddParams::from_scales",
                format!("ratios {ra}, {rb}"),
            ));
        }
        let mut s = 31u32;
        while s > 0 && (r * 2f64.powi(s as i32)).round() >= ADD_MAX_MULT as f64 {
            s -= 1;
        }
        let p = AddParams {
            ma: (ra * 2f64.powi(s as i32)).round() as i32,
            mb: (rb * 2f64.powi(s as i32)).round() as i32,
            s,
        };
        p.validate("AddParams::from_scales")?;
        Ok(p)
    }

    /// Checks the bounds in the type's docs.
    pub fn validate(&self, node: &str) -> Result<()> {
        let ok = |m: i32| (0..ADD_MAX_MULT).contains(&m);
        if !ok(self.ma) || !ok(self.mb) || self.s > 31 {
            return Err(params(
                node,
                format!("add params {self:?}: expected 0 <= ma, mb < 2^22 and s <= 31"),
            ));
        }
        Ok(())
    }

    /// One element.
    #[inline]
    pub fn eval(&self, a: i8, b: i8) -> i8 {
        let acc = a as i32 * self.ma + b as i32 * self.mb;
        let r = if self.s == 0 {
            acc
        } else {
            (acc + (1i32 << (self.s - 1))) >> self.s
        };
        r.clamp(-128, 127) as i8
    }
}

/// 2-d window geometry (pooling and convolution): kernel, stride and symmetric zero padding,
/// each `[along H, along W]`. Output size `(in + 2 pad - k) / stride + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Kernel size.
    pub k: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding on each side.
    pub pad: [usize; 2],
}

impl Window {
    /// A 1x1 window with stride 1 and no padding: a pointwise convolution of an HWC map is then
    /// a Linear over its `H W` pixels (the runtime runs it with the Linear kernels).
    pub fn is_pointwise(&self) -> bool {
        self.k == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0]
    }

    fn out_dims(&self, node: &str, h: usize, w: usize) -> Result<[usize; 2]> {
        let mut out = [0; 2];
        for (i, n) in [h, w].into_iter().enumerate() {
            if self.k[i] == 0 || self.stride[i] == 0 || n + 2 * self.pad[i] < self.k[i] {
                return Err(params(
                    node,
                    format!("window {self:?} does not fit input {h}x{w}"),
                ));
            }
            out[i] = (n + 2 * self.pad[i] - self.k[i]) / self.stride[i] + 1;
        }
        Ok(out)
    }
}

/// The integer ops. Every op reads int8 tensors and writes one int8 tensor. `sat8` clamps to
/// `[-128, 127]`, `requant` is [`Dyadic::requantize`] (round half up, saturate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `[.., in] -> [.., out]`: `y[o] = requant_o(bias[o] + sum_i x[i] w[o, i])`.
    Linear {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// `[out, in]` row-major.
        weight: Vec<i8>,
        /// `[out]`, scale `S_x S_w`.
        bias: Vec<i32>,
        /// Output requantization, `S_x S_w(o) / S_y`.
        requant: Requant,
    },
    /// `a [.., M, K] x b [.., K, N] -> [.., M, N]` (`b` is `[.., N, K]` when `transpose_b`),
    /// `y = requant(sum_k (a[m, k] - zp_a) b[k, n])` with `zp_a` the zero point of `a` (-128
    /// when `a` is a softmax output: the uint8 probabilities times `b`); leading axes must be
    /// equal (no broadcasting). `b` has zero point 0.
    MatMul {
        /// Second operand stored as `[.., N, K]`.
        transpose_b: bool,
        /// `S_a S_b / S_y`.
        requant: Dyadic,
    },
    /// Element-wise `a + b` of equal shapes, see [`AddParams`].
    Add(AddParams),
    /// HWC convolution, weight `[out_c, kh, kw, in_c]`:
    /// `y[oy, ox, o] = requant_o(bias[o] + sum x[oy s - p + ky, ox s - p + kx, i] w[o, ky, kx, i])`
    /// with out-of-range input positions contributing 0.
    Conv2d {
        /// Input channels.
        in_c: usize,
        /// Output channels.
        out_c: usize,
        /// Kernel, stride, padding.
        window: Window,
        /// `[out_c, kh, kw, in_c]`.
        weight: Vec<i8>,
        /// `[out_c]`.
        bias: Vec<i32>,
        /// Output requantization.
        requant: Requant,
    },
    /// HWC depthwise convolution (multiplier 1), weight `[kh, kw, c]`, same formula per channel.
    DepthwiseConv2d {
        /// Channels.
        channels: usize,
        /// Kernel, stride, padding.
        window: Window,
        /// `[kh, kw, c]`.
        weight: Vec<i8>,
        /// `[c]`.
        bias: Vec<i32>,
        /// Output requantization.
        requant: Requant,
    },
    /// HWC max pooling over the in-range positions of each window (padding never wins);
    /// output scale = input scale; `pad < k`.
    MaxPool2d(Window),
    /// HWC average pooling: `div_round(sum, count)` over the in-range positions of each window
    /// (count excludes padding; round half away from zero); output scale = input scale.
    AvgPool2d(Window),
    /// `[H, W, C] -> [C]`: `div_round(sum_{h,w} x, H W)`; output scale = input scale.
    GlobalAvgPool,
    /// `[T, D] -> [D]`: mean over tokens, `div_round(sum_t x, T)`; output scale = input scale.
    SeqMeanPool,
    /// `max(x, 0)`; output scale = input scale.
    Relu,
    /// i-GELU, see [`Int8Gelu`].
    Gelu(Int8Gelu),
    /// GELU as a table of the exact GELU over the 256 int8 inputs, see [`GeluTable`] (since
    /// graph format 3).
    GeluTable(GeluTable),
    /// i-softmax over the last axis, output scale exactly `2^-(8 + out_shift)` with zero point
    /// `-128`, see [`ISoftmax`].
    Softmax(ISoftmax),
    /// I-BERT i-LayerNorm over the last axis, see [`IntLayerNorm::eval_row_ibert`].
    LayerNorm(IntLayerNorm),
    /// TinyFormer Scaled-LayerNorm over the last axis, see [`IntLayerNorm::eval_row_scaled`].
    ScaledLayerNorm(IntLayerNorm),
    /// `[T, D] -> [T + 1, D]`: prepends the learned token (quantized at the input scale);
    /// output scale = input scale.
    ConcatClassToken {
        /// `[D]`.
        token: Vec<i8>,
    },
    /// Element-wise `x + embedding` (embedding has the input's shape), see [`AddParams`]
    /// (`ma` for `x`, `mb` for the embedding).
    AddEmbedding {
        /// Same shape as the input.
        embedding: Vec<i8>,
        /// Scales.
        add: AddParams,
    },
    /// Same data, new shape (equal element count); output scale = input scale.
    Reshape {
        /// New shape.
        shape: Vec<usize>,
    },
    /// Axis permutation: output axis `i` is input axis `perm[i]`; output scale = input scale.
    Transpose {
        /// A permutation of `0..rank`.
        perm: Vec<usize>,
    },
    /// `y = requant(x)`: int8 rescale.
    Requant(Dyadic),
    /// `[T, ..] -> [..]`: the slice at `index` of axis 0 (e.g. the class token); same scale.
    SelectToken {
        /// Index along axis 0.
        index: usize,
    },
}

impl Op {
    /// The op's kind as a short name (for errors and reports).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "Linear",
            Op::MatMul { .. } => "MatMul",
            Op::Add(_) => "Add",
            Op::Conv2d { .. } => "Conv2d",
            Op::DepthwiseConv2d { .. } => "DepthwiseConv2d",
            Op::MaxPool2d(_) => "MaxPool2d",
            Op::AvgPool2d(_) => "AvgPool2d",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::SeqMeanPool => "SeqMeanPool",
            Op::Relu => "Relu",
            Op::Gelu(_) => "Gelu",
            Op::GeluTable(_) => "GeluTable",
            Op::Softmax(_) => "Softmax",
            Op::LayerNorm(_) => "LayerNorm",
            Op::ScaledLayerNorm(_) => "ScaledLayerNorm",
            Op::ConcatClassToken { .. } => "ConcatClassToken",
            Op::AddEmbedding { .. } => "AddEmbedding",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Requant(_) => "Requant",
            Op::SelectToken { .. } => "SelectToken",
        }
    }

    /// A GELU's output for every int8 input, indexed by `q + 128` (GELU on int8 has 256
    /// possible inputs, so the interpreter and the C runtime look it up; bit-exact with
    /// evaluating the kernel per element); `None` for other ops.
    pub fn gelu_lut(&self) -> Option<Box<[i8; 256]>> {
        let f: &dyn Fn(i8) -> i8 = match self {
            Op::Gelu(g) => &|q| g.eval(q),
            Op::GeluTable(t) => &|q| t.eval(q),
            _ => return None,
        };
        let mut t = Box::new([0i8; 256]);
        for q in -128..=127i32 {
            t[(q + 128) as usize] = f(q as i8);
        }
        Some(t)
    }

    /// Zero point of the op's output: [`SOFTMAX_OUT_ZERO_POINT`] for Softmax, else 0.
    pub fn output_zero_point(&self) -> i32 {
        if matches!(self, Op::Softmax(_)) {
            SOFTMAX_OUT_ZERO_POINT
        } else {
            0
        }
    }

    /// Number of activation inputs.
    pub fn arity(&self) -> usize {
        match self {
            Op::MatMul { .. } | Op::Add(_) => 2,
            _ => 1,
        }
    }

    /// Whether the output scale must equal the (first) input scale.
    pub fn keeps_scale(&self) -> bool {
        matches!(
            self,
            Op::MaxPool2d(_)
                | Op::AvgPool2d(_)
                | Op::GlobalAvgPool
                | Op::SeqMeanPool
                | Op::Relu
                | Op::ConcatClassToken { .. }
                | Op::Reshape { .. }
                | Op::Transpose { .. }
                | Op::SelectToken { .. }
        )
    }
}

/// One node: an op reading named tensors and writing one named tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Unique node name.
    pub name: String,
    /// The op.
    pub op: Op,
    /// Input tensor names.
    pub inputs: Vec<String>,
    /// Output tensor name.
    pub output: String,
}

/// The integer graph. Nodes are in execution (topological) order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Graph {
    /// Graph input tensor names.
    pub inputs: Vec<String>,
    /// Graph output tensor names.
    pub outputs: Vec<String>,
    /// Every activation tensor (inputs, intermediates, outputs).
    pub tensors: Vec<TensorInfo>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Per-feature standardization the front end applies to the raw features before they are
    /// quantized at the input's scale (absent: the input is quantized as is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_standardization: Option<Standardization>,
}

/// `(x - mean) / std` per feature (the last input axis), done on the MCU in the feature front
/// end, before int8 quantization: one power-of-two scale cannot cover raw MFCCs, whose c0
/// spans hundreds while the high coefficients span units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

// Values are finite by construction (checked where they are made), so equality is total.
impl Eq for Standardization {}

impl Graph {
    fn validate_standardization(&self) -> Result<()> {
        let Some(st) = &self.input_standardization else {
            return Ok(());
        };
        let features = self
            .inputs
            .first()
            .and_then(|n| self.tensors.iter().find(|t| &t.name == n))
            .and_then(|t| t.shape.last().copied());
        let bad = |reason: String| Err(QuantError::InvalidGraph { reason });
        if Some(st.mean.len()) != features || st.std.len() != st.mean.len() {
            return bad(format!(
                "input standardization has {} means and {} stds, the input has {features:?} features",
                st.mean.len(),
                st.std.len()
            ));
        }
        if !st.mean.iter().all(|m| m.is_finite())
            || !st.std.iter().all(|s| s.is_finite() && *s > 0.0)
        {
            return bad(
                "input standardization: means must be finite and stds finite and positive".into(),
            );
        }
        Ok(())
    }

    /// Quantizes one raw float sample for the (single) input: standardization if the graph has
    /// one, then rounding at the input's scale with int8 saturation.
    pub fn quantize_input(&self, raw: &[f32]) -> Result<Vec<i8>> {
        let name = self
            .inputs
            .first()
            .ok_or_else(|| QuantError::InvalidGraph {
                reason: "the graph has no input".into(),
            })?;
        let info = self.tensor(name).ok_or_else(|| QuantError::InvalidGraph {
            reason: format!("input `{name}` is not declared"),
        })?;
        let n: usize = info.shape.iter().product();
        if raw.len() != n {
            return Err(QuantError::BadInput {
                tensor: name.clone(),
                expected: n,
                found: raw.len(),
            });
        }
        let scale = info.scale.to_f64();
        let q = |v: f64| (v / scale).round().clamp(-128.0, 127.0) as i8;
        Ok(match &self.input_standardization {
            None => raw.iter().map(|&v| q(v as f64)).collect(),
            Some(st) => {
                let f = st.mean.len().max(1);
                raw.iter()
                    .enumerate()
                    .map(|(i, &v)| q((v as f64 - st.mean[i % f] as f64) / st.std[i % f] as f64))
                    .collect()
            }
        })
    }
}

fn shape_err(node: &str, tensor: &str, expected: impl Into<String>, found: &[usize]) -> QuantError {
    QuantError::ShapeMismatch {
        node: node.to_string(),
        tensor: tensor.to_string(),
        expected: expected.into(),
        found: format!("{found:?}"),
    }
}

/// Whether two dyadics denote the same real value.
pub fn same_value(a: Dyadic, b: Dyadic) -> bool {
    (a.m as i128) << b.s.min(62) == (b.m as i128) << a.s.min(62)
}

fn check_acc(node: &str, terms: usize, bias: &[i32]) -> Result<()> {
    check_acc_products(node, terms, MAX_PRODUCT, bias)
}

/// `terms * max_product + max|bias| <= 2^31 - 1`.
fn check_acc_products(node: &str, terms: usize, max_product: i64, bias: &[i32]) -> Result<()> {
    let bmax = bias.iter().map(|b| (*b as i64).abs()).max().unwrap_or(0);
    let bound = (terms as i64)
        .saturating_mul(max_product)
        .saturating_add(bmax);
    if bound > i32::MAX as i64 {
        return Err(params(
            node,
            format!(
                "accumulator bound {terms} * {max_product} + max|bias| {bmax} = {bound} exceeds 2^31-1"
            ),
        ));
    }
    Ok(())
}

/// Softmax outputs carry zero point -128, every other tensor 0; a nonzero zero point may only
/// be read as a MatMul's first operand (the only kernel that subtracts it).
fn check_zero_points(node: &Node, ins: &[&TensorInfo], out: &TensorInfo) -> Result<()> {
    let want = node.op.output_zero_point();
    if out.zero_point != want {
        return Err(params(
            &node.name,
            format!(
                "output `{}` has zero point {}, expected {want}",
                out.name, out.zero_point
            ),
        ));
    }
    for (i, t) in ins.iter().enumerate() {
        let allowed = i == 0 && matches!(node.op, Op::MatMul { .. });
        if t.zero_point != 0 && !allowed {
            return Err(params(
                &node.name,
                format!(
                    "input `{}` has zero point {} (a softmax output): only a MatMul's first \
                     operand may read it",
                    t.name, t.zero_point
                ),
            ));
        }
    }
    Ok(())
}

fn check_len(node: &str, what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(params(
            node,
            format!("{what} has {got} values, expected {want}"),
        ));
    }
    Ok(())
}

/// Output shape of `node` given its input tensors; also checks the op's parameters.
pub fn infer_shape(node: &Node, ins: &[&TensorInfo]) -> Result<Vec<usize>> {
    let n = node.name.as_str();
    if ins.len() != node.op.arity() {
        return Err(params(
            n,
            format!(
                "{} takes {} inputs, found {}",
                node.op.kind(),
                node.op.arity(),
                ins.len()
            ),
        ));
    }
    let x = ins[0];
    let xs = &x.shape;
    let rank_at_least = |r: usize| -> Result<()> {
        if xs.len() < r {
            return Err(shape_err(n, &x.name, format!("rank >= {r}"), xs));
        }
        Ok(())
    };
    let last = |len: usize| -> Result<()> {
        if xs.last() != Some(&len) {
            return Err(shape_err(n, &x.name, format!("last axis {len}"), xs));
        }
        Ok(())
    };
    let hwc = |c: usize| -> Result<[usize; 3]> {
        if xs.len() != 3 || xs[2] != c {
            return Err(shape_err(n, &x.name, format!("[H, W, {c}]"), xs));
        }
        Ok([xs[0], xs[1], xs[2]])
    };
    Ok(match &node.op {
        Op::Linear {
            in_features,
            out_features,
            weight,
            bias,
            requant,
        } => {
            last(*in_features)?;
            check_len(n, "weight", weight.len(), in_features * out_features)?;
            check_len(n, "bias", bias.len(), *out_features)?;
            requant.validate(n, *out_features)?;
            check_acc(n, *in_features, bias)?;
            let mut s = xs.clone();
            *s.last_mut().expect("rank checked") = *out_features;
            s
        }
        Op::MatMul {
            transpose_b,
            requant,
        } => {
            let b = ins[1];
            let bs = &b.shape;
            rank_at_least(2)?;
            if bs.len() != xs.len() || bs[..bs.len() - 2] != xs[..xs.len() - 2] {
                return Err(shape_err(
                    n,
                    &b.name,
                    format!(
                        "rank {} with leading axes {:?}",
                        xs.len(),
                        &xs[..xs.len() - 2]
                    ),
                    bs,
                ));
            }
            let r = xs.len();
            let (m, k) = (xs[r - 2], xs[r - 1]);
            let (kb, nn) = if *transpose_b {
                (bs[r - 1], bs[r - 2])
            } else {
                (bs[r - 2], bs[r - 1])
            };
            if kb != k {
                return Err(shape_err(n, &b.name, format!("reduction axis {k}"), bs));
            }
            requant.check(n)?;
            let max_product = if x.zero_point == 0 {
                MAX_PRODUCT
            } else {
                MAX_PRODUCT_UNSIGNED
            };
            check_acc_products(n, k, max_product, &[])?;
            let mut s = xs[..r - 2].to_vec();
            s.extend([m, nn]);
            s
        }
        Op::Add(p) => {
            p.validate(n)?;
            if ins[1].shape != *xs {
                return Err(shape_err(n, &ins[1].name, format!("{xs:?}"), &ins[1].shape));
            }
            xs.clone()
        }
        Op::Conv2d {
            in_c,
            out_c,
            window,
            weight,
            bias,
            requant,
        } => {
            let [h, w, _] = hwc(*in_c)?;
            check_len(
                n,
                "weight",
                weight.len(),
                out_c * window.k[0] * window.k[1] * in_c,
            )?;
            check_len(n, "bias", bias.len(), *out_c)?;
            requant.validate(n, *out_c)?;
            check_acc(n, window.k[0] * window.k[1] * in_c, bias)?;
            let [oh, ow] = window.out_dims(n, h, w)?;
            vec![oh, ow, *out_c]
        }
        Op::DepthwiseConv2d {
            channels,
            window,
            weight,
            bias,
            requant,
        } => {
            let [h, w, _] = hwc(*channels)?;
            check_len(
                n,
                "weight",
                weight.len(),
                window.k[0] * window.k[1] * channels,
            )?;
            check_len(n, "bias", bias.len(), *channels)?;
            requant.validate(n, *channels)?;
            check_acc(n, window.k[0] * window.k[1], bias)?;
            let [oh, ow] = window.out_dims(n, h, w)?;
            vec![oh, ow, *channels]
        }
        Op::MaxPool2d(wd) | Op::AvgPool2d(wd) => {
            rank_at_least(3)?;
            let [h, w, c] = hwc(xs[2])?;
            if wd.pad[0] >= wd.k[0] || wd.pad[1] >= wd.k[1] {
                return Err(params(
                    n,
                    format!("padding {:?} must be below kernel {:?}", wd.pad, wd.k),
                ));
            }
            if wd.k[0] * wd.k[1] > 1 << 23 {
                return Err(params(n, "pooling window larger than 2^23"));
            }
            let [oh, ow] = wd.out_dims(n, h, w)?;
            vec![oh, ow, c]
        }
        Op::GlobalAvgPool => {
            rank_at_least(3)?;
            let [h, w, c] = hwc(xs[2])?;
            if h * w > 1 << 23 {
                return Err(params(n, "pooled area larger than 2^23"));
            }
            vec![c]
        }
        Op::SeqMeanPool => {
            if xs.len() != 2 || xs[0] > 1 << 23 {
                return Err(shape_err(n, &x.name, "[T, D] with T <= 2^23", xs));
            }
            vec![xs[1]]
        }
        Op::Relu => xs.clone(),
        Op::Gelu(g) => {
            g.validate(n)?;
            xs.clone()
        }
        Op::GeluTable(t) => {
            t.validate(n)?;
            xs.clone()
        }
        Op::Softmax(sm) => {
            sm.validate(n)?;
            rank_at_least(1)?;
            last(sm.len as usize)?;
            xs.clone()
        }
        Op::LayerNorm(ln) | Op::ScaledLayerNorm(ln) => {
            ln.validate(n)?;
            rank_at_least(1)?;
            last(ln.norm.len as usize)?;
            xs.clone()
        }
        Op::ConcatClassToken { token } => {
            if xs.len() != 2 || xs[1] != token.len() {
                return Err(shape_err(n, &x.name, format!("[T, {}]", token.len()), xs));
            }
            vec![xs[0] + 1, xs[1]]
        }
        Op::AddEmbedding { embedding, add } => {
            add.validate(n)?;
            check_len(n, "embedding", embedding.len(), x.numel())?;
            xs.clone()
        }
        Op::Reshape { shape } => {
            let numel: usize = shape.iter().product();
            if numel != x.numel() {
                return Err(shape_err(
                    n,
                    &x.name,
                    format!("{} elements for reshape to {shape:?}", numel),
                    xs,
                ));
            }
            shape.clone()
        }
        Op::Transpose { perm } => {
            let mut seen = vec![false; xs.len()];
            if perm.len() != xs.len()
                || perm
                    .iter()
                    .any(|&p| p >= xs.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(params(
                    n,
                    format!(
                        "{perm:?} is not a permutation of the {} axes of {xs:?}",
                        xs.len()
                    ),
                ));
            }
            perm.iter().map(|&p| xs[p]).collect()
        }
        Op::Requant(d) => {
            d.check(n)?;
            xs.clone()
        }
        Op::SelectToken { index } => {
            rank_at_least(2)?;
            if *index >= xs[0] {
                return Err(shape_err(
                    n,
                    &x.name,
                    format!("axis 0 longer than {index}"),
                    xs,
                ));
            }
            xs[1..].to_vec()
        }
    })
}

impl Graph {
    /// Index of tensors by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Checks the whole graph: unique names, every tensor declared and defined once before
    /// use, shapes (errors name the node), scales of scale-preserving ops and of softmax,
    /// zero points (softmax outputs -128 and read only as a MatMul's first operand, all else
    /// 0), every op's int32 bounds.
    pub fn validate(&self) -> Result<()> {
        self.validate_standardization()?;
        let mut by_name: HashMap<&str, &TensorInfo> = HashMap::new();
        for t in &self.tensors {
            if by_name.insert(t.name.as_str(), t).is_some() {
                return Err(QuantError::Duplicate {
                    name: t.name.clone(),
                });
            }
            t.scale
                .check_positive(&format!("tensor `{}` scale", t.name))?;
            let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if t.shape.contains(&0) || numel.is_none_or(|n| n > MAX_TENSOR_ELEMS) {
                return Err(QuantError::InvalidGraph {
                    reason: format!(
                        "tensor `{}` has shape {:?}: expected 1..=2^26 elements, no empty axis",
                        t.name, t.shape
                    ),
                });
            }
        }
        let mut defined: HashSet<&str> = HashSet::new();
        for i in &self.inputs {
            if !by_name.contains_key(i.as_str()) {
                return Err(QuantError::InvalidGraph {
                    reason: format!("graph input `{i}` is not declared"),
                });
            }
            if !defined.insert(i) {
                return Err(QuantError::Duplicate { name: i.clone() });
            }
            if by_name[i.as_str()].zero_point != 0 {
                return Err(QuantError::InvalidGraph {
                    reason: format!("graph input `{i}` must have zero point 0"),
                });
            }
        }
        let mut node_names = HashSet::new();
        for node in &self.nodes {
            if !node_names.insert(node.name.as_str()) {
                return Err(QuantError::Duplicate {
                    name: node.name.clone(),
                });
            }
            let mut ins = Vec::with_capacity(node.inputs.len());
            for i in &node.inputs {
                if !defined.contains(i.as_str()) {
                    return Err(QuantError::UnknownTensor {
                        node: node.name.clone(),
                        tensor: i.clone(),
                    });
                }
                ins.push(by_name[i.as_str()]);
            }
            let Some(out) = by_name.get(node.output.as_str()) else {
                return Err(QuantError::UnknownTensor {
                    node: node.name.clone(),
                    tensor: node.output.clone(),
                });
            };
            if !defined.insert(node.output.as_str()) {
                return Err(QuantError::Duplicate {
                    name: node.output.clone(),
                });
            }
            let shape = infer_shape(node, &ins)?;
            if shape != out.shape {
                return Err(shape_err(
                    &node.name,
                    &out.name,
                    format!("{shape:?}"),
                    &out.shape,
                ));
            }
            let want = if node.op.keeps_scale() {
                Some(ins[0].scale)
            } else if let Op::Softmax(sm) = &node.op {
                Some(Dyadic::pow2(sm.out_exp())?)
            } else {
                None
            };
            if let Some(w) = want
                && !same_value(w, out.scale)
            {
                return Err(QuantError::ScaleMismatch {
                    node: node.name.clone(),
                    tensor: out.name.clone(),
                    expected: format!("{w:?}"),
                    found: format!("{:?}", out.scale),
                });
            }
            check_zero_points(node, &ins, out)?;
        }
        if self.outputs.is_empty() {
            return Err(QuantError::InvalidGraph {
                reason: "graph has no outputs".into(),
            });
        }
        for o in &self.outputs {
            if !defined.contains(o.as_str()) {
                return Err(QuantError::InvalidGraph {
                    reason: format!("graph output `{o}` is never computed"),
                });
            }
        }
        Ok(())
    }
}
