//! Vectorized f32 loops for the flex backend's fused operations ([`crate::fused_ops`]): the exact
//! (erf) GELU, the row softmax and the LayerNorm, each with its derivative.
//!
//! Burn's flex backend evaluates GELU with libm's scalar `erff` (12-14 % of a KWT-1 training step
//! on the CPU), and under autodiff softmax and LayerNorm as five and nine separate tensor
//! operations (each with its graph node and buffer, a scalar `expf` in softmax). These loops
//! are branch-free so that LLVM vectorizes them, and they are compiled three times (AVX-512,
//! AVX2+FMA, baseline) with the widest chosen at run time, so one portable binary uses the
//! machine's vector width. Rust never contracts `a * b + c` into a fused multiply-add on its own,
//! so the three copies round alike: results do not depend on the CPU.
//!
//! erf comes from Abramowitz & Stegun 7.1.26 (absolute error at most 1.5e-7 in exact arithmetic;
//! the tests hold it within 5e-7 of libm's `erff` in f32), the exponential from a Cody-Waite range
//! reduction and a degree-7 Taylor polynomial (the tests hold it within 4e-7 relative).

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi): the standard normal density's factor.
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// e^x for x in [-87, 88] (clamped outside), no branches.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for the n that occur (|n| <= 127).
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a rounding
    // instruction (which the baseline x86-64 target lacks).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // 2^n from its exponent bits. `shifted`'s low mantissa bits hold n itself (two's complement),
    // which spares a float-to-int conversion (Rust's saturating `as` does not vectorize); n is
    // within [-126, 127] after the clamp.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

// Abramowitz & Stegun 7.1.26: erf(x) = 1 - t (A1 + A2 t + ... + A5 t^4) e^(-x^2), t = 1/(1 + P x).
const P: f32 = 0.327_591_1;
const A1: f32 = 0.254_829_6;
const A2: f32 = -0.284_496_74;
const A3: f32 = 1.421_413_7;
const A4: f32 = -1.453_152;
const A5: f32 = 1.061_405_4;

/// erf(x), absolute error about 1e-7.
#[cfg(test)]
fn erf(x: f32) -> f32 {
    erf_given_exp(x, exp(-x * x))
}

/// erf(x) given `e = exp(-x^2)` (the GELU derivative needs that exponential twice).
#[inline(always)]
fn erf_given_exp(x: f32, e: f32) -> f32 {
    let t = 1.0 / (1.0 + P * x.abs());
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    (1.0 - poly * e).copysign(x)
}

/// Standard normal CDF Phi(x) = 0.5 (1 + erf(x / sqrt 2)), given `e = exp(-x^2 / 2)`.
#[inline(always)]
fn cdf_given_exp(x: f32, e: f32) -> f32 {
    0.5 * (1.0 + erf_given_exp(x * FRAC_1_SQRT_2, e))
}

#[inline(always)]
fn gelu_loop(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * cdf_given_exp(v, exp(-0.5 * v * v));
    }
}

/// d gelu / dx = cdf(x) + x pdf(x), times the incoming gradient.
#[inline(always)]
fn gelu_backward_loop(x: &[f32], grad: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
        let e = exp(-0.5 * v * v);
        *o = g * (cdf_given_exp(v, e) + v * INV_SQRT_2PI * e);
    }
}

/// Lanes of the partial sums in the row reductions: independent accumulators that LLVM keeps in
/// one vector register, and a fixed summation order whatever the vector width.
const LANES: usize = 16;

/// `sum(a[i] * b[i])` in [`LANES`] interleaved partial sums.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (a_main, a_tail) = a.split_at(a.len() / LANES * LANES);
    let (b_main, b_tail) = b.split_at(a_main.len());
    for (ca, cb) in a_main.chunks_exact(LANES).zip(b_main.chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += ca[j] * cb[j];
        }
    }
    let mut total = acc.iter().sum::<f32>();
    for (x, y) in a_tail.iter().zip(b_tail) {
        total += x * y;
    }
    total
}

