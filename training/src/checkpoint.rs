//! Checkpoint files: a Burn burnpack of the weights with the model's `model.ron` beside it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;

use crate::error::TrainingError;
use crate::kwt::{Kwt, KwtConfig};

pub const MODEL_CONFIG_FILE: &str = "model.ron";

/// `model.ron` in the folder of `checkpoint`.
pub fn model_config_path(checkpoint: &Path) -> PathBuf {
    checkpoint
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(MODEL_CONFIG_FILE)
}

pub fn read_ron<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainingError> {
    let text = fs::read_to_string(path).map_err(|e| TrainingError::io(path, e))?;
    ron::from_str(&text).map_err(|e| TrainingError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

pub fn write_ron<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainingError> {
    let text = ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default())
        .map_err(|e| TrainingError::checkpoint(path, e))?;
    write_atomic(path, text.as_bytes())
}

/// Write to a temporary file and rename, so an interruption never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainingError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| TrainingError::io(&tmp, e))?;
    commit(&tmp, path)
}

/// Moves the finished temporary file `tmp` to `path` durably: its data reaches the disk
/// before the rename, and the rename before the caller goes on. A kill alone needs only the
/// rename (the page cache survives the process); a power loss or a crashed host does not:
/// the file system may commit the rename of a fresh file before its data, and a state file
/// written next would then name a checkpoint that comes back empty.
pub fn commit(tmp: &Path, path: &Path) -> Result<(), TrainingError> {
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainingError::io(tmp, e))?;
    fs::rename(tmp, path).map_err(|e| TrainingError::io(path, e))?;
    sync_dir(path.parent().unwrap_or_else(|| Path::new(".")))
}

/// Makes the entries of `dir` (a rename, a new file) durable. Unix only: elsewhere a folder
/// cannot be opened as a file, and the rename is as durable as the platform makes it.
fn sync_dir(dir: &Path) -> Result<(), TrainingError> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| TrainingError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `{kind}-{step}.{ext}` in `out`: a file of a run's step. Runs name their checkpoints by
/// step and let their state file name the step in force, so a run killed after writing a new
/// checkpoint but before its state resumes from the files its state names.
pub fn step_file(out: &Path, kind: &str, step: usize, ext: &str) -> PathBuf {
    out.join(format!("{kind}-{step}.{ext}"))
}

