//! The attention stages of pulp-transformer as integer graphs (shared by the export tests).

use quant::graph::{Op, Requant};
use quant::{Dyadic, Graph, GraphBuilder};

use super::Rng;

/// `(name, S, E, P, H)` of the paper's attention stages (Sec. 4.7).
pub const SHAPES: [(&str, usize, usize, usize, usize); 3] = [
    ("eegformer", 81, 32, 32, 8),
    ("ecgformer", 66, 16, 2, 8),
    ("trformer", 5, 32, 32, 8),
];

/// Weight scale that keeps a reduction over `n` uniform int8 products near +-30 (input and
/// output at the same scale): no saturation, many distinct values.
fn ws(n: usize) -> f64 {
    0.0055 / (n as f64).sqrt()
}

/// The rest of the stage after `q_h`, `k_h` (`[H, S, *]`): scores, softmax (output at
/// `2^-(8 + softmax_shift)`), `A V`, head merge, output projection.
fn finish_stage(
    mut b: GraphBuilder,
    r: &mut Rng,
    q_h: &str,
    k_h: &str,
    (_, e, p, h): (usize, usize, usize, usize),
    score_scale: f64,
    softmax_shift: u32,
) -> Graph {
    let sx = 2f64.powi(-4);
    b.linear("v", "x", r.i8s(h * p * e), r.i32s(h * p, 300), &[ws(e)], sx)
        .unwrap();
    let v_h = b.split_heads("v", h).unwrap();
    b.matmul("scores", q_h, k_h, true, score_scale).unwrap();
    b.softmax_at("attn", "scores", softmax_shift).unwrap();
    b.matmul("ctx_h", "attn", &v_h, false, sx).unwrap();
    b.merge_heads("ctx", "ctx_h").unwrap();
    b.linear(
        "out",
        "ctx",
        r.i8s(e * h * p),
        r.i32s(e, 300),
        &[ws(h * p)],
        sx,
    )
    .unwrap();
    b.output("out");
    b.finish().unwrap()
}

/// Classical MHSA stage: Q, K, V projections (E -> H P), per-head attention, output projection.
pub fn mhsa(shape: (usize, usize, usize, usize), seed: u64, softmax_shift: u32) -> Graph {
    let (s, e, p, h) = shape;
    let mut r = Rng(seed | 1);
    let mut b = GraphBuilder::new();
    let sx = 2f64.powi(-4);
    b.input("x", &[s, e], sx).unwrap();
    for n in ["q", "k"] {
        b.linear(n, "x", r.i8s(h * p * e), r.i32s(h * p, 300), &[ws(e)], sx)
            .unwrap();
    }
    let q_h = b.split_heads("q", h).unwrap();
    let k_h = b.split_heads("k", h).unwrap();
    finish_stage(b, &mut r, &q_h, &k_h, shape, 2f64.powi(-2), softmax_shift)
}

/// FWSA stage written in quant's op set: `M2 = X W*` (E -> H E), keys = `X` replicated per
/// head by an exact identity Linear, then the same attention and output projection.
pub fn fwsa(shape: (usize, usize, usize, usize), seed: u64, softmax_shift: u32) -> Graph {
    let (s, e, _p, h) = shape;
    let mut r = Rng(seed | 1);
    let mut b = GraphBuilder::new();
    let sx = 2f64.powi(-4);
    b.input("x", &[s, e], sx).unwrap();
    b.linear(
        "m2",
        "x",
        r.i8s(h * e * e),
        r.i32s(h * e, 300),
        &[ws(e)],
        sx,
    )
    .unwrap();
    let eye: Vec<i8> = (0..h * e * e)
        .map(|idx| i8::from((idx / e) % e == idx % e))
        .collect();
    b.node(
        "xrep",
        Op::Linear {
            in_features: e,
            out_features: h * e,
            weight: eye,
            bias: vec![0; h * e],
            requant: Requant::PerTensor(Dyadic::ONE),
        },
        &["x"],
        sx,
    )
    .unwrap();
    let q_h = b.split_heads("m2", h).unwrap();
    let k_h = b.split_heads("xrep", h).unwrap();
    finish_stage(b, &mut r, &q_h, &k_h, shape, 1.0, softmax_shift)
}
