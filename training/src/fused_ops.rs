//! GELU, softmax and LayerNorm as single operations with their own backward pass on flex (the
//! default CPU backend), through a Burn backend extension that runs the vectorized loops of
//! [`crate::cpu_kernels`], with depthwise convolutions ([`crate::depthwise_kernels`]), matrix
//! products written once ([`crate::matmul_kernels`]) and attention that never keeps its scores
//! ([`crate::attention_kernels`]); Burn's own versions on every other backend. Same functions,
//! same gradients; only the speed and memory differ.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, backend_extension};
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear, PaddingConfig2d};
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::s;
use burn::tensor::{Device, Tensor, TensorData};

use crate::attention_kernels;
use crate::cpu_kernels;
use crate::depthwise_kernels::{self, DepthwiseShape};
use crate::matmul_kernels::{self, StridedMatrices};

/// The fused operations. The default bodies (Burn's operations) serve backends without a kernel.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }

    /// Softmax over the last dimension.
    fn last_dim_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composite_softmax::<Self>(x)
    }

    /// Softmax's input gradient from its output `y` and output gradient `grad`.
    fn last_dim_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composite_softmax_backward::<Self>(y, grad)
    }

    /// LayerNorm over the last dimension (biased variance) with scale `gamma` and shift `beta`.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm_parts(x, gamma, beta, epsilon).0
    }

    /// LayerNorm's output with what its backward pass needs: the normalized input `xhat` and the
    /// reciprocal standard deviation per row (last dimension 1).
    fn layer_norm_parts(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composite_layer_norm_parts::<Self>(x, gamma, beta, epsilon)
    }

    /// LayerNorm's gradients `(dx, dgamma, dbeta)` from [`Self::layer_norm_parts`]'s `xhat` and
    /// `rstd` and the output gradient.
    fn layer_norm_backward(
        xhat: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composite_layer_norm_backward::<Self>(xhat, rstd, gamma, grad)
    }

    /// Depthwise 2-D convolution: `groups` equal to the input and output channels, weight
    /// `[channels, 1, kh, kw]`, a bias.
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }

    /// [`Self::depthwise_conv2d`]'s gradients `(dx, dweight, dbias)` from its input, weight, bias
    /// and output gradient.
    fn depthwise_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composite_depthwise_backward::<Self>(x, weight, bias, grad, options)
    }

    /// Scaled dot-product attention `softmax(scale q k^T) v` over the last two dimensions
    /// (`[.., tokens, dim]`) of three operands of one shape.
    fn scaled_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        Self::scaled_attention_parts(q, k, v, scale).0
    }

    /// [`Self::scaled_attention`]'s output with what its backward pass needs besides the
    /// operands: the log-sum-exp of each row of scores (`[.., tokens, 1]`).
    fn scaled_attention_parts(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composite_attention_parts::<Self>(q, k, v, scale)
    }

    /// [`Self::scaled_attention`]'s gradients `(dq, dk, dv)` from its operands, its output and
    /// log-sum-exp ([`Self::scaled_attention_parts`]) and the output gradient.
    #[allow(clippy::too_many_arguments)]
    fn scaled_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composite_attention_backward::<Self>(q, k, v, out, lse, grad, scale)
    }

    /// Matrix product over the last two dimensions of operands with the same batch dimensions.
    fn batch_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(lhs, rhs)
    }

    /// `floor(x + 0.5)`, without a gradient (callers pass one straight through).
    fn round_half_up(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composite_round_half_up::<Self>(x)
    }

    /// `floor(x)`, without a gradient (callers pass one straight through).
    fn floor_values(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_floor(x)
    }

    /// `x` fake-quantized at `step`: `clamp(x / step, qmin, qmax)` rounded half up, times
    /// `step`. `log2_t` is the learned threshold `step` came from (`2^ceil(log2_t)` over the
    /// code range): only autodiff reads it, to send it its gradient `step ln 2 dq/dstep`.
    fn fake_quant(
        x: FloatTensor<Self>,
        log2_t: FloatTensor<Self>,
        step: f32,
        qmin: f32,
        qmax: f32,
    ) -> FloatTensor<Self> {
        let _ = log2_t;
        composite_fake_quant::<Self>(x, step, qmin, qmax)
    }

    /// [`Self::fake_quant`]'s straight-through gradients from its input and output gradient:
    /// `dx` (`grad` inside the range, 0 outside) and `sum grad dq/dstep` (shape `[1]`), with
    /// `dq/dstep` = `round(u) - u` inside (`u = x / step`), `qmin` below and `qmax` above.
    fn fake_quant_backward(
        x: FloatTensor<Self>,
        step: f32,
        qmin: f32,
        qmax: f32,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composite_fake_quant_backward::<Self>(x, step, qmin, qmax, grad)
    }
}

/// `floor(x + 0.5)` from Burn's operations.
fn composite_round_half_up<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_floor(B::float_add_scalar(x, 0.5.into()))
}

/// [`FusedOps::fake_quant`] from Burn's operations.
fn composite_fake_quant<B: Backend>(
    x: FloatTensor<B>,
    step: f32,
    qmin: f32,
    qmax: f32,
) -> FloatTensor<B> {
    let u = B::float_clamp(
        B::float_div_scalar(x, step.into()),
        qmin.into(),
        qmax.into(),
    );
    B::float_mul_scalar(composite_round_half_up::<B>(u), step.into())
}

/// [`FusedOps::fake_quant_backward`] from Burn's operations, without masks: `inside` is
/// `1 - sign|u - clamp(u)|`, and `round(c) - c inside` is `dq/dstep` (outside the range the
/// clamped `c` is `qmin` or `qmax`, integers that round to themselves).
fn composite_fake_quant_backward<B: Backend>(
    x: FloatTensor<B>,
    step: f32,
    qmin: f32,
    qmax: f32,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let u = B::float_div_scalar(x, step.into());
    let c = B::float_clamp(u.clone(), qmin.into(), qmax.into());
    let outside = B::float_sign(B::float_abs(B::float_sub(u, c.clone())));
    let inside = B::float_add_scalar(B::float_neg(outside), 1.0.into());
    let slope = B::float_sub(
        composite_round_half_up::<B>(c.clone()),
        B::float_mul(c, inside.clone()),
    );
    let dstep = B::float_sum(B::float_mul(grad.clone(), slope));
    (B::float_mul(grad, inside), dstep)
}

/// `exp(x - max) / sum` over the last dimension, from Burn's operations.
fn composite_softmax<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let dim = x.shape().num_dims() - 1;
    let max = B::float_max_dim(x.clone(), dim);
    let e = B::float_exp(B::float_sub(x, max));
    let total = B::float_sum_dim(e.clone(), dim);
    B::float_div(e, total)
}

/// `y * (grad - sum(grad * y))` over the last dimension, from Burn's operations.
fn composite_softmax_backward<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let dim = y.shape().num_dims() - 1;
    let s = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), dim);
    B::float_mul(y, B::float_sub(grad, s))
}

/// `t` with its last two dimensions swapped.
fn transposed<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let rank = t.shape().num_dims();
    B::float_swap_dims(t, rank - 2, rank - 1)
}

/// [`FusedOps::scaled_attention_parts`] from Burn's operations (the scores materialized).
fn composite_attention_parts<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    scale: f32,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let dim = q.shape().num_dims() - 1;
    let scores = B::float_mul_scalar(B::float_matmul(q, transposed::<B>(k)), scale.into());
    let max = B::float_max_dim(scores.clone(), dim);
    let e = B::float_exp(B::float_sub(scores, max.clone()));
    let total = B::float_sum_dim(e.clone(), dim);
    let out = B::float_matmul(B::float_div(e, total.clone()), v);
    (out, B::float_add(max, B::float_log(total)))
}

/// [`FusedOps::scaled_attention_backward`] from Burn's operations: the probabilities
/// recomputed as `exp(scores - lse)`, then `dv = p^T g`, `ds = p (g v^T - rowsum(g out))`,
/// `dq = scale ds k`, `dk = scale ds^T q`.
fn composite_attention_backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    out: FloatTensor<B>,
    lse: FloatTensor<B>,
    grad: FloatTensor<B>,
    scale: f32,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let dim = q.shape().num_dims() - 1;
    let scores = B::float_mul_scalar(
        B::float_matmul(q.clone(), transposed::<B>(k.clone())),
        scale.into(),
    );
    let p = B::float_exp(B::float_sub(scores, lse));
    let dv = B::float_matmul(transposed::<B>(p.clone()), grad.clone());
    let dp = B::float_matmul(grad.clone(), transposed::<B>(v));
    let delta = B::float_sum_dim(B::float_mul(grad, out), dim);
    let ds = B::float_mul(p, B::float_sub(dp, delta));
    let dq = B::float_mul_scalar(B::float_matmul(ds.clone(), k), scale.into());
    let dk = B::float_mul_scalar(B::float_matmul(transposed::<B>(ds), q), scale.into());
    (dq, dk, dv)
}

