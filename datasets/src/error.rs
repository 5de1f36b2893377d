//! The one error type of the crate. Every variant names the file or field at fault and what was
//! expected, so a user can fix the input without reading the code.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or generating data.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: not a readable WAV file: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: unsupported WAV format: found {found}, expected {expected}")]
    WavFormat {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("downloading {url} failed: {message}")]
    Download { url: String, message: String },
    #[error("data set root folder {0} does not exist or is not a folder")]
    MissingRoot(PathBuf),
    #[error(
        "split list {0} is missing (a Speech Commands folder needs validation_list.txt and \
         testing_list.txt; `splits::write_split_lists` can create them)"
    )]
    MissingSplitList(PathBuf),
    #[error("{list}, line {line}: names {entry}, which does not exist")]
    ListedFileMissing {
        list: PathBuf,
        line: usize,
        entry: String,
    },
    #[error("{0}: no word folders found (expected one folder of WAV files per word)")]
    NoWordFolders(PathBuf),
    #[error("{root}: keyword folder `{word}` is missing (found words: {found})")]
    MissingWord {
        root: PathBuf,
        word: String,
        found: String,
    },
    #[error("invalid {field}: {message}")]
    InvalidConfig {
        field: &'static str,
        message: String,
    },
    #[error("{what}: expected {expected} values, found {found}")]
    Shape {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("external tool `{tool}` was not found on PATH; install it with `{install}`")]
    ToolMissing {
        tool: &'static str,
        install: &'static str,
    },
    #[error("external tool `{tool}` failed while making {what}: {message}")]
    ToolFailed {
        tool: &'static str,
        what: String,
        message: String,
    },
    #[error("{path}: file is missing (expected {expected})")]
    MissingFile { path: PathBuf, expected: String },
    #[error("{path}: wrong magic number 0x{found:08x}, expected 0x{expected:08x} ({what})")]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        what: &'static str,
    },
    #[error("{path}: truncated: its header promises {expected} bytes, but it holds {found}")]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: {found} bytes, but its header promises exactly {expected} (trailing data)")]
    TrailingData {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: size {size} bytes is not a multiple of the {record}-byte record size")]
    RecordSize {
        path: PathBuf,
        size: u64,
        record: usize,
    },
    #[error("{path}: record {index} has label {label}, expected a label below {classes}")]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u8,
        classes: usize,
    },
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        image_count: usize,
        label_count: usize,
    },
    #[error("{path}: {message}")]
    ClassNames { path: PathBuf, message: String },
    /// A data set that is not there, with how to get it.
    #[error("{source}; {hint}")]
    NotThere {
        source: Box<DatasetError>,
        hint: &'static str,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, DatasetError>;

impl DatasetError {
    /// Adds `hint` (how to get the data set) to an error that says a folder or file of it is
    /// missing; other errors (a corrupt file, say) are returned as they are.
    pub(crate) fn with_hint_if_missing(self, hint: &'static str) -> Self {
        match self {
            e @ (Self::MissingRoot(_) | Self::MissingFile { .. }) => Self::NotThere {
                source: Box::new(e),
                hint,
            },
            e => e,
        }
    }

    /// Wraps an I/O error with the path and the action that failed.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
