//! The search state, written (atomically) after every candidate so that an interrupted search
//! resumes with nothing lost and reaches the same answer.

use std::path::Path;

use serde::{Deserialize, Serialize};
use training::tinyformer::{PathChoice, SupernetConfig, TinyFormerArch};

use crate::config::{SearchConfig, SupernetSpace};
use crate::cost_graph::Resources;
use crate::error::{Result, SearchError};
use crate::space::Analysis;
use crate::sparsity::SparseConfig;

pub const STATE_FILE: &str = "state.json";

/// One SuperNAS iteration (Alg. 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupernetRecord {
    pub config: SupernetConfig,
    /// Why TestSupernet skipped it, if it did.
    pub skipped: Option<String>,
    /// Mean one-shot-pruned validation accuracy of its sparse paths that fit.
    pub avg_accuracy: Option<f64>,
    pub paths_evaluated: usize,
    pub paths_rejected: usize,
    /// Why sampled paths were rejected: broken limit (`SRAM`, `flash`, `latency`) -> count.
    #[serde(default)]
    pub rejections: std::collections::BTreeMap<String, usize>,
    /// Trained weights (relative to the results folder).
    pub checkpoint: Option<String>,
}

/// One SparseNAS candidate (Alg. 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    pub path: PathChoice,
    pub arch: TinyFormerArch,
    pub sparse: SparseConfig,
    pub resources: Resources,
    /// Validation accuracy after training and iterative pruning; `None` when rejected.
    pub accuracy: Option<f64>,
}

/// The compression stage's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalRecord {
    pub candidate: usize,
    pub valid_accuracy: f64,
    pub test_accuracy: f64,
    pub resources: Resources,
    /// Realized sparsity of every pruned layer.
    pub realized_sparsity: Vec<(String, f64)>,
    /// The integer-only int8 model (PTQ with Scaled-LayerNorm) as the interpreter runs it.
    pub int8: Int8Record,
}

/// The int8 model's accuracy and what the exporter allocates for it on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Int8Record {
    pub test_accuracy: f64,
    /// Activation arena of the exported C (SRAM).
    pub arena_bytes: u64,
    /// Constants plus kernel code estimate of the exported C (flash).
    pub flash_bytes: u64,
    pub weight_bytes: u64,
    /// The cost model's latency of the int8 graph as exported (`export::latency`); absent in
    /// states written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

impl Int8Record {
    /// The record of the exported model, of `plan::estimate`'s figures.
    pub fn of(test_accuracy: f64, est: &export::Int8Estimate) -> Int8Record {
        Int8Record {
            test_accuracy,
            arena_bytes: est.arena_bytes,
            flash_bytes: est.flash_bytes,
            weight_bytes: est.weight_bytes,
            latency_ms: Some(est.latency_s * 1e3),
        }
    }

    /// The line `cost.txt` gives it.
    pub fn report_line(&self) -> String {
        format!(
            "exported int8 model (nas export's planner): arena {} B, flash {} B ({} B \
             constants){}; int8 test accuracy {:.2} %\n",
            self.arena_bytes,
            self.flash_bytes,
            self.weight_bytes,
            self.latency_ms
                .map(|ms| format!(", latency {ms:.1} ms by its kernels"))
                .unwrap_or_default(),
            100.0 * self.test_accuracy
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchState {
    /// The config the state belongs to: a resumed search must use the same one.
    pub config: SearchConfig,
    pub analyses: Vec<Analysis>,
    /// The space SuperNAS searches (after any adjustment).
    pub space: Option<SupernetSpace>,
    pub supernets: Vec<SupernetRecord>,
    pub candidates: Vec<CandidateRecord>,
    pub final_model: Option<FinalRecord>,
}

impl SearchState {
    pub fn new(config: SearchConfig) -> Self {
        Self {
            config,
            analyses: vec![],
            space: None,
            supernets: vec![],
            candidates: vec![],
            final_model: None,
        }
    }

    /// Loads `dir/state.json` if present; a state written for another config is an error.
    pub fn load_or_new(dir: &Path, config: &SearchConfig) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        if !path.is_file() {
            return Ok(Self::new(config.clone()));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| SearchError::io(&path, e))?;
        let state: SearchState = serde_json::from_str(&text).map_err(|e| SearchError::State {
            path: path.clone(),
            message: format!("cannot parse ({e}); delete it to start over"),
        })?;
        let free = SearchConfig::RESUME_FREE_SETTINGS;
        if !training::run_match::differences(&state.config, config, free).is_empty() {
            return Err(SearchError::State {
                path,
                message: crate::state::other_config_message(&state.config, config),
            });
        }
        Ok(state)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| SearchError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes())
    }
}

/// Why a search folder's state cannot be resumed with `now`: the settings that differ.
pub(crate) fn other_config_message<T: Serialize>(saved: &T, now: &T) -> String {
    format!(
        "was written by a different search config ({}); put those values back to resume it, \
         or use another --out folder (or delete it) for a new search",
        training::run_match::describe(&training::run_match::differences(saved, now, &[]))
    )
}

/// [`training::checkpoint::write_atomic`]: written whole and durably, or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(training::checkpoint::write_atomic(path, bytes)?)
}

#[cfg(test)]
mod tests {
    /// A resumed search re-reads its state and writes it again: every figure must come back
    /// bit for bit, or the resumed search's record differs from an uninterrupted one's in the
    /// last digit (serde_json parses floats exactly only with its `float_roundtrip` feature;
    /// without it this latency, a real one from a search, read back one unit lower in the
    /// last place).
    #[test]
    fn saved_floats_read_back_bit_for_bit() {
        for x in [
            39.388289814814804f64,
            0.5966666666666667,
            8507870.599999998,
            1e-300,
        ] {
            let text = serde_json::to_string(&x).unwrap();
            let back: f64 = serde_json::from_str(&text).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{text}");
        }
    }
}
