//! The attention kernels of pulp-transformer (fused MatMul-Softmax with the S -> H -> S loop
//! order, depth-first tiling that never materializes S x S, FWSA) on the paper's three shapes,
//! bit-exact with quant's interpreter on host and under QEMU; and the exported arena / constant
//! bytes held equal to the cost model's SRAM / flash figures.

mod common;

use common::attention::{SHAPES, fwsa, mhsa};
use common::{Rng, available, samples, tiny_cnn, tiny_transformer};
use export::plan::{Int8Options, TilePolicy, plan, wrl_row};
use export::{ExportLimits, Target, generate_with, verify_with};
use quant::Graph;

fn input_len(g: &Graph) -> usize {
    g.inputs.iter().map(|i| g.tensor(i).unwrap().numel()).sum()
}

/// Verifies `g` with fusion on and off on `targets`; checks the fused kernel was used.
fn check(g: &Graph, targets: &[Target], random: usize, seed: u64, fwsa: bool) {
    let fused = plan(g, &Int8Options::default()).unwrap();
    assert_eq!(fused.fused.len(), 1, "the attention chain must be fused");
    assert_eq!(fused.fused[0].fwsa, fwsa);
    // the V projection writes V^T (Weight-Reuse layout): A V reads contiguous rows
    let fa = &fused.fused[0];
    let lin = fa.v_wrl.expect("V must be projected in the WRL layout");
    // ... with its rows padded to a word: every V^T row the A V step loads starts aligned
    let row = wrl_row(fa.keys);
    assert_eq!(
        (fa.v.row, fa.v.inner, fa.v.head),
        (1, row, fa.v_inner * row)
    );
    let v_out = &g.nodes[lin].output;
    let export::plan::Storage::Arena(b) = fused.storage[v_out] else {
        panic!("the V projection must write the arena");
    };
    // (the planner rounds every buffer up to ARENA_ALIGN)
    assert_eq!(
        fused.buffers[b].bytes,
        ((fa.heads * fa.v_inner * row) as u64).next_multiple_of(export::plan::ARENA_ALIGN)
    );
    assert_eq!(fused.arena_offset(v_out).unwrap() % 4, 0);
    let ts = available(targets);
    if ts.is_empty() {
        return;
    }
    let xs = samples(input_len(g), random, seed);
    // both softmax forms (exponent table and i-exp polynomial): every combination on the
    // host, one of each under QEMU (the cross runs are the slow part)
    let combos: &[(bool, bool)] = if ts == [Target::Host] {
        &[(true, true), (false, false), (true, false), (false, true)]
    } else {
        &[(true, true), (false, false)]
    };
    for &(fuse, lut) in combos {
        let opts = Int8Options {
            fuse_attention: fuse,
            softmax_lut: lut,
            ..Default::default()
        };
        let rep = verify_with(g, &xs, &ts, &opts).unwrap_or_else(|e| panic!("{e}"));
        for t in &rep.targets {
            eprintln!(
                "fused={fuse} lut={lut} {}: {} samples, build {:.2}s, run {:.2}s, mismatches {}",
                t.target, t.samples, t.build_s, t.run_s, t.mismatches
            );
        }
        rep.ensure_exact()
            .unwrap_or_else(|e| panic!("fused={fuse} lut={lut}: {e}"));
    }
}

#[test]
fn mhsa_shapes_bit_exact_on_host() {
    for (i, &(name, s, e, p, h)) in SHAPES.iter().enumerate() {
        eprintln!("{name}");
        // the uint8 probabilities at 2^-8 and at finer steps (some saturate at 255)
        for shift in [0, 2 + 3 * i as u32] {
            check(
                &mhsa((s, e, p, h), 10 + i as u64, shift),
                &[Target::Host],
                4,
                3,
                false,
            );
        }
    }
}

#[test]
fn fwsa_shapes_bit_exact_on_host() {
    for (i, &(name, s, e, p, h)) in SHAPES.iter().enumerate() {
        eprintln!("{name}");
        for shift in [0, 1 + 3 * i as u32] {
            check(
                &fwsa((s, e, p, h), 20 + i as u64, shift),
                &[Target::Host],
                4,
                5,
                true,
            );
        }
    }
}

