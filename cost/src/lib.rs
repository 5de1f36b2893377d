//! Analytic MCU cost model (burn-free): target descriptions, a cost graph of int8 ops, tensor
//! lifetimes and arena planners, MHSA/FWSA attention costs, per-layer estimates and reports.
//! The exporter plans its arena with [`memory::plan`] too (`export::plan`), so the SRAM figure of
//! an exported integer graph is this crate's planner's arena.
//!
//! ```no_run
//! use cost::{estimate, kwt::{kwt, KwtConfig}, target::Target};
//! let t = Target::load("configs/targets/stm32f746.ron")?;
//! let e = estimate::estimate(&kwt(&KwtConfig::kwt1())?, &t)?;
//! println!("{}", cost::report::layer_table(&e));
//! # Ok::<(), cost::CostError>(())
//! ```

pub mod attention;
pub mod error;
pub mod estimate;
pub mod graph;
pub mod kwt;
pub mod memory;
pub mod ops;
pub mod report;
pub mod target;
pub mod tiles;

pub use error::CostError;
