//! Weight initialisation from our own seeded generator. Burn's backends draw from one
//! process-wide generator (and initialise lazily), so any other draw in the process would
//! change a model seeded through them; this keeps "same seed, same model" unconditional.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// A tensor of `shape` with values uniform in [-bound, bound].
pub fn uniform<const D: usize>(
    rng: &mut StdRng,
    shape: [usize; D],
    bound: f64,
    device: &Device,
) -> Tensor<D> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-bound..=bound) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A tensor of `shape` with values from N(0, std^2).
pub fn normal<const D: usize>(
    rng: &mut StdRng,
    shape: [usize; D],
    std: f64,
    device: &Device,
) -> Tensor<D> {
    let n = shape.iter().product();
    let dist = Normal::new(0.0, std).expect("std is a finite positive constant");
    let values: Vec<f32> = (0..n).map(|_| dist.sample(rng) as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A Linear layer (weights [d_in, d_out]) initialised as Burn's and PyTorch's default:
/// weights and bias uniform in +-1/sqrt(d_in).
pub fn linear(rng: &mut StdRng, d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    Linear {
        weight: Param::from_tensor(uniform(rng, [d_in, d_out], bound, device)),
        bias: bias.then(|| Param::from_tensor(uniform(rng, [d_out], bound, device))),
    }
}

/// How a convolution's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvInit {
    /// PyTorch's default: weights and bias uniform in +-1/sqrt(fan_in).
    PyTorch,
    /// He (Kaiming) uniform for a convolution followed by a ReLU: weights in
    /// +-sqrt(6/fan_in), bias zero. Without normalization layers, PyTorch's default shrinks the
    /// signal by about sqrt(6) per conv+ReLU, so a deep path starts almost dead.
    He,
    /// All zero: the last convolution of a residual branch, so that the block starts as the
    /// identity (Goyal et al. 2017; Fixup) and stacked residual blocks do not blow the signal up.
    Zero,
}

/// A `k x k` convolution (padding `pad`, `groups` groups) initialised as `how` says.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    rng: &mut StdRng,
    how: ConvInit,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let fan_in = (cin / groups * k * k) as f64;
    let (w_bound, b_bound) = match how {
        ConvInit::PyTorch => (1.0 / fan_in.sqrt(), 1.0 / fan_in.sqrt()),
        ConvInit::He => ((6.0 / fan_in).sqrt(), 0.0),
        ConvInit::Zero => (0.0, 0.0),
    };
    let shape = [cout, cin / groups, k, k];
    Conv2d {
        weight: Param::from_tensor(uniform(rng, shape, w_bound, device)),
        bias: Some(Param::from_tensor(uniform(rng, [cout], b_bound, device))),
        stride: [stride, stride],
        kernel_size: [k, k],
        dilation: [1, 1],
        groups,
        padding: PaddingConfig2d::Explicit(pad, pad, pad, pad),
    }
}