#[test]
fn attention_shapes_bit_exact_under_qemu() {
    let cross = [Target::CortexM4, Target::CortexM7, Target::Rv32];
    for (i, &(name, s, e, p, h)) in SHAPES.iter().enumerate() {
        eprintln!("{name} MHSA");
        // softmax output shifts 0, 3 and 6 (saturating rows included)
        let shift = 3 * i as u32;
        check(
            &mhsa((s, e, p, h), 10 + i as u64, shift),
            &cross,
            2,
            7,
            false,
        );
        eprintln!("{name} FWSA");
        check(
            &fwsa((s, e, p, h), 20 + i as u64, shift),
            &cross,
            2,
            9,
            true,
        );
    }
}

/// Odd key counts and P = 2 (ECGFormer's head size): the runtime's two-scores-per-step loop
/// and its odd last score, A V over two V^T rows with a partial last word, softmax rows whose
/// length is not a multiple of 4 (the Cortex-M word-at-a-time loops and their tails), and heads
/// of 5 to 13 channels.
#[test]
fn short_heads_and_odd_rows_bit_exact_everywhere() {
    let all = [
        Target::Host,
        Target::CortexM4,
        Target::CortexM7,
        Target::Rv32,
    ];
    // P = 5, 6, 7, 10 and 13 (not a multiple of 4): the Cortex-M short-row loop with the
    // query in registers (1-3 words and 1-3 bytes) and its last key row read byte by byte
    let shapes = [
        (9, 8, 2, 2),
        (13, 8, 2, 3),
        (17, 12, 6, 2),
        (11, 20, 10, 2),
        (9, 8, 7, 1),
        (6, 8, 13, 2),
        (7, 4, 5, 3),
    ];
    for (i, shape) in shapes.into_iter().enumerate() {
        eprintln!("{shape:?}");
        let shift = (2 * i % 7) as u32;
        check(&mhsa(shape, 30 + i as u64, shift), &all, 3, 11, false);
    }
}

/// The fused attention's operand-tile path (Cortex-M DSP builds: keys tiled per head, 4 query
/// rows per V^T row read): MHSA and FWSA with 17 to 19 keys (not a multiple of 4; 17 and 18
/// leave the V^T rows unpadded, so their last row is read from a copy), query rows in groups
/// of 4 with 1 to 3 left over, and a one-step reduction (P = 4).
#[test]
fn tiled_attention_bit_exact_everywhere() {
    let all = [
        Target::Host,
        Target::CortexM4,
        Target::CortexM7,
        Target::Rv32,
    ];
    for (i, (shape, fw)) in [
        ((17, 8, 4, 2), false),
        ((18, 8, 4, 2), true),
        ((19, 12, 8, 3), false),
    ]
    .into_iter()
    .enumerate()
    {
        eprintln!("{shape:?} fwsa={fw}");
        let g = if fw {
            fwsa(shape, 50 + i as u64, i as u32)
        } else {
            mhsa(shape, 50 + i as u64, i as u32)
        };
        let fa = &plan(&g, &Int8Options::default()).unwrap().fused[0];
        assert!(fa.tiled, "{shape:?}");
        check(&g, &all, 3, 13, fw);
        // the same shape without the tiles (`--no-operand-tiles`): the untiled DSP loops
        let untiled = Int8Options {
            operand_tiles: TilePolicy::Never,
            ..Default::default()
        };
        assert!(!plan(&g, &untiled).unwrap().fused[0].tiled);
        let ts = available(&[Target::CortexM4, Target::CortexM7]);
        if !ts.is_empty() {
            let xs = samples(input_len(&g), 2, 17);
            verify_with(&g, &xs, &ts, &untiled)
                .unwrap()
                .ensure_exact()
                .unwrap_or_else(|e| panic!("{shape:?} untiled: {e}"));
        }
    }
}

#[test]
fn outputs_are_not_degenerate() {
    // guard against a test that passes because everything saturates or vanishes
    for &(name, s, e, p, h) in &SHAPES {
        for g in [mhsa((s, e, p, h), 1, 0), fwsa((s, e, p, h), 2, 0)] {
            let mut it = quant::Interpreter::new(g.clone()).unwrap();
            let x = Rng(77).i8s(input_len(&g));
            let out = it.run(&[&x]).unwrap().concat();
            let distinct: std::collections::BTreeSet<i8> = out.iter().copied().collect();
            let sat = out.iter().filter(|&&v| v == 127 || v == -128).count();
            assert!(distinct.len() > 8, "{name}: {distinct:?}");
            assert!(
                sat * 4 < out.len(),
                "{name}: {sat} of {} saturated",
                out.len()
            );
        }
    }
}

