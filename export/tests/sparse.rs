//! Sparse kernels (`runtime/nas_sparse.c`) on every target: block-pruned Linear, Conv2d,
//! pointwise and depthwise layers are stored run-length coded, run bit-exact against the
//! interpreter, and the exported constant bytes are the planner's (the cost model's) figure.

mod common;

use common::{Rng, check_on, pruned};
use export::plan::estimate;
use export::{ExportLimits, Int8Options, Target, generate_with};
use quant::graph::{Op, Window};
use quant::{Graph, GraphBuilder};

/// 6 tokens (a block of 4 rows and 2 single rows in the kernel), a Linear of 1030 inputs: a
/// tail block (1030 % 4 = 2), gaps longer than 255 blocks (filler
/// entries), rows with no entry at all; then a Linear pruned in blocks of 2.
fn sparse_mlp(seed: u64) -> Graph {
    let mut r = Rng(seed | 1);
    let (t, f, h, o) = (6, 1030, 12, 6);
    let mut b = GraphBuilder::new();
    b.input("x", &[t, f], 2f64.powi(-4)).unwrap();
    // row 0: first and last block only (gap 256 > 255); rows 1..3: nothing; others: 1 in 5
    let w1 = pruned(&mut r, h, f, 4, |row, blk| match row {
        0 => blk == 0 || blk == 257,
        1..=3 => false,
        _ => (blk + row) % 5 == 0,
    });
    b.linear("fc1", "x", w1, r.i32s(h, 3000), &[0.002], 2f64.powi(-3))
        .unwrap();
    b.same_scale("relu", "fc1", Op::Relu).unwrap();
    let w2 = pruned(&mut r, o, h, 2, |row, blk| (row + blk) % 3 == 0);
    b.linear(
        "fc2",
        "relu",
        w2,
        r.i32s(o, 500),
        &[0.03, 0.02, 0.04, 0.01, 0.05, 0.02],
        2f64.powi(-2),
    )
    .unwrap();
    b.output("fc2");
    b.finish().unwrap()
}

/// 3x3 Conv2d with 6 input channels (blocks of 4 straddle kernel positions), a pointwise
/// Conv2d in blocks of 4 channels, a depthwise 3x3 keeping one kernel row per channel, GAP and
/// a dense head.
fn sparse_cnn(seed: u64) -> Graph {
    let mut r = Rng(seed | 1);
    let (cin, c) = (6, 16);
    let mut b = GraphBuilder::new();
    b.input("img", &[7, 6, cin], 2f64.powi(-6)).unwrap();
    let w3 = Window {
        k: [3, 3],
        stride: [1, 2],
        pad: [1, 1],
    };
    let wc = pruned(&mut r, c, 9 * cin, 4, |row, blk| (row * 3 + blk) % 4 == 0);
    b.conv2d(
        "conv",
        "img",
        w3,
        wc,
        r.i32s(c, 1000),
        &[0.01],
        2f64.powi(-5),
    )
    .unwrap();
    b.same_scale("relu", "conv", Op::Relu).unwrap();
    let pw = Window {
        k: [1, 1],
        stride: [1, 1],
        pad: [0, 0],
    };
    let wp = pruned(&mut r, c, c, 4, |row, blk| (row + blk) % 4 == 1);
    b.conv2d("pw", "relu", pw, wp, r.i32s(c, 500), &[0.02], 2f64.powi(-5))
        .unwrap();
    // depthwise weights are [kh, kw, c]: channel ch keeps kernel row ch % 3
    let mut wd = r.i8s(9 * c);
    for (i, v) in wd.iter_mut().enumerate() {
        let (ky, ch) = (i / (3 * c), i % c);
        if ky != ch % 3 {
            *v = 0;
        }
    }
    b.depthwise_conv2d(
        "dw",
        "pw",
        Window {
            k: [3, 3],
            stride: [2, 2],
            pad: [1, 1],
        },
        wd,
        r.i32s(c, 300),
        &[0.02],
        2f64.powi(-5),
    )
    .unwrap();
    b.same_scale("gap", "dw", Op::GlobalAvgPool).unwrap();
    b.linear(
        "fc",
        "gap",
        r.i8s(5 * c),
        r.i32s(5, 100),
        &[0.05],
        2f64.powi(-3),
    )
    .unwrap();
    b.output("fc");
    b.finish().unwrap()
}

fn f746() -> cost::target::Target {
    cost::target::Target::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32f746.ron"),
    )
    .unwrap()
}

/// The nodes whose weights the plan stores coded, with the coded and the dense constant bytes.
fn coded_nodes(g: &Graph) -> Vec<String> {
    let (plan, _) = estimate(g, &f746(), &Int8Options::default()).unwrap();
    g.nodes
        .iter()
        .zip(&plan.coded)
        .filter(|(_, c)| c.is_some())
        .map(|(n, _)| n.name.clone())
        .collect()
}

