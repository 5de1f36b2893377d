//! The integer graph's i-GELU (I-BERT's second-order erf polynomial, `quant::Int8Gelu`) on
//! tensors, so that QAT's forward trains against what a graph lowered with `--gelu ibert`
//! computes instead of the exact GELU (24 % of the kernel's codes differ from the exact
//! table's on KWT-1, `quant/examples/kernel_fidelity.rs`). An int8 GELU input has 256
//! possible codes: the kernel's integer result for each, times its real scale, is a table
//! the forward looks codes up in; the GELU point then rounds it at the output scale as the
//! kernel's requantization does. The constants are chosen as `quant::Int8Gelu::new` chooses
//! them (this crate cannot depend on `quant`; its tests check the two agree code for code).

use burn::tensor::{Int, Tensor, TensorData};

/// I-BERT's i-erf coefficients `a`, `b` (`quant::ibert::ERF_A`, `ERF_B`).
pub const ERF_A: f64 = -0.2888;
pub const ERF_B: f64 = -1.769;

const I32_MAX: i64 = i32::MAX as i64;

/// The kernel's constants for int8 inputs at one power-of-two scale (`quant::Int8Gelu`'s
/// `j` and `quant::IGelu`'s fields).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntGeluConstants {
    /// Left shift of the int8 input into the internal scale `S_in 2^-j`.
    pub j: u32,
    pub q_clip: i64,
    pub q_b: i64,
    pub q_c: i64,
    pub q_one: i64,
    /// Right shift of `1 + erf` before the final product.
    pub shift: u32,
    /// Inputs are clamped to `[-q_max, q_max]` (`128 << j`).
    pub q_max: i64,
    /// Real value of one unit of the kernel's integer result.
    pub output_scale: f64,
}

impl IntGeluConstants {
    /// The constants for inputs at scale `2^exp`, as `quant::Int8Gelu::new` computes them;
    /// `None` where the kernel's int32 bounds fail (the graph cannot be lowered either).
    pub fn new(exp: i32) -> Option<Self> {
        // the first internal scale `S_in 2^-j <= 2^-10`
        let j = (exp + 10).clamp(0, 20) as u32;
        let s = 2f64.powi(exp - j as i32);
        let s1 = s / std::f64::consts::SQRT_2;
        let se = -ERF_A * s1 * s1;
        let q_c = (-1.0 / se).floor();
        if q_c < -(I32_MAX as f64) / 2.0 {
            return None;
        }
        let mut c = Self {
            j,
            q_clip: (-ERF_B / s1).floor() as i32 as i64,
            q_b: (ERF_B / s1).floor() as i32 as i64,
            q_c: q_c as i64,
            q_one: (1.0 / se).floor() as i32 as i64,
            shift: 0,
            q_max: 128 << j,
            output_scale: 0.0,
        };
        while c.shift < 31 && c.q_max * c.h_max() > I32_MAX {
            c.shift += 1;
        }
        let valid = c.q_clip >= 0
            && c.q_b <= 0
            && c.q_c <= 0
            && c.q_one >= 0
            && c.p_abs_max() + c.q_one <= I32_MAX
            && c.q_max * c.h_max() <= I32_MAX;
        c.output_scale = s * se * 2f64.powi(c.shift as i32) / 2.0;
        valid.then_some(c)
    }

    fn p_abs_max(&self) -> i64 {
        let hi = self.q_clip + self.q_b;
        (self.q_b * self.q_b).max(hi * hi) + self.q_c.abs()
    }

    fn h_max(&self) -> i64 {
        (self.p_abs_max() + self.q_one) >> self.shift
    }

    /// The kernel's integer i-GELU of the int8 code `q`, before requantization.
    pub fn eval(&self, q: i8) -> i64 {
        let q = ((q as i64) << self.j).clamp(-self.q_max, self.q_max);
        let t = q.abs().min(self.q_clip) + self.q_b;
        let p = t * t + self.q_c;
        let e = -q.signum() * p;
        q * ((e + self.q_one) >> self.shift)
    }

    /// The real value of the kernel's result for each code `-128..=127`, indexed by `q + 128`.
    pub fn table(&self) -> Vec<f32> {
        (-128..=127i8)
            .map(|q| (self.eval(q) as f64 * self.output_scale) as f32)
            .collect()
    }
}

