use super::*;
use crate::kwt::KwtConfig;

use crate::toy_data::{TOY_FEATURES as FEATURES, TOY_FRAMES as FRAMES, toy_splits as splits};

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
        warmup_epochs: 1,
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

#[test]
fn learns_well_above_chance_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let summary = finished(
        train(
            &model(),
            &trainer(10),
            &splits(),
            dir.path(),
            &device,
            &TrainOptions::default(),
        )
        .unwrap(),
    );
    // Chance is 33%.
    assert!(summary.test_acc > 0.8, "test accuracy {}", summary.test_acc);
    assert_eq!(summary.history.len(), 10);
    assert_eq!(summary.steps, 10 * 180usize.div_ceil(16));
    assert_eq!(summary.test_confusion.total(), 60);
    for f in [
        BEST_CHECKPOINT,
        "last-120.bpk",
        "last_optim-120.bpk",
        SUMMARY_FILE,
        CURVES_FILE,
        MODEL_CONFIG_FILE,
        STATE_FILE,
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let svg = std::fs::read_to_string(dir.path().join(CURVES_FILE)).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("polyline"),
        "curves.svg has no lines"
    );
    assert_eq!(
        last_checkpoint(dir.path()).unwrap(),
        dir.path().join("last-120.bpk")
    );
    // The best checkpoint loads back and scores the same on the test split.
    let (best, _) = load_checkpoint(&dir.path().join(BEST_CHECKPOINT), &device).unwrap();
    let data = splits();
    let again = evaluate(
        &best,
        data.test.as_ref(),
        &data.labels,
        FRAMES,
        FEATURES,
        7,
        &device,
    )
    .unwrap();
    assert_eq!(again, summary.test_confusion);
    // The input standardization is the training set's and stays frozen through training.
    let stats = crate::feature_stats(data.train.as_ref(), FRAMES, FEATURES, NORM_SAMPLES).unwrap();
    let kept = best.input_norm.stats();
    for (a, b) in kept
        .mean
        .iter()
        .zip(&stats.mean)
        .chain(kept.std.iter().zip(&stats.std))
    {
        assert!((a - b).abs() < 1e-5, "{kept:?} vs {stats:?}");
    }
    assert!(
        stats.std.iter().all(|&s| (s - 1.0).abs() > 0.01),
        "the test data should need scaling"
    );
}

#[test]
fn resume_after_interruption_loses_nothing() {
    let device = Device::flex();
    let whole = tempfile::tempdir().unwrap();
    let a = finished(
        train(
            &model(),
            &trainer(3),
            &splits(),
            whole.path(),
            &device,
            &TrainOptions::default(),
        )
        .unwrap(),
    );

    let parts = tempfile::tempdir().unwrap();
    // 12 steps per epoch: stop in the middle of the second epoch, then once more in the third.
    for stop in [17, 29] {
        let opts = TrainOptions {
            stop_after_steps: Some(stop),
            ..Default::default()
        };
        match train(
            &model(),
            &trainer(3),
            &splits(),
            parts.path(),
            &device,
            &opts,
        )
        .unwrap()
        {
            TrainOutcome::Interrupted { global_step } => assert_eq!(global_step, stop),
            TrainOutcome::Finished(_) => panic!("should have stopped at {stop}"),
        }
    }
    let b = finished(
        train(
            &model(),
            &trainer(3),
            &splits(),
            parts.path(),
            &device,
            &TrainOptions::default(),
        )
        .unwrap(),
    );
    let same = |b: &RunSummary| {
        assert_eq!(a.steps, b.steps);
        for (x, y) in a.history.iter().zip(&b.history) {
            assert!((x.train_loss - y.train_loss).abs() < 1e-5, "{x:?} vs {y:?}");
            assert!((x.valid_acc - y.valid_acc).abs() < 1e-9, "{x:?} vs {y:?}");
        }
        assert_eq!(a.test_confusion, b.test_confusion);
    };
    same(&b);

    // Killed after writing the checkpoint of step 29 but before its state: the run resumes
    // from the step-17 files its state names, and ends as the others did.
    let crash = tempfile::tempdir().unwrap();
    let stop = |out: &Path, at| {
        let opts = TrainOptions {
            stop_after_steps: Some(at),
            ..Default::default()
        };
        let outcome = train(&model(), &trainer(3), &splits(), out, &device, &opts).unwrap();
        assert!(matches!(outcome, TrainOutcome::Interrupted { .. }));
    };
    stop(crash.path(), 17);
    let ahead = tempfile::tempdir().unwrap();
    stop(ahead.path(), 29);
    for f in ["last-29.bpk", "last_optim-29.bpk"] {
        std::fs::copy(ahead.path().join(f), crash.path().join(f)).unwrap();
    }
    assert_eq!(
        last_checkpoint(crash.path()).unwrap(),
        crash.path().join("last-17.bpk")
    );
    let c = finished(
        train(
            &model(),
            &trainer(3),
            &splits(),
            crash.path(),
            &device,
            &TrainOptions::default(),
        )
        .unwrap(),
    );
    same(&c);
    // Only the checkpoint the final state names is left.
    let mut left: Vec<String> = std::fs::read_dir(crash.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("last"))
        .collect();
    left.sort();
    assert_eq!(left, ["last-36.bpk", "last_optim-36.bpk"]);
}

