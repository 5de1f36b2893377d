use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use training::toy_data::{TOY_FEATURES, TOY_FRAMES, toy_split, toy_splits};
use training::{KwtConfig, RunSummary, TrainOptions, TrainOutcome, TrainerConfig};

use super::*;
use crate::ptq::float_graph::FOp;
use crate::ptq::{GeluMethod, evaluate_int8, quantize_kwt};
use crate::{Graph, Op};
use training::qat::QuantFormat;

fn config() -> KwtConfig {
    KwtConfig {
        frames: TOY_FRAMES,
        features: TOY_FEATURES,
        ..KwtConfig::preset("kwt-micro", 3).unwrap()
    }
}

fn trainer(epochs: usize, lr: f64) -> TrainerConfig {
    TrainerConfig {
        epochs,
        batch_size: 16,
        learning_rate: lr,
        final_learning_rate: lr / 10.0,
        warmup_epochs: 0,
        seed: 5,
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

/// A float toy model trained briefly into `dir`; returns its best checkpoint.
fn float_checkpoint(dir: &Path) -> std::path::PathBuf {
    float_checkpoint_after(dir, 4)
}

/// [`float_checkpoint`] after `epochs` epochs.
fn float_checkpoint_after(dir: &Path, epochs: usize) -> std::path::PathBuf {
    let s = finished(
        training::train(
            &config(),
            &trainer(epochs, 3e-3),
            &toy_splits(),
            dir,
            &Device::flex(),
            &TrainOptions::default(),
        )
        .unwrap(),
    );
    s.best_checkpoint
}

fn toy_stats() -> training::FeatureStats {
    training::feature_stats(&toy_split(10, 3), TOY_FRAMES, TOY_FEATURES, 30).unwrap()
}

/// `m` with every LayerNorm's gain and offset drawn around 1 and 0, as training leaves them.
/// A fresh gain of all ones puts the graph's LayerNorm outputs on exact ties (`n * 127 *
/// (1 / 127)` in units of a power of two), which its 31-bit multiplier, rounded from f32's
/// `1 / 127`, breaks below and f32 products break at the tie: one code apart on a quarter of
/// Scaled-LayerNorm's outputs. Trained gains make such ties as rare as anywhere else.
fn with_uneven_norms(mut m: training::Kwt, seed: u64) -> training::Kwt {
    let mut r = crate::tests::Rng(seed);
    let device = m.embed.weight.val().device();
    let mut uneven = |norm: &mut burn::nn::LayerNorm| {
        let d = norm.gamma.val().dims()[0];
        let vector = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [d]), &device);
        norm.gamma = burn::module::Param::from_tensor(vector(r.f32s(d, 0.7, 1.3)));
        norm.beta = Some(burn::module::Param::from_tensor(vector(
            r.f32s(d, -0.2, 0.2),
        )));
    };
    for b in &mut m.blocks {
        uneven(&mut b.norm1);
        uneven(&mut b.norm2);
    }
    uneven(&mut m.head.norm);
    if let Some(h) = &mut m.dist_head {
        uneven(&mut h.norm);
    }
    m
}

/// An untrained model of `cfg` with the toy data's input standardization.
fn untrained(cfg: &KwtConfig, seed: u64, device: &Device) -> training::Kwt {
    let mut m = cfg.init(seed, device).unwrap();
    m.input_norm = training::FeatureNorm::from_stats(&toy_stats(), device);
    m
}

fn calibration() -> Vec<Vec<f32>> {
    toy_split(20, 11).features
}

fn opts() -> PtqOptions {
    PtqOptions {
        calibration_samples: 60,
        report_samples: 16,
        ..PtqOptions::default()
    }
}

/// QAT of `ckpt` with the test options into `out`.
fn qat_of(ckpt: &Path, trainer: &TrainerConfig, data: &training::DataSplits, out: &Path) -> QatRun {
    qat_with(
        ckpt,
        trainer,
        data,
        out,
        None,
        QatOptions::default().threshold_lr_gain,
    )
    .unwrap()
}

/// [`qat_of`], stopped after `stop` steps, with the thresholds' learning-rate gain `gain`.
fn qat_with(
    ckpt: &Path,
    trainer: &TrainerConfig,
    data: &training::DataSplits,
    out: &Path,
    stop: Option<usize>,
    gain: f32,
) -> Result<QatRun> {
    let qat = QatOptions {
        ptq: opts(),
        threshold_lr_gain: gain,
        initial: None,
    };
    qat_with_options(ckpt, trainer, data, out, stop, &qat)
}

/// [`qat_with`] with any options.
fn qat_with_options(
    ckpt: &Path,
    trainer: &TrainerConfig,
    data: &training::DataSplits,
    out: &Path,
    stop: Option<usize>,
    qat: &QatOptions,
) -> Result<QatRun> {
    quantize_kwt_qat(
        ckpt,
        trainer,
        data,
        out,
        &Device::flex(),
        &TrainOptions {
            stop_after_steps: stop,
            ..TrainOptions::default()
        },
        &calibration(),
        qat,
    )
}

