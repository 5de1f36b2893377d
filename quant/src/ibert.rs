//! I-BERT integer kernels (Kim et al. 2021) and TinyFormer's Scaled-LayerNorm, integer only.
//!
//! Every kernel is split into an offline part (`new`, which may use floats to turn a real
//! input scale into integer constants, and `validate`, which proves the int32 bounds for the
//! constants it is handed, e.g. from a file) and an inference part (`eval*`), which uses only
//! `i32`/`u32` arithmetic. The constants of I-BERT's polynomials:
//!
//! * i-exp: `exp(p) ~= 0.3585 (p + 1.353)^2 + 0.344` on `p in (-ln2, 0]`, `x = -z ln2 + p`,
//!   `exp(x) = exp(p) >> z`.
//! * i-erf: `erf(x) ~= sgn(x) [a (min(|x|, -b) + b)^2 + 1]`, `a = -0.2888`, `b = -1.769`;
//!   `GELU(x) = x/2 [1 + erf(x / sqrt 2)]`.
//!
//! Integer conventions used everywhere: `>>` is an arithmetic shift (floor), `/` on
//! non-negative operands is floor division, signed divisions use [`div_round`] (round half
//! away from zero), and every bound below is checked by `validate`.

use serde::{Deserialize, Serialize};

use crate::dyadic::{Dyadic, div_round};
use crate::error::{Result, params};
use crate::rounding::{abs_max_step, to_int8, to_int32};

/// I-BERT i-exp polynomial coefficient `a`.
pub const EXP_A: f64 = 0.3585;
/// I-BERT i-exp polynomial coefficient `b`.
pub const EXP_B: f64 = 1.353;
/// I-BERT i-exp polynomial coefficient `c`.
pub const EXP_C: f64 = 0.344;
/// I-BERT i-erf coefficient `a`.
pub const ERF_A: f64 = -0.2888;
/// I-BERT i-erf coefficient `b`.
pub const ERF_B: f64 = -1.769;

const I32_MAX: i64 = i32::MAX as i64;

/// I-POLY: `(q + q_b)^2 + q_c`, the integer form of `a (x + b)^2 + c` with output scale
/// `a S^2`, `q_b = floor(b / S)`, `q_c = floor(c / (a S^2))`. The caller guarantees the
/// result fits in i32 (each user below validates it).
#[inline]
pub fn i_poly(q: i32, q_b: i32, q_c: i32) -> i32 {
    let t = q + q_b;
    t * t + q_c
}

/// i-exp constants for one input scale `S`: `exp(q S) ~= eval(q) * 0.3585 S^2` for `q <= 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IExp {
    /// `floor(ln2 / S)`.
    pub q_ln2: i32,
    /// `floor(1.353 / S)`.
    pub q_b: i32,
    /// `floor(0.344 / (0.3585 S^2))`.
    pub q_c: i32,
}

impl IExp {
    /// Constants for input scale `scale` (offline). Fails when the polynomial would overflow
    /// int32 (`scale` below about `3.6e-5`) or the scale is coarser than `ln 2`.
    pub fn new(scale: f64) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(params(
                "IExp::new",
                format!("scale {scale} is not positive"),
            ));
        }
        let q_ln2 = (std::f64::consts::LN_2 / scale).floor();
        let q_b = (EXP_B / scale).floor();
        let q_c = (EXP_C / (EXP_A * scale * scale)).floor();
        if q_b > I32_MAX as f64 || q_c > I32_MAX as f64 {
            return Err(params(
                "IExp::new",
                format!("scale {scale} too fine for int32"),
            ));
        }
        let e = IExp {
            q_ln2: q_ln2 as i32,
            q_b: q_b as i32,
            q_c: q_c as i32,
        };
        e.validate("IExp::new")?;
        Ok(e)
    }

    /// Real output scale `0.3585 S^2` (offline).
    pub fn output_scale(scale: f64) -> f64 {
        EXP_A * scale * scale
    }

    /// Proves the int32 bound: `q_p + q_b` lies in `[q_b - q_ln2 + 1, q_b]`, non-negative, so
    /// the polynomial is at most `q_b^2 + q_c <= 2^31 - 1`.
    pub fn validate(&self, node: &str) -> Result<()> {
        if self.q_ln2 < 1 || self.q_b < self.q_ln2 - 1 || self.q_c < 0 {
            return Err(params(
                node,
                format!(
                    "i-exp constants {self:?}: expected q_ln2 >= 1, q_b >= q_ln2 - 1, q_c >= 0"
                ),
            ));
        }
        if self.max_output_i64() > I32_MAX {
            return Err(params(
                node,
                format!("i-exp constants {self:?}: q_b^2 + q_c overflows int32"),
            ));
        }
        Ok(())
    }

    fn max_output_i64(&self) -> i64 {
        let b = self.q_b as i64;
        b * b + self.q_c as i64
    }

    /// Largest value [`IExp::eval`] returns (`eval(0)`), at validate time.
    pub fn max_output(&self) -> i32 {
        self.max_output_i64().min(I32_MAX) as i32
    }

    /// i-exp of `q <= 0` (positive inputs are clamped to 0, `i32::MIN` to `-i32::MAX`):
    /// `z = floor(-q / q_ln2)`, `p = q + z q_ln2`, `L = (p + q_b)^2 + q_c`,
    /// result `L >> z` (0 when `z >= 31`). Pure int32; no overflow for validated constants.
    #[inline]
    pub fn eval(&self, q: i32) -> i32 {
        let q = q.clamp(-i32::MAX, 0);
        let z = (-q) / self.q_ln2;
        let p = q + z * self.q_ln2;
        let l = i_poly(p, self.q_b, self.q_c);
        if z >= 31 { 0 } else { l >> z }
    }
}