/// `sum(a[i])` in [`LANES`] interleaved partial sums.
#[inline(always)]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (main, tail) = a.split_at(a.len() / LANES * LANES);
    for c in main.chunks_exact(LANES) {
        for j in 0..LANES {
            acc[j] += c[j];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Softmax of each `row`-long row: `exp(x - max) / sum`.
#[inline(always)]
fn softmax_loop(x: &[f32], row: usize, out: &mut [f32]) {
    for (xr, yr) in x.chunks_exact(row).zip(out.chunks_exact_mut(row)) {
        let max = xr.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for (y, &v) in yr.iter_mut().zip(xr) {
            *y = exp(v - max);
        }
        let inv = 1.0 / sum(yr);
        for y in yr.iter_mut() {
            *y *= inv;
        }
    }
}

/// Softmax's backward pass per row: `dx = y * (g - sum(g * y))`.
#[inline(always)]
fn softmax_backward_loop(y: &[f32], grad: &[f32], row: usize, out: &mut [f32]) {
    let rows = y.chunks_exact(row).zip(grad.chunks_exact(row));
    for ((yr, gr), dr) in rows.zip(out.chunks_exact_mut(row)) {
        let s = dot(yr, gr);
        for ((d, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
            *d = yv * (gv - s);
        }
    }
}

/// LayerNorm of each `gamma.len()`-long row: `out = xhat * gamma + beta` with
/// `xhat = (x - mean) / sqrt(var + eps)` (biased variance), keeping `xhat` and the per-row
/// `rstd = 1 / sqrt(var + eps)` for the backward pass.
#[inline(always)]
fn layer_norm_loop(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
) {
    let d = gamma.len();
    let inv_d = 1.0 / d as f32;
    let rows = x
        .chunks_exact(d)
        .zip(out.chunks_exact_mut(d))
        .zip(xhat.chunks_exact_mut(d));
    for (((xr, yr), hr), r) in rows.zip(rstd.iter_mut()) {
        let mean = sum(xr) * inv_d;
        for (h, &v) in hr.iter_mut().zip(xr) {
            *h = v - mean;
        }
        let var = dot(hr, hr) * inv_d;
        *r = 1.0 / (var + eps).sqrt();
        for (((y, h), &g), &b) in yr.iter_mut().zip(hr.iter_mut()).zip(gamma).zip(beta) {
            *h *= *r;
            *y = *h * g + b;
        }
    }
}

/// LayerNorm's backward pass from `xhat`, `rstd` and the output gradient `grad`:
/// `dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))` with `gh = grad * gamma`, written to
/// `dx`; `dgamma += sum over rows of grad * xhat` and `dbeta += sum over rows of grad` (rows in
/// order).
#[inline(always)]
fn layer_norm_backward_loop(
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    grad: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let d = gamma.len();
    let inv_d = 1.0 / d as f32;
    let rows = xhat
        .chunks_exact(d)
        .zip(grad.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d));
    for (((hr, gr), dr), &r) in rows.zip(rstd) {
        // dx's row holds grad * gamma until the last loop.
        for ((o, &g), &w) in dr.iter_mut().zip(gr).zip(gamma) {
            *o = g * w;
        }
        let m1 = sum(dr) * inv_d;
        let m2 = dot(dr, hr) * inv_d;
        for (o, &h) in dr.iter_mut().zip(hr) {
            *o = r * (*o - m1 - h * m2);
        }
        for (((dg, db), &g), &h) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(gr).zip(hr) {
            *dg += g * h;
            *db += g;
        }
    }
}

/// Stamps out one copy of a loop per instruction set and a function that picks the widest the
/// CPU has (the check is a cached atomic load).
/// The instruction set the kernels run with on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorIsa {
    Avx512,
    Avx2Fma,
    /// The target's baseline (SSE2 on x86-64).
    Baseline,
}

impl VectorIsa {
    /// The widest this CPU has (the check is a cached atomic load).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self::Avx2Fma;
            }
        }
        Self::Baseline
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2Fma => "avx2+fma",
            Self::Baseline => "baseline",
        }
    }
}

#[inline(always)]
fn floor_loop(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v.floor();
    }
}

#[inline(always)]
fn round_half_up_loop(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v + 0.5).floor();
    }
}

/// `clamp(floor(x / step + 1/2))`'s value: `x / step` clamped to `[qmin, qmax]`, rounded half
/// up, times `step`; the f32 operations of the Burn composite it replaces
/// (`training::fake_quant::fake_quant`), in the same order.
#[inline(always)]
fn fake_quant_loop(x: &[f32], step: f32, qmin: f32, qmax: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = ((v / step).max(qmin).min(qmax) + 0.5).floor() * step;
    }
}

