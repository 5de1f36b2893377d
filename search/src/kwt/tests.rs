use std::path::{Path, PathBuf};

use cost::tiles::TilePolicy;

use burn::module::Module;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::config::{KwtSearchConfig, is_kwt_config};
use super::cost::evaluate_kwt;
use super::run::{KwtSearchState, pruning_config, run_kwt_search};
use super::space::{InputShape, layer_infos, model, parameters, sample_sparsity};
use crate::config::SparseSpace;
use crate::cost_graph::Limits;
use crate::sparsity::{LayerSparsity, SparseConfig};
use crate::{SearchOptions, state::STATE_FILE};

fn target_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32f746.ron")
}

fn roomy() -> Limits {
    Limits {
        sram_bytes: u64::MAX,
        flash_bytes: u64::MAX,
        latency_ms: None,
        operand_tiles: TilePolicy::Always,
    }
}

const INPUT: InputShape = InputShape {
    frames: 98,
    features: 40,
    classes: 12,
};

/// The parameter formula and the prunable-layer list are those of the Burn model.
#[test]
fn parameters_and_layers_match_the_model() {
    let device = Device::default();
    for (d, l, h, dh, m) in [(64, 12, 1, 64, 256), (20, 2, 2, 8, 40)] {
        let cfg = model(INPUT, d, l, h, dh, m);
        let kwt = cfg.init(1, &device).unwrap();
        // the input standardization (mean, inverse std) is not trained
        assert_eq!(
            parameters(&cfg),
            kwt.num_params() - 2 * cfg.features,
            "{cfg:?}"
        );
        assert_eq!(layer_infos(&cfg), pruning::kwt_layers(&kwt));
    }
    // KWT-1 as in the paper's Table 1 (607K)
    let kwt1 = model(INPUT, 64, 12, 1, 64, 256);
    assert_eq!(parameters(&kwt1) / 1000, 607);
}

/// The candidate's cost graph is what the exporter allocates for the quantized model: the
/// arena and the flash (constants plus code estimate) are equal, dense and pruned.
#[test]
fn cost_model_equals_the_exported_int8_model() {
    let device = Device::default();
    let target = cost::target::Target::load(target_path()).unwrap();
    // 19 tokens with the class token: the V projection's rows are padded (19 -> 20)
    let small = InputShape {
        frames: 18,
        features: 12,
        classes: 4,
    };
    let mut rng = StdRng::seed_from_u64(3);
    let samples: Vec<Vec<f32>> = (0..4)
        .map(|i| {
            (0..small.frames * small.features)
                .map(|j| ((i * 31 + j * 7) % 17) as f32 / 8.0 - 1.0)
                .collect()
        })
        .collect();
    let space = SparseSpace {
        block_sizes: vec![2, 4],
        sparsities: vec![0.5, 0.75],
    };
    for (k, (d, l, h, dh, m)) in [(16, 1, 1, 16, 32), (24, 2, 2, 8, 48), (16, 2, 4, 4, 64)]
        .into_iter()
        .enumerate()
    {
        let cfg = model(small, d, l, h, dh, m);
        let sparse = if k == 0 {
            SparseConfig::new()
        } else {
            sample_sparsity(&cfg, &space, &mut rng)
        };
        let kwt = cfg.init(k as u64, &device).unwrap();
        let plan = pruning_config(&sparse, 10, 1)
            .plan(&layer_infos(&cfg))
            .unwrap();
        let (kwt, _) = pruning::prune_once(kwt, &plan).unwrap();
        let (graph, _) =
            quant::ptq::quantize_kwt(&kwt, &cfg, &samples, &quant::ptq::PtqOptions::default())
                .unwrap();
        // with the DSP kernels' operand tiles (the default on this Cortex-M7), without, and
        // only those that do not raise the peak
        let mut srams = Vec::new();
        let mut latencies = Vec::new();
        for tiles in [TilePolicy::Always, TilePolicy::Never, TilePolicy::Auto] {
            let limits = Limits {
                operand_tiles: tiles,
                ..roomy()
            };
            let (_, exported) =
                export::plan::estimate(&graph, &target, &limits.int8_options()).unwrap();
            let (res, _) = evaluate_kwt(&cfg, &sparse, &target, &limits).unwrap();
            assert_eq!(
                (res.sram_bytes, res.flash_bytes),
                (exported.arena_bytes, exported.flash_bytes),
                "{cfg:?} {sparse:?} tiles={tiles:?}"
            );
            // and the latency of its kernels by the same tables (equal here; 1 % leaves room
            // for blocks whose weights all quantize to zero, which the exporter skips)
            let exported_ms = exported.latency_s * 1e3;
            assert!(
                (res.latency_ms - exported_ms).abs() <= 0.01 * exported_ms,
                "{cfg:?} {sparse:?} tiles={tiles:?}: {} vs {exported_ms} ms",
                res.latency_ms
            );
            srams.push(res.sram_bytes);
            latencies.push(res.latency_ms);
        }
        assert!(srams[0] >= srams[1], "{srams:?}");
        assert!(srams[2] <= srams[1], "{srams:?}");
        // tiled kernels are faster: auto sits between all and none
        assert!(
            latencies[0] <= latencies[2] && latencies[2] <= latencies[1],
            "{latencies:?}"
        );
    }
}