/// i-GELU constants for one input scale `S` and input bound `q_max`:
/// `GELU(q S) ~= eval(q) * output_scale`.
///
/// With `S' = S / sqrt 2` (the scale of `x / sqrt 2` for the same integer), `S_E = 0.2888 S'^2`:
/// ```text
/// q   = clamp(q, -q_max, q_max)
/// u   = min(|q|, q_clip)                 q_clip = floor(1.769 / S')
/// P   = (u + q_b)^2 + q_c                q_b = floor(-1.769 / S'), q_c = floor(-1 / S_E)
/// E   = sgn(q) * (-P)                    erf(x / sqrt 2) ~= E * S_E
/// h   = (E + q_one) >> shift             q_one = floor(1 / S_E); 1 + erf ~= h * S_E 2^shift
/// out = q * h                            scale S * S_E * 2^shift / 2
/// ```
/// `shift` is the smallest making `q_max * max|h| <= 2^31 - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IGelu {
    /// `floor(-b / S')`.
    pub q_clip: i32,
    /// `floor(b / S')` (negative).
    pub q_b: i32,
    /// `floor(1 / (a S'^2))` (negative).
    pub q_c: i32,
    /// `floor(1 / (|a| S'^2))`.
    pub q_one: i32,
    /// Right shift applied to `1 + erf` before the final product.
    pub shift: u32,
    /// Inputs are clamped to `[-q_max, q_max]`.
    pub q_max: i32,
}

impl IGelu {
    /// Constants for input scale `scale` and input magnitude bound `q_max` (offline).
    pub fn new(scale: f64, q_max: i32) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) || q_max < 1 {
            return Err(params(
                "IGelu::new",
                format!("scale {scale}, q_max {q_max}: expected positive values"),
            ));
        }
        let s1 = scale / std::f64::consts::SQRT_2;
        let se = -ERF_A * s1 * s1;
        let q_c = (-1.0 / se).floor();
        if q_c < -(I32_MAX as f64) / 2.0 {
            return Err(params(
                "IGelu::new",
                format!("scale {scale} too fine for int32"),
            ));
        }
        let mut g = IGelu {
            q_clip: (-ERF_B / s1).floor() as i32,
            q_b: (ERF_B / s1).floor() as i32,
            q_c: q_c as i32,
            q_one: (1.0 / se).floor() as i32,
            shift: 0,
            q_max,
        };
        while g.shift < 31 && (q_max as i64) * g.h_max() > I32_MAX {
            g.shift += 1;
        }
        g.validate("IGelu::new")?;
        Ok(g)
    }

    /// Real output scale `S * S_E * 2^shift / 2` (offline).
    pub fn output_scale(&self, scale: f64) -> f64 {
        let s1 = scale / std::f64::consts::SQRT_2;
        scale * (-ERF_A * s1 * s1) * 2f64.powi(self.shift as i32) / 2.0
    }

    fn p_abs_max(&self) -> i64 {
        let b = self.q_b as i64;
        let t_hi = self.q_clip as i64 + b;
        (b * b).max(t_hi * t_hi) + (self.q_c as i64).abs()
    }

    fn h_max(&self) -> i64 {
        (self.p_abs_max() + self.q_one as i64) >> self.shift
    }

    /// Proves every int32 bound listed in the type's docs for these constants.
    pub fn validate(&self, node: &str) -> Result<()> {
        if self.q_clip < 0
            || self.q_b > 0
            || self.q_c > 0
            || self.q_one < 0
            || self.q_max < 1
            || self.shift > 31
        {
            return Err(params(
                node,
                format!("i-GELU constants {self:?} have wrong signs"),
            ));
        }
        let p = self.p_abs_max();
        if p + self.q_one as i64 > I32_MAX {
            return Err(params(
                node,
                format!("i-GELU constants {self:?}: erf overflows"),
            ));
        }
        if self.q_max as i64 * self.h_max() > I32_MAX {
            return Err(params(
                node,
                format!("i-GELU constants {self:?}: product overflows"),
            ));
        }
        Ok(())
    }

    /// Integer i-GELU (see the type's docs). Pure int32.
    #[inline]
    pub fn eval(&self, q: i32) -> i32 {
        let q = q.clamp(-self.q_max, self.q_max);
        let u = q.abs().min(self.q_clip);
        let p = i_poly(u, self.q_b, self.q_c);
        let e = if q < 0 {
            p
        } else if q > 0 {
            -p
        } else {
            0
        };
        let h = (e + self.q_one) >> self.shift;
        q * h
    }
}

