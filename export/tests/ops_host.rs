//! Per-op bit-exactness of the C runtime against quant's interpreter, on host gcc with
//! ASan/UBSan. Each graph has a normal output and, where the op requantizes, a second one with
//! a tiny output scale so that most values saturate.

mod common;

use common::{Rng, check_n};
use export::Target;
use quant::IntLayerNorm;
use quant::graph::{Op, Window};
use quant::{Graph, GraphBuilder};

const HOST: &[Target] = &[Target::Host];

/// Many random samples: host runs are cheap and rare cases (exact ties, odd sums) need them.
fn check_on(g: &Graph, targets: &[Target], seed: u64) {
    check_n(g, targets, seed, 60)
}

fn finish(mut b: GraphBuilder, outs: &[&str]) -> Graph {
    for o in outs {
        b.output(o);
    }
    b.finish().unwrap()
}

#[test]
fn linear_per_tensor_and_per_channel() {
    let mut r = Rng(3);
    let mut b = GraphBuilder::new();
    // in_f = 11: exercises the DSP loop's tail on Cortex-M (not a multiple of 4)
    b.input("x", &[5, 11], 2f64.powi(-4)).unwrap();
    b.linear(
        "pt",
        "x",
        r.i8s(7 * 11),
        r.i32s(7, 3000),
        &[0.01],
        2f64.powi(-4),
    )
    .unwrap();
    let ws: Vec<f64> = (0..7).map(|i| 0.005 + 0.003 * i as f64).collect();
    b.linear(
        "pc",
        "x",
        r.i8s(7 * 11),
        r.i32s(7, 3000),
        &ws,
        2f64.powi(-3),
    )
    .unwrap();
    // tiny output scale: saturates to -128 / 127
    b.linear(
        "sat",
        "x",
        r.i8s(7 * 11),
        r.i32s(7, 30),
        &[0.05],
        2f64.powi(-12),
    )
    .unwrap();
    // power-of-two scale ratio: many exact ties (round half up, negative and positive)
    b.linear(
        "pow2",
        "x",
        r.i8s(7 * 11),
        r.i32s(7, 300),
        &[2f64.powi(-6)],
        2f64.powi(-3),
    )
    .unwrap();
    check_on(&finish(b, &["pt", "pc", "sat", "pow2"]), HOST, 1);
}

#[test]
fn matmul_plain_and_transposed() {
    let mut b = GraphBuilder::new();
    b.input("a", &[2, 3, 6], 2f64.powi(-4)).unwrap();
    b.input("b", &[2, 6, 5], 2f64.powi(-5)).unwrap();
    b.input("bt", &[2, 5, 6], 2f64.powi(-3)).unwrap();
    b.matmul("mm", "a", "b", false, 2f64.powi(-2)).unwrap();
    b.matmul("mmt", "a", "bt", true, 2f64.powi(-1)).unwrap();
    b.matmul("sat", "a", "bt", true, 2f64.powi(-9)).unwrap();
    check_on(&finish(b, &["mm", "mmt", "sat"]), HOST, 2);
}

/// Softmax probabilities (zero point -128) as a MatMul's first operand: plain (the scalar
/// 4-column loop adds the offset) and transposed (the SIMD dot products, corrected by
/// `128 sum b`), with K and N past the 4-wide blocks and their tails.
#[test]
fn matmul_of_softmax_probabilities() {
    let mut b = GraphBuilder::new();
    b.input("s", &[2, 3, 9], 2f64.powi(-3)).unwrap();
    b.input("v", &[2, 9, 7], 2f64.powi(-4)).unwrap();
    b.input("vt", &[2, 7, 9], 2f64.powi(-4)).unwrap();
    b.softmax("p", "s").unwrap();
    b.matmul("pv", "p", "v", false, 2f64.powi(-4)).unwrap();
    b.matmul("pvt", "p", "vt", true, 2f64.powi(-4)).unwrap();
    b.matmul("sat", "p", "vt", true, 2f64.powi(-12)).unwrap();
    check_on(&finish(b, &["pv", "pvt", "sat"]), HOST, 9);
}

