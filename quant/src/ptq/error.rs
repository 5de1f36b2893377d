//! The typed error of post-training quantization.

use thiserror::Error;

use crate::error::QuantError;

/// Every failure of [`crate::ptq`]; errors name the layer (node) at fault.
#[derive(Debug, Error)]
pub enum PtqError {
    /// Building or running the integer graph failed at a layer.
    #[error("layer `{layer}`: {source}")]
    Layer {
        /// Node name in the graph (e.g. `block0.attn.scores`).
        layer: String,
        /// The integer side's error.
        #[source]
        source: Box<QuantError>,
    },
    /// The integer graph (validation, interpreter) failed outside a specific layer.
    #[error(transparent)]
    Quant(Box<QuantError>),
    /// The float model does not have the shapes its config describes.
    #[error("model: {0}")]
    Model(String),
    /// The calibration set is empty or a sample has the wrong length.
    #[error("calibration: {0}")]
    Calibration(String),
    /// The float model produced a NaN or an infinity at a layer during calibration.
    #[error("layer `{layer}`: non-finite float activation during calibration")]
    NonFinite {
        /// Node name.
        layer: String,
    },
    /// The float re-implementation used for calibration disagrees with the Burn model.
    #[error("the float reference graph disagrees with the Burn model: {0}")]
    FloatMismatch(String),
    /// A data set or checkpoint error from `training`.
    #[error(transparent)]
    Training(Box<training::TrainingError>),
    /// Quantization-aware training: missing quantizers or thresholds, an unfinished run.
    #[error("QAT: {0}")]
    Qat(String),
    /// A bad option.
    #[error("invalid option: {0}")]
    Options(String),
}

impl From<QuantError> for PtqError {
    fn from(e: QuantError) -> Self {
        PtqError::Quant(Box::new(e))
    }
}

impl From<training::TrainingError> for PtqError {
    fn from(e: training::TrainingError) -> Self {
        PtqError::Training(Box::new(e))
    }
}

/// Result alias of [`crate::ptq`].
pub type Result<T> = std::result::Result<T, PtqError>;

/// Attaches a layer name to an integer-side error.
pub(crate) fn at(layer: &str) -> impl FnOnce(QuantError) -> PtqError + '_ {
    move |source| PtqError::Layer {
        layer: layer.to_string(),
        source: Box::new(source),
    }
}