/// Exact `floor(sqrt(n))` by I-BERT's integer Newton iteration (Alg. 4):
/// `x0 = 2^ceil(bits(n)/2)`, `x_{i+1} = (x_i + n / x_i) / 2` until it stops decreasing.
/// All intermediates stay below `2^17`, so u32 arithmetic suffices.
#[inline]
pub fn isqrt_u32(n: u32) -> u32 {
    if n == 0 {
        return 0;
    }
    let bits = 32 - n.leading_zeros();
    let mut x = 1u32 << bits.div_ceil(2);
    loop {
        let y = (x + n / x) >> 1;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// Fractional bits of the mean in [`normalize_row`].
pub const NORM_MEAN_FRAC: u32 = 4;
/// I-BERT's fractional bits `G` of the normalised value (TinyFormer's Scaled-LayerNorm: 7).
pub const IBERT_NORM_FRAC: u32 = 14;
/// TinyFormer's Scaled-LayerNorm: `G` of its INT16 normalised value.
pub const SCALED_NORM_FRAC: u32 = 7;
/// Longest row [`normalize_row`] accepts.
pub const NORM_MAX_LEN: u32 = 1 << 16;

/// Integer LayerNorm normalisation constants for rows of `len` int8 values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormParams {
    /// Row length `N` (`1..=2^16`).
    pub len: u32,
    /// Even right shift applied to each square before summing (keeps the sum in u32).
    pub r: u32,
    /// `eps` in the variance's integer units: `round(eps * 2^(2F) / (S_in^2 2^r))`.
    pub eps_q: u32,
    /// Fractional bits `G` of the normalised output `n ~= x_norm * 2^G` (`G >= r/2`,
    /// `G - r/2 <= 18`).
    pub g: u32,
}

impl NormParams {
    /// Constants for rows of `len` values at input scale `scale`, variance epsilon `eps`,
    /// output fractional bits `g` (offline).
    pub fn new(len: usize, scale: f64, eps: f64, g: u32) -> Result<Self> {
        if len == 0 || len > NORM_MAX_LEN as usize {
            return Err(params(
                "NormParams::new",
                format!("row length {len} not in 1..=65536"),
            ));
        }
        if !(scale.is_finite() && scale > 0.0 && eps.is_finite() && eps >= 0.0) {
            return Err(params(
                "NormParams::new",
                format!("scale {scale} / eps {eps} invalid"),
            ));
        }
        let lg = (len as u32).next_power_of_two().trailing_zeros();
        let r = lg.saturating_sub(8).next_multiple_of(2);
        let eps_units =
            eps * 2f64.powi(2 * NORM_MEAN_FRAC as i32) / (scale * scale) * 2f64.powi(-(r as i32));
        let p = NormParams {
            len: len as u32,
            r,
            eps_q: eps_units.round().min(u32::MAX as f64) as u32,
            g,
        };
        p.validate("NormParams::new")?;
        Ok(p)
    }

    /// Checks the bounds documented in [`normalize_row`].
    pub fn validate(&self, node: &str) -> Result<()> {
        let lg = self.len.next_power_of_two().trailing_zeros();
        if self.len == 0
            || self.len > NORM_MAX_LEN
            || !self.r.is_multiple_of(2)
            || self.r + 8 < lg
            || self.r > 16
            || self.g < self.r / 2
            || self.g - self.r / 2 > 18
        {
            return Err(params(
                node,
                format!(
                    "normalisation constants {self:?}: expected 1 <= len <= 2^16, even r >= \
                     ceil(log2 len) - 8, r/2 <= g <= r/2 + 18"
                ),
            ));
        }
        Ok(())
    }
}

/// Integer normalisation of one row: `out[i] ~= (x_i - mean) / sqrt(var + eps) * 2^G`.
///
/// ```text
/// sum  = sum_i x_i                                   |sum| <= 2^7 N <= 2^23
/// mu   = div_round(sum << 4, N)                      mean with 4 fractional bits
/// c_i  = (x_i << 4) - mu                             |c_i| <= 4080 < 2^12
/// V    = sum_i ((c_i * c_i) as u32 >> r)             c_i^2 < 2^24, N 2^(24-r) <= 2^32: u32
/// std  = max(1, isqrt_u32(V / N +sat eps_q))         (+sat: saturating u32 add)
/// out_i = div_round(c_i << (G - r/2), std)           |c_i << 18| < 2^31 - 2^11
/// ```
/// `c` is scratch of the row's length. The caller passes slices of length `p.len`.
pub fn normalize_row(x: &[i8], p: &NormParams, c: &mut [i32], out: &mut [i32]) {
    let n = p.len as i32;
    let sum: i32 = x.iter().map(|&v| v as i32).sum();
    let mu = div_round(sum << NORM_MEAN_FRAC, n);
    let mut v: u32 = 0;
    for (ci, &xi) in c.iter_mut().zip(x) {
        *ci = ((xi as i32) << NORM_MEAN_FRAC) - mu;
        v += ((*ci * *ci) as u32) >> p.r;
    }
    let var = v / p.len;
    let std = isqrt_u32(var.saturating_add(p.eps_q)).max(1) as i32;
    let k = p.g - p.r / 2;
    for (o, &ci) in out.iter_mut().zip(c.iter()) {
        *o = div_round(ci << k, std);
    }
}

/// Integer LayerNorm with integer affine parameters, used for both I-BERT's i-LayerNorm and
/// TinyFormer's Scaled-LayerNorm (which differ in `eval_*`).
///
/// `gamma` has a per-tensor scale `S_g`, `beta` the scale `2^-G S_g`, and
/// `requant ~= 2^-G S_g / S_out`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntLayerNorm {
    /// Normalisation constants.
    pub norm: NormParams,
    /// Per-channel gain, int8.
    pub gamma: Vec<i8>,
    /// Per-channel offset, int32, `|beta| <= 2^30`.
    pub beta: Vec<i32>,
    /// Output requantization.
    pub requant: Dyadic,
}

