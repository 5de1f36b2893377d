//! `nas train` for a TinyFormer single path (a search's `best/arch.ron`): train the found model
//! at full length, from its searched weights or from scratch, with AGP pruning towards its
//! searched per-layer sparsity; validation every `eval_every` steps, best and last checkpoints,
//! resume with nothing lost, a curves plot, and at the end PTQ to the integer graph with its
//! test accuracy and its place on the target (the search's last stage, at a length of the
//! user's choosing).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use cost::target::Target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use training::checkpoint::read_ron;
use training::history::EpochRecord;
use training::tinyformer::{TinyFormer, TinyFormerArch, load_tinyformer, save_tinyformer};

use crate::config::{BudgetConfig, DataConfig, TrainConfig, load_ron};
use crate::error::{Result, SearchError};
use crate::run::{agp_schedule, bar, derive, load_images, quantize_and_place, write_cost_report};
use crate::sparsity::{SparseConfig, layout};
use crate::state::{Int8Record, write_atomic};
use crate::train::{Masks, accuracy, batch_step, optimizer, schedule};

/// The run's resumable state in its folder.
pub const STATE_FILE: &str = "state.json";
/// The checkpoints of step N: `last-N.bpk`, `last_optim-N.bpk` and `best-N.bpk`. Each name
/// carries its step and `state.json` names the steps in force, so a run killed after writing
/// a checkpoint but before its state resumes from the state's own files; older files are
/// removed once a newer state is written.
fn checkpoint(out: &Path, kind: &str, step: usize) -> PathBuf {
    training::checkpoint::step_file(out, kind, step, "bpk")
}
const SUMMARY_FILE: &str = "summary.json";
const CURVES_FILE: &str = "curves.svg";

fn default_prune_frequency() -> usize {
    10
}

/// A `nas train` configuration for a TinyFormer path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathTrainConfig {
    /// Seeds the initialization (without `init`), the batch order and the data subsets.
    pub seed: u64,
    /// The images, as a search's `data` section.
    pub data: DataConfig,
    /// The single-path architecture: a search's `best/arch.ron`.
    pub arch: PathBuf,
    /// Start from these weights (a search's `best/model.bpk`; the `arch.ron` beside it must
    /// be `arch`); without it, from a seeded initialization.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Per-layer sparsity and block size (a search's `best/sparsity.ron`): AGP prunes towards
    /// it over the first `prune_steps` steps, after which the masks stay fixed; without it, the
    /// model stays dense.
    #[serde(default)]
    pub sparsity: Option<PathBuf>,
    /// Optimizer steps of AGP pruning; 0 prunes to the whole sparsity before the first step
    /// (for a searched model that is already pruned).
    #[serde(default)]
    pub prune_steps: usize,
    /// Steps between AGP mask updates.
    #[serde(default = "default_prune_frequency")]
    pub prune_frequency: usize,
    /// Optimizer settings, as a search's `train` section.
    pub train: TrainConfig,
    /// Optimizer steps in all.
    pub steps: usize,
    /// Validate, checkpoint and plot every this many steps.
    pub eval_every: usize,
    /// Where the int8 model is placed: a target and optional tighter limits.
    pub budget: BudgetConfig,
    /// Results folder (the run's state lives there too: running again resumes).
    pub out: PathBuf,
}

impl PathTrainConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self> {
        load_ron(path, Self::validate).map_err(|e| match e {
            SearchError::Config { path, message } => SearchError::TrainConfig { path, message },
            e => e,
        })
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.train.validate()?;
        if self.steps == 0 || self.eval_every == 0 || self.prune_frequency == 0 {
            return Err("steps, eval_every and prune_frequency must be > 0".into());
        }
        if self.sparsity.is_some() && self.prune_steps >= self.steps {
            return Err(format!(
                "prune_steps = {} leaves no step at the full sparsity (steps = {})",
                self.prune_steps, self.steps
            ));
        }
        if self.data.valid_samples == 0 {
            return Err("data.valid_samples must be > 0".into());
        }
        Ok(())
    }
}

/// Whether RON text is a TinyFormer path training config (it names an `arch` file) rather
/// than a KWT one.
pub fn is_path_train_config(text: &str) -> bool {
    crate::kwt::config::has_top_level_field(text, "arch")
}

