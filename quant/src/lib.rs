//! `quant`, integer side: the deployable int8 integer graph, I-BERT integer kernels and the
//! Rust integer reference interpreter (the specification the C kernels match bit for bit).
//!
//! * [`dyadic`]: dyadic scales `m * 2^-s` and requantization (pulp-transformer Eq. 10).
//! * [`ibert`]: i-exp, i-GELU, i-sqrt, i-softmax, i-LayerNorm and Scaled-LayerNorm.
//! * [`ibert_error`]: offline accuracy measurement of those kernels.
//! * [`gelu_table`]: GELU on int8 as an exact table.
//! * [`graph`]: the integer graph, its ops and their exact semantics, validation.
//! * [`builder`]: building a graph from real scales (offline).
//! * [`format`](mod@format): the versioned, checksummed `NASI8` file format.
//! * [`kernels`]: reference loops of the tensor ops.
//! * [`interpreter`]: runs a graph on int8 inputs.
//! * [`rounding`]: float constants to int8 and int32, as QAT's forward rounds them.
//! * [`ptq`]: post-training quantization of a trained Burn KWT into an integer graph.
//!
//! No floating point is used on the integer inference path ([`interpreter`], [`kernels`], the `eval*`
//! functions of [`ibert`], [`Dyadic::requantize`]); floats appear only in offline parameter
//! builders and in measurements.

pub mod builder;
pub mod dyadic;
pub mod error;
pub mod format;
pub mod gelu_table;
pub mod graph;
pub mod ibert;
pub mod ibert_error;
pub mod interpreter;
pub mod kernels;
pub mod ptq;
pub mod qat;
pub mod rounding;

pub use builder::GraphBuilder;
pub use dyadic::{Dyadic, requantize};
pub use error::{QuantError, Result};
pub use format::{FORMAT_VERSION, MAGIC, from_bytes, load, save, to_bytes};
pub use gelu_table::GeluTable;
pub use graph::{AddParams, Graph, Node, Op, Requant, Standardization, TensorInfo, Window};
pub use ibert::{IExp, IGelu, ISoftmax, Int8Gelu, IntLayerNorm, NormParams, isqrt_u32};
pub use interpreter::Interpreter;

#[cfg(test)]
mod tests;
