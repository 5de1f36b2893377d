//! Training curves as an SVG: loss on the left, accuracy on the right.

use std::path::Path;

use plotters::prelude::*;

use crate::error::TrainingError;
use crate::history::EpochRecord;

pub fn plot_training_curves(history: &[EpochRecord], path: &Path) -> Result<(), TrainingError> {
    let err = |e: &dyn std::fmt::Display| TrainingError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(500);
    let epochs = history.len().max(1) as f64;
    let xs = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        history
            .iter()
            .map(|r| (r.epoch as f64 + 1.0, f(r)))
            .collect()
    };
    let max_loss = history
        .iter()
        .map(|r| r.train_loss)
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;

    let mut loss = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(1.0..epochs.max(2.0), 0.0..max_loss)
        .map_err(|e| err(&e))?;
    loss.configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .draw()
        .map_err(|e| err(&e))?;
    loss.draw_series(LineSeries::new(xs(|r| r.train_loss), &BLUE))
        .map_err(|e| err(&e))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    loss.configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let mut acc = ChartBuilder::on(&right)
        .caption("accuracy (%)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(1.0..epochs.max(2.0), 0.0..100.0)
        .map_err(|e| err(&e))?;
    acc.configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy %")
        .draw()
        .map_err(|e| err(&e))?;
    acc.draw_series(LineSeries::new(xs(|r| 100.0 * r.train_acc), &BLUE))
        .map_err(|e| err(&e))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    acc.draw_series(LineSeries::new(xs(|r| 100.0 * r.valid_acc), &RED))
        .map_err(|e| err(&e))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    acc.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