/// What a finished run reports (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathTrainSummary {
    pub steps: usize,
    /// The step after which the best validation accuracy was measured (at full sparsity).
    pub best_step: usize,
    pub best_valid_accuracy: f64,
    /// Of the best checkpoint.
    pub test_accuracy: f64,
    /// Zero weights of the pruned layers, by layer.
    pub realized_sparsity: std::collections::BTreeMap<String, f64>,
    pub int8: Int8Record,
    /// The cost model's verdict on the target ("fits" or the broken limits).
    pub fits: bool,
    pub violations: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    config: PathTrainConfig,
    /// Optimizer steps done.
    step: usize,
    history: Vec<EpochRecord>,
    /// (step, validation accuracy) of the best checkpoint so far.
    best: Option<(usize, f64)>,
    seconds: f64,
    summary: Option<PathTrainSummary>,
}

/// How a run is watched or cut short.
#[derive(Debug, Clone, Default)]
pub struct PathTrainOptions {
    pub progress: bool,
    /// Stop (state saved) once this many steps are done, at the next evaluation point: an
    /// interruption, for tests.
    pub stop_after_steps: Option<usize>,
}

/// `None` when the run stopped early (its state saved).
pub fn train_path_config(
    cfg: &PathTrainConfig,
    device: &Device,
    opts: &PathTrainOptions,
) -> Result<Option<PathTrainSummary>> {
    cfg.validate()
        .map_err(|message| SearchError::PathTrain(format!("invalid training config: {message}")))?;
    let arch: TinyFormerArch = read_ron(&cfg.arch)?;
    let sparse: Option<SparseConfig> = cfg.sparsity.as_deref().map(read_ron).transpose()?;
    if let Some(sp) = &sparse {
        check_sparsity(sp, &arch, cfg.sparsity.as_deref().unwrap_or(Path::new("")))?;
    }
    let target = Target::load(&cfg.budget.target)?;
    let limits = cfg.budget.limits(&target);
    let data = load_images(&cfg.data, cfg.seed, arch.stages.len())?;
    if data.train.shape != arch.input || data.classes != arch.classes {
        return Err(SearchError::PathTrain(format!(
            "{}: a model of {:?} images into {} classes, but the data gives {:?} images of {} \
             classes",
            cfg.arch.display(),
            arch.input,
            arch.classes,
            data.train.shape,
            data.classes
        )));
    }
    let out = &cfg.out;
    let state_path = out.join(STATE_FILE);
    let train_device = device.clone().autodiff();
    let mut optim = optimizer(&cfg.train);
    let (mut model, mut state) = if state_path.is_file() {
        let state: RunState = read_json(&state_path)?;
        training::run_match::check_resumable(out, "training", &state.config, cfg, &[])?;
        let (model, _) = load_tinyformer(&checkpoint(out, "last", state.step), &train_device)?;
        let path = checkpoint(out, "last_optim", state.step);
        optim = optim
            .load(&path)
            .map_err(|e| SearchError::PathTrain(format!("{}: {e}", path.display())))?;
        tracing::info!(step = state.step, "resuming the run in {}", out.display());
        (model, state)
    } else {
        let model = match &cfg.init {
            Some(init) => {
                let (m, a) = load_tinyformer(init, &train_device)?;
                if a != arch {
                    return Err(SearchError::PathTrain(format!(
                        "{}: its arch.ron is not {}",
                        init.display(),
                        cfg.arch.display()
                    )));
                }
                m
            }
            None => TinyFormer::init(&arch, cfg.seed, &train_device)?,
        };
        (
            model,
            RunState {
                config: cfg.clone(),
                step: 0,
                history: vec![],
                best: None,
                seconds: 0.0,
                summary: None,
            },
        )
    };
    // only now, with every input checked, does the run get a folder
    std::fs::create_dir_all(out).map_err(|e| SearchError::io(out, e))?;
    let (resources, _) = crate::cost_graph::evaluate(
        &arch,
        sparse.as_ref().unwrap_or(&SparseConfig::new()),
        &target,
        &limits,
    )?;
    if !resources.fits() {
        tracing::warn!(why = ?resources.violations, "the model does not fit {}", target.name);
    }

    let pruning = Pruning {
        sparse: sparse.as_ref(),
        prune_steps: cfg.prune_steps,
        schedule: agp_schedule(cfg.prune_steps.max(1), cfg.prune_frequency),
    };
    let mut masks = pruning.masks_before(state.step, &model, &arch)?;
    model = masks.apply(model, &arch);
    let lr = schedule(&cfg.train, cfg.steps);
    let batches = EpochOrder::new(data.train.len(), cfg.train.batch_size, cfg.seed);
    let eval_batch = cfg.train.batch_size * 4;
    let pb = bar(cfg.steps, state.step, "training", opts.progress);
    let (started, seconds_before) = (Instant::now(), state.seconds);
    while state.step < cfg.steps {
        let end = (state.step + cfg.eval_every).min(cfg.steps);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0u64, 0usize);
        let lr_at_start = lr.lr(state.step);
        for step in state.step..end {
            if let (Some(sp), Some(point)) = (pruning.sparse, pruning.update_at(step)) {
                masks.update(&model, &arch, sp, point)?;
                model = masks.apply(model, &arch);
            }
            let idx = batches.indices(step);
            let (x, y) = data.train.batch(&idx, &train_device);
            let (grads, loss, hits) = batch_step(&model, x, y, &cfg.train, true, &train_device);
            model = optim.step(lr.lr(step), model, grads);
            model = masks.apply(model, &arch);
            loss_sum += loss as f64 * idx.len() as f64;
            correct += hits;
            seen += idx.len();
            pb.inc(1);
        }
        let valid = accuracy(&model, &data.valid, eval_batch, device);
        state.step = end;
        state.history.push(EpochRecord {
            epoch: state.history.len(),
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            valid_acc: valid,
            lr: lr_at_start,
            seconds: seconds_before + started.elapsed().as_secs_f64(),
        });
        // only checkpoints at the full sparsity compete for best
        let eligible = pruning.sparse.is_none() || end > cfg.prune_steps;
        if eligible && state.best.is_none_or(|(_, b)| valid > b) {
            state.best = Some((end, valid));
            save_tinyformer(&model, &arch, &checkpoint(out, "best", end))?;
        }
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        save_tinyformer(&model, &arch, &checkpoint(out, "last", end))?;
        training::checkpoint::save_optimizer(&optim, &checkpoint(out, "last_optim", end))?;
        write_json(&state_path, &state)?;
        remove_stale_checkpoints(out, &state)?;
        training::plot::plot_training_curves(&state.history, &out.join(CURVES_FILE))?;
        tracing::info!(
            step = end,
            loss = state.history.last().map(|h| h.train_loss),
            valid,
            "evaluated"
        );
        if opts.stop_after_steps.is_some_and(|n| end >= n) && end < cfg.steps {
            pb.abandon();
            return Ok(None);
        }
    }
    pb.finish_and_clear();
    if let Some(summary) = &state.summary {
        return Ok(Some(summary.clone()));
    }

    // The best checkpoint: its float and int8 test accuracy and its place on the target.
    let best_dir = out.join("best");
    let (best_step, best_valid) = state.best.unwrap_or((cfg.steps, 0.0));
    let (best_model, _) = load_tinyformer(&checkpoint(out, "best", best_step), device)?;
    save_tinyformer(&best_model, &arch, &best_dir.join("model.bpk"))?;
    let test_accuracy = accuracy(&best_model, &data.test, eval_batch, device);
    let int8 = quantize_and_place(&best_model, &arch, &data, &target, &limits, &best_dir)?;
    let sparse = sparse.unwrap_or_default();
    crate::run::write_ron(&best_dir.join("sparsity.ron"), &sparse)?;
    write_cost_report(&best_dir, &arch, &sparse, &target, &limits, &int8)?;
    let w = crate::weights::weights(&best_model, &arch);
    let summary = PathTrainSummary {
        steps: cfg.steps,
        best_step,
        best_valid_accuracy: best_valid,
        test_accuracy,
        realized_sparsity: sparse
            .keys()
            .filter_map(|n| {
                w.get(n)
                    .map(|v| (n.clone(), pruning::mask::zero_fraction(v)))
            })
            .collect(),
        int8,
        fits: resources.fits(),
        violations: resources.violations.clone(),
        seconds: state.seconds,
    };
    write_json(&out.join(SUMMARY_FILE), &summary)?;
    state.summary = Some(summary.clone());
    write_json(&state_path, &state)?;
    Ok(Some(summary))
}

