//! `nas prune`: blockwise AGP pruning of a trained checkpoint with fine-tuning, a sparsity
//! report (per layer sparsity, block size, dense and run-length coded bytes), and, when a
//! sweep is asked for, the curve of test accuracy over global sparsity.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use pruning::report::{SweepPoint, write_json};
use pruning::{
    MaskSet, PruningConfig, PruningHook, PruningPlan, kwt_layers, mask_violations, plot_sweep,
    sparsity_report,
};
use serde::{Deserialize, Serialize};
use training::trainer::BEST_CHECKPOINT;
use training::{DataSpec, DataSplits, KwtConfig, TrainOptions, TrainOutcome, TrainerConfig};

use crate::backend::Backend;

#[derive(Args)]
pub struct PruneArgs {
    /// The dense `.bpk` checkpoint to prune (its `model.ron` beside it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Pruning run configuration (RON): data, fine-tuning trainer, per-layer pruning rules.
    #[arg(long)]
    config: PathBuf,
    /// Use this Speech Commands folder instead of the config's data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output folder instead of the config's `out`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Sweep these sparsities (comma-separated) instead of the config's `sweep`.
    #[arg(long, value_delimiter = ',')]
    sweep: Option<Vec<f64>>,
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// A `nas prune` configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRunConfig {
    pub data: DataSpec,
    /// Fine-tuning settings (the schedule's last mask update must fall within them).
    #[serde(default)]
    pub trainer: TrainerConfig,
    pub pruning: PruningConfig,
    /// Sparsities to sweep: each replaces the sparsity of every rule above 0, one
    /// fine-tuning run per value in `out/sparsity-NN`.
    #[serde(default)]
    pub sweep: Option<Vec<f64>>,
    pub out: PathBuf,
}

impl PruneRunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        match ron::from_str::<PruneRunConfig>(text) {
            Ok(c) => {
                c.trainer.validate()?;
                Ok(c)
            }
            Err(e) => bail!("{e}"),
        }
    }
}

/// What one pruning run reports; `report.json` in its folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneSummary {
    pub checkpoint: PathBuf,
    pub test_acc: f64,
    pub best_valid_acc: f64,
    pub steps: usize,
    pub train_seconds: f64,
    pub report: pruning::SparsityReport,
}

pub const PRUNED_CHECKPOINT: &str = "pruned.bpk";
pub const PRUNED_MASKS: &str = "pruned_masks.json";
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_TABLE: &str = "report.txt";
pub const SWEEP_JSON: &str = "sweep.json";
pub const SWEEP_PLOT: &str = "sweep.svg";

/// The plan of `pruning` for `model`, checked to reach its final sparsity within `trainer`.
fn plan_for(
    pruning: &PruningConfig,
    layers: &[pruning::LayerInfo],
    trainer: &TrainerConfig,
    train_samples: usize,
) -> Result<PruningPlan> {
    let plan = pruning.plan(layers)?;
    let steps = trainer.epochs * train_samples.div_ceil(trainer.batch_size.max(1));
    let end = plan.schedule.end_step();
    if end > steps {
        bail!(
            "the pruning schedule's last mask update is at step {end}, but fine-tuning takes only {steps} steps ({} epochs of {} steps); shorten the schedule or add epochs",
            trainer.epochs,
            train_samples.div_ceil(trainer.batch_size.max(1))
        );
    }
    Ok(plan)
}

