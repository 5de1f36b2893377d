//! Human-readable output: text tables, an SVG memory-over-time plot and a latency-per-op plot.

pub mod svg;
pub mod table;

pub use svg::{
    estimate_latency_svg, latency_svg, live_memory_svg, memory_svg, write_memory_svg, write_svg,
};
pub use table::{layer_table, summary_line, verdict};
