//! `export`: integer graph (`quant::Graph`) -> self-contained C project with a bundled C99
//! kernel runtime that is bit-exact with quant's Rust integer interpreter.
//!
//! * [`export_c`] / [`export_c_with_limits`]: writes `<name>.h`, `<name>.c` (constants in
//!   flash, one static arena in SRAM, `<name>_run(in, out)`), the runtime
//!   (`runtime/nas_kernels.{h,c}`) and a `Makefile` for host gcc, Cortex-M4/M7 and RV32.
//! * [`plan_arena`]: the static memory planner (one function, to be swapped for the cost
//!   crate's shared planner).
//! * [`verify`]: builds and runs the export on host (ASan/UBSan) and under QEMU and compares
//!   every output with `quant::Interpreter`.

pub mod codegen;
pub mod error;
pub mod plan;
pub mod verify;

pub use codegen::{
    CProject, ExportLimits, ExportReport, RUNTIME_FILES, export_c, export_c_with_limits, generate,
    runtime_kernel,
};
pub use error::{APT_PACKAGES, ExportError, Result};
pub use plan::plan_arena;
pub use verify::{Mismatch, Target, TargetReport, VerifyReport, verify, verify_in};
