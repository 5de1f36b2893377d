//! Offline accuracy measurement of the I-BERT kernels against their float definitions
//! (floats allowed: this is test/report code, never on the inference path).

use crate::error::Result;
use crate::ibert::{ERF_A, ERF_B, EXP_A, EXP_B, EXP_C, IExp, IGelu, Int8Gelu};

/// I-BERT's published i-GELU L2 error over `[-4, 4]` (root mean square over a dense grid).
pub const IBERT_GELU_L2: f64 = 0.0082;
/// I-BERT's published i-GELU L-infinity error over `[-4, 4]`.
pub const IBERT_GELU_LINF: f64 = 0.018;
/// I-BERT's published i-exp maximum error.
pub const IBERT_EXP_MAX: f64 = 1.9e-3;

/// `erf(x)` to about 1e-12 (Maclaurin series for `|x| < 3`, asymptotic erfc beyond).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        let mut term = a;
        let mut sum = a;
        let x2 = a * a;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let i2 = 1.0 / (2.0 * a * a);
        let series = 1.0 - i2 + 3.0 * i2 * i2 - 15.0 * i2.powi(3) + 105.0 * i2.powi(4);
        1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series
    };
    r.copysign(x)
}

/// Float GELU.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// Errors of one approximation over a grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorStats {
    /// Root mean square error over the grid points.
    pub l2: f64,
    /// Maximum absolute error.
    pub linf: f64,
    /// Number of grid points.
    pub points: usize,
}

fn stats(errs: impl Iterator<Item = f64>) -> ErrorStats {
    let (mut s2, mut m, mut n) = (0.0, 0f64, 0usize);
    for e in errs {
        s2 += e * e;
        m = m.max(e.abs());
        n += 1;
    }
    ErrorStats {
        l2: (s2 / n.max(1) as f64).sqrt(),
        linf: m,
        points: n,
    }
}

/// Integer i-GELU vs GELU on every representable input in `[-4, 4]` at input scale `scale`.
pub fn igelu_error(scale: f64) -> Result<ErrorStats> {
    let qm = (4.0 / scale).floor() as i32;
    let g = IGelu::new(scale, qm)?;
    let so = g.output_scale(scale);
    Ok(stats(
        (-qm..=qm).map(|q| g.eval(q) as f64 * so - gelu(q as f64 * scale)),
    ))
}

/// The float I-BERT GELU polynomial (no integer rounding) vs GELU on `points` grid points.
pub fn gelu_poly_error(points: usize) -> ErrorStats {
    stats((0..points).map(|i| {
        let x = -4.0 + 8.0 * i as f64 / (points - 1) as f64;
        let t = x / std::f64::consts::SQRT_2;
        let l = t.signum() * (ERF_A * (t.abs().min(-ERF_B) + ERF_B).powi(2) + 1.0);
        x / 2.0 * (1.0 + l) - gelu(x)
    }))
}

/// Integer i-exp vs `exp` on every representable input in `[x_min, 0]` at input scale `scale`.
pub fn iexp_error(scale: f64, x_min: f64) -> Result<ErrorStats> {
    let e = IExp::new(scale)?;
    let so = IExp::output_scale(scale);
    let q0 = (x_min / scale).ceil() as i32;
    Ok(stats(
        (q0..=0).map(|q| e.eval(q) as f64 * so - (q as f64 * scale).exp()),
    ))
}

/// The float I-BERT exp polynomial vs `exp` on `[-ln 2, 0]`.
pub fn exp_poly_error(points: usize) -> ErrorStats {
    stats((0..points).map(|i| {
        let p = -std::f64::consts::LN_2 * i as f64 / (points - 1) as f64;
        EXP_A * (p + EXP_B).powi(2) + EXP_C - p.exp()
    }))
}

/// The deployed int8 GELU (int8 in at `in_scale`, int8 out at `out_scale`) vs float GELU of
/// the dequantized input, in real units (includes the output rounding).
pub fn int8_gelu_error(in_scale: f64, out_scale: f64) -> Result<ErrorStats> {
    let g = Int8Gelu::new(in_scale, out_scale)?;
    Ok(table_error(|q| g.eval(q), in_scale, out_scale))
}

/// [`int8_gelu_error`] of the exact GELU table ([`crate::GeluTable`]): the output rounding
/// alone.
pub fn gelu_table_error(in_scale: f64, out_scale: f64) -> Result<ErrorStats> {
    let t = crate::GeluTable::exact(in_scale, out_scale)?;
    Ok(table_error(|q| t.eval(q), in_scale, out_scale))
}

