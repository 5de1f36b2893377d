//! The per-layer pruning configuration (a RON value that `nas prune` applies and SparseNAS
//! samples), and its validation against a model's prunable layers.
//!
//! ```ron
//! (
//!     default: (sparsity: 0.5, block: 4),      // every prunable layer not listed below
//!     layers: {
//!         "embed": (sparsity: 0.0, block: 4),  // layer paths as `blocks.3.mlp.fc1`
//!         "head.fc": (sparsity: 0.0, block: 2),
//!     },
//!     score: L1,                                // or L2
//!     schedule: Agp(initial_sparsity: 0.0, start_step: 0, frequency: 20, steps: 10),
//! )
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::PruneError;
use crate::mask::{BlockGeometry, Score, WeightLayout};
use crate::schedule::Schedule;

/// Sparsity and block size of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerRule {
    /// Final fraction of the layer's weights pruned, in [0, 1).
    pub sparsity: f64,
    /// Weights per block: 2 or 4 (ignored for depthwise layers, whose blocks are kernel rows).
    pub block: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruningConfig {
    /// The rule of every prunable layer not named in `layers`.
    pub default: LayerRule,
    #[serde(default)]
    pub layers: BTreeMap<String, LayerRule>,
    #[serde(default)]
    pub score: Score,
    pub schedule: Schedule,
}

/// A prunable layer of a model: its path and weight layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub name: String,
    pub layout: WeightLayout,
}

/// One layer's validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub name: String,
    pub geometry: BlockGeometry,
    pub target: f64,
}

/// A configuration checked against a model: one entry per prunable layer, in model order.
#[derive(Debug, Clone, PartialEq)]
pub struct PruningPlan {
    pub layers: Vec<LayerPlan>,
    pub score: Score,
    pub schedule: Schedule,
}

impl PruningPlan {
    /// The plan's layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerPlan> {
        self.layers.iter().find(|l| l.name == name)
    }
}

fn check_sparsity(layer: &str, value: f64) -> Result<(), PruneError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(PruneError::SparsityOutOfRange {
            layer: layer.into(),
            value,
        })
    }
}

impl PruningConfig {
    pub fn parse(text: &str) -> Result<Self, String> {
        ron::from_str(text).map_err(|e| e.to_string())
    }

    /// A sweep point: every rule that prunes (sparsity > 0, the default rule included) gets
    /// `sparsity`; rules at 0 keep their layers dense. Block sizes are kept.
    pub fn with_sparsity(mut self, sparsity: f64) -> Self {
        for rule in std::iter::once(&mut self.default).chain(self.layers.values_mut()) {
            if rule.sparsity > 0.0 {
                rule.sparsity = sparsity;
            }
        }
        self
    }

    /// Checks every rule against `layers` (the model's prunable layers): unknown layer names,
    /// sparsities outside [0, 1), block sizes that are not allowed or do not divide the
    /// layer's reduction dimension, and the schedule.
    pub fn plan(&self, layers: &[LayerInfo]) -> Result<PruningPlan, PruneError> {
        self.schedule.validate()?;
        check_sparsity("default", self.default.sparsity)?;
        for name in self.layers.keys() {
            if !layers.iter().any(|l| &l.name == name) {
                return Err(PruneError::UnknownLayer {
                    name: name.clone(),
                    known: layers
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let mut out = Vec::with_capacity(layers.len());
        for info in layers {
            let (rule, explicit) = match self.layers.get(&info.name) {
                Some(r) => (*r, true),
                None => (self.default, false),
            };
            check_sparsity(&info.name, rule.sparsity)?;
            let block = match info.layout {
                WeightLayout::Depthwise { kw, .. } if !explicit => kw,
                _ => rule.block,
            };
            let geometry = BlockGeometry::new(info.layout, block, &info.name)?;
            out.push(LayerPlan {
                name: info.name.clone(),
                geometry,
                target: rule.sparsity,
            });
        }
        Ok(PruningPlan {
            layers: out,
            score: self.score,
            schedule: self.schedule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> Vec<LayerInfo> {
        vec![
            LayerInfo {
                name: "embed".into(),
                layout: WeightLayout::LinearInOut { d_in: 6, d_out: 8 },
            },
            LayerInfo {
                name: "blocks.0.mlp.fc1".into(),
                layout: WeightLayout::LinearInOut { d_in: 8, d_out: 16 },
            },
            LayerInfo {
                name: "dw".into(),
                layout: WeightLayout::Depthwise {
                    channels: 4,
                    kh: 3,
                    kw: 3,
                },
            },
        ]
    }

    const TEXT: &str = r#"(
        default: (sparsity: 0.5, block: 4),
        layers: { "embed": (sparsity: 0.0, block: 2) },
        schedule: Agp(frequency: 2, steps: 3),
    )"#;

    #[test]
    fn parses_and_plans() {
        let cfg = PruningConfig::parse(TEXT).unwrap();
        assert_eq!(cfg.score, Score::L1);
        let plan = cfg.plan(&layers()).unwrap();
        assert_eq!(plan.layers.len(), 3);
        assert_eq!(plan.layers[0].geometry.block(), 2);
        assert_eq!(plan.layers[0].target, 0.0);
        assert_eq!(plan.layers[1].geometry.block(), 4);
        assert_eq!(plan.layers[1].target, 0.5);
        assert_eq!(plan.layers[2].geometry.block(), 3, "depthwise: kernel rows");
    }

    #[test]
    fn unknown_layer_lists_the_known_ones() {
        let text = TEXT.replace("\"embed\"", "\"blocks.7.mlp.fc1\"");
        let err = PruningConfig::parse(&text)
            .unwrap()
            .plan(&layers())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("blocks.7.mlp.fc1") && err.contains("embed, blocks.0.mlp.fc1, dw"),
            "{err}"
        );
    }

    #[test]
    fn block_that_does_not_divide_and_bad_sparsity() {
        let text = TEXT.replace("(sparsity: 0.0, block: 2)", "(sparsity: 0.0, block: 4)");
        let err = PruningConfig::parse(&text)
            .unwrap()
            .plan(&layers())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("embed") && err.contains("does not divide") && err.contains("6"),
            "{err}"
        );
        for bad in ["1.0", "-0.2", "1.5"] {
            let text = TEXT.replace("(sparsity: 0.0,", &format!("(sparsity: {bad},"));
            let err = PruningConfig::parse(&text)
                .unwrap()
                .plan(&layers())
                .unwrap_err()
                .to_string();
            assert!(err.contains("embed") && err.contains("[0, 1)"), "{err}");
        }
        let text = TEXT.replace("default: (sparsity: 0.5", "default: (sparsity: 1.0");
        let err = PruningConfig::parse(&text)
            .unwrap()
            .plan(&layers())
            .unwrap_err()
            .to_string();
        assert!(err.contains("default") && err.contains("[0, 1)"), "{err}");
        let text = TEXT.replace("block: 4", "block: 8");
        let err = PruningConfig::parse(&text)
            .unwrap()
            .plan(&layers())
            .unwrap_err()
            .to_string();
        assert!(err.contains("2, 4"), "{err}");
        let err = PruningConfig::parse(&TEXT.replace("sparsity: 0.5", "sparsty: 0.5")).unwrap_err();
        assert!(err.contains("sparsty"), "{err}");
    }
}