#[test]
fn a_run_folder_from_before_step_named_checkpoints_resumes() {
    // Such a folder holds `last.bpk`, `last_optim.bpk` and a state without their names.
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let stop = TrainOptions {
        stop_after_steps: Some(5),
        ..Default::default()
    };
    let outcome = train(&model(), &trainer(1), &splits(), dir.path(), &device, &stop).unwrap();
    assert!(matches!(outcome, TrainOutcome::Interrupted { .. }));
    let out = dir.path();
    std::fs::rename(out.join("last-5.bpk"), out.join("last.bpk")).unwrap();
    std::fs::rename(out.join("last_optim-5.bpk"), out.join("last_optim.bpk")).unwrap();
    let mut state = RunState::read(out).unwrap();
    state.last_checkpoint = None;
    state.last_optimizer = None;
    std::fs::write(out.join(STATE_FILE), serde_json::to_vec(&state).unwrap()).unwrap();
    assert_eq!(last_checkpoint(out).unwrap(), out.join("last.bpk"));

    let whole = tempfile::tempdir().unwrap();
    let run = |out: &Path| {
        finished(
            train(
                &model(),
                &trainer(1),
                &splits(),
                out,
                &device,
                &TrainOptions::default(),
            )
            .unwrap(),
        )
    };
    let (a, b) = (run(whole.path()), run(out));
    assert_eq!(a.test_confusion, b.test_confusion);
    assert!((a.history[0].train_loss - b.history[0].train_loss).abs() < 1e-5);
    // the old names are gone with the first step-named checkpoint
    assert!(!out.join("last.bpk").exists() && !out.join("last_optim.bpk").exists());
}

#[test]
fn resume_with_other_settings_is_refused_naming_them() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let run = |model: &KwtConfig, cfg: &TrainerConfig, stop| {
        let opts = TrainOptions {
            stop_after_steps: stop,
            ..Default::default()
        };
        train(model, cfg, &splits(), dir.path(), &device, &opts)
    };
    assert!(matches!(
        run(&model(), &trainer(2), Some(5)).unwrap(),
        TrainOutcome::Interrupted { global_step: 5 }
    ));
    // a longer schedule would stretch the cosine curve the first steps followed
    let err = run(&model(), &trainer(4), None).unwrap_err().to_string();
    assert!(
        err.contains("trainer settings") && err.contains("`epochs` is 2 in the saved run, 4 now"),
        "{err}"
    );
    let wider = KwtConfig {
        mlp_dim: model().mlp_dim * 2,
        ..model()
    };
    let err = run(&wider, &trainer(2), None).unwrap_err().to_string();
    assert!(
        err.contains("model settings") && err.contains("`mlp_dim`"),
        "{err}"
    );
    // the refused attempts left the run as it was: it resumes with its own settings, and
    // with another evaluation batch size and checkpoint interval, which change nothing learned
    let relaxed = TrainerConfig {
        eval_batch_size: 13,
        checkpoint_every_steps: 3,
        ..trainer(2)
    };
    let summary = finished(run(&model(), &relaxed, None).unwrap());
    assert_eq!(summary.steps, 2 * 180usize.div_ceil(16));
}

