//! The sparsity report of a pruned model: per layer its sparsity, block size, and the bytes
//! of its int8 weights stored dense and blockwise run-length coded (with TinyFormer's
//! self-adaptive choice); and the plot of accuracy over global sparsity of a sweep.
//!
//! The int8 weights are a symmetric per-tensor quantization (`round(w / (max|w| / 127))`),
//! enough to size the storage; a weight that rounds to zero counts as zero, as on the MCU.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use training::Kwt;

use crate::config::PruningPlan;
use crate::error::PruneError;
use crate::mask::{BlockGeometry, zero_fraction};
use crate::model::{linear_layers, linear_weights};
use crate::rle::{Storage, choose_storage, coded_size_bytes, encode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub name: String,
    /// Outputs (rows of the coded matrix).
    pub rows: usize,
    /// Weights per output (the reduction dimension).
    pub cols: usize,
    pub block: usize,
    pub target_sparsity: f64,
    /// Fraction of the layer's float weights that are exactly zero.
    pub sparsity: f64,
    /// Int8 weights stored dense.
    pub dense_bytes: usize,
    /// Int8 weights in blockwise run-length coding.
    pub coded_bytes: usize,
    /// `sparse` where the coding is smaller than dense, else `dense`.
    pub storage: String,
    pub stored_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparsityReport {
    pub layers: Vec<LayerReport>,
    /// Weights of the prunable layers.
    pub weights: usize,
    /// Global sparsity: zero weights over all prunable weights.
    pub sparsity: f64,
    pub dense_bytes: usize,
    pub stored_bytes: usize,
}

/// Symmetric per-tensor int8 values of `weights`.
pub fn quantize_int8(weights: &[f32]) -> Vec<i8> {
    let max = weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
    if max == 0.0 || !max.is_finite() {
        return vec![0; weights.len()];
    }
    let scale = max / 127.0;
    weights
        .iter()
        .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// Sizes of one layer's weights stored dense and coded.
pub fn layer_report(
    name: &str,
    weights: &[f32],
    geometry: &BlockGeometry,
    target: f64,
) -> Result<LayerReport, PruneError> {
    let q = quantize_int8(weights);
    let (matrix, rows, cols) = geometry.to_rle_matrix(&q);
    let block = geometry.block();
    let coded = coded_size_bytes(&encode(&matrix, rows, cols, block)?);
    let storage = choose_storage(&matrix, rows, cols, block)?;
    Ok(LayerReport {
        name: name.to_string(),
        rows,
        cols,
        block,
        target_sparsity: target,
        sparsity: zero_fraction(weights),
        dense_bytes: rows * cols,
        coded_bytes: coded,
        storage: match storage {
            Storage::Dense { .. } => "dense".into(),
            Storage::Sparse(_) => "sparse".into(),
        },
        stored_bytes: storage.size_bytes(),
    })
}

/// The report of every layer of `plan` in `model`.
pub fn sparsity_report(model: &Kwt, plan: &PruningPlan) -> Result<SparsityReport, PruneError> {
    let linears = linear_layers(model);
    let mut layers = Vec::with_capacity(plan.layers.len());
    let (mut weights, mut zeros) = (0usize, 0f64);
    for layer in &plan.layers {
        let (_, linear) = linears
            .iter()
            .find(|(n, _)| n == &layer.name)
            .ok_or_else(|| PruneError::Layout {
                layer: layer.name.clone(),
                message: "not in the model".into(),
            })?;
        let w = linear_weights(linear);
        let r = layer_report(&layer.name, &w, &layer.geometry, layer.target)?;
        weights += w.len();
        zeros += r.sparsity * w.len() as f64;
        layers.push(r);
    }
    Ok(SparsityReport {
        weights,
        sparsity: zeros / weights.max(1) as f64,
        dense_bytes: layers.iter().map(|l| l.dense_bytes).sum(),
        stored_bytes: layers.iter().map(|l| l.stored_bytes).sum(),
        layers,
    })
}

impl SparsityReport {
    /// A plain-text table, one row per layer and a total.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<22} {:>9} {:>5} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8}",
            "layer",
            "out x in",
            "block",
            "target",
            "sparsity",
            "dense B",
            "RLE B",
            "stored",
            "bytes"
        );
        for l in &self.layers {
            let _ = writeln!(
                s,
                "{:<22} {:>9} {:>5} {:>6.1}% {:>7.2}% {:>8} {:>8} {:>7} {:>8}",
                l.name,
                format!("{}x{}", l.rows, l.cols),
                l.block,
                100.0 * l.target_sparsity,
                100.0 * l.sparsity,
                l.dense_bytes,
                l.coded_bytes,
                l.storage,
                l.stored_bytes
            );
        }
        let _ = writeln!(
            s,
            "{:<22} {:>9} {:>5} {:>7} {:>7.2}% {:>8} {:>8} {:>7} {:>8}",
            "total",
            self.weights,
            "",
            "",
            100.0 * self.sparsity,
            self.dense_bytes,
            "",
            "",
            self.stored_bytes
        );
        s
    }
}

