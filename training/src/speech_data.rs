//! Speech data for the trainer: a Speech Commands folder (or a synthetic one made on demand),
//! turned into MFCC feature matrices, with KWT's augmentation on training samples.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datasets::{AugmentConfig, Clip, LoadConfig, Mfcc, MfccConfig, Task};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::data::{DataSplits, SampleSource};
use crate::error::TrainingError;

/// Where the data of a run comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum DataSpec {
    /// A folder in the official Speech Commands layout.
    SpeechCommands {
        folder: PathBuf,
        #[serde(default = "default_task")]
        task: Task,
        #[serde(default = "default_percentage")]
        silence_percentage: f64,
        #[serde(default = "default_percentage")]
        unknown_percentage: f64,
        #[serde(default)]
        augment: AugmentConfig,
        #[serde(default)]
        mfcc: MfccConfig,
        /// Seeds the choice of unknown and silence clips.
        #[serde(default)]
        seed: u64,
    },
    /// Synthetic key words generated in Rust into `folder` (once; reused while the
    /// generation parameters are unchanged), then read like a Speech Commands folder.
    SyntheticKeywords {
        folder: PathBuf,
        /// Default: the 35 words of Speech Commands v0.02.
        #[serde(default)]
        words: Option<Vec<String>>,
        per_word: usize,
        #[serde(default)]
        seed: u64,
        #[serde(default = "default_task")]
        task: Task,
        #[serde(default)]
        augment: AugmentConfig,
        #[serde(default)]
        mfcc: MfccConfig,
    },
}

fn default_task() -> Task {
    Task::Labels12
}

fn default_percentage() -> f64 {
    10.0
}

/// The recipe a synthetic folder was made with, stored beside it to detect a stale folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SynthRecipe {
    words: Vec<String>,
    per_word: usize,
    seed: u64,
}

const SYNTH_RECIPE_FILE: &str = "synth_recipe.ron";

/// The run's [`DataSpec`], written beside its checkpoints so that evaluation and quantization
/// read the data exactly as training did (task, silence/unknown share and seed, front end).
pub const DATA_SPEC_FILE: &str = "data.ron";

impl DataSpec {
    /// The same description for another task.
    pub fn with_task(mut self, new: Task) -> Self {
        match &mut self {
            DataSpec::SpeechCommands { task, .. } | DataSpec::SyntheticKeywords { task, .. } => {
                *task = new
            }
        }
        self
    }

    /// Where the spec of `model`'s run sits: `data.ron` in the model's folder.
    pub fn path_beside(model: &std::path::Path) -> PathBuf {
        model
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join(DATA_SPEC_FILE)
    }

    /// The spec a run wrote beside `model` (a checkpoint or an integer model in the run
    /// folder), if there is one.
    pub fn beside(model: &std::path::Path) -> Result<Option<Self>, TrainingError> {
        let path = Self::path_beside(model);
        if !path.is_file() {
            return Ok(None);
        }
        crate::checkpoint::read_ron(&path).map(Some)
    }

    /// Refuses to resume the run in `run_dir` on other data than it started with (the
    /// `data.ron` there); a folder without a run to resume passes.
    pub fn check_resumable(&self, run_dir: &std::path::Path) -> Result<(), TrainingError> {
        let path = run_dir.join(DATA_SPEC_FILE);
        if !run_dir.join(crate::trainer::STATE_FILE).is_file() || !path.is_file() {
            return Ok(());
        }
        let saved: DataSpec = crate::checkpoint::read_ron(&path)?;
        crate::run_match::check_resumable(
            run_dir,
            "data",
            &saved.with_canonical_folder(),
            &self.clone().with_canonical_folder(),
            &[],
        )
    }

    /// Writes it into `run_dir` (made if missing) as the `data.ron` that evaluation,
    /// quantization and a resume read.
    pub fn write_into(&self, run_dir: &std::path::Path) -> Result<(), TrainingError> {
        std::fs::create_dir_all(run_dir).map_err(|e| TrainingError::io(run_dir, e))?;
        crate::checkpoint::write_ron(&run_dir.join(DATA_SPEC_FILE), self)
    }

    /// A Speech Commands folder with default settings (no augmentation is applied by
    /// evaluation anyway).
    pub fn speech_commands(folder: PathBuf, task: Task) -> Self {
        DataSpec::SpeechCommands {
            folder,
            task,
            silence_percentage: default_percentage(),
            unknown_percentage: default_percentage(),
            augment: AugmentConfig::default(),
            mfcc: MfccConfig::default(),
            seed: 0,
        }
    }

    /// The same description with its folder made absolute where it exists, so that one
    /// folder named two ways compares equal.
    pub fn with_canonical_folder(mut self) -> Self {
        match &mut self {
            DataSpec::SpeechCommands { folder, .. }
            | DataSpec::SyntheticKeywords { folder, .. } => {
                *folder = crate::run_match::canonical_path(folder);
            }
        }
        self
    }

    /// The same data description reading `folder` instead (`--data`): always a Speech
    /// Commands folder.
    pub fn with_folder(self, folder: PathBuf) -> Self {
        match self {
            DataSpec::SpeechCommands {
                task,
                silence_percentage,
                unknown_percentage,
                augment,
                mfcc,
                seed,
                ..
            } => DataSpec::SpeechCommands {
                folder,
                task,
                silence_percentage,
                unknown_percentage,
                augment,
                mfcc,
                seed,
            },
            DataSpec::SyntheticKeywords {
                task,
                augment,
                mfcc,
                seed,
                ..
            } => DataSpec::SpeechCommands {
                folder,
                task,
                silence_percentage: default_percentage(),
                unknown_percentage: default_percentage(),
                augment,
                mfcc,
                seed,
            },
        }
    }

