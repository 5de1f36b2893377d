//! The Pareto front of the evaluated candidates (accuracy up; SRAM, flash and latency down),
//! as a table and a plot.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::cost_graph::Resources;
use crate::error::{Result, SearchError};
use crate::state::CandidateRecord;

/// What the front compares of one candidate (of any search space).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Validation accuracy; `None` for a candidate that was not evaluated.
    pub accuracy: Option<f64>,
    pub resources: Resources,
    /// Weights left after pruning (plus the other parameters).
    pub params: usize,
}

/// The TinyFormer search's candidates as rows.
pub fn rows(c: &[CandidateRecord]) -> Vec<Row> {
    c.iter()
        .map(|r| Row {
            accuracy: r.accuracy,
            resources: r.resources.clone(),
            params: crate::sparsity::effective_parameters(&r.arch, &r.sparse),
        })
        .collect()
}

/// Indices of the candidates no other candidate dominates (at least as accurate and as cheap in
/// every resource, strictly better in one). Only evaluated (fitting) candidates take part.
pub fn front(c: &[Row]) -> Vec<usize> {
    let key = |r: &Row| {
        r.accuracy.map(|a| {
            (
                a,
                r.resources.sram_bytes as f64,
                r.resources.flash_bytes as f64,
                r.resources.latency_ms,
            )
        })
    };
    let pts: Vec<(usize, (f64, f64, f64, f64))> = c
        .iter()
        .enumerate()
        .filter_map(|(i, r)| key(r).map(|k| (i, k)))
        .collect();
    let dominates = |a: &(f64, f64, f64, f64), b: &(f64, f64, f64, f64)| {
        a.0 >= b.0
            && a.1 <= b.1
            && a.2 <= b.2
            && a.3 <= b.3
            && (a.0 > b.0 || a.1 < b.1 || a.2 < b.2 || a.3 < b.3)
    };
    pts.iter()
        .filter(|(_, p)| !pts.iter().any(|(_, q)| dominates(q, p)))
        .map(|(i, _)| *i)
        .collect()
}

/// The candidate the compression stage takes: the most accurate one on the front, so that of
/// equally accurate candidates the one no other beats on cost wins (remaining ties: the
/// earliest).
pub fn winner(c: &[Row]) -> Option<usize> {
    front(c)
        .into_iter()
        .filter_map(|i| c[i].accuracy.map(|a| (i, a)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
}

/// A Markdown table of the front.
pub fn table(c: &[Row], front: &[usize]) -> String {
    let mut s = String::from(
        "| candidate | valid acc % | SRAM B | flash B | latency ms | MACs | params |\n|---|---|---|---|---|---|---|\n",
    );
    for &i in front {
        let r = &c[i];
        let _ = writeln!(
            s,
            "| {i} | {:.2} | {} | {} | {:.1} | {} | {} |",
            100.0 * r.accuracy.unwrap_or(0.0),
            r.resources.sram_bytes,
            r.resources.flash_bytes,
            r.resources.latency_ms,
            r.resources.macs,
            r.params
        );
    }
    s
}

/// One plotted resource of a candidate.
type Axis = fn(&Row) -> f64;

/// Accuracy against SRAM, flash and latency: every evaluated candidate, the front highlighted.
pub fn plot(c: &[Row], front: &[usize], path: &Path) -> Result<()> {
    let err = |e: String| SearchError::Search(format!("plot {}: {e}", path.display()));
    let root = SVGBackend::new(path, (1200, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let panels = root.split_evenly((1, 3));
    let evaluated: Vec<usize> = (0..c.len()).filter(|&i| c[i].accuracy.is_some()).collect();
    let axes: [(&str, Axis); 3] = [
        ("peak SRAM (KB)", |r| r.resources.sram_bytes as f64 / 1024.0),
        ("flash (KB)", |r| r.resources.flash_bytes as f64 / 1024.0),
        ("latency (ms)", |r| r.resources.latency_ms),
    ];
    for (panel, (label, x_of)) in panels.iter().zip(axes) {
        let xs: Vec<f64> = evaluated.iter().map(|&i| x_of(&c[i])).collect();
        let ys: Vec<f64> = evaluated
            .iter()
            .map(|&i| 100.0 * c[i].accuracy.unwrap_or(0.0))
            .collect();
        let (x0, x1) = bounds(&xs);
        let (y0, y1) = bounds(&ys);
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .caption(format!("accuracy vs {label}"), ("sans-serif", 16))
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(label)
            .y_desc("valid accuracy (%)")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(
                xs.iter()
                    .zip(&ys)
                    .map(|(&x, &y)| Circle::new((x, y), 3, BLUE.mix(0.5).filled())),
            )
            .map_err(|e| err(e.to_string()))?;
        let mut f: Vec<(f64, f64)> = front
            .iter()
            .map(|&i| (x_of(&c[i]), 100.0 * c[i].accuracy.unwrap_or(0.0)))
            .collect();
        f.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(f.iter().map(|&p| Circle::new(p, 5, RED.filled())))
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

fn bounds(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(1e-3);
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(acc: f64, sram: u64) -> Row {
        Row {
            accuracy: Some(acc),
            resources: Resources {
                sram_bytes: sram,
                peak_op: String::new(),
                flash_bytes: 1000,
                latency_ms: 1.0,
                macs: 0,
                violations: vec![],
            },
            params: 0,
        }
    }

    /// Of two equally accurate candidates the cheaper one wins, even when it came later; an
    /// unevaluated candidate never does.
    #[test]
    fn the_winner_is_the_most_accurate_candidate_on_the_front() {
        let mut rows = vec![row(0.9, 3000), row(0.8, 1000), row(0.9, 2000)];
        assert_eq!(front(&rows), vec![1, 2]);
        assert_eq!(winner(&rows), Some(2));
        rows.push(Row {
            accuracy: None,
            ..row(1.0, 10)
        });
        assert_eq!(winner(&rows), Some(2));
        rows[0].resources.sram_bytes = 2000;
        // identical candidates: the earliest
        assert_eq!(winner(&rows), Some(0));
        assert_eq!(winner(&[]), None);
    }
}