#[test]
fn an_interrupted_qat_run_resumes_to_the_same_graph() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = float_checkpoint_after(&dir.path().join("float"), 1);
    let data = toy_splits();
    let tr = trainer(3, 3e-3);
    let gain = QatOptions::default().threshold_lr_gain;
    let whole = qat_of(&ckpt, &tr, &data, &dir.path().join("whole"));

    // 12 steps per epoch: stopped in the second epoch, then resumed by the same call
    let parts = dir.path().join("parts");
    let e = qat_with(&ckpt, &tr, &data, &parts, Some(17), gain)
        .err()
        .expect("stopped")
        .to_string();
    assert!(e.contains("stopped at step 17"), "{e}");
    let resumed = qat_of(&ckpt, &tr, &data, &parts);
    assert_eq!(resumed.learned, whole.learned);
    assert_eq!(resumed.summary.test_confusion, whole.summary.test_confusion);
    assert_eq!(resumed.kept_start, whole.kept_start);
    assert!(resumed.graph == whole.graph, "the integer graphs differ");

    // the run folder is not resumed from other quantizers or another float checkpoint
    let e = qat_with(&ckpt, &tr, &data, &parts, None, gain * 2.0)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("`quantizers.threshold_lr_gain` is 50.0 in the saved run, 100.0 now"),
        "{e}"
    );
    let other = float_checkpoint_after(&dir.path().join("float2"), 2);
    let e = qat_with(&other, &tr, &data, &parts, None, gain)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("`checkpoint` is"), "{e}");
    // nor modelling another LayerNorm kernel
    let scaled = QatOptions {
        ptq: PtqOptions {
            scaled_layer_norm: true,
            ..opts()
        },
        threshold_lr_gain: gain,
        initial: None,
    };
    let e = qat_with_options(&ckpt, &tr, &data, &parts, None, &scaled)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("`quantizers.scaled_layer_norm` is false in the saved run, true now"),
        "{e}"
    );
    // nor another GELU kernel
    let ibert = QatOptions {
        ptq: PtqOptions {
            gelu: GeluMethod::IBert,
            ..opts()
        },
        ..scaled
    };
    let e = qat_with_options(&ckpt, &tr, &data, &parts, None, &ibert)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("`quantizers.ibert_gelu` is false in the saved run, true now"),
        "{e}"
    );
    // settings written before Scaled-LayerNorm and i-GELU were modelled read as I-BERT's
    // LayerNorm and the exact GELU: the run resumes
    let settings = parts.join(hook::QAT_SETTINGS_FILE);
    let text = std::fs::read_to_string(&settings).unwrap();
    assert!(
        text.contains("scaled_layer_norm") && text.contains("ibert_gelu"),
        "{text}"
    );
    let older: String = text
        .lines()
        .filter(|l| !l.contains("scaled_layer_norm") && !l.contains("ibert_gelu"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&settings, older).unwrap();
    assert!(qat_of(&ckpt, &tr, &data, &parts).graph == whole.graph);
    // nor a run folder that does not say what it started from (an older version's)
    std::fs::remove_file(parts.join(hook::QAT_SETTINGS_FILE)).unwrap();
    let e = qat_with(&ckpt, &tr, &data, &parts, None, gain)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("has no qat.ron"), "{e}");
}