/// A finished run of `cfg` on the flex backend.
fn train_on_flex(
    model: &KwtConfig,
    cfg: &TrainerConfig,
    data: &DataSplits,
    dir: &std::path::Path,
) -> RunSummary {
    let device = Device::flex();
    finished(train(model, cfg, data, dir, &device, &TrainOptions::default()).unwrap())
}

/// A run folder holding a teacher that classifies the toy test split (over 80 %).
fn trained_teacher() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let teacher = train_on_flex(&model(), &trainer(10), &splits(), dir.path());
    assert!(
        teacher.test_acc > 0.8,
        "teacher test accuracy {}",
        teacher.test_acc
    );
    dir
}

#[test]
fn distils_from_a_teacher_checkpoint() {
    let device = Device::flex();
    let teacher_dir = trained_teacher();

    let mut student = model();
    student.distill_token = true;
    let mut cfg = trainer(10);
    cfg.distillation = Some(crate::config::DistillationConfig {
        teacher: teacher_dir.path().join(BEST_CHECKPOINT),
        targets: Default::default(),
    });
    let dir = tempfile::tempdir().unwrap();
    let s = finished(
        train(
            &student,
            &cfg,
            &splits(),
            dir.path(),
            &device,
            &TrainOptions::default(),
        )
        .unwrap(),
    );
    assert!(
        s.test_acc > 0.8,
        "distilled student test accuracy {}",
        s.test_acc
    );

    // A teacher for another number of classes is refused, naming the checkpoint.
    let mut other = splits();
    other.labels.push("d".into());
    let mut four = student.clone();
    four.classes = 4;
    let err = train(
        &four,
        &cfg,
        &other,
        tempfile::tempdir().unwrap().path(),
        &device,
        &TrainOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("teacher") && err.contains("best.bpk"), "{err}");
}

#[test]
fn bad_configs_and_mismatched_data_are_clear_errors() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let config_error = |cfg: TrainerConfig| {
        train(
            &model(),
            &cfg,
            &splits(),
            dir.path(),
            &device,
            &TrainOptions::default(),
        )
        .unwrap_err()
        .to_string()
    };
    let err = config_error(TrainerConfig {
        batch_size: 0,
        ..trainer(2)
    });
    assert!(err.contains("batch_size"), "{err}");
    let err = config_error(TrainerConfig {
        batch_shards: 17,
        ..trainer(2)
    });
    assert!(err.contains("batch_shards"), "{err}");
    let err = train(
        &KwtConfig {
            dropout: 0.1,
            ..model()
        },
        &TrainerConfig {
            batch_shards: 2,
            ..trainer(2)
        },
        &splits(),
        dir.path(),
        &device,
        &TrainOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("batch_shards") && err.contains("dropout"),
        "{err}"
    );

    let mut wrong = model();
    wrong.features = 9;
    let err = train(
        &wrong,
        &trainer(1),
        &splits(),
        dir.path(),
        &device,
        &TrainOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("12x8"), "{err}");

    let missing = dir.path().join("nope.bpk");
    let err = load_checkpoint(&missing, &device).unwrap_err().to_string();
    assert!(err.contains("nope.bpk"), "{err}");
}

/// The training split with every label replaced by class 0.
struct LabelsErased(Box<dyn SampleSource>);

impl SampleSource for LabelsErased {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn sample(
        &self,
        index: usize,
        augment: Option<u64>,
    ) -> Result<(Vec<f32>, usize), TrainingError> {
        Ok((self.0.sample(index, augment)?.0, 0))
    }
}

