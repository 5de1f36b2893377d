//! Whole models on every target (host ASan/UBSan, Cortex-M4, Cortex-M7, RV32 under QEMU), plus
//! the export's rejections and reports.

mod common;

use common::{check_on, tiny_cnn, tiny_transformer};
use export::{ExportError, ExportLimits, Target, TilePolicy, export_c, export_c_with_limits};
use quant::GraphBuilder;
use quant::graph::{Op, Window};

#[test]
fn transformer_block_bit_exact_on_all_targets() {
    check_on(&tiny_transformer(7), &Target::ALL, 11);
}

#[test]
fn cnn_bit_exact_on_all_targets() {
    check_on(&tiny_cnn(5), &Target::ALL, 12);
}

/// Conv2d in blocks of 4 output channels plus a remainder (6 channels), an input depth that is
/// not a multiple of 4 (the SIMD loop and its byte tail on Cortex-M), and DepthwiseConv2d on 5
/// channels (a 4-channel SIMD block and a remainder on Cortex-M, unaligned words); windows
/// clipped at every edge and, with a padding of 2, wholly in the padding (bias only); per-tensor
/// and per-channel requantization.
#[test]
fn conv_channel_blocks_bit_exact_on_all_targets() {
    let mut r = common::Rng(21);
    let mut b = GraphBuilder::new();
    b.input("img", &[6, 7, 5], 2f64.powi(-5)).unwrap();
    for (name, pad, stride) in [("conv_p1", 1, 1), ("conv_p2", 2, 2)] {
        let w = Window {
            k: [3, 3],
            stride: [stride, 1],
            pad: [pad, pad],
        };
        let ws: Vec<f64> = (0..6).map(|i| 0.01 + 0.003 * i as f64).collect();
        let scales: &[f64] = if pad == 1 { &[0.01] } else { &ws };
        b.conv2d(
            name,
            "img",
            w,
            r.i8s(6 * 3 * 3 * 5),
            r.i32s(6, 2000),
            scales,
            2f64.powi(-4),
        )
        .unwrap();
        b.output(name);
        let dw = format!("dw_p{pad}");
        let ws5: Vec<f64> = (0..5).map(|i| 0.02 + 0.01 * i as f64).collect();
        let dscales: &[f64] = if pad == 1 { &ws5 } else { &[0.03] };
        b.depthwise_conv2d(
            &dw,
            "img",
            w,
            r.i8s(3 * 3 * 5),
            r.i32s(5, 500),
            dscales,
            2f64.powi(-4),
        )
        .unwrap();
        b.output(&dw);
    }
    check_on(&b.finish().unwrap(), &Target::ALL, 13);
}

/// Conv2d whose kernel rows are not whole words (`kw cin` bytes: a one-channel stem's 3): a
/// window inside the input is gathered into one operand (at most 64 bytes), borders take the
/// per-row path. One, three and seven input channels (the largest gathered 3 x 3 window), a
/// 5 x 5 and a 1 x 3 kernel; 7 outputs (a block of 4 and a remainder); stride 2 without
/// padding; per-channel multipliers all of the s >= 33 form (read per output), with one s < 33
/// channel, and per tensor. Ten channels (90 bytes, not gathered) and eight (whole words) keep
/// the per-row path beside them.
#[test]
fn narrow_conv_window_gather_bit_exact_on_all_targets() {
    let mut r = common::Rng(53);
    let mut b = GraphBuilder::new();
    let fast: Vec<f64> = (0..7).map(|i| 0.004 + 0.002 * i as f64).collect();
    let mut mixed = fast.clone();
    mixed[5] = 0.5; // scale ratio 2^-1: shift s < 33
    // (input channels, kernel, padding, stride, output scales)
    type Case<'a> = (usize, [usize; 2], usize, usize, &'a [f64]);
    let cases: [Case; 8] = [
        (1, [3, 3], 1, 1, &fast),
        (1, [3, 3], 1, 1, &mixed),
        (1, [5, 5], 2, 1, &[0.01]),
        (1, [1, 3], 0, 2, &fast),
        (3, [3, 3], 0, 2, &fast),
        (7, [3, 3], 1, 1, &mixed),
        (8, [3, 3], 1, 1, &fast),
        (10, [3, 3], 1, 1, &fast),
    ];
    for (i, (cin, k, pad, stride, scales)) in cases.into_iter().enumerate() {
        let x = format!("x{i}");
        b.input(&x, &[9, 8, cin], 2f64.powi(-5)).unwrap();
        let win = Window {
            k,
            stride: [stride, stride],
            pad: [pad, pad],
        };
        let n = format!("conv{i}");
        let oc = if scales.len() > 1 { scales.len() } else { 6 };
        b.conv2d(
            &n,
            &x,
            win,
            r.i8s(oc * k[0] * k[1] * cin),
            r.i32s(oc, 2000),
            scales,
            2f64.powi(-4),
        )
        .unwrap();
        b.output(&n);
    }
    check_on(&b.finish().unwrap(), &Target::ALL, 31);
}