#[test]
fn qat_fine_tunes_and_lowers_to_a_valid_integer_graph() {
    let dir = tempfile::tempdir().unwrap();
    // undertrained, so that fine-tuning has validation accuracy to gain over its start
    let ckpt = float_checkpoint_after(&dir.path().join("float"), 1);
    let data = toy_splits();
    let run = qat_of(&ckpt, &trainer(3, 3e-3), &data, &dir.path().join("qat"));
    run.graph.validate().unwrap();
    // The file format round-trips the graph the interpreter scores.
    let graph: Graph = crate::from_bytes(&crate::to_bytes(&run.graph).unwrap()).unwrap();
    let qat = evaluate_int8(&graph, data.test.as_ref(), &data.labels).unwrap();
    assert_eq!(qat.total(), 60);
    let (float, _) = training::load_checkpoint(&ckpt, &Device::flex()).unwrap();
    let (ptq_graph, _) = quantize_kwt(&float, &run.config, &calibration(), &opts()).unwrap();
    let ptq = evaluate_int8(&ptq_graph, data.test.as_ref(), &data.labels).unwrap();
    eprintln!(
        "toy: PTQ int8 {:.3}, QAT int8 {:.3}, QAT fake-quant {:.3}",
        ptq.accuracy(),
        qat.accuracy(),
        run.fake_quant_test_acc
    );
    // Chance is 1/3; the fine-tuned integer graph must have kept what the model learned.
    assert!(qat.accuracy() > 0.6, "QAT int8 accuracy {}", qat.accuracy());
    // Every point was trained from its PTQ start, and some thresholds moved.
    assert!(
        !run.kept_start,
        "start {} best {}",
        run.start_valid_acc, run.summary.best_valid_acc
    );
    assert!(run.summary.best_valid_acc > run.start_valid_acc);
    assert_eq!(run.initial.len(), run.learned.len());
    let moved = run
        .initial
        .iter()
        .filter(|(k, v)| (run.learned[*k] - **v).abs() > 1e-6)
        .count();
    assert!(moved > 0, "no threshold moved");
    assert!(!run.report.layers.is_empty());
    // The run's best checkpoint loads with the quantizers it trained (the thresholds are stored
    // divided by the run's gain) and lowers to the same graph.
    let best = &run.summary.best_checkpoint;
    let (loaded, _) = load_qat_checkpoint(best, &Device::flex()).unwrap();
    assert_eq!(loaded.qat.as_ref().unwrap().thresholds(), run.learned);
    let (graph, _) = lower_qat(&loaded, &run.config, &calibration(), &opts()).unwrap();
    assert!(graph == run.graph, "the reloaded model lowers otherwise");
    // a checkpoint without its run's settings is refused, naming them
    let lone = dir.path().join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    for f in ["best.bpk", training::checkpoint::MODEL_CONFIG_FILE] {
        std::fs::copy(best.with_file_name(f), lone.join(f)).unwrap();
    }
    let e = load_qat_checkpoint(&lone.join("best.bpk"), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(e.contains(hook::QAT_SETTINGS_FILE), "{e}");
}

#[test]
fn qat_keeps_its_starting_point_unless_an_epoch_beats_it_on_validation() {
    // At a vanishing learning rate no epoch can beat the start (at best it ties), so the
    // lowered graph is the start's: PTQ's graph (per-channel weights, initial thresholds).
    let dir = tempfile::tempdir().unwrap();
    let ckpt = float_checkpoint(&dir.path().join("float"));
    let data = toy_splits();
    let run = qat_of(&ckpt, &trainer(1, 1e-12), &data, &dir.path().join("qat"));
    assert!(
        run.kept_start,
        "{} vs {}",
        run.summary.best_valid_acc, run.start_valid_acc
    );
    assert_eq!(run.learned, run.initial);
    let (float, _) = training::load_checkpoint(&ckpt, &Device::flex()).unwrap();
    let (ptq, _) = quantize_kwt(&float, &run.config, &calibration(), &opts()).unwrap();
    assert_eq!(
        crate::to_bytes(&run.graph).unwrap(),
        crate::to_bytes(&ptq).unwrap()
    );
    // the reported fake-quant accuracy is the start's
    let start_test = training::evaluate(
        &run.model,
        data.test.as_ref(),
        &data.labels,
        TOY_FRAMES,
        TOY_FEATURES,
        64,
        &Device::flex(),
    )
    .unwrap()
    .accuracy();
    assert_eq!(run.fake_quant_test_acc, start_test);
}

/// PTQ's graph carries the calibration QAT starts from: read off it, the initial thresholds
/// are the calibrated ones (the CLI then calibrates once), for every estimator and weight format.
#[test]
fn initial_thresholds_read_off_the_ptq_graph_are_the_calibrated_ones() {
    let cfg = config();
    let m = untrained(&cfg, 4, &Device::flex());
    let samples = calibration();
    for (estimator, per_channel) in [
        (crate::ptq::Estimator::Percentile(99.99), true),
        (crate::ptq::Estimator::MinMax, false),
    ] {
        let opts = PtqOptions {
            estimator,
            per_channel,
            ..opts()
        };
        let (graph, _) = quantize_kwt(&m, &cfg, &samples, &opts).unwrap();
        let calibrated = initial_thresholds(&m, &cfg, &samples, &opts).unwrap();
        let read = initial_thresholds_from_graph(&m, &cfg, &graph).unwrap();
        assert_eq!(read, calibrated, "{estimator:?}, per channel {per_channel}");
    }
    // Another model's graph lacks this one's tensors or scales: an error, not a guess.
    let other = KwtConfig {
        depth: cfg.depth + 1,
        ..cfg.clone()
    };
    let bigger = untrained(&other, 4, &Device::flex());
    let (graph, _) = quantize_kwt(&m, &cfg, &samples, &opts()).unwrap();
    let err = initial_thresholds_from_graph(&bigger, &other, &graph).unwrap_err();
    assert!(err.to_string().contains("block"), "{err}");
}

#[test]
fn threshold_gradients_are_nonzero_and_lowering_uses_the_thresholds() {
    let device = Device::flex();
    let cfg = config();
    let float = untrained(&cfg, 2, &device);
    let stats = toy_stats();
    let samples = calibration();
    let initial = initial_thresholds(&float, &cfg, &samples, &opts()).unwrap();
    // Every point starts half an octave below the top of its PTQ power-of-two interval.
    for (name, l) in &initial {
        assert_eq!(l.fract().abs(), 0.5, "{name}: {l}");
    }

    // Gradients wrt the thresholds on a training batch (autodiff device).
    let ad = device.clone().autodiff();
    let mut on_ad = cfg.init(2, &ad).unwrap();
    on_ad.input_norm = training::FeatureNorm::from_stats(&stats, &ad);
    let model = attach(on_ad, &cfg, &initial, 10.0, QuantFormat::default()).unwrap();
    let xs: Vec<f32> = samples[..6].iter().flatten().copied().collect();
    let x = Tensor::<3>::from_data(TensorData::new(xs, [6, TOY_FRAMES, TOY_FEATURES]), &ad);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 0, 1, 2], [6]), &ad);
    let logits = model.forward(x).logits();
    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&ad)
        .forward(logits, y);
    let grads = loss.backward();
    let q = model.qat.as_ref().unwrap();
    let nonzero = q
        .points()
        .iter()
        .filter(|(_, _, p)| {
            p.scaled_log2_t
                .val()
                .grad(&grads)
                .is_some_and(|g| g.into_scalar::<f32>() != 0.0)
        })
        .count();
    // All points but the distillation average (absent here) receive a gradient; allow a few
    // exact zeros (a point whose values round exactly can have a zero sum).
    assert!(
        nonzero * 10 >= q.points().len() * 8,
        "{nonzero} of {} thresholds have a gradient",
        q.points().len()
    );

    // Move two thresholds by hand; lowering must follow them.
    let mut model = attach(float.clone(), &cfg, &initial, 10.0, QuantFormat::default()).unwrap();
    let q = model.qat.as_mut().unwrap();
    let fc1_l = initial["block0.mlp.fc1"] + 1.0;
    q.blocks[0].fc1.output.set_log2_threshold(fc1_l);
    let w_l = initial["block0.mlp.fc2.weight"] - 2.0;
    q.blocks[0].fc2.weight.set_log2_threshold(w_l);
    let (graph, report) = lower_qat(&model, &cfg, &samples, &opts()).unwrap();
    graph.validate().unwrap();
    let fc1 = report
        .layers
        .iter()
        .find(|l| l.name == "block0.mlp.fc1")
        .unwrap();
    assert_eq!(fc1.scale_exp, Some(fc1_l.ceil() as i32 - 7));
    // Every activation point's tensor sits at the scale its threshold implies.
    let learned = LearnedExponents::of(model.qat.as_ref().unwrap());
    for layer in &report.layers {
        if let Some(&k) = learned.activations.get(&layer.name) {
            assert_eq!(layer.scale_exp, Some(k), "{}", layer.name);
        }
    }
    // fc2's weights are rounded at 2^(ceil(l) - 7), saturating at +-127.
    let fg = FloatGraph::from_kwt(&float, &cfg).unwrap();
    let node = fg
        .nodes
        .iter()
        .find(|n| n.name == "block0.mlp.fc2")
        .unwrap();
    let FOp::Linear { weight, .. } = &node.op else {
        panic!("fc2 is a Linear")
    };
    let s = 2f64.powi(w_l.ceil() as i32 - 7);
    let want: Vec<i8> = weight
        .iter()
        .map(|&w| (w as f64 / s).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let lowered = graph
        .nodes
        .iter()
        .find(|n| n.name == "block0.mlp.fc2")
        .unwrap();
    let Op::Linear { weight: got, .. } = &lowered.op else {
        panic!("fc2 lowers to a Linear")
    };
    assert_eq!(got, &want);
    assert!(
        want.iter().any(|&v| v.abs() == 127),
        "the lowered threshold clips"
    );
}