#[test]
fn sparsity_shrinks_flash_and_broken_limits_are_named() {
    let target = cost::target::Target::load(target_path()).unwrap();
    let cfg = model(INPUT, 32, 2, 2, 16, 64);
    let dense = SparseConfig::new();
    let mut sparse = SparseConfig::new();
    for name in ["blocks.0.mlp.fc1", "blocks.1.mlp.fc2"] {
        sparse.insert(
            name.into(),
            LayerSparsity {
                block: 4,
                sparsity: 0.75,
            },
        );
    }
    let (d, _) = evaluate_kwt(&cfg, &dense, &target, &roomy()).unwrap();
    let (s, _) = evaluate_kwt(&cfg, &sparse, &target, &roomy()).unwrap();
    assert!(
        s.flash_bytes < d.flash_bytes,
        "{} {}",
        s.flash_bytes,
        d.flash_bytes
    );
    let tight = Limits {
        sram_bytes: d.sram_bytes - 1,
        flash_bytes: d.flash_bytes - 1,
        latency_ms: Some(d.latency_ms / 2.0),
        operand_tiles: TilePolicy::Always,
    };
    let (r, _) = evaluate_kwt(&cfg, &dense, &target, &tight).unwrap();
    let kinds: Vec<_> = r
        .violations
        .iter()
        .map(|v| v.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(kinds, ["SRAM", "flash", "latency"], "{:?}", r.violations);
}

fn tiny_config(dir: &Path) -> KwtSearchConfig {
    crate::fixtures::tiny_kwt_config(dir, &target_path())
}

fn state(dir: &Path) -> KwtSearchState {
    serde_json::from_str(&std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()).unwrap()
}

/// The search runs end to end (analysis, candidates under the budget, compression, int8,
/// results folder) and an interrupted search resumes to the same answer.
#[test]
fn kwt_search_runs_end_to_end_and_resumes_to_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let device = Device::default().autodiff();
    let whole = dir.path().join("whole");
    let run = |out: &Path, stop_after| {
        run_kwt_search(
            &cfg,
            out,
            &device,
            &SearchOptions {
                progress: false,
                stop_after,
            },
        )
        .unwrap()
    };
    let done = run(&whole, None);
    assert!(done.finished);
    let f = done.final_model.clone().unwrap();
    let s = state(&whole);
    assert_eq!(s.candidates.len(), 3);
    for c in &s.candidates {
        assert!(c.resources.fits(), "{:?}", c.resources);
        assert!(c.resources.sram_bytes <= 40_000 && c.resources.flash_bytes <= 60_000);
    }
    // five labels (3 words, silence, unknown): a trained model is well above chance
    eprintln!("{f:?}");
    assert!(f.test_accuracy > 0.4, "{f:?}");
    assert!(f.int8.test_accuracy > 0.4, "{f:?}");
    // the exporter's arena and flash are the cost model's figures
    assert_eq!(
        (f.int8.arena_bytes, f.int8.flash_bytes),
        (f.resources.sram_bytes, f.resources.flash_bytes)
    );
    // and its latency, priced before any weight existed, is within 1 % of the exported
    // graph's kernels' (the stored MACs of coded layers are the realized ones there)
    crate::tests::assert_latency_close(f.resources.latency_ms, &f.int8);
    for file in [
        "pareto.md",
        "pareto.svg",
        "summary.json",
        "best/model.int8",
        "best/model.bpk",
        "best/model.ron",
        "best/data.ron",
        "best/sparsity.ron",
        "best/cost.txt",
        "best/memory.svg",
        "best/latency.svg",
    ] {
        assert!(whole.join(file).is_file(), "{file} missing");
    }
    assert!(!done.pareto.is_empty());
    // the best checkpoint's pruned layers hold their targets
    let (model, _) =
        training::load_checkpoint(&whole.join("best/model.bpk"), &Device::default()).unwrap();
    let winner = &s.candidates[f.candidate];
    let weights: std::collections::BTreeMap<_, _> = pruning::model::linear_layers(&model)
        .into_iter()
        .map(|(n, l)| {
            (
                n,
                l.weight.val().into_data().iter::<f32>().collect::<Vec<_>>(),
            )
        })
        .collect();
    assert!(f.global_sparsity > 0.4, "{f:?}");
    for (name, s) in &winner.sparse {
        let zero = pruning::mask::zero_fraction(&weights[name]);
        assert!(
            zero + 1e-9 >= s.sparsity * 0.9,
            "{name}: {zero} < {}",
            s.sparsity
        );
    }

    // interrupted after one candidate, then twice resumed: the same answer
    let parts = dir.path().join("parts");
    assert!(!run(&parts, Some(1)).finished);
    assert!(!run(&parts, Some(2)).finished);
    let resumed = run(&parts, None);
    let (a, b) = (state(&whole), state(&parts));
    let strip = |s: &KwtSearchState| {
        s.candidates
            .iter()
            .map(|c| {
                (
                    c.model.clone(),
                    c.sparse.clone(),
                    c.valid_accuracy,
                    c.test_accuracy,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&a), strip(&b));
    let fr = resumed.final_model.unwrap();
    assert_eq!(
        (fr.candidate, fr.test_accuracy, fr.int8.clone()),
        (f.candidate, f.test_accuracy, f.int8.clone())
    );
    // the finished search is not resumed with another seed; the message names it
    let other = KwtSearchConfig {
        seed: cfg.seed + 1,
        ..cfg.clone()
    };
    let opts = SearchOptions {
        progress: false,
        stop_after: None,
    };
    let msg = run_kwt_search(&other, &parts, &device, &opts)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`seed` is"), "{msg}");
}

#[test]
fn configs_are_told_apart_and_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let text = ron::ser::to_string_pretty(&cfg, Default::default()).unwrap();
    assert!(is_kwt_config(&text));
    let tiny = crate::fixtures::tiny_config(dir.path(), &target_path());
    assert!(!is_kwt_config(
        &ron::ser::to_string_pretty(&tiny, Default::default()).unwrap()
    ));
    assert!(!is_kwt_config("not ron at all ("));
    // a syntax error still goes to the KWT loader, whose message names the problem
    let broken = text.replacen("seed:", "seed", 1);
    assert!(is_kwt_config(&broken));
    assert!(!is_kwt_config("(seed 1, // kwt_space: later\n)"));

    let path = dir.path().join("c.ron");
    std::fs::write(&path, text.replace("depths", "depth")).unwrap();
    let e = KwtSearchConfig::load(&path).unwrap_err().to_string();
    assert!(e.contains("c.ron") && e.contains("depth"), "{e}");
    let mut bad = cfg.clone();
    bad.kwt_space.dims = vec![8, 10];
    let e = bad.validate().unwrap_err();
    assert!(e.contains("kwt_space.dims") && e.contains("10"), "{e}");
    let mut bad = cfg;
    bad.candidates.prune_frequency = 0;
    assert!(
        bad.validate()
            .unwrap_err()
            .contains("candidates.prune_frequency")
    );
}

/// A space whose smallest model cannot fit says so after the analysis, with the smallest cost.
#[test]
fn a_space_that_cannot_fit_is_refused_with_the_smallest_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(dir.path());
    cfg.budget.sram_bytes = Some(1_000);
    let e = run_kwt_search(
        &cfg,
        &dir.path().join("out"),
        &Device::default().autodiff(),
        &SearchOptions {
            progress: false,
            stop_after: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no sampled KWT") && e.contains("smallest reached"),
        "{e}"
    );
}

#[test]
fn shipped_kwt_search_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/kwt_search.ron");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(is_kwt_config(&text));
    KwtSearchConfig::load(&path).unwrap();
}

