//! End-to-end searches on a tiny synthetic Fashion-MNIST-format data set.

use std::path::Path;

use burn::tensor::Device;

use crate::config::*;
use crate::fixtures::{tiny_config, write_idx};
use crate::run::{SearchOptions, run_search};
use crate::state::{STATE_FILE, SearchState};

fn target() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32f746.ron")
}

/// The error message of a search of `cfg` into `out` that must fail.
fn search_error(cfg: &SearchConfig, out: &Path) -> String {
    run_search(
        cfg,
        out,
        &Device::flex().autodiff(),
        &SearchOptions::default(),
    )
    .unwrap_err()
    .to_string()
}

/// The cost model's latency of a searched model (`planned_ms`, from its architecture and
/// sparsity) is within 1 % of its exported int8 graph's (`export::latency`).
pub(crate) fn assert_latency_close(planned_ms: f64, int8: &crate::state::Int8Record) {
    let exported = int8.latency_ms.expect("a new record has its latency");
    eprintln!("latency: planned {planned_ms:.4} ms, exported graph {exported:.4} ms");
    assert!(
        (planned_ms - exported).abs() <= 0.01 * exported,
        "planned {planned_ms} ms, exported graph {exported} ms"
    );
}

fn state(dir: &Path) -> SearchState {
    serde_json::from_str(&std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()).unwrap()
}

#[test]
fn search_runs_end_to_end_and_resumes_to_the_same_answer() {
    let data = tempfile::tempdir().unwrap();
    write_idx(data.path(), "train", 300, 1).unwrap();
    write_idx(data.path(), "t10k", 100, 2).unwrap();
    let cfg = tiny_config(data.path(), &target());
    cfg.validate().unwrap();
    let device = Device::flex().autodiff();

    let full = tempfile::tempdir().unwrap();
    let outcome = run_search(&cfg, full.path(), &device, &SearchOptions::default()).unwrap();
    assert!(outcome.finished);
    for f in [
        "pareto.md",
        "pareto.svg",
        "summary.json",
        "best/arch.ron",
        "best/sparsity.ron",
        "best/model.bpk",
        "best/cost.txt",
        "best/memory.svg",
        "best/latency.svg",
        "best/model.int8",
        "best/quantization.txt",
    ] {
        assert!(full.path().join(f).is_file(), "{f} missing");
    }
    let s = state(full.path());
    assert!(!s.analyses.is_empty());
    // Every Pareto model fits its budget by the cost model.
    assert!(!outcome.pareto.is_empty());
    for &i in &outcome.pareto {
        assert!(
            s.candidates[i].resources.fits(),
            "{:?}",
            s.candidates[i].resources
        );
    }
    // The compressed winner reached each layer's target sparsity within one block.
    let fin = s.final_model.clone().unwrap();
    let winner = &s.candidates[fin.candidate];
    for (name, realized) in &fin.realized_sparsity {
        let spec = winner
            .arch
            .layers()
            .into_iter()
            .find(|l| &l.name == name)
            .unwrap();
        let target = winner.sparse[name];
        let one_block = target.block as f64 / spec.kind.weights() as f64;
        assert!(
            (realized - target.sparsity).abs() <= one_block + 1e-9,
            "{name}: realized {realized}, target {}",
            target.sparsity
        );
    }
    assert!(fin.test_accuracy > 0.0);
    // The saved integer model loads and is what the exporter placed.
    let graph = quant::load(full.path().join("best/model.int8")).unwrap();
    let (_, est) = export::plan::estimate(
        &graph,
        &cost::target::Target::load(target()).unwrap(),
        &export::Int8Options::default(),
    )
    .unwrap();
    assert_eq!(est.arena_bytes, fin.int8.arena_bytes);
    // The cost model's figures for the winner (from its architecture and sparsity config,
    // before any weight exists) are what the exported model allocates: SRAM and flash.
    assert_eq!(fin.resources.sram_bytes, fin.int8.arena_bytes);
    assert_eq!(fin.resources.flash_bytes, fin.int8.flash_bytes);
    // and its latency is within 1 % of the exported graph's kernels' by the same tables (the
    // stored MACs of coded layers are the realized ones there)
    assert_latency_close(fin.resources.latency_ms, &fin.int8);
    // `nas search --export`: the C project declares that arena.
    let c = crate::export_best::export_best(full.path(), &cfg.budget).unwrap();
    let header = std::fs::read_to_string(c.join("model.h")).unwrap();
    assert!(
        header.contains(&format!(
            "#define MODEL_ARENA_BYTES {}\n",
            fin.int8.arena_bytes
        )),
        "{header}"
    );
    assert!(fin.int8.test_accuracy > 0.0);

    // Interrupted after two evaluations, then resumed: the same final answer.
    let split = tempfile::tempdir().unwrap();
    let stop = SearchOptions {
        progress: false,
        stop_after: Some(2),
    };
    assert!(
        !run_search(&cfg, split.path(), &device, &stop)
            .unwrap()
            .finished
    );
    let partial = state(split.path());
    assert_eq!(partial.supernets.len() + partial.candidates.len(), 2);
    let resumed = run_search(&cfg, split.path(), &device, &SearchOptions::default()).unwrap();
    assert!(resumed.finished);
    let r = state(split.path());
    assert_eq!(r.supernets, s.supernets);
    assert_eq!(r.candidates, s.candidates);
    assert_eq!(r.final_model, s.final_model);

    // A state from another config is refused, naming the file and the setting.
    let mut other = cfg.clone();
    other.seed = 4;
    let msg = run_search(&other, split.path(), &device, &SearchOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("state.json")
            && msg.contains("different search config")
            && msg.contains(&format!("`seed` is {} in the saved run, 4 now", cfg.seed)),
        "{msg}"
    );
}