/// Fine-tunes `checkpoint` under `plan` into `out`; writes the pruned checkpoint, its masks
/// and the report there.
#[allow(clippy::too_many_arguments)]
fn prune_one(
    checkpoint: &Path,
    model: &KwtConfig,
    plan: PruningPlan,
    trainer: &TrainerConfig,
    data: &DataSplits,
    out: &Path,
    device: &burn::tensor::Device,
    options: &TrainOptions,
) -> Result<PruneSummary> {
    let mut hook = PruningHook::new(plan).starting_from(checkpoint.to_path_buf());
    let summary =
        match training::train_with_hook(model, trainer, data, out, device, options, &mut hook)? {
            TrainOutcome::Finished(s) => s,
            TrainOutcome::Interrupted { global_step } => {
                bail!("fine-tuning stopped at step {global_step}; run again to resume")
            }
        };
    let best = out.join(BEST_CHECKPOINT);
    let (pruned, _) = training::load_checkpoint(&best, device)?;
    let broken = mask_violations(&pruned, hook.plan(), hook.masks());
    if !broken.is_empty() {
        bail!(
            "{}: pruned blocks hold nonzero weights in {}",
            best.display(),
            broken.join(", ")
        );
    }
    let report = sparsity_report(&pruned, hook.plan())?;
    let pruned_path = out.join(PRUNED_CHECKPOINT);
    std::fs::copy(&best, &pruned_path)
        .with_context(|| format!("cannot write {}", pruned_path.display()))?;
    let masks: MaskSet = hook.mask_set(summary.steps);
    masks.write(&out.join(PRUNED_MASKS))?;
    let result = PruneSummary {
        checkpoint: pruned_path,
        test_acc: summary.test_acc,
        best_valid_acc: summary.best_valid_acc,
        steps: summary.steps,
        train_seconds: summary.train_seconds,
        report,
    };
    write_json(&out.join(REPORT_JSON), &result)?;
    let table = result.report.to_table();
    training::checkpoint::write_atomic(&out.join(REPORT_TABLE), table.as_bytes())?;
    println!("{table}");
    println!(
        "{}: test accuracy {:.2}% at {:.2}% global sparsity, weights {} B stored (dense int8 {} B)",
        out.display(),
        100.0 * result.test_acc,
        100.0 * result.report.sparsity,
        result.report.stored_bytes,
        result.report.dense_bytes
    );
    Ok(result)
}

/// The run folder of the sweep point at sparsity `s`.
fn sweep_folder(out: &Path, s: f64) -> PathBuf {
    out.join(format!("sparsity-{:02}", (100.0 * s).round() as u32))
}

