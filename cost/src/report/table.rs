//! Text tables of an [`Estimate`].

use crate::estimate::{Estimate, Violation};
use std::fmt::Write;

/// Per-layer table plus the totals and verdict.
pub fn layer_table(e: &Estimate) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} on {}", e.graph, e.target);
    let _ = writeln!(
        s,
        "{:<14} {:<10} {:>11} {:>9} {:>9} {:>8} {:>8} {:>9} {:>11}",
        "op", "kind", "MACs", "params", "weight B", "act B", "scr B", "live B", "cycles"
    );
    for l in &e.layers {
        let _ = writeln!(
            s,
            "{:<14} {:<10} {:>11} {:>9} {:>9} {:>8} {:>8} {:>9} {:>11.0}",
            l.name,
            format!("{}{}", l.kind, if l.sparse_coded { "*" } else { "" }),
            l.macs,
            l.params,
            l.weight_bytes,
            l.activation_bytes,
            l.scratch_bytes,
            l.live_bytes,
            l.cycles
        );
    }
    let _ = writeln!(s, "{}", summary_line(e));
    let _ = writeln!(
        s,
        "arena: head-tail {} B, best-fit {} B, lower bound {} B (peak live set at `{}`)",
        e.head_tail_bytes, e.best_fit_bytes, e.max_live_bytes, e.peak_op
    );
    let _ = writeln!(
        s,
        "operand tiles: {}{}",
        e.operand_tiles.label(),
        if e.untiled_ops.is_empty() {
            String::new()
        } else {
            format!(
                " (none at {}: a tile there would raise the arena)",
                e.untiled_ops.join(", ")
            )
        }
    );
    for v in &e.violations {
        let _ = match v {
            Violation::Sram {
                needed,
                available,
                at_op,
                layers,
            } => writeln!(
                s,
                "SRAM exceeded: {needed} B > {available} B at `{at_op}`; live: {}",
                layers.join(", ")
            ),
            Violation::Flash {
                needed,
                available,
                layers,
            } => writeln!(
                s,
                "flash exceeded: {needed} B > {available} B; largest layers: {}",
                layers.join(", ")
            ),
        };
    }
    s
}

/// One line: params, MACs, SRAM, flash, latency, verdict.
pub fn summary_line(e: &Estimate) -> String {
    format!(
        "{}: params {} MACs {} | SRAM {:.1} KiB ({}) | flash {:.1} KiB (code {:.1}) | {:.2} ms | {}",
        e.target,
        e.params,
        e.macs,
        e.peak_sram_bytes as f64 / 1024.0,
        e.planner.label(),
        e.flash.total as f64 / 1024.0,
        e.flash.code as f64 / 1024.0,
        e.latency_s * 1e3,
        verdict(e)
    )
}

/// `fits` or `DOES NOT FIT (sram, flash)`.
pub fn verdict(e: &Estimate) -> String {
    if e.fits() {
        return "fits".into();
    }
    let what: Vec<&str> = e
        .violations
        .iter()
        .map(|v| match v {
            Violation::Sram { .. } => "sram",
            Violation::Flash { .. } => "flash",
        })
        .collect();
    format!("DOES NOT FIT ({})", what.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::estimate;
    use crate::kwt::{KwtConfig, kwt};
    use crate::target::Target;

    #[test]
    fn table_lists_every_op() {
        let t = Target::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32l4.ron"),
        )
        .unwrap();
        let g = kwt(&KwtConfig::tiny()).unwrap();
        let e = estimate(&g, &t).unwrap();
        let s = layer_table(&e);
        for op in &g.ops {
            assert!(s.contains(&op.name), "{}", op.name);
        }
        assert!(s.contains("fits") || s.contains("DOES NOT FIT"));
    }
}
