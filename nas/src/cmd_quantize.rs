//! `nas quantize`: a trained float checkpoint to the integer-only int8 graph, by post-training
//! quantization (`--mode ptq`) or by TQT quantization-aware fine-tuning (`--mode qat`); a
//! TinyFormer path's checkpoint by post-training quantization ([`crate::quantize_tinyformer`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use quant::Graph;
use quant::ptq::{Estimator, GeluMethod, PtqOptions, PtqReport, evaluate_int8, quantize_kwt};
use training::{ConfusionMatrix, DataSpec, DataSplits, KwtConfig, TrainOptions};

use crate::backend::Backend;
use crate::cmd_eval::SpeechTask;
use crate::run_config::RunConfig;

#[derive(Args)]
pub struct QuantizeArgs {
    /// A `.bpk` checkpoint written by `nas train` (its `model.ron` beside it), or a TinyFormer
    /// path's (`best/model.bpk` of `nas search` or of `nas train` of a searched path: its
    /// `arch.ron` and `model.int8` beside it) with `--config` (its search or training config)
    /// or `--images`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The Speech Commands folder the model was trained on: calibration uses its training
    /// split (un-augmented), the comparison its test split. With `--config`: replaces the
    /// config's data folder.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The image set (Fashion-MNIST idx or CIFAR-10 binary folder) a TinyFormer path was
    /// trained on: calibration uses training images (standardized with the statistics of the
    /// `model.int8` beside the checkpoint), the comparison its test images. PTQ only.
    #[arg(long, conflicts_with_all = ["data", "config", "task"])]
    images: Option<PathBuf>,
    /// The run configuration (RON) the checkpoint was trained with: its data set, and for
    /// `--mode qat` (where it is required) its trainer settings (epochs and learning rate
    /// overridden below). For a TinyFormer path: the search config (or path training config)
    /// it came from, whose data (image or key-word, the same subsets and statistics) calibrate
    /// and score it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The task (without --config); default: the run's (`data.ron` beside the checkpoint),
    /// else labels12.
    #[arg(long, value_enum)]
    task: Option<SpeechTask>,
    /// `ptq`: calibrated power-of-two scales. `qat`: PTQ scales as the start, then TQT
    /// fine-tuning of weights and log2 thresholds.
    #[arg(long, value_enum, default_value = "ptq")]
    mode: Mode,
    /// Activation clipping estimator (for QAT: of the initial thresholds).
    #[arg(long, value_enum, default_value = "percentile")]
    estimator: EstimatorArg,
    /// Percentile of |x| kept unclipped with `--estimator percentile`.
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// One weight scale per tensor instead of per output channel: for PTQ `max|w| / 127`,
    /// for QAT a learned power-of-two threshold per tensor (TQT's original format; by default
    /// QAT rounds weights per channel at `max|w| / 127` as PTQ does).
    #[arg(long)]
    per_tensor: bool,
    /// The integer LayerNorm: I-BERT's (`ibert`, a KWT's default) or TinyFormer's
    /// Scaled-LayerNorm (`scaled`, a TinyFormer path's default, as its search quantized it).
    /// QAT's forward computes the chosen kernel, its INT16 saturations included.
    #[arg(long, value_enum)]
    layer_norm: Option<LayerNormArg>,
    /// Short for `--layer-norm scaled`.
    #[arg(long, conflicts_with = "layer_norm")]
    scaled_layer_norm: bool,
    /// How GELU's int8 table is made: `exact` (the erf GELU rounded once, the default) or
    /// `ibert` (I-BERT's i-GELU polynomial, up to 2 codes off); QAT's forward computes the
    /// chosen one. KWT only (a TinyFormer's MLP has ReLU).
    #[arg(long, value_enum)]
    gelu: Option<GeluArg>,
    /// Output step of every softmax, `2^-(8 + N)` with N in 0..=8, as uint8 codes: `auto` (the
    /// default, as `nas search` quantizes) takes each softmax's N of least squared error on its
    /// calibration probabilities (long attention rows, whose typical probability is below
    /// 2^-8, get finer steps); `0` is the 2^-8 of graphs before format 4. QAT's own graph
    /// always rounds at 2^-8 (its forward models that kernel); this sets its PTQ comparison.
    #[arg(long, default_value = "auto", value_parser = parse_softmax_shift)]
    softmax_shift: SoftmaxShift,
    /// Training samples observed for calibration; default 512 for a KWT, and for a
    /// TinyFormer path 256, as its search calibrated it.
    #[arg(long)]
    calibration_samples: Option<usize>,
    /// QAT fine-tuning epochs (0: lower QAT's starting point without training).
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// QAT peak learning rate (cosine decay to a hundredth, no warm-up).
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// QAT peak learning rate of the log2 thresholds (TQT trains them much faster than the
    /// weights).
    #[arg(long, default_value_t = 1e-2)]
    threshold_lr: f64,
    /// QAT learns the float checkpoint's softened outputs with this weight (soft-target
    /// distillation, the checkpoint as its own teacher) and the labels with the rest: the
    /// fine-tuning then pulls the quantized model towards the float one instead of refitting
    /// the training labels. 1 (the default): the float outputs alone; 0: the labels alone.
    #[arg(long, default_value_t = 1.0)]
    distill_weight: f64,
    /// Temperature of `--distill-weight`'s softened distributions.
    #[arg(long, default_value_t = 2.0)]
    distill_temperature: f64,
    /// Also fine-tune the float checkpoint with the same settings but no fake quantization
    /// (into `<out>.float-run`) and score it float and PTQ: the control that QAT's gain is
    /// measured against.
    #[arg(long)]
    float_control: bool,
    /// QAT run folder (checkpoints, curves); default `<out>.qat-run`. An interrupted QAT
    /// resumes there when the command is run again with the same settings; the default
    /// folder holding a run of other settings is replaced, a folder named here is not.
    #[arg(long)]
    qat_dir: Option<PathBuf>,
    /// Output integer graph; the report is written beside it (`.report.txt`, `.report.json`).
    #[arg(long)]
    out: PathBuf,
    /// Skip scoring float and int8 on the test split (and, with `--mode qat`, the comparison of
    /// the fine-tuned model with its integer graph there).
    #[arg(long)]
    no_eval: bool,
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    /// Hide the QAT progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Ptq,
    Qat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LayerNormArg {
    Ibert,
    Scaled,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GeluArg {
    Exact,
    Ibert,
}

/// `--softmax-shift`: `None` for `auto`.
#[derive(Debug, Clone, Copy)]
struct SoftmaxShift(Option<u32>);

fn parse_softmax_shift(s: &str) -> std::result::Result<SoftmaxShift, String> {
    let max = quant::ibert::SOFTMAX_MAX_OUT_SHIFT;
    if s == "auto" {
        return Ok(SoftmaxShift(None));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= max => Ok(SoftmaxShift(Some(n))),
        _ => Err(format!(
            "expected `auto` or a number in 0..={max}, found `{s}`"
        )),
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EstimatorArg {
    Minmax,
    Percentile,
    Mse,
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    let device = args.backend.device()?;
    let tinyformer = crate::quantize_tinyformer::is_tinyformer_path(&args.checkpoint);
    if tinyformer || args.images.is_some() {
        return run_tinyformer(&args, tinyformer, device);
    }
    if matches!(args.mode, Mode::Qat) && args.config.is_none() {
        bail!(
            "--mode qat needs --config: the run configuration the checkpoint was trained with \
             (its data and trainer settings)"
        );
    }
    let (model, config) = training::load_checkpoint(&args.checkpoint, &device)?;
    let run_config = args.config.as_deref().map(RunConfig::load).transpose()?;
    // QAT's settings are checked before calibrating.
    let qat_trainer = match (&args.mode, &run_config) {
        (Mode::Qat, Some(rc)) => Some(qat_trainer(&args, rc)?),
        _ => None,
    };
    create_out_folder(&args.out)?;
    let (data, data_name, data_spec) = load_data(&args, run_config.as_ref())?;
    crate::cmd_eval::check_shapes(&args.checkpoint, &config, &data_name, &data)?;
    let opts = ptq_options(&args, LayerNormArg::Ibert, 512);
    let samples =
        training::data::evenly_spaced_samples(data.train.as_ref(), opts.calibration_samples)?;
    tracing::info!(samples = samples.len(), estimator = %opts.estimator, "calibrating");
    let (ptq_graph, ptq_report) = quantize_kwt(&model, &config, &samples, &opts)
        .with_context(|| format!("quantizing {}", args.checkpoint.display()))?;
    let (graph, report, qat_scores) = match args.mode {
        Mode::Ptq => (ptq_graph.clone(), ptq_report, None),
        Mode::Qat => {
            let trainer = qat_trainer.context("--mode qat needs --config")?;
            let done = if args.epochs == 0 {
                qat_untrained(&model, &config, &data, &samples, &opts, &device)?
            } else {
                // PTQ's graph holds the calibration QAT starts from: no second pass
                let initial =
                    quant::qat::initial_thresholds_from_graph(&model, &config, &ptq_graph)
                        .context("reading QAT's initial thresholds off the PTQ graph")?;
                qat(
                    &args, &trainer, &config, &data, &data_spec, &samples, &opts, initial,
                )?
            };
            (
                done.graph,
                done.report,
                Some((done.fake_quant_acc, done.int8_test)),
            )
        }
    };
    write_outputs(&args.out, &graph, &report)?;
    write_data_spec(&args.out, &data_spec)?;
    if !args.no_eval {
        let float = training::evaluate(
            &model,
            data.test.as_ref(),
            &data.labels,
            data.frames,
            data.features,
            256,
            &device,
        )?;
        let ptq = evaluate_int8(&ptq_graph, data.test.as_ref(), &data.labels)?;
        let pct = |a: f64| 100.0 * a;
        print!(
            "test accuracy on {} clips: float {:.2}%, int8 (PTQ) {:.2}% ({:+.2} points)",
            ptq.total(),
            pct(float.accuracy()),
            pct(ptq.accuracy()),
            pct(ptq.accuracy() - float.accuracy()),
        );
        if let Some((fake, int8_test)) = qat_scores {
            let qat = match int8_test {
                Some(scored) => scored,
                None => evaluate_int8(&graph, data.test.as_ref(), &data.labels)?,
            };
            print!(
                ", int8 (QAT) {:.2}% ({:+.2} points; fake-quantized Burn model {:.2}%)",
                pct(qat.accuracy()),
                pct(qat.accuracy() - float.accuracy()),
                pct(fake)
            );
        }
        println!();
    }
    Ok(())
}

/// `out`'s folder, made before the minutes of calibration rather than failed after.
pub(crate) fn create_out_folder(out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the folder of --out {}", out.display()))?;
    }
    Ok(())
}

/// The PTQ options the arguments choose, with `default_norm` unless a LayerNorm is named and
/// `default_samples` calibration samples unless a number is given.
fn ptq_options(
    args: &QuantizeArgs,
    default_norm: LayerNormArg,
    default_samples: usize,
) -> PtqOptions {
    let norm = if args.scaled_layer_norm {
        LayerNormArg::Scaled
    } else {
        args.layer_norm.unwrap_or(default_norm)
    };
    PtqOptions {
        estimator: match args.estimator {
            EstimatorArg::Minmax => Estimator::MinMax,
            EstimatorArg::Percentile => Estimator::Percentile(args.percentile),
            EstimatorArg::Mse => Estimator::Mse,
        },
        per_channel: !args.per_tensor,
        scaled_layer_norm: norm == LayerNormArg::Scaled,
        gelu: match args.gelu.unwrap_or(GeluArg::Exact) {
            GeluArg::Exact => GeluMethod::Exact,
            GeluArg::Ibert => GeluMethod::IBert,
        },
        calibration_samples: args.calibration_samples.unwrap_or(default_samples),
        softmax_out_shift: args.softmax_shift.0,
        ..PtqOptions::default()
    }
}

/// `nas quantize` of a TinyFormer path (`is_path`: its `arch.ron` is beside the checkpoint).
fn run_tinyformer(args: &QuantizeArgs, is_path: bool, device: burn::tensor::Device) -> Result<()> {
    use crate::quantize_tinyformer::TinyFormerData;
    let checkpoint = args.checkpoint.display();
    if !is_path {
        let kwt = args.checkpoint.with_file_name("model.ron").is_file();
        bail!(
            "--images quantizes a TinyFormer path's checkpoint (a search's best/model.bpk, its \
             arch.ron beside it); {checkpoint} {}: use --data or --config",
            if kwt {
                "is a KWT's (its model.ron is beside it)"
            } else {
                "has no arch.ron beside it"
            }
        );
    }
    if args.data.is_some() || args.task.is_some() {
        bail!(
            "{checkpoint} is a TinyFormer path: its data come from --config (the search config, \
             or the path training config, it was found or trained with; key-word models too) or \
             --images (a whole Fashion-MNIST or CIFAR-10 folder), not --data/--task"
        );
    }
    let data = match (&args.images, &args.config) {
        (Some(dir), _) => TinyFormerData::Images(dir),
        (None, Some(config)) => TinyFormerData::Config(config),
        (None, None) => bail!(
            "{checkpoint} is a TinyFormer path: give --config FILE.ron (the search config, or the \
             path training config, it was found or trained with) or --images DIR (the \
             Fashion-MNIST or CIFAR-10 folder it was trained on)"
        ),
    };
    if matches!(args.mode, Mode::Qat) {
        bail!(
            "--mode qat fine-tunes KWT checkpoints; a TinyFormer path ({checkpoint}) is quantized \
             by PTQ (--mode ptq)"
        );
    }
    if args.gelu.is_some() {
        bail!("--gelu: a TinyFormer path has no GELU (its MLPs use ReLU)");
    }
    crate::quantize_tinyformer::run(crate::quantize_tinyformer::TinyFormerQuantize {
        checkpoint: &args.checkpoint,
        data,
        out: &args.out,
        opts: ptq_options(args, LayerNormArg::Scaled, search::run::CALIBRATION_IMAGES),
        no_eval: args.no_eval,
        device,
    })
}

/// The data set: the run config's (its folder replaced by `--data` when given), else the
/// Speech Commands folder `--data`. Returns the splits and a name for messages.
fn load_data(
    args: &QuantizeArgs,
    run: Option<&RunConfig>,
) -> Result<(DataSplits, PathBuf, DataSpec)> {
    match (run, &args.data) {
        (Some(run), data) => {
            let spec = match data {
                Some(dir) => run.data.clone().with_folder(dir.clone()),
                None => run.data.clone(),
            };
            // QAT trains on it: keep the config's augmentation (calibration and scoring
            // read samples un-augmented either way).
            let augment = matches!(args.mode, Mode::Qat) && run.trainer.augment;
            let name = args.config.clone().unwrap_or_default();
            Ok((spec.load(augment)?, name, spec))
        }
        (None, Some(dir)) => {
            let spec = crate::cmd_eval::data_spec(Some(&args.checkpoint), dir, args.task)?;
            Ok((spec.load(false)?, dir.clone(), spec))
        }
        (None, None) => bail!(
            "give --data DIR (the Speech Commands folder the checkpoint was trained on) or \
             --config FILE (its run configuration)"
        ),
    }
}

/// Writes the data settings the graph was scored with beside it (`data.ron`), so that
/// `nas eval --int8` reads the same silence crops and unknown clips as the float model did;
/// a different `data.ron` already there (another run's) is left as it is, with a warning.
fn write_data_spec(out: &Path, spec: &DataSpec) -> Result<()> {
    let path = DataSpec::path_beside(out);
    // The folder is whatever `--data` names at scoring time: compare the settings only.
    let settings = |s: &DataSpec| s.clone().with_folder(PathBuf::new());
    match DataSpec::beside(out)? {
        None => training::checkpoint::write_ron(&path, spec)?,
        Some(there) if settings(&there) == settings(spec) => {}
        Some(_) => tracing::warn!(
            "{} holds other data settings than {} was scored with: `nas eval --int8` will \
             read the data with those",
            path.display(),
            out.display()
        ),
    }
    Ok(())
}

/// The trainer of a QAT run: the run config's, with QAT's epochs, learning rate and
/// distillation.
fn qat_trainer(args: &QuantizeArgs, run: &RunConfig) -> Result<training::TrainerConfig> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(args.lr) || !positive(args.threshold_lr) {
        bail!("--lr and --threshold-lr must be positive");
    }
    let trainer = training::TrainerConfig {
        epochs: args.epochs,
        learning_rate: args.lr,
        final_learning_rate: args.lr / 100.0,
        warmup_epochs: 0,
        distillation: (args.distill_weight > 0.0).then(|| training::DistillationConfig {
            teacher: args.checkpoint.clone(),
            targets: training::DistillTargets::Soft {
                temperature: args.distill_temperature,
                weight: args.distill_weight,
            },
        }),
        ..run.trainer.clone()
    };
    trainer
        .validate()
        .context("--distill-weight must be in [0, 1] and --distill-temperature positive")?;
    Ok(trainer)
}

/// What a QAT mode hands back to the scoring in [`run`].
struct QatDone {
    /// The integer graph at the learned scales, and its report.
    graph: Graph,
    report: PtqReport,
    /// The fake-quantized model's test accuracy.
    fake_quant_acc: f64,
    /// The graph on the test split, when the fidelity check already ran it.
    int8_test: Option<ConfusionMatrix>,
}

/// TQT fine-tuning from the checkpoint, lowered; unless `--no-eval`, the fine-tuned model and
/// its graph compared on the test split.
#[allow(clippy::too_many_arguments)]
fn qat(
    args: &QuantizeArgs,
    trainer: &training::TrainerConfig,
    config: &KwtConfig,
    data: &DataSplits,
    data_spec: &DataSpec,
    samples: &[Vec<f32>],
    opts: &PtqOptions,
    initial: BTreeMap<String, f32>,
) -> Result<QatDone> {
    let (dir, ours) = match &args.qat_dir {
        Some(d) => (d.clone(), false),
        None => (sibling(&args.out, "qat-run"), true),
    };
    let device = args.backend.device()?;
    let options = TrainOptions {
        progress: !args.quiet,
        ..Default::default()
    };
    tracing::info!(
        epochs = trainer.epochs,
        lr = trainer.learning_rate,
        distill_weight = args.distill_weight,
        "QAT fine-tuning into {}",
        dir.display()
    );
    let run = in_run_folder(&dir, ours, data_spec, |dir| {
        quant::qat::quantize_kwt_qat(
            &args.checkpoint,
            trainer,
            data,
            dir,
            &device,
            &options,
            samples,
            &quant::qat::QatOptions {
                ptq: opts.clone(),
                threshold_lr_gain: (args.threshold_lr / args.lr) as f32,
                initial: Some(initial.clone()),
            },
        )
        .with_context(|| format!("QAT of {}", args.checkpoint.display()))
    })?;
    if &run.config != config {
        bail!("the checkpoint changed during QAT");
    }
    let moved = run
        .initial
        .iter()
        .filter(|(k, v)| run.learned.get(*k).is_some_and(|l| l != *v))
        .count();
    // Only ceil(log2 t) reaches the integer graph.
    let rescaled = run
        .initial
        .iter()
        .filter(|(k, v)| run.learned.get(*k).is_some_and(|l| l.ceil() != v.ceil()))
        .count();
    if run.kept_start {
        println!(
            "QAT: {} steps; no epoch beat the starting point's validation accuracy {:.2}% \
             (best {:.2}% at epoch {}), so the starting point (PTQ's rounding at the initial \
             thresholds) is lowered",
            run.summary.steps,
            100.0 * run.start_valid_acc,
            100.0 * run.summary.best_valid_acc,
            run.summary.best_epoch + 1,
        );
    } else {
        println!(
            "QAT: {} steps (best epoch {}, validation {:.2}% from {:.2}% at the start), {moved} of {} log2 thresholds moved, {rescaled} power-of-two scales changed",
            run.summary.steps,
            run.summary.best_epoch + 1,
            100.0 * run.summary.best_valid_acc,
            100.0 * run.start_valid_acc,
            run.initial.len()
        );
    }
    let score = if args.no_eval {
        None
    } else {
        let test = data.test.as_ref();
        let batch = trainer.eval_batch_size;
        let s =
            quant::qat::graph_fidelity(&run.model, config, &run.graph, test, &data.labels, batch)
                .context("comparing QAT's model with its integer graph")?;
        let f = &s.fidelity;
        println!(
            "QAT's fake-quantized model vs the integer graph on {} test samples: logits SNR \
             {:.1} dB, same class on {:.2}%",
            f.samples,
            f.logits_snr_db,
            100.0 * f.argmax_agreement
        );
        Some(s)
    };
    let thresholds = serde_json::json!({
        "graph_fidelity": score.as_ref().map(|s| s.fidelity),
        "initial_log2_threshold": run.initial,
        "learned_log2_threshold": run.learned,
        "fake_quant_test_acc": run.fake_quant_test_acc,
        "start_valid_acc": run.start_valid_acc,
        "kept_start": run.kept_start,
        "steps": run.summary.steps,
        "distillation": trainer.distillation.as_ref().map(|d| d.targets),
        // what the fine-tuned forward modelled: the graph's weight format, LayerNorm and GELU
        "format": run.model.qat.as_ref().map(|q| q.format()),
    });
    write(
        &sibling(&args.out, "qat.json"),
        &serde_json::to_string_pretty(&thresholds)?,
    )?;
    if args.float_control {
        float_control(
            args, trainer, config, data, data_spec, samples, opts, &device, &options,
        )?;
    }
    Ok(QatDone {
        graph: run.graph,
        report: run.report,
        fake_quant_acc: run.fake_quant_test_acc,
        int8_test: score.map(|s| s.int8),
    })
}

/// Runs `job` in the run folder `dir` on the data `data`: an interrupted run of the same
/// settings there resumes (a finished one reports again). A folder of ours (`ours`) that holds
/// a run of other settings is emptied and the job starts afresh; a folder the user named is
/// left alone and the mismatch reported.
fn in_run_folder<T>(
    dir: &Path,
    ours: bool,
    data: &DataSpec,
    job: impl Fn(&Path) -> Result<T>,
) -> Result<T> {
    let attempt = || -> Result<T> {
        data.check_resumable(dir)?;
        data.write_into(dir)?;
        job(dir)
    };
    match attempt() {
        Err(e) if ours && is_run_mismatch(&e) => {
            tracing::info!("{e:#}: starting afresh in {}", dir.display());
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
            attempt()
        }
        other => other,
    }
}

/// Whether `e` says a run folder holds a run of other settings.
fn is_run_mismatch(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let training = match cause.downcast_ref::<quant::ptq::PtqError>() {
            Some(quant::ptq::PtqError::Training(t)) => Some(&**t),
            _ => cause.downcast_ref::<training::TrainingError>(),
        };
        matches!(training, Some(training::TrainingError::RunMismatch { .. }))
    })
}

