//! The search for key-word spotting over Keyword Transformers (Berg et al. 2021): the same
//! hardware-aware loop as TinyFormer's SparseNAS, on a KWT search space. KWT has no DoT modules,
//! so there is no supernet: Alg. 1's analysis (and the Eq. 1-3 adjustment of the embedding
//! dimensions) runs on the KWT space, then evolutionary sampling of (KWT shape, per-layer
//! sparsity and block size) candidates, each checked against the target by the cost model before
//! any training, trained with AGP pruning by `nas train`'s trainer (resumable), and the winner
//! compressed (longer AGP fine-tuning), quantized to the integer graph and placed by the
//! exporter's planner.

pub mod config;
pub mod cost;
pub mod run;
pub mod space;
#[cfg(test)]
mod tests;

pub use config::KwtSearchConfig;
pub use run::{KwtSearchOutcome, run_kwt_search};
