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

/// Float GELU.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
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
    fn gelu_reference_matches_known_values() {
        // 0.5 x (1 + erf(x / sqrt 2)) with CPython's math.erf (the C library's)
        for (x, want) in [
            (1.0, 0.841_344_746_068_542_9),
            (-1.0, -0.158_655_253_931_457_07),
            (0.5, 0.345_731_230_637_006_56),
            (3.0, 2.995_950_305_905_11),
            (-4.0, -1.266_849_673_324_799_1e-4),
        ] {
            assert!(
                (gelu(x) - want).abs() <= 1e-14 * want.abs(),
                "gelu({x}) = {}",
                gelu(x)
            );
        }
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
