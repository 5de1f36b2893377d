//! `nas export` and `nas verify` end to end on a small integer transformer block saved in the
//! `NASI8` format: the printed SRAM / flash figures, the C project, bit-exactness against the
//! interpreter on host (and under QEMU when the cross tools are installed), and the rejections
//! that must happen before any C is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use export::TilePolicy;
use quant::graph::Op;
use quant::{Graph, GraphBuilder};

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run nas")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_error(o: &Output, needles: &[&str]) {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "expected a clean error: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

fn target(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/targets")
        .join(format!("{name}.ron"))
}

/// Deterministic bytes (xorshift64*).
fn bytes(seed: u64, n: usize) -> Vec<i8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8 as i8
        })
        .collect()
}

/// A 2-head attention block with an MLP (S=9, E=16, P=8): fused attention, LayerNorm, GELU.
fn block() -> Graph {
    let (s, e, h, p, mlp) = (9, 16, 2, 8, 32);
    let sx = 2f64.powi(-4);
    let mut b = GraphBuilder::new();
    b.input("x", &[s, e], sx).unwrap();
    b.layer_norm("ln", "x", &[1.0; 16], &[0.0; 16], 1e-5, 2f64.powi(-5))
        .unwrap();
    for (i, n) in ["q", "k", "v"].into_iter().enumerate() {
        b.linear(
            n,
            "ln",
            bytes(i as u64 + 1, h * p * e),
            vec![0; h * p],
            &[0.005],
            sx,
        )
        .unwrap();
        b.split_heads(n, h).unwrap();
    }
    b.matmul("scores", "q_h", "k_h", true, 2f64.powi(-2))
        .unwrap();
    b.softmax("attn", "scores").unwrap();
    b.matmul("ctx_h", "attn", "v_h", false, sx).unwrap();
    b.merge_heads("ctx", "ctx_h").unwrap();
    b.add("res", "x", "ctx", sx).unwrap();
    b.linear("fc1", "res", bytes(7, mlp * e), vec![0; mlp], &[0.005], sx)
        .unwrap();
    b.gelu("gelu", "fc1", sx).unwrap();
    b.linear("fc2", "gelu", bytes(8, e * mlp), vec![0; e], &[0.005], sx)
        .unwrap();
    b.output("fc2");
    b.finish().unwrap()
}

fn saved(dir: &Path, g: &Graph) -> PathBuf {
    let p = dir.join("model.int8");
    quant::save(g, &p).unwrap();
    p
}

#[test]
fn export_prints_sram_and_flash_and_writes_a_project_that_builds() {
    let dir = tempfile::tempdir().unwrap();
    let model = saved(dir.path(), &block());
    let out = dir.path().join("c");
    let o = nas(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--target",
        target("stm32f746").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}\n{se}");
    println!("{so}");
    // the printed figures are the exporter's (= the cost model's) figures
    let g = quant::load(&model).unwrap();
    let t = cost::target::Target::load(target("stm32f746")).unwrap();
    let (_, est) = export::plan::estimate(&g, &t, &export::Int8Options::default()).unwrap();
    assert!(
        so.contains(&format!(
            "activation arena {} B of 327680 B",
            est.arena_bytes
        )),
        "{so}"
    );
    assert!(
        so.contains(&format!(
            "constants {} B + code estimate {} B",
            est.weight_bytes, est.code_bytes
        )),
        "{so}"
    );
    assert!(so.contains("1 fused attention kernel"), "{so}");
    let header = std::fs::read_to_string(out.join("model.h")).unwrap();
    assert!(header.contains(&format!("#define MODEL_ARENA_BYTES {}", est.arena_bytes)));
    for f in ["model.c", "nas_kernels.c", "nas_kernels.h", "Makefile"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let mk = Command::new("make")
        .args(["-s", "-C", out.to_str().unwrap(), "host"])
        .output()
        .unwrap();
    assert!(
        mk.status.success(),
        "{}",
        String::from_utf8_lossy(&mk.stderr)
    );
}

/// `nas export --model M --target T --out O`.
fn export_args<'a>(model: &'a Path, target: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "export",
        "--model",
        model.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
}