/// `gamma` or `beta` (`[d]`) shaped to broadcast against `like`'s `[..., d]`.
fn row_vector<B: Backend>(v: FloatTensor<B>, like: &FloatTensor<B>) -> FloatTensor<B> {
    let rank = like.shape().num_dims();
    let d = v.shape().num_elements();
    let dims: Vec<usize> = (0..rank)
        .map(|i| if i + 1 == rank { d } else { 1 })
        .collect();
    B::float_reshape(v, dims.into())
}

/// [`FusedOps::layer_norm_parts`] from Burn's operations.
fn composite_layer_norm_parts<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let dim = x.shape().num_dims() - 1;
    let (gamma, beta) = (row_vector::<B>(gamma, &x), row_vector::<B>(beta, &x));
    let centered = B::float_sub(x.clone(), B::float_mean_dim(x, dim));
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), dim);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
    let xhat = B::float_mul(centered, rstd.clone());
    let y = B::float_add(B::float_mul(xhat.clone(), gamma), beta);
    (y, xhat, rstd)
}

/// [`FusedOps::layer_norm_backward`] from Burn's operations.
fn composite_layer_norm_backward<B: Backend>(
    xhat: FloatTensor<B>,
    rstd: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = xhat.shape();
    let dim = shape.num_dims() - 1;
    let d = shape[dim];
    let rows = shape.num_elements() / d;
    let flat = |t: FloatTensor<B>| B::float_reshape(t, [rows, d].into());
    let dgamma = B::float_sum_dim(B::float_mul(flat(grad.clone()), flat(xhat.clone())), 0);
    let dbeta = B::float_sum_dim(flat(grad.clone()), 0);
    let gh = B::float_mul(grad, row_vector::<B>(gamma, &xhat));
    let m1 = B::float_mean_dim(gh.clone(), dim);
    let m2 = B::float_mean_dim(B::float_mul(gh.clone(), xhat.clone()), dim);
    let inner = B::float_sub(B::float_sub(gh, m1), B::float_mul(xhat, m2));
    let dx = B::float_mul(inner, rstd);
    (
        dx,
        B::float_reshape(dgamma, [d].into()),
        B::float_reshape(dbeta, [d].into()),
    )
}

/// [`FusedOps::depthwise_conv2d_backward`] from Burn's convolution gradients.
fn composite_depthwise_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    (
        B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone()),
        B::conv2d_weight_backward(x.clone(), weight, grad.clone(), options),
        B::conv2d_bias_backward(x, bias, grad),
    )
}

/// A contiguous f32 view of a flex tensor, or `None` (other dtypes and strided views take
/// Burn's path).
fn f32_slice(t: &FloatTensor<Flex>) -> Option<&[f32]> {
    if t.dtype() != DType::F32 {
        return None;
    }
    t.as_slice::<f32>()
}

/// Rows of the last dimension, or `None` for a scalar or an empty row.
fn row_len(t: &FloatTensor<Flex>) -> Option<usize> {
    t.layout().shape().last().copied().filter(|&n| n > 0)
}

fn flex_f32(values: Vec<f32>, like: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    let shape = like.layout().shape().clone();
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape))
}

/// Runs `kernel` over the two contiguous f32 operands of equal shape, or `None` when they are not.
fn binary_kernel(
    a: &FloatTensor<Flex>,
    b: &FloatTensor<Flex>,
    kernel: impl FnOnce(&[f32], &[f32], &mut [f32]),
) -> Option<FloatTensor<Flex>> {
    if a.layout().shape() != b.layout().shape() {
        return None;
    }
    let (xs, gs) = (f32_slice(a)?, f32_slice(b)?);
    let mut out = vec![0f32; xs.len()];
    kernel(xs, gs, &mut out);
    Some(flex_f32(out, a))
}

/// The f32 contents of a contiguous flex tensor (copied when it is strided).
fn f32_values(t: &FloatTensor<Flex>) -> Option<std::borrow::Cow<'_, [f32]>> {
    if t.dtype() != DType::F32 {
        return None;
    }
    Some(match t.as_slice::<f32>() {
        Some(s) => s.into(),
        None => t.to_contiguous().as_slice::<f32>()?.to_vec().into(),
    })
}

fn flex_f32_shaped(values: Vec<f32>, shape: Vec<usize>) -> FloatTensor<Flex> {
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape))
}

/// The matrices of the last two of `rank` dimensions of `t`, whose strides are `strides`.
fn strided_matrices<'a>(
    t: &'a FloatTensor<Flex>,
    strides: &'a [usize],
    rank: usize,
) -> StridedMatrices<'a> {
    StridedMatrices {
        data: t.storage::<f32>(),
        start: t.layout().start_offset(),
        batch_strides: &strides[..rank - 2],
        row_stride: strides[rank - 2],
        col_stride: strides[rank - 1],
    }
}

/// [`FusedOps::batch_matmul`] by [`matmul_kernels`] for f32 operands of equal rank and batch
/// dimensions whose strides are all non-negative (transposed views need no copy); `None` for
/// anything else.
fn flex_matmul(lhs: &FloatTensor<Flex>, rhs: &FloatTensor<Flex>) -> Option<FloatTensor<Flex>> {
    if lhs.dtype() != DType::F32 || rhs.dtype() != DType::F32 {
        return None;
    }
    let (ls, rs) = (lhs.layout().shape(), rhs.layout().shape());
    let rank = ls.num_dims();
    if rank < 2 || rs.num_dims() != rank || ls[..rank - 2] != rs[..rank - 2] {
        return None;
    }
    let [m, k, n] = [ls[rank - 2], ls[rank - 1], rs[rank - 1]];
    if rs[rank - 2] != k {
        return None;
    }
    let (lst, rst) = (unsigned_strides(lhs)?, unsigned_strides(rhs)?);
    let (lo, ro) = (
        strided_matrices(lhs, &lst, rank),
        strided_matrices(rhs, &rst, rank),
    );
    let batch = &ls[..rank - 2];
    let out = matmul_kernels::batched_matmul(batch, [m, k, n], lo, ro)?;
    let mut shape = batch.to_vec();
    shape.extend([m, n]);
    Some(flex_f32_shaped(out, shape))
}

/// The non-negative strides of a flex tensor, or `None` (a flipped view).
fn unsigned_strides(t: &FloatTensor<Flex>) -> Option<Vec<usize>> {
    t.layout()
        .strides()
        .iter()
        .map(|&s| usize::try_from(s).ok())
        .collect()
}

/// The shape (rank at least 3: batch dimensions, tokens, dim) the attention kernels take, when
/// all `operands` are f32 of one shape with non-negative strides; with those strides.
fn attention_operands(operands: &[&FloatTensor<Flex>]) -> Option<(Vec<usize>, Vec<Vec<usize>>)> {
    let shape = operands[0].layout().shape().to_vec();
    let fits =
        |t: &&FloatTensor<Flex>| t.dtype() == DType::F32 && t.layout().shape().to_vec() == shape;
    if shape.len() < 3 || !operands.iter().all(fits) {
        return None;
    }
    let strides = operands
        .iter()
        .map(|t| unsigned_strides(t))
        .collect::<Option<Vec<_>>>()?;
    Some((shape, strides))
}

/// [`FusedOps::scaled_attention_parts`] by [`attention_kernels`], or `None` for operands they
/// do not take.
fn flex_attention(
    q: &FloatTensor<Flex>,
    k: &FloatTensor<Flex>,
    v: &FloatTensor<Flex>,
    scale: f32,
) -> Option<(FloatTensor<Flex>, FloatTensor<Flex>)> {
    let (shape, strides) = attention_operands(&[q, k, v])?;
    let rank = shape.len();
    let kernel_shape = attention_kernels::AttentionShape::of(&shape);
    let [qm, km, vm] =
        [(q, 0), (k, 1), (v, 2)].map(|(t, i)| strided_matrices(t, &strides[i], rank));
    let (out, lse) = attention_kernels::forward(kernel_shape, scale, qm, km, vm)?;
    let mut lse_shape = shape.clone();
    lse_shape[rank - 1] = 1;
    Some((flex_f32_shaped(out, shape), flex_f32_shaped(lse, lse_shape)))
}