/// Sizes: coded < dense, the generated constants equal the estimate's, and the coded
/// streams decode to the graph's weights.
fn check_sizes(g: &Graph) {
    let sparse = Int8Options::default();
    let dense = Int8Options {
        sparse_weights: false,
        ..Default::default()
    };
    let (plan, est) = estimate(g, &f746(), &sparse).unwrap();
    let (_, est_dense) = estimate(g, &f746(), &dense).unwrap();
    assert!(est.weight_bytes < est_dense.weight_bytes);
    assert!(est.macs < est_dense.macs);
    let proj = generate_with(g, "model", &ExportLimits::default(), &sparse).unwrap();
    assert_eq!(proj.report.weight_bytes as u64, est.weight_bytes);
    let src = &proj.files.iter().find(|(f, _)| f == "model.c").unwrap().1;
    for (node, coded) in g.nodes.iter().zip(&plan.coded) {
        let Some(e) = coded else { continue };
        let decoded = rle::decode(e).unwrap();
        match &node.op {
            Op::Linear { weight, .. } | Op::Conv2d { weight, .. } => {
                assert_eq!(&decoded, weight, "{}", node.name)
            }
            Op::DepthwiseConv2d {
                weight, channels, ..
            } => {
                for (i, &v) in decoded.iter().enumerate() {
                    assert_eq!(v, weight[(i % 9) * channels + i / 9], "{}", node.name);
                }
            }
            other => panic!("{} coded: {}", node.name, other.kind()),
        }
    }
    assert!(src.contains("_rle_s8("), "{src}");
    println!(
        "constants {} B coded vs {} B dense; MACs {} vs {}",
        est.weight_bytes, est_dense.weight_bytes, est.macs, est_dense.macs
    );
}

#[test]
fn sparse_linear_bit_exact_on_all_targets() {
    let g = sparse_mlp(3);
    assert_eq!(coded_nodes(&g), ["fc1", "fc2"]);
    let (plan, _) = estimate(&g, &f746(), &Int8Options::default()).unwrap();
    let fc1 = plan.coded[0].as_ref().unwrap();
    assert_eq!(fc1.block, 4);
    assert!(fc1.zero_entries > 0, "the long gap needs a filler entry");
    assert_eq!(fc1.row_entries[1..4], [0, 0, 0]);
    assert_eq!(plan.coded[2].as_ref().unwrap().block, 2);
    check_sizes(&g);
    check_on(&g, &Target::ALL, 21);
}

#[test]
fn sparse_conv_pointwise_depthwise_bit_exact_on_all_targets() {
    let g = sparse_cnn(5);
    assert_eq!(coded_nodes(&g), ["conv", "pw", "dw"]);
    check_sizes(&g);
    check_on(&g, &Target::ALL, 22);
}

/// Coded depthwise 3 x 3 layers (stride 1, padding 1) over maps 9, 8, 7 and 6 pixels wide: 7,
/// 6, 5 and 4 pixels inside, so the kernel's last pixels inside run as a group overlapping the
/// one before (3 left), one by one (2 and 1 left) and in whole groups; each channel keeps 0-2
/// of its kernel rows (`(ch + layer) % 3` of them, from row `ch % 3` on).
fn sparse_depthwise_widths(seed: u64) -> Graph {
    let mut r = Rng(seed | 1);
    let c = 24;
    let mut b = GraphBuilder::new();
    let mut x = b.input("x", &[5, 9, c], 2f64.powi(-5)).unwrap();
    let win = Window {
        k: [3, 3],
        stride: [1, 1],
        pad: [1, 1],
    };
    for layer in 0..4 {
        let mut w = r.i8s(9 * c);
        for (i, v) in w.iter_mut().enumerate() {
            let (ky, ch) = (i / (3 * c), i % c);
            if (ky + 3 - ch % 3) % 3 >= (ch + layer) % 3 {
                *v = 0;
            } else if *v == 0 {
                *v = 1;
            }
        }
        let dw = format!("dw{layer}");
        b.depthwise_conv2d(&dw, &x, win, w, r.i32s(c, 300), &[0.02], 2f64.powi(-5))
            .unwrap();
        // one pixel narrower for the next layer
        x = b
            .same_scale(
                &format!("narrow{layer}"),
                &dw,
                Op::MaxPool2d(Window {
                    k: [1, 2],
                    stride: [1, 1],
                    pad: [0, 0],
                }),
            )
            .unwrap();
    }
    b.output(&x);
    b.finish().unwrap()
}

#[test]
fn sparse_depthwise_remainders_bit_exact_on_all_targets() {
    let g = sparse_depthwise_widths(7);
    assert_eq!(coded_nodes(&g), ["dw0", "dw1", "dw2", "dw3"]);
    check_sizes(&g);
    check_on(&g, &Target::ALL, 23);
}