#[test]
fn lowering_a_float_model_without_quantizers_is_an_error() {
    let device = Device::flex();
    let cfg = config();
    let m = cfg.init(0, &device).unwrap();
    let err = lower_qat(&m, &cfg, &calibration(), &opts()).unwrap_err();
    assert!(matches!(err, PtqError::Qat(_)), "{err}");
}

#[test]
fn the_untrained_starting_point_lowers_with_power_of_two_weights() {
    let device = Device::flex();
    let cfg = config();
    let m = untrained(&cfg, 4, &device);
    let pow2 = PtqOptions {
        per_channel: false,
        ..opts()
    };
    let (q, graph, _) = quantize_kwt_untrained(&m, &cfg, &calibration(), &pow2).unwrap();
    graph.validate().unwrap();
    assert!(!q.qat.as_ref().unwrap().per_channel_weights());
    let learned = LearnedExponents::of(q.qat.as_ref().unwrap());
    // One weight point per Linear of the integer graph, each at its PTQ-calibrated start.
    let linears = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Linear { .. }))
        .count();
    assert_eq!(learned.weights.len(), linears);
    let initial = initial_thresholds(&m, &cfg, &calibration(), &opts()).unwrap();
    for (name, k) in &learned.activations {
        assert_eq!(*k, initial[name].ceil() as i32 - 7, "{name}");
    }
}