/// The step of `name` if it is `{kind}-{step}.{ext}`.
fn step_of(name: &str, kind: &str, ext: &str) -> Option<usize> {
    let digits = name
        .strip_prefix(kind)?
        .strip_prefix('-')?
        .strip_suffix(ext)?
        .strip_suffix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Removes the step files of `out` that a newer state no longer names: for each
/// `(kind, ext, keep)`, every `{kind}-{n}.{ext}` with `n` other than `keep`.
pub fn remove_stale_step_files(
    out: &Path,
    kinds: &[(&str, &str, Option<usize>)],
) -> Result<(), TrainingError> {
    let entries = fs::read_dir(out).map_err(|e| TrainingError::io(out, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| TrainingError::io(out, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let stale = kinds.iter().any(|&(kind, ext, keep)| {
            step_of(&name, kind, ext).is_some_and(|step| Some(step) != keep)
        });
        if stale {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| TrainingError::io(&path, e))?;
        }
    }
    Ok(())
}

pub fn save_model<M: Module>(model: &M, path: &Path) -> Result<(), TrainingError> {
    // Burnpack picks the file name; write beside the target and rename for atomicity.
    let tmp = path.with_extension("tmp.bpk");
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| TrainingError::checkpoint(&tmp, e))?;
    commit(&tmp, path)
}

/// Saves `optim`'s state to `path` through a temporary file, as [`save_model`] does.
pub fn save_optimizer(
    optim: &burn::optim::ModuleOptimizer,
    path: &Path,
) -> Result<(), TrainingError> {
    let tmp = path.with_extension("tmp.bpk");
    optim
        .save(&tmp)
        .map_err(|e| TrainingError::checkpoint(&tmp, e))?;
    commit(&tmp, path)
}

/// Logs (debug) what one resumable checkpoint cost: its files' bytes and the time since
/// `started`, fsyncs included, so a user can size `checkpoint_every_steps`.
pub fn log_written(run: &str, step: usize, started: std::time::Instant, files: &[&Path]) {
    let bytes: u64 = files
        .iter()
        .filter_map(|f| fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    tracing::debug!(
        run,
        step,
        bytes,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "checkpoint written"
    );
}

/// Removes `path` if it is there (a run folder's file of an older layout).
pub fn remove_if_present(path: &Path) -> Result<(), TrainingError> {
    if path.is_file() {
        fs::remove_file(path).map_err(|e| TrainingError::io(path, e))?;
    }
    Ok(())
}

/// Loads a checkpoint written by the trainer: the weights from `checkpoint` and the
/// architecture from the `model.ron` beside it.
pub fn load_checkpoint(
    checkpoint: &Path,
    device: &Device,
) -> Result<(Kwt, KwtConfig), TrainingError> {
    if !checkpoint.is_file() {
        return Err(TrainingError::checkpoint(checkpoint, "no such file"));
    }
    let config_path = model_config_path(checkpoint);
    let arch = config_path.with_file_name("arch.ron");
    if !config_path.is_file() && arch.is_file() {
        // a search's (or a searched path's training) output: `nas search` and `nas train`
        // quantize and export those themselves
        return Err(TrainingError::checkpoint(
            checkpoint,
            format!(
                "is a TinyFormer single path ({} beside it), not a KWT checkpoint: its integer \
                 model is the model.int8 beside it (`nas eval --int8 FILE --images DIR`, `nas \
                 export --model FILE`), `nas quantize --checkpoint FILE --images DIR` \
                 re-quantizes it, and `nas train --config` of a config naming that arch.ron \
                 retrains it",
                arch.display()
            ),
        ));
    }
    if !config_path.is_file() {
        return Err(TrainingError::checkpoint(
            checkpoint,
            format!(
                "the model description {} is missing (it is written beside every checkpoint)",
                config_path.display()
            ),
        ));
    }
    let config: KwtConfig = read_ron(&config_path)?;
    // The weights are replaced by the file's; the seed does not matter.
    let model = config.init(0, device)?;
    let model = model
        .try_load_file(checkpoint)
        .map_err(|e| unreadable_weights(checkpoint, &config_path, e))?;
    Ok((model, config))
}

/// The error for weights that Burn cannot read into the model a description file builds:
/// a truncated or corrupt file fails the same way as one of another architecture.
pub(crate) fn unreadable_weights(
    checkpoint: &Path,
    description: &Path,
    e: impl std::fmt::Display,
) -> TrainingError {
    TrainingError::checkpoint(
        checkpoint,
        format!(
            "cannot be read as the model {} describes (a truncated or corrupt file, or \
             weights of another architecture): {e}",
            description.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_files_are_told_apart_by_kind_and_step() {
        assert_eq!(step_of("last-12.bpk", "last", "bpk"), Some(12));
        assert_eq!(step_of("last_optim-12.bpk", "last", "bpk"), None);
        assert_eq!(step_of("last_optim-12.bpk", "last_optim", "bpk"), Some(12));
        assert_eq!(step_of("last-.bpk", "last", "bpk"), None);
        assert_eq!(step_of("last-1x.bpk", "last", "bpk"), None);
        assert_eq!(step_of("last-3.bpk.tmp", "last", "bpk"), None);
        assert_eq!(step_of("last.bpk", "last", "bpk"), None);
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        // a file named without a folder syncs the working directory
        sync_dir(Path::new("")).unwrap();
        // committing a temporary file that is not there names it
        let err = commit(&dir.path().join("gone.tmp"), &path).unwrap_err();
        assert!(err.to_string().contains("gone.tmp"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
    }

    #[test]
    fn a_missing_model_description_is_named_and_a_searched_path_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("model.bpk");
        fs::write(&ckpt, b"weights").unwrap();
        let device = Device::flex();
        let err = || match load_checkpoint(&ckpt, &device) {
            Ok(_) => panic!("loaded"),
            Err(e) => e.to_string(),
        };
        let e = err();
        assert!(e.contains("model.ron is missing"), "{e}");
        // a search's best/ folder holds arch.ron instead
        fs::write(dir.path().join("arch.ron"), b"()").unwrap();
        let e = err();
        assert!(
            e.contains("model.bpk")
                && e.contains("TinyFormer single path")
                && e.contains("arch.ron"),
            "{e}"
        );
    }

    #[test]
    fn only_the_named_steps_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "last-4.bpk",
            "last-8.bpk",
            "last_optim-4.bpk",
            "last_optim-8.bpk",
            "best-4.bpk",
            "masks-4.json",
            "last.bpk",
            "notes.txt",
        ] {
            fs::write(dir.path().join(f), b"x").unwrap();
        }
        remove_stale_step_files(
            dir.path(),
            &[
                ("last", "bpk", Some(8)),
                ("last_optim", "bpk", Some(8)),
                ("best", "bpk", None),
            ],
        )
        .unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "last-8.bpk",
                "last.bpk",
                "last_optim-8.bpk",
                "masks-4.json",
                "notes.txt"
            ]
        );
    }
}
