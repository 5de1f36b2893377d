//! TQT fake quantization (Jain et al. 2020, "Trained quantization thresholds for accurate and
//! efficient fixed-point inference of deep neural networks").
//!
//! A quantization point holds one learned log2 threshold `l`. The forward pass is
//! `q(x) = clamp(round(x / s), qmin, qmax) * s` with the power-of-two scale
//! `s = 2^ceil(l) / 2^(bits - 1)`: the integer graph then needs only shifts between tensors.
//! `round` is half up, as in the integer graph's requantization. The gradients are TQT's
//! straight-through estimates (round and ceil pass gradients through):
//!
//! * `dq/dx = 1` where `qmin <= x / s <= qmax`, else `0`;
//! * `dq/dl = s ln 2 * (round(x / s) - x / s)` inside the range, `s ln 2 * qmin` below it and
//!   `s ln 2 * qmax` above it.
//!
//! On flex one fused operation computes both ([`crate::fused_ops::fake_quant`]); elsewhere they
//! come out of plain Burn ops: `ceil` and `round` are replaced by `v + (f(v) - v).detach()`
//! (value `f(v)`, gradient of `v`), and `clamp` passes gradients only inside its range.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

/// Fake-quantizes `x` with the per-tensor log2 threshold `log2_t` (shape `[1]`).
pub fn fake_quant<const D: usize>(
    x: Tensor<D>,
    log2_t: Tensor<1>,
    bits: u32,
    qmin: f32,
    qmax: f32,
) -> Tensor<D> {
    // On flex one fused pass each way (the composite below is about ten element-wise passes
    // forward and as many back).
    if let Some(y) = crate::fused_ops::fake_quant(x.clone(), log2_t.clone(), bits, qmin, qmax) {
        return y;
    }
    let ceiled = straight_through(log2_t, |l| l.ceil());
    // s = 2^(ceil(l) - (bits - 1)); `powf` of an integer exponent is an exact power of two
    // and its gradient wrt the exponent is s ln 2.
    let s: Tensor<D> = ceiled
        .full_like(2.0)
        .powf(ceiled.sub_scalar(f64::from(bits - 1)))
        .unsqueeze::<D>();
    let clamped = (x / s.clone()).clamp(qmin, qmax);
    // Half up, as the integer graph's requantization `(acc m + 2^(s-1)) >> s` rounds: with
    // power-of-two scales ties are common (a sum of tensors one octave apart is a tie whenever
    // the finer one is odd), and Burn's `round` (half to even) would differ on half of them.
    straight_through(clamped, crate::fused_ops::round_half_up) * s
}

/// `f(v)` in the forward pass, the identity's gradient in the backward pass.
pub(crate) fn straight_through<const D: usize>(
    v: Tensor<D>,
    f: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    v.clone() + (f(v.clone()) - v).detach()
}

/// One quantization point: a learned log2 threshold and the integer range it maps onto.
///
/// The parameter is stored divided by `lr_gain`: Adam's steps are about the learning rate
/// whatever the gradient's size, so the threshold moves `lr_gain` times faster than the
/// weights. TQT trains thresholds at a far larger learning rate than weights; this gives them
/// their own rate inside the trainer's single optimizer.
#[derive(Module, Debug)]
pub struct FakeQuant {
    /// `log2` of the clipping threshold divided by `lr_gain` (shape `[1]`).
    pub scaled_log2_t: Param<Tensor<1>>,
    /// Learning-rate multiplier of the threshold.
    pub lr_gain: f32,
    /// Bit width.
    pub bits: u32,
    /// Smallest integer.
    pub qmin: f32,
    /// Largest integer.
    pub qmax: f32,
}

impl FakeQuant {
    /// An int8 activation point, `[-128, 127]`.
    pub fn activation(log2_t: f32, lr_gain: f32, device: &Device) -> Self {
        Self::new(log2_t, lr_gain, 8, -128.0, 127.0, device)
    }

    /// An int8 weight point, `[-127, 127]`: the integer graph stores symmetric weights.
    pub fn weight(log2_t: f32, lr_gain: f32, device: &Device) -> Self {
        Self::new(log2_t, lr_gain, 8, -127.0, 127.0, device)
    }

    fn new(log2_t: f32, lr_gain: f32, bits: u32, qmin: f32, qmax: f32, device: &Device) -> Self {
        let mut q = Self {
            scaled_log2_t: Param::from_tensor(Tensor::zeros([1], device)),
            lr_gain,
            bits,
            qmin,
            qmax,
        };
        q.set_log2_threshold(log2_t);
        q
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let log2_t = self.scaled_log2_t.val().mul_scalar(self.lr_gain);
        fake_quant(x, log2_t, self.bits, self.qmin, self.qmax)
    }