/// Removes the checkpoint files of steps `state` no longer names.
fn remove_stale_checkpoints(out: &Path, state: &RunState) -> Result<()> {
    Ok(training::checkpoint::remove_stale_step_files(
        out,
        &[
            ("last", "bpk", Some(state.step)),
            ("last_optim", "bpk", Some(state.step)),
            ("best", "bpk", state.best.map(|(s, _)| s)),
        ],
    )?)
}

/// The AGP plan of a run: masks grow on the schedule over the first `prune_steps` steps and
/// hold the whole sparsity from step `prune_steps` on.
struct Pruning<'a> {
    sparse: Option<&'a SparseConfig>,
    prune_steps: usize,
    schedule: pruning::schedule::Schedule,
}

impl Pruning<'_> {
    /// The fraction of each target to prune to before optimizer step `step`, where the masks
    /// change there.
    fn update_at(&self, step: usize) -> Option<Box<dyn Fn(f64) -> f64 + '_>> {
        self.sparse?;
        if step == self.prune_steps {
            Some(Box::new(|t| t))
        } else if step < self.prune_steps && self.schedule.is_update(step) {
            Some(Box::new(move |t| self.schedule.sparsity(t, step)))
        } else {
            None
        }
    }

    /// The masks in force before step `step`, rebuilt from `model`'s weights on resume: the
    /// pruned blocks are exactly zero, so pruning the same share again by magnitude picks them.
    fn masks_before(
        &self,
        step: usize,
        model: &TinyFormer,
        arch: &TinyFormerArch,
    ) -> Result<Masks> {
        let mut masks = Masks::default();
        let Some(sparse) = self.sparse else {
            return Ok(masks);
        };
        let last = (0..step).rev().find_map(|s| self.update_at(s));
        if let Some(point) = last {
            masks.update(model, arch, sparse, point)?;
        }
        Ok(masks)
    }
}

