//! The training loop: AdamW, warm-up + cosine, label smoothing, optional distillation,
//! validation every epoch, best and last checkpoints, and resume with nothing lost.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    self, MODEL_CONFIG_FILE, load_checkpoint, read_ron, save_model, write_ron,
};
use crate::config::{DistillTargets, TrainerConfig};
use crate::data::{DataSplits, SampleSource, make_batch};
use crate::error::TrainingError;
use crate::feature_norm::{FeatureNorm, feature_stats};
use crate::history::EpochRecord;
use crate::kwt::{Kwt, KwtConfig};
use crate::loss::{hard_distillation_loss, smoothed_cross_entropy, soft_distillation_loss};
use crate::metrics::ConfusionMatrix;
use crate::plot::plot_training_curves;
use crate::schedule::WarmupCosine;

pub const STATE_FILE: &str = "state.json";
/// The resumable checkpoint of step N is `last-N.bpk` with its optimizer state in
/// `last_optim-N.bpk`; `state.json` names the pair in force (see [`last_checkpoint`]).
pub const LAST_KIND: &str = "last";
pub const OPTIMIZER_KIND: &str = "last_optim";
/// The names of run folders written before checkpoints carried their step.
const LEGACY_LAST_CHECKPOINT: &str = "last.bpk";
const LEGACY_LAST_OPTIMIZER: &str = "last_optim.bpk";
pub const BEST_CHECKPOINT: &str = "best.bpk";
pub const SUMMARY_FILE: &str = "summary.json";
pub const CURVES_FILE: &str = "curves.svg";
pub const TRAINER_CONFIG_FILE: &str = "trainer.ron";

/// Trainer settings a resumed run may change: they decide how often a checkpoint is written
/// and how many samples are evaluated at once, not what is learned.
const RESUME_FREE_SETTINGS: &[&str] = &["checkpoint_every_steps", "eval_batch_size"];

/// Run-time switches that are not part of the experiment's definition.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Show a progress bar (it is hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Stop (after writing a checkpoint) once this many optimizer steps have been taken in
    /// total, as an interruption would; the next call resumes from there.
    pub stop_after_steps: Option<usize>,
    /// Draw the epoch bar inside this group (a caller with its own bar, e.g. a search).
    pub bars: Option<MultiProgress>,
}

/// What a [`StepHook`] learns when training starts.
pub struct HookStart<'a> {
    /// The run folder (checkpoints, `state.json`); a hook keeps its own state beside them.
    pub out: &'a Path,
    /// The (autodiff) device the model trains on.
    pub device: &'a Device,
    /// `Some(global_step)` when an interrupted run resumes from the checkpoint of that step.
    pub resumed_at: Option<usize>,
}

/// Extension point of [`train_with_hook`]: it may rewrite the model after every optimizer step
/// (pruning masks, ...) and keeps its state with the run's checkpoints.
pub trait StepHook {
    /// The module structure this hook trains, built on a freshly initialised `model`: a
    /// resumed run's checkpoint is loaded into it (a QAT hook attaches its quantizers, whose
    /// learned thresholds the checkpoint holds).
    fn structure(&self, model: Kwt) -> Result<Kwt, TrainingError> {
        Ok(model)
    }

    /// Called once before the first step. On a fresh run `model` is freshly initialised and
    /// may be replaced (a fine-tuning hook returns pretrained weights); on resume it is the
    /// model of the checkpoint of step `resumed_at`.
    fn on_start(&mut self, model: Kwt, start: &HookStart<'_>) -> Result<Kwt, TrainingError> {
        let _ = start;
        Ok(model)
    }

    /// Called after every optimizer step; `global_step` counts the steps taken, this one
    /// included.
    fn after_step(&mut self, model: Kwt, global_step: usize) -> Result<Kwt, TrainingError>;