/// [`FusedOps::scaled_attention_backward`] by [`attention_kernels`], or `None` for operands
/// they do not take.
fn flex_attention_backward(
    [q, k, v, grad]: [&FloatTensor<Flex>; 4],
    out: &FloatTensor<Flex>,
    lse: &FloatTensor<Flex>,
    scale: f32,
) -> Option<(FloatTensor<Flex>, FloatTensor<Flex>, FloatTensor<Flex>)> {
    let (shape, strides) = attention_operands(&[q, k, v, grad])?;
    let (out_values, lse_values) = (f32_values(out)?, f32_values(lse)?);
    let rank = shape.len();
    let kernel_shape = attention_kernels::AttentionShape::of(&shape);
    let operands =
        [(q, 0), (k, 1), (v, 2), (grad, 3)].map(|(t, i)| strided_matrices(t, &strides[i], rank));
    let [dq, dk, dv] =
        attention_kernels::backward(kernel_shape, scale, operands, &out_values, &lse_values)?;
    let shaped = |g| flex_f32_shaped(g, shape.clone());
    Some((shaped(dq), shaped(dk), shaped(dv)))
}

/// The kernels' shape and output size of a depthwise convolution of `x` (`[n, c, h, w]`) by
/// `weight` (`[c, 1, kh, kw]`) and `bias` (`[c]`) under `options`, or `None` for any other
/// convolution (grouped, dilated, or a filter larger than the padded input).
fn depthwise_shape(
    x: &FloatTensor<Flex>,
    weight: &FloatTensor<Flex>,
    bias: &FloatTensor<Flex>,
    options: &ConvOptions<2>,
) -> Option<(DepthwiseShape, [usize; 2])> {
    let (xd, wd) = (x.layout().shape(), weight.layout().shape());
    let (&[batch, channels, height, width], &[cout, 1, kh, kw]) = (&xd[..], &wd[..]) else {
        return None;
    };
    let plain = options.groups == channels && cout == channels && options.dilation == [1, 1];
    if !plain || bias.layout().shape().num_elements() != channels {
        return None;
    }
    let [(top, bottom), (left, right)] = options.padding;
    let s = DepthwiseShape {
        batch,
        channels,
        height,
        width,
        kernel: [kh, kw],
        stride: options.stride,
        pad: [[top, bottom], [left, right]],
    };
    Some((s, s.output()?))
}

/// `kernel` over a contiguous f32 flex tensor, `fallback` (Burn's operations) for any other.
fn unary_kernel(
    x: FloatTensor<Flex>,
    kernel: fn(&[f32], &mut [f32]),
    fallback: fn(FloatTensor<Flex>) -> FloatTensor<Flex>,
) -> FloatTensor<Flex> {
    let Some(src) = f32_slice(&x) else {
        return fallback(x);
    };
    let mut out = vec![0f32; src.len()];
    kernel(src, &mut out);
    flex_f32(out, &x)
}

impl FusedOps for Flex {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary_kernel(x, cpu_kernels::gelu, Self::gelu)
    }

    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        binary_kernel(&x, &grad, cpu_kernels::gelu_backward)
            .unwrap_or_else(|| Self::gelu_backward(x, grad))
    }

    fn last_dim_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (Some(src), Some(row)) = (f32_slice(&x), row_len(&x)) else {
            return composite_softmax::<Self>(x);
        };
        let mut out = vec![0f32; src.len()];
        cpu_kernels::softmax(src, row, &mut out);
        flex_f32(out, &x)
    }

    fn last_dim_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        row_len(&y)
            .and_then(|row| {
                binary_kernel(&y, &grad, |ys, gs, out| {
                    cpu_kernels::softmax_backward(ys, gs, row, out)
                })
            })
            .unwrap_or_else(|| composite_softmax_backward::<Self>(y, grad))
    }

    fn layer_norm_parts(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let d = gamma.layout().shape().num_elements();
        let fits = row_len(&x) == Some(d) && beta.layout().shape().num_elements() == d;
        let (Some(xs), Some(gs), Some(bs), true) =
            (f32_values(&x), f32_values(&gamma), f32_values(&beta), fits)
        else {
            return composite_layer_norm_parts::<Self>(x, gamma, beta, epsilon);
        };
        let rows = xs.len() / d;
        let (mut y, mut xhat, mut rstd) =
            (vec![0f32; xs.len()], vec![0f32; xs.len()], vec![0f32; rows]);
        cpu_kernels::layer_norm(&xs, &gs, &bs, epsilon as f32, &mut y, &mut xhat, &mut rstd);
        let mut row_shape = x.layout().shape().to_vec();
        *row_shape.last_mut().expect("row_len checked the rank") = 1;
        (
            flex_f32(y, &x),
            flex_f32(xhat, &x),
            flex_f32_shaped(rstd, row_shape),
        )
    }

    fn layer_norm_backward(
        xhat: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let d = gamma.layout().shape().num_elements();
        let fits = row_len(&xhat) == Some(d) && xhat.layout().shape() == grad.layout().shape();
        let parts = (
            f32_slice(&xhat),
            f32_slice(&rstd),
            f32_values(&gamma),
            f32_values(&grad),
        );
        let (Some(hs), Some(rs), Some(gs), Some(grs), true) =
            (parts.0, parts.1, parts.2, parts.3, fits)
        else {
            return composite_layer_norm_backward::<Self>(xhat, rstd, gamma, grad);
        };
        let (mut dx, mut dgamma, mut dbeta) = (vec![0f32; hs.len()], vec![0f32; d], vec![0f32; d]);
        cpu_kernels::layer_norm_backward(hs, rs, &gs, &grs, &mut dx, &mut dgamma, &mut dbeta);
        (
            flex_f32(dx, &xhat),
            flex_f32_shaped(dgamma, vec![d]),
            flex_f32_shaped(dbeta, vec![d]),
        )
    }

    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let shape = depthwise_shape(&x, &weight, &bias, &options);
        let values = (f32_values(&x), f32_values(&weight), f32_values(&bias));
        let (Some((s, [oh, ow])), (Some(xs), Some(ws), Some(bs))) = (shape, values) else {
            return Self::conv2d(x, weight, Some(bias), options);
        };
        let mut y = vec![0f32; s.batch * s.channels * oh * ow];
        depthwise_kernels::forward(&s, &xs, &ws, &bs, &mut y);
        flex_f32_shaped(y, vec![s.batch, s.channels, oh, ow])
    }

    fn depthwise_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = depthwise_shape(&x, &weight, &bias, &options).filter(|(s, [oh, ow])| {
            grad.layout().shape().to_vec() == [s.batch, s.channels, *oh, *ow]
        });
        let values = (f32_values(&x), f32_values(&weight), f32_values(&grad));
        let (Some((s, _)), (Some(xs), Some(ws), Some(gs))) = (shape, values) else {
            return composite_depthwise_backward::<Self>(x, weight, bias, grad, options);
        };
        let mut dx = vec![0f32; xs.len()];
        depthwise_kernels::input_grad(&s, &gs, &ws, &mut dx);
        let (mut dw, mut db) = (vec![0f32; ws.len()], vec![0f32; s.channels]);
        depthwise_kernels::filter_grad(&s, &xs, &gs, &mut dw, &mut db);
        (
            flex_f32(dx, &x),
            flex_f32(dw, &weight),
            flex_f32_shaped(db, vec![s.channels]),
        )
    }

    fn scaled_attention_parts(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        flex_attention(&q, &k, &v, scale)
            .unwrap_or_else(|| composite_attention_parts::<Self>(q, k, v, scale))
    }

    fn scaled_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        flex_attention_backward([&q, &k, &v, &grad], &out, &lse, scale)
            .unwrap_or_else(|| composite_attention_backward::<Self>(q, k, v, out, lse, grad, scale))
    }

    fn batch_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_matmul(&lhs, &rhs).unwrap_or_else(|| Self::float_matmul(lhs, rhs))
    }

    fn round_half_up(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary_kernel(
            x,
            cpu_kernels::round_half_up,
            composite_round_half_up::<Self>,
        )
    }

    fn floor_values(x: FloatTensor<Self>) -> FloatTensor<Self> {
        unary_kernel(x, cpu_kernels::floor, Self::float_floor)
    }

    fn fake_quant(
        x: FloatTensor<Self>,
        _log2_t: FloatTensor<Self>,
        step: f32,
        qmin: f32,
        qmax: f32,
    ) -> FloatTensor<Self> {
        let Some(src) = f32_slice(&x) else {
            return composite_fake_quant::<Self>(x, step, qmin, qmax);
        };
        let mut out = vec![0f32; src.len()];
        cpu_kernels::fake_quant(src, step, qmin, qmax, &mut out);
        flex_f32(out, &x)
    }

    fn fake_quant_backward(
        x: FloatTensor<Self>,
        step: f32,
        qmin: f32,
        qmax: f32,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let mut dstep = 0f64;
        let dx = binary_kernel(&x, &grad, |xs, gs, dx| {
            cpu_kernels::fake_quant_backward(xs, step, qmin, qmax, gs, dx, &mut dstep)
        });
        match dx {
            Some(dx) => (dx, flex_f32_shaped(vec![dstep as f32], vec![1])),
            None => composite_fake_quant_backward::<Self>(x, step, qmin, qmax, grad),
        }
    }
}