/// Clamp of the normalised value in i-LayerNorm: `|n| <= 2^(G+8)` (true value is at most
/// `sqrt(N-1) * 2^G < 2^(G+8)`); with `G <= 15`, `|n * gamma| <= 2^30`.
pub const LN_MAX_G: u32 = 15;
/// Largest `|beta|`.
pub const LN_MAX_BETA: i32 = 1 << 30;

impl IntLayerNorm {
    /// Quantizes float affine parameters (offline). `g` fractional bits of the normalised
    /// value (I-BERT style: 14; TinyFormer's Scaled-LayerNorm: 7).
    pub fn from_float(
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        in_scale: f64,
        out_scale: f64,
        g: u32,
    ) -> Result<Self> {
        if gamma.len() != beta.len() {
            return Err(params(
                "IntLayerNorm::from_float",
                "gamma and beta lengths differ",
            ));
        }
        let norm = NormParams::new(gamma.len(), in_scale, eps, g)?;
        // in f32 as QAT's forward rounds them (`crate::rounding`)
        let sg = abs_max_step(gamma.iter().copied());
        let sb = sg / 2f32.powi(g as i32);
        let ln = IntLayerNorm {
            norm,
            gamma: gamma.iter().map(|&v| to_int8(v, sg)).collect(),
            beta: beta.iter().map(|&v| to_int32(v, sb, LN_MAX_BETA)).collect(),
            requant: Dyadic::from_scale(sb as f64 / out_scale)?,
        };
        ln.validate("IntLayerNorm::from_float")?;
        Ok(ln)
    }

    /// Checks lengths, `G <= 15`, `|beta| <= 2^30` and the requant parameters.
    pub fn validate(&self, node: &str) -> Result<()> {
        self.norm.validate(node)?;
        let n = self.norm.len as usize;
        if self.gamma.len() != n || self.beta.len() != n {
            return Err(params(node, format!("gamma/beta must have {n} values")));
        }
        if self.norm.g > LN_MAX_G {
            return Err(params(node, format!("G = {} > {LN_MAX_G}", self.norm.g)));
        }
        if self
            .beta
            .iter()
            .any(|b| b.unsigned_abs() > LN_MAX_BETA as u32)
        {
            return Err(params(node, "|beta| > 2^30"));
        }
        self.requant.check(node)
    }

    /// I-BERT i-LayerNorm of one row: `n = clamp(normalize_row, +-2^(G+8))`,
    /// `y = n * gamma + beta` (|y| < 2^31), `out = requantize(y)`.
    pub fn eval_row_ibert(&self, x: &[i8], out: &mut [i8], scratch: &mut [i32], nbuf: &mut [i32]) {
        normalize_row(x, &self.norm, scratch, nbuf);
        let lim = 1i32 << (self.norm.g + 8);
        for i in 0..out.len() {
            let n = nbuf[i].clamp(-lim, lim);
            out[i] = self
                .requant
                .requantize(n * self.gamma[i] as i32 + self.beta[i]);
        }
    }

    /// TinyFormer Scaled-LayerNorm (Eq. 4 with the `2^(8-1)` enlargement) of one row:
    /// `n = sat16(normalize_row)` (x_norm * 2^G stored as INT16, G = 7 in the paper),
    /// `y = sat16(n * gamma + beta)` (the INT16 affine result), `out = requantize(y)` where the
    /// `1/2^G` is folded into `requant`. `|n * gamma| <= 2^22`, `|beta| <= 2^30`: no overflow.
    pub fn eval_row_scaled(&self, x: &[i8], out: &mut [i8], scratch: &mut [i32], nbuf: &mut [i32]) {
        normalize_row(x, &self.norm, scratch, nbuf);
        for i in 0..out.len() {
            let n = nbuf[i].clamp(i16::MIN as i32, i16::MAX as i32);
            let y =
                (n * self.gamma[i] as i32 + self.beta[i]).clamp(i16::MIN as i32, i16::MAX as i32);
            out[i] = self.requant.requantize(y);
        }
    }
}