#[test]
fn add_and_requant() {
    let mut b = GraphBuilder::new();
    b.input("a", &[4, 9], 2f64.powi(-4)).unwrap();
    b.input("b", &[4, 9], 0.037).unwrap();
    b.add("add", "a", "b", 0.05).unwrap();
    b.add("sat", "a", "b", 0.004).unwrap();
    b.requant("rq", "a", 0.011).unwrap();
    b.requant("rq_up", "b", 3.0).unwrap();
    b.requant("rq_half", "a", 2f64.powi(-3)).unwrap();
    b.requant("rq_eighth", "a", 2f64.powi(-1)).unwrap();
    b.add("add_pow2", "a", "rq_half", 2f64.powi(-2)).unwrap();
    check_on(
        &finish(
            b,
            &[
                "add",
                "sat",
                "rq",
                "rq_up",
                "rq_half",
                "rq_eighth",
                "add_pow2",
            ],
        ),
        HOST,
        3,
    );
}

#[test]
fn relu_and_gelu() {
    let mut b = GraphBuilder::new();
    b.input("x", &[3, 13], 2f64.powi(-4)).unwrap();
    b.same_scale("relu", "x", Op::Relu).unwrap();
    b.gelu("gelu", "x", 2f64.powi(-4)).unwrap();
    b.gelu("gelu_fine", "x", 2f64.powi(-7)).unwrap();
    b.input("w", &[2, 8], 0.3).unwrap();
    b.gelu("gelu_wide", "w", 0.25).unwrap();
    b.gelu_table("gelu_table", "x", 2f64.powi(-5)).unwrap();
    b.gelu_table("gelu_table_wide", "w", 0.25).unwrap();
    check_on(
        &finish(
            b,
            &[
                "relu",
                "gelu",
                "gelu_fine",
                "gelu_wide",
                "gelu_table",
                "gelu_table_wide",
            ],
        ),
        HOST,
        4,
    );
}

#[test]
fn softmax_at_several_scales() {
    let mut b = GraphBuilder::new();
    // different input scales give different internal shifts j (positive and negative)
    // and wide rows reach the z >= 31 branch of i-exp
    let mut outs = Vec::new();
    for (i, sc) in [2f64.powi(-6), 2f64.powi(-3), 0.3, 2.0].iter().enumerate() {
        let x = format!("x{i}");
        b.input(&x, &[3, 10], *sc).unwrap();
        let o = format!("sm{i}");
        b.softmax(&o, &x).unwrap();
        outs.push(o);
    }
    b.input("row1", &[4, 1], 0.1).unwrap();
    b.softmax("sm_one", "row1").unwrap();
    outs.push("sm_one".into());
    // finer output steps (2^-9 .. 2^-16), long rows (the reciprocal path) and saturation
    b.input("long", &[2, 700], 2f64.powi(-4)).unwrap();
    for shift in [1, 4, 8] {
        let o = format!("sm_shift{shift}");
        b.softmax_at(&o, "long", shift).unwrap();
        outs.push(o);
    }
    let outs: Vec<&str> = outs.iter().map(|s| s.as_str()).collect();
    check_on(&finish(b, &outs), HOST, 5);
}

