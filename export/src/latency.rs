//! Latency of a planned integer graph by the cost model: every kernel call the generated code
//! makes ([`Exec::Kernel`] and [`Exec::Fused`] nodes of an [`Int8Plan`]) priced with the
//! target's cycle table through the cost model's own work rules ([`cost::ops`]), with what
//! only the deployed model knows: the stored MACs of run-length coded layers (not a predicted
//! share of kept blocks), which layers the exporter coded and in which block width, the operand
//! tiles the plan kept, the fused attention cores found in the graph and any op the analytic
//! graphs have no counterpart for (standalone transposes, requantizations, pools over a whole
//! map). Reshapes and the nodes a fused kernel covers run no code and cost nothing.

use std::collections::HashMap;
use std::fmt::Write;

use cost::memory::BufferKind;
use cost::ops::{WeightKernel, Work, attention_core_work, layer_norm_work, weight_layer_work};
use cost::target::{KernelClass, Target};
use quant::graph::{Graph, Op, TensorInfo};
use serde::{Deserialize, Serialize};

use crate::plan::{Exec, Int8Plan, kernel_class, node_macs, node_positions};
use crate::sparse::coded_macs_per_position;

/// One kernel call of the deployed model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelLatency {
    /// The graph node the call runs at (a fused attention's last node).
    pub node: String,
    /// The node's op (`"Attention"` for a fused attention core).
    pub op: String,
    /// The kernel class it runs.
    pub class: KernelClass,
    /// MACs it performs (stored MACs of coded weights).
    pub macs: u64,
    /// Cycles by the target's cycle table.
    pub cycles: f64,
}

/// The cost model's latency of one inference of a planned integer graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Int8Latency {
    /// Kernel calls in execution order.
    pub kernels: Vec<KernelLatency>,
    /// Sum of their cycles.
    pub cycles: f64,
    /// `cycles` at the target's clock.
    pub seconds: f64,
}

impl Int8Latency {
    /// A text table: one row per kernel call (node, op, kernel class, MACs, cycles, share of
    /// the total), then the total in cycles and milliseconds at `clock_hz`.
    pub fn table(&self, clock_hz: u64) -> String {
        let mut s = String::new();
        let width = self
            .kernels
            .iter()
            .map(|k| k.node.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            s,
            "{:<width$} {:<16} {:<16} {:>11} {:>12} {:>6}",
            "node", "op", "kernel", "MACs", "cycles", "share"
        );
        for k in &self.kernels {
            let _ = writeln!(
                s,
                "{:<width$} {:<16} {:<16} {:>11} {:>12.0} {:>5.1}%",
                k.node,
                k.op,
                k.class.label(),
                k.macs,
                k.cycles,
                100.0 * k.cycles / self.cycles.max(f64::MIN_POSITIVE)
            );
        }
        let _ = writeln!(
            s,
            "total: {} kernel calls, {:.0} cycles = {:.2} ms at {} MHz",
            self.kernels.len(),
            self.cycles,
            self.seconds * 1e3,
            clock_hz as f64 / 1e6
        );
        s
    }
}

/// Prices every kernel call of `plan` (the plan of `graph` for `target`).
pub fn latency(graph: &Graph, plan: &Int8Plan, target: &Target) -> Int8Latency {
    let shapes: HashMap<&str, &TensorInfo> =
        graph.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let numel = |t: &str| shapes.get(t).map_or(0, |i| i.numel()) as u64;
    let mut kernels = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let (op, class, macs, work) = match plan.exec[i] {
            Exec::Alias | Exec::Elided => continue,
            Exec::Fused(f) => {
                let fa = &plan.fused[f];
                let scores = (fa.heads * fa.rows * fa.keys) as u64;
                let outputs = (fa.heads * fa.rows * fa.v_inner) as u64;
                let work = attention_core_work(scores, fa.macs(), outputs, fa.tiled);
                ("Attention", KernelClass::Attention, fa.macs(), work)
            }
            Exec::Kernel => {
                let coded = plan.coded[i].as_ref();
                let Some(class) = kernel_class(&node.op, coded.is_some()) else {
                    continue;
                };
                let macs = match coded {
                    Some(e) => node_positions(graph, i) * coded_macs_per_position(e),
                    None => node_macs(graph, i),
                };
                let input = shapes
                    .get(node.inputs[0].as_str())
                    .map_or(&[][..], |t| t.shape.as_slice());
                let tiled = plan
                    .buffers
                    .iter()
                    .any(|b| b.op == i && b.kind == BufferKind::Scratch);
                let work = kernel_work(
                    &node.op,
                    input,
                    numel(&node.output),
                    macs,
                    tiled,
                    coded.map(|e| e.block),
                );
                (node.op.kind(), class, macs, work)
            }
        };
        kernels.push(KernelLatency {
            node: node.name.clone(),
            op: op.into(),
            class,
            macs,
            cycles: cost::ops::work_cycles(&work, target),
        });
    }
    let cycles = kernels.iter().map(|k| k.cycles).sum();
    Int8Latency {
        kernels,
        cycles,
        seconds: cycles / target.clock_hz as f64,
    }
}