#[test]
fn the_untrained_per_channel_starting_point_is_the_ptq_graph() {
    // Same activation exponents (each threshold sits inside its PTQ interval) and the same
    // per-channel weight rounding: QAT with per-channel weights starts exactly at PTQ with
    // its softmax outputs at 2^-8.
    let device = Device::flex();
    let cfg = config();
    let m = untrained(&cfg, 4, &device);
    let (q, graph, _) = quantize_kwt_untrained(&m, &cfg, &calibration(), &opts()).unwrap();
    assert!(q.qat.as_ref().unwrap().per_channel_weights());
    // ... at QAT's softmax step 2^-8 (PTQ's default calibrates each softmax's own step)
    let at_2_8 = PtqOptions {
        softmax_out_shift: Some(0),
        ..opts()
    };
    let (ptq, _) = quantize_kwt(&m, &cfg, &calibration(), &at_2_8).unwrap();
    assert_eq!(
        crate::to_bytes(&graph).unwrap(),
        crate::to_bytes(&ptq).unwrap()
    );
    let pow2 = PtqOptions {
        per_channel: false,
        ..opts()
    };
    let (_, pow2_graph, _) = quantize_kwt_untrained(&m, &cfg, &calibration(), &pow2).unwrap();
    assert_ne!(
        crate::to_bytes(&pow2_graph).unwrap(),
        crate::to_bytes(&ptq).unwrap(),
        "per-tensor power-of-two weights differ from PTQ's per-channel ones"
    );
}

#[test]
fn qat_softmax_writes_the_integer_kernels_codes() {
    use crate::ibert::{EXP_A, EXP_B, EXP_C, ISoftmax, SOFTMAX_MAX_EXP_OUT, SOFTMAX_OUT_EXP};
    use training::int_softmax::{self as emu, IntSoftmaxConstants, int_softmax};
    assert_eq!(training::qat::SOFTMAX_OUT_EXP, SOFTMAX_OUT_EXP);
    assert_eq!(
        (emu::EXP_A, emu::EXP_B, emu::EXP_C, emu::SOFTMAX_MAX_EXP_OUT),
        (EXP_A, EXP_B, EXP_C, SOFTMAX_MAX_EXP_OUT)
    );
    let device = Device::flex();
    let mut r = crate::tests::Rng(7);
    let mut shifts = std::collections::BTreeSet::new();
    // scales from coarse to fine enough that the kernel shifts its input right (j < 0)
    for exp in [3, 0, -2, -4, -6, -9, -12, -14] {
        for len in [1usize, 7, 99, 300] {
            let scale = 2f64.powi(exp);
            let kernel = ISoftmax::new(len, scale);
            let ours = IntSoftmaxConstants::new(len, exp);
            let Ok(kernel) = kernel else {
                assert_eq!(ours, None, "exp {exp} len {len}");
                continue;
            };
            let c = ours.unwrap_or_else(|| panic!("exp {exp} len {len}: no constants"));
            let e = kernel.exp;
            assert_eq!(
                (c.j, c.q_ln2, c.q_b, c.q_c),
                (kernel.j, e.q_ln2 as i64, e.q_b as i64, e.q_c as i64),
                "exp {exp} len {len}"
            );
            shifts.insert(c.j.signum());
            // full-range rows, and narrow ones as attention scores mostly are
            let mut rows: Vec<Vec<i8>> = (0..4).map(|_| r.i8s(len)).collect();
            rows.extend((0..4).map(|k| r.i8s(len).iter().map(|&v| v / (8 << k)).collect()));
            rows.push(vec![127; len]);
            rows.push(vec![-128; len]);
            let flat: Vec<f32> = rows
                .iter()
                .flatten()
                .map(|&v| v as f32 * scale as f32)
                .collect();
            let x = Tensor::<2>::from_data(TensorData::new(flat, [rows.len(), len]), &device);
            let emulated: Vec<f32> = int_softmax(x, exp)
                .unwrap()
                .into_data()
                .iter::<f32>()
                .collect();
            let (mut out, mut scratch) = (vec![0i8; len], vec![0i32; len]);
            for (row, em) in rows.iter().zip(emulated.chunks_exact(len)) {
                kernel.eval_row(row, &mut out, &mut scratch);
                let codes: Vec<i32> = out.iter().map(|&o| o as i32 + 128).collect();
                let ours: Vec<i32> = em.iter().map(|&p| (p * 256.0) as i32).collect();
                assert_eq!(ours, codes, "exp {exp} len {len} row {row:?}");
            }
        }
    }
    // both shift directions of the kernel's input were exercised
    assert!(shifts.contains(&1) && shifts.contains(&-1), "{shifts:?}");
}