/// With soft targets at full weight the student learns from the teacher's distributions alone:
/// trained on labels that say nothing (all class 0) it still classifies the test split, where
/// the same training without the teacher cannot.
#[test]
fn soft_distillation_teaches_without_labels() {
    let teacher_dir = trained_teacher();
    let erased = || {
        let mut d = splits();
        d.train = Box::new(LabelsErased(d.train));
        d
    };
    let mut cfg = trainer(10);
    let scratch = tempfile::tempdir().unwrap();
    let plain = train_on_flex(&model(), &cfg, &erased(), &scratch.path().join("plain"));
    assert!(
        plain.test_acc < 0.5,
        "labels all 0 taught {}",
        plain.test_acc
    );
    cfg.distillation = Some(crate::config::DistillationConfig {
        teacher: teacher_dir.path().join(BEST_CHECKPOINT),
        targets: crate::config::DistillTargets::Soft {
            temperature: 2.0,
            weight: 1.0,
        },
    });
    let s = train_on_flex(&model(), &cfg, &erased(), &scratch.path().join("soft"));
    assert!(
        s.test_acc > 0.8,
        "soft-distilled student test accuracy {}",
        s.test_acc
    );

    let mut bad = cfg.clone();
    bad.distillation.as_mut().unwrap().targets = crate::config::DistillTargets::Soft {
        temperature: 0.0,
        weight: 0.5,
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("temperature"), "{err}");
    bad.distillation.as_mut().unwrap().targets = crate::config::DistillTargets::Soft {
        temperature: 1.0,
        weight: 1.5,
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("weight"), "{err}");
}

/// One step with the batch in 2, 3 or 5 shards (run on their own threads) lands where the
/// whole-batch step does, with and without a teacher, and the step does move the model.
#[test]
fn sharded_step_equals_the_whole_batch_step() {
    let device = Device::flex().autodiff();
    let init = model().init(3, &device).unwrap();
    let b = 12;
    let xs: Vec<f32> = (0..b * FRAMES * FEATURES)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let x = Tensor::<3>::from_data(TensorData::new(xs, [b, FRAMES, FEATURES]), &device);
    let labels = |k: i64| {
        let v: Vec<i64> = (0..b as i64).map(|i| (i * k) % 3).collect();
        Tensor::<1, Int>::from_data(TensorData::new(v, [b]), &device)
    };
    let probe = |m: &Kwt| -> Vec<f32> {
        m.forward(x.clone().detach())
            .logits()
            .into_data()
            .iter::<f32>()
            .collect()
    };
    let max_diff = |a: &[f32], c: &[f32]| {
        a.iter()
            .zip(c)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    let soft = TeacherTargets::Soft {
        logits: crate::test_random::seeded::<3>(
            [1, b, 3],
            burn::tensor::Distribution::Normal(0.0, 2.0),
            &device,
        )
        .reshape([b, 3]),
        temperature: 2.0,
        weight: 0.6,
    };
    for teacher in [None, Some(TeacherTargets::Labels(labels(2))), Some(soft)] {
        let step = |shards| {
            let mut optim = AdamWConfig::new().with_weight_decay(0.1).init();
            let (m, loss, correct) = optimizer_step(
                init.clone(),
                &mut optim,
                x.clone(),
                labels(1),
                teacher.clone(),
                1e-2,
                0.1,
                shards,
            );
            (probe(&m), loss, correct)
        };
        let (whole, loss, correct) = step(1);
        assert!(
            max_diff(&whole, &probe(&init)) > 1e-3,
            "the step did not move the model"
        );
        for shards in [2, 3, 5] {
            let (part, l, c) = step(shards);
            assert_eq!(c, correct, "{shards} shards");
            assert!(
                (l - loss).abs() < 1e-5,
                "{shards} shards: loss {l} vs {loss}"
            );
            let d = max_diff(&part, &whole);
            assert!(d < 1e-4, "{shards} shards: logits {d} apart");
        }
    }
}
