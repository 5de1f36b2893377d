//! Softmax rows of 128 elements or more whose values span few differences `max - x` (fewer
//! than half the row's length) take the runtime's probability table (`nas_softmax_prob_table`: one byte lookup per
//! element), the others the per-element path; both bit-exact with the interpreter on host,
//! Cortex-M4, M7 (the DSP word loops) and RV32 (the portable loop), standalone (int8 output,
//! `flip` 0x80) and inside the fused attention (uint8 probabilities).

mod common;

use common::{Rng, attention, check_inputs};
use export::Target;
use quant::{Graph, GraphBuilder};

/// Samples of `len` values in rows of `row`: row `r` spread over `2 w + 1` values around a
/// random centre, `w` cycling through `spreads` (0: a constant row).
fn spread_rows(len: usize, row: usize, spreads: &[i32], n: usize, seed: u64) -> Vec<Vec<i8>> {
    let mut r = Rng(seed | 1);
    (0..n)
        .map(|k| {
            let mut x = Vec::with_capacity(len);
            for (i, _) in (0..len).step_by(row).enumerate() {
                let w = spreads[(i + k) % spreads.len()];
                let c = (r.next() % 256) as i32 - 128;
                for _ in 0..row.min(len - x.len()) {
                    let v = c + (r.next() % (2 * w as u64 + 1)) as i32 - w;
                    x.push(v.clamp(-128, 127) as i8);
                }
            }
            x
        })
        .collect()
}

/// A softmax over rows of `n` (6 rows).
fn softmax_rows(n: usize) -> Graph {
    let mut b = GraphBuilder::new();
    b.input("x", &[6, n], 2f64.powi(-3)).unwrap();
    b.softmax("p", "x").unwrap();
    b.output("p");
    b.finish().unwrap()
}

#[test]
fn softmax_rows_with_and_without_the_probability_table_bit_exact() {
    // rows of 8 (whole words), 13 (a tail of 1) and 49: never the table; 196 and 601 (a tail):
    // spreads from constant to the whole int8 range, so they take both paths
    for (n, seed) in [(8, 1), (13, 2), (49, 3), (196, 4), (601, 5)] {
        let g = softmax_rows(n);
        let xs = spread_rows(6 * n, n, &[0, 1, 3, 12, 40, 127], 3, seed);
        check_inputs(&g, &Target::ALL, &xs);
    }
}

#[test]
fn fused_attention_softmax_with_and_without_the_probability_table_bit_exact() {
    // 128 keys of 2 heads of 8: narrow inputs give narrow scores (the table), wide ones the
    // per-element path
    let g = attention::mhsa((128, 16, 8, 2), 9, 0);
    let xs = spread_rows(128 * 16, 16, &[0, 1, 2, 6, 127], 3, 6);
    check_inputs(&g, &Target::ALL, &xs);
}