#[test]
fn qat_gelu_writes_the_integer_kernels_codes() {
    // training's i-GELU table, rounded half up at the output scale as the GELU point rounds,
    // against Int8Gelu: the same constants, the same integer result for each of the 256
    // codes, and the same int8 outputs for every input and output scale a KWT uses
    use crate::ibert::{ERF_A, ERF_B, Int8Gelu};
    use training::int_gelu::{self as emu, IntGeluConstants};
    assert_eq!((emu::ERF_A, emu::ERF_B), (ERF_A, ERF_B));
    let (mut checked, mut outputs) = (Vec::new(), 0);
    for exp in -24..=8 {
        let in_scale = 2f64.powi(exp);
        let ours = IntGeluConstants::new(exp);
        // the output scale does not change the constants; any valid one tells them apart
        let Ok(kernel) = Int8Gelu::new(in_scale, 1.0 / 16.0) else {
            assert_eq!(ours, None, "exp {exp}");
            continue;
        };
        let c = ours.unwrap_or_else(|| panic!("exp {exp}: no constants"));
        let g = kernel.gelu;
        assert_eq!(
            (c.j, c.q_clip, c.q_b, c.q_c, c.q_one, c.shift, c.q_max),
            (
                kernel.j,
                g.q_clip as i64,
                g.q_b as i64,
                g.q_c as i64,
                g.q_one as i64,
                g.shift,
                g.q_max as i64
            ),
            "exp {exp}"
        );
        let in_internal = in_scale * 2f64.powi(-(c.j as i32));
        assert_eq!(c.output_scale, g.output_scale(in_internal), "exp {exp}");
        let table = c.table();
        for q in -128..=127i8 {
            assert_eq!(
                c.eval(q),
                g.eval((q as i32) << c.j) as i64,
                "exp {exp} q {q}"
            );
        }
        // output scales around the GELU's range at this input scale: 127 codes cover it
        let top = (127.0 * in_scale).log2().ceil() as i32;
        for out_exp in top - 9..=top - 5 {
            let Ok(kernel) = Int8Gelu::new(in_scale, 2f64.powi(out_exp)) else {
                continue;
            };
            for (i, &v) in table.iter().enumerate() {
                let q = i as i32 - 128;
                let ours = (v / 2f32.powi(out_exp) + 0.5).floor().clamp(-128.0, 127.0);
                assert_eq!(
                    ours as i8,
                    kernel.eval(q as i8),
                    "exp {exp} out {out_exp} q {q}"
                );
                outputs += 1;
            }
        }
        checked.push(exp);
    }
    // int8 inputs at 2^-24 .. 2^8: only scales finer than 2^-13 overflow int32
    assert_eq!(checked, (-13..=8).collect::<Vec<_>>());
    assert_eq!(outputs, 22 * 5 * 256);
}

#[test]
fn the_fake_quantized_forward_tracks_its_integer_graph() {
    // The fake-quantized forward and the graph lowered from it compute the same thing, with
    // the exact GELU table or I-BERT's i-GELU; GELU inputs span several units here (i-GELU's
    // error grows with |x|).
    let device = Device::flex();
    let cfg = config();
    let mut m = untrained(&cfg, 4, &device);
    for b in &mut m.blocks {
        let w = b.mlp.fc1.weight.val() * 6.0;
        b.mlp.fc1.weight = burn::module::Param::from_tensor(w);
        // residual sums octaves wider than the LayerNorm outputs: a PostNorm block's output
        // (its norm2) is then on another scale than its add2, which the head must tell apart
        let w = b.mlp.fc2.weight.val() * 16.0;
        b.mlp.fc2.weight = burn::module::Param::from_tensor(w);
    }
    assert!(m.blocks[0].post_norm);
    let test = toy_split(12, 21);
    let labels = toy_splits().labels;
    let fidelity = |gelu| {
        let o = PtqOptions { gelu, ..opts() };
        let (q, graph, _) = quantize_kwt_untrained(&m, &cfg, &calibration(), &o).unwrap();
        let score = graph_fidelity(&q, &cfg, &graph, &test, &labels, 16).unwrap();
        // the same interpreter pass scores the graph as evaluate_int8 does
        let int8 = evaluate_int8(&graph, &test, &labels).unwrap();
        assert_eq!(score.int8, int8);
        score.fidelity
    };
    let (exact, ibert) = (fidelity(GeluMethod::Exact), fidelity(GeluMethod::IBert));
    eprintln!("fake-quant vs graph: exact GELU {exact:?}, i-GELU {ibert:?}");
    assert_eq!(exact.samples, training::SampleSource::len(&test));
    // with the graph's own GELU table every op is modelled: the logits are the graph's, bit
    // for bit (before the head read the last block's norm2 scale: 31 dB; before the Linear
    // biases were rounded as the graph stores them: 41 dB)
    assert_eq!(
        exact.logits_snr_db,
        crate::ptq::report::MAX_SNR_DB,
        "{exact:?}"
    );
    assert_eq!(exact.argmax_agreement, 1.0);
    // with i-GELU too (before QAT modelled i-GELU: 36-37 dB)
    assert_eq!(
        ibert.logits_snr_db,
        crate::ptq::report::MAX_SNR_DB,
        "{ibert:?}"
    );
    assert_eq!(ibert.argmax_agreement, 1.0);
    // lowering takes the GELU kernel from the quantizers, whatever the caller's options say
    let ibert_opts = PtqOptions {
        gelu: GeluMethod::IBert,
        ..opts()
    };
    let (q, _, _) = quantize_kwt_untrained(&m, &cfg, &calibration(), &ibert_opts).unwrap();
    assert!(q.qat.as_ref().unwrap().ibert_gelu());
    let (graph, _) = lower_qat(&q, &cfg, &calibration(), &opts()).unwrap();
    let kinds: Vec<&str> = graph.nodes.iter().map(|n| n.op.kind()).collect();
    assert!(
        kinds.contains(&"Gelu") && !kinds.contains(&"GeluTable"),
        "{kinds:?}"
    );
}

