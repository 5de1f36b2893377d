//! Issue 6 acceptance: trained and post-training-quantized models (KWT-tiny, TinyFormer with
//! both pooling heads and both downsample kinds) exported to C give outputs identical to
//! quant's Rust interpreter on host (ASan/UBSan), Cortex-M4, Cortex-M7 and RV32 (QEMU); and the
//! exported arena and constant bytes are the planner's (`export::plan::estimate`) figures.
//!
//! Missing cross toolchains skip their platform with a note, except under `CI`, where they
//! fail (see `common::available`); `.ci/run` installs them.

mod common;

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use common::available;
use export::plan::estimate;
use export::{ExportLimits, Int8Options, Target, generate_with, verify};
use quant::Graph;
use quant::ptq::{PtqOptions, quantize_image, quantize_kwt, quantize_tinyformer};
use training::tinyformer::{
    DotArch, Downsample, MobileNetArch, Pooling, TinyFormerArch, TransformerArch, fixtures,
};
use training::{FeatureNorm, InMemory, KwtConfig};

/// The figures the search reports for a graph, set against the cost targets of the three
/// verified MCU families.
const COST_TARGETS: [&str; 3] = ["stm32l4", "stm32f746", "rv32imc"];

fn cost_target(name: &str) -> cost::target::Target {
    cost::target::Target::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/targets/{name}.ron")),
    )
    .unwrap()
}

/// Exports `g`, checks its arena and constant bytes against the planner's estimate for each
/// cost target (the export for that target: operand tiles only where the core has the DSP
/// extension) and the sizes the generated header declares, then verifies `inputs` bit-exactly
/// against the interpreter on every platform whose tools are installed.
fn export_and_verify(label: &str, g: &Graph, inputs: &[Vec<i8>]) {
    let opts = Int8Options::default();
    let proj = generate_with(g, "model", &ExportLimits::default(), &opts).unwrap();
    let r = &proj.report;
    for name in COST_TARGETS {
        let target = cost_target(name);
        let (plan, est) = estimate(g, &target, &opts).unwrap();
        let for_target = generate_with(
            g,
            "model",
            &ExportLimits::default(),
            &opts.for_target(&target),
        )
        .unwrap()
        .report;
        // the default plans the tiles: the same project on a DSP core, more SRAM elsewhere
        if target.has_dsp() {
            assert_eq!(for_target.arena_bytes, r.arena_bytes, "{label} vs {name}");
        } else {
            assert!(for_target.arena_bytes <= r.arena_bytes, "{label} vs {name}");
        }
        let r = &for_target;
        assert_eq!(r.arena_bytes as u64, est.arena_bytes, "{label} vs {name}");
        assert_eq!(r.weight_bytes as u64, est.weight_bytes, "{label} vs {name}");
        assert_eq!(plan.arena_bytes, est.arena_bytes);
        println!(
            "{label}: {name}: arena {} B (limit {}), constants {} B + code {} B = flash {} B \
             (limit {}), {} MACs, planner {}, {} fused attention kernel(s), fits {}",
            est.arena_bytes,
            est.sram_limit,
            est.weight_bytes,
            est.code_bytes,
            est.flash_bytes,
            est.flash_limit,
            est.macs,
            est.planner,
            est.fused_attention,
            est.fits()
        );
    }
    let h = &proj.files.iter().find(|(f, _)| f == "model.h").unwrap().1;
    assert!(h.contains(&format!("#define MODEL_ARENA_BYTES {}", r.arena_bytes)));
    assert!(h.contains(&format!("#define MODEL_WEIGHT_BYTES {}", r.weight_bytes)));
    assert!(r.arena_bytes > 0 && r.weight_bytes > 0);

    let targets = available(&Target::ALL);
    if targets.is_empty() {
        return;
    }
    let t0 = std::time::Instant::now();
    let rep = verify(g, inputs, &targets).unwrap_or_else(|e| panic!("{label}: {e}"));
    // the project that was built and run is the one whose sizes were checked above
    assert_eq!(
        (rep.arena_bytes, rep.weight_bytes),
        (r.arena_bytes, r.weight_bytes)
    );
    assert_eq!(
        rep.targets.iter().map(|t| t.target).collect::<Vec<_>>(),
        targets
    );
    for t in &rep.targets {
        println!(
            "{label}: {}: {} samples, build {:.2}s, run {:.2}s, mismatches {}",
            t.target, t.samples, t.build_s, t.run_s, t.mismatches
        );
        assert_eq!(t.samples, inputs.len());
    }
    rep.ensure_exact()
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    println!(
        "{label}: bit-exact on {} platform(s) in {:.2}s",
        rep.targets.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// Quantized real samples plus the saturation edges (all -128, all 127).
fn with_edges(mut xs: Vec<Vec<i8>>) -> Vec<Vec<i8>> {
    let len = xs[0].len();
    xs.push(vec![-128; len]);
    xs.push(vec![127; len]);
    xs
}

/// The interpreter's outputs on `xs` differ between samples and are not all saturated: the
/// verified logits carry information.
fn assert_not_degenerate(label: &str, g: &Graph, xs: &[Vec<i8>]) {
    let mut it = quant::Interpreter::new(g.clone()).unwrap();
    let outs = it.run_many(xs).unwrap();
    assert!(
        outs.windows(2).any(|w| w[0] != w[1]),
        "{label}: every sample gives {:?}",
        outs[0]
    );
    let all: Vec<i8> = outs.concat();
    let sat = all.iter().filter(|&&v| v == 127 || v == -128).count();
    assert!(
        sat * 2 < all.len(),
        "{label}: {sat} of {} saturated",
        all.len()
    );
}

fn next_unit(state: &mut u64) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % 20_000) as f32 / 10_000.0 - 1.0
}

