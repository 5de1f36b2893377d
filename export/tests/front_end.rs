//! The exported front end (`model_quantize_input`): raw features to the model's int8 input
//! with the graph's training statistics, bit-exact with `quant::Graph::quantize_input` on every
//! target, exact rounding ties included; a graph without statistics exports none.

mod common;

use common::{available, samples, tiny_cnn};
use export::Target;
use quant::Standardization;

const ALL: &[Target] = &[
    Target::Host,
    Target::CortexM4,
    Target::CortexM7,
    Target::Rv32,
];

/// Binary-fraction statistics (and one that is not): with the input's power-of-two scale many
/// probe values land exactly on a half code, where rounding half away from zero and half to
/// even differ.
fn standardized_cnn() -> quant::Graph {
    let mut g = tiny_cnn(5);
    g.input_standardization = Some(Standardization {
        mean: vec![0.0, 0.25, 0.4],
        std: vec![1.0, 0.5, 0.3],
    });
    g
}

#[test]
fn the_c_front_end_quantizes_raw_inputs_as_the_rust_reference() {
    let g = standardized_cnn();
    let ts = available(ALL);
    if ts.is_empty() {
        return;
    }
    let len = g.tensor(&g.inputs[0]).unwrap().numel();
    let rep = export::verify(&g, &samples(len, 2, 3), &ts).unwrap();
    for t in &rep.targets {
        eprintln!(
            "{}: front end {} values, {} mismatches",
            t.target, t.front_end_checked, t.front_end_mismatches
        );
        assert_eq!(t.front_end_checked, 2 * len, "{}", t.target);
    }
    rep.ensure_exact().unwrap_or_else(|e| panic!("{e}"));
}

/// The probe does reach exact ties of both signs on which rounding half away from zero and
/// half to even disagree, so a C front end that rounded otherwise (`rint`, or half towards
/// zero) would fail the test above.
#[test]
fn the_probe_holds_exact_ties_of_both_signs() {
    let g = standardized_cnn();
    let st = g.input_standardization.clone().unwrap();
    let scale = g.tensor(&g.inputs[0]).unwrap().scale.to_f64();
    let probe = export::front_end::probe_inputs(&g).unwrap();
    let ties: Vec<f64> = probe
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, &raw)| {
            let f = i % 3;
            (raw as f64 - st.mean[f] as f64) / st.std[f] as f64 / scale
        })
        .filter(|x| x.abs() < 126.5 && x.fract().abs() == 0.5 && x.round() != x.round_ties_even())
        .collect();
    let positive = ties.iter().filter(|&&x| x > 0.0).count();
    assert!(positive > 5 && ties.len() - positive > 5, "ties {ties:?}");
    let c = export::codegen::generate(&g, "model", &Default::default()).unwrap();
    let source = &c.files.iter().find(|(f, _)| f == "model.c").unwrap().1;
    assert!(source.contains("void model_quantize_input(const float *raw, int8_t *in)"));
}

#[test]
fn a_graph_without_statistics_exports_no_front_end() {
    let g = tiny_cnn(5);
    let c = export::codegen::generate(&g, "model", &Default::default()).unwrap();
    for (_, text) in &c.files {
        assert!(!text.contains("quantize_input"));
    }
}