/// The Linear kernel's operand-tile path (Cortex-M DSP builds: 4 input rows extended once,
/// every weight row read once per 4 rows): 9 rows (two tiles and a remainder row), an input
/// width of 4 (one step: the peeled last step alone) and of 12; per-tensor, per-channel,
/// saturating and s < 33 (not the prepared fast form) requantization; a pointwise Conv2d (run
/// by the Linear kernel over its pixels).
#[test]
fn linear_operand_tiles_bit_exact_on_all_targets() {
    let mut r = common::Rng(41);
    let mut b = GraphBuilder::new();
    let mut outs = Vec::new();
    for in_f in [4, 12] {
        let x = format!("x{in_f}");
        b.input(&x, &[9, in_f], 2f64.powi(-4)).unwrap();
        let ws: Vec<f64> = (0..7).map(|i| 0.004 + 0.002 * i as f64).collect();
        let cases: [(&str, Vec<f64>, f64); 4] = [
            ("pt", vec![0.01], 2f64.powi(-4)),
            ("pc", ws, 2f64.powi(-3)),
            ("sat", vec![0.05], 2f64.powi(-12)),
            // scale ratio 2^-1: shift s < 33, the general requantization
            ("big", vec![0.5], 2f64.powi(-4)),
        ];
        for (name, scales, out) in cases {
            let n = format!("{name}{in_f}");
            b.linear(&n, &x, r.i8s(7 * in_f), r.i32s(7, 300), &scales, out)
                .unwrap();
            outs.push(n);
        }
    }
    b.input("img", &[3, 3, 8], 2f64.powi(-5)).unwrap();
    b.conv2d(
        "pw",
        "img",
        Window {
            k: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
        },
        r.i8s(6 * 8),
        r.i32s(6, 500),
        &[0.02],
        2f64.powi(-4),
    )
    .unwrap();
    outs.push("pw".into());
    for o in &outs {
        b.output(o);
    }
    let g = b.finish().unwrap();
    // every one of them gets a tile (the path under test)
    let plan = export::plan::plan(&g, &export::Int8Options::default()).unwrap();
    let tiles = plan
        .buffers
        .iter()
        .filter(|b| b.name.ends_with(".scratch"))
        .count();
    assert_eq!(tiles, outs.len());
    check_on(&g, &Target::ALL, 14);
}