#[test]
fn qat_layer_norm_writes_the_integer_kernels_codes() {
    // int_layer_norm then int_layer_norm_affine, rounded half up at the output scale, against
    // IntLayerNorm::eval_row_ibert and eval_row_scaled; the affine part in float (the gain
    // rounded, n and the offset not, nothing saturated) is what QAT computed before and misses
    // codes of both.
    use crate::ibert::{IBERT_NORM_FRAC, IntLayerNorm, SCALED_NORM_FRAC};
    use training::qat::NormKernel;
    assert_eq!(training::qat::NORM_FRAC as u32, IBERT_NORM_FRAC);
    assert_eq!(training::qat::SCALED_NORM_FRAC as u32, SCALED_NORM_FRAC);
    let device = Device::flex();
    let (len, rows, exp) = (64usize, 400usize, -4i32);
    let mut r = crate::tests::Rng(7);
    let unit = |r: &mut crate::tests::Rng| r.i8s(1)[0] as f32 / 128.0;
    let gamma: Vec<f32> = (0..len).map(|_| 1.0 + 0.5 * unit(&mut r)).collect();
    let beta: Vec<f32> = (0..len).map(|_| 0.3 * unit(&mut r)).collect();
    let scale = 2f64.powi(exp);
    let eps = training::fused_ops::LAYER_NORM_EPSILON;
    // Every fourth row is near-constant but for one outlier: its normalised value is about
    // sqrt(len) = 8, past what Scaled-LayerNorm's INT16 affine sum holds (about 2 max|gamma|).
    let codes: Vec<Vec<i8>> = (0..rows)
        .map(|i| {
            let mut row = r.i8s(len);
            if i % 4 == 0 {
                row.iter_mut().for_each(|v| *v /= 32);
                row[i % len] = if i % 8 == 0 { 127 } else { -128 };
            }
            row
        })
        .collect();
    let flat: Vec<f32> = codes
        .iter()
        .flatten()
        .map(|&q| q as f32 * scale as f32)
        .collect();
    let x = Tensor::<2>::from_data(TensorData::new(flat, [rows, len]), &device);
    let n = training::qat::int_layer_norm(x, exp);
    let vector = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [len]), &device);
    // the output scales: fine for I-BERT, coarse enough for Scaled's saturation to show
    for (kernel, out_exp) in [(NormKernel::IBert, -5), (NormKernel::Scaled, -4)] {
        let out_scale = 2f64.powi(out_exp);
        let g = kernel.frac() as u32;
        let ln = IntLayerNorm::from_float(&gamma, &beta, eps, scale, out_scale, g).unwrap();
        let modelled = training::qat::int_layer_norm_affine(
            n.clone(),
            vector(&gamma),
            Some(vector(&beta)),
            kernel,
        );
        let float_affine = n.clone()
            * training::fake_quant::fake_quant_abs_max(vector(&gamma)).unsqueeze()
            + vector(&beta).unsqueeze();
        let to_codes = |t: Tensor<2>| -> Vec<i8> {
            t.into_data()
                .iter::<f32>()
                .map(|v| ((v as f64 / out_scale + 0.5).floor()).clamp(-128.0, 127.0) as i8)
                .collect()
        };
        let (modelled, float_affine) = (to_codes(modelled), to_codes(float_affine));
        let (mut out, mut c, mut nb) = (vec![0i8; len], vec![0i32; len], vec![0i32; len]);
        let (mut missed_modelled, mut missed_float, mut saturated) = (0, 0, 0);
        for (i, row) in codes.iter().enumerate() {
            match kernel {
                NormKernel::IBert => ln.eval_row_ibert(row, &mut out, &mut c, &mut nb),
                NormKernel::Scaled => ln.eval_row_scaled(row, &mut out, &mut c, &mut nb),
            }
            saturated += out.iter().filter(|&&o| o == 127 || o == -128).count();
            let span = i * len..(i + 1) * len;
            missed_modelled += out
                .iter()
                .zip(&modelled[span.clone()])
                .filter(|(a, b)| a != b)
                .count();
            missed_float += out
                .iter()
                .zip(&float_affine[span])
                .filter(|(a, b)| a != b)
                .count();
        }
        eprintln!(
            "{kernel:?}: codes missed of {}: modelled {missed_modelled}, float affine \
             {missed_float}; saturated {saturated}",
            rows * len
        );
        assert_eq!(missed_modelled, 0, "{kernel:?}");
        assert!(
            missed_float > 0,
            "{kernel:?}: the unmodelled roundings never showed"
        );
    }
}