#[test]
fn layernorm_and_scaled_layernorm() {
    let mut r = Rng(6);
    let mut b = GraphBuilder::new();
    let d = 24;
    b.input("x", &[5, d], 2f64.powi(-4)).unwrap();
    let (g, be) = (r.f32s(d, 0.5, 1.5), r.f32s(d, -0.3, 0.3));
    b.layer_norm("ln", "x", &g, &be, 1e-5, 2f64.powi(-5))
        .unwrap();
    b.scaled_layer_norm("sln", "x", &g, &be, 1e-5, 2f64.powi(-5))
        .unwrap();
    // saturating outputs and a large eps
    b.layer_norm("ln_sat", "x", &g, &be, 1e-5, 2f64.powi(-9))
        .unwrap();
    b.scaled_layer_norm("sln_eps", "x", &g, &be, 0.5, 2f64.powi(-6))
        .unwrap();
    // long rows take the r > 0 path (squares shifted before summing)
    b.input("long", &[2, 700], 0.02).unwrap();
    let (g2, be2) = (r.f32s(700, -1.0, 1.0), r.f32s(700, -0.5, 0.5));
    b.layer_norm("ln_long", "long", &g2, &be2, 1e-5, 2f64.powi(-5))
        .unwrap();
    b.scaled_layer_norm("sln_long", "long", &g2, &be2, 1e-5, 2f64.powi(-5))
        .unwrap();
    // eps so large in variance units that eps_q saturates and var + eps_q overflows u32
    // (the saturating add), at a tiny input scale
    b.input("tiny", &[3, 16], 2f64.powi(-14)).unwrap();
    let (g3, be3) = (r.f32s(16, 0.5, 1.5), r.f32s(16, -0.3, 0.3));
    b.layer_norm("ln_eps_sat", "tiny", &g3, &be3, 1.0, 2f64.powi(-5))
        .unwrap();
    // Scaled-LayerNorm with many fractional bits: the int16 saturations of n and of
    // n * gamma + beta are reached
    for (name, bits) in [("sln_g12", 12), ("sln_g15", 15)] {
        let ln =
            IntLayerNorm::from_float(&g, &be, 1e-5, 2f64.powi(-4), 2f64.powi(-6), bits).unwrap();
        b.node(name, Op::ScaledLayerNorm(ln), &["x"], 2f64.powi(-6))
            .unwrap();
    }
    // n beyond int16 with a negative beta that brings n * gamma + beta back into range:
    // only the clamp of n (before the affine) decides the result
    let mut g4 = vec![0.01f32; d];
    g4[0] = 1.27;
    let ln = IntLayerNorm::from_float(&g4, &[-0.006; 24], 1e-5, 2f64.powi(-4), 2f64.powi(-13), 15)
        .unwrap();
    b.node("sln_n16", Op::ScaledLayerNorm(ln), &["x"], 2f64.powi(-13))
        .unwrap();
    check_on(
        &finish(
            b,
            &[
                "sln_n16",
                "ln",
                "sln",
                "ln_sat",
                "sln_eps",
                "ln_long",
                "sln_long",
                "ln_eps_sat",
                "sln_g12",
                "sln_g15",
            ],
        ),
        HOST,
        6,
    );
}

#[test]
fn token_ops_and_embedding() {
    let mut r = Rng(7);
    let mut b = GraphBuilder::new();
    b.input("x", &[5, 6], 2f64.powi(-4)).unwrap();
    b.same_scale("cls", "x", Op::ConcatClassToken { token: r.i8s(6) })
        .unwrap();
    b.add_embedding("pos", "cls", r.i8s(36), 0.02, 2f64.powi(-4))
        .unwrap();
    b.add_embedding("pos_sat", "cls", r.i8s(36), 0.5, 2f64.powi(-6))
        .unwrap();
    b.same_scale("sel0", "pos", Op::SelectToken { index: 0 })
        .unwrap();
    b.same_scale("sel5", "pos", Op::SelectToken { index: 5 })
        .unwrap();
    b.same_scale("mean", "pos", Op::SeqMeanPool).unwrap();
    check_on(
        &finish(b, &["pos", "pos_sat", "sel0", "sel5", "mean", "cls"]),
        HOST,
        7,
    );
}

