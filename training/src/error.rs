use std::path::PathBuf;

/// Errors of model building, training and evaluation. Each names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error("unknown model preset `{name}` (known presets: {known})")]
    UnknownPreset { name: String, known: String },
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("invalid training config: {0}")]
    InvalidConfig(String),
    #[error("data: {0}")]
    Data(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot parse: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error(
        "run folder {path} holds a run with other {what} settings, which cannot be resumed \
         with these: {differences}; put the saved values back to resume it, or choose another \
         output folder (or delete this one) for a new run"
    )]
    RunMismatch {
        path: PathBuf,
        what: String,
        differences: String,
    },
}

impl TrainingError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Self::Checkpoint {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
