//! Synthetic audio -> Speech Commands reader -> MFCC + augmentation -> KWT training: the whole
//! speech path learns the 12-label task well above chance.

use burn::tensor::Device;
use datasets::Task;
use training::{DataSpec, KwtConfig, TrainOptions, TrainOutcome, TrainerConfig, train};

#[test]
fn kwt_learns_synthetic_keywords_from_audio() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DataSpec::SyntheticKeywords {
        folder: dir.path().join("words"),
        words: Some(
            "yes no up down left right on off stop go bed cat dog"
                .split(' ')
                .map(String::from)
                .collect(),
        ),
        per_word: 40,
        seed: 5,
        task: Task::Labels12,
        augment: Default::default(),
        mfcc: Default::default(),
    };
    let data = spec.load(true).unwrap();
    assert_eq!(data.labels.len(), 12);
    assert_eq!((data.frames, data.features), (98, 40));
    let model = KwtConfig::preset("kwt-tiny", 12).unwrap();
    let cfg = TrainerConfig {
        epochs: 10,
        batch_size: 32,
        learning_rate: 3e-3,
        final_learning_rate: 1e-4,
        warmup_epochs: 1,
        seed: 2,
        ..TrainerConfig::default()
    };
    let outcome = train(
        &model,
        &cfg,
        &data,
        &dir.path().join("run"),
        &Device::flex(),
        &TrainOptions::default(),
    )
    .unwrap();
    let TrainOutcome::Finished(summary) = outcome else {
        panic!("not finished")
    };
    // Chance is 1/12 = 8.3%.
    let curve: Vec<_> = summary
        .history
        .iter()
        .map(|r| (r.train_loss, r.valid_acc))
        .collect();
    assert!(
        summary.test_acc > 0.6,
        "test accuracy {:.3}; history {curve:?}",
        summary.test_acc
    );
}