/// Per-channel requantization in every path of the Linear kernel: the usual case where every
/// channel's multiplier takes the s >= 33 form (read per output in the fast loops) and a layer
/// with one s < 33 channel (the general form for the whole layer); with operand tiles (Cortex-M
/// DSP) and without (the DSP word loop, its byte tail for 10 inputs, the portable blocks of 2
/// rows), 7 outputs (a block of 4 and a remainder), and the Weight-Reuse layout of a fused
/// attention's V projection.
#[test]
fn per_channel_linear_paths_bit_exact_on_all_targets() {
    let mut r = common::Rng(47);
    let mut b = GraphBuilder::new();
    let mut outs = Vec::new();
    for in_f in [8, 10] {
        let x = format!("x{in_f}");
        b.input(&x, &[9, in_f], 2f64.powi(-4)).unwrap();
        let fast: Vec<f64> = (0..7).map(|i| 0.004 + 0.002 * i as f64).collect();
        let mut mixed = fast.clone();
        // scale ratio 2^-1 on channel 5: shift s < 33
        mixed[5] = 0.5;
        for (name, scales) in [("fast", fast), ("mixed", mixed)] {
            let n = format!("{name}{in_f}");
            b.linear(
                &n,
                &x,
                r.i8s(7 * in_f),
                r.i32s(7, 300),
                &scales,
                2f64.powi(-4),
            )
            .unwrap();
            outs.push(n);
        }
    }
    for o in &outs {
        b.output(o);
    }
    let g = b.finish().unwrap();
    let ts = common::available(&Target::ALL);
    let xs = common::samples(9 * 8 + 9 * 10, 3, 23);
    for tiles in [TilePolicy::Always, TilePolicy::Never] {
        let opts = export::Int8Options {
            operand_tiles: tiles,
            ..Default::default()
        };
        export::verify_with(&g, &xs, &ts, &opts)
            .unwrap()
            .ensure_exact()
            .unwrap();
    }
    // the V projection of a fused attention, per channel (its Weight-Reuse output)
    let mut b = GraphBuilder::new();
    b.input("x", &[20, 8], 2f64.powi(-4)).unwrap();
    let ws: Vec<f64> = (0..8).map(|i| 0.01 + 0.002 * i as f64).collect();
    for n in ["q", "k", "v"] {
        b.linear(n, "x", r.i8s(64), r.i32s(8, 300), &ws, 2f64.powi(-4))
            .unwrap();
    }
    let (q, k, v) = (
        b.split_heads("q", 2).unwrap(),
        b.split_heads("k", 2).unwrap(),
        b.split_heads("v", 2).unwrap(),
    );
    b.matmul("s", &q, &k, true, 2f64.powi(-2)).unwrap();
    b.softmax("p", "s").unwrap();
    b.matmul("c", "p", &v, false, 2f64.powi(-4)).unwrap();
    b.merge_heads("o", "c").unwrap();
    b.output("o");
    let g = b.finish().unwrap();
    let p = export::plan::plan(&g, &export::Int8Options::default()).unwrap();
    assert!(
        p.fused.iter().any(|f| f.v_wrl.is_some()),
        "V not in the Weight-Reuse layout"
    );
    check_on(&g, &Target::ALL, 29);
}

/// `--operand-tiles auto`: a chain whose two wide Linears run at the arena's peak (their tiles
/// would raise it) and whose narrow last Linear does not: the plan keeps exactly the free tile,
/// its arena is the arena without tiles, and the mixed program (tiled and untiled Linear calls)
/// is bit-exact on the DSP cores.
#[test]
fn auto_operand_tiles_mix_tiled_and_untiled_layers_bit_exact() {
    let mut r = common::Rng(43);
    let mut b = GraphBuilder::new();
    b.input("x", &[16, 64], 2f64.powi(-4)).unwrap();
    let layers = [
        ("fc1", "x", 64, 256),
        ("fc2", "fc1", 256, 8),
        ("fc3", "fc2", 8, 8),
    ];
    for (name, input, in_f, out_f) in layers {
        b.linear(
            name,
            input,
            r.i8s(out_f * in_f),
            r.i32s(out_f, 300),
            &[0.01],
            2f64.powi(-4),
        )
        .unwrap();
    }
    b.output("fc3");
    let g = b.finish().unwrap();
    let opts = |tiles| export::Int8Options {
        operand_tiles: tiles,
        ..Default::default()
    };
    let tiled = |p: &export::Int8Plan| -> Vec<String> {
        p.buffers
            .iter()
            .filter_map(|b| b.name.strip_suffix(".scratch").map(str::to_string))
            .collect()
    };
    let auto = export::plan::plan(&g, &opts(TilePolicy::Auto)).unwrap();
    let none = export::plan::plan(&g, &opts(TilePolicy::Never)).unwrap();
    let all = export::plan::plan(&g, &opts(TilePolicy::Always)).unwrap();
    assert_eq!(tiled(&auto), ["fc3"]);
    assert_eq!(tiled(&all), ["fc1", "fc2", "fc3"]);
    assert_eq!(auto.arena_bytes, none.arena_bytes);
    assert!(all.arena_bytes > none.arena_bytes);
    let ts = common::available(&[Target::CortexM4, Target::CortexM7]);
    if !ts.is_empty() {
        let xs = common::samples(64 * 16, 3, 19);
        let rep = export::verify_with(&g, &xs, &ts, &opts(TilePolicy::Auto)).unwrap();
        rep.ensure_exact()
            .unwrap_or_else(|e| panic!("auto tiles: {e}"));
        assert_eq!(rep.targets.len(), ts.len());
        for t in &rep.targets {
            eprintln!(
                "{}: {} samples, mismatches {}",
                t.target, t.samples, t.mismatches
            );
        }
    }
}

