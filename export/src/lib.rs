//! `export`: integer graph (`quant::Graph`) -> self-contained C project with a bundled C99
//! kernel runtime that is bit-exact with quant's Rust integer interpreter.
//!
//! * [`export_c`] / [`export_c_with_limits`]: writes `<name>.h`, `<name>.c` (constants in
//!   flash, one static arena in SRAM, `<name>_run(in, out)`), the runtime
//!   (`runtime/nas_kernels.{h,c}`, the sparse kernels `runtime/nas_sparse.{h,c}` and the
//!   private `runtime/nas_dsp.h`) and a `Makefile` for host gcc, Cortex-M4/M7 and RV32.
//! * [`front_end`]: `<name>_quantize_input`, raw features to the model's int8 input with the
//!   training statistics the graph holds, bit-exact with the Rust reference.
//! * [`latency`](mod@latency): the cost model's cycles of every kernel call of a planned graph.
//! * [`sparse`]: which weights are stored blockwise run-length coded (TinyFormer's
//!   self-adaptive rule on the int8 weights).
//! * Memory: the schedule, tensor storage and arena offsets come from the cost model
//!   ([`plan::plan`]: head-tail / best-fit, the smaller), so the exported arena and
//!   constant bytes are the cost model's SRAM and flash-constant figures. Attention chains
//!   (`MatMul -> Softmax -> MatMul`) are emitted as the fused depth-first tiled kernel
//!   (`nas_attention_s8`, or `nas_fwsa_s8` for fused-weight attention).
//! * [`verify`](mod@verify): builds and runs the export on host (ASan/UBSan) and under QEMU and compares
//!   every output with `quant::Interpreter`.

pub mod codegen;
pub mod error;
pub mod front_end;
pub mod latency;
pub mod plan;
pub mod sparse;
pub mod verify;

pub use codegen::{
    CProject, ExportLimits, ExportReport, RUNTIME_FILES, check_supported, export_c, export_c_with,
    export_c_with_limits, generate, generate_with, runtime_kernel,
};
pub use error::{APT_PACKAGES, ExportError, Result};
pub use plan::{Int8Estimate, Int8Options, Int8Plan, TilePolicy};
pub use verify::{
    Mismatch, Target, TargetReport, VerifyReport, verify, verify_in, verify_in_with, verify_with,
};