/// The autodiff step of an operation without a gradient: its inputs get none from it.
#[derive(Debug)]
struct NoGradientStep;

impl<B: FusedOps> Backward<B, 1> for NoGradientStep {
    type State = ();

    fn backward(self, _: Ops<Self::State, 1>, _: &mut Gradients, _: &mut Checkpointer) {}
}

/// The autodiff step of a one-input fused operation: keeps the one tensor its derivative needs
/// (GELU's input, softmax's output).
#[derive(Debug)]
enum UnaryStep {
    Gelu,
    Softmax,
}

impl<B: FusedOps> Backward<B, 1> for UnaryStep {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let kept = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| match self {
            Self::Gelu => B::exact_gelu_backward(kept, grad),
            Self::Softmax => B::last_dim_softmax_backward(kept, grad),
        });
    }
}

/// Sends each parent that takes a gradient its part of `backward(state, output gradient)`.
fn to_parents<B: FusedOps, S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    backward: impl FnOnce(S, FloatTensor<B>) -> [FloatTensor<B>; N],
) {
    let grad = grads.consume::<B>(&ops.node);
    for (parent, g) in ops.parents.into_iter().zip(backward(ops.state, grad)) {
        if let Some(node) = parent {
            grads.register::<B>(node.id, g);
        }
    }
}

/// LayerNorm's autodiff step: keeps `xhat`, `rstd` and `gamma`.
#[derive(Debug)]
struct LayerNormStep;

impl<B: FusedOps> Backward<B, 3> for LayerNormStep {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        to_parents::<B, _, 3>(ops, grads, |(xhat, rstd, gamma), grad| {
            let (dx, dgamma, dbeta) = B::layer_norm_backward(xhat, rstd, gamma, grad);
            [dx, dgamma, dbeta]
        });
    }
}

/// The depthwise convolution's autodiff step: keeps the input, weight, bias and options.
#[derive(Debug)]
struct DepthwiseStep;

impl<B: FusedOps> Backward<B, 3> for DepthwiseStep {
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        ConvOptions<2>,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        to_parents::<B, _, 3>(ops, grads, |(x, weight, bias, options), grad| {
            let (dx, dw, db) = B::depthwise_conv2d_backward(x, weight, bias, grad, options);
            [dx, dw, db]
        });
    }
}

/// Fake quantization's autodiff step: keeps the input and the step and range it was rounded at;
/// its parents are the input and the log2 threshold.
#[derive(Debug)]
struct FakeQuantStep;

impl<B: FusedOps> Backward<B, 2> for FakeQuantStep {
    type State = (FloatTensor<B>, f32, f32, f32);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, step, qmin, qmax) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let (dx, dstep) = B::fake_quant_backward(x, step, qmin, qmax, grad);
        let [x_node, log2_t_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = log2_t_node {
            // step = 2^(ceil(l) - bits + 1) with ceil passed straight through: dstep/dl = step ln 2
            let dl = B::float_mul_scalar(dstep, (step * std::f32::consts::LN_2).into());
            grads.register::<B>(node.id, dl);
        }
    }
}

/// The matrix product's autodiff step: keeps both operands (each gradient needs the other).
#[derive(Debug)]
struct MatmulStep;

impl<B: FusedOps> Backward<B, 2> for MatmulStep {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (lhs, rhs) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [lhs_node, rhs_node] = ops.parents;
        if let Some(node) = lhs_node {
            grads.register::<B>(node.id, B::batch_matmul(grad.clone(), transposed::<B>(rhs)));
        }
        if let Some(node) = rhs_node {
            grads.register::<B>(node.id, B::batch_matmul(transposed::<B>(lhs), grad));
        }
    }
}

/// The attention's autodiff step: keeps the operands, the output, the rows' log-sum-exp and
/// the scale (not the scores: the backward pass recomputes them).
#[derive(Debug)]
struct AttentionStep;

impl<B: FusedOps> Backward<B, 3> for AttentionStep {
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        f32,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        to_parents::<B, _, 3>(ops, grads, |(q, k, v, out, lse, scale), grad| {
            let (dq, dk, dv) = B::scaled_attention_backward(q, k, v, out, lse, grad, scale);
            [dq, dk, dv]
        });
    }
}

/// `op` of `x` on the inner backend, recorded as a step that sends its input no gradient.
fn without_gradient<B: FusedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    op: fn(FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match NoGradientStep
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((), op(x.into_primitive())),
        OpsKind::UnTracked(prep) => prep.finish(op(x.into_primitive())),
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn floor_values(x: FloatTensor<Self>) -> FloatTensor<Self> {
        without_gradient::<B, C>(x, B::floor_values)
    }

    fn fake_quant(
        x: FloatTensor<Self>,
        log2_t: FloatTensor<Self>,
        step: f32,
        qmin: f32,
        qmax: f32,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), log2_t.node()];
        let (xp, lp) = (x.into_primitive(), log2_t.into_primitive());
        match FakeQuantStep.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fake_quant(xp.clone(), lp, step, qmin, qmax);
                prep.finish((xp, step, qmin, qmax), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fake_quant(xp, lp, step, qmin, qmax)),
        }
    }

    fn round_half_up(x: FloatTensor<Self>) -> FloatTensor<Self> {
        without_gradient::<B, C>(x, B::round_half_up)
    }

    fn scaled_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let nodes = [q.node(), k.node(), v.node()];
        let [qp, kp, vp] = [q, k, v].map(|t| t.into_primitive());
        match AttentionStep.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, lse) =
                    B::scaled_attention_parts(qp.clone(), kp.clone(), vp.clone(), scale);
                prep.finish((qp, kp, vp, out.clone(), lse, scale), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::scaled_attention(qp, kp, vp, scale)),
        }
    }

    fn batch_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [lhs.node(), rhs.node()];
        let (lp, rp) = (lhs.into_primitive(), rhs.into_primitive());
        match MatmulStep.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::batch_matmul(lp.clone(), rp.clone());
                prep.finish((lp, rp), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::batch_matmul(lp, rp)),
        }
    }

    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let [xp, wp, bp] = [&x, &weight, &bias].map(|t| t.primitive().clone());
        match DepthwiseStep.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::depthwise_conv2d(xp.clone(), wp.clone(), bp.clone(), options.clone());
                prep.finish((xp, wp, bp, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::depthwise_conv2d(xp, wp, bp, options)),
        }
    }

    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match UnaryStep::Gelu
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                prep.finish(input.clone(), B::exact_gelu(input))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::exact_gelu(x.into_primitive())),
        }
    }

    fn last_dim_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match UnaryStep::Softmax
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::last_dim_softmax(x.primitive().clone());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::last_dim_softmax(x.into_primitive())),
        }
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let inputs = [&x, &gamma, &beta].map(|t| t.primitive().clone());
        let [xp, gp, bp] = inputs;
        match LayerNormStep.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, xhat, rstd) = B::layer_norm_parts(xp, gp.clone(), bp, epsilon);
                prep.finish((xhat, rstd, gp), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(xp, gp, bp, epsilon)),
        }
    }
}

