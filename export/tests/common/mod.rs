//! Shared helpers of the export tests: a deterministic RNG, graphs, and target selection.
#![allow(dead_code)]

pub mod attention;

use export::{Target, verify};
use quant::graph::{Op, Window};
use quant::{Graph, GraphBuilder};

/// xorshift64* (same as quant's tests).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| (self.next() >> 32) as i8).collect()
    }
    pub fn i32s(&mut self, n: usize, lim: i32) -> Vec<i32> {
        (0..n)
            .map(|_| (self.next() % (2 * lim as u64 + 1)) as i32 - lim)
            .collect()
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn f32s(&mut self, n: usize, a: f32, b: f32) -> Vec<f32> {
        (0..n).map(|_| a + (b - a) * self.unit() as f32).collect()
    }
}

/// Random samples plus the saturation edge cases (all -128, all 127, alternating).
pub fn samples(len: usize, random: usize, seed: u64) -> Vec<Vec<i8>> {
    let mut r = Rng(seed | 1);
    let mut v: Vec<Vec<i8>> = (0..random).map(|_| r.i8s(len)).collect();
    v.push(vec![-128; len]);
    v.push(vec![127; len]);
    v.push(
        (0..len)
            .map(|i| if i % 2 == 0 { -128 } else { 127 })
            .collect(),
    );
    v.push((0..len).map(|i| (i % 7) as i8 - 3).collect());
    v
}

/// `rows x cols` random weights with the blocks of `block` along `cols` for which
/// `keep(row, block index)` is false set to zero.
pub fn pruned(
    r: &mut Rng,
    rows: usize,
    cols: usize,
    block: usize,
    keep: impl Fn(usize, usize) -> bool,
) -> Vec<i8> {
    let mut w = r.i8s(rows * cols);
    for (i, v) in w.iter_mut().enumerate() {
        let (row, col) = (i / cols, i % cols);
        if !keep(row, col / block) {
            *v = 0;
        } else if *v == 0 {
            *v = 1;
        }
    }
    w
}

/// The targets whose tools are installed. A missing tool skips the target (printing why)
/// unless `CI` is set, where it is a failure.
pub fn available(targets: &[Target]) -> Vec<Target> {
    targets
        .iter()
        .copied()
        .filter(|t| match t.check_tools() {
            Ok(()) => true,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED target {t}: {e}");
                false
            }
            Err(e) => panic!("CI is set but target {t} is unavailable: {e}"),
        })
        .collect()
}

/// Verifies `g` on `targets` with random + edge samples; panics on any mismatch.
pub fn check_on(g: &Graph, targets: &[Target], seed: u64) {
    check_n(g, targets, seed, 4)
}

/// [`check_on`] with `random` random samples (plus the 4 edge samples).
pub fn check_n(g: &Graph, targets: &[Target], seed: u64, random: usize) {
    let len: usize = g.inputs.iter().map(|i| g.tensor(i).unwrap().numel()).sum();
    check_inputs(g, targets, &samples(len, random, seed));
}

/// Verifies `g` on the installed ones of `targets` with the inputs `xs`; panics on any
/// mismatch.
pub fn check_inputs(g: &Graph, targets: &[Target], xs: &[Vec<i8>]) {
    let ts = available(targets);
    if ts.is_empty() {
        return;
    }
    let t0 = std::time::Instant::now();
    let rep = verify(g, xs, &ts).unwrap_or_else(|e| panic!("{e}"));
    for t in &rep.targets {
        eprintln!(
            "{}: {} samples, build {:.2}s, run {:.2}s, mismatches {}",
            t.target, t.samples, t.build_s, t.run_s, t.mismatches
        );
    }
    eprintln!("verify total {:.2}s", t0.elapsed().as_secs_f64());
    rep.ensure_exact().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rep.targets.len(), ts.len());
}

