use std::collections::BTreeSet;

use burn::tensor::Device;
use training::tinyformer::{
    DotArch, Downsample, MobileNetArch, Pooling, TinyFormer, TinyFormerArch, TransformerArch,
    fixtures,
};

use super::*;
use crate::ptq::{PtqError, PtqOptions, evaluate_int8_images, report};
use crate::{Interpreter, from_bytes, load, save, to_bytes};

/// Two stages (both downsample kinds), a MobileNetV2 block in each, a Transformer module with
/// two heads in the second: every op kind of TinyFormer on 3x16x12 images (not square, so
/// that a height/width mix-up shows).
fn arch(pooling: Pooling) -> TinyFormerArch {
    TinyFormerArch {
        input: [3, 16, 12],
        classes: 5,
        stages: vec![
            DotArch {
                downsample: Downsample::ConvStride2,
                channels: 8,
                mobilenets: vec![MobileNetArch { expansion: 2 }],
                transformers: vec![],
            },
            DotArch {
                downsample: Downsample::ConvMaxPool,
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

/// Deterministic normalized CHW images: a smooth per-image pattern plus noise (roughly zero
/// mean, unit spread per channel, as after the search's normalization).
fn images(n: usize, a: &TinyFormerArch, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 20_000) as f32 / 10_000.0 - 1.0
    };
    let [c, h, w] = a.input;
    (0..n)
        .map(|_| {
            let (fy, fx, ph) = (next() * 0.6, next() * 0.6, next() * 3.0);
            let amp: Vec<f32> = (0..c).map(|_| 1.2 * next()).collect();
            let mut im = Vec::with_capacity(c * h * w);
            for &amp in &amp {
                for y in 0..h {
                    for x in 0..w {
                        let s = (fy * y as f32 + fx * x as f32 + ph).sin();
                        im.push(amp * s + 0.5 * next());
                    }
                }
            }
            im
        })
        .collect()
}

fn model(a: &TinyFormerArch, seed: u64) -> TinyFormer {
    TinyFormer::init(a, seed, &Device::flex()).unwrap()
}

fn kinds(g: &Graph) -> BTreeSet<&'static str> {
    g.nodes.iter().map(|n| n.op.kind()).collect()
}

#[test]
fn float_graph_matches_burn_for_both_heads() {
    for pooling in [Pooling::SeqPool, Pooling::AvgPool] {
        let a = arch(pooling);
        let m = model(&a, 11);
        let fg = FloatGraph::from_tinyformer(&m, &a).unwrap();
        assert_eq!(fg.input_shape, vec![16, 12, 3]);
        let err = tinyformer_float_error(&m, &a, &fg, &images(4, &a, 3)).unwrap();
        println!("{pooling:?}: max |float graph - Burn| = {err:e}");
        assert!(err < 1e-3, "{pooling:?}: {err}");
    }
}

#[test]
fn trained_tinyformer_int8_tracks_the_float_model() {
    for pooling in [Pooling::SeqPool, Pooling::AvgPool] {
        let a = arch(pooling);
        let m = fixtures::trained(&a, 60);
        for (per_channel, scaled_layer_norm) in [(true, false), (false, true), (true, true)] {
            let (calib, _) = fixtures::gratings(40, &a, 5);
            let (test, labels) = fixtures::gratings(60, &a, 77);
            let opts = PtqOptions {
                per_channel,
                scaled_layer_norm,
                calibration_samples: 40,
                report_samples: 40,
                ..PtqOptions::default()
            };
            let (graph, report) = quantize_tinyformer(&m, &a, &calib, &opts).unwrap();
            // Held-out images: the float model's and the int8 graph's predictions.
            let fg = FloatGraph::from_tinyformer(&m, &a).unwrap();
            let float_pred: Vec<usize> = test
                .iter()
                .map(|im| report::argmax(&fg.logits(&chw_to_hwc(im, a.input).unwrap()).unwrap()))
                .collect();
            let float_acc = float_pred
                .iter()
                .zip(&labels)
                .filter(|(p, y)| p == y)
                .count() as f64
                / labels.len() as f64;
            let names: Vec<String> = (0..a.classes).map(|c| format!("c{c}")).collect();
            let int8_acc = evaluate_int8_images(&graph, &test, &labels, &names)
                .unwrap()
                .accuracy();
            let agreement = evaluate_int8_images(&graph, &test, &float_pred, &names)
                .unwrap()
                .accuracy();
            let mut hist = vec![0usize; a.classes];
            float_pred.iter().for_each(|&p| hist[p] += 1);
            println!(
                "{pooling:?} per_channel={per_channel} scaled_ln={scaled_layer_norm}: logits SNR \
                 {:.1} dB, arg-max agreement {:.1}% ({} calibration images); held-out ({}): float \
                 accuracy {:.1}%, int8 accuracy {:.1}%, int8/float agreement {:.1}%, float \
                 predictions per class {hist:?}",
                report.logits_snr_db,
                100.0 * report.argmax_agreement,
                report.report_samples,
                test.len(),
                100.0 * float_acc,
                100.0 * int8_acc,
                100.0 * agreement,
            );
            assert!(report.logits_snr_db > 15.0, "{}", report.to_table());
            assert!(agreement >= 0.85, "{}", report.to_table());
            // The model has learnt something, so the agreement is not that of a constant.
            assert!(float_acc >= 0.4, "float accuracy {float_acc}");
            let ln = if scaled_layer_norm {
                "ScaledLayerNorm"
            } else {
                "LayerNorm"
            };
            assert!(kinds(&graph).contains(ln));
            // Power-of-two activation scales everywhere.
            assert!(
                graph
                    .tensors
                    .iter()
                    .all(|t| t.scale.pow2_exponent().is_some())
            );
        }
    }
}

#[test]
fn every_tinyformer_op_kind_is_lowered() {
    let mut seen = BTreeSet::new();
    for pooling in [Pooling::SeqPool, Pooling::AvgPool] {
        let a = arch(pooling);
        let opts = PtqOptions {
            calibration_samples: 4,
            report_samples: 2,
            ..PtqOptions::default()
        };
        let (g, _) = quantize_tinyformer(&model(&a, 1), &a, &images(4, &a, 5), &opts).unwrap();
        let k = kinds(&g);
        match pooling {
            Pooling::SeqPool => assert!(k.contains("Softmax") && !k.contains("AvgPool2d")),
            Pooling::AvgPool => assert!(k.contains("AvgPool2d")),
        }
        // Both downsample kinds: a stride-2 conv and a stride-1 conv followed by max pooling.
        let strides: BTreeSet<usize> = g
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                crate::Op::Conv2d { window, .. } if n.name.ends_with(".down") => {
                    Some(window.stride[0])
                }
                _ => None,
            })
            .collect();
        assert_eq!(strides, BTreeSet::from([1, 2]));
        seen.extend(k);
    }
    let want = [
        "Conv2d",
        "DepthwiseConv2d",
        "MaxPool2d",
        "AvgPool2d",
        "Relu",
        "Add",
        "Linear",
        "MatMul",
        "Softmax",
        "LayerNorm",
        "Reshape",
        "Transpose",
    ];
    for k in want {
        assert!(seen.contains(k), "{k} missing from {seen:?}");
    }
}

