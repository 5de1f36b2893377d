use std::path::PathBuf;

/// Errors of a search. Each names the file, field, candidate or layer at fault.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data: {0}")]
    Data(#[from] datasets::DatasetError),
    #[error(transparent)]
    Model(#[from] training::TrainingError),
    #[error("pruning: {0}")]
    Prune(#[from] pruning::PruneError),
    #[error("cost model: {0}")]
    Cost(#[from] cost::CostError),
    #[error("search state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("search: {0}")]
    Search(String),
    /// `nas train` of a searched path: its config file.
    #[error("training config {path}: {message}")]
    TrainConfig { path: PathBuf, message: String },
    /// `nas train` of a searched path: the message names the file or setting.
    #[error("{0}")]
    PathTrain(String),
}

impl SearchError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, SearchError>;