/// The work of one node's own kernel: `input` is its first input's shape, `outputs` its output
/// elements, `macs` its (stored) MACs, `tiled` whether its operand tile is planned,
/// `coded_block` the block width of its coded weights.
fn kernel_work(
    op: &Op,
    input: &[usize],
    outputs: u64,
    macs: u64,
    tiled: bool,
    coded_block: Option<usize>,
) -> Vec<(Work, u64)> {
    let in_elems = input.iter().product::<usize>() as u64;
    let last = input.last().copied().unwrap_or(1).max(1) as u64;
    let weights = |kernel| weight_layer_work(kernel, macs, outputs, coded_block);
    match op {
        Op::Linear { .. } => weights(WeightKernel::Linear { tiled }),
        Op::Conv2d { window, .. } if window.is_pointwise() => {
            weights(WeightKernel::Linear { tiled })
        }
        Op::Conv2d { window, in_c, .. } => weights(WeightKernel::Conv {
            kh: window.k[0],
            kw: window.k[1],
            cin: *in_c,
        }),
        Op::DepthwiseConv2d { .. } => weights(WeightKernel::Depthwise),
        Op::MatMul { .. } => vec![(Work::MatMulMac, macs), (Work::Requant, outputs)],
        Op::Softmax(_) => vec![(Work::Softmax, outputs)],
        Op::LayerNorm(_) => layer_norm_work(outputs / last, outputs, false),
        Op::ScaledLayerNorm(_) => layer_norm_work(outputs / last, outputs, true),
        Op::Gelu(_) | Op::GeluTable(_) => vec![(Work::Gelu, outputs)],
        Op::Relu => vec![(Work::Relu, outputs)],
        Op::Add(_) | Op::AddEmbedding { .. } => vec![(Work::Add, outputs)],
        Op::Requant(_) => vec![(Work::Requant, outputs)],
        Op::MaxPool2d(w) | Op::AvgPool2d(w) => {
            vec![(Work::Pool, outputs * (w.k[0] * w.k[1]) as u64)]
        }
        // every input element is summed once
        Op::GlobalAvgPool | Op::SeqMeanPool => vec![(Work::Pool, in_elems)],
        Op::ConcatClassToken { .. } | Op::SelectToken { .. } | Op::Transpose { .. } => {
            vec![(Work::Copy, outputs)]
        }
        Op::Reshape { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Int8Options, TilePolicy, plan};
    use quant::GraphBuilder;
    use quant::graph::Window;

    fn f746() -> Target {
        Target::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs/targets/stm32f746.ron"),
        )
        .unwrap()
    }

    /// `x [8, 16]`: a Linear to 4 features (weights `w`), a Scaled-LayerNorm over them, one
    /// head of attention of `x` (its projection `q` as queries), and a 3x3 Conv2d of `img [6, 5, 3]` then its
    /// global average.
    fn graph(w: Vec<i8>) -> quant::Graph {
        let s = 0.0625;
        let mut b = GraphBuilder::new();
        b.input("x", &[8, 16], s).unwrap();
        b.input("img", &[6, 5, 3], s).unwrap();
        b.linear("fc", "x", w, vec![0; 4], &[0.01], s).unwrap();
        b.scaled_layer_norm("ln", "fc", &[1.0; 4], &[0.0; 4], 1e-5, s)
            .unwrap();
        b.linear("q", "x", vec![1; 256], vec![0; 16], &[0.01], s)
            .unwrap();
        b.matmul("scores", "q", "x", true, 0.25).unwrap();
        b.softmax("attn", "scores").unwrap();
        b.matmul("ctx", "attn", "x", false, s).unwrap();
        let w3 = Window {
            k: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
        };
        b.conv2d("conv", "img", w3, vec![1; 2 * 27], vec![0; 2], &[0.01], s)
            .unwrap();
        b.same_scale("gap", "conv", Op::GlobalAvgPool).unwrap();
        for o in ["ln", "ctx", "gap"] {
            b.output(o);
        }
        b.finish().unwrap()
    }

    fn priced(g: &quant::Graph, opts: &Int8Options) -> Int8Latency {
        let t = f746();
        latency(g, &plan(g, &opts.for_target(&t)).unwrap(), &t)
    }

    fn kernel<'a>(l: &'a Int8Latency, node: &str) -> &'a KernelLatency {
        l.kernels.iter().find(|k| k.node == node).unwrap()
    }

    /// Every kernel call is priced by the target's table as the cost model's units define
    /// them; fused chains are one call; the total is their sum.
    #[test]
    fn kernel_calls_are_priced_by_the_cost_models_units() {
        let t = f746();
        let c = &t.cycles;
        let simd = t.simd_width as f64;
        let call = c.call_overhead;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6 * b.max(1.0);
        let g = graph(vec![3; 64]);
        let l = priced(&g, &Int8Options::default());
        let names: Vec<&str> = l.kernels.iter().map(|k| k.node.as_str()).collect();
        assert_eq!(names, ["fc", "ln", "q", "ctx", "conv", "gap"]);
        // 8 rows of 16 (a multiple of 4): the tiled Linear loop
        let fc = kernel(&l, "fc");
        assert_eq!((fc.class, fc.macs), (KernelClass::Linear, 8 * 16 * 4));
        assert!(close(
            fc.cycles,
            512.0 * c.linear / simd + 32.0 * c.requant + call
        ));
        let ln = kernel(&l, "ln");
        assert!(close(
            ln.cycles,
            32.0 * c.scaled_layernorm() + 8.0 * c.layernorm_row() + call
        ));
        // 8 query rows x 8 keys x (16 + 16); 8 keys (< 16): untiled
        let at = kernel(&l, "ctx");
        assert_eq!((at.op.as_str(), at.macs), ("Attention", 8 * 8 * 32));
        assert!(close(
            at.cycles,
            2048.0 * c.matmul_untiled() / simd
                + 64.0 * c.attention_score(false)
                + 128.0 * c.requant
                + call
        ));
        // 3 channels: 9-byte kernel rows, a 27-byte window gathered; padding taps counted
        let conv = kernel(&l, "conv");
        assert_eq!(conv.macs, 6 * 5 * 2 * 27);
        assert!(close(
            conv.cycles,
            1620.0 * c.conv / simd + 60.0 * c.requant + 60.0 * c.conv_gather() + call
        ));
        // every input element of the global pool summed once
        assert!(close(kernel(&l, "gap").cycles, 60.0 * c.pool + call));
        let sum: f64 = l.kernels.iter().map(|k| k.cycles).sum();
        assert!(close(l.cycles, sum) && close(l.seconds, sum / t.clock_hz as f64));

        // no operand tiles: the untiled Linear loop
        let never = priced(
            &g,
            &Int8Options {
                operand_tiles: TilePolicy::Never,
                ..Default::default()
            },
        );
        assert!(close(
            kernel(&never, "fc").cycles,
            512.0 * c.linear_untiled() / simd + 32.0 * c.requant + call
        ));
        // layer-wise attention: two MatMuls and a Softmax instead of one call
        let layerwise = priced(
            &g,
            &Int8Options {
                fuse_attention: false,
                ..Default::default()
            },
        );
        assert_eq!(layerwise.kernels.len(), 8);
        assert!(close(
            kernel(&layerwise, "attn").cycles,
            64.0 * c.softmax + call
        ));
    }

    /// A run-length coded layer is priced per stored MAC at its sparse kernel's rate for the
    /// block the exporter chose, plus the kernel's per-output entry.
    #[test]
    fn coded_layers_pay_their_stored_macs() {
        let t = f746();
        let c = &t.cycles;
        // one block of 4 weights kept per row (of 4 blocks): coded in blocks of 4
        let w: Vec<i8> = (0..64).map(|i| if i % 16 < 4 { 5 } else { 0 }).collect();
        let l = priced(&graph(w), &Int8Options::default());
        let fc = kernel(&l, "fc");
        assert_eq!((fc.class, fc.macs), (KernelClass::SparseLinear, 8 * 4 * 4));
        let want = 128.0 * c.sparse_mac + 32.0 * (c.requant + c.sparse_output()) + c.call_overhead;
        assert!(
            (fc.cycles - want).abs() < 1e-6 * want,
            "{} vs {want}",
            fc.cycles
        );
        // blocks of 2 weights: the narrow-block rate
        let w: Vec<i8> = (0..64).map(|i| if i % 16 < 2 { 5 } else { 0 }).collect();
        let l = priced(&graph(w), &Int8Options::default());
        let fc = kernel(&l, "fc");
        assert_eq!((fc.class, fc.macs), (KernelClass::SparseLinear, 8 * 4 * 2));
        let want =
            64.0 * c.sparse_mac_narrow() + 32.0 * (c.requant + c.sparse_output()) + c.call_overhead;
        assert!(
            (fc.cycles - want).abs() < 1e-6 * want,
            "{} vs {want}",
            fc.cycles
        );
        assert!(l.table(t.clock_hz).contains("sparse-linear"));
    }
}