fn on_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// `x * Phi(x)` with the exact (erf) normal CDF, as `burn::nn::Gelu` and PyTorch's default.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x.device()) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::exact_gelu(x.into_dispatch()))
}

/// `floor(x + 0.5)` (round half up), one vectorized pass on flex; no gradient flows through it.
pub fn round_half_up<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x.device()) {
        return x.detach().add_scalar(0.5).floor();
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::round_half_up(
        x.detach().into_dispatch(),
    ))
}

/// [`FusedOps::fake_quant`] on flex (one pass forward, one backward) at the power-of-two step
/// `2^(ceil(log2_t) - (bits - 1))` of the threshold `log2_t` (shape `[1]`); `None` on other
/// backends (whose threshold is not read back: on a GPU that would wait for the device) and
/// for a non-finite threshold.
pub fn fake_quant<const D: usize>(
    x: Tensor<D>,
    log2_t: Tensor<1>,
    bits: u32,
    qmin: f32,
    qmax: f32,
) -> Option<Tensor<D>> {
    if !on_flex(&x.device()) {
        return None;
    }
    let l = log2_t.clone().into_scalar::<f32>();
    if !l.is_finite() {
        return None;
    }
    let step = 2f32.powi(crate::fake_quant::step_exponent(l, bits));
    Some(Tensor::from_dispatch(<Dispatch as FusedOps>::fake_quant(
        x.into_dispatch(),
        log2_t.into_dispatch(),
        step,
        qmin,
        qmax,
    )))
}

/// `floor(x)`, one vectorized pass on flex; no gradient flows through it.
pub fn floor<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x.device()) {
        return x.detach().floor();
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::floor_values(
        x.detach().into_dispatch(),
    ))
}

/// Softmax over dimension `dim`, as `burn::tensor::activation::softmax`.
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if dim + 1 != D || !on_flex(&x.device()) {
        return burn::tensor::activation::softmax(x, dim);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::last_dim_softmax(x.into_dispatch()))
}

/// Scaled dot-product attention `softmax(scale q k^T) v` of `[.., tokens, dim]` operands of
/// one shape; on flex by [`crate::attention_kernels`], whose backward pass recomputes the
/// scores instead of keeping them.
pub fn attention<const D: usize>(
    q: Tensor<D>,
    k: Tensor<D>,
    v: Tensor<D>,
    scale: f64,
) -> Tensor<D> {
    let same = q.dims() == k.dims() && q.dims() == v.dims();
    if D < 3 || !same || !on_flex(&q.device()) {
        return materialized_attention(q, k, v, scale);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::scaled_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale as f32,
    ))
}

/// [`attention`] through its score matrix: product, scale, softmax, product (the fused
/// softmax and products on flex), each kept for the backward pass.
pub fn materialized_attention<const D: usize>(
    q: Tensor<D>,
    k: Tensor<D>,
    v: Tensor<D>,
    scale: f64,
) -> Tensor<D> {
    let scores = matmul(q, k.swap_dims(D - 2, D - 1)).mul_scalar(scale);
    matmul(softmax(scores, D - 1), v)
}

/// `lhs.matmul(rhs)`; on flex written straight into its output (flex's own matmul zeroes and
/// then copies every output once more), an operand with a batch dimension of 1 against one with
/// more read through a broadcast view (stride 0; autodiff sums its gradient over the batch).
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    if D < 2 || !on_flex(&lhs.device()) {
        return lhs.matmul(rhs);
    }
    let (mut ld, mut rd) = (lhs.dims(), rhs.dims());
    for i in 0..D - 2 {
        match (ld[i], rd[i]) {
            (l, r) if l == r => {}
            (1, r) => ld[i] = r,
            (l, 1) => rd[i] = l,
            // not broadcastable: Burn's matmul reports it
            _ => return lhs.matmul(rhs),
        }
    }
    let broadcast = |t: Tensor<D>, dims: [usize; D]| {
        if t.dims() == dims { t } else { t.expand(dims) }
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::batch_matmul(
        broadcast(lhs, ld).into_dispatch(),
        broadcast(rhs, rd).into_dispatch(),
    ))
}

/// `burn::tensor::module::linear(x, weight, bias)` (`weight` `[d_in, d_out]`); on flex one
/// [`matmul`] over all rows of `x` at once.
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    if D == 0 || !on_flex(&x.device()) {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let mut dims = x.dims();
    let [d_in, d_out] = weight.dims();
    let rows = dims[..D - 1].iter().product();
    let y = matmul(x.reshape([rows, d_in]), weight);
    let y = match bias {
        Some(b) => y + b.unsqueeze_dim::<2>(0),
        None => y,
    };
    dims[D - 1] = d_out;
    y.reshape(dims)
}

/// `layer.forward(x)` by [`linear`].
pub fn linear_layer<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    linear(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

/// `burn::nn::LayerNorm::forward` (biased variance, epsilon [`LAYER_NORM_EPSILON`], shift
/// required: every LayerNorm here has one), fused on flex.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref().filter(|_| on_flex(&x.device())) else {
        return norm.forward(x);
    };
    let out = <Dispatch as FusedOps>::fused_layer_norm(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        LAYER_NORM_EPSILON,
    );
    Tensor::from_dispatch(out)
}

/// `conv.forward(x)`, faster on flex for the two convolutions of MobileNet blocks and for image
/// stems: a depthwise one (groups equal to the channels, one filter each, no dilation, explicit
/// or no padding, a bias) runs [`depthwise_kernels`], a pointwise one (1 x 1, stride 1, no
/// padding, one group) runs as a matrix product over the pixels, one over at most
/// `WINDOWED_MAX_CHANNELS` input channels as a matrix product over its windows (Burn runs
/// them as general convolutions, whose backward passes take several times longer).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    let [cout, per_group, kh, kw] = conv.weight.dims();
    if !on_flex(&x.device()) {
        return conv.forward(x);
    }
    let unpadded = matches!(conv.padding, PaddingConfig2d::Valid)
        || conv.padding == PaddingConfig2d::Explicit(0, 0, 0, 0);
    if [kh, kw] == [1, 1] && conv.stride == [1, 1] && conv.groups == 1 && unpadded {
        let w = conv.weight.val().reshape([1, cout, channels]);
        let y = matmul(w, x.reshape([batch, channels, height * width]));
        let y = y.reshape([batch, cout, height, width]);
        return match &conv.bias {
            Some(b) => y + b.val().reshape([1, cout, 1, 1]),
            None => y,
        };
    }
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => return conv.forward(x),
    };
    if conv.groups == 1 && channels <= WINDOWED_MAX_CHANNELS && conv.dilation == [1, 1] {
        if let Some(y) = windowed_conv2d(conv, x.clone(), padding) {
            return y;
        }
        return conv.forward(x);
    }
    let depthwise = conv.groups == channels && cout == channels && per_group == 1;
    let Some(bias) = conv
        .bias
        .as_ref()
        .filter(|_| depthwise && conv.dilation == [1, 1] && kh > 0 && kw > 0)
    else {
        return conv.forward(x);
    };
    let options = ConvOptions {
        stride: conv.stride,
        padding,
        dilation: conv.dilation,
        groups: conv.groups,
    };
    Tensor::from_dispatch(<Dispatch as FusedOps>::depthwise_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        options,
    ))
}

/// Input channels up to which [`conv2d`] runs an ordinary convolution as a matrix product over
/// its windows: an image stem (1 to 3 channels), where that is 1.2-4x faster forward and
/// backward than Burn's convolution on flex; with 12-16 channels the windows' copies cost more
/// (4x slower), so those keep Burn's.
const WINDOWED_MAX_CHANNELS: usize = 3;