/// The exported arena and constant bytes equal the cost model's SRAM and flash-constant
/// figures, and the generated C declares exactly those sizes.
#[test]
fn arena_and_constants_equal_cost_model() {
    let target = cost::target::Target::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32f746.ron"),
    )
    .unwrap();
    let mut graphs = vec![
        ("tiny_transformer", tiny_transformer(3)),
        ("tiny_cnn", tiny_cnn(4)),
    ];
    for &(name, s, e, p, h) in &SHAPES {
        graphs.push((name, mhsa((s, e, p, h), 5, 0)));
        graphs.push((name, fwsa((s, e, p, h), 6, 0)));
    }
    for (name, g) in &graphs {
        for (fuse, lut) in [(true, true), (false, true), (true, false), (false, false)] {
            let opts = Int8Options {
                fuse_attention: fuse,
                softmax_lut: lut,
                ..Default::default()
            };
            let (plan, est) = export::plan::estimate(g, &target, &opts).unwrap();
            let proj = generate_with(g, "m", &ExportLimits::default(), &opts).unwrap();
            let r = &proj.report;
            assert_eq!(r.arena_bytes as u64, est.arena_bytes, "{name} fused={fuse}");
            assert_eq!(
                r.weight_bytes as u64, est.weight_bytes,
                "{name} fused={fuse}"
            );
            assert_eq!(est.flash_bytes, est.weight_bytes + est.code_bytes);
            // the C source declares exactly that arena, the header those sizes
            let c = &proj.files.iter().find(|(f, _)| f == "m.c").unwrap().1;
            assert!(
                c.contains(&format!("int8_t b[{}];", r.arena_bytes.max(1))),
                "{name}"
            );
            let hd = &proj.files.iter().find(|(f, _)| f == "m.h").unwrap().1;
            assert!(hd.contains(&format!("#define M_ARENA_BYTES {}", est.arena_bytes)));
            assert!(hd.contains(&format!("#define M_WEIGHT_BYTES {}", est.weight_bytes)));
            // the plan is valid: live buffers never overlap
            let p = cost::memory::Plan {
                planner: plan.planner,
                offsets: plan.offsets.clone(),
                arena_bytes: plan.arena_bytes,
            };
            cost::memory::check(&plan.buffers, &p).unwrap();
            assert!(plan.arena_bytes >= plan.max_live_bytes);
            assert_eq!(
                plan.arena_bytes,
                plan.head_tail_bytes.min(plan.best_fit_bytes)
            );
        }
    }
}

/// Attention-stage arena with and without depth-first tiling (recorded in
/// experiments/export/README.md).
#[test]
fn depth_first_tiling_lowers_the_attention_peak() {
    for &(name, s, e, p, h) in &SHAPES {
        for (kind, g) in [
            ("MHSA", mhsa((s, e, p, h), 5, 0)),
            ("FWSA", fwsa((s, e, p, h), 6, 0)),
        ] {
            let lw = plan(
                &g,
                &Int8Options {
                    fuse_attention: false,
                    ..Default::default()
                },
            )
            .unwrap();
            let df = plan(&g, &Int8Options::default()).unwrap();
            println!(
                "{name} {kind} S={s} E={e} P={p} H={h}: arena layer-wise {} B (max live {} B at `{}`) \
                 -> depth-first {} B (max live {} B at `{}`); constants {} B -> {} B",
                lw.arena_bytes,
                lw.max_live_bytes,
                lw.peak_node,
                df.arena_bytes,
                df.max_live_bytes,
                df.peak_node,
                lw.weight_bytes,
                df.weight_bytes
            );
            // never worse than layer-wise by more than the kernel's one-row scratch (TR-Former:
            // the peak is the projections, as in the paper's Table 3)
            assert!(
                df.arena_bytes <= lw.arena_bytes + 4 * s.div_ceil(4) as u64,
                "{name} {kind}"
            );
            // A (H S S) is never materialized: the fused arena is below H S S + inputs
            if s * s * h > 4 * s * e {
                assert!(df.arena_bytes < lw.arena_bytes, "{name} {kind}");
            }
        }
    }
}