#[test]
fn qat_normalizes_layer_norm_rows_as_the_integer_kernel_does() {
    use crate::ibert::{NORM_MEAN_FRAC, NormParams, normalize_row};
    assert_eq!(training::qat::NORM_MEAN_FRAC as u32, NORM_MEAN_FRAC);
    let device = Device::flex();
    let g = 14;
    for (len, exp, seed) in [
        (64usize, -4i32, 1u64),
        (100, -5, 2),
        (300, -3, 3),
        (7, -4, 4),
    ] {
        let scale = 2f64.powi(exp);
        let p = NormParams::new(len, scale, training::fused_ops::LAYER_NORM_EPSILON, g).unwrap();
        let mut r = crate::tests::Rng(seed);
        let rows: Vec<Vec<i8>> = (0..6).map(|_| r.i8s(len)).collect();
        let flat: Vec<f32> = rows
            .iter()
            .flatten()
            .map(|&q| q as f32 * scale as f32)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(flat, [rows.len(), len]), &device);
        let emulated: Vec<f32> = training::qat::int_layer_norm(x, exp)
            .into_data()
            .iter::<f32>()
            .collect();
        let (mut c, mut out) = (vec![0i32; len], vec![0i32; len]);
        for (row, em) in rows.iter().zip(emulated.chunks_exact(len)) {
            normalize_row(row, &p, &mut c, &mut out);
            for (&k, &e) in out.iter().zip(em) {
                // the kernel rounds its quotient at 2^-14; f32 adds a little more
                let d = (k as f64 - e as f64 * 2f64.powi(g as i32)).abs();
                assert!(d <= 1.0, "len {len}: kernel {k}, emulated {}", e * 16384.0);
            }
        }
    }
}

#[test]
fn a_prenorm_fake_quantized_forward_is_its_integer_graph() {
    let device = Device::flex();
    let cfg = KwtConfig {
        norm: training::NormPlacement::PreNorm,
        ..config()
    };
    let m = untrained(&cfg, 6, &device);
    let (q, graph, _) = quantize_kwt_untrained(&m, &cfg, &calibration(), &opts()).unwrap();
    assert_bit_exact(&toy_fidelity(&q, &cfg, &graph, 22));
}

/// How closely `q`'s forward computes `graph` on 12 toy clips per label drawn with `seed`.
fn toy_fidelity(
    q: &training::Kwt,
    cfg: &KwtConfig,
    graph: &Graph,
    seed: u64,
) -> fidelity::GraphFidelity {
    let test = toy_split(12, seed);
    graph_fidelity(q, cfg, graph, &test, &toy_splits().labels, 16)
        .unwrap()
        .fidelity
}

/// The forward's logits are the graph's, bit for bit.
fn assert_bit_exact(f: &fidelity::GraphFidelity) {
    assert_eq!(f.logits_snr_db, crate::ptq::report::MAX_SNR_DB, "{f:?}");
}

#[test]
fn a_fake_quantized_forward_with_scaled_layer_norm_is_its_integer_graph() {
    // Lowered with Scaled-LayerNorm, every LayerNorm of the graph is one, and QAT's forward
    // computes its codes: G = 7 and the INT16 saturations included (with I-BERT's kernel
    // modelled instead the logits part).
    let device = Device::flex();
    let cfg = config();
    let m = with_uneven_norms(untrained(&cfg, 6, &device), 6);
    let scaled = PtqOptions {
        scaled_layer_norm: true,
        ..opts()
    };
    let (q, graph, _) = quantize_kwt_untrained(&m, &cfg, &calibration(), &scaled).unwrap();
    assert!(q.qat.as_ref().unwrap().scaled_layer_norm());
    let norms = |g: &Graph, scaled: bool| {
        g.nodes
            .iter()
            .filter(|n| match n.op {
                Op::ScaledLayerNorm(_) => scaled,
                Op::LayerNorm(_) => !scaled,
                _ => false,
            })
            .count()
    };
    assert_eq!(norms(&graph, true), 2 * cfg.depth + 1);
    assert_eq!(norms(&graph, false), 0);
    assert_bit_exact(&toy_fidelity(&q, &cfg, &graph, 23));
    // the same quantizers computing I-BERT's LayerNorm miss the graph's codes
    let mut ibert = q.clone();
    ibert.qat = ibert.qat.map(|k| k.with_scaled_layer_norm(false));
    let unmodelled = toy_fidelity(&ibert, &cfg, &graph, 23);
    assert!(
        unmodelled.logits_snr_db < crate::ptq::report::MAX_SNR_DB,
        "{unmodelled:?}"
    );
}

#[test]
fn a_distillation_models_fake_quantized_forward_is_its_integer_graph() {
    // The two heads' average is rounded at the `logits` point as the graph's Add rounds it.
    let device = Device::flex();
    let cfg = KwtConfig {
        norm: training::NormPlacement::PreNorm,
        distill_token: true,
        ..config()
    };
    let m = untrained(&cfg, 7, &device);
    let (q, graph, _) = quantize_kwt_untrained(&m, &cfg, &calibration(), &opts()).unwrap();
    assert!(q.qat.as_ref().unwrap().logits.is_some());
    assert_bit_exact(&toy_fidelity(&q, &cfg, &graph, 24));
}