/// An ordinary convolution (one group, no dilation) as `weight [out, in kh kw] x windows [in kh
/// kw, oh ow]` per image, the windows cut from the zero-padded input by slices, so that autodiff
/// runs matrix products, slices and one pad; `None` when the filter is larger than the padded
/// input.
fn windowed_conv2d(conv: &Conv2d, x: Tensor<4>, padding: [(usize, usize); 2]) -> Option<Tensor<4>> {
    let [batch, channels, height, width] = x.dims();
    let [cout, _, kh, kw] = conv.weight.dims();
    let [sh, sw] = conv.stride;
    let [(top, bottom), (left, right)] = padding;
    let (hp, wp) = (height + top + bottom, width + left + right);
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || kh > hp || kw > wp {
        return None;
    }
    let (oh, ow) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
    let xp = x.pad(padding, PadMode::Constant(0.0));
    let mut windows = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        for j in 0..kw {
            let rows = i..i + (oh - 1) * sh + 1;
            let cols = j..j + (ow - 1) * sw + 1;
            let mut w = xp.clone().slice([0..batch, 0..channels, rows, cols]);
            if [sh, sw] != [1, 1] {
                w = w.slice([s![..], s![..], s![..;sh as isize], s![..;sw as isize]]);
            }
            windows.push(w.reshape([batch, channels, 1, oh * ow]));
        }
    }
    let k = channels * kh * kw;
    let windows = Tensor::cat(windows, 2).reshape([batch, k, oh * ow]);
    let y = matmul(conv.weight.val().reshape([1, cout, k]), windows);
    let y = y.reshape([batch, cout, oh, ow]);
    Some(match &conv.bias {
        Some(b) => y + b.val().reshape([1, cout, 1, 1]),
        None => y,
    })
}

