use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

use super::arch::tests::small_arch;
use super::*;

fn images(n: usize, arch: &TinyFormerArch, device: &Device) -> Tensor<4> {
    let [c, h, w] = arch.input;
    let values: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(values, [n, c, h, w]), device)
}

fn small_supernet() -> SupernetConfig {
    SupernetConfig {
        input: [1, 16, 16],
        classes: 3,
        channels: vec![8, 12],
        mobilenets: 1,
        transformers: 1,
        heads: 2,
        last_linear: 16,
        choices: ChoiceSpace {
            expansions: vec![1, 2],
            ..ChoiceSpace::default()
        },
    }
}

#[test]
fn forward_shape_and_parameter_count_match_the_arch() {
    let device = Device::flex();
    for pooling in [Pooling::SeqPool, Pooling::AvgPool] {
        let mut arch = small_arch();
        arch.pooling = pooling;
        let model = TinyFormer::init(&arch, 3, &device).unwrap();
        assert_eq!(model.num_params(), arch.parameters(), "{pooling:?}");
        let logits = model.forward(images(2, &arch, &device));
        assert_eq!(logits.dims(), [2, arch.classes]);
    }
}

#[test]
fn checkpoint_round_trip_gives_identical_logits() {
    let device = Device::flex();
    let arch = small_arch();
    let model = TinyFormer::init(&arch, 5, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.bpk");
    save_tinyformer(&model, &arch, &path).unwrap();
    let (loaded, loaded_arch) = load_tinyformer(&path, &device).unwrap();
    assert_eq!(loaded_arch, arch);
    let x = images(2, &arch, &device);
    let a = model.forward(x.clone()).into_data();
    let b = loaded.forward(x).into_data();
    assert_eq!(a, b);
    // A missing architecture file is named.
    std::fs::remove_file(dir.path().join(ARCH_FILE)).unwrap();
    let msg = load_tinyformer(&path, &device).unwrap_err().to_string();
    assert!(msg.contains("arch.ron"), "{msg}");
}

#[test]
fn supernet_paths_are_stand_alone_models() {
    let device = Device::flex();
    let cfg = small_supernet();
    let supernet = Supernet::init(&cfg, 1, &device).unwrap();
    assert_eq!(cfg.path_count(), (2 * 2 * 2_u128).pow(2) * 2);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9);
    for _ in 0..4 {
        let path = cfg.sample_path(&mut rng);
        let arch = cfg.arch(&path).unwrap();
        let model = supernet.extract(&cfg, &path).unwrap();
        assert_eq!(model.num_params(), arch.parameters());
        // The extracted model loads into a model built from its architecture file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.bpk");
        save_tinyformer(&model, &arch, &file).unwrap();
        let (loaded, _) = load_tinyformer(&file, &device).unwrap();
        let x = images(1, &arch, &device);
        assert_eq!(
            loaded.forward(x.clone()).into_data(),
            supernet.forward(&cfg, &path, x).unwrap().into_data()
        );
    }
    let mut bad = cfg.sample_path(&mut rng);
    bad.stages[1].mobilenets[0] = 7;
    let msg = cfg.arch(&bad).unwrap_err().to_string();
    assert!(msg.contains("stage 1 mobilenet 0 = 7"), "{msg}");
}

#[test]
fn a_spos_step_updates_only_the_sampled_path() {
    let device = Device::flex().autodiff();
    let cfg = small_supernet();
    let supernet = Supernet::init(&cfg, 2, &device).unwrap();
    let path = PathChoice {
        stages: vec![
            StageChoice {
                downsample: 0,
                mobilenets: vec![1],
                transformers: vec![0],
            };
            2
        ],
        pooling: 0,
    };
    let arch = cfg.arch(&path).unwrap();
    let before = supernet.clone();
    let model = supernet.extract(&cfg, &path).unwrap();
    let loss = model
        .forward(images(2, &arch, &device))
        .powi_scalar(2)
        .mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = AdamWConfig::new().init();
    let after = optim.step(1e-2, supernet, grads);
    let changed = |a: &Tensor<4>, b: &Tensor<4>| {
        a.clone().sub(b.clone()).abs().max().into_scalar::<f32>() > 0.0
    };
    let (s0, s1) = (&before.stages[0], &after.stages[0]);
    assert!(changed(
        &s0.mobilenets[0][1].expand.weight.val(),
        &s1.mobilenets[0][1].expand.weight.val()
    ));
    assert!(!changed(
        &s0.mobilenets[0][0].expand.weight.val(),
        &s1.mobilenets[0][0].expand.weight.val()
    ));
    assert!(changed(
        &s0.down[0].conv.weight.val(),
        &s1.down[0].conv.weight.val()
    ));
    assert!(!changed(
        &s0.down[1].conv.weight.val(),
        &s1.down[1].conv.weight.val()
    ));
}

/// Without normalization layers the initialization decides whether a deep path starts alive:
/// residual blocks start as the identity (zero last conv), and a He-initialized conv + ReLU
/// keeps the signal's second moment instead of shrinking it about 6x as PyTorch's default does.
#[test]
fn residual_blocks_start_as_identity_and_conv_relu_keeps_the_signal() {
    use burn::tensor::activation::relu;
    use rand::SeedableRng;

    use crate::init::{ConvInit, conv2d};
    use modules::{MobileNetBlock, TransformerModule};

    let device = Device::flex();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let x: Tensor<4> = crate::init::normal(&mut rng, [4, 16, 8, 8], 1.0, &device);
    let same = |a: Tensor<4>, b: Tensor<4>| {
        let d: f32 = (a - b).abs().max().into_scalar();
        assert!(d < 1e-6, "block is not the identity at init: max diff {d}");
    };
    same(
        MobileNetBlock::new(&mut rng, 16, 4, &device).forward(x.clone()),
        x.clone(),
    );
    same(
        TransformerModule::new(&mut rng, 16, 2, 2, 1, &device).forward(x.clone()),
        x.clone(),
    );

    let second_moment = |t: Tensor<4>| -> f32 { t.powf_scalar(2.0).mean().into_scalar() };
    let m_in = second_moment(x.clone());
    for (how, lo, hi) in [(ConvInit::He, 0.6, 1.6), (ConvInit::PyTorch, 0.0, 0.35)] {
        let conv = conv2d(&mut rng, how, 16, 16, 3, 1, 1, 1, &device);
        let ratio = second_moment(relu(conv.forward(x.clone()))) / m_in;
        assert!(
            (lo..hi).contains(&ratio),
            "{how:?}: E[relu(conv x)^2] / E[x^2] = {ratio}, expected in [{lo}, {hi})"
        );
    }
}