fn table_error(f: impl Fn(i8) -> i8, in_scale: f64, out_scale: f64) -> ErrorStats {
    stats((-128..=127).map(|q| {
        let x = q as f64 * in_scale;
        f(q as i8) as f64 * out_scale - gelu(x).clamp(-128.0 * out_scale, 127.0 * out_scale)
    }))
}

/// The measurement table printed by `cargo run -p quant --example ibert_errors`.
pub fn report() -> Result<String> {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| kernel | input scale | grid | L2 (RMS) | Linf | I-BERT published |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    let p = gelu_poly_error(80_001);
    let _ = writeln!(
        s,
        "| GELU float polynomial | - | {} pts on [-4,4] | {:.5} | {:.5} | L2 0.0082, Linf 0.018 |",
        p.points, p.l2, p.linf
    );
    for k in [10, 8, 6] {
        let e = igelu_error(2f64.powi(-k))?;
        let _ = writeln!(
            s,
            "| i-GELU (int32) | 2^-{k} | {} pts on [-4,4] | {:.5} | {:.5} | L2 0.0082, Linf 0.018 |",
            e.points, e.l2, e.linf
        );
    }
    let e = int8_gelu_error(2f64.powi(-5), 2f64.powi(-5))?;
    let _ = writeln!(
        s,
        "| int8 GELU op, i-GELU table (in/out 2^-5) | 2^-5 | {} int8 values | {:.5} | {:.5} | (incl. output LSB 2^-5) |",
        e.points, e.l2, e.linf
    );
    let e = gelu_table_error(2f64.powi(-5), 2f64.powi(-5))?;
    let _ = writeln!(
        s,
        "| int8 GELU op, exact table (in/out 2^-5) | 2^-5 | {} int8 values | {:.5} | {:.5} | (output rounding only) |",
        e.points, e.l2, e.linf
    );
    let p = exp_poly_error(100_001);
    let _ = writeln!(
        s,
        "| exp float polynomial | - | {} pts on [-ln2,0] | {:.6} | {:.6} | max 1.9e-3 |",
        p.points, p.l2, p.linf
    );
    for k in [10, 12, 14] {
        let e = iexp_error(2f64.powi(-k), -16.0)?;
        let _ = writeln!(
            s,
            "| i-exp (int32) | 2^-{k} | {} pts on [-16,0] | {:.6} | {:.6} | max 1.9e-3 |",
            e.points, e.l2, e.linf
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_reference_is_accurate() {
        // known values
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-12);
        assert!((erf(1.0) - 0.842_700_792_949_714_9).abs() < 1e-12);
        assert!((erf(2.5) - 0.999_593_047_982_555).abs() < 1e-12);
        assert!((erf(3.5) - 0.999_999_256_901_627_7).abs() < 1e-10);
        assert!((erf(-1.0) + 0.842_700_792_949_714_9).abs() < 1e-12);
    }

    /// The published-figure check: fails if the integer kernels drift from I-BERT's numbers.
    #[test]
    fn ibert_published_error_figures_hold() {
        let g = igelu_error(2f64.powi(-10)).unwrap();
        println!(
            "i-GELU @2^-10: L2 {:.5} Linf {:.5} ({} pts)",
            g.l2, g.linf, g.points
        );
        assert!(g.l2 <= IBERT_GELU_L2 * 1.05, "i-GELU L2 {}", g.l2);
        assert!(g.linf <= IBERT_GELU_LINF * 1.05, "i-GELU Linf {}", g.linf);
        // and it is not trivially small: the approximation error itself must show up.
        assert!(g.l2 >= IBERT_GELU_L2 * 0.9 && g.linf >= IBERT_GELU_LINF * 0.9);
        let e = iexp_error(2f64.powi(-10), -16.0).unwrap();
        println!("i-exp @2^-10: max {:.6} ({} pts)", e.linf, e.points);
        // The float polynomial alone reaches 2.13e-3 on [-ln2, 0] (see README): allow 15%.
        assert!(e.linf <= IBERT_EXP_MAX * 1.15, "i-exp max {}", e.linf);
        let p = exp_poly_error(100_001);
        assert!((p.linf - 2.128e-3).abs() < 1e-5, "exp poly {}", p.linf);
        let gp = gelu_poly_error(80_001);
        assert!((gp.l2 - IBERT_GELU_L2).abs() < 1e-4 && (gp.linf - IBERT_GELU_LINF).abs() < 5e-4);
    }

    #[test]
    fn report_renders() {
        let r = report().unwrap();
        assert!(r.contains("i-GELU") && r.contains("i-exp"));
    }
}
