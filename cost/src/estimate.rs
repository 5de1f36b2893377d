//! The estimate of one graph on one target: per-layer table, peak SRAM (with the op where the
//! peak live set occurs), flash, latency and a fits / does-not-fit verdict.

use crate::error::CostError;
use crate::graph::Graph;
use crate::memory::{self, Buffer, BufferKind, PlannerKind, lifetime};
use crate::ops::{Deploy, OpCost, op_cost};
use crate::target::{KernelClass, Target};
use crate::tiles::{self, TileCandidate, TilePolicy};
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
    /// The operand-tile policy in effect on this target (`Never` without the DSP extension).
    pub operand_tiles: TilePolicy,
    /// Under [`TilePolicy::Auto`], the ops that could have a tile and run without one, since
    /// it would raise the arena.
    pub untiled_ops: Vec<String>,
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
    let policy = graph.operand_tiles.on_target(target.has_dsp());
    let deploy = |operand_tiles| Deploy {
        requant: graph.requant,
        softmax_lut: graph.softmax_lut,
        operand_tiles,
    };
    let mut costs: Vec<OpCost> = graph
        .ops
        .iter()
        .map(|op| op_cost(op, target.l1_bytes, deploy(policy != TilePolicy::Never)))
        .collect::<Result<_, _>>()?;
    let untiled_ops = if policy == TilePolicy::Auto {
        drop_costly_tiles(graph, target, &mut costs, deploy(false))?
    } else {
        Vec::new()
    };
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
        operand_tiles: policy,
        untiled_ops,
        buffers,
    })
}

/// [`TilePolicy::Auto`]: `costs` hold every op with its operand tile; the ops whose tile would
/// raise the arena ([`tiles::choose`]) get their untiled cost (`untiled` deployment); returns
/// their names.
fn drop_costly_tiles(
    graph: &Graph,
    target: &Target,
    costs: &mut [OpCost],
    untiled: Deploy,
) -> Result<Vec<String>, CostError> {
    let mut alternatives = Vec::new();
    for (i, (op, c)) in graph.ops.iter().zip(costs.iter()).enumerate() {
        if c.scratch_bytes > 0 {
            let u = op_cost(op, target.l1_bytes, untiled)?;
            if u.scratch_bytes != c.scratch_bytes {
                alternatives.push((i, u));
            }
        }
    }
    if alternatives.is_empty() {
        return Ok(Vec::new());
    }
    let buffers = lifetime::buffers(graph, costs);
    let candidates: Vec<TileCandidate> = alternatives
        .iter()
        .map(|(i, u)| TileCandidate {
            buffer: buffers
                .iter()
                .position(|b| b.kind == BufferKind::Scratch && b.op == *i)
                .expect("an op with scratch bytes has a scratch buffer"),
            untiled_bytes: lifetime::align(u.scratch_bytes),
        })
        .collect();
    let keep = tiles::choose(&buffers, &candidates);
    let mut dropped = Vec::new();
    for ((i, u), k) in alternatives.into_iter().zip(keep) {
        if !k {
            costs[i] = u;
            dropped.push(graph.ops[i].name.clone());
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{GraphBuilder, OpKind};
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

    /// A Linear chain whose two wide layers run at the peak: `auto` drops exactly their tiles,
    /// keeps the third's, lands at the arena of no tiles and between `on` and `off` in latency
    /// (the untiled layers charged `linear_untiled`). KWT-1's tiles never sit at its peak (the
    /// GELU step): there `auto` is `on`. Without the DSP extension no policy plans tiles.
    #[test]
    fn auto_tiles_keep_the_arena_of_no_tiles() {
        let mut b = GraphBuilder::new("chain");
        let x = b.input("x", 16 * 64);
        let lin = |in_features, out_features| OpKind::Linear {
            tokens: 16,
            in_features,
            out_features,
            bias: true,
        };
        let f1 = b.op("fc1", lin(64, 256), &[&x]);
        let f2 = b.op("fc2", lin(256, 8), &[&f1]);
        b.op("fc3", lin(8, 8), &[&f2]);
        let mut g = b.build().unwrap();
        let t = target("stm32f746");
        let by = |g: &mut Graph| {
            [TilePolicy::Always, TilePolicy::Never, TilePolicy::Auto].map(|p| {
                g.operand_tiles = p;
                let e = estimate(g, &t).unwrap();
                assert_eq!(e.operand_tiles, p);
                e
            })
        };
        let [on, off, auto] = by(&mut g);
        assert!(on.peak_sram_bytes > off.peak_sram_bytes);
        assert_eq!(auto.peak_sram_bytes, off.peak_sram_bytes);
        assert_eq!(auto.untiled_ops, ["fc1", "fc2"]);
        assert!(on.latency_s < auto.latency_s && auto.latency_s < off.latency_s);
        let cycles =
            |e: &Estimate, op: &str| e.layers.iter().find(|l| l.name == op).unwrap().cycles;
        assert_eq!(cycles(&auto, "fc1"), cycles(&off, "fc1"));
        assert_eq!(cycles(&auto, "fc3"), cycles(&on, "fc3"));
        assert!(cycles(&on, "fc1") < cycles(&off, "fc1"));

        let [on, _, auto] = by(&mut kwt(&KwtConfig::kwt1()).unwrap());
        assert_eq!(
            (auto.peak_sram_bytes, auto.latency_s),
            (on.peak_sram_bytes, on.latency_s)
        );
        assert!(auto.untiled_ops.is_empty());

        g.operand_tiles = TilePolicy::Always;
        let e = estimate(&g, &target("rv32imc")).unwrap();
        assert_eq!(e.operand_tiles, TilePolicy::Never);
        assert!(e.layers.iter().all(|l| l.scratch_bytes == 0));
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