/// The pruning configuration the search writes reads back as the candidate's sparsity; pruned
/// attention projections are refused with a pointer to `--int8`.
#[test]
fn written_sparsity_reads_back_and_pruned_attention_is_refused() {
    let cfg = model(INPUT, 32, 2, 2, 16, 64);
    let mut rng = StdRng::seed_from_u64(9);
    let space = SparseSpace {
        block_sizes: vec![2, 4],
        sparsities: vec![0.0, 0.5, 0.75],
    };
    let sparse = sample_sparsity(&cfg, &space, &mut rng);
    assert!(!sparse.is_empty());
    let written = pruning_config(&sparse, 100, 10);
    assert_eq!(
        super::space::sparse_from_pruning(&cfg, &written).unwrap(),
        sparse
    );
    let mut p = written.clone();
    p.layers.insert(
        "blocks.1.attn.qkv".into(),
        pruning::LayerRule {
            sparsity: 0.5,
            block: 4,
        },
    );
    let e = super::space::sparse_from_pruning(&cfg, &p).unwrap_err();
    assert!(
        e.contains("blocks.1.attn.qkv") && e.contains("--int8"),
        "{e}"
    );
    let mut p = written;
    p.layers.insert(
        "blocks.7.mlp.fc1".into(),
        pruning::LayerRule {
            sparsity: 0.5,
            block: 4,
        },
    );
    let e = super::space::sparse_from_pruning(&cfg, &p).unwrap_err();
    assert!(e.contains("blocks.7.mlp.fc1") && e.contains("known"), "{e}");
}