/// A one-block KWT-like transformer (as in quant's tests): [T, F] input, class token,
/// positional embedding, 2-head attention, MLP with GELU, class-token head.
pub fn tiny_transformer(seed: u64) -> Graph {
    let (t, f, d, h, mlp, classes) = (6, 10, 8, 2, 16, 3);
    let mut r = Rng(seed | 1);
    let mut b = GraphBuilder::new();
    let s = 2f64.powi(-4);
    b.input("x", &[t, f], s).unwrap();
    b.linear("embed", "x", r.i8s(d * f), r.i32s(d, 500), &[0.01], s)
        .unwrap();
    b.same_scale("cls", "embed", Op::ConcatClassToken { token: r.i8s(d) })
        .unwrap();
    b.add_embedding("pos", "cls", r.i8s((t + 1) * d), 0.02, s)
        .unwrap();
    b.layer_norm(
        "ln1",
        "pos",
        &r.f32s(d, 0.5, 1.5),
        &r.f32s(d, -0.2, 0.2),
        1e-5,
        2f64.powi(-5),
    )
    .unwrap();
    for name in ["q", "k", "v"] {
        b.linear(name, "ln1", r.i8s(d * d), r.i32s(d, 200), &[0.02], s)
            .unwrap();
        b.split_heads(name, h).unwrap();
    }
    b.matmul("scores", "q_h", "k_h", true, 2f64.powi(-3))
        .unwrap();
    b.softmax("attn", "scores").unwrap();
    b.matmul("ctx_h", "attn", "v_h", false, s).unwrap();
    b.merge_heads("ctx", "ctx_h").unwrap();
    let pc: Vec<f64> = r.f32s(d, 0.01, 0.03).iter().map(|&v| v as f64).collect();
    b.linear("proj", "ctx", r.i8s(d * d), r.i32s(d, 100), &pc, s)
        .unwrap();
    b.add("res1", "pos", "proj", s).unwrap();
    b.scaled_layer_norm(
        "ln2",
        "res1",
        &r.f32s(d, 0.5, 1.5),
        &r.f32s(d, -0.2, 0.2),
        1e-5,
        2f64.powi(-5),
    )
    .unwrap();
    b.linear(
        "fc1",
        "ln2",
        r.i8s(mlp * d),
        r.i32s(mlp, 100),
        &[0.02],
        2f64.powi(-4),
    )
    .unwrap();
    b.gelu("gelu", "fc1", 2f64.powi(-4)).unwrap();
    b.linear("fc2", "gelu", r.i8s(d * mlp), r.i32s(d, 100), &[0.02], s)
        .unwrap();
    b.add("res2", "res1", "fc2", s).unwrap();
    b.same_scale("tok", "res2", Op::SelectToken { index: 0 })
        .unwrap();
    b.linear(
        "head",
        "tok",
        r.i8s(classes * d),
        r.i32s(classes, 100),
        &[0.03],
        2f64.powi(-3),
    )
    .unwrap();
    b.output("head");
    b.finish().unwrap()
}

/// A small CNN (as in quant's tests): conv, relu, depthwise, max/avg pool, GAP, linear.
pub fn tiny_cnn(seed: u64) -> Graph {
    let mut r = Rng(seed | 1);
    let mut b = GraphBuilder::new();
    b.input("img", &[9, 7, 3], 2f64.powi(-6)).unwrap();
    let w3 = Window {
        k: [3, 3],
        stride: [2, 1],
        pad: [1, 1],
    };
    b.conv2d(
        "conv",
        "img",
        w3,
        r.i8s(4 * 9 * 3),
        r.i32s(4, 1000),
        &[0.01, 0.02, 0.015, 0.03],
        2f64.powi(-5),
    )
    .unwrap();
    b.same_scale("relu", "conv", Op::Relu).unwrap();
    b.depthwise_conv2d(
        "dw",
        "relu",
        Window {
            k: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
        },
        r.i8s(9 * 4),
        r.i32s(4, 300),
        &[0.02],
        2f64.powi(-5),
    )
    .unwrap();
    b.same_scale(
        "max",
        "dw",
        Op::MaxPool2d(Window {
            k: [2, 2],
            stride: [2, 2],
            pad: [1, 1],
        }),
    )
    .unwrap();
    b.same_scale(
        "avg",
        "max",
        Op::AvgPool2d(Window {
            k: [2, 2],
            stride: [1, 1],
            pad: [0, 1],
        }),
    )
    .unwrap();
    b.same_scale("gap", "avg", Op::GlobalAvgPool).unwrap();
    b.linear(
        "fc",
        "gap",
        r.i8s(5 * 4),
        r.i32s(5, 100),
        &[0.05],
        2f64.powi(-3),
    )
    .unwrap();
    b.output("fc");
    b.finish().unwrap()
}