    /// Called each time the resumable checkpoint of step `global_step` is written into
    /// `out`, before `state.json` (which marks the checkpoint complete). Name the files by
    /// the step (`checkpoint::step_file`): a run killed before its state is written resumes
    /// from the previous step, whose files must still be there.
    fn save(&self, out: &Path, global_step: usize) -> Result<(), TrainingError> {
        let _ = (out, global_step);
        Ok(())
    }

    /// Called once `state.json` names the checkpoint of `global_step`: the hook's files of
    /// earlier steps may go.
    fn committed(&self, out: &Path, global_step: usize) -> Result<(), TrainingError> {
        let _ = (out, global_step);
        Ok(())
    }

    /// Whether the model after `global_step` steps may become the best checkpoint (a
    /// pruning hook allows it only once the final sparsity is reached).
    fn may_be_best(&self, global_step: usize) -> bool {
        let _ = global_step;
        true
    }
}

/// The hook of plain training: does nothing.
struct NoHook;

impl StepHook for NoHook {
    fn after_step(&mut self, model: Kwt, _global_step: usize) -> Result<Kwt, TrainingError> {
        Ok(model)
    }
}

/// Where a run stands; written after every checkpoint so a restart continues exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub global_step: usize,
    pub epoch_loss_sum: f64,
    pub epoch_correct: u64,
    pub epoch_seen: u64,
    pub best_valid_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub history: Vec<EpochRecord>,
    /// The file names (in the run folder) of the model and optimizer state of
    /// `global_step`; absent in run folders from before checkpoints carried their step,
    /// which hold `last.bpk` and `last_optim.bpk`.
    #[serde(default)]
    pub last_checkpoint: Option<String>,
    #[serde(default)]
    pub last_optimizer: Option<String>,
}

impl RunState {
    /// Reads the `state.json` of run folder `out`.
    pub fn read(out: &Path) -> Result<Self, TrainingError> {
        let path = out.join(STATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| TrainingError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| TrainingError::Parse {
            path,
            message: e.to_string(),
        })
    }

    fn last_files(&self, out: &Path) -> (PathBuf, PathBuf) {
        (
            out.join(
                self.last_checkpoint
                    .as_deref()
                    .unwrap_or(LEGACY_LAST_CHECKPOINT),
            ),
            out.join(
                self.last_optimizer
                    .as_deref()
                    .unwrap_or(LEGACY_LAST_OPTIMIZER),
            ),
        )
    }
}

/// The newest resumable checkpoint of run folder `out`: the one its `state.json` names.
pub fn last_checkpoint(out: &Path) -> Result<PathBuf, TrainingError> {
    Ok(RunState::read(out)?.last_files(out).0)
}

/// Writes the resumable checkpoint of `state.global_step`: the hook's state and the
/// step-named model and optimizer files, then `state.json` naming them, then removes what
/// the previous state named. A kill at any point leaves a state whose files all exist.
fn save_last(
    out: &Path,
    model: &Kwt,
    optim: &ModuleOptimizer,
    state: &mut RunState,
    hook: &dyn StepHook,
) -> Result<(), TrainingError> {
    let started = std::time::Instant::now();
    let step = state.global_step;
    hook.save(out, step)?;
    let model_file = checkpoint::step_file(out, LAST_KIND, step, "bpk");
    let optim_file = checkpoint::step_file(out, OPTIMIZER_KIND, step, "bpk");
    save_model(model, &model_file)?;
    checkpoint::save_optimizer(optim, &optim_file)?;
    state.last_checkpoint = Some(format!("{LAST_KIND}-{step}.bpk"));
    state.last_optimizer = Some(format!("{OPTIMIZER_KIND}-{step}.bpk"));
    let state_path = out.join(STATE_FILE);
    let json =
        serde_json::to_vec_pretty(state).map_err(|e| TrainingError::checkpoint(&state_path, e))?;
    checkpoint::write_atomic(&state_path, &json)?;
    checkpoint::remove_stale_step_files(
        out,
        &[
            (LAST_KIND, "bpk", Some(step)),
            (OPTIMIZER_KIND, "bpk", Some(step)),
        ],
    )?;
    for legacy in [LEGACY_LAST_CHECKPOINT, LEGACY_LAST_OPTIMIZER] {
        checkpoint::remove_if_present(&out.join(legacy))?;
    }
    checkpoint::log_written(
        &out.display().to_string(),
        step,
        started,
        &[&model_file, &optim_file, &state_path],
    );
    hook.committed(out, step)
}

