//! Checkpoints inside one long training run of a search (a supernet's SPOS training, a
//! candidate's training and pruning, the compression stage). The search state is written
//! between runs; without these a killed search would lose the whole run it was in (the
//! compression stage of `configs/cifar10.ron` is 40,000 steps). Every `every` steps the module,
//! its optimizer and the step go into the search's `progress/` folder, the files named by
//! their step and `progress.json`, written after them, naming the step in force. A checkpoint
//! names its job: only the same job, of the same length, resumes from it; the next job's first
//! checkpoint replaces it, and the folder goes when the search ends.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};
use training::checkpoint::{
    log_written, remove_stale_step_files, save_model, save_optimizer, step_file,
};

use crate::error::{Result, SearchError};
use crate::state::write_atomic;

const STATE_FILE: &str = "progress.json";
const MODEL: &str = "model";
const OPTIMIZER: &str = "optim";

/// Where a training run keeps its progress, and how often.
#[derive(Debug, Clone)]
pub struct Progress {
    dir: PathBuf,
    every: usize,
    job: String,
    /// Tests: stop with an error right after the checkpoint of this step, as a kill would.
    stop_at: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProgressState {
    job: String,
    steps: usize,
    step: usize,
}

impl Progress {
    /// Checkpoints of the run `job` in `dir`, every `every` steps (0: none).
    pub fn new(dir: &Path, every: usize, job: impl Into<String>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            every,
            job: job.into(),
            stop_at: None,
        }
    }

    /// The same, failing right after the checkpoint of step `step` (tests of resuming).
    #[cfg(test)]
    pub fn stopping_at(mut self, step: usize) -> Self {
        self.stop_at = Some(step);
        self
    }

    /// `model` and `optim` at the newest checkpoint of this job (a run of `steps` steps) and
    /// the step it reached; unchanged and step 0 when the folder holds none (a checkpoint of
    /// another job is replaced by this one's first checkpoint).
    pub fn resume<M: Module>(
        &self,
        model: M,
        optim: ModuleOptimizer,
        steps: usize,
    ) -> Result<(M, ModuleOptimizer, usize)> {
        let path = self.dir.join(STATE_FILE);
        if !path.is_file() {
            return Ok((model, optim, 0));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| SearchError::io(&path, e))?;
        let state: ProgressState = serde_json::from_str(&text).map_err(|e| SearchError::State {
            path: path.clone(),
            message: format!("cannot parse ({e}); delete it to start the run over"),
        })?;
        if state.job != self.job || state.steps != steps {
            return Ok((model, optim, 0));
        }
        let weights = step_file(&self.dir, MODEL, state.step, "bpk");
        let model = model
            .try_load_file(&weights)
            .map_err(|e| SearchError::State {
                path: weights.clone(),
                message: format!(
                    "cannot be read as the run's model ({e}); delete {} to start the run over",
                    self.dir.display()
                ),
            })?;
        let optim_path = step_file(&self.dir, OPTIMIZER, state.step, "bpk");
        let optim = optim.load(&optim_path).map_err(|e| SearchError::State {
            path: optim_path.clone(),
            message: format!(
                "cannot be read as the run's optimizer state ({e}); delete {} to start the run \
                 over",
                self.dir.display()
            ),
        })?;
        tracing::info!(job = %self.job, step = state.step, steps, "resuming a training run");
        Ok((model, optim, state.step))
    }

    /// After `done` of `steps` steps: writes the checkpoint when one is due (never after the
    /// last step: the caller records the finished run itself).
    pub fn after_step<M: Module>(
        &self,
        model: &M,
        optim: &ModuleOptimizer,
        done: usize,
        steps: usize,
    ) -> Result<()> {
        if self.every == 0 || !done.is_multiple_of(self.every) || done >= steps {
            return Ok(());
        }
        let started = std::time::Instant::now();
        std::fs::create_dir_all(&self.dir).map_err(|e| SearchError::io(&self.dir, e))?;
        let model_file = step_file(&self.dir, MODEL, done, "bpk");
        let optim_file = step_file(&self.dir, OPTIMIZER, done, "bpk");
        save_model(model, &model_file)?;
        save_optimizer(optim, &optim_file)?;
        let state = ProgressState {
            job: self.job.clone(),
            steps,
            step: done,
        };
        let text = serde_json::to_string_pretty(&state).map_err(|e| SearchError::State {
            path: self.dir.join(STATE_FILE),
            message: e.to_string(),
        })?;
        let state_file = self.dir.join(STATE_FILE);
        write_atomic(&state_file, text.as_bytes())?;
        self.remove_files(Some(done))?;
        log_written(
            &self.job,
            done,
            started,
            &[&model_file, &optim_file, &state_file],
        );
        if self.stop_at == Some(done) {
            return Err(SearchError::Search(format!(
                "{}: stopped after the checkpoint of step {done}",
                self.job
            )));
        }
        Ok(())
    }

    /// Removes the folder `dir` of a search's run checkpoints: at the start of a new search
    /// (a checkpoint of another search's job must not be resumed) and once it has finished.
    pub fn clear(dir: &Path) -> Result<()> {
        if dir.is_dir() {
            std::fs::remove_dir_all(dir).map_err(|e| SearchError::io(dir, e))?;
        }
        Ok(())
    }

