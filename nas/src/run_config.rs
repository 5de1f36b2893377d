//! `nas train` configuration files: which model, on which data, with which trainer settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use training::{KwtConfig, NormPlacement, TrainerConfig};

use training::DataSpec;

/// A KWT chosen by preset name, with optional overrides of single fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// One of `kwt-1`, `kwt-2`, `kwt-3`, `kwt-tiny`, `kwt-micro`.
    pub preset: String,
    #[serde(default)]
    pub dim: Option<usize>,
    #[serde(default)]
    pub depth: Option<usize>,
    #[serde(default)]
    pub heads: Option<usize>,
    #[serde(default)]
    pub dim_head: Option<usize>,
    #[serde(default)]
    pub mlp_dim: Option<usize>,
    #[serde(default)]
    pub dropout: Option<f64>,
    #[serde(default)]
    pub norm: Option<NormPlacement>,
    #[serde(default)]
    pub distill_token: bool,
}

impl ModelSpec {
    /// The full architecture for inputs of `frames` x `features` into `classes` classes.
    pub fn resolve(&self, frames: usize, features: usize, classes: usize) -> Result<KwtConfig> {
        let mut m = KwtConfig::preset(&self.preset, classes)?;
        m.frames = frames;
        m.features = features;
        m.dim = self.dim.unwrap_or(m.dim);
        m.depth = self.depth.unwrap_or(m.depth);
        m.heads = self.heads.unwrap_or(m.heads);
        m.dim_head = self.dim_head.unwrap_or(m.dim_head);
        m.mlp_dim = self.mlp_dim.unwrap_or(m.mlp_dim);
        m.dropout = self.dropout.unwrap_or(m.dropout);
        m.norm = self.norm.unwrap_or(m.norm);
        m.distill_token = self.distill_token;
        m.validate()?;
        Ok(m)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelSpec,
    pub data: DataSpec,
    #[serde(default)]
    pub trainer: TrainerConfig,
    /// Folder for checkpoints, curves and the summary (relative to the working directory).
    pub out: PathBuf,
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        match ron::from_str::<RunConfig>(text) {
            Ok(c) => {
                c.trainer.validate()?;
                Ok(c)
            }
            Err(e) => bail!("{e}"),
        }
    }
}

/// The built-in default run: a KWT-tiny on a key-word set generated in Rust, no files needed.
pub const QUICKSTART: &str = include_str!("../../configs/quickstart.ron");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_parse() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs")).unwrap()
        {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "ron") {
                // Search configs (`nas search`) share the folder with training run configs.
                let text = std::fs::read_to_string(&path).unwrap();
                if search::kwt::config::is_kwt_config(&text) {
                    search::kwt::KwtSearchConfig::load(&path).unwrap();
                } else if search::path_train::is_path_train_config(&text) {
                    search::path_train::PathTrainConfig::load(&path).unwrap();
                } else if text.contains("supernet_space:") {
                    search::SearchConfig::load(&path).unwrap();
                } else {
                    RunConfig::load(&path).unwrap();
                }
            }
        }
        RunConfig::parse(QUICKSTART).unwrap();
    }

    /// The distillation lines `configs/kwt1_speech_commands.ron` shows in comments parse.
    #[test]
    fn distillation_settings_parse() {
        let with = |line: &str| {
            let text = QUICKSTART.replacen("trainer: (", &format!("trainer: ({line}"), 1);
            RunConfig::parse(&text)
                .unwrap()
                .trainer
                .distillation
                .unwrap()
        };
        let hard = with(r#"distillation: Some((teacher: "runs/kwt3/best.bpk")),"#);
        assert_eq!(hard.teacher, std::path::Path::new("runs/kwt3/best.bpk"));
        assert_eq!(hard.targets, training::DistillTargets::Hard);
        let soft = with(
            r#"distillation: Some((teacher: "t.bpk", targets: Soft(temperature: 2.0, weight: 0.5))),"#,
        );
        assert_eq!(
            soft.targets,
            training::DistillTargets::Soft {
                temperature: 2.0,
                weight: 0.5
            }
        );
    }

    #[test]
    fn a_typo_names_the_field_and_position() {
        let text = QUICKSTART.replace("batch_size", "batch_sise");
        let err = format!("{:#}", RunConfig::parse(&text).unwrap_err());
        assert!(err.contains("batch_sise"), "{err}");
        assert!(
            err.contains("batch_size"),
            "should list the expected fields: {err}"
        );
    }

    #[test]
    fn unknown_preset_is_reported() {
        let spec = ModelSpec {
            preset: "kwt-7".into(),
            dim: None,
            depth: None,
            heads: None,
            dim_head: None,
            mlp_dim: None,
            dropout: None,
            norm: None,
            distill_token: false,
        };
        let err = spec.resolve(98, 40, 12).unwrap_err().to_string();
        assert!(err.contains("kwt-7"), "{err}");
    }
}