/// Fake quantization's straight-through gradients: `dx = grad` where `qmin <= x / step <= qmax`,
/// else 0; and, added to `dstep`, `sum grad * dq/dstep` with `dq/dstep` = `round(u) - u` inside
/// the range (`u = x / step`), `qmin` below it and `qmax` above it (TQT).
#[inline(always)]
fn fake_quant_backward_loop(
    x: &[f32],
    step: f32,
    qmin: f32,
    qmax: f32,
    grad: &[f32],
    dx: &mut [f32],
    dstep: &mut f64,
) {
    // Blocks of LANES-wide f32 partial sums, each block's total added in f64: the sum runs over
    // a whole activation tensor (10^5-10^6 terms).
    const BLOCK: usize = LANES * 64;
    let n = x.len().min(grad.len()).min(dx.len());
    let (x, grad, dx) = (&x[..n], &grad[..n], &mut dx[..n]);
    let term = |v: f32, g: f32, d: &mut f32| -> f32 {
        let u = v / step;
        let inside = u >= qmin && u <= qmax;
        *d = if inside { g } else { 0.0 };
        let slope = if u < qmin {
            qmin
        } else if u > qmax {
            qmax
        } else {
            (u + 0.5).floor() - u
        };
        g * slope
    };
    for ((xb, gb), db) in x
        .chunks(BLOCK)
        .zip(grad.chunks(BLOCK))
        .zip(dx.chunks_mut(BLOCK))
    {
        let mut acc = [0f32; LANES];
        let main = xb.len() / LANES * LANES;
        let lanes = xb[..main]
            .chunks_exact(LANES)
            .zip(gb[..main].chunks_exact(LANES))
            .zip(db[..main].chunks_exact_mut(LANES));
        for ((xc, gc), dc) in lanes {
            for j in 0..LANES {
                acc[j] += term(xc[j], gc[j], &mut dc[j]);
            }
        }
        let mut total = acc.iter().map(|&a| f64::from(a)).sum::<f64>();
        for ((&v, &g), d) in xb[main..].iter().zip(&gb[main..]).zip(&mut db[main..]) {
            total += f64::from(term(v, g, d));
        }
        *dstep += total;
    }
}