// ---------------------------------------------------------------- KWT-tiny

const CLASSES: usize = 3;

/// The `kwt-tiny` preset: 98 x 40 MFCC input, dim 32, depth 2, 2 heads of 16, MLP 64.
fn kwt_tiny() -> KwtConfig {
    KwtConfig::preset("kwt-tiny", CLASSES).unwrap()
}

/// `training::toy_data` at the preset's 98 x 40 input: class `k` is a bump on its own band
/// of frames and features under uniform noise; each feature has its own offset and spread,
/// as MFCCs do, so that the model's input standardization matters.
fn kwt_data(cfg: &KwtConfig, per_class: usize, seed: u64) -> InMemory {
    let (frames, feats) = (cfg.frames, cfg.features);
    let mut state = seed | 1;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..per_class * CLASSES {
        let k = i % CLASSES;
        let x = (0..frames * feats)
            .map(|j| {
                let (t, f) = (j / feats, j % feats);
                let on = t * CLASSES / frames == k && f * CLASSES / feats == k;
                let v = if on { 1.5 } else { 0.0 } + next_unit(&mut state);
                (20.0 - f as f32) + (1.0 + 0.2 * f as f32) * v
            })
            .collect();
        features.push(x);
        labels.push(k);
    }
    InMemory { features, labels }
}

/// KWT-tiny trained for `steps` AdamW steps on [`kwt_data`], moved off autodiff.
fn trained_kwt(cfg: &KwtConfig, train: &InMemory, steps: usize) -> training::Kwt {
    let device = Device::flex().autodiff();
    let mut m = cfg.init(3, &device).unwrap();
    let stats = training::feature_stats(train, cfg.frames, cfg.features, 64).unwrap();
    m.input_norm = FeatureNorm::from_stats(&stats, &device);
    let mut optim = AdamWConfig::new().init();
    let batch = 12;
    for step in 0..steps {
        let idx: Vec<usize> = (0..batch)
            .map(|j| (step * batch + j) % train.labels.len())
            .collect();
        let b = training::data::make_batch(train, &idx, cfg.frames, cfg.features, None).unwrap();
        let loss = training::loss::smoothed_cross_entropy(
            m.forward(b.inputs(&device)).logits(),
            b.targets(&device),
            0.0,
        );
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        m = optim.step(2e-3, m, grads);
    }
    m.valid()
}

/// KWT-tiny, briefly trained, PTQ with per-channel weights (I-BERT LayerNorm) and with
/// per-tensor weights and Scaled-LayerNorm: both bit-exact on every platform.
#[test]
fn kwt_tiny_ptq_bit_exact_on_host_m4_m7_rv32() {
    let cfg = kwt_tiny();
    let t0 = std::time::Instant::now();
    let train = kwt_data(&cfg, 16, 1);
    let model = trained_kwt(&cfg, &train, 24);
    let calib = kwt_data(&cfg, 8, 2);
    let test = kwt_data(&cfg, 10, 3);
    println!("kwt-tiny: trained in {:.2}s", t0.elapsed().as_secs_f64());
    let names: Vec<String> = (0..CLASSES).map(|c| format!("c{c}")).collect();
    for (per_channel, scaled_layer_norm) in [(true, false), (false, true)] {
        let label = format!("kwt-tiny per_channel={per_channel} scaled_ln={scaled_layer_norm}");
        let opts = PtqOptions {
            per_channel,
            scaled_layer_norm,
            calibration_samples: calib.features.len(),
            report_samples: 8,
            ..PtqOptions::default()
        };
        let (g, report) = quantize_kwt(&model, &cfg, &calib.features, &opts).unwrap();
        let ln = if scaled_layer_norm {
            "ScaledLayerNorm"
        } else {
            "LayerNorm"
        };
        assert!(g.nodes.iter().any(|n| n.op.kind() == ln), "{label}");
        // the model has learnt the task: the int8 graph is far above chance (1/3)
        let acc = quant::ptq::evaluate_int8(&g, &test, &names)
            .unwrap()
            .accuracy();
        println!(
            "{label}: logits SNR {:.1} dB, int8 held-out accuracy {:.1}%",
            report.logits_snr_db,
            100.0 * acc
        );
        assert!(acc >= 0.7, "{label}: int8 accuracy {acc}");
        // one held-out sample of each class, then the edges
        let real: Vec<Vec<i8>> = test.features[..CLASSES]
            .iter()
            .map(|x| g.quantize_input(x).unwrap())
            .collect();
        assert_not_degenerate(&label, &g, &real);
        export_and_verify(&label, &g, &with_edges(real));
    }
}

