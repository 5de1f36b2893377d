//! GELU on int8 as a 256-entry table made offline from the exact (erf) GELU.
//!
//! An int8 input has 256 values, so any elementwise op on it is exactly a table; the MCU runs
//! every GELU as one anyway (`nas_lut_s8`). Filling the table with I-BERT's i-GELU
//! ([`crate::Int8Gelu`]) carries its polynomial error into the model: on KWT-1 it changed 24 %
//! of GELU output codes (up to 2 codes) against the exact GELU of the same int8 inputs, and QAT,
//! whose fake-quantized forward uses the exact GELU, cannot see it. This table is the exact GELU
//! rounded once at the output scale, so the integer graph and QAT's forward agree.

use serde::{Deserialize, Serialize};

use crate::error::{Result, params};
use crate::ibert_error::gelu;

/// `table[q + 128] = clamp(floor(gelu(q s_in) / s_out + 1/2), -128, 127)` for every int8 `q`
/// (rounded half up, as requantization rounds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeluTable {
    /// 256 outputs, indexed by `q + 128`.
    pub table: Vec<i8>,
}

impl GeluTable {
    /// The table for int8 input scale `in_scale` and output scale `out_scale` (offline).
    pub fn exact(in_scale: f64, out_scale: f64) -> Result<Self> {
        for (what, s) in [("input", in_scale), ("output", out_scale)] {
            if !(s.is_finite() && s > 0.0) {
                return Err(params("GeluTable::exact", format!("{what} scale {s}")));
            }
        }
        let table = (-128..=127i32)
            .map(|q| {
                let y = gelu(q as f64 * in_scale);
                (y / out_scale + 0.5).floor().clamp(-128.0, 127.0) as i8
            })
            .collect();
        Ok(Self { table })
    }

    /// Checks that the table has one entry per int8 value.
    pub fn validate(&self, node: &str) -> Result<()> {
        if self.table.len() != 256 {
            return Err(params(
                node,
                format!("GELU table of {} entries, expected 256", self.table.len()),
            ));
        }
        Ok(())
    }

    /// One element.
    #[inline]
    pub fn eval(&self, q: i8) -> i8 {
        self.table[(q as i32 + 128) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Int8Gelu;

    /// Largest |table - gelu| in output codes over all int8 inputs, inside the int8 range.
    fn max_code_error(f: impl Fn(i8) -> i8, s_in: f64, s_out: f64) -> f64 {
        (-128..=127i32)
            .filter_map(|q| {
                let want = gelu(q as f64 * s_in) / s_out;
                (-128.0..=127.0)
                    .contains(&want)
                    .then(|| (f(q as i8) as f64 - want).abs())
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn every_entry_is_the_exact_gelu_rounded_once() {
        for (s_in, s_out) in [
            (2f64.powi(-5), 2f64.powi(-5)),
            (2f64.powi(-4), 2f64.powi(-6)),
        ] {
            let t = GeluTable::exact(s_in, s_out).unwrap();
            t.validate("t").unwrap();
            assert!(max_code_error(|q| t.eval(q), s_in, s_out) <= 0.5 + 1e-9);
            // saturates instead of wrapping where gelu leaves the int8 range
            if 127.0 * s_in / s_out > 127.0 {
                assert_eq!(t.eval(127), 127);
            }
            assert!(t.eval(0) == 0 && t.eval(-128) <= 0);
        }
    }

    #[test]
    fn ibert_polynomial_is_further_from_gelu_than_the_table() {
        // the KWT-1 scales where i-GELU changed a quarter of the codes
        let (s_in, s_out) = (2f64.powi(-5), 2f64.powi(-5));
        let ibert = Int8Gelu::new(s_in, s_out).unwrap();
        let exact = GeluTable::exact(s_in, s_out).unwrap();
        let e_ibert = max_code_error(|q| ibert.eval(q), s_in, s_out);
        let e_exact = max_code_error(|q| exact.eval(q), s_in, s_out);
        assert!(
            e_exact <= 0.5 + 1e-9 && e_ibert > 1.0,
            "{e_exact} {e_ibert}"
        );
    }

    #[test]
    fn bad_scales_and_short_tables_are_refused() {
        assert!(GeluTable::exact(0.0, 1.0).is_err());
        assert!(GeluTable::exact(1.0, f64::NAN).is_err());
        let t = GeluTable {
            table: vec![0; 255],
        };
        let e = t.validate("block0.mlp.gelu").unwrap_err().to_string();
        assert!(e.contains("block0.mlp.gelu") && e.contains("255"), "{e}");
    }
}