/// Stamps out one copy of a loop per instruction set and a function that runs the one
/// [`VectorIsa::detect`] picks (also the integer interpreter's kernels in `quant`).
#[macro_export]
macro_rules! dispatched {
    ($(#[$doc:meta])* $name:ident => $body:ident ($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        // the copies take the loop's arguments, as many as it has
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match $crate::cpu_kernels::VectorIsa::detect() {
                    // SAFETY: `detect` found AVX-512F on this CPU.
                    $crate::cpu_kernels::VectorIsa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: `detect` found AVX2 and FMA on this CPU.
                    $crate::cpu_kernels::VectorIsa::Avx2Fma => return unsafe { avx2($($arg),*) },
                    $crate::cpu_kernels::VectorIsa::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}
pub use dispatched;

dispatched!(
    /// `out[i] = gelu(x[i])` (the erf GELU), over the shorter of the two slices.
    gelu => gelu_loop(x: &[f32], out: &mut [f32])
);

dispatched!(
    /// `out[i] = grad[i] * gelu'(x[i])`, over the shortest of the three slices.
    gelu_backward => gelu_backward_loop(x: &[f32], grad: &[f32], out: &mut [f32])
);

dispatched!(
    /// `out` = the softmax of each `row`-long row of `x` (whole rows only).
    softmax => softmax_loop(x: &[f32], row: usize, out: &mut [f32])
);

dispatched!(
    /// `out` = softmax's input gradient from its output `y` and output gradient `grad`, per
    /// `row`-long row.
    softmax_backward => softmax_backward_loop(y: &[f32], grad: &[f32], row: usize, out: &mut [f32])
);

dispatched!(
    /// LayerNorm over rows of `gamma.len()`: `out`, and `xhat` and `rstd` for the backward pass.
    layer_norm => layer_norm_loop(
        x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32], xhat: &mut [f32],
        rstd: &mut [f32]
    )
);

dispatched!(
    /// LayerNorm's input gradient into `dx`; its scale and shift gradients added to `dgamma` and
    /// `dbeta`.
    layer_norm_backward => layer_norm_backward_loop(
        xhat: &[f32], rstd: &[f32], gamma: &[f32], grad: &[f32], dx: &mut [f32],
        dgamma: &mut [f32], dbeta: &mut [f32]
    )
);

dispatched!(
    /// `out[i] = floor(x[i] + 0.5)`, round half up as the integer graph's requantization
    /// rounds (libm's scalar `floorf` on the baseline x86-64 target, which has no rounding
    /// instruction: 12 % of a QAT run's time when flex rounded each point that way).
    round_half_up => round_half_up_loop(x: &[f32], out: &mut [f32])
);

dispatched!(
    /// `out[i] = floor(x[i])` (libm's scalar `floorf` per element on the baseline target: the
    /// QAT LayerNorm emulation's floors were 2.7 % of a QAT run that way).
    floor => floor_loop(x: &[f32], out: &mut [f32])
);

dispatched!(
    /// `out[i]` = `x[i]` fake-quantized at `step` onto `[qmin, qmax]` (round half up).
    fake_quant => fake_quant_loop(x: &[f32], step: f32, qmin: f32, qmax: f32, out: &mut [f32])
);

dispatched!(
    /// [`fake_quant`]'s straight-through input gradient into `dx` and its step gradient added
    /// to `dstep`.
    fake_quant_backward => fake_quant_backward_loop(
        x: &[f32], step: f32, qmin: f32, qmax: f32, grad: &[f32], dx: &mut [f32],
        dstep: &mut f64
    )
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/1000 over [-10, 10], plus the far tails and signed zero.
    fn grid() -> Vec<f32> {
        let mut v: Vec<f32> = (-10_000..=10_000).map(|i| i as f32 * 1e-3).collect();
        v.extend([-1e4, -90.0, -30.0, 30.0, 90.0, 1e4, -0.0, 1e-30, -1e-30]);
        v
    }

    fn gelu_ref(x: f64) -> f64 {
        0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
    }

    fn gelu_grad_ref(x: f64) -> f64 {
        let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    #[test]
    fn erf_and_exp_match_libm() {
        let mut worst_erf = 0f32;
        let mut worst_exp = 0f64;
        for x in grid() {
            worst_erf = worst_erf.max((erf(x) - libm::erff(x)).abs());
            if (-87.0..=88.0).contains(&x) {
                let e = f64::from(x).exp();
                worst_exp = worst_exp.max((f64::from(exp(x)) - e).abs() / e);
            }
        }
        assert!(worst_erf <= 5e-7, "erf off by {worst_erf}");
        assert!(worst_exp <= 4e-7, "exp relative error {worst_exp}");
        // A&S's coefficients sum to 1 only up to rounding: erf(0) is 6e-8, harmless for GELU
        // (x Phi(x) is 0 at 0 whatever Phi is).
        assert!(erf(0.0).abs() <= 1e-7);
        assert_eq!(erf(-5.0), -1.0);
    }

    #[test]
    fn gelu_and_its_gradient_match_the_f64_reference() {
        let x = grid();
        let g: Vec<f32> = (0..x.len()).map(|i| 1.0 - (i % 7) as f32 * 0.3).collect();
        let mut y = vec![f32::NAN; x.len()];
        let mut dx = vec![f32::NAN; x.len()];
        gelu(&x, &mut y);
        gelu_backward(&x, &g, &mut dx);
        for i in 0..x.len() {
            let xi = f64::from(x[i]);
            // Absolute error, scaled by |x| where it grows (the output is x times a CDF).
            let tol = 5e-7 * xi.abs().max(1.0);
            let want = gelu_ref(xi);
            assert!(
                (f64::from(y[i]) - want).abs() <= tol,
                "gelu({xi}) = {} not {want}",
                y[i]
            );
            let want = f64::from(g[i]) * gelu_grad_ref(xi);
            assert!(
                (f64::from(dx[i]) - want).abs() <= 1e-6,
                "gelu'({xi}) * {} = {} not {want}",
                g[i],
                dx[i]
            );
        }
        // Every width rounds alike: the baseline loop agrees bit for bit with the one the CPU ran.
        let mut scalar = vec![0f32; x.len()];
        gelu_loop(&x, &mut scalar);
        assert!(
            scalar
                .iter()
                .zip(&y)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    fn softmax_ref(x: &[f32]) -> Vec<f64> {
        let max = x
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let e: Vec<f64> = x.iter().map(|&v| (f64::from(v) - max).exp()).collect();
        let total: f64 = e.iter().sum();
        e.iter().map(|v| v / total).collect()
    }

    #[test]
    fn softmax_and_its_gradient_match_the_f64_reference() {
        // Row lengths below, at and above the partial-sum width, and one that leaves a tail.
        for row in [1, 5, 16, 99] {
            let rows = 7;
            let x: Vec<f32> = (0..rows * row)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21)
                .collect();
            let g: Vec<f32> = (0..rows * row)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1)
                .collect();
            let mut y = vec![f32::NAN; x.len()];
            let mut dx = vec![f32::NAN; x.len()];
            softmax(&x, row, &mut y);
            softmax_backward(&y, &g, row, &mut dx);
            for r in 0..rows {
                let span = r * row..(r + 1) * row;
                let want = softmax_ref(&x[span.clone()]);
                let s: f64 = want
                    .iter()
                    .zip(&g[span.clone()])
                    .map(|(p, &gv)| p * f64::from(gv))
                    .sum();
                for (k, i) in span.enumerate() {
                    assert!(
                        (f64::from(y[i]) - want[k]).abs() <= 1e-6,
                        "row {row}: y[{i}] {}",
                        y[i]
                    );
                    let d = want[k] * (f64::from(g[i]) - s);
                    assert!(
                        (f64::from(dx[i]) - d).abs() <= 2e-6,
                        "row {row}: dx[{i}] {}",
                        dx[i]
                    );
                }
            }
            let mut scalar = vec![0f32; x.len()];
            softmax_loop(&x, row, &mut scalar);
            assert!(
                scalar
                    .iter()
                    .zip(&y)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }

    #[test]
    fn fake_quant_is_the_same_on_every_path() {
        // this CPU's widest copy against the baseline one, forward and backward
        let x: Vec<f32> = (-700..700).map(|i| i as f32 * 0.013).collect();
        let g: Vec<f32> = (0..x.len()).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let (step, qmin, qmax) = (1.0 / 64.0, -128.0, 127.0);
        let (mut fast, mut base) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        fake_quant(&x, step, qmin, qmax, &mut fast);
        fake_quant_loop(&x, step, qmin, qmax, &mut base);
        assert_eq!(fast, base);
        // both ends clip
        assert_eq!(fast[0], -2.0);
        assert_eq!(fast[x.len() - 1], 127.0 / 64.0);
        let (mut dfast, mut dbase) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        let (mut sfast, mut sbase) = (0f64, 0f64);
        fake_quant_backward(&x, step, qmin, qmax, &g, &mut dfast, &mut sfast);
        fake_quant_backward_loop(&x, step, qmin, qmax, &g, &mut dbase, &mut sbase);
        assert_eq!(dfast, dbase);
        assert!(
            (sfast - sbase).abs() <= 1e-9 * sbase.abs().max(1.0),
            "{sfast} vs {sbase}"
        );
        assert!(dfast.contains(&0.0) && dfast.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn round_half_up_is_floor_of_x_plus_a_half_on_every_path() {
        // the f32 arithmetic of the tensor operations it replaces, bit for bit: ties both
        // ways, negatives, values next to a half, past 2^23 (where `+ 0.5` itself rounds)
        let mut x: Vec<f32> = (-600..600).map(|i| i as f32 * 0.25).collect();
        x.extend([
            -2.5,
            2.5,
            -0.5,
            0.5,
            0.499_999_97,
            -0.500_000_06,
            8_388_609.0,
            -1e9,
            1e9,
        ]);
        let want: Vec<f32> = x.iter().map(|&v| (v + 0.5).floor()).collect();
        // (0.49999997 + 0.5 rounds to 1 in f32 before the floor)
        assert_eq!(want[1200..1206], [-2.0, 3.0, 0.0, 1.0, 1.0, -1.0]);
        let mut out = vec![0f32; x.len()];
        round_half_up(&x, &mut out);
        assert_eq!(out, want);
        let mut base = vec![0f32; x.len()];
        round_half_up_loop(&x, &mut base);
        assert_eq!(base, want);
        let floors: Vec<f32> = x.iter().map(|v| v.floor()).collect();
        floor(&x, &mut out);
        assert_eq!(out, floors);
        floor_loop(&x, &mut base);
        assert_eq!(base, floors);
    }

    #[test]
    fn softmax_survives_large_and_masked_inputs() {
        let x = [1e4f32, 1e4 - 1.0, f32::NEG_INFINITY, -1e4];
        let mut y = [0f32; 4];
        softmax(&x, 4, &mut y);
        let e = (-1f64).exp();
        assert!((f64::from(y[0]) - 1.0 / (1.0 + e)).abs() < 1e-6, "{y:?}");
        assert!((f64::from(y[1]) - e / (1.0 + e)).abs() < 1e-6, "{y:?}");
        // exp clamps its argument at -87: e^-87 (1.6e-38) stands for anything smaller.
        assert!(y[2] < 1e-30 && y[3] < 1e-30, "{y:?}");
    }

    #[test]
    fn layer_norm_and_its_gradients_match_the_f64_reference() {
        let eps = 1e-5;
        for d in [1, 7, 16, 64, 70] {
            let rows = 5;
            let x: Vec<f32> = (0..rows * d)
                .map(|i| ((i * 29 % 83) as f32 - 40.0) * 0.07 + 3.0)
                .collect();
            let g: Vec<f32> = (0..rows * d)
                .map(|i| ((i * 11 % 23) as f32 - 11.0) * 0.1)
                .collect();
            let gamma: Vec<f32> = (0..d).map(|j| 0.5 + j as f32 * 0.03).collect();
            let beta: Vec<f32> = (0..d).map(|j| j as f32 * -0.02).collect();
            let (mut y, mut xhat, mut rstd) =
                (vec![0f32; x.len()], vec![0f32; x.len()], vec![0f32; rows]);
            layer_norm(&x, &gamma, &beta, eps, &mut y, &mut xhat, &mut rstd);
            let (mut dx, mut dgamma, mut dbeta) =
                (vec![0f32; x.len()], vec![0f32; d], vec![0f32; d]);
            layer_norm_backward(&xhat, &rstd, &gamma, &g, &mut dx, &mut dgamma, &mut dbeta);

            let (mut want_dgamma, mut want_dbeta) = (vec![0f64; d], vec![0f64; d]);
            for r in 0..rows {
                let xr: Vec<f64> = x[r * d..(r + 1) * d]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let gr: Vec<f64> = g[r * d..(r + 1) * d]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let mean = xr.iter().sum::<f64>() / d as f64;
                let var = xr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
                let rs = 1.0 / (var + f64::from(eps)).sqrt();
                let h: Vec<f64> = xr.iter().map(|v| (v - mean) * rs).collect();
                let gh: Vec<f64> = (0..d).map(|j| gr[j] * f64::from(gamma[j])).collect();
                let m1 = gh.iter().sum::<f64>() / d as f64;
                let m2 = (0..d).map(|j| gh[j] * h[j]).sum::<f64>() / d as f64;
                for j in 0..d {
                    let i = r * d + j;
                    let want_y = h[j] * f64::from(gamma[j]) + f64::from(beta[j]);
                    assert!(
                        (f64::from(y[i]) - want_y).abs() <= 2e-6,
                        "d {d}: y[{i}] {} vs {want_y}",
                        y[i]
                    );
                    let want_dx = rs * (gh[j] - m1 - h[j] * m2);
                    assert!(
                        (f64::from(dx[i]) - want_dx).abs() <= 2e-5 * rs.max(1.0),
                        "d {d}: dx[{i}] {} vs {want_dx}",
                        dx[i]
                    );
                    want_dgamma[j] += gr[j] * h[j];
                    want_dbeta[j] += gr[j];
                }
            }
            for j in 0..d {
                assert!(
                    (f64::from(dgamma[j]) - want_dgamma[j]).abs() <= 1e-5,
                    "d {d}: dgamma[{j}]"
                );
                assert!(
                    (f64::from(dbeta[j]) - want_dbeta[j]).abs() <= 1e-5,
                    "d {d}: dbeta[{j}]"
                );
            }
        }
    }
}