#[test]
fn reshape_and_transpose() {
    let mut b = GraphBuilder::new();
    b.input("x", &[2, 3, 4, 5], 0.1).unwrap();
    b.same_scale(
        "t4",
        "x",
        Op::Transpose {
            perm: vec![3, 1, 0, 2],
        },
    )
    .unwrap();
    b.same_scale("r", "x", Op::Reshape { shape: vec![6, 20] })
        .unwrap();
    b.same_scale("t2", "r", Op::Transpose { perm: vec![1, 0] })
        .unwrap();
    // a reshape of a reshape that is itself an output, and an identity transpose
    b.same_scale("r2", "t2", Op::Reshape { shape: vec![120] })
        .unwrap();
    b.same_scale("t1", "r2", Op::Transpose { perm: vec![0] })
        .unwrap();
    check_on(&finish(b, &["t4", "r", "r2", "t1"]), HOST, 8);
}

#[test]
fn conv_depthwise_pools() {
    let mut r = Rng(9);
    let mut b = GraphBuilder::new();
    b.input("img", &[7, 6, 5], 2f64.powi(-5)).unwrap();
    let w = Window {
        k: [3, 2],
        stride: [2, 1],
        pad: [1, 0],
    };
    b.conv2d(
        "conv",
        "img",
        w,
        r.i8s(4 * 3 * 2 * 5),
        r.i32s(4, 2000),
        &[0.01],
        2f64.powi(-4),
    )
    .unwrap();
    let ws: Vec<f64> = (0..4).map(|i| 0.01 + 0.004 * i as f64).collect();
    b.conv2d(
        "conv_pc",
        "img",
        w,
        r.i8s(4 * 3 * 2 * 5),
        r.i32s(4, 2000),
        &ws,
        2f64.powi(-9),
    )
    .unwrap();
    let dw = Window {
        k: [3, 3],
        stride: [1, 2],
        pad: [1, 1],
    };
    let ws5: Vec<f64> = (0..5).map(|i| 0.02 + 0.01 * i as f64).collect();
    b.depthwise_conv2d(
        "dw",
        "img",
        dw,
        r.i8s(9 * 5),
        r.i32s(5, 500),
        &ws5,
        2f64.powi(-4),
    )
    .unwrap();
    // padding as wide as the kernel: whole windows (the first and last rows) lie in the
    // padding and give the bias alone; non-square kernel, stride 3 along H
    let dw_pad = Window {
        k: [2, 3],
        stride: [3, 1],
        pad: [2, 2],
    };
    b.depthwise_conv2d(
        "dw_pad",
        "img",
        dw_pad,
        r.i8s(6 * 5),
        r.i32s(5, 500),
        &ws5,
        2f64.powi(-4),
    )
    .unwrap();
    let pw = Window {
        k: [3, 3],
        stride: [2, 2],
        pad: [1, 1],
    };
    b.same_scale("max", "img", Op::MaxPool2d(pw)).unwrap();
    b.same_scale("avg", "img", Op::AvgPool2d(pw)).unwrap();
    b.same_scale("gap", "img", Op::GlobalAvgPool).unwrap();
    // the dense convolution reads each kernel row's in-range taps as one run: padding on both
    // sides of both axes, 6 output channels (a block of 4 and 2 alone), and a one-channel stem
    // (runs of 1 to 3 bytes)
    let padded = Window {
        k: [3, 3],
        stride: [2, 1],
        pad: [1, 1],
    };
    b.conv2d(
        "conv_pad",
        "img",
        padded,
        r.i8s(6 * 9 * 5),
        r.i32s(6, 2000),
        &[0.01],
        2f64.powi(-4),
    )
    .unwrap();
    b.input("mono", &[9, 8, 1], 2f64.powi(-4)).unwrap();
    b.conv2d(
        "stem",
        "mono",
        padded,
        r.i8s(5 * 9),
        r.i32s(5, 200),
        &[0.02],
        2f64.powi(-4),
    )
    .unwrap();
    check_on(
        &finish(
            b,
            &[
                "conv", "conv_pc", "dw", "dw_pad", "max", "avg", "gap", "conv_pad", "stem",
            ],
        ),
        HOST,
        9,
    );
}
