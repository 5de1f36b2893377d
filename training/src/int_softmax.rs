//! The integer graph's softmax (I-BERT's i-exp and an integer division, `quant::ISoftmax`)
//! computed on tensors, so that QAT's forward trains against the probabilities the kernel
//! writes instead of the float softmax's rounded to its output grid (they differ in about
//! 0.45 % of the codes on KWT-1, `quant/examples/kernel_fidelity.rs`). The arithmetic is the
//! kernel's, on integer tensors, so it is exact; `quant`'s tests compare it with the kernel
//! code for code. The constants are chosen as `quant::ISoftmax::new` chooses them (this crate
//! cannot depend on `quant`; the tests check the two agree).

use burn::tensor::{Int, Tensor};

/// I-BERT's i-exp polynomial `a (x + b)^2 + c` (`quant::ibert::EXP_A`, `EXP_B`, `EXP_C`).
pub const EXP_A: f64 = 0.3585;
pub const EXP_B: f64 = 1.353;
pub const EXP_C: f64 = 0.344;
/// Largest i-exp output the kernel accepts (`quant::ibert::SOFTMAX_MAX_EXP_OUT`).
pub const SOFTMAX_MAX_EXP_OUT: i64 = 1 << 22;
/// Exponent of the output scale (`quant::ibert::SOFTMAX_OUT_EXP`): unsigned 8-bit codes.
pub const SOFTMAX_OUT_EXP: i32 = -8;

const I32_MAX: i64 = i32::MAX as i64;

/// The kernel's constants for rows of one length at one input scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntSoftmaxConstants {
    /// Input shift into the internal scale `S_in 2^-j`.
    pub j: i32,
    /// `floor(ln2 / S)`, `floor(1.353 / S)`, `floor(0.344 / (0.3585 S^2))` at the internal `S`.
    pub q_ln2: i64,
    pub q_b: i64,
    pub q_c: i64,
}

impl IntSoftmaxConstants {
    /// The finest internal scale meeting the kernel's int32 bounds for rows of `len` scores
    /// at scale `2^exp`, as `quant::ISoftmax::new` picks it; `None` where there is none (the
    /// graph cannot be lowered either).
    pub fn new(len: usize, exp: i32) -> Option<Self> {
        let in_scale = 2f64.powi(exp);
        (-8..=23).rev().find_map(|j| {
            let s = in_scale * 2f64.powi(-j);
            let q_ln2 = (std::f64::consts::LN_2 / s).floor();
            let q_b = (EXP_B / s).floor();
            let q_c = (EXP_C / (EXP_A * s * s)).floor();
            if !(s.is_finite() && s > 0.0) || q_b > I32_MAX as f64 || q_c > I32_MAX as f64 {
                return None;
            }
            // `quant::IExp` stores the three as i32 (q_ln2 saturating)
            let (q_ln2, q_b, q_c) = ((q_ln2 as i32) as i64, q_b as i64, q_c as i64);
            let e_max = q_b * q_b + q_c;
            let valid = q_ln2 >= 1
                && q_b >= q_ln2 - 1
                && q_c >= 0
                && e_max <= I32_MAX
                && len > 0
                && (1..=SOFTMAX_MAX_EXP_OUT).contains(&e_max)
                && e_max * len as i64 <= I32_MAX;
            valid.then_some(Self { j, q_ln2, q_b, q_c })
        })
    }
}

/// The kernel's softmax over the last axis of `scores`, which must lie on the int8 grid of
/// `2^exp` (a fake-quantized tensor): the probabilities `p * 2^-8` for the codes `p` in
/// `0..=255` the kernel writes. `None` where no constants exist for the row length and scale.
/// No gradient: the caller passes it straight through.
pub fn int_softmax<const D: usize>(scores: Tensor<D>, exp: i32) -> Option<Tensor<D>> {
    let last = D - 1;
    let c = IntSoftmaxConstants::new(scores.dims()[last], exp)?;
    // the scores are integers at 2^exp: any rounding gives them back (this one is vectorized)
    let codes: Tensor<D, Int> =
        crate::fused_ops::round_half_up(scores.detach().div_scalar(2f32.powi(exp))).int();
    let max = codes.clone().max_dim(last);
    // d <= 0, then shifted into the internal scale; >> floors as the kernel's shift does
    let d = codes - max;
    let d = if c.j >= 0 {
        d.mul_scalar(1i64 << c.j)
    } else {
        d.bitwise_right_shift_scalar(-c.j)
    };
    // i-exp of q = -n: z = n / q_ln2, p = q + z q_ln2 = -(n mod q_ln2), (p + q_b)^2 + q_c, >> z
    let n = d.neg();
    let z = n.clone().div_scalar(c.q_ln2).clamp_max(31);
    let t = n.remainder_scalar(c.q_ln2).neg().add_scalar(c.q_b);
    let e = (t.clone() * t).add_scalar(c.q_c).bitwise_right_shift(z);
    let sum = e.clone().sum_dim(last);
    let half = sum.clone().div_scalar(2);
    let p = (e.mul_scalar(256) + half).div(sum).clamp_max(255);
    Some(p.float().mul_scalar(2f32.powi(SOFTMAX_OUT_EXP)))
}