// ---------------------------------------------------------------- TinyFormer

/// Two stages with both downsample kinds (their order set by `stride2_first`), a MobileNetV2
/// block in each and a two-head Transformer module in the second, on 3x16x12 images (as in
/// quant's TinyFormer PTQ tests).
fn tinyformer_arch(pooling: Pooling, stride2_first: bool) -> TinyFormerArch {
    let (d0, d1) = if stride2_first {
        (Downsample::ConvStride2, Downsample::ConvMaxPool)
    } else {
        (Downsample::ConvMaxPool, Downsample::ConvStride2)
    };
    TinyFormerArch {
        input: [3, 16, 12],
        classes: 5,
        stages: vec![
            DotArch {
                downsample: d0,
                channels: 8,
                mobilenets: vec![MobileNetArch { expansion: 2 }],
                transformers: vec![],
            },
            DotArch {
                downsample: d1,
                channels: 12,
                mobilenets: vec![MobileNetArch { expansion: 2 }],
                transformers: vec![TransformerArch {
                    heads: 2,
                    mlp_ratio: 2,
                    encoders: 1,
                }],
            },
        ],
        pooling,
        last_linear: 16,
    }
}

/// Trains, quantizes (`per_channel`, `scaled_layer_norm`), checks the graph has the head's
/// and both downsample kinds' ops, and verifies it on every platform.
fn tinyformer_case(pooling: Pooling, stride2_first: bool, per_channel: bool, scaled_ln: bool) {
    let a = tinyformer_arch(pooling, stride2_first);
    let label = format!(
        "tinyformer {pooling:?} stride2_first={stride2_first} per_channel={per_channel} \
         scaled_ln={scaled_ln}"
    );
    let t0 = std::time::Instant::now();
    let m = fixtures::trained(&a, 40);
    println!("{label}: trained in {:.2}s", t0.elapsed().as_secs_f64());
    let (calib, _) = fixtures::gratings(40, &a, 5);
    let opts = PtqOptions {
        per_channel,
        scaled_layer_norm: scaled_ln,
        calibration_samples: calib.len(),
        report_samples: 20,
        ..PtqOptions::default()
    };
    let (g, report) = quantize_tinyformer(&m, &a, &calib, &opts).unwrap();
    let kinds: std::collections::BTreeSet<&str> = g.nodes.iter().map(|n| n.op.kind()).collect();
    match pooling {
        Pooling::SeqPool => assert!(kinds.contains("Softmax") && !kinds.contains("AvgPool2d")),
        Pooling::AvgPool => assert!(kinds.contains("AvgPool2d")),
    }
    let ln = if scaled_ln {
        "ScaledLayerNorm"
    } else {
        "LayerNorm"
    };
    assert!(
        kinds.contains(ln) && kinds.contains("MaxPool2d"),
        "{kinds:?}"
    );
    // both downsample kinds: a stride-2 conv and a stride-1 conv followed by max pooling
    let strides: Vec<usize> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            quant::Op::Conv2d { window, .. } if n.name.ends_with(".down") => Some(window.stride[0]),
            _ => None,
        })
        .collect();
    let want = if stride2_first { [2, 1] } else { [1, 2] };
    assert_eq!(strides, want, "{label}");

    let (test, labels) = fixtures::gratings(50, &a, 77);
    let names: Vec<String> = (0..a.classes).map(|c| format!("c{c}")).collect();
    let acc = quant::ptq::evaluate_int8_images(&g, &test, &labels, &names)
        .unwrap()
        .accuracy();
    println!(
        "{label}: logits SNR {:.1} dB, int8 held-out accuracy {:.1}% (chance 20%)",
        report.logits_snr_db,
        100.0 * acc
    );
    assert!(acc >= 0.4, "{label}: int8 accuracy {acc}");
    // one held-out image of each class, then the edges
    let real: Vec<Vec<i8>> = test[..a.classes]
        .iter()
        .map(|im| quantize_image(&g, im).unwrap())
        .collect();
    assert_not_degenerate(&label, &g, &real);
    export_and_verify(&label, &g, &with_edges(real));
}

#[test]
fn tinyformer_seqpool_bit_exact_on_host_m4_m7_rv32() {
    tinyformer_case(Pooling::SeqPool, true, true, false);
}

#[test]
fn tinyformer_avgpool_bit_exact_on_host_m4_m7_rv32() {
    tinyformer_case(Pooling::AvgPool, false, false, true);
}