/// `LayerNormConfig`'s default epsilon, which every LayerNorm of the models uses (Burn keeps a
/// module's own epsilon private; a test holds the two equal).
pub const LAYER_NORM_EPSILON: f64 = 1e-5;

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn assert_close(a: Tensor<2>, b: Tensor<2>, tol: f32) {
        let a = a.into_data().try_to_vec::<f32>().unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        assert_values_close(a, b, tol);
    }

    fn assert_values_close(a: Vec<f32>, b: Vec<f32>, tol: f32) {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= tol, "differ by {worst}");
    }

    /// Value and gradient equal Burn's GELU (libm erf) on flex, through autodiff.
    #[test]
    fn matches_burns_gelu_forward_and_backward() {
        let device = Device::flex().autodiff();
        let init =
            crate::test_random::seeded::<2>([33, 70], Distribution::Normal(0.0, 2.0), &device);
        let upstream =
            crate::test_random::seeded::<2>([33, 70], Distribution::Uniform(-1.0, 1.0), &device);

        let ours_x = init.clone().require_grad();
        let ours = gelu(ours_x.clone());
        let grads = (ours.clone() * upstream.clone()).sum().backward();
        let ours_dx = ours_x.grad(&grads).unwrap();

        let ref_x = init.require_grad();
        let reference = burn::tensor::activation::gelu(ref_x.clone());
        let grads = (reference.clone() * upstream).sum().backward();
        let ref_dx = ref_x.grad(&grads).unwrap();

        assert_close(ours.inner(), reference.inner(), 2e-6);
        assert_close(ours_dx, ref_dx, 2e-6);
    }

    /// Strided views (a transpose) and inference tensors take the right paths too.
    #[test]
    fn strided_and_untracked_inputs() {
        let device = Device::flex();
        let x = crate::test_random::seeded::<2>([8, 5], Distribution::Normal(0.0, 1.0), &device);
        let t = x.clone().transpose();
        assert_close(gelu(t.clone()), burn::tensor::activation::gelu(t), 1e-6);
        assert_close(
            gelu(x.clone()),
            burn::tensor::activation::gelu(x.clone()),
            1e-6,
        );
        // The flex path runs this crate's kernel (bit for bit), not Burn's fallback.
        let values = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let mut want = vec![0f32; values.len()];
        cpu_kernels::gelu(&values, &mut want);
        assert_eq!(gelu(x).into_data().try_to_vec::<f32>().unwrap(), want);
    }

    /// Value and gradient equal Burn's softmax on flex, through autodiff, with the softmax's
    /// output also used downstream (its gradient arrives from two places).
    #[test]
    fn matches_burns_softmax_forward_and_backward() {
        let device = Device::flex().autodiff();
        let init =
            crate::test_random::seeded::<3>([3, 9, 21], Distribution::Normal(0.0, 3.0), &device);
        let upstream =
            crate::test_random::seeded::<3>([3, 9, 21], Distribution::Uniform(-1.0, 1.0), &device);
        let run = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
            let x = init.clone().require_grad();
            let y = f(x.clone());
            let loss = (y.clone() * upstream.clone()).sum() + (y.clone() * y.clone()).sum();
            let dx = x.grad(&loss.backward()).unwrap();
            (y.inner(), dx)
        };
        let (ours, ours_dx) = run(&|x| softmax(x, 2));
        let (reference, ref_dx) = run(&|x| burn::tensor::activation::softmax(x, 2));
        let flat = |t: Tensor<3>| t.reshape([27, 21]);
        assert_close(flat(ours.clone()), flat(reference), 1e-6);
        assert_close(flat(ours_dx), flat(ref_dx), 1e-6);
        // Rows sum to one.
        let sums = ours.sum_dim(2).into_data().try_to_vec::<f32>().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6), "{sums:?}");
    }

    /// Another dimension than the last, or a strided input, still gives Burn's softmax.
    #[test]
    fn softmax_other_dims_and_views() {
        let device = Device::flex();
        let x = crate::test_random::seeded::<3>([4, 6, 5], Distribution::Normal(0.0, 1.0), &device);
        let flat = |t: Tensor<3>| t.reshape([24, 5]);
        let burns = |x: Tensor<3>, d| burn::tensor::activation::softmax(x, d);
        assert_close(flat(softmax(x.clone(), 2)), flat(burns(x.clone(), 2)), 1e-6);
        let t = x.clone().swap_dims(1, 2);
        assert_close(
            softmax(t.clone(), 2).reshape([20, 6]),
            burns(t, 2).reshape([20, 6]),
            1e-6,
        );
        assert_close(flat(softmax(x.clone(), 1)), flat(burns(x.clone(), 1)), 1e-6);
        // The last dimension of a contiguous tensor runs this crate's kernel, bit for bit.
        let values = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let mut want = vec![0f32; values.len()];
        cpu_kernels::softmax(&values, 5, &mut want);
        assert_eq!(softmax(x, 2).into_data().try_to_vec::<f32>().unwrap(), want);
    }

    /// Output and the gradients of input, scale and shift equal Burn's LayerNorm on flex, for
    /// a contiguous input and a strided one.
    #[test]
    fn matches_burns_layer_norm_forward_and_backward() {
        use burn::module::Param;
        use burn::nn::LayerNormConfig;
        let device = Device::flex().autodiff();
        let mut norm = LayerNormConfig::new(24).init(&device);
        assert_eq!(LayerNormConfig::new(24).epsilon, LAYER_NORM_EPSILON);
        // Scale and shift away from 1 and 0 so that their use is checked.
        norm.gamma = Param::from_tensor(crate::test_random::seeded(
            [24],
            Distribution::Uniform(0.5, 1.5),
            &device,
        ));
        norm.beta = Some(Param::from_tensor(crate::test_random::seeded(
            [24],
            Distribution::Normal(0.0, 1.0),
            &device,
        )));
        let init =
            crate::test_random::seeded::<3>([4, 24, 11], Distribution::Normal(1.0, 3.0), &device);
        let upstream =
            crate::test_random::seeded::<3>([4, 11, 24], Distribution::Uniform(-1.0, 1.0), &device);
        for strided in [false, true] {
            let run = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
                let x = init.clone().require_grad();
                let input = if strided {
                    x.clone().swap_dims(1, 2)
                } else {
                    x.clone().reshape([4, 11, 24])
                };
                let y = f(input);
                let loss = (y.clone() * upstream.clone()).sum() + (y.clone() * y.clone()).sum();
                let grads = loss.backward();
                let dx = x.grad(&grads).unwrap().reshape([44, 24]);
                let dgamma = norm.gamma.val().grad(&grads).unwrap().reshape([1, 24]);
                let dbeta = norm
                    .beta
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .unwrap()
                    .reshape([1, 24]);
                (y.inner().reshape([44, 24]), dx, dgamma, dbeta)
            };
            let ours = run(&|x| layer_norm(&norm, x));
            let reference = run(&|x| norm.forward(x));
            assert_close(ours.0, reference.0, 2e-6);
            assert_close(ours.1, reference.1, 2e-5);
            assert_close(ours.2, reference.2, 2e-4);
            assert_close(ours.3, reference.3, 2e-4);
        }
    }

    /// The composite fallbacks (f64 inputs and other backends take them) agree with the kernels.
    #[test]
    fn composite_fallbacks_agree_with_the_kernels() {
        let device = Device::flex();
        let prim = |t: Tensor<3>| t.try_into_primitive::<Flex>().unwrap();
        let x =
            crate::test_random::seeded::<3>([3, 5, 12], Distribution::Normal(0.5, 2.0), &device);
        let g =
            crate::test_random::seeded::<3>([3, 5, 12], Distribution::Normal(0.0, 1.0), &device);
        let gamma = crate::test_random::seeded::<1>([12], Distribution::Uniform(0.5, 1.5), &device);
        let beta = crate::test_random::seeded::<1>([12], Distribution::Normal(0.0, 1.0), &device);
        let p1 = |t: Tensor<1>| t.try_into_primitive::<Flex>().unwrap();
        let back =
            |t: FloatTensor<Flex>| -> Vec<f32> { t.into_data().try_to_vec::<f32>().unwrap() };
        let close = assert_values_close;

        let fused = <Flex as FusedOps>::last_dim_softmax(prim(x.clone()));
        close(
            back(fused.clone()),
            back(composite_softmax::<Flex>(prim(x.clone()))),
            1e-6,
        );
        let fused_back =
            <Flex as FusedOps>::last_dim_softmax_backward(fused.clone(), prim(g.clone()));
        close(
            back(fused_back),
            back(composite_softmax_backward::<Flex>(fused, prim(g.clone()))),
            1e-6,
        );

        let (y, xhat, rstd) = <Flex as FusedOps>::layer_norm_parts(
            prim(x.clone()),
            p1(gamma.clone()),
            p1(beta.clone()),
            LAYER_NORM_EPSILON,
        );
        let (cy, cxhat, crstd) = composite_layer_norm_parts::<Flex>(
            prim(x.clone()),
            p1(gamma.clone()),
            p1(beta),
            LAYER_NORM_EPSILON,
        );
        close(back(y), back(cy), 2e-6);
        close(back(xhat.clone()), back(cxhat), 2e-6);
        close(back(rstd.clone()), back(crstd), 2e-6);
        let (dx, dgamma, dbeta) = <Flex as FusedOps>::layer_norm_backward(
            xhat.clone(),
            rstd.clone(),
            p1(gamma.clone()),
            prim(g.clone()),
        );
        let (cdx, cdgamma, cdbeta) =
            composite_layer_norm_backward::<Flex>(xhat, rstd, p1(gamma.clone()), prim(g.clone()));
        close(back(dx), back(cdx), 2e-5);
        close(back(dgamma), back(cdgamma), 2e-5);
        close(back(dbeta), back(cdbeta), 2e-5);

        // fake quantization at 2^-5 onto [-128, 127], range [-4, 3.97]: N(0.5, 2) clips at
        // both ends
        let step = 0.031_25;
        let ys = <Flex as FusedOps>::fake_quant(prim(x.clone()), p1(gamma), step, -128.0, 127.0);
        let want = composite_fake_quant::<Flex>(prim(x.clone()), step, -128.0, 127.0);
        assert_eq!(back(ys), back(want));
        let fused_back = <Flex as FusedOps>::fake_quant_backward(
            prim(x.clone()),
            step,
            -128.0,
            127.0,
            prim(g.clone()),
        );
        let (cdx, cdstep) =
            composite_fake_quant_backward::<Flex>(prim(x), step, -128.0, 127.0, prim(g));
        assert_eq!(back(fused_back.0), back(cdx.clone()));
        close(back(fused_back.1), back(cdstep), 1e-4);
        // both outcomes happened
        let dx = back(cdx);
        assert!(dx.contains(&0.0) && dx.iter().any(|&v| v != 0.0));
    }

    /// The fused attention equals Burn's composition (product, scale, softmax, product) in value
    /// and in the gradient of the joint projection it reads q, k and v from through strided
    /// views (as the model does), with 300 tokens (three blocks of query rows); the inference
    /// path (no autodiff) gives the same values; the composite defaults agree with the kernels.
    #[test]
    fn attention_matches_burns_composition_forward_and_backward() {
        let (b, t, h, d) = (2, 300, 2, 5);
        let device = Device::flex().autodiff();
        let qkv = crate::test_random::seeded::<3>(
            [b, t, 3 * h * d],
            Distribution::Normal(0.0, 1.5),
            &device,
        );
        let upstream = crate::test_random::seeded::<4>(
            [b, h, t, d],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let scale = (d as f64).powf(-0.5);
        let heads = |x: Tensor<3>, i: usize| {
            x.narrow(2, i * h * d, h * d)
                .reshape([b, t, h, d])
                .swap_dims(1, 2)
        };
        let run = |f: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>| {
            let x = qkv.clone().require_grad();
            let y = f(
                heads(x.clone(), 0),
                heads(x.clone(), 1),
                heads(x.clone(), 2),
            );
            let dx = x
                .grad(&(y.clone() * upstream.clone()).sum().backward())
                .unwrap();
            (
                y.inner().reshape([b * h * t, d]),
                dx.reshape([b * t, 3 * h * d]),
            )
        };
        let (ours, ours_dx) = run(&|q, k, v| attention(q, k, v, scale));
        let (want, want_dx) = run(&|q, k, v| {
            let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
            burn::tensor::activation::softmax(scores, 3).matmul(v)
        });
        // operands up to about 6: a few ulps of the outputs (2.4e-6 measured)
        assert_close(ours.clone(), want, 1e-5);
        assert_close(ours_dx, want_dx, 5e-5);

        let plain = qkv.inner();
        let untracked = attention(
            heads(plain.clone(), 0),
            heads(plain.clone(), 1),
            heads(plain.clone(), 2),
            scale,
        );
        assert_eq!(
            untracked.reshape([b * h * t, d]).into_data(),
            ours.into_data()
        );

        let prim = |i| {
            heads(plain.clone(), i)
                .try_into_primitive::<Flex>()
                .unwrap()
        };
        let g = upstream.inner().try_into_primitive::<Flex>().unwrap();
        let back =
            |t: FloatTensor<Flex>| -> Vec<f32> { t.into_data().try_to_vec::<f32>().unwrap() };
        let (out, lse) = <Flex as FusedOps>::scaled_attention_parts(prim(0), prim(1), prim(2), 0.4);
        let (cout, clse) = composite_attention_parts::<Flex>(prim(0), prim(1), prim(2), 0.4);
        assert_values_close(back(out.clone()), back(cout), 2e-6);
        assert_values_close(back(lse.clone()), back(clse), 2e-5);
        let grads = <Flex as FusedOps>::scaled_attention_backward(
            prim(0),
            prim(1),
            prim(2),
            out.clone(),
            lse.clone(),
            g.clone(),
            0.4,
        );
        let cgrads =
            composite_attention_backward::<Flex>(prim(0), prim(1), prim(2), out, lse, g, 0.4);
        assert_values_close(back(grads.0), back(cgrads.0), 2e-5);
        assert_values_close(back(grads.1), back(cgrads.1), 2e-5);
        assert_values_close(back(grads.2), back(cgrads.2), 2e-5);
    }

    /// The matrix product equals Burn's, value and both gradients through autodiff, on the
    /// attention's strided views (q k^T of a permuted qkv, then p v), on equal batches and on a
    /// broadcast batch (either side); the linear layer equals
    /// `Linear::forward` with and without bias on a 3-D input.
    #[test]
    fn matmul_and_linear_match_burns_forward_and_backward() {
        use burn::nn::LinearConfig;
        let device = Device::flex().autodiff();
        // [b, t, 3 h d] with b 2, t 7, h 2, d 5
        let qkv =
            crate::test_random::seeded::<3>([2, 7, 30], Distribution::Normal(0.0, 1.0), &device);
        let upstream =
            crate::test_random::seeded::<4>([2, 2, 7, 5], Distribution::Normal(0.0, 1.0), &device);
        let run = |mm: &dyn Fn(Tensor<4>, Tensor<4>) -> Tensor<4>| {
            let x = qkv.clone().require_grad();
            let parts = x.clone().reshape([2, 7, 3, 2, 5]).permute([2, 0, 3, 1, 4]);
            let part = |i: usize| -> Tensor<4> { parts.clone().narrow(0, i, 1).squeeze_dim(0) };
            let scores = mm(part(0), part(1).swap_dims(2, 3));
            let y = mm(burn::tensor::activation::softmax(scores, 3), part(2));
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let dx = x.grad(&grads).unwrap();
            (y.inner().reshape([28, 5]), dx.reshape([14, 30]))
        };
        let (ours, ours_dx) = run(&|a, b| matmul(a, b));
        let (reference, ref_dx) = run(&|a, b| a.matmul(b));
        assert_close(ours, reference, 1e-5);
        assert_close(ours_dx, ref_dx, 1e-5);

        for (la, lb) in [(3, 3), (3, 1), (1, 3)] {
            let a = crate::test_random::seeded::<3>(
                [la, 6, 4],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let b = crate::test_random::seeded::<3>(
                [lb, 4, 5],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let grads_of = |mm: &dyn Fn(Tensor<3>, Tensor<3>) -> Tensor<3>| {
                let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
                let y = mm(a.clone(), b.clone());
                let grads = (y.clone() * y.clone()).sum().backward();
                let flat = |t: Tensor<3, _>| t.reshape([-1, 1]);
                let (da, db) = (a.grad(&grads).unwrap(), b.grad(&grads).unwrap());
                (flat(y.inner()), flat(da), flat(db))
            };
            let (y, da, db) = grads_of(&|a, b| matmul(a, b));
            let (ry, rda, rdb) = grads_of(&|a, b| a.matmul(b));
            assert_close(y, ry, 1e-5);
            assert_close(da, rda, 1e-4);
            assert_close(db, rdb, 1e-4);
        }

        for bias in [true, false] {
            let layer = LinearConfig::new(6, 9).with_bias(bias).init(&device);
            let x =
                crate::test_random::seeded::<3>([2, 5, 6], Distribution::Normal(0.0, 1.0), &device);
            let grads_of = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
                let x = x.clone().require_grad();
                let y = f(x.clone());
                let grads = (y.clone() * y.clone()).sum().backward();
                let dw = layer.weight.grad(&grads).unwrap();
                let db = layer
                    .bias
                    .as_ref()
                    .map(|b| b.grad(&grads).unwrap().reshape([9, 1]));
                let dx = x.grad(&grads).unwrap().reshape([10, 6]);
                (y.inner().reshape([10, 9]), dx, dw, db)
            };
            let (y, dx, dw, db) = grads_of(&|x| linear_layer(&layer, x));
            let (ry, rdx, rdw, rdb) = grads_of(&|x| layer.forward(x));
            assert_close(y, ry, 1e-5);
            assert_close(dx, rdx, 1e-4);
            assert_close(dw, rdw, 1e-4);
            assert_eq!(db.is_some(), bias);
            if let (Some(db), Some(rdb)) = (db, rdb) {
                assert_close(db, rdb, 1e-4);
            }
        }
    }

    /// The kernel path runs for f32 operands with equal batch dimensions and equals Burn's
    /// product without autodiff; a broadcast batch falls back to Burn's.
    #[test]
    fn batch_matmul_takes_the_kernel_for_equal_batches_only() {
        let device = Device::flex();
        let prim = |t: Tensor<3>| t.try_into_primitive::<Flex>().unwrap();
        let a = crate::test_random::seeded::<3>([2, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let b = crate::test_random::seeded::<3>([2, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let bt = b.clone().swap_dims(1, 2);
        assert!(flex_matmul(&prim(a.clone()), &prim(bt.clone())).is_some());
        let ours = <Flex as FusedOps>::batch_matmul(prim(a.clone()), prim(bt.clone()));
        let reference = a.clone().matmul(bt);
        assert_values_close(
            ours.into_data().try_to_vec::<f32>().unwrap(),
            reference.into_data().try_to_vec::<f32>().unwrap(),
            1e-5,
        );
        let broadcast =
            crate::test_random::seeded::<3>([1, 4, 5], Distribution::Normal(0.0, 1.0), &device);
        assert!(flex_matmul(&prim(a.clone()), &prim(broadcast)).is_none());
        let mismatched =
            crate::test_random::seeded::<3>([2, 3, 5], Distribution::Normal(0.0, 1.0), &device);
        assert!(flex_matmul(&prim(a), &prim(mismatched)).is_none());
    }

    /// The depthwise path equals Burn's grouped convolution, value and gradients (input,
    /// weight, bias) through autodiff: stride 1 and 2, asymmetric padding, no padding, a
    /// rectangular filter; a grouped (not depthwise) and an ordinary convolution take Burn's
    /// path and equal it too.
    #[test]
    fn depthwise_conv2d_matches_burns_forward_and_backward() {
        use burn::nn::conv::Conv2dConfig;
        let device = Device::flex().autodiff();
        use PaddingConfig2d::{Explicit, Valid};
        // (in, out, kernel, stride, padding, groups)
        let cases = vec![
            (6, 6, [3, 3], [1, 1], Explicit(1, 1, 1, 1), 6),
            (4, 4, [3, 3], [2, 2], Explicit(1, 1, 1, 1), 4),
            (3, 3, [3, 2], [1, 1], Explicit(2, 0, 1, 1), 3),
            (5, 5, [3, 3], [1, 1], Valid, 5),
            (4, 8, [3, 3], [1, 1], Explicit(1, 1, 1, 1), 4),
            (4, 4, [3, 3], [1, 1], Explicit(1, 1, 1, 1), 2),
            // pointwise: a matrix product; padded or strided: Burn's
            (4, 6, [1, 1], [1, 1], Valid, 1),
            (6, 4, [1, 1], [1, 1], Explicit(0, 0, 0, 0), 1),
            (4, 6, [1, 1], [2, 2], Valid, 1),
            // image stems (few input channels): a matrix product over the windows
            (1, 4, [3, 3], [1, 1], Explicit(1, 1, 1, 1), 1),
            (3, 5, [3, 3], [2, 2], Explicit(1, 2, 0, 1), 1),
            (2, 3, [3, 2], [1, 2], Valid, 1),
            (3, 4, [1, 1], [2, 1], Explicit(1, 0, 0, 1), 1),
        ];
        for (cin, cout, k, stride, padding, groups) in cases {
            let conv = Conv2dConfig::new([cin, cout], k)
                .with_stride(stride)
                .with_padding(padding.clone())
                .with_groups(groups)
                .init(&device);
            let init = crate::test_random::seeded::<4>(
                [3, cin, 9, 7],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let run = |ours: bool| {
                let x = init.clone().require_grad();
                let y = if ours {
                    conv2d(&conv, x.clone())
                } else {
                    conv.forward(x.clone())
                };
                let upstream = y.clone().inner().sin();
                let loss = (y.clone() * Tensor::from_inner(upstream)).sum();
                let grads = loss.backward();
                let flat = |t: Tensor<4>| {
                    t.flatten::<1>(0, 3)
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap()
                };
                (
                    flat(y.inner()),
                    flat(x.grad(&grads).unwrap()),
                    flat(conv.weight.grad(&grads).unwrap()),
                    conv.bias
                        .as_ref()
                        .unwrap()
                        .grad(&grads)
                        .unwrap()
                        .into_data()
                        .try_to_vec::<f32>()
                        .unwrap(),
                )
            };
            let (ours, reference) = (run(true), run(false));
            let label = format!("{cin}->{cout} k{k:?} s{stride:?} {padding:?} g{groups}");
            for (a, b) in [
                (ours.0, reference.0),
                (ours.1, reference.1),
                (ours.2, reference.2),
                (ours.3, reference.3),
            ] {
                assert_eq!(a.len(), b.len(), "{label}");
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                // sums of up to a few hundred products: relative to the largest value
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                assert!(
                    worst <= 2e-6 * scale,
                    "{label}: differ by {worst} (largest {scale})"
                );
            }
        }
    }

    /// On flex the depthwise path runs this crate's kernels, not Burn's convolution.
    #[test]
    fn depthwise_conv2d_runs_the_kernels() {
        use burn::nn::conv::Conv2dConfig;
        let device = Device::flex();
        let conv = Conv2dConfig::new([4, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_groups(4)
            .init(&device);
        let x =
            crate::test_random::seeded::<4>([2, 4, 5, 6], Distribution::Normal(0.0, 1.0), &device);
        let s = DepthwiseShape {
            batch: 2,
            channels: 4,
            height: 5,
            width: 6,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [[1, 1], [1, 1]],
        };
        let v = |t: Tensor<4>| {
            t.flatten::<1>(0, 3)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let mut want = vec![0f32; 2 * 4 * 5 * 6];
        depthwise_kernels::forward(
            &s,
            &v(x.clone()),
            &v(conv.weight.val()),
            &conv
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
            &mut want,
        );
        assert_eq!(v(conv2d(&conv, x)), want);
    }
}
