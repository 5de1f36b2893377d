//! The typed error of the integer side of `quant`.

use thiserror::Error;

/// Every failure of the integer graph, its kernels, its file format and its interpreter.
///
/// Errors name the node or tensor involved and what was expected, so a user can find the
/// offending layer without a debugger.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QuantError {
    /// A float scale handed to an offline parameter builder is not finite and positive.
    #[error("invalid scale {scale} for {what}: expected a finite positive number")]
    InvalidScale { what: String, scale: String },
    /// A dyadic value is outside the range its kernel accepts.
    #[error("invalid dyadic parameter for {what}: {reason}")]
    InvalidDyadic { what: String, reason: String },
    /// Integer parameters of a kernel would make int32 overflow possible, or are inconsistent.
    #[error("node `{node}`: invalid parameters: {reason}")]
    InvalidParams { node: String, reason: String },
    /// A tensor has a shape an op does not accept.
    #[error(
        "node `{node}`: shape mismatch for tensor `{tensor}`: expected {expected}, found {found}"
    )]
    ShapeMismatch {
        node: String,
        tensor: String,
        expected: String,
        found: String,
    },
    /// A tensor has a scale an op does not accept.
    #[error(
        "node `{node}`: scale mismatch for tensor `{tensor}`: expected {expected}, found {found}"
    )]
    ScaleMismatch {
        node: String,
        tensor: String,
        expected: String,
        found: String,
    },
    /// A node refers to a tensor that no input or earlier node defines.
    #[error("node `{node}`: unknown tensor `{tensor}`")]
    UnknownTensor { node: String, tensor: String },
    /// Two nodes (or a node and a graph input) write the same tensor, or two nodes share a name.
    #[error("duplicate definition of `{name}`")]
    Duplicate { name: String },
    /// The graph's structure is wrong (no outputs, an undeclared tensor, ...).
    #[error("invalid graph: {reason}")]
    InvalidGraph { reason: String },
    /// The caller handed the interpreter the wrong inputs.
    #[error("input `{tensor}`: expected {expected} values, found {found}")]
    BadInput {
        tensor: String,
        expected: usize,
        found: usize,
    },
    /// The file does not start with the `NASI8` magic.
    #[error("not an integer graph file: bad magic {found:?}, expected \"NASI8\"")]
    BadMagic { found: Vec<u8> },
    /// The file was written by a newer (or unknown) format version.
    #[error(
        "unsupported integer graph format version {found} (this build reads version {supported})"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    /// The file was written by an older format version whose op semantics this build no
    /// longer runs.
    #[error(
        "integer graph format version {found} is no longer supported ({why}); re-run `nas quantize` on the checkpoint"
    )]
    ObsoleteVersion { found: u32, why: &'static str },
    /// The file is shorter than its header says.
    #[error("truncated integer graph file: expected {expected} bytes, found {found}")]
    Truncated { expected: u64, found: u64 },
    /// The file is longer than its header says.
    #[error("integer graph file has {extra} trailing bytes after the payload")]
    TrailingBytes { extra: u64 },
    /// The payload checksum does not match: the file is corrupted.
    #[error("integer graph file corrupted: checksum {found:#010x}, expected {expected:#010x}")]
    Checksum { expected: u32, found: u32 },
    /// The payload could not be decoded.
    #[error("integer graph payload could not be decoded: {0}")]
    Decode(String),
    /// Reading or writing the file failed.
    #[error("i/o error on `{path}`: {message}")]
    Io { path: String, message: String },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, QuantError>;

pub(crate) fn params(node: &str, reason: impl Into<String>) -> QuantError {
    QuantError::InvalidParams {
        node: node.to_string(),
        reason: reason.into(),
    }
}
