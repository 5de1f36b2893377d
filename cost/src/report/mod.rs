//! Human-readable output: text tables and an SVG memory-over-time plot.

pub mod svg;
pub mod table;

pub use svg::{memory_svg, write_memory_svg};
pub use table::{layer_table, summary_line, verdict};
