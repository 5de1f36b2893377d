//! Checkpoint files: a Burn burnpack of the weights with the model's `model.ron` beside it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;

use crate::error::TrainingError;
use crate::kwt::{Kwt, KwtConfig};

pub const MODEL_CONFIG_FILE: &str = "model.ron";

/// `model.ron` in the folder of `checkpoint`.
pub fn model_config_path(checkpoint: &Path) -> PathBuf {
    checkpoint
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(MODEL_CONFIG_FILE)
}

pub fn read_ron<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainingError> {
    let text = fs::read_to_string(path).map_err(|e| TrainingError::io(path, e))?;
    ron::from_str(&text).map_err(|e| TrainingError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

pub fn write_ron<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainingError> {
    let text = ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default())
        .map_err(|e| TrainingError::checkpoint(path, e))?;
    write_atomic(path, text.as_bytes())
}

/// Write to a temporary file and rename, so an interruption never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainingError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| TrainingError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| TrainingError::io(path, e))
}

pub fn save_model<M: Module>(model: &M, path: &Path) -> Result<(), TrainingError> {
    // Burnpack picks the file name; write beside the target and rename for atomicity.
    let tmp = path.with_extension("tmp.bpk");
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| TrainingError::checkpoint(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| TrainingError::io(path, e))
}

/// Loads a checkpoint written by the trainer: the weights from `checkpoint` and the
/// architecture from the `model.ron` beside it.
pub fn load_checkpoint(
    checkpoint: &Path,
    device: &Device,
) -> Result<(Kwt, KwtConfig), TrainingError> {
    if !checkpoint.is_file() {
        return Err(TrainingError::checkpoint(checkpoint, "no such file"));
    }
    let config_path = model_config_path(checkpoint);
    if !config_path.is_file() {
        return Err(TrainingError::checkpoint(
            checkpoint,
            format!(
                "the model description {} is missing (it is written beside every checkpoint)",
                config_path.display()
            ),
        ));
    }
    let config: KwtConfig = read_ron(&config_path)?;
    // The weights are replaced by the file's; the seed does not matter.
    let model = config.init(0, device)?;
    let model = model
        .try_load_file(checkpoint)
        .map_err(|e| unreadable_weights(checkpoint, &config_path, e))?;
    Ok((model, config))
}

/// The error for weights that Burn cannot read into the model a description file builds:
/// a truncated or corrupt file fails the same way as one of another architecture.
pub(crate) fn unreadable_weights(
    checkpoint: &Path,
    description: &Path,
    e: impl std::fmt::Display,
) -> TrainingError {
    TrainingError::checkpoint(
        checkpoint,
        format!(
            "cannot be read as the model {} describes (a truncated or corrupt file, or \
             weights of another architecture): {e}",
            description.display()
        ),
    )
}
