//! SVG plots: live arena bytes per op step (like pulp-transformer's Fig. 13), with the
//! planned arena size as a horizontal line; and each op's latency as a bar.

use crate::error::CostError;
use crate::estimate::Estimate;
use crate::memory::{Buffer, live_bytes_per_step};
use plotters::prelude::*;
use std::path::Path;

fn svg_err(p: String) -> CostError {
    CostError::Report {
        path: "<svg string>".into(),
        problem: p,
    }
}

/// Render the memory plot of an estimate to an SVG string.
pub fn memory_svg(e: &Estimate) -> Result<String, CostError> {
    live_memory_svg(
        &format!("{} on {}", e.graph, e.target),
        &e.buffers,
        e.layers.len(),
        e.peak_sram_bytes,
        e.planner.label(),
    )
}

/// The memory plot of `buffers` over `steps` op steps, with the `arena` bytes `planner` planned.
pub fn live_memory_svg(
    title: &str,
    buffers: &[Buffer],
    steps: usize,
    arena: u64,
    planner: &str,
) -> Result<String, CostError> {
    let err = svg_err;
    let live = live_bytes_per_step(buffers, steps);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| err(x.to_string()))?;
        let ymax = (arena.max(1) as f64 / 1024.0) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{title}: live activation memory"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0usize..live.len().max(1), 0f64..ymax)
            .map_err(|x| err(x.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("op step")
            .y_desc("KiB")
            .draw()
            .map_err(|x| err(x.to_string()))?;
        chart
            .draw_series(LineSeries::new(
                live.iter()
                    .enumerate()
                    .map(|(i, &b)| (i, b as f64 / 1024.0)),
                &BLUE,
            ))
            .map_err(|x| err(x.to_string()))?
            .label("live bytes")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        let arena = arena as f64 / 1024.0;
        chart
            .draw_series(LineSeries::new(
                [(0, arena), (live.len().max(1), arena)],
                &RED,
            ))
            .map_err(|x| err(x.to_string()))?
            .label(format!("arena ({planner})"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .draw()
            .map_err(|x| err(x.to_string()))?;
        root.present().map_err(|x| err(x.to_string()))?;
    }
    Ok(out)
}

/// Each op's latency in milliseconds as a bar, in execution order (`bars`: op name and ms);
/// the caption gives the total.
pub fn latency_svg(title: &str, bars: &[(String, f64)]) -> Result<String, CostError> {
    let err = svg_err;
    let total: f64 = bars.iter().map(|b| b.1).sum();
    let ymax = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-6) * 1.1;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| err(x.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{title}: latency per op, {total:.2} ms in all"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0usize..bars.len().max(1), 0f64..ymax)
            .map_err(|x| err(x.to_string()))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("op (execution order)")
            .y_desc("ms")
            .draw()
            .map_err(|x| err(x.to_string()))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, ms))| {
                Rectangle::new([(i, 0.0), (i + 1, *ms)], BLUE.mix(0.6).filled())
            }))
            .map_err(|x| err(x.to_string()))?;
        // the largest op named on its bar
        if let Some((i, (name, ms))) = bars
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
        {
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{name} {ms:.2} ms"),
                    (i, *ms),
                    ("sans-serif", 13),
                )))
                .map_err(|x| err(x.to_string()))?;
        }
        root.present().map_err(|x| err(x.to_string()))?;
    }
    Ok(out)
}

/// The latency plot of an estimate's layers.
pub fn estimate_latency_svg(e: &Estimate, clock_hz: u64) -> Result<String, CostError> {
    let bars: Vec<(String, f64)> = e
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.cycles / clock_hz as f64 * 1e3))
        .collect();
    latency_svg(&format!("{} on {}", e.graph, e.target), &bars)
}

/// Write an SVG to `path`.
pub fn write_svg(svg: &str, path: &Path) -> Result<(), CostError> {
    std::fs::write(path, svg).map_err(|x| CostError::Report {
        path: path.to_path_buf(),
        problem: x.to_string(),
    })
}

/// Write the memory plot to `path`.
pub fn write_memory_svg(e: &Estimate, path: &Path) -> Result<(), CostError> {
    write_svg(&memory_svg(e)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::estimate;
    use crate::kwt::{KwtConfig, kwt};
    use crate::target::Target;

    #[test]
    fn svg_renders() {
        let t = Target::load(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32f746.ron"),
        )
        .unwrap();
        let e = estimate(&kwt(&KwtConfig::tiny()).unwrap(), &t).unwrap();
        let s = memory_svg(&e).unwrap();
        assert!(
            s.starts_with("<svg") && s.contains("polyline"),
            "{}",
            &s[..80.min(s.len())]
        );
        // a bar per layer, the total in the caption, the largest layer named
        let s = estimate_latency_svg(&e, t.clock_hz).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..80.min(s.len())]);
        assert_eq!(
            s.matches("<rect").count(),
            e.layers.len() + 1,
            "(+ the background)"
        );
        assert!(
            s.contains(&format!("{:.2} ms in all", e.latency_s * 1e3)),
            "{s}"
        );
        let top = e
            .layers
            .iter()
            .max_by(|a, b| a.cycles.total_cmp(&b.cycles))
            .unwrap();
        assert!(s.contains(&top.name), "{s}");
    }
}
