//! The estimate of one graph on one target: per-layer table, peak SRAM (with the op where the
//! peak live set occurs), flash, latency and a fits / does-not-fit verdict.

use crate::error::CostError;
use crate::graph::Graph;
use crate::memory::{self, Buffer, PlannerKind, lifetime};
use crate::ops::{Deploy, OpCost, op_cost};
use crate::target::{KernelClass, Target};
use std::collections::BTreeSet;

/// One row of the per-layer table.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub name: String,
    pub kind: &'static str,
    pub macs: u64,
    pub params: u64,
    pub weight_bytes: u64,
    pub sparse_coded: bool,
    /// Bytes of the op's output tensor.
    pub activation_bytes: u64,
    pub scratch_bytes: u64,
    /// Bytes live while the op runs.
    pub live_bytes: u64,
    pub cycles: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Weights, biases, requantization and normalization parameters.
    pub weights: u64,
    /// Code of each distinct kernel class used, plus the runtime.
    pub code: u64,
    pub total: u64,
}

/// A violated limit and the layers responsible (largest contributors first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Sram {
        needed: u64,
        available: u64,
        at_op: String,
        layers: Vec<String>,
    },
    Flash {
        needed: u64,
        available: u64,
        layers: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub graph: String,
    pub target: String,
    pub layers: Vec<LayerRow>,
    /// Arena of the better planner.
    pub peak_sram_bytes: u64,
    pub planner: PlannerKind,
    pub head_tail_bytes: u64,
    pub best_fit_bytes: u64,
    /// Largest live set (lower bound of any arena) and the op where it occurs.
    pub max_live_bytes: u64,
    pub peak_op: String,
    pub flash: Flash,
    pub macs: u64,
    pub params: u64,
    pub cycles: f64,
    pub latency_s: f64,
    pub violations: Vec<Violation>,
    /// Arena buffers and their planned offsets (for plots and the exporter).
    pub buffers: Vec<Buffer>,
    pub offsets: Vec<u64>,
}

