//! TinyFormer's hardware-aware search: SuperNAS (search-space analysis, supernet search) and
//! SparseNAS (sparse single-path selection and compression) under an MCU budget from the cost
//! model. `nas search` is [`run_search`].

pub mod config;
pub mod cost_graph;
pub mod data;
pub mod data_source;
pub mod error;
pub mod evolution;
pub mod export_best;
pub mod fixtures;
pub mod kwt;
pub mod pareto;
pub mod path_train;
pub mod progress;
pub mod run;
pub mod space;
pub mod sparsity;
pub mod state;
#[cfg(test)]
mod tests;
pub mod train;
pub mod weights;

pub use config::SearchConfig;
pub use error::SearchError;
pub use run::{SearchOptions, SearchOutcome, run_search};