/// `value` as pretty JSON, written atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PruneError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| PruneError::file(path, e))?;
    training::checkpoint::write_atomic(path, &json)?;
    Ok(())
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PruneError> {
    let bytes = std::fs::read(path).map_err(|e| PruneError::file(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| PruneError::file(path, e))
}

/// One point of a sparsity sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub label: String,
    /// Global sparsity of the prunable weights.
    pub sparsity: f64,
    pub test_acc: f64,
    pub stored_bytes: usize,
}

/// Test accuracy (%) over global sparsity (%), as an SVG.
pub fn plot_sweep(points: &[SweepPoint], path: &Path) -> Result<(), PruneError> {
    let err = |e: &dyn std::fmt::Display| PruneError::file(path, e);
    let root = SVGBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let lo = points
        .iter()
        .map(|p| 100.0 * p.test_acc)
        .fold(100.0f64, f64::min);
    let y0 = (lo - 10.0).clamp(0.0, 90.0).floor();
    let mut chart = ChartBuilder::on(&root)
        .caption("test accuracy vs global sparsity", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..100.0, y0..100.0)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("global sparsity of prunable weights (%)")
        .y_desc("test accuracy (%)")
        .draw()
        .map_err(|e| err(&e))?;
    let mut xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (100.0 * p.sparsity, 100.0 * p.test_acc))
        .collect();
    xy.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(xy.clone(), &BLUE))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(xy.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{Score, WeightLayout, prune_in_place};

    #[test]
    fn layer_report_counts_bytes() {
        // [d_in 64, d_out 16], block 4, 75% pruned: 16 rows of 16 blocks, 4 kept per row.
        let layout = WeightLayout::LinearInOut {
            d_in: 64,
            d_out: 16,
        };
        let g = BlockGeometry::new(layout, 4, "fc").unwrap();
        let mut w: Vec<f32> = (0..1024)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0 + 0.001)
            .collect();
        prune_in_place(&mut w, &g, 0.75, Score::L1, "fc").unwrap();
        let r = layer_report("fc", &w, &g, 0.75).unwrap();
        assert_eq!((r.rows, r.cols), (16, 64));
        assert_eq!(r.dense_bytes, 1024);
        assert!((r.sparsity - 0.75).abs() < 1e-9);
        // header 16 + row table 32 + 64 blocks * (4 + 1), if no kept weight rounds to zero.
        assert!(r.coded_bytes <= 16 + 32 + 64 * 5, "{}", r.coded_bytes);
        assert_eq!(r.storage, "sparse");
        assert_eq!(r.stored_bytes, r.coded_bytes);
        let dense: Vec<f32> = (0..1024).map(|i| 1.0 + i as f32).collect();
        let r = layer_report("fc", &dense, &g, 0.0).unwrap();
        assert_eq!((r.storage.as_str(), r.stored_bytes), ("dense", 1024));
        assert!(r.coded_bytes > 1024);
    }

    #[test]
    fn sweep_plot_is_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.svg");
        let pts = [0.0, 0.5, 0.75].map(|s| SweepPoint {
            label: format!("{s}"),
            sparsity: s,
            test_acc: 0.9 - s / 10.0,
            stored_bytes: 0,
        });
        plot_sweep(&pts, &p).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("<svg") && svg.contains("polyline"));
    }
}
