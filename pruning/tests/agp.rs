//! AGP fine-tuning through the trainer's step hook on a tiny KWT: pruned blocks stay exactly
//! zero, every layer meets its target within one block, a resumed run equals an uninterrupted
//! one, and bad configurations are clear errors.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Device;
use pruning::model::{linear_layers, linear_weights};
use pruning::{
    MaskSet, PruningConfig, PruningHook, PruningPlan, kwt_layers, mask_violations, masks_file,
    prune_once, sparsity_report,
};
use training::trainer::{BEST_CHECKPOINT, last_checkpoint};
use training::{
    KwtConfig, RunSummary, TrainOptions, TrainOutcome, TrainerConfig, load_checkpoint, train,
    train_with_hook,
};

use training::toy_data::{TOY_FEATURES as FEATURES, TOY_FRAMES as FRAMES, toy_splits as splits};

fn model() -> KwtConfig {
    KwtConfig {
        frames: FRAMES,
        features: FEATURES,
        ..KwtConfig::preset("kwt-micro", 3).unwrap()
    }
}

fn trainer(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        batch_size: 16,
        learning_rate: 3e-3,
        warmup_epochs: 0,
        seed: 7,
        augment: false,
        eval_batch_size: 64,
        ..TrainerConfig::default()
    }
}

fn finished(outcome: TrainOutcome) -> RunSummary {
    match outcome {
        TrainOutcome::Finished(s) => *s,
        TrainOutcome::Interrupted { global_step } => panic!("interrupted at {global_step}"),
    }
}

/// A dense model trained once for all tests of this file.
fn dense_checkpoint() -> &'static Path {
    static DENSE: OnceLock<PathBuf> = OnceLock::new();
    DENSE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let s = finished(
            train(
                &model(),
                &trainer(6),
                &splits(),
                &dir,
                &Device::flex(),
                &TrainOptions::default(),
            )
            .unwrap(),
        );
        assert!(s.test_acc > 0.8, "dense accuracy {}", s.test_acc);
        dir.join(BEST_CHECKPOINT)
    })
}

// kwt-micro: embed 8 -> 16, qkv 16 -> 48, out 16 -> 16, fc1 16 -> 32, fc2 32 -> 16, head 16 -> 3.
// 12 steps per epoch; masks update at steps 0, 3, 6, 9, 12.
const CONFIG: &str = r#"(
    default: (sparsity: 0.5, block: 4),
    layers: {
        "embed": (sparsity: 0.0, block: 4),
        "blocks.0.mlp.fc1": (sparsity: 0.75, block: 2),
        "blocks.0.attn.qkv": (sparsity: 0.6, block: 2),
        "head.fc": (sparsity: 0.25, block: 2),
    },
    score: L1,
    schedule: Agp(initial_sparsity: 0.05, start_step: 0, frequency: 3, steps: 4),
)"#;

fn plan() -> PruningPlan {
    let m = model().init(0, &Device::flex()).unwrap();
    PruningConfig::parse(CONFIG)
        .unwrap()
        .plan(&kwt_layers(&m))
        .unwrap()
}

fn prune_run(out: &Path, options: &TrainOptions) -> TrainOutcome {
    let mut hook = PruningHook::new(plan()).starting_from(dense_checkpoint().to_path_buf());
    train_with_hook(
        &model(),
        &trainer(3),
        &splits(),
        out,
        &Device::flex(),
        options,
        &mut hook,
    )
    .unwrap()
}

fn check_pruned(checkpoint: &Path, masks: &MaskSet) {
    let plan = plan();
    let (m, _) = load_checkpoint(checkpoint, &Device::flex()).unwrap();
    let masks = masks.masks_for(&plan, Path::new("masks.json")).unwrap();
    assert_eq!(mask_violations(&m, &plan, &masks), Vec::<String>::new());
    for ((name, linear), (layer, mask)) in linear_layers(&m)
        .into_iter()
        .zip(plan.layers.iter().zip(&masks))
    {
        let w = linear_weights(linear);
        let zeros = w.iter().filter(|&&v| v == 0.0).count() as f64 / w.len() as f64;
        let one_block = 1.0 / layer.geometry.blocks() as f64;
        assert!(
            (zeros - layer.target).abs() <= one_block,
            "{name}: realized {zeros}, target {}",
            layer.target
        );
        assert!(
            (mask.sparsity() - layer.target).abs() <= one_block,
            "{name}"
        );
    }
}