    /// The current log2 threshold.
    pub fn log2_threshold(&self) -> f32 {
        self.scaled_log2_t.val().into_scalar::<f32>() * self.lr_gain
    }

    /// Replaces the threshold (a fresh parameter on the same device).
    pub fn set_log2_threshold(&mut self, log2_t: f32) {
        let device = self.scaled_log2_t.val().device();
        let v = log2_t / self.lr_gain;
        self.scaled_log2_t =
            Param::from_tensor(Tensor::from_data(TensorData::new(vec![v], [1]), &device));
    }

    /// `k` of the power-of-two scale `2^k` the threshold implies: `ceil(l) - (bits - 1)`.
    pub fn scale_exp(&self) -> i32 {
        step_exponent(self.log2_threshold(), self.bits)
    }
}

/// `k` of the step `2^k` of a `bits`-bit point with log2 threshold `log2_t`:
/// `ceil(log2_t) - (bits - 1)`.
pub(crate) fn step_exponent(log2_t: f32, bits: u32) -> i32 {
    log2_t.ceil() as i32 - (bits as i32 - 1)
}

/// Fake-quantizes a Linear weight `[in, out]` with one scale `max|w| / 127` per output
/// column: the per-channel weight scales of PTQ (`quant::ptq::kwt_graph::quantize_weight`),
/// which the integer graph applies through each channel's dyadic requantization. The scale
/// follows the weight instead of being learned, so the straight-through rounding is the only
/// gradient path (nothing is clipped: the largest weight maps to 127).
pub fn fake_quant_per_channel(w: Tensor<2>) -> Tensor<2> {
    per_channel_with_step(w).0
}

/// [`fake_quant_per_channel`] and the step of each output column (`[1, out]`).
pub(crate) fn per_channel_with_step(w: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let absmax = w.clone().abs().max_dim(0).detach();
    round_at_abs_max(w, absmax)
}

/// `t` rounded onto `[-127, 127]` steps of `absmax / 127` (`absmax` broadcasts against `t`),
/// straight-through; and that step.
fn round_at_abs_max<const D: usize>(t: Tensor<D>, absmax: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let (codes, s) = codes_at_abs_max(t, absmax);
    (codes * s.clone(), s)
}

/// The int8 codes of [`round_at_abs_max`] (straight-through, gradient `1 / step`) and the step.
fn codes_at_abs_max<const D: usize>(t: Tensor<D>, absmax: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    // An all-zero part quantizes to zeros at any scale; 1 avoids dividing by zero.
    let s = absmax
        .clone()
        .div_scalar(127.0)
        .mask_fill(absmax.equal_elem(0.0), 1.0);
    let u = (t / s.clone()).clamp(-127.0, 127.0);
    (straight_through(u, round_half_away), s)
}

/// `sign(v) floor(|v| + 1/2)`: rounding half away from zero, as the integer kernels'
/// divisions and the offline rounding of constants (`quant::rounding`) do; Burn's `round`
/// rounds half to even. No gradient (rounding has none; callers pass one straight through).
pub fn round_half_away<const D: usize>(v: Tensor<D>) -> Tensor<D> {
    let v = v.detach();
    v.clone().sign() * crate::fused_ops::round_half_up(v.abs())
}

/// Fake-quantizes a whole tensor at one scale `max|t| / 127`, as the integer graph stores the
/// position embedding and the LayerNorm gains (`quant::ptq::kwt_graph`, `quant::IntLayerNorm`);
/// like [`fake_quant_per_channel`] the scale follows the values and nothing clips.
pub fn fake_quant_abs_max<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    let (codes, step) = abs_max_codes(t);
    codes * step
}

/// The int8 codes of [`fake_quant_abs_max`] (integers, straight-through) and their step (a
/// single value, as a tensor of `D` axes).
pub(crate) fn abs_max_codes<const D: usize>(t: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let absmax = t.clone().abs().max().detach().unsqueeze::<D>();
    codes_at_abs_max(t, absmax)
}

