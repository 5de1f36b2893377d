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

/// A `k x k` convolution (padding `pad`, `groups` groups) initialised as PyTorch's default:
/// weights and bias uniform in +-1/sqrt(fan_in).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    rng: &mut StdRng,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let fan_in = cin / groups * k * k;
    let bound = 1.0 / (fan_in as f64).sqrt();
    Conv2d {
        weight: Param::from_tensor(uniform(rng, [cout, cin / groups, k, k], bound, device)),
        bias: Some(Param::from_tensor(uniform(rng, [cout], bound, device))),
        stride: [stride, stride],
        kernel_size: [k, k],
        dilation: [1, 1],
        groups,
        padding: PaddingConfig2d::Explicit(pad, pad, pad, pad),
    }
}