impl Estimate {
    pub fn fits(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Estimate `graph` on `target`.
pub fn estimate(graph: &Graph, target: &Target) -> Result<Estimate, CostError> {
    graph.validate()?;
    let deploy = Deploy {
        requant: graph.requant,
        softmax_lut: graph.softmax_lut,
        operand_tiles: graph.operand_tiles && target.has_dsp(),
    };
    let costs: Vec<OpCost> = graph
        .ops
        .iter()
        .map(|op| op_cost(op, target.l1_bytes, deploy))
        .collect::<Result<_, _>>()?;
    let buffers = lifetime::buffers(graph, &costs);
    let live = memory::live_bytes_per_step(&buffers, graph.ops.len());
    let planned = memory::plan(&buffers);
    let (max_live, peak_step) = memory::lower_bound(&buffers);

    let layers: Vec<LayerRow> = graph
        .ops
        .iter()
        .zip(&costs)
        .zip(&live)
        .map(|((op, c), &l)| LayerRow {
            name: op.name.clone(),
            kind: op.kind.label(),
            macs: c.macs,
            params: c.params,
            weight_bytes: c.weight_bytes,
            sparse_coded: c.sparse_coded,
            activation_bytes: c.output_bytes,
            scratch_bytes: c.scratch_bytes,
            live_bytes: l,
            cycles: c.cycles(target),
        })
        .collect();

    let classes: BTreeSet<KernelClass> = costs.iter().map(|c| c.class).collect();
    let weights: u64 = costs.iter().map(|c| c.weight_bytes).sum();
    let code =
        target.code_size.runtime + classes.iter().map(|&k| target.code_size.of(k)).sum::<u64>();
    let flash = Flash {
        weights,
        code,
        total: weights + code,
    };
    let cycles: f64 = layers.iter().map(|l| l.cycles).sum();
    let peak_sram = planned.best.arena_bytes;

    let mut violations = Vec::new();
    if peak_sram > target.arena_limit() {
        let mut at_peak: Vec<&Buffer> = buffers
            .iter()
            .filter(|b| b.start <= peak_step && peak_step <= b.end && b.bytes > 0)
            .collect();
        at_peak.sort_by_key(|b| std::cmp::Reverse(b.bytes));
        violations.push(Violation::Sram {
            needed: peak_sram,
            available: target.arena_limit(),
            at_op: graph.ops[peak_step].name.clone(),
            layers: at_peak
                .iter()
                .map(|b| format!("{} ({} B)", b.name, b.bytes))
                .collect(),
        });
    }
    if flash.total > target.flash_bytes {
        let mut by_w: Vec<&LayerRow> = layers.iter().filter(|l| l.weight_bytes > 0).collect();
        by_w.sort_by_key(|l| std::cmp::Reverse(l.weight_bytes));
        // The largest layers whose removal would bring flash under the limit.
        let excess = flash.total - target.flash_bytes;
        let mut acc = 0;
        let mut names = Vec::new();
        for l in by_w {
            names.push(format!("{} ({} B)", l.name, l.weight_bytes));
            acc += l.weight_bytes;
            if acc >= excess {
                break;
            }
        }
        violations.push(Violation::Flash {
            needed: flash.total,
            available: target.flash_bytes,
            layers: names,
        });
    }

    Ok(Estimate {
        graph: graph.name.clone(),
        target: target.name.clone(),
        macs: layers.iter().map(|l| l.macs).sum(),
        params: layers.iter().map(|l| l.params).sum(),
        layers,
        peak_sram_bytes: peak_sram,
        planner: planned.best.planner,
        head_tail_bytes: planned.head_tail_bytes,
        best_fit_bytes: planned.best_fit_bytes,
        max_live_bytes: max_live,
        peak_op: graph.ops[peak_step].name.clone(),
        flash,
        cycles,
        latency_s: cycles / target.clock_hz as f64,
        violations,
        offsets: planned.best.offsets,
        buffers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kwt::{KwtConfig, kwt};
    use crate::memory::check;
    use crate::memory::{Plan, PlannerKind};

    fn target(name: &str) -> Target {
        Target::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs/targets")
                .join(format!("{name}.ron")),
        )
        .unwrap()
    }

    #[test]
    fn kwt1_on_f746_is_consistent() {
        let g = kwt(&KwtConfig::kwt1()).unwrap();
        let t = target("stm32f746");
        let e = estimate(&g, &t).unwrap();
        assert_eq!(e.params, 607_436);
        assert!(e.peak_sram_bytes >= e.max_live_bytes);
        let plan = Plan {
            planner: PlannerKind::BestFit,
            offsets: e.offsets.clone(),
            arena_bytes: e.peak_sram_bytes,
        };
        check(&e.buffers, &plan).unwrap();
        // int8 weights ~ params; flash > weights.
        assert!(e.flash.weights > 600_000 && e.flash.total > e.flash.weights);
        // KWT-1 (~600 KB weights) fits the 1 MB flash; its SRAM peak is in the MLP
        // (fc1 output + GELU output + the residual).
        assert!(e.fits(), "{:?}", e.violations);
        assert!(e.peak_op.ends_with("gelu"), "{}", e.peak_op);
        assert_eq!(e.max_live_bytes, 2 * 99 * 256 + 99 * 64);
        assert!(e.latency_s > 0.0);
    }

    #[test]
    fn kwt3_violates_flash_and_names_layers() {
        let g = kwt(&KwtConfig::kwt3()).unwrap();
        let e = estimate(&g, &target("stm32l4")).unwrap();
        assert!(!e.fits());
        let flash = e
            .violations
            .iter()
            .find_map(|v| match v {
                Violation::Flash { layers, .. } => Some(layers),
                _ => None,
            })
            .unwrap();
        assert!(!flash.is_empty());
    }

    #[test]
    fn estimate_is_fast() {
        let g = kwt(&KwtConfig::kwt1()).unwrap();
        let t = target("stm32f746");
        let t0 = std::time::Instant::now();
        let n = 50;
        for _ in 0..n {
            std::hint::black_box(estimate(&g, &t).unwrap());
        }
        let per = t0.elapsed().as_secs_f64() / n as f64;
        println!("estimate(KWT-1) {:.1} us", per * 1e6);
        // Well under 1 ms in release; a generous bound for unoptimized test builds.
        assert!(per < 0.02, "{per}");
    }
}