/// Each epoch's batches from a seeded shuffle of the training set, a pure function of the step
/// so that a resumed run draws the same batches (the last partial batch of an epoch is left).
struct EpochOrder {
    n: usize,
    batch: usize,
    seed: u64,
}

impl EpochOrder {
    fn new(n: usize, batch: usize, seed: u64) -> Self {
        Self {
            n,
            batch: batch.clamp(1, n.max(1)),
            seed,
        }
    }

    fn indices(&self, step: usize) -> Vec<usize> {
        let per_epoch = (self.n / self.batch).max(1);
        let (epoch, k) = (step / per_epoch, step % per_epoch);
        let mut order: Vec<usize> = (0..self.n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(derive(
            self.seed,
            20,
            epoch as u64,
        )));
        order[k * self.batch..(k + 1) * self.batch].to_vec()
    }
}

/// Refuses per-layer sparsity for layers the architecture lacks or never prunes.
fn check_sparsity(sparse: &SparseConfig, arch: &TinyFormerArch, path: &Path) -> Result<()> {
    let prunable: Vec<String> = arch
        .layers()
        .into_iter()
        .filter(|s| layout(s).is_some())
        .map(|s| s.name)
        .collect();
    for (name, s) in sparse {
        let bad = if !prunable.contains(name) {
            format!(
                "layer `{name}` is not a prunable layer of the architecture (those are: {})",
                prunable.join(", ")
            )
        } else if !(0.0..1.0).contains(&s.sparsity) {
            format!("layer `{name}`: sparsity {} must be in [0, 1)", s.sparsity)
        } else {
            continue;
        };
        return Err(SearchError::PathTrain(format!("{}: {bad}", path.display())));
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| SearchError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        SearchError::PathTrain(format!(
            "{}: cannot parse ({e}); delete it to start over",
            path.display()
        ))
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| SearchError::PathTrain(format!("{}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{tiny_config, write_idx};
    use crate::run::write_ron;

    fn target() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32f746.ron")
    }

    /// A path of the tiny search space on the tiny idx set in `dir`, half of every prunable
    /// layer's blocks to prune, trained 40 steps (AGP over the first 12) and validated every 10.
    fn setup(dir: &Path) -> PathTrainConfig {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        write_idx(&dir.join("data"), "train", 300, 1).unwrap();
        write_idx(&dir.join("data"), "t10k", 100, 2).unwrap();
        let search = tiny_config(&dir.join("data"), &target());
        let mut rng = StdRng::seed_from_u64(5);
        let sup = crate::space::sample_supernet(&search.supernet_space, [1, 12, 12], 10, &mut rng);
        let arch = sup.arch(&sup.sample_path(&mut rng)).unwrap();
        let mut sparse = crate::sparsity::sample(&arch, &search.sparse_space, &mut rng);
        for s in sparse.values_mut() {
            s.sparsity = 0.5;
        }
        write_ron(&dir.join("arch.ron"), &arch).unwrap();
        write_ron(&dir.join("sparsity.ron"), &sparse).unwrap();
        PathTrainConfig {
            seed: 3,
            data: search.data.clone(),
            arch: dir.join("arch.ron"),
            init: None,
            sparsity: Some(dir.join("sparsity.ron")),
            prune_steps: 12,
            prune_frequency: 4,
            train: search.train.clone(),
            steps: 40,
            eval_every: 10,
            budget: BudgetConfig {
                sram_bytes: None,
                ..search.budget.clone()
            },
            out: dir.join("whole"),
        }
    }

    fn run(cfg: &PathTrainConfig, stop: Option<usize>) -> Result<Option<PathTrainSummary>> {
        let opts = PathTrainOptions {
            progress: false,
            stop_after_steps: stop,
        };
        train_path_config(cfg, &Device::flex(), &opts)
    }

    #[test]
    fn trains_prunes_and_resumes_to_the_same_model() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = setup(dir.path());
        let whole = run(&cfg, None).unwrap().unwrap();
        for f in [
            "best/model.bpk",
            "best/arch.ron",
            "best/sparsity.ron",
            "best/model.int8",
            "best/cost.txt",
            "curves.svg",
            "summary.json",
        ] {
            assert!(cfg.out.join(f).is_file(), "{f} missing");
        }
        // the best checkpoint is one at the full sparsity, every pruned layer at its target
        // within a block
        assert!(whole.best_step > cfg.prune_steps, "{whole:?}");
        assert!(!whole.realized_sparsity.is_empty());
        for (name, z) in &whole.realized_sparsity {
            assert!(*z >= 0.45, "{name}: {z}");
        }
        // ten classes: it learns
        assert!(whole.best_valid_accuracy > 0.2, "{whole:?}");
        assert!(whole.fits, "{whole:?}");

        // interrupted twice (in the pruning phase, then after it) and resumed: the same run
        let parts = PathTrainConfig {
            out: dir.path().join("parts"),
            ..cfg.clone()
        };
        assert!(run(&parts, Some(10)).unwrap().is_none());
        assert!(run(&parts, Some(20)).unwrap().is_none());
        let resumed = run(&parts, None).unwrap().unwrap();
        let same = |s: &PathTrainSummary| PathTrainSummary {
            seconds: 0.0,
            ..s.clone()
        };
        assert_eq!(same(&resumed), same(&whole));
        // the same weights (the files differ in their parameter ids, drawn afresh per model)
        let weights = |c: &PathTrainConfig| {
            let (m, a) = load_tinyformer(&c.out.join("best/model.bpk"), &Device::flex()).unwrap();
            crate::weights::weights(&m, &a)
        };
        assert!(weights(&parts) == weights(&cfg), "the best weights differ");
        // killed after writing the checkpoints of step 20 but before its state: the run
        // resumes from the files of step 10 that its state names
        let crash = PathTrainConfig {
            out: dir.path().join("crash"),
            ..cfg.clone()
        };
        let ahead = PathTrainConfig {
            out: dir.path().join("ahead"),
            ..cfg.clone()
        };
        assert!(run(&crash, Some(10)).unwrap().is_none());
        assert!(run(&ahead, Some(20)).unwrap().is_none());
        for entry in std::fs::read_dir(&ahead.out).unwrap().flatten() {
            if entry.file_name().to_string_lossy().ends_with("-20.bpk") {
                std::fs::copy(entry.path(), crash.out.join(entry.file_name())).unwrap();
            }
        }
        assert!(crash.out.join("last-20.bpk").is_file());
        assert_eq!(same(&run(&crash, None).unwrap().unwrap()), same(&whole));
        assert!(weights(&crash) == weights(&cfg), "the best weights differ");
        // only the checkpoints the state names are left
        let mut left: Vec<String> = std::fs::read_dir(&crash.out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".bpk"))
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&"last-40.bpk".to_string()), "{left:?}");
        // a finished run reports its summary again; another setting is refused, named
        assert_eq!(same(&run(&parts, None).unwrap().unwrap()), same(&whole));
        let longer = PathTrainConfig {
            steps: 50,
            ..parts.clone()
        };
        let e = run(&longer, None).unwrap_err().to_string();
        assert!(e.contains("`steps` is 40 in the saved run, 50 now"), "{e}");
    }

    #[test]
    fn bad_inputs_are_named_before_training() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = setup(dir.path());
        // a layer the architecture lacks
        let mut sparse: SparseConfig = read_ron(&dir.path().join("sparsity.ron")).unwrap();
        let block = sparse.values().next().unwrap().block;
        sparse.insert(
            "s9.nothing".into(),
            crate::sparsity::LayerSparsity {
                block,
                sparsity: 0.5,
            },
        );
        write_ron(&dir.path().join("bad_sparsity.ron"), &sparse).unwrap();
        let bad = PathTrainConfig {
            sparsity: Some(dir.path().join("bad_sparsity.ron")),
            ..cfg.clone()
        };
        let e = run(&bad, None).unwrap_err().to_string();
        assert!(
            e.contains("bad_sparsity.ron") && e.contains("`s9.nothing`"),
            "{e}"
        );
        // an architecture for other images
        let mut arch: TinyFormerArch = read_ron(&cfg.arch).unwrap();
        arch.input = [3, 32, 32];
        write_ron(&dir.path().join("rgb.ron"), &arch).unwrap();
        let bad = PathTrainConfig {
            arch: dir.path().join("rgb.ron"),
            ..cfg.clone()
        };
        let e = run(&bad, None).unwrap_err().to_string();
        assert!(e.contains("rgb.ron") && e.contains("[3, 32, 32]"), "{e}");
        // starting weights of another architecture
        let mut wider: TinyFormerArch = read_ron(&cfg.arch).unwrap();
        wider.last_linear *= 2;
        let other = dir.path().join("other/model.bpk");
        let device = Device::flex();
        save_tinyformer(
            &TinyFormer::init(&wider, 0, &device).unwrap(),
            &wider,
            &other,
        )
        .unwrap();
        let bad = PathTrainConfig {
            init: Some(other),
            ..cfg.clone()
        };
        let e = run(&bad, None).unwrap_err().to_string();
        assert!(
            e.contains("other/model.bpk") && e.contains("arch.ron"),
            "{e}"
        );
        // pruning that never reaches its target inside the run
        let bad = PathTrainConfig {
            prune_steps: 40,
            ..cfg.clone()
        };
        assert!(bad.validate().unwrap_err().contains("prune_steps"));
        assert!(
            !cfg.out.exists(),
            "nothing may be written for a refused run"
        );
    }

    #[test]
    fn path_training_configs_are_told_apart() {
        for shipped in ["fashion_mnist_retrain.ron", "speech_retrain.ron"] {
            let text = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../configs")
                    .join(shipped),
            )
            .unwrap();
            assert!(is_path_train_config(&text), "{shipped}");
            ron::from_str::<PathTrainConfig>(&text)
                .unwrap_or_else(|e| panic!("{shipped}: {e}"))
                .validate()
                .unwrap_or_else(|e| panic!("{shipped}: {e}"));
        }
        for other in [
            "fashion_mnist.ron",
            "speech_search.ron",
            "quickstart.ron",
            "kwt_search.ron",
        ] {
            let text = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../configs")
                    .join(other),
            )
            .unwrap();
            assert!(!is_path_train_config(&text), "{other}");
        }
    }
}