/// `--float-control`: the QAT fine-tuning without fake quantization, scored float and PTQ.
#[allow(clippy::too_many_arguments)]
fn float_control(
    args: &QuantizeArgs,
    trainer: &training::TrainerConfig,
    config: &KwtConfig,
    data: &DataSplits,
    data_spec: &DataSpec,
    samples: &[Vec<f32>],
    opts: &PtqOptions,
    device: &burn::tensor::Device,
    options: &TrainOptions,
) -> Result<()> {
    let dir = sibling(&args.out, "float-run");
    tracing::info!("float control fine-tuning into {}", dir.display());
    let (tuned, summary) = in_run_folder(&dir, true, data_spec, |dir| {
        Ok(quant::qat::fine_tune_float(
            &args.checkpoint,
            trainer,
            data,
            dir,
            device,
            options,
        )?)
    })?;
    let (graph, _) = quantize_kwt(&tuned, config, samples, opts)?;
    let int8 = evaluate_int8(&graph, data.test.as_ref(), &data.labels)?;
    println!(
        "float control ({} steps, best epoch {}): float {:.2}%, int8 (PTQ) {:.2}%",
        summary.steps,
        summary.best_epoch + 1,
        100.0 * summary.test_acc,
        100.0 * int8.accuracy()
    );
    Ok(())
}