/// i-softmax over rows of int8 values. The output is a probability as uint8 at scale
/// `2^-(8 + o)` (`o` = [`Self::out_shift`]; `o = 0` is TFLite's int8 softmax convention, `[0,
/// 1]`), stored as int8 with zero point `-128`: a signed int8 at `2^-7` would spend half its codes
/// on negative values a probability never takes, and measured on KWT-1 that lost precision cost 3
/// points of accuracy (search/examples/softmax_resolution.rs). A finer step (`o > 0`, saturating
/// at `255 2^-(8 + o)`) serves long rows, whose typical probability `1/N` is below `2^-8`: PTQ
/// picks `o` per node from the calibration probabilities (`Observer::softmax_shift`).
///
/// ```text
/// m   = max_i x_i;  d_i = x_i - m                      d_i in [-255, 0]
/// d'_i = j >= 0 ? d_i << j : d_i >> -j                 internal scale S_in 2^-j
/// e_i = exp.eval(d'_i)                                 0 <= e_i <= e_max <= 2^(22 - o)
/// sum = sum_i e_i                                      N e_max <= 2^31 - 1, sum >= e_max >= 1
/// p_i = min(255, (e_i 2^(8+o) + sum / 2) / sum)        round half up; saturates at 255
/// out_i = p_i - 128                                    e_i 2^(8+o) + sum / 2 < 2^31
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ISoftmax {
    /// Row length `N`.
    pub len: u32,
    /// Input shift `j` (`-8 <= j <= 23`).
    pub j: i32,
    /// i-exp constants at scale `S_in 2^-j`.
    pub exp: IExp,
    /// Output shift `o` (`0..=`[`SOFTMAX_MAX_OUT_SHIFT`]): the output scale is `2^-(8 + o)`.
    /// Absent in graphs written before format 4: `0`.
    #[serde(default)]
    pub out_shift: u32,
}

/// Output scale exponent of [`ISoftmax`] at output shift 0: the output scale is `2^-8`.
pub const SOFTMAX_OUT_EXP: i32 = -8;
/// Largest [`ISoftmax::out_shift`]: a step of `2^-16`, saturating at `255 2^-16 ~= 0.0039`
/// (rows of tens of thousands of tokens); `e_max <= 2^14` keeps 14 bits in the exponentials.
pub const SOFTMAX_MAX_OUT_SHIFT: u32 = 8;
/// Zero point of [`ISoftmax`]'s output: the stored int8 is `p - 128` for the uint8 `p`.
pub const SOFTMAX_OUT_ZERO_POINT: i32 = -128;
/// Largest i-exp output [`ISoftmax`] accepts at output shift 0: `e * 256 + sum / 2` stays
/// below `2^31` (at shift `o`, `2^(22 - o)`).
pub const SOFTMAX_MAX_EXP_OUT: i64 = 1 << 22;

impl ISoftmax {
    /// Picks the finest internal scale meeting the bounds (offline), output at `2^-8`.
    pub fn new(len: usize, in_scale: f64) -> Result<Self> {
        Self::with_out_shift(len, in_scale, 0)
    }

    /// [`Self::new`] with the output at `2^-(8 + out_shift)`.
    pub fn with_out_shift(len: usize, in_scale: f64, out_shift: u32) -> Result<Self> {
        let mut last = None;
        for j in (-8..=23).rev() {
            let s = in_scale * 2f64.powi(-j);
            let Ok(exp) = IExp::new(s) else { continue };
            let sm = ISoftmax {
                len: len as u32,
                j,
                exp,
                out_shift,
            };
            match sm.validate("ISoftmax::new") {
                Ok(()) => return Ok(sm),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            params(
                "ISoftmax::new",
                format!("no internal scale for input scale {in_scale}"),
            )
        }))
    }

    /// Checks the bounds in the type's docs.
    pub fn validate(&self, node: &str) -> Result<()> {
        self.exp.validate(node)?;
        let emax = self.exp.max_output_i64();
        if self.len == 0 || !(-8..=23).contains(&self.j) {
            return Err(params(
                node,
                format!("softmax len {} / shift {}", self.len, self.j),
            ));
        }
        if self.out_shift > SOFTMAX_MAX_OUT_SHIFT {
            return Err(params(
                node,
                format!(
                    "softmax output shift {} > {SOFTMAX_MAX_OUT_SHIFT}",
                    self.out_shift
                ),
            ));
        }
        let max_e = SOFTMAX_MAX_EXP_OUT >> self.out_shift;
        if !(1..=max_e).contains(&emax) || emax * self.len as i64 > I32_MAX {
            return Err(params(
                node,
                format!(
                    "softmax: e_max = {emax} must be in 1..=2^{} and N * e_max = {} <= 2^31-1",
                    22 - self.out_shift,
                    emax * self.len as i64
                ),
            ));
        }
        Ok(())
    }

    /// Exponent of the output scale: `-8 - out_shift`.
    pub fn out_exp(&self) -> i32 {
        SOFTMAX_OUT_EXP - self.out_shift as i32
    }

    /// `2^(8 + o)`: the probability 1 in output units.
    fn unit(&self) -> i32 {
        256 << self.out_shift
    }

    /// `exp.eval` of every difference `d = x - max` an int8 row can hold (`d` in `[-255, 0]`,
    /// entry `-d`), shifted to the internal scale as [`Self::eval_row`] shifts it: a row then
    /// looks its exponentials up ([`Self::eval_row_with`]).
    pub fn exp_table(&self) -> [i32; 256] {
        std::array::from_fn(|k| self.exp.eval(self.shift(-(k as i32))))
    }

    fn shift(&self, d: i32) -> i32 {
        if self.j >= 0 {
            d << self.j
        } else {
            d >> -self.j
        }
    }

    /// [`Self::eval_row`] with the exponentials from [`Self::exp_table`] and the division in
    /// f64 (exact: the dividend is below `2^31`, far below `2^53`); the same codes.
    pub fn eval_row_with(&self, table: &[i32; 256], x: &[i8], out: &mut [i8], scratch: &mut [i32]) {
        let m = x.iter().copied().max().unwrap_or(0) as i32;
        for (e, &v) in scratch.iter_mut().zip(x) {
            *e = table[(m - v as i32) as usize];
        }
        let sum: i32 = scratch[..x.len()].iter().sum();
        let (half, inv, unit) = (sum / 2, f64::from(sum), self.unit());
        for (o, &e) in out.iter_mut().zip(scratch.iter()) {
            let p = (f64::from(e * unit + half) / inv) as i32;
            *o = (p.min(255) + SOFTMAX_OUT_ZERO_POINT) as i8;
        }
    }

    /// One row; `scratch` has the row's length.
    pub fn eval_row(&self, x: &[i8], out: &mut [i8], scratch: &mut [i32]) {
        let m = x.iter().copied().max().unwrap_or(0) as i32;
        let mut sum: i32 = 0;
        for (e, &v) in scratch.iter_mut().zip(x) {
            *e = self.exp.eval(self.shift(v as i32 - m));
            sum += *e;
        }
        let (half, unit) = (sum / 2, self.unit());
        for (o, &e) in out.iter_mut().zip(scratch.iter()) {
            *o = (((e * unit + half) / sum).min(255) + SOFTMAX_OUT_ZERO_POINT) as i8;
        }
    }
}