/// The kernel's GELU of `x`, which must lie on the int8 grid of `2^exp` (a fake-quantized
/// tensor), in real units before the output's rounding. `None` where the kernel has no
/// constants for the scale. No gradient: the caller passes one straight through.
pub fn int_gelu<const D: usize>(x: Tensor<D>, exp: i32) -> Option<Tensor<D>> {
    let c = IntGeluConstants::new(exp)?;
    let device = x.device();
    let dims = x.dims();
    let table = c.table();
    // on flex a loop over the values is about three times faster than the tensor operations
    // below (2 against 7 ms for a [32, 99, 256] tensor, with the GELU the caller adds)
    if device.clone().inner() == burn::tensor::Device::flex()
        && let Ok(values) = x.clone().detach().into_data().try_into_vec::<f32>()
    {
        let inv = 2f32.powi(-exp);
        let looked_up: Vec<f32> = values
            .iter()
            // codes lie on the grid: + 128.5 and truncation round them (`as` saturates at 0)
            .map(|&v| table[((v * inv + 128.5) as usize).min(255)])
            .collect();
        return Some(Tensor::from_data(TensorData::new(looked_up, dims), &device));
    }
    let n: usize = dims.iter().product();
    let table = Tensor::<1>::from_data(TensorData::new(table, [256]), &device);
    let index: Tensor<1, Int> = x
        .detach()
        .div_scalar(2f32.powi(exp))
        .round()
        .clamp(-128.0, 127.0)
        .add_scalar(128.0)
        .int()
        .reshape([n]);
    Some(table.select(0, index).reshape(dims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn gelu(x: f64) -> f64 {
        if x.abs() > 5.0 {
            // within 1e-6 of relu there
            return x.max(0.0);
        }
        // erf by its Taylor series, accurate to 1e-12 for |z| < 3.6
        let z = x / std::f64::consts::SQRT_2;
        let mut term = z;
        let mut sum = z;
        for n in 1..80 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        0.5 * x * (1.0 + sum * 2.0 / std::f64::consts::PI.sqrt())
    }

    #[test]
    #[allow(deprecated)] // ndarray is deprecated in Burn 0.22 but still a `--backend` choice
    fn the_table_approximates_gelu_and_the_tensor_looks_codes_up() {
        for exp in [-7, -5, -3] {
            let c = IntGeluConstants::new(exp).unwrap();
            let table = c.table();
            for (i, &v) in table.iter().enumerate() {
                let x = (i as f64 - 128.0) * 2f64.powi(exp);
                // I-BERT's i-GELU is within 0.02 of GELU (as `quant::ibert`'s tests find)
                assert!((v as f64 - gelu(x)).abs() < 0.02, "exp {exp} x {x}: {v}");
            }
            // flex's loop and the tensor operations of other backends
            for device in [Device::flex(), Device::ndarray()] {
                let codes: Vec<f32> = (-128..128).map(|q| q as f32 * 2f32.powi(exp)).collect();
                let x = Tensor::<2>::from_data(TensorData::new(codes, [16, 16]), &device);
                let out = int_gelu(x, exp).unwrap().into_data();
                assert_eq!(out.try_to_vec::<f32>().unwrap(), table, "{device:?}");
            }
        }
    }

    #[test]
    fn qat_gelu_has_the_kernels_values_and_the_exact_gelus_gradient() {
        use crate::qat::gelu_q;
        let device = Device::flex().autodiff();
        let exp = -4;
        let codes: Vec<f32> = (-128..128).map(|q| q as f32 * 2f32.powi(exp)).collect();
        let input = || {
            Tensor::<1>::from_data(TensorData::new(codes.clone(), [256]), &device).require_grad()
        };
        let (x, reference) = (input(), input());
        let y = gelu_q(x.clone(), Some(exp));
        let values: Vec<f32> = y.clone().into_data().try_to_vec().unwrap();
        assert_eq!(values, IntGeluConstants::new(exp).unwrap().table());
        let grad = |t: &Tensor<1>, y: Tensor<1>| -> Vec<f32> {
            t.grad(&y.sum().backward())
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        let want = grad(&reference, crate::fused_ops::gelu(reference.clone()));
        assert_eq!(grad(&x, y), want);
    }
}