/// `--epochs 0`: QAT's starting point (PTQ thresholds; weights per channel, or with
/// `--per-tensor` at power-of-two per-tensor scales) lowered without training; the accuracy
/// is the fake-quantized model's.
fn qat_untrained(
    model: &training::Kwt,
    config: &KwtConfig,
    data: &DataSplits,
    samples: &[Vec<f32>],
    opts: &PtqOptions,
    device: &burn::tensor::Device,
) -> Result<QatDone> {
    let (quantized, graph, report) =
        quant::qat::quantize_kwt_untrained(model, config, samples, opts)?;
    let fake = training::evaluate(
        &quantized,
        data.test.as_ref(),
        &data.labels,
        data.frames,
        data.features,
        256,
        device,
    )?;
    println!("QAT: 0 epochs, the initial thresholds lowered as they are");
    Ok(QatDone {
        graph,
        report,
        fake_quant_acc: fake.accuracy(),
        int8_test: None,
    })
}

pub(crate) fn write_outputs(out: &Path, graph: &Graph, report: &PtqReport) -> Result<()> {
    quant::save(graph, out).with_context(|| format!("writing {}", out.display()))?;
    let table = report.to_table();
    write(&sibling(out, "report.txt"), &table)?;
    write(
        &sibling(out, "report.json"),
        &serde_json::to_string_pretty(report)?,
    )?;
    println!("{table}");
    if let Some(worst) = report.worst_layer() {
        println!("lowest SNR: {} ({:.1} dB)", worst.name, worst.snr_db);
    }
    println!(
        "integer graph {} ({} nodes)",
        out.display(),
        graph.nodes.len()
    );
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