    /// Reads (and for a synthetic set, first makes) the data and returns the three splits.
    /// `augment` enables the augmentation of training samples.
    pub fn load(&self, augment: bool) -> Result<DataSplits, TrainingError> {
        let data_err = |e: datasets::DatasetError| TrainingError::Data(e.to_string());
        let (folder, load_config, augment_config, mfcc) = match self {
            DataSpec::SpeechCommands {
                folder,
                task,
                silence_percentage,
                unknown_percentage,
                augment,
                mfcc,
                seed,
            } => (
                folder.clone(),
                LoadConfig {
                    task: task.clone(),
                    silence_percentage: *silence_percentage,
                    unknown_percentage: *unknown_percentage,
                    seed: *seed,
                    ..LoadConfig::default()
                },
                augment.clone(),
                mfcc.clone(),
            ),
            DataSpec::SyntheticKeywords {
                folder,
                words,
                per_word,
                seed,
                task,
                augment,
                mfcc,
            } => {
                let words = words
                    .clone()
                    .unwrap_or_else(|| datasets::WORDS_V2.iter().map(|w| w.to_string()).collect());
                ensure_synthetic(folder, &words, *per_word, *seed)?;
                (
                    folder.clone(),
                    LoadConfig {
                        task: task.clone(),
                        seed: *seed,
                        ..LoadConfig::default()
                    },
                    augment.clone(),
                    mfcc.clone(),
                )
            }
        };
        augment_config.validate().map_err(data_err)?;
        let mfcc = Mfcc::new(mfcc).map_err(data_err)?;
        let frames = mfcc.num_frames(datasets::wav::CLIP_SAMPLES);
        let features = mfcc.num_coefficients();
        let sc = datasets::load_speech_commands(&folder, &load_config).map_err(data_err)?;
        let background = Arc::new(sc.background);
        let source = |clips: Vec<Clip>, augment: Option<AugmentConfig>| -> Box<dyn SampleSource> {
            Box::new(SpeechSource {
                clips,
                background: background.clone(),
                augment,
                mfcc: mfcc.clone(),
            })
        };
        Ok(DataSplits {
            train: source(sc.training, augment.then_some(augment_config)),
            valid: source(sc.validation, None),
            test: source(sc.testing, None),
            labels: sc.labels,
            frames,
            features,
        })
    }
}

fn ensure_synthetic(
    folder: &Path,
    words: &[String],
    per_word: usize,
    seed: u64,
) -> Result<(), TrainingError> {
    let recipe = SynthRecipe {
        words: words.to_vec(),
        per_word,
        seed,
    };
    let recipe_path = folder.join(SYNTH_RECIPE_FILE);
    if recipe_path.is_file()
        && crate::checkpoint::read_ron::<SynthRecipe>(&recipe_path).is_ok_and(|r| r == recipe)
    {
        return Ok(());
    }
    tracing::info!(
        "generating {} synthetic words x {per_word} clips into {}",
        words.len(),
        folder.display()
    );
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    datasets::synth_keywords(folder, &refs, per_word, seed)
        .map_err(|e| TrainingError::Data(e.to_string()))?;
    crate::checkpoint::write_ron(&recipe_path, &recipe)
}

/// Clips of one split; features are computed per request so augmentation differs per epoch.
struct SpeechSource {
    clips: Vec<Clip>,
    background: Arc<Vec<Vec<f32>>>,
    augment: Option<AugmentConfig>,
    mfcc: Mfcc,
}

thread_local! {
    // `Mfcc` reuses its FFT buffers, so each worker thread keeps its own copy.
    static MFCC: RefCell<Option<Mfcc>> = const { RefCell::new(None) };
}

impl SampleSource for SpeechSource {
    fn len(&self) -> usize {
        self.clips.len()
    }

    fn sample(
        &self,
        index: usize,
        augment: Option<u64>,
    ) -> Result<(Vec<f32>, usize), TrainingError> {
        let data_err = |e: datasets::DatasetError| TrainingError::Data(e.to_string());
        let clip = &self.clips[index];
        let plan = self.augment.as_ref().zip(augment);
        let mut rng = plan.map(|(_, seed)| StdRng::seed_from_u64(seed));
        let wave = match (plan, rng.as_mut()) {
            (Some((cfg, _)), Some(rng)) => cfg
                .augment_waveform(&clip.samples, &self.background, rng)
                .map_err(data_err)?,
            _ => clip.samples.clone(),
        };
        let mut features = MFCC
            .with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot
                    .as_ref()
                    .is_none_or(|m| m.config() != self.mfcc.config())
                {
                    *slot = Some(self.mfcc.clone());
                }
                slot.as_mut().expect("set above").compute(&wave)
            })
            .map_err(data_err)?;
        if let (Some((cfg, _)), Some(rng)) = (plan, rng.as_mut()) {
            let frames = self.mfcc.num_frames(wave.len());
            cfg.augment_features(&mut features, frames, self.mfcc.num_coefficients(), rng)
                .map_err(data_err)?;
        }
        Ok((features, clip.label))
    }
}
