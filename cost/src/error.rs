//! Typed errors of the cost model; each one names the file, op, tensor or field involved.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CostError {
    #[error("target file {path}: cannot read: {source}")]
    TargetIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("target file {path}: {source}")]
    TargetParse {
        path: PathBuf,
        #[source]
        source: ron::error::SpannedError,
    },
    #[error("target `{target}`: field `{field}` {problem}")]
    TargetField {
        target: String,
        field: &'static str,
        problem: String,
    },
    #[error("graph `{graph}`: op `{op}`: dimension `{field}` must be >= 1, got 0")]
    ZeroDimension {
        graph: String,
        op: String,
        field: &'static str,
    },
    #[error(
        "graph `{graph}`: op `{op}`: unknown input tensor `{tensor}` (not a graph input nor produced by an earlier op)"
    )]
    UnknownTensor {
        graph: String,
        op: String,
        tensor: String,
    },
    #[error("graph `{graph}`: op `{op}`: tensor name `{name}` already defined")]
    DuplicateName {
        graph: String,
        op: String,
        name: String,
    },
    #[error("graph `{graph}`: op `{op}`: expected {expected} inputs, got {got}")]
    Arity {
        graph: String,
        op: String,
        expected: usize,
        got: usize,
    },
    #[error(
        "graph `{graph}`: op `{op}`: input {index} (`{tensor}`) has {got} bytes, the op expects {expected}"
    )]
    ShapeMismatch {
        graph: String,
        op: String,
        index: usize,
        tensor: String,
        expected: u64,
        got: u64,
    },
    #[error("graph `{graph}`: op `{op}`: {problem}")]
    InvalidOp {
        graph: String,
        op: String,
        problem: String,
    },
    #[error("graph `{graph}` has no ops")]
    EmptyGraph { graph: String },
    #[error("op `{op}`: sparse coding: {source}")]
    Sparse {
        op: String,
        #[source]
        source: rle::RleError,
    },
    #[error(
        "memory plan `{planner}`: buffers `{a}` and `{b}` are live together and overlap in the arena"
    )]
    Overlap {
        planner: &'static str,
        a: String,
        b: String,
    },
    #[error("report: cannot write {path}: {problem}")]
    Report { path: PathBuf, problem: String },
}