/// What a finished run reports; also written as `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub model: KwtConfig,
    pub parameters: usize,
    pub epochs: usize,
    pub steps: usize,
    pub best_epoch: usize,
    pub best_valid_acc: f64,
    pub test_acc: f64,
    pub test_confusion: ConfusionMatrix,
    pub train_seconds: f64,
    pub history: Vec<EpochRecord>,
    pub best_checkpoint: PathBuf,
}

/// The end of a call to [`train`].
#[derive(Debug)]
pub enum TrainOutcome {
    Finished(Box<RunSummary>),
    /// Stopped by [`TrainOptions::stop_after_steps`]; the run folder holds the state to resume.
    Interrupted {
        global_step: usize,
    },
}

/// Optimizer steps of one epoch over `samples` in batches of `batch`.
pub fn steps_per_epoch(samples: usize, batch: usize) -> usize {
    // The last, smaller batch is kept: no training sample is silently dropped.
    samples.div_ceil(batch)
}

/// Seed of a (seed, epoch, step) triple: independent streams for shuffling and augmentation.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}

fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(mix(
        seed,
        epoch as u64,
        u64::MAX,
    )));
    order
}

/// The true and predicted class of every sample of `source` (no augmentation), in order.
pub fn classify(
    model: &Kwt,
    source: &dyn SampleSource,
    frames: usize,
    features: usize,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<(usize, usize)>, TrainingError> {
    let mut pairs = Vec::with_capacity(source.len());
    let indices: Vec<usize> = (0..source.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = make_batch(source, chunk, frames, features, None)?;
        let predicted = predict(model, batch.inputs(device));
        pairs.extend(batch.labels.iter().copied().zip(predicted));
    }
    Ok(pairs)
}

/// Classifies every sample of `source` (no augmentation) and returns the confusion matrix.
pub fn evaluate(
    model: &Kwt,
    source: &dyn SampleSource,
    labels: &[String],
    frames: usize,
    features: usize,
    batch_size: usize,
    device: &Device,
) -> Result<ConfusionMatrix, TrainingError> {
    let pairs = classify(model, source, frames, features, batch_size, device)?;
    ConfusionMatrix::from_pairs(labels.to_vec(), &pairs).map_err(|(truth, pred)| {
        TrainingError::Data(format!(
            "label {truth} or prediction {pred} outside the {} classes",
            labels.len()
        ))
    })
}

/// Arg-max class of each row of the model's inference logits.
pub fn predict(model: &Kwt, inputs: Tensor<3>) -> Vec<usize> {
    let [batch, _, _] = inputs.dims();
    model
        .forward(inputs)
        .logits()
        .argmax(1)
        .reshape([batch])
        .into_data()
        .iter::<i64>()
        .map(|v| v as usize)
        .collect()
}

/// What a teacher says about one batch.
#[derive(Debug, Clone)]
pub enum TeacherTargets {
    /// Its arg-max classes (KWT Eq. 6).
    Labels(Tensor<1, Int>),
    /// Its inference logits, learned as softened distributions.
    Soft {
        logits: Tensor<2>,
        temperature: f64,
        weight: f64,
    },
}

impl TeacherTargets {
    /// The rows `range` of the batch (one shard's).
    fn slice(&self, range: std::ops::Range<usize>) -> Self {
        match self {
            Self::Labels(t) => Self::Labels(t.clone().slice(range)),
            Self::Soft {
                logits,
                temperature,
                weight,
            } => Self::Soft {
                logits: logits.clone().slice(range),
                temperature: *temperature,
                weight: *weight,
            },
        }
    }
}

/// Forward and loss of one batch (or one shard of it): the loss (with the teacher's targets
/// when given) and how many samples the model classified correctly.
fn batch_loss(
    model: &Kwt,
    inputs: Tensor<3>,
    targets: Tensor<1, Int>,
    teacher: Option<TeacherTargets>,
    label_smoothing: f64,
) -> (Tensor<1>, u64) {
    let out = model.forward(inputs);
    let class = out.class.clone();
    let distill = || out.distill.clone().unwrap_or_else(|| class.clone());
    let loss = match teacher {
        Some(TeacherTargets::Labels(teacher)) => hard_distillation_loss(
            class.clone(),
            distill(),
            targets.clone(),
            teacher,
            label_smoothing,
        ),
        Some(TeacherTargets::Soft {
            logits,
            temperature,
            weight,
        }) => soft_distillation_loss(
            class.clone(),
            distill(),
            targets.clone(),
            logits,
            label_smoothing,
            temperature,
            weight,
        ),
        None => smoothed_cross_entropy(class.clone(), targets.clone(), label_smoothing),
    };
    (loss, crate::metrics::count_correct(out.logits(), targets))
}

/// One optimizer step on a batch: forward, loss (with the teacher's targets when given),
/// backward, AdamW update. Returns the updated model, the loss and how many
/// samples of the batch the model classified correctly before the update.
///
/// With `shards` > 1 the batch is trained in that many parts on their own threads
/// ([`crate::shards::sharded_grads`]).
#[allow(clippy::too_many_arguments)]
pub fn optimizer_step(
    model: Kwt,
    optim: &mut ModuleOptimizer,
    inputs: Tensor<3>,
    targets: Tensor<1, Int>,
    teacher_targets: Option<TeacherTargets>,
    lr: f64,
    label_smoothing: f64,
    shards: usize,
) -> (Kwt, f32, u64) {
    let [b, _, _] = inputs.dims();
    let device = inputs.device();
    let (grads, loss_value, correct) =
        crate::shards::sharded_grads(&model, &device, b, shards, |m, r| {
            let t = teacher_targets.as_ref().map(|t| t.slice(r.clone()));
            batch_loss(
                m,
                inputs.clone().slice(r.clone()),
                targets.clone().slice(r),
                t,
                label_smoothing,
            )
        });
    (optim.step(lr, model, grads), loss_value, correct)
}

struct Teacher {
    model: Kwt,
    device: Device,
    targets: DistillTargets,
}

impl Teacher {
    /// The teacher's targets for a batch, on `device`.
    fn targets(&self, batch: &crate::data::Batch, device: &Device) -> TeacherTargets {
        let inputs = batch.inputs(&self.device);
        match self.targets {
            DistillTargets::Hard => {
                let labels: Vec<i64> = predict(&self.model, inputs)
                    .into_iter()
                    .map(|v| v as i64)
                    .collect();
                let n = labels.len();
                TeacherTargets::Labels(Tensor::from_data(TensorData::new(labels, [n]), device))
            }
            DistillTargets::Soft {
                temperature,
                weight,
            } => {
                let logits = self.model.forward(inputs).logits().into_data();
                TeacherTargets::Soft {
                    logits: Tensor::from_data(logits, device),
                    temperature,
                    weight,
                }
            }
        }
    }
}

fn load_teacher(
    cfg: &TrainerConfig,
    student: &KwtConfig,
    device: &Device,
) -> Result<Option<Teacher>, TrainingError> {
    let Some(d) = &cfg.distillation else {
        return Ok(None);
    };
    let plain = device.clone().without_autodiff();
    let (model, teacher_cfg) = load_checkpoint(&d.teacher, &plain)?;
    if teacher_cfg.classes != student.classes
        || teacher_cfg.frames != student.frames
        || teacher_cfg.features != student.features
    {
        return Err(TrainingError::checkpoint(
            &d.teacher,
            format!(
                "teacher takes {}x{} inputs into {} classes, the student {}x{} into {}",
                teacher_cfg.frames,
                teacher_cfg.features,
                teacher_cfg.classes,
                student.frames,
                student.features,
                student.classes
            ),
        ));
    }
    Ok(Some(Teacher {
        model: model.valid(),
        device: plain,
        targets: d.targets,
    }))
}

fn check_data(model: &KwtConfig, data: &DataSplits) -> Result<(), TrainingError> {
    if model.frames != data.frames || model.features != data.features {
        return Err(TrainingError::Data(format!(
            "the data gives {}x{} feature matrices, the model expects {}x{}",
            data.frames, data.features, model.frames, model.features
        )));
    }
    if model.classes != data.labels.len() {
        return Err(TrainingError::Data(format!(
            "the data has {} labels, the model {} classes",
            data.labels.len(),
            model.classes
        )));
    }
    for (name, split) in [
        ("train", &data.train),
        ("validation", &data.valid),
        ("test", &data.test),
    ] {
        if split.is_empty() {
            return Err(TrainingError::Data(format!("the {name} split is empty")));
        }
    }
    Ok(())
}

/// Training samples that set the model's input standardization.
const NORM_SAMPLES: usize = 2048;

/// Trains `model_cfg` on `data`, writing everything into `out`. If `out` already holds the
/// state of an interrupted run of the same model, training continues from there.
pub fn train(
    model_cfg: &KwtConfig,
    cfg: &TrainerConfig,
    data: &DataSplits,
    out: &Path,
    device: &Device,
    options: &TrainOptions,
) -> Result<TrainOutcome, TrainingError> {
    train_with_hook(model_cfg, cfg, data, out, device, options, &mut NoHook)
}

/// [`train`] with a [`StepHook`] called after every optimizer step.
pub fn train_with_hook(
    model_cfg: &KwtConfig,
    cfg: &TrainerConfig,
    data: &DataSplits,
    out: &Path,
    device: &Device,
    options: &TrainOptions,
    hook: &mut dyn StepHook,
) -> Result<TrainOutcome, TrainingError> {
    cfg.validate()?;
    model_cfg.validate()?;
    if cfg.batch_shards > 1 && model_cfg.dropout > 0.0 {
        // the shards would draw their dropout masks from the backend's one generator in
        // whatever order their threads run: not reproducible from the seed
        return Err(TrainingError::InvalidConfig(format!(
            "`batch_shards` {} needs the model's `dropout` at 0 (it is {}): dropout masks drawn \
             on several threads would not be reproducible; use batch_shards: 1",
            cfg.batch_shards, model_cfg.dropout
        )));
    }
    check_data(model_cfg, data)?;
    std::fs::create_dir_all(out).map_err(|e| TrainingError::io(out, e))?;

    let train_device = device.clone().autodiff();
    let eval_device = device.clone().without_autodiff();
    let state_path = out.join(STATE_FILE);
    let description_path = out.join(MODEL_CONFIG_FILE);

    let resuming = state_path.is_file();
    let (model, mut optim, mut state) = if resuming {
        let saved: KwtConfig = read_ron(&description_path)?;
        crate::run_match::check_resumable(out, "model", &saved, model_cfg, &[])?;
        let trainer_path = out.join(TRAINER_CONFIG_FILE);
        // run folders from before trainer.ron was written resume as they always did
        if trainer_path.is_file() {
            let saved: TrainerConfig = read_ron(&trainer_path)?;
            crate::run_match::check_resumable(
                out,
                "trainer",
                &saved.with_canonical_teacher(),
                &cfg.clone().with_canonical_teacher(),
                RESUME_FREE_SETTINGS,
            )?;
        }
        let state = RunState::read(out)?;
        let (weights_path, optim_path) = state.last_files(out);
        if !weights_path.is_file() {
            return Err(TrainingError::checkpoint(
                &weights_path,
                format!("no such file, though {STATE_FILE} names it"),
            ));
        }
        // The weights are replaced by the checkpoint's; the seed does not matter.
        let model = hook
            .structure(model_cfg.init(0, &train_device)?)?
            .try_load_file(&weights_path)
            .map_err(|e| checkpoint::unreadable_weights(&weights_path, &description_path, e))?;
        let optim = AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .init()
            .load(&optim_path)
            .map_err(|e| TrainingError::checkpoint(&optim_path, e))?;
        tracing::info!(
            epoch = state.epoch,
            step = state.global_step,
            "resuming run in {}",
            out.display()
        );
        (model, optim, state)
    } else {
        let mut model = model_cfg.init(cfg.seed, &train_device)?;
        let stats = feature_stats(
            data.train.as_ref(),
            data.frames,
            data.features,
            NORM_SAMPLES,
        )?;
        model.input_norm = FeatureNorm::from_stats(&stats, &train_device);
        write_ron(&description_path, model_cfg)?;
        let optim = AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .init();
        (model, optim, RunState::default())
    };
    let resumed_at = resuming.then_some(state.global_step);
    let mut model = hook.on_start(
        model,
        &HookStart {
            out,
            device: &train_device,
            resumed_at,
        },
    )?;
    // Dropout draws from the backend's process-wide generator.
    train_device.seed(cfg.seed ^ state.global_step as u64);
    write_ron(&out.join(TRAINER_CONFIG_FILE), cfg)?;
    let teacher = load_teacher(cfg, model_cfg, device)?;

    let n = data.train.len();
    let per_epoch = steps_per_epoch(n, cfg.batch_size);
    let schedule = WarmupCosine {
        peak_lr: cfg.learning_rate,
        final_lr: cfg.final_learning_rate,
        warmup_steps: cfg.warmup_epochs * per_epoch,
        total_steps: cfg.epochs * per_epoch,
    };
    let started = Instant::now();

    while state.epoch < cfg.epochs {
        let epoch = state.epoch;
        let epoch_start = Instant::now();
        let order = epoch_order(n, cfg.seed, epoch);
        let bar = match (&options.bars, options.progress) {
            (Some(group), true) => group.add(ProgressBar::new(per_epoch as u64)),
            (None, true) => ProgressBar::new(per_epoch as u64),
            (_, false) => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        bar.set_position(state.step_in_epoch as u64);
        let mut lr = schedule.lr(state.global_step);

        while state.step_in_epoch < per_epoch {
            let step = state.step_in_epoch;
            let indices = &order[step * cfg.batch_size..((step + 1) * cfg.batch_size).min(n)];
            let augment = cfg
                .augment
                .then(|| mix(cfg.seed, epoch as u64, step as u64));
            let batch = make_batch(
                data.train.as_ref(),
                indices,
                data.frames,
                data.features,
                augment,
            )?;
            let teacher_targets = teacher.as_ref().map(|t| t.targets(&batch, &train_device));
            lr = schedule.lr(state.global_step);
            let (next, loss_value, correct) = optimizer_step(
                model,
                &mut optim,
                batch.inputs(&train_device),
                batch.targets(&train_device),
                teacher_targets,
                lr,
                cfg.label_smoothing,
                cfg.batch_shards,
            );
            model = hook.after_step(next, state.global_step + 1)?;
            if !loss_value.is_finite() {
                return Err(TrainingError::InvalidConfig(format!(
                    "the loss became {loss_value} at epoch {} step {step}; lower `learning_rate`",
                    epoch + 1
                )));
            }

            state.epoch_loss_sum += loss_value as f64 * indices.len() as f64;
            state.epoch_correct += correct;
            state.epoch_seen += indices.len() as u64;
            state.step_in_epoch += 1;
            state.global_step += 1;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.3} lr {lr:.2e}",
                state.epoch_loss_sum / state.epoch_seen as f64
            ));

            let stop = options
                .stop_after_steps
                .is_some_and(|s| state.global_step >= s);
            let periodic = cfg.checkpoint_every_steps > 0
                && state.global_step % cfg.checkpoint_every_steps == 0;
            if (stop || periodic) && state.step_in_epoch < per_epoch {
                save_last(out, &model, &optim, &mut state, &*hook)?;
            }
            if stop && state.step_in_epoch < per_epoch {
                bar.abandon();
                return Ok(TrainOutcome::Interrupted {
                    global_step: state.global_step,
                });
            }
        }
        bar.finish_and_clear();
        if let Some(group) = &options.bars {
            group.remove(&bar);
        }

        let valid = evaluate(
            &model.valid(),
            data.valid.as_ref(),
            &data.labels,
            data.frames,
            data.features,
            cfg.eval_batch_size,
            &eval_device,
        )?;
        let record = EpochRecord {
            epoch,
            train_loss: state.epoch_loss_sum / state.epoch_seen.max(1) as f64,
            train_acc: state.epoch_correct as f64 / state.epoch_seen.max(1) as f64,
            valid_acc: valid.accuracy(),
            lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        tracing::info!(
            "epoch {}/{}: loss {:.4}, train acc {:.2}%, valid acc {:.2}%, {:.1}s",
            epoch + 1,
            cfg.epochs,
            record.train_loss,
            100.0 * record.train_acc,
            100.0 * record.valid_acc,
            record.seconds
        );
        if hook.may_be_best(state.global_step)
            && state
                .best_valid_acc
                .is_none_or(|best| record.valid_acc > best)
        {
            state.best_valid_acc = Some(record.valid_acc);
            state.best_epoch = Some(epoch);
            save_model(&model, &out.join(BEST_CHECKPOINT))?;
        }
        state.history.push(record);
        state.epoch += 1;
        state.step_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_correct = 0;
        state.epoch_seen = 0;
        save_last(out, &model, &optim, &mut state, &*hook)?;
        plot_training_curves(&state.history, &out.join(CURVES_FILE))?;
        if options
            .stop_after_steps
            .is_some_and(|s| state.global_step >= s)
            && state.epoch < cfg.epochs
        {
            return Ok(TrainOutcome::Interrupted {
                global_step: state.global_step,
            });
        }
    }

    if state.best_valid_acc.is_none() {
        return Err(TrainingError::InvalidConfig(
            "the step hook accepted no epoch's model as the best checkpoint (does its schedule end before the last epoch?)".into(),
        ));
    }
    let best_path = out.join(BEST_CHECKPOINT);
    // Into the trained model's structure: a hook may have added modules (QAT quantizers)
    // that a model built from `model.ron` alone lacks.
    let best = model
        .valid()
        .try_load_file(&best_path)
        .map_err(|e| TrainingError::checkpoint(&best_path, e))?;
    let test = evaluate(
        &best,
        data.test.as_ref(),
        &data.labels,
        data.frames,
        data.features,
        cfg.eval_batch_size,
        &eval_device,
    )?;
    let summary = RunSummary {
        model: model_cfg.clone(),
        parameters: best.num_params(),
        epochs: cfg.epochs,
        steps: state.global_step,
        best_epoch: state.best_epoch.unwrap_or(0),
        best_valid_acc: state.best_valid_acc.unwrap_or(0.0),
        test_acc: test.accuracy(),
        test_confusion: test,
        train_seconds: started.elapsed().as_secs_f64(),
        history: state.history.clone(),
        best_checkpoint: best_path,
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| TrainingError::checkpoint(out, e))?;
    checkpoint::write_atomic(&out.join(SUMMARY_FILE), &json)?;
    tracing::info!(
        "best epoch {} (valid {:.2}%), test accuracy {:.2}%",
        summary.best_epoch + 1,
        100.0 * summary.best_valid_acc,
        100.0 * summary.test_acc
    );
    Ok(TrainOutcome::Finished(Box::new(summary)))
}

#[cfg(test)]
mod tests;