#[test]
fn unsupported_op_is_rejected_before_writing() {
    let mut b = GraphBuilder::new();
    b.input("x", &[1, 1, 1, 1, 1, 1, 1, 2, 3], 0.1).unwrap();
    b.same_scale(
        "deep_transpose",
        "x",
        Op::Transpose {
            perm: (0..9).rev().collect(),
        },
    )
    .unwrap();
    b.output("deep_transpose");
    let g = b.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("proj");
    let e = export_c(&g, "m", &out).unwrap_err();
    match &e {
        ExportError::Unsupported { node, op, .. } => {
            assert_eq!(node, "deep_transpose");
            assert_eq!(op, "Transpose");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(e.to_string().contains("deep_transpose"));
    assert!(!out.exists(), "nothing may be written");
}

#[test]
fn over_budget_is_rejected_before_writing() {
    let g = tiny_transformer(3);
    let dir = tempfile::tempdir().unwrap();
    let ok = export_c(&g, "kwt", &dir.path().join("ok")).unwrap();
    assert!(ok.arena_bytes > 0 && ok.weight_bytes > 0);

    let out = dir.path().join("sram");
    let lim = ExportLimits {
        sram_bytes: Some(ok.arena_bytes - 1),
        flash_bytes: None,
    };
    match export_c_with_limits(&g, "kwt", &out, &lim).unwrap_err() {
        ExportError::ArenaTooLarge { need, limit } => {
            assert_eq!((need, limit), (ok.arena_bytes, ok.arena_bytes - 1))
        }
        other => panic!("unexpected {other}"),
    }
    assert!(!out.exists());

    let out = dir.path().join("flash");
    let lim = ExportLimits {
        sram_bytes: Some(1 << 20),
        flash_bytes: Some(100),
    };
    match export_c_with_limits(&g, "kwt", &out, &lim).unwrap_err() {
        ExportError::FlashTooLarge { need, limit } => {
            assert_eq!((need, limit), (ok.weight_bytes, 100))
        }
        other => panic!("unexpected {other}"),
    }
    assert!(!out.exists());

    // exactly at the budget fits
    let lim = ExportLimits {
        sram_bytes: Some(ok.arena_bytes),
        flash_bytes: Some(ok.weight_bytes),
    };
    export_c_with_limits(&g, "kwt", &dir.path().join("exact"), &lim).unwrap();
}

#[test]
fn export_writes_project_and_header_matches_report() {
    let g = tiny_transformer(9);
    let dir = tempfile::tempdir().unwrap();
    let rep = export_c(&g, "kwt_tiny", dir.path()).unwrap();
    for f in [
        "kwt_tiny.h",
        "kwt_tiny.c",
        "nas_kernels.h",
        "nas_kernels.c",
        "nas_dsp.h",
        "nas_sparse.h",
        "nas_sparse.c",
        "Makefile",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let h = std::fs::read_to_string(dir.path().join("kwt_tiny.h")).unwrap();
    assert!(h.contains(&format!("#define KWT_TINY_ARENA_BYTES {}", rep.arena_bytes)));
    assert!(h.contains(&format!(
        "#define KWT_TINY_WEIGHT_BYTES {}",
        rep.weight_bytes
    )));
    assert!(h.contains("#define KWT_TINY_INPUT_LEN 60"));
    assert!(h.contains("#define KWT_TINY_OUTPUT_LEN 3"));
    // the planner shares memory: far below the sum of every tensor
    let total: usize = g.tensors.iter().map(|t| t.numel()).sum();
    assert!(rep.arena_bytes < total, "{} vs {total}", rep.arena_bytes);
    match export_c(&g, "9bad", &dir.path().join("x")) {
        Err(ExportError::BadName { name }) => assert_eq!(name, "9bad"),
        other => panic!("names must be C identifiers: {other:?}"),
    }
}

#[test]
fn missing_toolchain_error_names_tool_and_package() {
    let e = ExportError::ToolMissing {
        target: "Rv32".into(),
        tool: "qemu-system-riscv32".into(),
        package: "qemu-system-misc".into(),
    };
    let s = e.to_string();
    assert!(s.contains("qemu-system-riscv32") && s.contains("apt-get install"));
    // every target lists a package per tool
    for t in Target::ALL {
        assert!(
            t.tools()
                .iter()
                .all(|(tool, pkg)| !tool.is_empty() && !pkg.is_empty())
        );
    }
}