#[test]
fn agp_fine_tuning_zeroes_pruned_blocks_and_meets_targets() {
    let dir = tempfile::tempdir().unwrap();
    let s = finished(prune_run(dir.path(), &TrainOptions::default()));
    assert!(s.test_acc > 0.6, "pruned accuracy {}", s.test_acc);
    let masks = MaskSet::read(&masks_file(dir.path(), 36)).unwrap();
    assert_eq!(masks.global_step, 36);
    // The best checkpoint is from after the last mask update, as is the last one.
    check_pruned(&dir.path().join(BEST_CHECKPOINT), &masks);
    check_pruned(&last_checkpoint(dir.path()).unwrap(), &masks);

    let (m, _) = load_checkpoint(&dir.path().join(BEST_CHECKPOINT), &Device::flex()).unwrap();
    let report = sparsity_report(&m, &plan()).unwrap();
    let fc1 = &report.layers[3];
    assert_eq!(
        (fc1.name.as_str(), fc1.rows, fc1.cols, fc1.block),
        ("blocks.0.mlp.fc1", 32, 16, 2)
    );
    assert!((fc1.sparsity - 0.75).abs() < 1e-9);
    assert!(report.to_table().contains("blocks.0.mlp.fc1"));
}

#[test]
fn resumed_pruning_run_equals_an_uninterrupted_one() {
    let whole = tempfile::tempdir().unwrap();
    let a = finished(prune_run(whole.path(), &TrainOptions::default()));

    let parts = tempfile::tempdir().unwrap();
    // Stop between mask updates (5), right on one (9, mid-epoch), and after the last (17).
    for stop in [5, 9, 17] {
        let opts = TrainOptions {
            stop_after_steps: Some(stop),
            ..Default::default()
        };
        match prune_run(parts.path(), &opts) {
            TrainOutcome::Interrupted { global_step } => assert_eq!(global_step, stop),
            TrainOutcome::Finished(_) => panic!("should have stopped at {stop}"),
        }
        let saved = MaskSet::read(&masks_file(parts.path(), stop)).unwrap();
        assert_eq!(saved.global_step, stop);
        // the masks of earlier steps are gone once the state names this one
        let masks: Vec<_> = std::fs::read_dir(parts.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("masks"))
            .collect();
        assert_eq!(masks, [format!("masks-{stop}.json")]);
    }
    let b = finished(prune_run(parts.path(), &TrainOptions::default()));
    assert_eq!(a.steps, b.steps);
    for (x, y) in a.history.iter().zip(&b.history) {
        assert!((x.train_loss - y.train_loss).abs() < 1e-5, "{x:?} vs {y:?}");
        assert_eq!(x.valid_acc, y.valid_acc);
    }
    assert_eq!(a.test_confusion, b.test_confusion);
    let ma = MaskSet::read(&masks_file(whole.path(), a.steps)).unwrap();
    let mb = MaskSet::read(&masks_file(parts.path(), b.steps)).unwrap();
    assert_eq!(ma, mb);
    let device = Device::flex();
    let (wa, _) = load_checkpoint(&last_checkpoint(whole.path()).unwrap(), &device).unwrap();
    let (wb, _) = load_checkpoint(&last_checkpoint(parts.path()).unwrap(), &device).unwrap();
    for ((name, la), (_, lb)) in linear_layers(&wa).into_iter().zip(linear_layers(&wb)) {
        let (x, y) = (linear_weights(la), linear_weights(lb));
        let diff = x
            .iter()
            .zip(&y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{name}: weights differ by {diff}");
        // Zeros are at the same places.
        assert!(
            x.iter().zip(&y).all(|(p, q)| (*p == 0.0) == (*q == 0.0)),
            "{name}"
        );
    }
}

#[test]
fn one_shot_pruning_of_a_trained_model() {
    let (m, _) = load_checkpoint(dense_checkpoint(), &Device::flex()).unwrap();
    let plan = plan();
    let (pruned, masks) = prune_once(m, &plan).unwrap();
    assert!(mask_violations(&pruned, &plan, &masks).is_empty());
    let report = sparsity_report(&pruned, &plan).unwrap();
    for (l, p) in report.layers.iter().zip(&plan.layers) {
        assert!(
            (l.sparsity - p.target).abs() <= 1.0 / p.geometry.blocks() as f64,
            "{}",
            l.name
        );
    }
}

#[test]
fn bad_pruning_configs_are_clear_errors() {
    let device = Device::flex();
    let layers = kwt_layers(&model().init(0, &device).unwrap());
    let plan_err = |text: &str| -> String {
        PruningConfig::parse(text)
            .unwrap()
            .plan(&layers)
            .unwrap_err()
            .to_string()
    };
    let err = plan_err(&CONFIG.replace("blocks.0.mlp.fc1", "blocks.3.mlp.fc1"));
    assert!(
        err.contains("blocks.3.mlp.fc1")
            && err.contains("known layers")
            && err.contains("blocks.0.mlp.fc1")
            && err.contains("head.fc"),
        "{err}"
    );
    let err = plan_err(&CONFIG.replace("(sparsity: 0.75, block: 2)", "(sparsity: 1.0, block: 2)"));
    assert!(
        err.contains("blocks.0.mlp.fc1") && err.contains("[0, 1)"),
        "{err}"
    );
    let err = plan_err(&CONFIG.replace("(sparsity: 0.25, block: 2)", "(sparsity: -0.1, block: 2)"));
    assert!(err.contains("head.fc") && err.contains("[0, 1)"), "{err}");

    // A 6-feature input: the embedding's 6 inputs are not a multiple of 4.
    let mut six = model();
    six.features = 6;
    let layers6 = kwt_layers(&six.init(0, &device).unwrap());
    let err = PruningConfig::parse(CONFIG)
        .unwrap()
        .plan(&layers6)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("embed") && err.contains("block size 4") && err.contains("6"),
        "{err}"
    );

    // A resume whose run folder lost its masks is refused.
    let dir = tempfile::tempdir().unwrap();
    let stop = TrainOptions {
        stop_after_steps: Some(4),
        ..Default::default()
    };
    assert!(matches!(
        prune_run(dir.path(), &stop),
        TrainOutcome::Interrupted { .. }
    ));
    // Resuming with other targets is refused...
    let resume_err = |mut hook: PruningHook| {
        train_with_hook(
            &model(),
            &trainer(3),
            &splits(),
            dir.path(),
            &device,
            &TrainOptions::default(),
            &mut hook,
        )
        .unwrap_err()
        .to_string()
    };
    let dense = || dense_checkpoint().to_path_buf();
    let m = model().init(0, &device).unwrap();
    let other = PruningConfig::parse(&CONFIG.replace("(sparsity: 0.6,", "(sparsity: 0.7,"))
        .unwrap()
        .plan(&kwt_layers(&m))
        .unwrap();
    let err = resume_err(PruningHook::new(other).starting_from(dense()));
    assert!(
        err.contains("`layers.blocks.0.attn.qkv.sparsity` is 0.6 in the saved run, 0.7 now"),
        "{err}"
    );
    // ... as is starting from another checkpoint, or none
    let err = resume_err(PruningHook::new(plan()));
    assert!(err.contains("`checkpoint` is"), "{err}");
    // ... and so is a run folder that lost its masks.
    std::fs::remove_file(masks_file(dir.path(), 4)).unwrap();
    let err = resume_err(PruningHook::new(plan()).starting_from(dense()));
    assert!(
        err.contains("masks-4.json") && err.contains("no masks of that step"),
        "{err}"
    );
}