    fn remove_files(&self, keep: Option<usize>) -> Result<()> {
        Ok(remove_stale_step_files(
            &self.dir,
            &[(MODEL, "bpk", keep), (OPTIMIZER, "bpk", keep)],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use training::tinyformer::{Supernet, SupernetConfig};

    use super::*;
    use crate::config::SearchConfig;
    use crate::fixtures::{tiny_config, write_idx};
    use crate::run::Data;
    use crate::sparsity::SparseConfig;
    use crate::train::{Masks, PruneRun, train_path, train_supernet};
    use crate::weights::weights;

    /// A supernet's training, then an AGP-pruned path's, each stopped after a checkpoint and
    /// run again: the same weights as uninterrupted runs, and no checkpoint of another job or
    /// length is taken for theirs.
    /// The tiny search's config and data, and a supernet of its space.
    fn setup(rng: &mut StdRng) -> (SearchConfig, Data, SupernetConfig) {
        let data_dir = tempfile::tempdir().unwrap();
        write_idx(data_dir.path(), "train", 80, 1).unwrap();
        write_idx(data_dir.path(), "t10k", 20, 2).unwrap();
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32f746.ron");
        let cfg = tiny_config(data_dir.path(), &target);
        let data = crate::run::load_data(&cfg).unwrap();
        let scfg =
            crate::space::sample_supernet(&cfg.supernet_space, data.train.shape, data.classes, rng);
        (cfg, data, scfg)
    }

    #[test]
    fn an_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights() {
        let mut rng = StdRng::seed_from_u64(3);
        let (cfg, data, scfg) = setup(&mut rng);
        let device = Device::flex().autodiff();
        let dir = tempfile::tempdir().unwrap();
        let progress = |job: &str| Progress::new(dir.path(), 2, job);
        let supernet = || Supernet::init(&scfg, 4, &device).unwrap();
        let train_sn = |p: Option<&Progress>| {
            train_supernet(supernet(), &scfg, &data.train, &cfg.train, 7, 9, p, &device)
        };
        let whole = train_sn(None).unwrap();
        let e = train_sn(Some(&progress("supernet").stopping_at(4)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("stopped after the checkpoint of step 4"), "{e}");
        assert!(dir.path().join("model-4.bpk").is_file());
        assert!(
            !dir.path().join("model-2.bpk").exists(),
            "a stale checkpoint is left"
        );
        let resumed = train_sn(Some(&progress("supernet"))).unwrap();
        let path = scfg.sample_path(&mut rng);
        let arch = scfg.arch(&path).unwrap();
        let flat = |s: &Supernet| weights(&s.extract(&scfg, &path).unwrap(), &arch);
        assert!(
            flat(&resumed) == flat(&whole),
            "the resumed supernet differs"
        );

        // an AGP run over 9 steps, stopped after step 6 (masks updated at 0, 2 and 4)
        let sparse: SparseConfig = crate::sparsity::sample(&arch, &cfg.sparse_space, &mut rng);
        assert!(!sparse.is_empty());
        let schedule = crate::run::agp_schedule(6, 2);
        let run = |steps: usize, p: Option<&Progress>| {
            let model = whole.extract(&scfg, &path).unwrap();
            train_path(
                model,
                &arch,
                &data.train,
                &cfg.train,
                steps,
                11,
                Some(PruneRun {
                    sparse: &sparse,
                    schedule,
                }),
                Masks::default(),
                p,
                &device,
            )
        };
        let (a, _) = run(9, None).unwrap();
        // another job's checkpoint (the supernet's, still in the folder) is not resumed
        let e = run(9, Some(&progress("path").stopping_at(6)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("path: stopped"), "{e}");
        let (b, _) = run(9, Some(&progress("path"))).unwrap();
        assert!(
            weights(&a, &arch) == weights(&b, &arch),
            "the resumed path differs"
        );
        // nor one of the same job but another length: it starts over, checkpointing at 2, 4
        let e = run(8, Some(&progress("path").stopping_at(4)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("step 4"), "{e}");
        Progress::clear(dir.path()).unwrap();
        assert!(!dir.path().exists());
    }

    #[test]
    fn a_corrupt_checkpoint_is_named_with_the_way_out() {
        let mut rng = StdRng::seed_from_u64(5);
        let (cfg, data, scfg) = setup(&mut rng);
        let device = Device::flex().autodiff();
        let dir = tempfile::tempdir().unwrap();
        let run = |p: Progress| {
            let supernet = Supernet::init(&scfg, 4, &device).unwrap();
            train_supernet(
                supernet,
                &scfg,
                &data.train,
                &cfg.train,
                5,
                9,
                Some(&p),
                &device,
            )
        };
        let p = Progress::new(dir.path(), 2, "supernet");
        assert!(run(p.clone().stopping_at(2)).is_err());
        let weights = dir.path().join("model-2.bpk");
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        let e = run(p).unwrap_err().to_string();
        assert!(
            e.contains("model-2.bpk") && e.contains("to start the run over"),
            "{e}"
        );
    }
}
