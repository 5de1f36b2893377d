use burn::tensor::Device;
use training::{FeatureNorm, FeatureStats, KwtConfig, NormPlacement};

use super::*;
use crate::ptq::float_graph::FOp;
use crate::{Interpreter, from_bytes, to_bytes};

fn config(norm: NormPlacement, distill: bool) -> KwtConfig {
    KwtConfig {
        frames: 10,
        features: 6,
        norm,
        distill_token: distill,
        depth: 2,
        ..KwtConfig::preset("kwt-micro", 4).unwrap()
    }
}

/// Deterministic pseudo-random raw features far from zero mean and unit spread, like MFCCs.
fn samples(n: usize, len: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 20_000) as f32 / 10_000.0 - 1.0
    };
    (0..n)
        .map(|_| {
            (0..len)
                .map(|i| 20.0 * next() + (i % 6) as f32 * 30.0 - 50.0)
                .collect()
        })
        .collect()
}

fn model(cfg: &KwtConfig, device: &Device) -> training::Kwt {
    let mut m = cfg.init(3, device).unwrap();
    let stats = FeatureStats {
        mean: (0..6).map(|f| f as f32 * 30.0 - 50.0).collect(),
        std: vec![11.5; 6],
    };
    m.input_norm = FeatureNorm::from_stats(&stats, device);
    m
}

#[test]
fn every_kwt_variant_quantizes_with_a_faithful_integer_graph() {
    let device = Device::flex();
    for (norm, distill) in [
        (NormPlacement::PostNorm, false),
        (NormPlacement::PreNorm, true),
    ] {
        let cfg = config(norm, distill);
        let m = model(&cfg, &device);
        let xs = samples(48, 60, 9);
        let opts = PtqOptions {
            calibration_samples: 48,
            report_samples: 48,
            ..PtqOptions::default()
        };
        // quantize_kwt also checks the float graph (with the folded input norm) against Burn.
        let (graph, report) = quantize_kwt(&m, &cfg, &xs, &opts).unwrap();
        assert!(
            report.logits_snr_db > 15.0,
            "{norm:?}: {}",
            report.to_table()
        );
        assert!(
            report.argmax_agreement >= 0.8,
            "{norm:?}: {}",
            report.to_table()
        );
        // The saved graph loads back and gives identical outputs.
        let again = from_bytes(&to_bytes(&graph).unwrap()).unwrap();
        let input = graph.quantize_input(&xs[0]).unwrap();
        let mut a = Interpreter::new(graph).unwrap();
        let mut b = Interpreter::new(again).unwrap();
        assert_eq!(a.run(&[&input]).unwrap(), b.run(&[&input]).unwrap());
    }
}

#[test]
fn min_max_and_per_tensor_options_work_and_bad_options_are_refused() {
    let device = Device::flex();
    let cfg = config(NormPlacement::PostNorm, false);
    let m = model(&cfg, &device);
    let xs = samples(16, 60, 4);
    let opts = PtqOptions {
        estimator: Estimator::MinMax,
        per_channel: false,
        scaled_layer_norm: true,
        ..PtqOptions::default()
    };
    let (_, report) = quantize_kwt(&m, &cfg, &xs, &opts).unwrap();
    assert!(
        report
            .layers
            .iter()
            .all(|l| l.clip_rate == 0.0 || l.op == "Softmax"),
        "{}",
        report.to_table()
    );
    let bad = PtqOptions {
        estimator: Estimator::Percentile(120.0),
        ..PtqOptions::default()
    };
    let err = quantize_kwt(&m, &cfg, &xs, &bad).unwrap_err().to_string();
    assert!(err.contains("percentile"), "{err}");
    let err = quantize_kwt(&m, &cfg, &[], &PtqOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("calibration"), "{err}");
    let wrong_len = vec![vec![0.0; 59]];
    assert!(quantize_kwt(&m, &cfg, &wrong_len, &PtqOptions::default()).is_err());
}

