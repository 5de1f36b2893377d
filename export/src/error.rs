//! The typed error of the exporter: every variant names the node, op, target or tool involved.

use std::path::PathBuf;

use thiserror::Error;

/// Apt packages that provide every cross toolchain and emulator the verifier uses.
pub const APT_PACKAGES: &str = "gcc-arm-none-eabi picolibc-arm-none-eabi qemu-system-arm \
                                gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc";

/// Every failure of export and verification.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The graph does not validate (quant's own checks).
    #[error("invalid graph: {0}")]
    Graph(#[from] quant::QuantError),
    /// The C runtime has no kernel for this op (or this configuration of it).
    #[error("node `{node}`: op {op} is not supported by the C runtime: {reason}")]
    Unsupported {
        /// Node name.
        node: String,
        /// Op kind.
        op: String,
        /// What is missing.
        reason: String,
    },
    /// The model name cannot be used as a C identifier prefix.
    #[error("model name `{name}` is not a C identifier ([A-Za-z_][A-Za-z0-9_]*, at most 64 chars)")]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// The cost model could not schedule or plan the graph.
    #[error("memory planning failed: {0}")]
    Plan(String),
    /// The activation arena exceeds the SRAM limit.
    #[error("activation arena of {need} bytes exceeds the SRAM limit of {limit} bytes")]
    ArenaTooLarge {
        /// Arena bytes needed.
        need: usize,
        /// SRAM bytes available.
        limit: usize,
    },
    /// Weights and constants exceed the flash limit.
    #[error("weights and constants of {need} bytes exceed the flash limit of {limit} bytes")]
    FlashTooLarge {
        /// Constant bytes needed.
        need: usize,
        /// Flash bytes available.
        limit: usize,
    },
    /// A file could not be written or read.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A tool the target needs is not installed.
    #[error(
        "target {target}: tool `{tool}` not found; install it with \
         `apt-get install -y --no-install-recommends {package}`"
    )]
    ToolMissing {
        /// Target name.
        target: String,
        /// Missing executable (or file).
        tool: String,
        /// Debian package providing it.
        package: String,
    },
    /// Compiling or linking the exported project failed.
    #[error("target {target}: build failed (`{command}`):\n{output}")]
    Build {
        /// Target name.
        target: String,
        /// The command that failed.
        command: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// The test program crashed, timed out, or printed something unparseable.
    #[error("target {target}: run failed (`{command}`, exit status {status}):\n{output}")]
    Run {
        /// Target name.
        target: String,
        /// The command that failed.
        command: String,
        /// Exit status (124: timeout).
        status: String,
        /// Its stdout and stderr (tail).
        output: String,
    },
    /// A verification input has the wrong length.
    #[error("input sample {sample}: expected {expected} int8 values, found {found}")]
    BadInput {
        /// Sample index.
        sample: usize,
        /// Total input elements of the graph.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// The C output differs from quant's interpreter.
    #[error(
        "target {target}: output mismatch at sample {sample}, index {index}: C gave {got}, \
         the Rust interpreter {want}"
    )]
    Mismatch {
        /// Target name.
        target: String,
        /// Sample index.
        sample: usize,
        /// Output element index (graph outputs concatenated).
        index: usize,
        /// C value.
        got: i8,
        /// Interpreter value.
        want: i8,
    },
    #[error(
        "{target}: the C front end (`model_quantize_input`) quantized {mismatches} of \
         {checked} raw input values differently from the Rust reference"
    )]
    FrontEndMismatch {
        target: String,
        mismatches: usize,
        checked: usize,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ExportError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.into();
    move |source| ExportError::Io { path, source }
}