/// A space none of whose paths fits says so right after the analysis, with the smallest cost
/// reached, before any supernet is trained.
#[test]
fn a_space_that_cannot_fit_is_refused_after_the_analysis_with_the_smallest_cost() {
    let data = tempfile::tempdir().unwrap();
    write_idx(data.path(), "train", 100, 1).unwrap();
    write_idx(data.path(), "t10k", 20, 2).unwrap();
    let mut cfg = tiny_config(data.path(), &target());
    cfg.budget.sram_bytes = Some(500);
    let out = tempfile::tempdir().unwrap();
    let msg = search_error(&cfg, out.path());
    assert!(
        msg.contains("no sampled TinyFormer path")
            && msg.contains("SRAM 500 B")
            && msg.contains("the smallest reached were SRAM "),
        "{msg}"
    );
    // the smallest SRAM named is a real sample's, above the limit
    let smallest: u64 = msg
        .split("the smallest reached were SRAM ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(smallest > 500, "{msg}");
    // nothing was trained: no supernet or candidate in a state file
    assert!(!out.path().join(STATE_FILE).exists() || state(out.path()).supernets.is_empty());
}

#[test]
fn config_errors_name_the_field() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(data.path(), &target());
    cfg.supernet_space.dims[1] = vec![9];
    let msg = cfg.validate().unwrap_err();
    assert!(msg.contains("dims[1]") && msg.contains("heads 2"), "{msg}");
    let mut cfg = tiny_config(data.path(), &target());
    cfg.sparse_space.block_sizes = vec![3];
    assert!(cfg.validate().unwrap_err().contains("block_sizes"));
    let mut cfg = tiny_config(data.path(), &target());
    cfg.train.batch_shards = 0;
    assert!(cfg.validate().unwrap_err().contains("batch_shards"));
    // Missing data names the file it looked for.
    let out = tempfile::tempdir().unwrap();
    let cfg = tiny_config(&data.path().join("nowhere"), &target());
    let msg = search_error(&cfg, out.path());
    assert!(
        msg.contains("nowhere") && msg.contains("apt-get install dataset-fashion-mnist"),
        "{msg}"
    );
}