/// `--no-operand-tiles` plans no DSP operand tiles (the figures of a target without the DSP
/// extension), and the default on a Cortex-M7 does: the printed arena is the exporter's either
/// way, and the written header says the same.
#[test]
fn export_without_operand_tiles_plans_less_sram() {
    let dir = tempfile::tempdir().unwrap();
    let model = saved(dir.path(), &block());
    let g = quant::load(&model).unwrap();
    let t = cost::target::Target::load(target("stm32f746")).unwrap();
    let f746 = target("stm32f746");
    let mut arenas = Vec::new();
    let policies = [
        (TilePolicy::Always, None),
        (TilePolicy::Never, Some("--no-operand-tiles")),
        (TilePolicy::Never, Some("--operand-tiles=off")),
        (TilePolicy::Auto, Some("--operand-tiles=auto")),
    ];
    for (i, (tiles, flag)) in policies.into_iter().enumerate() {
        let out = dir.path().join(format!("c{i}"));
        let mut args = export_args(&model, &f746, &out);
        args.extend(flag);
        let o = nas(&args);
        let (so, se) = text(&o);
        assert!(o.status.success(), "{so}\n{se}");
        let opts = export::Int8Options {
            operand_tiles: tiles,
            ..Default::default()
        };
        let (_, est) = export::plan::estimate(&g, &t, &opts).unwrap();
        assert!(
            so.contains(&format!(
                "activation arena {} B of 327680 B",
                est.arena_bytes
            )),
            "tiles={tiles:?}: {so}"
        );
        let header = std::fs::read_to_string(out.join("model.h")).unwrap();
        assert!(header.contains(&format!("#define MODEL_ARENA_BYTES {}", est.arena_bytes)));
        arenas.push(est.arena_bytes);
    }
    // auto keeps only the tiles off the peak: the arena without tiles
    assert_eq!(arenas[3], arenas[1], "{arenas:?}");
    assert_eq!(arenas[2], arenas[1], "{arenas:?}");
    let bad = dir.path().join("bad");
    let mut args = export_args(&model, &f746, &bad);
    args.push("--operand-tiles=sometimes");
    let o = nas(&args);
    let (_, se) = text(&o);
    assert!(
        !o.status.success() && se.contains("on, off or auto"),
        "{se}"
    );
    // the Linear tiles (9 rows, 16 and 32 inputs) sit at this block's peak
    assert!(arenas[0] > arenas[1], "{arenas:?}");
    let rv = cost::target::Target::load(target("rv32imc")).unwrap();
    let (_, est) = export::plan::estimate(&g, &rv, &export::Int8Options::default()).unwrap();
    assert_eq!(est.arena_bytes, arenas[1]);
}

#[test]
fn export_rejects_a_model_over_the_targets_sram_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let model = saved(dir.path(), &block());
    let small = std::fs::read_to_string(target("stm32f746"))
        .unwrap()
        .replace("sram_bytes: 327680", "sram_bytes: 256");
    assert!(small.contains("sram_bytes: 256"));
    let tpath = dir.path().join("small.ron");
    std::fs::write(&tpath, small).unwrap();
    let out = dir.path().join("c");
    let o = nas(&export_args(&model, &tpath, &out));
    assert_error(&o, &["does not fit", "SRAM", "nothing was written"]);
    assert!(!out.exists(), "nothing may be written");
}

#[test]
fn export_rejects_an_op_the_runtime_lacks_before_writing() {
    let dir = tempfile::tempdir().unwrap();
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
    let model = saved(dir.path(), &b.finish().unwrap());
    let out = dir.path().join("c");
    let o = nas(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--target",
        target("stm32f746").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_error(&o, &["deep_transpose", "Transpose", "not supported"]);
    assert!(!out.exists(), "nothing may be written");
}

#[test]
fn export_and_verify_reject_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.int8");
    std::fs::write(&junk, b"not a model").unwrap();
    let out = dir.path().join("c");
    let o = nas(&[
        "export",
        "--model",
        junk.to_str().unwrap(),
        "--target",
        target("stm32f746").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_error(&o, &["junk.int8"]);
    assert!(!out.exists());
    let model = saved(dir.path(), &block());
    let o = nas(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--target",
        dir.path().join("missing.ron").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_error(&o, &["missing.ron"]);
    let o = nas(&["verify", "--model", junk.to_str().unwrap()]);
    assert_error(&o, &["junk.int8"]);
    let o = nas(&[
        "verify",
        "--model",
        model.to_str().unwrap(),
        "--inputs",
        "0",
    ]);
    assert_error(&o, &["--inputs"]);
}

#[test]
fn verify_on_host_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let model = saved(dir.path(), &block());
    for extra in [&[][..], &["--no-fuse-attention"][..]] {
        let mut args = vec![
            "verify",
            "--model",
            model.to_str().unwrap(),
            "--platform",
            "host",
            "--inputs",
            "6",
        ];
        args.extend_from_slice(extra);
        let o = nas(&args);
        let (so, se) = text(&o);
        assert!(o.status.success(), "{so}\n{se}");
        assert!(
            so.contains("Host") && so.contains("bit-exact") && so.contains("PASS"),
            "{so}"
        );
    }
}

#[test]
fn verify_under_qemu_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let model = saved(dir.path(), &block());
    for (platform, t) in [
        ("m4", export::Target::CortexM4),
        ("m7", export::Target::CortexM7),
        ("rv32", export::Target::Rv32),
    ] {
        if let Err(e) = t.check_tools() {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but {platform} is unavailable: {e}");
            }
            eprintln!("note: skipping `nas verify --platform {platform}`: {e}");
            continue;
        }
        let o = nas(&[
            "verify",
            "--model",
            model.to_str().unwrap(),
            "--platform",
            platform,
            "--inputs",
            "4",
        ]);
        let (so, se) = text(&o);
        assert!(o.status.success(), "{platform}: {so}\n{se}");
        assert!(so.contains("bit-exact") && so.contains("PASS"), "{so}");
    }
}