pub fn run(args: PruneArgs) -> Result<()> {
    let mut config = PruneRunConfig::load(&args.config)?;
    if let Some(dir) = &args.data {
        config.data = config.data.with_folder(dir.clone());
    }
    if let Some(out) = args.out {
        config.out = out;
    }
    if args.sweep.is_some() {
        config.sweep = args.sweep;
    }
    let device = args.backend.device()?;
    let (dense, model) = training::load_checkpoint(&args.checkpoint, &device)?;
    let layers = kwt_layers(&dense);
    // an interrupted run resumes only on the data it started with (the sweep's folders each
    // hold a run)
    let folders: Vec<PathBuf> = match &config.sweep {
        None => vec![config.out.clone()],
        Some(sweep) => sweep
            .iter()
            .map(|&s| sweep_folder(&config.out, s))
            .collect(),
    };
    for folder in &folders {
        config.data.check_resumable(folder)?;
    }
    let data = config.data.load(config.trainer.augment)?;
    let options = TrainOptions {
        progress: !args.quiet,
        ..Default::default()
    };

    let Some(sweep) = &config.sweep else {
        let plan = plan_for(&config.pruning, &layers, &config.trainer, data.train.len())?;
        config.data.write_into(&config.out)?;
        prune_one(
            &args.checkpoint,
            &model,
            plan,
            &config.trainer,
            &data,
            &config.out,
            &device,
            &options,
        )?;
        return Ok(());
    };
    if sweep.is_empty() {
        bail!("`sweep` is empty: give at least one sparsity");
    }
    // Check every point before spending time on any.
    let plans = sweep
        .iter()
        .map(|&s| {
            plan_for(
                &config.pruning.clone().with_sparsity(s),
                &layers,
                &config.trainer,
                data.train.len(),
            )
            .with_context(|| format!("sweep point {s}"))
        })
        .collect::<Result<Vec<_>>>()?;

    let dense_confusion = training::evaluate(
        &dense,
        data.test.as_ref(),
        &data.labels,
        data.frames,
        data.features,
        config.trainer.eval_batch_size,
        &device,
    )?;
    let dense_report = sparsity_report(&dense, &plans[0])?;
    let mut points = vec![SweepPoint {
        label: "dense (input checkpoint)".into(),
        sparsity: dense_report.sparsity,
        test_acc: dense_confusion.accuracy(),
        stored_bytes: dense_report.stored_bytes,
    }];
    for (&s, plan) in sweep.iter().zip(plans) {
        let out = sweep_folder(&config.out, s);
        tracing::info!("sweep point {s}: fine-tuning into {}", out.display());
        config.data.write_into(&out)?;
        let r = prune_one(
            &args.checkpoint,
            &model,
            plan,
            &config.trainer,
            &data,
            &out,
            &device,
            &options,
        )?;
        points.push(SweepPoint {
            label: format!("sparsity {s}"),
            sparsity: r.report.sparsity,
            test_acc: r.test_acc,
            stored_bytes: r.report.stored_bytes,
        });
    }
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("cannot create {}", config.out.display()))?;
    write_json(&config.out.join(SWEEP_JSON), &points)?;
    plot_sweep(&points, &config.out.join(SWEEP_PLOT))?;
    println!(
        "{:<26} {:>15} {:>13} {:>13}",
        "run", "global sparsity", "test accuracy", "weight bytes"
    );
    for p in &points {
        println!(
            "{:<26} {:>14.2}% {:>12.2}% {:>13}",
            p.label,
            100.0 * p.sparsity,
            100.0 * p.test_acc,
            p.stored_bytes
        );
    }
    println!(
        "sweep: {}, {}",
        config.out.join(SWEEP_JSON).display(),
        config.out.join(SWEEP_PLOT).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/prune")
            .join(name)
    }

    #[test]
    fn shipped_prune_config_parses_and_plans_for_kwt_tiny() {
        let cfg = PruneRunConfig::load(&shipped("kwt_tiny_agp.ron")).unwrap();
        let model = KwtConfig::preset("kwt-tiny", 12).unwrap();
        let m = model.init(0, &burn::tensor::Device::flex()).unwrap();
        let layers = kwt_layers(&m);
        for s in cfg.sweep.clone().unwrap() {
            let plan = plan_for(
                &cfg.pruning.clone().with_sparsity(s),
                &layers,
                &cfg.trainer,
                1900,
            )
            .unwrap();
            assert_eq!(plan.layer("embed").unwrap().target, 0.0);
            assert_eq!(plan.layer("blocks.1.mlp.fc1").unwrap().target, s);
            assert_eq!(plan.layer("blocks.0.attn.qkv").unwrap().geometry.block(), 2);
        }
        // Every file of configs/prune: `nas train` configs (`*_dense.ron`) or `nas prune` ones,
        // each planned for the model it prunes (`kwt1_*`: KWT-1, the others KWT-tiny).
        let kwt1 = KwtConfig::preset("kwt-1", 12).unwrap();
        let kwt1_layers = kwt_layers(&kwt1.init(0, &burn::tensor::Device::flex()).unwrap());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/prune");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with("_dense.ron") {
                crate::run_config::RunConfig::load(&path).unwrap();
            } else if name.ends_with(".ron") {
                let c = PruneRunConfig::load(&path).unwrap();
                // (layers, training clips of the data set the config names)
                let (layers, clips) = if name.starts_with("kwt1_") {
                    (&kwt1_layers, 1416)
                } else {
                    (&layers, 1920)
                };
                plan_for(&c.pruning, layers, &c.trainer, clips)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    /// The whole command on a tiny synthetic set: dense training, a two-point AGP sweep,
    /// and every file it promises; then a bad layer name fails before any training.
    #[test]
    fn prune_command_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let words = "yes,no,up,down,left,right,on,off,stop,go,bed,cat";
        let data = format!(
            r#"SyntheticKeywords(folder: "{}", words: Some([{}]), per_word: 12, seed: 5, task: Labels12)"#,
            d.join("words").display(),
            words
                .split(',')
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let dense = d.join("dense");
        let run_cfg = crate::run_config::RunConfig::parse(&format!(
            r#"(model: (preset: "kwt-micro"), data: {data},
                trainer: (epochs: 2, batch_size: 16, warmup_epochs: 0, seed: 3, augment: false),
                out: "{}")"#,
            dense.display()
        ))
        .unwrap();
        let device = burn::tensor::Device::flex();
        let splits = run_cfg.data.load(false).unwrap();
        let model = run_cfg
            .model
            .resolve(splits.frames, splits.features, splits.labels.len())
            .unwrap();
        training::train(
            &model,
            &run_cfg.trainer,
            &splits,
            &dense,
            &device,
            &TrainOptions::default(),
        )
        .unwrap();
        let steps = splits.train.len().div_ceil(16);

        let cfg_path = d.join("prune.ron");
        let prune_cfg = |layer: &str| {
            format!(
                r#"(data: {data},
                trainer: (epochs: 2, batch_size: 16, warmup_epochs: 0, seed: 4, augment: false),
                pruning: (default: (sparsity: 0.5, block: 4),
                          layers: {{ "{layer}": (sparsity: 0.0, block: 4) }},
                          schedule: Agp(frequency: 1, steps: {steps})),
                out: "{}")"#,
                d.join("pruned").display()
            )
        };
        std::fs::write(&cfg_path, prune_cfg("embed")).unwrap();
        let args = |sweep: Option<Vec<f64>>| PruneArgs {
            checkpoint: dense.join(BEST_CHECKPOINT),
            config: cfg_path.clone(),
            data: None,
            out: None,
            sweep,
            backend: Backend::Flex,
            quiet: true,
        };
        run(args(Some(vec![0.5, 0.75]))).unwrap();
        let out = d.join("pruned");
        let points: Vec<SweepPoint> = pruning::report::read_json(&out.join(SWEEP_JSON)).unwrap();
        assert_eq!(points.len(), 3);
        assert!(points[0].sparsity < 1e-3 && points[1].sparsity < points[2].sparsity);
        assert!(
            std::fs::read_to_string(out.join(SWEEP_PLOT))
                .unwrap()
                .contains("<svg")
        );
        for sub in ["sparsity-50", "sparsity-75"] {
            for f in [
                PRUNED_CHECKPOINT,
                PRUNED_MASKS,
                REPORT_JSON,
                REPORT_TABLE,
                "model.ron",
                "data.ron",
                pruning::hook::PRUNING_SETTINGS_FILE,
            ] {
                assert!(out.join(sub).join(f).is_file(), "{sub}/{f} missing");
            }
            let (m, _) =
                training::load_checkpoint(&out.join(sub).join(PRUNED_CHECKPOINT), &device).unwrap();
            let r: PruneSummary =
                pruning::report::read_json(&out.join(sub).join(REPORT_JSON)).unwrap();
            assert_eq!(r.report, sparsity_report(&m, &plan_of(&r, &m)).unwrap());
            let fc1 = r
                .report
                .layers
                .iter()
                .find(|l| l.name == "blocks.0.mlp.fc1")
                .unwrap();
            let want = if sub.ends_with("50") { 0.5 } else { 0.75 };
            assert!(
                (fc1.sparsity - want).abs() < 1e-9,
                "{sub}: {}",
                fc1.sparsity
            );
        }

        // the sweep's runs are resumed only on the data they were trained on
        let other = PruneArgs {
            data: Some(d.join("words")),
            ..args(Some(vec![0.5, 0.75]))
        };
        let err = format!("{:#}", run(other).unwrap_err());
        assert!(
            err.contains("sparsity-50") && err.contains("other data settings"),
            "{err}"
        );

        std::fs::write(&cfg_path, prune_cfg("blocks.4.mlp.fc1")).unwrap();
        let err = format!("{:#}", run(args(None)).unwrap_err());
        assert!(
            err.contains("blocks.4.mlp.fc1") && err.contains("known layers"),
            "{err}"
        );
    }

    /// The plan a report was made with, rebuilt from the report's own targets and blocks.
    fn plan_of(r: &PruneSummary, m: &training::Kwt) -> PruningPlan {
        let layers = r
            .report
            .layers
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    pruning::LayerRule {
                        sparsity: l.target_sparsity,
                        block: l.block,
                    },
                )
            })
            .collect();
        PruningConfig {
            default: pruning::LayerRule {
                sparsity: 0.0,
                block: 4,
            },
            layers,
            score: pruning::Score::L1,
            schedule: pruning::Schedule::OneShot { step: 0 },
        }
        .plan(&kwt_layers(m))
        .unwrap()
    }

    #[test]
    fn schedule_longer_than_fine_tuning_and_bad_layers_are_errors() {
        let cfg = PruneRunConfig::load(&shipped("kwt_tiny_agp.ron")).unwrap();
        let m = KwtConfig::preset("kwt-tiny", 12)
            .unwrap()
            .init(0, &burn::tensor::Device::flex())
            .unwrap();
        let layers = kwt_layers(&m);
        let err = plan_for(&cfg.pruning, &layers, &cfg.trainer, 100)
            .unwrap_err()
            .to_string();
        assert!(err.contains("step 300") && err.contains("epochs"), "{err}");

        let text = std::fs::read_to_string(shipped("kwt_tiny_agp.ron")).unwrap();
        let bad =
            PruneRunConfig::parse(&text.replace("blocks.1.attn.qkv", "blocks.9.attn.qkv")).unwrap();
        let err = plan_for(&bad.pruning, &layers, &bad.trainer, 1900)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("blocks.9.attn.qkv") && err.contains("blocks.1.mlp.fc2"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            PruneRunConfig::parse(
                &text.replace("sparsity: 0.5, block: 4", "sparsity: 0.5, blok: 4")
            )
            .unwrap_err()
        );
        assert!(err.contains("blok"), "{err}");
    }
}
