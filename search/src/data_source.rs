//! The data a searched TinyFormer saw, read back from the config it was searched (or trained)
//! with: the config's `seed` and `data` sections fix the subsets, the validation split, the
//! spectrogram crop and the standardization, so that `nas quantize` and `nas eval` calibrate
//! and score on the very images (or key-word spectrograms) the search used.

use std::path::{Path, PathBuf};

use training::checkpoint::read_ron;
use training::tinyformer::TinyFormerArch;

use crate::config::{DataConfig, SearchConfig};
use crate::error::{Result, SearchError};
use crate::path_train::{PathTrainConfig, is_path_train_config};
use crate::run::{Data, load_images};

/// The `seed` and `data` sections of a search config or of a path training config.
#[derive(Debug, Clone)]
pub struct DataSource {
    /// The config file, for messages.
    pub config: PathBuf,
    pub seed: u64,
    pub data: DataConfig,
    /// DoT stages of the config's models (a search's supernet, a training config's `arch`):
    /// spectrograms are cropped to a multiple of 2^stages.
    pub stages: usize,
}

impl DataSource {
    /// Reads and validates `path`: a TinyFormer search config (`nas search`) or a path
    /// training config (`nas train` of a searched path, whose `arch` it reads for the stages).
    pub fn from_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| SearchError::io(path, e))?;
        if crate::kwt::config::is_kwt_config(&text) {
            return Err(SearchError::Config {
                path: path.to_path_buf(),
                message: "a KWT search config (it has a `kwt_space`): its winner is a KWT \
                          checkpoint, quantized and evaluated with the Speech Commands folder \
                          (--data) or its training config"
                    .into(),
            });
        }
        if is_path_train_config(&text) {
            let cfg = PathTrainConfig::load(path)?;
            let arch: TinyFormerArch = read_ron(&cfg.arch)?;
            return Ok(Self {
                config: path.to_path_buf(),
                seed: cfg.seed,
                data: cfg.data,
                stages: arch.stages.len(),
            });
        }
        let cfg = SearchConfig::load(path)?;
        Ok(Self {
            config: path.to_path_buf(),
            seed: cfg.seed,
            stages: cfg.supernet_space.dims.len(),
            data: cfg.data,
        })
    }

    /// The train, validation and test splits as the search drew them, for a model of
    /// `stages` DoT stages.
    pub fn load(&self, stages: usize) -> Result<Data> {
        load_images(&self.data, self.seed, stages)
    }
}