/// i-GELU on int8 tensors: `out = requantize(gelu.eval(q << j))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Int8Gelu {
    /// Left shift of the int8 input into the finer internal scale `S_in 2^-j` (`j <= 20`).
    pub j: u32,
    /// i-GELU constants at the internal scale, `q_max >= 128 << j`.
    pub gelu: IGelu,
    /// Output requantization `~= gelu.output_scale / S_out`.
    pub requant: Dyadic,
}

impl Int8Gelu {
    /// Constants for int8 input scale `in_scale` and output scale `out_scale` (offline): the
    /// internal scale is the first `S_in 2^-j <= 2^-10`.
    pub fn new(in_scale: f64, out_scale: f64) -> Result<Self> {
        if !(in_scale.is_finite() && in_scale > 0.0) {
            return Err(params("Int8Gelu::new", format!("input scale {in_scale}")));
        }
        let j = (in_scale.log2() + 10.0).ceil().clamp(0.0, 20.0) as u32;
        let s = in_scale * 2f64.powi(-(j as i32));
        let gelu = IGelu::new(s, 128 << j)?;
        let requant = Dyadic::from_scale(gelu.output_scale(s) / out_scale)?;
        let g = Int8Gelu { j, gelu, requant };
        g.validate("Int8Gelu::new")?;
        Ok(g)
    }

    /// Checks `j <= 20`, `q_max >= 128 << j` and the i-GELU bounds.
    pub fn validate(&self, node: &str) -> Result<()> {
        if self.j > 20 || (self.gelu.q_max as i64) < (128i64 << self.j) {
            return Err(params(
                node,
                format!("GELU shift {} / q_max {}", self.j, self.gelu.q_max),
            ));
        }
        self.gelu.validate(node)?;
        self.requant.check(node)
    }