#[test]
fn shipped_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    for name in [
        "fashion_mnist.ron",
        "cifar10.ron",
        "speech_search.ron",
        "../experiments/gpu/fashion_mnist_gpu.ron",
    ] {
        SearchConfig::load(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn agp_schedule_reaches_every_target_inside_the_run() {
    for (steps, frequency) in [(200, 10), (1500, 10), (4, 2), (7, 3), (10, 10)] {
        let s = crate::run::agp_schedule(steps, frequency);
        let end = s.end_step();
        let at = |step| s.sparsity(0.6, step);
        assert!(
            end < steps && s.is_update(end),
            "{steps} steps / every {frequency}: last update at {end}"
        );
        assert_eq!(at(end), 0.6, "{steps} steps / every {frequency}");
        // cubic: most of the pruning happens early
        let updates = end / frequency.min(end);
        let mid = end / updates * (updates / 2);
        if updates >= 2 {
            assert!(
                at(mid) > 0.45,
                "{steps} / {frequency}: {} at {mid}",
                at(mid)
            );
        }
    }
}

/// Manual check of how fast a fixed single path learns Fashion-MNIST:
/// `cargo test -p search --lib learning_curve -- --ignored --nocapture` (sequence-pooling
/// head; `POOL=avg` for the average-pooling head; `MB=n` MobileNetV2 blocks per stage, default 1;
/// `ROUNDS=n` rounds of 50 steps, default 6).
#[test]
#[ignore]
fn learning_curve_on_fashion_mnist() {
    use crate::train::{Masks, accuracy, train_path};
    use training::tinyformer::*;
    let (train, test) = datasets::read_fashion_mnist("/usr/share/datasets/fashion-mnist").unwrap();
    let mut train = train.subset(1300, 1);
    let valid = train.split_off_validation(300usize, 1);
    let test = test.subset(500, 1);
    let _ = valid;
    let (m, s) = train.channel_stats();
    let tr = crate::data::ImageTensors::new(&train, &m, &s);
    let te = crate::data::ImageTensors::new(&test, &m, &s);
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mb = vec![MobileNetArch { expansion: 2 }; env("MB", 1)];
    let arch = TinyFormerArch {
        input: [1, 28, 28],
        classes: 10,
        stages: vec![
            DotArch {
                downsample: Downsample::ConvStride2,
                channels: 12,
                mobilenets: mb.clone(),
                transformers: vec![TransformerArch {
                    heads: 1,
                    mlp_ratio: 2,
                    encoders: 1,
                }],
            },
            DotArch {
                downsample: Downsample::ConvStride2,
                channels: 20,
                mobilenets: mb.clone(),
                transformers: vec![TransformerArch {
                    heads: 1,
                    mlp_ratio: 2,
                    encoders: 1,
                }],
            },
        ],
        pooling: if std::env::var("POOL").is_ok_and(|p| p == "avg") {
            Pooling::AvgPool
        } else {
            Pooling::SeqPool
        },
        last_linear: 48,
    };
    let device = Device::flex().autodiff();
    let lr: f64 = std::env::var("LR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.003);
    let cfg = TrainConfig {
        batch_size: 32,
        lr,
        weight_decay: 0.01,
        warmup_steps: 10,
        label_smoothing: 0.0,
        batch_shards: 1,
    };
    let mut model = TinyFormer::init(&arch, 1, &device).unwrap();
    for round in 0..env("ROUNDS", 6) as u64 {
        let (m2, _) = train_path(
            model,
            &arch,
            &tr,
            &cfg,
            50,
            round,
            None,
            Masks::default(),
            None,
            &device,
        )
        .unwrap();
        model = m2;
        println!(
            "steps {} test acc {:.3}",
            (round + 1) * 50,
            accuracy(&model, &te, 128, &device)
        );
    }
}

/// Writes the tiny fixture data and config to $TINY_DIR for manual CLI runs:
/// `TINY_DIR=/tmp/x cargo test -p search --lib write_tiny_fixture -- --ignored`.
#[test]
#[ignore]
fn write_tiny_fixture() {
    let dir = std::path::PathBuf::from(std::env::var("TINY_DIR").unwrap());
    std::fs::create_dir_all(dir.join("data")).unwrap();
    write_idx(&dir.join("data"), "train", 300, 1).unwrap();
    write_idx(&dir.join("data"), "t10k", 100, 2).unwrap();
    let cfg = tiny_config(&dir.join("data"), &target());
    std::fs::write(dir.join("search.ron"), ron::to_string(&cfg).unwrap()).unwrap();
}

/// Diagnosis of SparseNAS candidates of a search folder: accuracy of a candidate after the
/// dense steps, after one-shot pruning of all its layers and of each layer alone, and after
/// masked training. `DIAG=runs/x CAND=0 cargo test -p search --lib diagnose -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn diagnose_candidates() {
    use crate::train::{Masks, accuracy, prune_one_shot, train_path};
    use burn::module::Module;
    use training::tinyformer::{Supernet, TinyFormer};
    let dir = std::path::PathBuf::from(std::env::var("DIAG").unwrap());
    let cand: usize = std::env::var("CAND").map_or(0, |v| v.parse().unwrap());
    let raw = std::fs::read_to_string(dir.join(STATE_FILE)).unwrap();
    let state: SearchState = serde_json::from_str(&raw).unwrap();
    let cfg = &state.config;
    let data = crate::run::load_data(cfg).unwrap();
    let device = Device::flex().autodiff();
    let best = (0..state.supernets.len())
        .max_by(|&a, &b| {
            let f = |i: usize| state.supernets[i].avg_accuracy.unwrap_or(-1.0);
            f(a).total_cmp(&f(b))
        })
        .unwrap();
    let rec = &state.supernets[best];
    let supernet = Supernet::init(&rec.config, 0, &device)
        .unwrap()
        .try_load_file(dir.join(rec.checkpoint.clone().unwrap()))
        .unwrap();
    let sp = &cfg.sparsenas;
    let acc = |m: &TinyFormer| accuracy(m, &data.valid, 128, &device);
    let c = &state.candidates[cand];
    let m = supernet.extract(&rec.config, &c.path).unwrap();
    let (m, _) = train_path(
        m,
        &c.arch,
        &data.train,
        &cfg.train,
        sp.train_steps,
        1,
        None,
        Masks::default(),
        None,
        &device,
    )
    .unwrap();
    println!(
        "candidate {cand} (search {:?}): dense {:.3}",
        c.accuracy,
        acc(&m)
    );
    let all = prune_one_shot(m.clone(), &c.arch, &c.sparse).unwrap();
    println!("one-shot, all layers: {:.3}", acc(&all));
    for (name, s) in &c.sparse {
        let one: crate::sparsity::SparseConfig = [(name.clone(), *s)].into_iter().collect();
        let p = prune_one_shot(m.clone(), &c.arch, &one).unwrap();
        println!("one-shot {name} {:?}: {:.3}", s, acc(&p));
    }
    let mut masks = Masks::default();
    masks.update(&m, &c.arch, &c.sparse, |t| t).unwrap();
    let mut p = masks.apply(m, &c.arch);
    for round in 0..4 {
        let (q, mk) = train_path(
            p,
            &c.arch,
            &data.train,
            &cfg.train,
            50,
            10 + round,
            None,
            masks,
            None,
            &device,
        )
        .unwrap();
        masks = mk;
        p = q;
        let (x, _) = data
            .valid
            .batch(&[0, 1], &device.clone().without_autodiff());
        let logits = p.valid().forward(x);
        println!(
            "masked training {} steps: {:.3}, logits {}",
            50 * (round + 1),
            acc(&p),
            logits
        );
    }
}

/// A speech data set becomes one-channel MFCC images: cropped so that every stage halves an
/// even map (98 frames -> 96 for two stages), standardized with the training statistics, the
/// data set's own splits and labels.
#[test]
fn speech_clips_become_standardized_spectrogram_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(dir.path(), &target());
    cfg.data = DataConfig {
        source: ImageData::Speech(training::speech_data::DataSpec::SyntheticKeywords {
            folder: dir.path().join("kw"),
            words: Some(vec!["yes".into(), "no".into(), "up".into()]),
            per_word: 30,
            seed: 4,
            task: datasets::Task::Keywords(vec!["yes".into(), "no".into(), "up".into()]),
            augment: Default::default(),
            mfcc: Default::default(),
        }),
        train_samples: None,
        valid_samples: 5,
        test_samples: None,
    };
    let data = crate::run::load_data(&cfg).unwrap();
    assert_eq!(data.train.shape, [1, 96, 40]);
    assert_eq!(data.classes, 5, "{:?}", data.class_names);
    assert!(data.valid.len() <= 5 && !data.valid.is_empty() && !data.test.is_empty());
    let v = &data.train.values;
    assert_eq!(v.len(), data.train.len() * 96 * 40);
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
    assert!(
        mean.abs() < 1e-3 && (var - 1.0).abs() < 1e-3,
        "{mean} {var}"
    );
    assert!(data.train.labels.iter().all(|&l| l < 5));
    assert_eq!((data.mean.len(), data.std.len()), (1, 1));
}
