//! The `nas` binary end to end: a tiny synthetic run through `data`, `train` and `eval`, and
//! the bad inputs a user can give it, each of which must be a clear error and never a panic.

use std::path::Path;
use std::process::{Command, Output};

fn nas(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run nas")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails unless `nas` exited with status 1 (a reported error, not a panic's 101) and said
/// every one of `needles`.
fn assert_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected a clean error exit, got {:?}: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

const WORDS: &str = "yes,no,up,down,left,right,on,off,stop,go,bed,cat";

fn tiny_config(dir: &Path, data: &str) -> std::path::PathBuf {
    let path = dir.join("tiny.ron");
    std::fs::write(
        &path,
        format!(
            r#"(
    model: (preset: "kwt-micro"),
    data: SpeechCommands(folder: "{data}", task: Labels12, silence_percentage: 30.0, seed: 11),
    trainer: (epochs: 1, batch_size: 32, warmup_epochs: 0, seed: 3, eval_batch_size: 64),
    out: "run",
)"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn synthesize_train_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = nas(
        &[
            "data",
            "synth-keywords",
            "--out",
            "words",
            "--words",
            WORDS,
            "--per-word",
            "12",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("words/validation_list.txt").is_file());
    let cfg = tiny_config(d, "words");
    let o = nas(&["train", "--config", cfg.to_str().unwrap(), "--quiet"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("test accuracy"), "{out}");
    for f in [
        "best.bpk",
        "model.ron",
        "summary.json",
        "curves.svg",
        "state.json",
        "data.ron",
    ] {
        assert!(d.join("run").join(f).is_file(), "{f} missing");
    }
    // the resumable checkpoint its state names, and no other
    let last = training::trainer::last_checkpoint(&d.join("run")).unwrap();
    assert!(last.is_file(), "{}", last.display());
    let lasts = std::fs::read_dir(d.join("run"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("last-")
        })
        .count();
    assert_eq!(lasts, 1);
    // The run folder's run is not resumed on other data, and its data.ron stays as it was.
    let saved_spec = std::fs::read_to_string(d.join("run/data.ron")).unwrap();
    let other = d.join("other.ron");
    std::fs::write(
        &other,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("silence_percentage: 30.0", "silence_percentage: 20.0"),
    )
    .unwrap();
    let o = nas(
        &["train", "--config", other.to_str().unwrap(), "--quiet"],
        d,
    );
    assert_error(&o, &["run folder", "data settings", "silence_percentage"]);
    assert_eq!(
        std::fs::read_to_string(d.join("run/data.ron")).unwrap(),
        saved_spec
    );
    // "test accuracy 12.34% (best validation ...": evaluation must reproduce it exactly, since
    // it reads the data as training did (the run's data.ron).
    let trained = out
        .split("test accuracy ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .unwrap()
        .to_string();
    let o = nas(
        &[
            "eval",
            "--checkpoint",
            "run/best.bpk",
            "--data",
            "words",
            "--predictions",
            "p.csv",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Test accuracy") && out.contains("_silence_"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Test accuracy {trained}%")),
        "training reported {trained}%: {out}"
    );
    // One CSV row per clip, as many right as the accuracy line counts.
    let csv = std::fs::read_to_string(d.join("p.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(csv.lines().next(), Some("index,truth,predicted"));
    let right = rows.iter().filter(|r| r[1] == r[2]).count();
    assert!(
        out.contains(&format!("({right} / {})", rows.len())),
        "{right} of {} rows right: {out}",
        rows.len()
    );
    // Without the run's data.ron the default spec (10 % silence, seed 0) gives another test
    // set: the saved spec is what made the line above hold.
    let run_spec = std::fs::read_to_string(d.join("run/data.ron")).unwrap();
    std::fs::remove_file(d.join("run/data.ron")).unwrap();
    let o = nas(
        &["eval", "--checkpoint", "run/best.bpk", "--data", "words"],
        d,
    );
    let default_spec = String::from_utf8_lossy(&o.stdout).to_string();
    let count = |s: &str| s.rsplit('(').next().map(str::to_string);
    assert_ne!(count(&default_spec), count(&out), "{default_spec}");
    // PTQ into a folder that does not exist yet: made before calibrating.
    let ptq = |more: &[&str]| {
        let mut a = vec![
            "quantize",
            "--checkpoint",
            "run/best.bpk",
            "--data",
            "words",
            "--calibration-samples",
            "32",
            "--no-eval",
            "--quiet",
        ];
        a.extend_from_slice(more);
        nas(&a, d)
    };
    let o = ptq(&["--out", "ptq/graphs/p.int8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("ptq/graphs/p.int8").is_file());
    // every softmax at the step asked for (0: the 2^-8 of format-3 graphs); a shift beyond the
    // kernels' 0..=8 is refused by name
    let ptq_shift = |shift: &str, out: &str| ptq(&["--softmax-shift", shift, "--out", out]);
    for (shift, exp) in [("0", -8), ("3", -11)] {
        let out = format!("shift/p{shift}.int8");
        let o = ptq_shift(shift, &out);
        assert!(o.status.success(), "{}", stderr(&o));
        let g = quant::load(d.join(&out)).unwrap();
        let softmax_scales: Vec<_> = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, quant::Op::Softmax(_)))
            .map(|n| g.tensor(&n.output).unwrap().scale)
            .collect();
        assert!(!softmax_scales.is_empty());
        for s in softmax_scales {
            assert_eq!(
                s,
                quant::Dyadic::pow2(exp).unwrap(),
                "--softmax-shift {shift}"
            );
        }
    }
    let o = ptq_shift("9", "shift/p9.int8");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--softmax-shift"), "{}", stderr(&o));
    // TQT fine-tuning from the checkpoint, lowered and scored by the integer interpreter.
    let cfg_arg = cfg.to_str().unwrap();
    let qat = |more: &[&str]| {
        let mut a = vec!["quantize", "--checkpoint", "run/best.bpk", "--mode", "qat"];
        a.extend_from_slice(more);
        nas(&a, d)
    };
    let o = qat(&[
        "--config",
        cfg_arg,
        "--epochs",
        "1",
        "--calibration-samples",
        "32",
        "--out",
        "m.int8",
        "--quiet",
        "--float-control",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("int8 (PTQ)") && out.contains("int8 (QAT)") && out.contains("float control"),
        "{out}"
    );
    // how closely the trained forward computes the shipped graph, on the test clips
    assert!(
        out.contains("QAT's fake-quantized model vs the integer graph on "),
        "{out}"
    );
    for f in [
        "m.int8",
        "m.int8.report.txt",
        "m.int8.report.json",
        "m.int8.qat.json",
    ] {
        assert!(d.join(f).is_file(), "{f} missing");
    }
    let qat_json = std::fs::read_to_string(d.join("m.int8.qat.json")).unwrap();
    assert!(
        qat_json.contains("\"Soft\""),
        "QAT distils by default: {qat_json}"
    );
    let qat_record: serde_json::Value = serde_json::from_str(&qat_json).unwrap();
    let agreement = qat_record["graph_fidelity"]["argmax_agreement"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&agreement), "{qat_json}");
    assert!(qat_record["graph_fidelity"]["samples"].as_u64().unwrap() > 0);
    let format = &qat_record["format"];
    assert_eq!(format["per_channel_weights"], true, "{qat_json}");
    assert_eq!(format["scaled_layer_norm"], false, "{qat_json}");
    assert_eq!(format["ibert_gelu"], false, "{qat_json}");
    // Run again, its QAT run folder is reused (an interrupted run would resume there): the
    // same integer graph. Other settings replace the default folder's run, but not the run of
    // a folder the user named.
    let first = std::fs::read(d.join("m.int8")).unwrap();
    let args = |epochs: &'static str, more: &[&'static str]| {
        let mut a = vec![
            "--config",
            cfg_arg,
            "--epochs",
            epochs,
            "--calibration-samples",
            "32",
            "--out",
            "m.int8",
            "--quiet",
            "--no-eval",
        ];
        a.extend_from_slice(more);
        a
    };
    let o = qat(&args("1", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(d.join("m.int8")).unwrap() == first);
    let o = qat(&args("2", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = qat(&args("3", &["--qat-dir", "m.int8.qat-run"]));
    assert_error(
        &o,
        &["m.int8.qat-run", "`epochs` is 2 in the saved run, 3 now"],
    );
    // A distillation weight outside [0, 1] is refused before calibration, naming the flag.
    let o = qat(&[
        "--config",
        cfg_arg,
        "--distill-weight",
        "1.5",
        "--out",
        "w.int8",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--distill-weight"),
        "{}",
        stderr(&o)
    );
    // The data settings the graph was scored with sit beside it, for `nas eval --int8`.
    assert_eq!(
        std::fs::read_to_string(d.join("data.ron")).unwrap(),
        run_spec
    );
    // The last run here was scored with `--no-eval`: no comparison on the test split.
    let qat_json = std::fs::read_to_string(d.join("m.int8.qat.json")).unwrap();
    let qat_record: serde_json::Value = serde_json::from_str(&qat_json).unwrap();
    assert!(qat_record["graph_fidelity"].is_null(), "{qat_json}");
    // With Scaled-LayerNorm and i-GELU the forward models them and the graph runs them (the
    // default run folder's run is replaced: other settings).
    let o = qat(&args("1", &["--scaled-layer-norm", "--gelu", "ibert"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let qat_json = std::fs::read_to_string(d.join("m.int8.qat.json")).unwrap();
    let qat_record: serde_json::Value = serde_json::from_str(&qat_json).unwrap();
    let format = &qat_record["format"];
    assert_eq!(format["scaled_layer_norm"], true, "{qat_json}");
    assert_eq!(format["ibert_gelu"], true, "{qat_json}");
    let bytes = std::fs::read(d.join("m.int8")).unwrap();
    let graph: quant::Graph = quant::from_bytes(&bytes).unwrap();
    let has = |op: fn(&quant::Op) -> bool| graph.nodes.iter().any(|n| op(&n.op));
    assert!(
        has(|op| matches!(op, quant::Op::ScaledLayerNorm(_))),
        "no Scaled-LayerNorm in the graph"
    );
    assert!(
        has(|op| matches!(op, quant::Op::Gelu(_)))
            && !has(|op| matches!(op, quant::Op::GeluTable(_))),
        "the graph's GELUs are not all i-GELUs"
    );
    // QAT trains: it needs the run configuration.
    let o = qat(&["--data", "words", "--out", "n.int8"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--config"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_data_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "no/such/folder");
    let o = nas(&["train", "--config", cfg.to_str().unwrap()], dir.path());
    assert_error(&o, &["no/such/folder"]);
}

fn write_wav(path: &Path, rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..rate {
        w.write_sample(((i % 50) as i16 - 25) * 100).unwrap();
    }
    w.finalize().unwrap();
}

/// A minimal Speech Commands folder: every key word with one clip.
fn small_folder(root: &Path, with_lists: bool) {
    for w in WORDS.split(',') {
        std::fs::create_dir_all(root.join(w)).unwrap();
        write_wav(&root.join(w).join("a_nohash_0.wav"), 16000);
    }
    if with_lists {
        std::fs::write(root.join("validation_list.txt"), "").unwrap();
        std::fs::write(root.join("testing_list.txt"), "").unwrap();
    }
}

#[test]
fn folder_without_split_lists_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    small_folder(&dir.path().join("sc"), false);
    let cfg = tiny_config(dir.path(), "sc");
    let o = nas(&["train", "--config", cfg.to_str().unwrap()], dir.path());
    assert_error(&o, &["validation_list.txt"]);
}

#[test]
fn corrupt_and_8khz_wavs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("sc");
    small_folder(&sc, true);
    std::fs::write(sc.join("yes/broken_nohash_0.wav"), b"RIFF....not a wav").unwrap();
    let cfg = tiny_config(dir.path(), "sc");
    let o = nas(&["train", "--config", cfg.to_str().unwrap()], dir.path());
    assert_error(&o, &["broken_nohash_0.wav"]);

    std::fs::remove_file(sc.join("yes/broken_nohash_0.wav")).unwrap();
    write_wav(&sc.join("no/slow_nohash_0.wav"), 8000);
    let o = nas(&["train", "--config", cfg.to_str().unwrap()], dir.path());
    assert_error(&o, &["slow_nohash_0.wav", "8000"]);
}

#[test]
fn config_typo_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "sc");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("epochs: 1", "epochz: 1");
    std::fs::write(&cfg, text).unwrap();
    let o = nas(&["train", "--config", cfg.to_str().unwrap()], dir.path());
    assert_error(&o, &["tiny.ron", "epochz"]);
    let o = nas(&["train", "--config", "missing.ron"], dir.path());
    assert_error(&o, &["missing.ron"]);
}

#[test]
fn unknown_backend_lists_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let o = nas(&["train", "--backend", "tpu"], dir.path());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("tpu") && err.contains("flex"), "{err}");
}

#[test]
fn download_offline_or_misused_fails_fast_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let o = nas(
        &[
            "data",
            "download",
            "--dataset",
            "cifar10",
            "--version",
            "1",
            "--out",
            "c",
        ],
        dir.path(),
    );
    assert_error(&o, &["--version", "CIFAR-10"]);
    // nothing listens on port 9: refused at once, with what to do offline
    let o = nas(
        &[
            "data",
            "download",
            "--dataset",
            "cifar10",
            "--url",
            "http://127.0.0.1:9/c.tar.gz",
            "--out",
            "c",
        ],
        dir.path(),
    );
    assert_error(&o, &["127.0.0.1:9", "cifar-10-binary.tar.gz"]);
    assert!(!dir.path().join("c").exists());
}

#[test]
fn missing_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = nas(
        &["eval", "--checkpoint", "gone.bpk", "--data", "."],
        dir.path(),
    );
    assert_error(&o, &["gone.bpk"]);
}

/// `nas quantize` of a TinyFormer path (a search's `best/`) says what it needs, before any
/// model or image is read; a KWT checkpoint with `--images` is told apart.
#[test]
fn quantize_names_what_a_tinyformer_path_needs() {
    let dir = tempfile::tempdir().unwrap();
    let best = dir.path().join("best");
    std::fs::create_dir_all(&best).unwrap();
    std::fs::write(best.join("model.bpk"), b"not read").unwrap();
    std::fs::write(best.join("arch.ron"), b"()").unwrap();
    let quantize = |extra: &[&str]| {
        let mut a = vec![
            "quantize",
            "--checkpoint",
            "best/model.bpk",
            "--out",
            "q/m.int8",
        ];
        a.extend_from_slice(extra);
        nas(&a, dir.path())
    };
    assert_error(
        &quantize(&[]),
        &["TinyFormer path", "--config FILE.ron", "--images DIR"],
    );
    assert_error(
        &quantize(&["--data", "kw"]),
        &["TinyFormer path", "--config", "not --data/--task"],
    );
    assert_error(
        &quantize(&["--images", "imgs", "--mode", "qat"]),
        &["--mode qat fine-tunes KWT", "--mode ptq"],
    );
    assert_error(
        &quantize(&["--images", "imgs", "--gelu", "ibert"]),
        &["no GELU"],
    );
    // the training images' statistics live in the integer model beside the checkpoint
    assert_error(
        &quantize(&["--images", "imgs"]),
        &["best/model.int8", "statistics"],
    );
    // a KWT checkpoint (model.ron beside it) with --images
    std::fs::write(best.join("model.ron"), b"()").unwrap();
    assert_error(&quantize(&["--images", "imgs"]), &["is a KWT's", "--data"]);
    std::fs::remove_file(best.join("arch.ron")).unwrap();
    std::fs::remove_file(best.join("model.ron")).unwrap();
    assert_error(
        &quantize(&["--images", "imgs"]),
        &["has no arch.ron beside it"],
    );
    assert_error(
        &quantize(&["--mode", "qat"]),
        &["--mode qat needs --config"],
    );
    assert!(!dir.path().join("q").exists(), "nothing written");
}

#[test]
fn cost_reports_fit_and_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let target = root.join("configs/targets/stm32f746.ron");
    let o = nas(
        &[
            "cost",
            "--preset",
            "kwt-1",
            "--target",
            target.to_str().unwrap(),
            "--plot",
            "mem.svg",
            "--latency-plot",
            "lat.svg",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("fits") && out.contains("peak SRAM at"),
        "{out}"
    );
    assert!(dir.path().join("mem.svg").is_file());
    let lat = std::fs::read_to_string(dir.path().join("lat.svg")).unwrap();
    assert!(
        lat.contains("latency per op") && lat.contains("ms in all"),
        "{lat}"
    );
    // KWT-3 (5.4 M int8 weights) cannot fit 1 MB of flash: the verdict names the layers.
    let o = nas(
        &[
            "cost",
            "--preset",
            "kwt-3",
            "--target",
            target.to_str().unwrap(),
        ],
        dir.path(),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("DOES NOT FIT") && out.contains("flash: needs"),
        "{out}"
    );
    // A target file missing a field is named.
    std::fs::write(dir.path().join("t.ron"), "(name: \"x\")").unwrap();
    let o = nas(
        &["cost", "--preset", "kwt-1", "--target", "t.ron"],
        dir.path(),
    );
    assert_error(&o, &["t.ron"]);
}

/// `nas bench attention` prints a row per shape with both paths' times; a zero size is a
/// clear error.
#[test]
fn bench_attention_compares_the_fused_and_materialized_paths() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "attention",
        "--tokens",
        "20,40",
        "--dims",
        "4",
        "--heads",
        "1",
        "--batch-size",
        "2",
        "--steps",
        "1",
    ];
    let o = nas(&args, dir.path());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("| 20 | 4 |") && out.contains("| 40 | 4 |"),
        "{out}"
    );
    let o = nas(&["bench", "attention", "--dims", "0"], dir.path());
    assert_error(&o, &["--dims"]);
}

/// `nas bench train` times a few steps of a KWT preset and of a TinyFormer path given as an
/// architecture file; a missing or broken architecture file is a named error.
#[test]
fn bench_train_times_a_kwt_and_a_tinyformer() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--batch-size", "4", "--steps", "2", "--warmup", "1"];
    let mut args = vec!["bench", "train", "--preset", "kwt-micro"];
    args.extend(common);
    let o = nas(&args, dir.path());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("kwt-micro") && out.contains("samples/s"),
        "{out}"
    );

    let arch = dir.path().join("arch.ron");
    std::fs::write(
        &arch,
        "(input: (1, 8, 8), classes: 3, stages: [(downsample: ConvStride2, channels: 8, \
         mobilenets: [(expansion: 2)], transformers: [(heads: 1, mlp_ratio: 1, encoders: 1)])], \
         pooling: AvgPool, last_linear: 8)",
    )
    .unwrap();
    let mut args = vec!["bench", "train", "--arch", arch.to_str().unwrap()];
    args.extend(common);
    args.extend(["--shards", "2"]);
    let o = nas(&args, dir.path());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("tinyformer") && out.contains("shards 2"),
        "{out}"
    );

    std::fs::write(&arch, "(input: (1, 8, 8), clases: 3)").unwrap();
    let o = nas(&args, dir.path());
    assert_error(&o, &["arch.ron"]);
    let o = nas(&["bench", "train", "--arch", "nowhere.ron"], dir.path());
    assert_error(&o, &["nowhere.ron"]);
}
