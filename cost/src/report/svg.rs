//! SVG plot of live arena bytes per op step (like pulp-transformer's Fig. 13), with the
//! planned arena size as a horizontal line.

use crate::error::CostError;
use crate::estimate::Estimate;
use crate::memory::live_bytes_per_step;
use plotters::prelude::*;
use std::path::Path;

/// Render the plot to an SVG string.
pub fn memory_svg(e: &Estimate) -> Result<String, CostError> {
    let err = |p: String| CostError::Report {
        path: "<svg string>".into(),
        problem: p,
    };
    let live = live_bytes_per_step(&e.buffers, e.layers.len());
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| err(x.to_string()))?;
        let ymax = (e.peak_sram_bytes.max(1) as f64 / 1024.0) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} on {}: live activation memory", e.graph, e.target),
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
        let arena = e.peak_sram_bytes as f64 / 1024.0;
        chart
            .draw_series(LineSeries::new(
                [(0, arena), (live.len().max(1), arena)],
                &RED,
            ))
            .map_err(|x| err(x.to_string()))?
            .label(format!("arena ({})", e.planner.label()))
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

/// Write the plot to `path`.
pub fn write_memory_svg(e: &Estimate, path: &Path) -> Result<(), CostError> {
    let s = memory_svg(e)?;
    std::fs::write(path, s).map_err(|x| CostError::Report {
        path: path.to_path_buf(),
        problem: x.to_string(),
    })
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
    }
}