#[test]
fn tinyformer_graph_round_trips_through_the_file_format() {
    let a = arch(Pooling::AvgPool);
    let opts = PtqOptions {
        calibration_samples: 8,
        report_samples: 2,
        ..PtqOptions::default()
    };
    let xs = images(8, &a, 2);
    let (mut g, _) = quantize_tinyformer(&model(&a, 4), &a, &xs, &opts).unwrap();
    set_channel_standardization(&mut g, &[0.5, 0.4, 0.3], &[0.25, 0.2, 0.3]).unwrap();
    assert_eq!(from_bytes(&to_bytes(&g).unwrap()).unwrap(), g);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tinyformer.nasi8");
    save(&g, &path).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(back, g);
    let q = quantize_image(&g, &xs[0]).unwrap();
    let mut i1 = Interpreter::new(g).unwrap();
    let mut i2 = Interpreter::new(back).unwrap();
    assert_eq!(i1.run_single(&q).unwrap(), i2.run_single(&q).unwrap());
}

#[test]
fn channel_standardization_lets_the_graph_take_raw_images() {
    let a = arch(Pooling::SeqPool);
    let opts = PtqOptions {
        calibration_samples: 4,
        report_samples: 1,
        ..PtqOptions::default()
    };
    let xs = images(4, &a, 8);
    let (g, _) = quantize_tinyformer(&model(&a, 2), &a, &xs, &opts).unwrap();
    let (mean, std) = ([0.49f32, 0.48, 0.45], [0.25f32, 0.24, 0.26]);
    let mut raw_graph = g.clone();
    set_channel_standardization(&mut raw_graph, &mean, &std).unwrap();
    let hw = 16 * 12;
    let raw: Vec<f32> = xs[0]
        .iter()
        .enumerate()
        .map(|(i, &v)| v * std[i / hw] + mean[i / hw])
        .collect();
    let from_raw = quantize_image(&raw_graph, &raw).unwrap();
    let from_norm = quantize_image(&g, &xs[0]).unwrap();
    let differ = from_raw
        .iter()
        .zip(&from_norm)
        .filter(|(a, b)| a != b)
        .count();
    // Only float rounding at exact .5 boundaries may differ.
    assert!(differ <= from_raw.len() / 100, "{differ} values differ");
    let err = set_channel_standardization(&mut raw_graph, &mean[..2], &std[..2]).unwrap_err();
    assert!(matches!(err, PtqError::Options(_)), "{err}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let a = arch(Pooling::SeqPool);
    let m = model(&a, 3);
    let opts = PtqOptions::default();
    let err = quantize_tinyformer(&m, &a, &[], &opts).unwrap_err();
    assert!(matches!(err, PtqError::Calibration(_)), "{err}");
    let err = quantize_tinyformer(&m, &a, &[vec![0.0; 10]], &opts).unwrap_err();
    assert!(matches!(err, PtqError::Calibration(_)), "{err}");
    // A model whose head differs from the architecture.
    let other = arch(Pooling::AvgPool);
    let err = FloatGraph::from_tinyformer(&m, &other).unwrap_err();
    assert!(matches!(err, PtqError::Model(_)), "{err}");
    // A model with an extra stage module.
    let mut more = a.clone();
    more.stages[0]
        .mobilenets
        .push(MobileNetArch { expansion: 2 });
    let err = FloatGraph::from_tinyformer(&m, &more).unwrap_err();
    assert!(err.to_string().contains("stage 0"), "{err}");
    // An invalid architecture is the training crate's error.
    let mut invalid = a.clone();
    invalid.stages[1].transformers[0].heads = 5;
    let err = FloatGraph::from_tinyformer(&m, &invalid).unwrap_err();
    assert!(matches!(err, PtqError::Training(_)), "{err}");
    // Images of the wrong size for the graph.
    let small = PtqOptions {
        calibration_samples: 2,
        report_samples: 1,
        ..PtqOptions::default()
    };
    let (g, _) = quantize_tinyformer(&m, &a, &images(2, &a, 1), &small).unwrap();
    assert!(quantize_image(&g, &[0.0; 7]).is_err());
    let names: Vec<String> = (0..5).map(|c| c.to_string()).collect();
    let err = evaluate_int8_images(&g, &images(1, &a, 1), &[9], &names).unwrap_err();
    assert!(matches!(err, PtqError::Model(_)), "{err}");
}

/// Blocks of consecutive inputs of the last Linear (what pruning zeroes in Burn's `[d_in, d_out]`
/// layout) are blocks of consecutive inputs of the integer graph's `[out, in]` weights too: the
/// AvgPool head flattens in the graph's `[h, w, c]` order, so a pruned head run-length codes.
#[test]
fn pruned_head_blocks_stay_consecutive_in_the_integer_graph() {
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};

    let a = arch(Pooling::AvgPool);
    let mut m = model(&a, 7);
    let [d_in, d_out] = m.head.last.weight.dims();
    let block = 4;
    let zero = |i: usize, o: usize| !(i / block + o).is_multiple_of(3);
    let mut w: Vec<f32> = m.head.last.weight.val().into_data().try_to_vec().unwrap();
    for i in 0..d_in {
        for o in 0..d_out {
            if zero(i, o) {
                w[i * d_out + o] = 0.0;
            }
        }
    }
    m.head.last.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w, [d_in, d_out]),
        &Device::flex(),
    ));
    let opts = PtqOptions {
        calibration_samples: 4,
        report_samples: 2,
        ..PtqOptions::default()
    };
    let (g, _) = quantize_tinyformer(&m, &a, &images(4, &a, 5), &opts).unwrap();
    let node = g.nodes.iter().find(|n| n.name == "head.last").unwrap();
    let crate::graph::Op::Linear { weight, .. } = &node.op else {
        panic!("head.last is {}", node.op.kind());
    };
    for o in 0..d_out {
        for j in 0..d_in / block {
            let blk = &weight[o * d_in + j * block..o * d_in + (j + 1) * block];
            assert_eq!(
                blk.iter().all(|&v| v == 0),
                zero(j * block, o),
                "output {o}, block {j}: {blk:?}"
            );
        }
    }
}