/// Fake quantization at a fixed power-of-two scale `2^exp` onto the unsigned codes
/// `0..2^bits` (softmax probabilities, whose integer scale is set by the kernel, not learned).
pub fn fake_quant_fixed_unsigned<const D: usize>(x: Tensor<D>, exp: i32, bits: u32) -> Tensor<D> {
    let device = x.device();
    // fake_quant's step is 2^(ceil(l) - (bits - 1)): l = exp + bits - 1 makes it 2^exp
    let l = exp + bits as i32 - 1;
    let log2_t = Tensor::<1>::from_data(TensorData::new(vec![l as f32], [1]), &device);
    fake_quant(x, log2_t, bits, 0.0, 2f32.powi(bits as i32) - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LN_2: f64 = std::f64::consts::LN_2;

    fn tensor(v: &[f32], device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    #[test]
    fn forward_rounds_to_the_power_of_two_grid_and_clips() {
        let device = Device::flex();
        // l = 2.3 -> ceil 3 -> s = 8 / 128 = 1/16; range [-8, 127/16].
        let x = tensor(
            &[0.0, 0.03, 0.04, -0.3, 7.0, 9.0, -9.0, 1.0 / 32.0 + 1e-4],
            &device,
        );
        let y = values(fake_quant(x, tensor(&[2.3], &device), 8, -128.0, 127.0));
        let s = 1.0 / 16.0;
        let want = [0.0, 0.0, s, -5.0 * s, 7.0, 127.0 * s, -8.0, s];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?} vs {want:?}");
        }
        let fq = FakeQuant::activation(2.3, 10.0, &device);
        assert!((fq.log2_threshold() - 2.3).abs() < 1e-6);
        assert_eq!(fq.scale_exp(), -4);
        // the softmax output's uint8 codes at 2^-8: 1.0 saturates at 255/256, 0.0039 (~1/256)
        // rounds to one code, 0.0019 (< 1/2 code) to 0
        let fixed = values(fake_quant_fixed_unsigned(
            tensor(&[0.5, 1.0, 0.0039, 0.0019], &device),
            -8,
            8,
        ));
        assert_eq!(fixed, vec![0.5, 255.0 / 256.0, 1.0 / 256.0, 0.0]);
        // ties round half up, as `(acc m + 2^(s-1)) >> s` does (Burn's round is half to even)
        let ties = values(fake_quant(
            tensor(
                &[0.5 * s, 1.5 * s, 2.5 * s, -0.5 * s, -1.5 * s, -2.5 * s],
                &device,
            ),
            tensor(&[2.3], &device),
            8,
            -128.0,
            127.0,
        ));
        let want = [1.0, 2.0, 3.0, 0.0, -1.0, -2.0].map(|k: f32| k * s);
        assert_eq!(ties, want);
    }

    #[test]
    fn per_channel_weights_round_each_column_at_its_own_abs_max() {
        let device = Device::flex().autodiff();
        // [in = 3, out = 3]: columns with max |w| 1.27, 0.254 and 0.
        let w = [1.27f32, 0.2, 0.0, -0.5, -0.254, 0.0, 0.011, 0.1, 0.0];
        let t = Tensor::<1>::from_data(TensorData::new(w.to_vec(), [9]), &device)
            .reshape([3, 3])
            .require_grad();
        let y = fake_quant_per_channel(t.clone());
        let got = values(y.clone());
        let scales = [0.01f32, 0.002, 1.0];
        for (i, (&v, &g)) in w.iter().zip(&got).enumerate() {
            let s = scales[i % 3];
            let want = (v / s).round() * s;
            assert!((g - want).abs() < 1e-6, "w[{i}] = {v}: {g} vs {want}");
        }
        let g = values(t.grad(&y.sum().backward()).unwrap());
        assert!(g.iter().all(|&v| v == 1.0), "straight-through: {g:?}");
    }

    #[test]
    fn a_constant_rounds_at_one_abs_max_scale_as_the_graph_stores_it() {
        let device = Device::flex().autodiff();
        let e = [0.5f32, -1.27, 0.013, 0.0, 0.3, -0.006];
        let t = Tensor::<1>::from_data(TensorData::new(e.to_vec(), [6]), &device)
            .reshape([1, 2, 3])
            .require_grad();
        let y = fake_quant_abs_max(t.clone());
        // scale 1.27 / 127 = 0.01, as the graph stores it (`quant::rounding::to_int8`)
        for (&v, g) in e.iter().zip(values(y.clone())) {
            let want = (v as f64 / 0.01).round() * 0.01;
            assert!((g as f64 - want).abs() < 1e-6, "{v}: {g} vs {want}");
        }
        let g = values(t.grad(&y.sum().backward()).unwrap());
        assert!(g.iter().all(|&v| v == 1.0), "straight-through: {g:?}");
        let zeros = Tensor::<1>::zeros([4], &device);
        assert_eq!(values(fake_quant_abs_max(zeros)), vec![0.0; 4]);
    }

    #[test]
    fn gradients_match_the_tqt_formulas() {
        let device = Device::flex().autodiff();
        let l = 1.4f32; // ceil 2: s = 4 / 128 = 1/32, range [-4, 127/32 = 3.97]
        let s = 1.0f64 / 32.0;
        let xs = [0.01f32, -0.7, 0.049, 3.5, 5.0, -6.0, 2.0];
        let x = tensor(&xs, &device).require_grad();
        let log2_t = tensor(&[l], &device).require_grad();
        // Weight each output so that the check sees per-element gradients.
        let w: Vec<f32> = (1..=xs.len()).map(|i| i as f32).collect();
        let y = fake_quant(x.clone(), log2_t.clone(), 8, -128.0, 127.0);
        let grads = (y * tensor(&w, &device)).sum().backward();
        let gx = values(x.grad(&grads).unwrap());
        let gl = values(log2_t.grad(&grads).unwrap())[0] as f64;
        let mut want_gl = 0f64;
        for (i, &v) in xs.iter().enumerate() {
            let u = v as f64 / s;
            let (dx, dl) = if u < -128.0 {
                (0.0, -128.0)
            } else if u > 127.0 {
                (0.0, 127.0)
            } else {
                (1.0, u.round() - u)
            };
            assert_eq!(gx[i], dx as f32 * w[i], "d/dx at {v}");
            want_gl += w[i] as f64 * dl * s * LN_2;
        }
        assert!(
            (gl - want_gl).abs() < 1e-4 * want_gl.abs().max(1.0),
            "d/dlog2_t {gl} vs TQT {want_gl}"
        );
    }

    /// Flex's fused operation against the Burn composite (which ndarray runs): the same values
    /// and input gradient bit for bit, the threshold gradient to f32 summation order; on ties
    /// both ways, the range's edges and past them, and in the forward pass of an untracked input.
    #[test]
    #[allow(deprecated)] // ndarray runs the composite: the reference here
    fn the_fused_flex_path_equals_the_composite() {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let l = 2.3f32; // step 1/16, range [-8, 127/16]
        let step = 1.0f32 / 16.0;
        let normal = rand_distr::Normal::new(0.0f32, 4.0).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut xs: Vec<f32> = (0..4000).map(|_| normal.sample(&mut rng)).collect();
        for k in -130..130 {
            xs.push((k as f32 + 0.5) * step);
            xs.push(k as f32 * step);
        }
        xs.extend([
            -128.0 * step,
            127.0 * step,
            -128.5 * step,
            127.5 * step,
            1e9,
            -1e9,
        ]);
        let upstream: Vec<f32> = (0..xs.len())
            .map(|i| ((i * 37) % 11) as f32 - 5.0)
            .collect();
        let run = |device: Device| {
            let x = tensor(&xs, &device).require_grad();
            let log2_t = tensor(&[l], &device).require_grad();
            let y = fake_quant(x.clone(), log2_t.clone(), 8, -128.0, 127.0);
            let grads = (y.clone() * tensor(&upstream, &device)).sum().backward();
            let gx = values(x.grad(&grads).unwrap());
            let gl = values(log2_t.grad(&grads).unwrap())[0];
            (values(y), gx, gl)
        };
        let (y, gx, gl) = run(Device::flex().autodiff());
        let (want_y, want_gx, want_gl) = run(Device::ndarray().autodiff());
        assert_eq!(y, want_y);
        assert_eq!(gx, want_gx);
        // The threshold gradient sums terms of both signs (qmin/qmax past the range, round(u) - u
        // inside) that cancel to a small fraction of their magnitude, so two f32 summation
        // orders agree to a fraction of that magnitude, not of the sum.
        let magnitude: f64 = xs
            .iter()
            .zip(&upstream)
            .map(|(&v, &w)| {
                let u = v as f64 / step as f64;
                let dl = if u < -128.0 {
                    -128.0
                } else if u > 127.0 {
                    127.0
                } else {
                    u.round() - u
                };
                (w as f64 * dl * step as f64 * LN_2).abs()
            })
            .sum();
        assert!(
            ((gl - want_gl) as f64).abs() <= 1e-6 * magnitude,
            "d/dlog2_t {gl} vs composite {want_gl} (terms of magnitude {magnitude})"
        );
        let untracked = fake_quant(
            tensor(&xs, &Device::flex()),
            tensor(&[l], &Device::flex()),
            8,
            -128.0,
            127.0,
        );
        assert_eq!(values(untracked), want_y);
    }

    #[test]
    fn threshold_gradient_matches_finite_differences_of_the_clipping_part() {
        // With every value clipped, q = qmax s(l) exactly, so the STE gradient equals the true
        // derivative of the smooth surrogate 2^l qmax / 2^(bits-1).
        let device = Device::flex().autodiff();
        let l = 0.5f32;
        let log2_t = tensor(&[l], &device).require_grad();
        let y = fake_quant(tensor(&[100.0], &device), log2_t.clone(), 8, -128.0, 127.0);
        let g = values(log2_t.grad(&y.sum().backward()).unwrap())[0] as f64;
        let s = 2f64.powf(1.0) / 128.0; // ceil(0.5) = 1
        assert!((g - 127.0 * s * LN_2).abs() < 1e-5, "{g}");
    }
}
