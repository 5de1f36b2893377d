//! The feature front end's last step in C: `<name>_quantize_input(raw, in)` standardizes raw
//! features (pixels in [0, 1], MFCCs) with the training set's per-feature statistics the
//! integer graph holds and rounds them at the input's scale, exactly as the Rust reference
//! (`quant::Graph::quantize_input`) does: the same double-precision operations in the same
//! order, rounding half away from zero, int8 saturation, NaN to 0. Without it a deployed
//! searched model would have no record of the statistics it was trained with.
//!
//! The statistics are stored as `float` (as the graph holds them) and are not counted in
//! `<NAME>_WEIGHT_BYTES` (the model's constants, the cost model's flash figure): they belong to
//! the feature front end, whose own code (framing, MFCC) is the user's. Cores without a
//! double-precision FPU run this step in software floating point (about three double
//! operations per input element, once per inference): on the Cortex-M4 the function and the
//! libgcc double routines it pulls in add 2,560 B of code (arm-none-eabi-gcc -O2, measured on
//! a key-word TinyFormer's export).

use std::fmt::Write as _;

use quant::{Graph, Standardization, TensorInfo};

/// Features (the input's last axis) the graph standardizes, if it holds statistics for its
/// (single) input.
pub fn standardized_features(graph: &Graph) -> Option<usize> {
    front_end_of(graph).map(|(_, _, features)| features)
}

/// The statistics, the input tensor and the number of features of a graph with a front end.
fn front_end_of(graph: &Graph) -> Option<(&Standardization, &TensorInfo, usize)> {
    let st = graph.input_standardization.as_ref()?;
    let [input] = graph.inputs.as_slice() else {
        return None;
    };
    let input = graph.tensor(input)?;
    (!st.mean.is_empty()).then_some((st, input, st.mean.len()))
}

/// A C `float` expression equal to `v`: Rust's shortest round-trip digits for finite values
/// (which a correctly rounding compiler reads back exactly), GCC's builtins otherwise.
pub(crate) fn c_float(v: f32) -> String {
    if v.is_nan() {
        return "__builtin_nanf(\"\")".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "__builtin_inff()"
        } else {
            "-__builtin_inff()"
        }
        .into();
    }
    let s = format!("{v:?}");
    if s.contains(['.', 'e', 'E']) {
        format!("{s}f")
    } else {
        format!("{s}.0f")
    }
}

/// The header's declaration and its documentation, or `None` without statistics.
pub fn header(graph: &Graph, name: &str) -> Option<String> {
    let features = standardized_features(graph)?;
    let up = name.to_ascii_uppercase();
    Some(format!(
        "/* The front end's last step: raw features (the training data's units: pixels in [0, 1],\n \
         * MFCCs) to `in`. Element i is standardized with feature f = i % {up}_INPUT_FEATURES\n \
         * (the input's last axis) and rounded at the input's scale:\n \
         *   in[i] = sat8(round(((double)raw[i] - mean[f]) / std[f] / scale))\n \
         * in double precision, rounding half away from zero, NaN to 0: bit-exact with the Rust\n \
         * reference. The statistics are the training set's. */\n\
         #define {up}_INPUT_FEATURES {features}\n\
         void {name}_quantize_input(const float *raw, int8_t *in);\n"
    ))
}

/// The statistics and the function, or `None` without statistics.
pub fn source(graph: &Graph, name: &str) -> Option<String> {
    let (st, input, features) = front_end_of(graph)?;
    let up = name.to_ascii_uppercase();
    let mut c = String::new();
    for (ident, values) in [("mean", &st.mean), ("std", &st.std)] {
        let _ = write!(
            c,
            "\nstatic const float {name}_input_{ident}[{features}] = {{"
        );
        for (i, &v) in values.iter().enumerate() {
            if i % 6 == 0 {
                c.push_str("\n   ");
            }
            let _ = write!(c, " {},", c_float(v));
        }
        c.push_str("\n};\n");
    }
    let _ = write!(
        c,
        "\n/* round half away from zero, then saturate to int8 (NaN: 0), as Rust's\n \
         * `(x.round().clamp(-128.0, 127.0)) as i8` */\n\
         static int8_t {name}_round_sat8(double x) {{\n\
         \x20   int t;\n\
         \x20   double f;\n\
         \x20   if (x != x) {{\n\
         \x20       return 0;\n\
         \x20   }}\n\
         \x20   if (x >= 126.5) {{\n\
         \x20       return 127;\n\
         \x20   }}\n\
         \x20   if (x <= -127.5) {{\n\
         \x20       return -128;\n\
         \x20   }}\n\
         \x20   t = (int)x;\n\
         \x20   f = x - (double)t; /* exact: |x| < 2^52 */\n\
         \x20   if (f >= 0.5) {{\n\
         \x20       t += 1;\n\
         \x20   }} else if (f <= -0.5) {{\n\
         \x20       t -= 1;\n\
         \x20   }}\n\
         \x20   return (int8_t)t;\n\
         }}\n\n\
         void {name}_quantize_input(const float *raw, int8_t *in) {{\n\
         \x20   /* the input's scale, {m} * 2^-{s}: exact in double */\n\
         \x20   const double scale = (double){m} / {pow};\n\
         \x20   int i;\n\
         \x20   for (i = 0; i < {up}_INPUT_LEN; i++) {{\n\
         \x20       int f = i % {up}_INPUT_FEATURES;\n\
         \x20       double v = ((double)raw[i] - (double){name}_input_mean[f]) / (double){name}_input_std[f];\n\
         \x20       in[i] = {name}_round_sat8(v / scale);\n\
         \x20   }}\n\
         }}\n",
        m = input.scale.m,
        s = input.scale.s,
        // a hex float literal: 2^s exactly, for any exponent
        pow = format_args!("0x1p{}", input.scale.s),
    );
    Some(c)
}

/// Raw inputs that probe the C front end against the Rust reference (`nas verify` runs them):
/// per feature, values on the rounding boundaries from -150.5 to 149.5 codes, visited with a
/// stride of 37 so that short inputs reach both signs and both saturations (exact ties where
/// the statistics are binary fractions); then values spread over `mean +- 6 std` with NaN,
/// infinities, signed zeros and huge values among them.
pub fn probe_inputs(graph: &Graph) -> Option<Vec<Vec<f32>>> {
    let (st, input, features) = front_end_of(graph)?;
    let len = input.numel();
    let scale = input.scale.to_f64();
    let at = |i: usize, code: f64| {
        let f = i % features;
        (st.mean[f] as f64 + code * scale * st.std[f] as f64) as f32
    };
    let ties = (0..len)
        .map(|i| at(i, ((i / features) * 37 % 300) as f64 - 150.5))
        .collect();
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e30,
        -1e30,
    ];
    // a fixed hash of the index: the same probe on every run and platform
    let unit = |i: usize| {
        let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let spread = (0..len)
        .map(|i| match specials.get(i) {
            Some(&v) => v,
            None => at(i, (unit(i) * 12.0 - 6.0) / scale),
        })
        .collect();
    Some(vec![ties, spread])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_literals_round_trip() {
        for v in [0.5f32, 1.0, 0.286_040_63, 1e-30, 3.4e38, -2.0, 0.1] {
            let lit = c_float(v);
            let parsed: f32 = lit.trim_end_matches('f').parse().unwrap();
            assert_eq!(parsed.to_bits(), v.to_bits(), "{lit}");
            assert!(lit.ends_with('f'));
        }
        assert_eq!(c_float(1.0), "1.0f");
    }
}