#[test]
fn int8_evaluation_agrees_with_the_float_model_it_came_from() {
    let device = Device::flex();
    let cfg = config(NormPlacement::PostNorm, false);
    let m = model(&cfg, &device);
    let xs = samples(40, 60, 11);
    let (graph, report) = quantize_kwt(&m, &cfg, &xs, &PtqOptions::default()).unwrap();
    // Labels = the float model's own predictions: int8 accuracy is then its agreement.
    let fg = FloatGraph::from_kwt(&m, &cfg).unwrap();
    let labels: Vec<usize> = xs
        .iter()
        .map(|x| report::argmax(&fg.logits(x).unwrap()))
        .collect();
    let source = training::InMemory {
        features: xs.clone(),
        labels,
    };
    let names: Vec<String> = (0..4).map(|i| i.to_string()).collect();
    let confusion = evaluate_int8(&graph, &source, &names).unwrap();
    assert_eq!(confusion.total(), 40);
    assert!(
        confusion.accuracy() >= 0.8,
        "agreement {}",
        confusion.accuracy()
    );
    assert!((confusion.accuracy() - report.argmax_agreement).abs() < 0.2);
    let err = evaluate_int8(&graph, &source, &names[..3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("4 outputs"), "{err}");
}

#[test]
fn run_with_applies_its_hook_to_every_node_before_later_nodes_read_it() {
    let device = Device::flex();
    let cfg = config(NormPlacement::PostNorm, false);
    let fg = FloatGraph::from_kwt(&model(&cfg, &device), &cfg).unwrap();
    let x = &samples(1, 60, 3)[0];
    let plain = fg.run(x).unwrap();
    let mut seen = 0;
    let same = fg
        .run_with(x, |_, _| {
            seen += 1;
        })
        .unwrap();
    assert_eq!(seen, fg.nodes.len());
    assert_eq!(plain, same);
    // Uniform attention instead of the softmax: the hooked values reach the logits.
    let uniform = fg
        .run_with(x, |node, y| {
            if matches!(node.op, FOp::Softmax) {
                let n = *node.shape.last().unwrap();
                y.iter_mut().for_each(|p| *p = 1.0 / n as f32);
            }
        })
        .unwrap();
    let softmax = fg
        .nodes
        .iter()
        .position(|n| matches!(n.op, FOp::Softmax))
        .unwrap();
    assert!(
        uniform[softmax + 1]
            .iter()
            .all(|&p| p == uniform[softmax + 1][0])
    );
    assert_ne!(uniform[fg.output], plain[fg.output]);
}

#[test]
fn a_bad_input_standardization_is_refused() {
    let device = Device::flex();
    let cfg = config(NormPlacement::PostNorm, false);
    let (mut graph, _) = quantize_kwt(
        &model(&cfg, &device),
        &cfg,
        &samples(4, 60, 1),
        &PtqOptions::default(),
    )
    .unwrap();
    graph.input_standardization.as_mut().unwrap().std[2] = 0.0;
    let err = graph.validate().unwrap_err().to_string();
    assert!(err.contains("standardization"), "{err}");
    graph.input_standardization.as_mut().unwrap().std.pop();
    assert!(from_bytes(&to_bytes(&graph).unwrap_or_default()).is_err());
}

#[test]
fn gelu_is_the_exact_table_by_default_and_i_gelu_on_request() {
    let device = Device::flex();
    let cfg = config(NormPlacement::PostNorm, false);
    let m = model(&cfg, &device);
    let xs = samples(16, 60, 5);
    let kinds = |gelu: GeluMethod| -> Vec<&'static str> {
        let opts = PtqOptions {
            gelu,
            ..PtqOptions::default()
        };
        let (graph, _) = quantize_kwt(&m, &cfg, &xs, &opts).unwrap();
        graph
            .nodes
            .iter()
            .filter(|n| n.name.ends_with(".gelu"))
            .map(|n| n.op.kind())
            .collect()
    };
    let exact = kinds(GeluMethod::default());
    assert!(!exact.is_empty() && exact.iter().all(|&k| k == "GeluTable"));
    let ibert = kinds(GeluMethod::IBert);
    assert_eq!(ibert.len(), exact.len());
    assert!(ibert.iter().all(|&k| k == "Gelu"));

    // every output code of the default graph's GELU is the exact GELU of its input code
    let (graph, _) = quantize_kwt(&m, &cfg, &xs, &PtqOptions::default()).unwrap();
    let mut it = Interpreter::new(graph.clone()).unwrap();
    it.execute(&[&graph.quantize_input(&xs[0]).unwrap()])
        .unwrap();
    for n in graph.nodes.iter().filter(|n| n.op.kind() == "GeluTable") {
        let (ti, to) = (
            graph.tensor(&n.inputs[0]).unwrap(),
            graph.tensor(&n.name).unwrap(),
        );
        for (&q, &y) in it
            .tensor(&n.inputs[0])
            .unwrap()
            .iter()
            .zip(it.tensor(&n.name).unwrap())
        {
            let x = ti.dequantize(q);
            let want = (crate::ibert_error::gelu(x) / to.scale.to_f64()).clamp(-128.0, 127.0);
            assert!(
                (y as f64 - want).abs() <= 0.5 + 1e-9,
                "{}: {x} -> {y}",
                n.name
            );
        }
    }
}

#[test]
fn calibration_spread_over_cores_observes_exactly_what_one_pass_does() {
    let device = Device::flex();
    let cfg = config(NormPlacement::PostNorm, false);
    let fg = FloatGraph::from_kwt(&model(&cfg, &device), &cfg).unwrap();
    let (groups, n) = kwt_graph::scale_groups(&fg);
    // more clips than one task takes, and not a multiple of it
    let xs = samples(21, 60, 4);
    let mut one_by_one = vec![Observer::new(); n];
    for x in &xs {
        let vals = fg.run(x).unwrap();
        for (id, v) in vals.iter().enumerate() {
            if let Some(g) = groups[id] {
                one_by_one[g].observe(v);
            }
        }
    }
    assert_eq!(
        kwt_graph::calibrate(&fg, &groups, n, &xs).unwrap(),
        one_by_one
    );
    // a clip that overflows is named by its layer, whichever task meets it
    let mut bad = xs.clone();
    bad[17][3] = f32::INFINITY;
    let err = kwt_graph::calibrate(&fg, &groups, n, &bad).unwrap_err();
    assert!(matches!(err, PtqError::NonFinite { .. }), "{err}");
}

#[test]
fn float_graph_dot_products_sum_every_term() {
    use crate::ptq::float_graph::dot;
    for len in [0usize, 1, 7, 8, 9, 64, 67] {
        let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..len).map(|i| (i % 5) as f32 - 2.0).collect();
        // halves and small integers: every partial sum is exact, in any order
        let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        assert_eq!(dot(&a, &b), want, "len {len}");
    }
}