    /// One element.
    #[inline]
    pub fn eval(&self, q: i8) -> i8 {
        self.requant
            .requantize(self.gelu.eval((q as i32) << self.j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::ibert_error::gelu;

    #[test]
    fn isqrt_exact() {
        for n in 0u32..100_000 {
            let r = isqrt_u32(n) as u64;
            assert!(r * r <= n as u64 && (r + 1) * (r + 1) > n as u64, "{n}");
        }
        for n in [
            u32::MAX,
            u32::MAX - 1,
            1 << 31,
            (1 << 31) - 1,
            65535 * 65535,
            65536 * 65535,
        ] {
            let r = isqrt_u32(n) as u64;
            assert!(r * r <= n as u64 && (r + 1) * (r + 1) > n as u64, "{n}");
        }
    }

    proptest! {
        #[test]
        fn isqrt_random(n in any::<u32>()) {
            let r = isqrt_u32(n) as u64;
            prop_assert!(r * r <= n as u64 && (r + 1) * (r + 1) > n as u64);
        }

        #[test]
        fn iexp_never_overflows(q in any::<i32>(), e in -14.0f64..-0.6) {
            let s = 2f64.powf(e);
            let x = IExp::new(s).unwrap();
            let v = x.eval(q);
            prop_assert!(v >= 0 && v <= x.max_output());
        }

        #[test]
        fn igelu_never_overflows(q in any::<i32>(), e in -12.0f64..0.0, qm in 1i32..=i32::MAX) {
            if let Ok(g) = IGelu::new(2f64.powf(e), qm) {
                let _ = g.eval(q);
            }
        }
    }

    #[test]
    fn iexp_rejects_too_fine_scale() {
        assert!(IExp::new(1e-6).is_err());
        assert!(IExp::new(1.0).is_err());
        assert!(IExp::new(2f64.powi(-14)).is_ok());
    }

    #[test]
    fn iexp_close_to_exp() {
        let s = 2f64.powi(-10);
        let x = IExp::new(s).unwrap();
        let so = IExp::output_scale(s);
        for q in (-20_000..=0).step_by(7) {
            let err = (x.eval(q) as f64 * so - (q as f64 * s).exp()).abs();
            assert!(err < 2.5e-3, "q {q} err {err}");
        }
    }

    #[test]
    fn igelu_close_to_gelu() {
        let s = 2f64.powi(-10);
        let g = IGelu::new(s, 8 << 10).unwrap();
        let so = g.output_scale(s);
        for q in -(8 << 10)..=(8 << 10) {
            let x = q as f64 * s;
            let err = (g.eval(q) as f64 * so - gelu(x)).abs();
            assert!(err < 0.02, "x {x} err {err}");
        }
    }

    #[test]
    fn int8_gelu_matches_float_within_approximation_error() {
        let (si, so) = (2f64.powi(-5), 2f64.powi(-5));
        let g = Int8Gelu::new(si, so).unwrap();
        for q in -128..=127i32 {
            let want = gelu(q as f64 * si) / so;
            let got = g.eval(q as i8) as f64;
            // I-BERT's approximation error (Linf 0.018) plus half an output LSB.
            let tol = 0.5 + 0.0185 / so;
            assert!(
                (got - want.clamp(-128.0, 127.0)).abs() <= tol,
                "q {q}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn softmax_row_close_to_float() {
        let s = 2f64.powi(-4);
        let x: Vec<i8> = vec![-128, -20, 0, 5, 17, 100, 127, 64, -3, 33];
        let sm = ISoftmax::new(x.len(), s).unwrap();
        let mut out = vec![0i8; x.len()];
        let mut scratch = vec![0i32; x.len()];
        sm.eval_row(&x, &mut out, &mut scratch);
        let m = x.iter().map(|&v| v as f64 * s).fold(f64::MIN, f64::max);
        let z: f64 = x.iter().map(|&v| (v as f64 * s - m).exp()).sum();
        for (i, &v) in x.iter().enumerate() {
            let p = (v as f64 * s - m).exp() / z;
            let got = (out[i] as i32 - SOFTMAX_OUT_ZERO_POINT) as f64 / 256.0;
            assert!((got - p).abs() <= 1.5 / 256.0, "{i}: {got} vs {p}");
        }
    }

    #[test]
    fn finer_softmax_steps_stay_close_to_float_and_saturate() {
        // 600 logits spread over 4 units: typical p ~ 1/600 < 2^-8; each output shift's codes
        // are round(p 2^(8 + o)) within the i-exp's relative error (a few percent at the
        // coarser internal scales the larger shifts leave), saturating at 255.
        let s = 2f64.powi(-5);
        let x: Vec<i8> = (0..600).map(|i| ((i * 37) % 256) as i8 / 2).collect();
        let m = x.iter().map(|&v| v as f64 * s).fold(f64::MIN, f64::max);
        let z: f64 = x.iter().map(|&v| (v as f64 * s - m).exp()).sum();
        for shift in 0..=SOFTMAX_MAX_OUT_SHIFT {
            let sm = ISoftmax::with_out_shift(x.len(), s, shift).unwrap();
            assert_eq!(sm.out_exp(), -8 - shift as i32);
            let (mut out, mut scratch) = (vec![0i8; x.len()], vec![0i32; x.len()]);
            sm.eval_row(&x, &mut out, &mut scratch);
            let unit = 2f64.powi(8 + shift as i32);
            let mut saturated = 0;
            for (i, &v) in x.iter().enumerate() {
                let want = ((v as f64 * s - m).exp() / z * unit).min(255.0);
                let got = (out[i] as i32 - SOFTMAX_OUT_ZERO_POINT) as f64;
                saturated += usize::from(got == 255.0);
                assert!(
                    (got - want).abs() <= 0.5 + 0.04 * want,
                    "shift {shift}, {i}: {got} vs {want}"
                );
            }
            // 2^-16 saturates the largest probabilities (p > 0.0039), 2^-8 none
            assert_eq!(
                saturated > 0,
                shift == SOFTMAX_MAX_OUT_SHIFT,
                "shift {shift}"
            );
        }
        let too_fine = ISoftmax {
            out_shift: SOFTMAX_MAX_OUT_SHIFT + 1,
            ..ISoftmax::new(4, s).unwrap()
        };
        assert!(too_fine.validate("sm").is_err());
    }

    #[test]
    fn softmax_output_spans_the_uint8_range() {
        // One dominant logit: p = 1.0 saturates to 255 (stored 127), the others round to 0
        // (stored -128); a uniform row of 4 gives 64 (stored -64) each.
        let sm = ISoftmax::new(3, 0.5).unwrap();
        let (mut out, mut scratch) = ([0i8; 3], [0i32; 3]);
        sm.eval_row(&[127, -128, -128], &mut out, &mut scratch);
        assert_eq!(out, [127, -128, -128]);
        let sm = ISoftmax::new(4, 0.5).unwrap();
        let (mut out, mut scratch) = ([0i8; 4], [0i32; 4]);
        sm.eval_row(&[7, 7, 7, 7], &mut out, &mut scratch);
        assert_eq!(out, [-64; 4]);
    }

    proptest! {
        #[test]
        fn softmax_never_panics(x in proptest::collection::vec(any::<i8>(), 1..300), e in -12.0f64..3.0, shift in 0u32..=SOFTMAX_MAX_OUT_SHIFT) {
            if let Ok(sm) = ISoftmax::with_out_shift(x.len(), 2f64.powf(e), shift) {
                let mut out = vec![0i8; x.len()];
                let mut scratch = vec![0i32; x.len()];
                sm.eval_row(&x, &mut out, &mut scratch);
                // each p_i rounds by at most 1/2 code, so unless one saturates the codes sum to
                // 2^(8 + shift) +- N/2
                let codes: Vec<i32> = out.iter().map(|&o| o as i32 - SOFTMAX_OUT_ZERO_POINT).collect();
                let total: i32 = codes.iter().sum();
                let n = x.len() as i32;
                if codes.iter().all(|&c| c < 255) {
                    prop_assert!((total - (256 << shift)).abs() <= n / 2 + 1, "sum {}", total);
                }
                // the interpreter's path (exponentials looked up, division in f64): same codes
                let mut fast = vec![0i8; x.len()];
                sm.eval_row_with(&sm.exp_table(), &x, &mut fast, &mut scratch);
                prop_assert_eq!(fast, out);
            }
        }

        #[test]
        fn layernorm_never_panics(x in proptest::collection::vec(any::<i8>(), 1..600), e in -8.0f64..2.0, g in 0u32..=15) {
            let n = x.len();
            let gamma: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32 * 0.1).collect();
            let beta: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
            if let Ok(ln) = IntLayerNorm::from_float(&gamma, &beta, 1e-5, 2f64.powf(e), 0.05, g) {
                let mut out = vec![0i8; n];
                let mut s1 = vec![0i32; n];
                let mut s2 = vec![0i32; n];
                ln.eval_row_ibert(&x, &mut out, &mut s1, &mut s2);
                ln.eval_row_scaled(&x, &mut out, &mut s1, &mut s2);
            }
        }
    }

    fn float_ln(x: &[f64], gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
        let n = x.len() as f64;
        let mu = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / n;
        x.iter()
            .enumerate()
            .map(|(i, v)| (v - mu) / (var + eps).sqrt() * gamma[i] as f64 + beta[i] as f64)
            .collect()
    }

    #[test]
    fn layernorms_close_to_float() {
        let n = 192;
        let si = 2f64.powi(-4);
        let so = 2f64.powi(-5);
        let x: Vec<i8> = (0..n)
            .map(|i| (((i * 37) % 101) as i32 - 50) as i8)
            .collect();
        let gamma: Vec<f32> = (0..n).map(|i| 0.5 + (i % 9) as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let xf: Vec<f64> = x.iter().map(|&v| v as f64 * si).collect();
        let want = float_ln(&xf, &gamma, &beta, 1e-5);
        for (g, scaled) in [(14, false), (7, true)] {
            let ln = IntLayerNorm::from_float(&gamma, &beta, 1e-5, si, so, g).unwrap();
            let mut out = vec![0i8; n];
            let (mut s1, mut s2) = (vec![0; n], vec![0; n]);
            if scaled {
                ln.eval_row_scaled(&x, &mut out, &mut s1, &mut s2);
            } else {
                ln.eval_row_ibert(&x, &mut out, &mut s1, &mut s2);
            }
            for i in 0..n {
                let w = (want[i] / so).clamp(-128.0, 127.0);
                // int8 gamma (0.4% relative) plus rounding: a couple of LSB at most.
                assert!(
                    (out[i] as f64 - w).abs() <= 2.0,
                    "g {g} i {i}: {} vs {w}",
                    out[i]
                );
            }
        }
    }

    #[test]
    fn layernorm_constant_row_is_beta() {
        let n = 16;
        let ln =
            IntLayerNorm::from_float(&[1.0; 16], &[0.5; 16], 1e-5, 0.1, 2f64.powi(-5), 14).unwrap();
        let x = vec![42i8; n];
        let mut out = vec![0i8; n];
        let (mut s1, mut s2) = (vec![0; n], vec![0; n]);
        ln.eval_row_ibert(&x, &mut out, &mut s1, &mut s2);
        assert!(out.iter().all(|&o| o == 16), "{out:?}");
    }
}
