//! Reader for the Speech Commands folder layout (v0.01 and v0.02): one folder per word,
//! `validation_list.txt`, `testing_list.txt` and `_background_noise_/`. Builds the 12-label task
//! of TensorFlow's input_data.py (10 keywords + `_silence_` + `_unknown_`) or the all-words task.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::error::{DatasetError, Result};
use crate::splits::{
    BACKGROUND_NOISE_DIR, Split, TESTING_LIST, VALIDATION_LIST, wav_files, word_folders,
};
use crate::wav::{CLIP_SAMPLES, read_clip, read_wav};

/// The 35 words of Speech Commands v0.02, sorted.
pub const WORDS_V2: [&str; 35] = [
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four",
    "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right",
    "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
];
/// The 30 words of Speech Commands v0.01, sorted (v0.02 added backward, follow, forward, learn,
/// visual).
pub const WORDS_V1: [&str; 30] = [
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house", "left",
    "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop", "three",
    "tree", "two", "up", "wow", "yes", "zero",
];
/// The 10 keywords of the standard 12-label task, in TensorFlow's order.
pub const KEYWORDS_12: [&str; 10] = [
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
];
pub const SILENCE_LABEL: &str = "_silence_";
pub const UNKNOWN_LABEL: &str = "_unknown_";

/// Which classification task to build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Task {
    /// `_silence_`, `_unknown_`, then [`KEYWORDS_12`] (TensorFlow's label order).
    Labels12,
    /// Every word as its own class: the 35 words of v0.02, or v0.01's 30 if only those exist.
    /// No silence or unknown class.
    Labels35,
    /// Like `Labels12` with other keywords: `_silence_`, `_unknown_`, then these words.
    Keywords(Vec<String>),
}

/// How to build the task; silence and unknown sizes are percentages of a split's keyword clips.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LoadConfig {
    pub task: Task,
    pub silence_percentage: f64,
    pub unknown_percentage: f64,
    /// Silence clips are background crops scaled by a gain uniform in [0, silence_volume]
    /// (TensorFlow uses [0, 1]).
    pub silence_volume: f32,
    /// Seeds the choice of unknown clips and the silence crops.
    pub seed: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            task: Task::Labels12,
            silence_percentage: 10.0,
            unknown_percentage: 10.0,
            silence_volume: 1.0,
            seed: 0,
        }
    }
}

/// Where a clip's audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipSource {
    File(PathBuf),
    /// A crop of background noise (or zeros when the data set has none), made at load time.
    Silence,
}

/// One example of the index: its audio source and label index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub source: ClipSource,
    pub label: usize,
}

/// How one split was assembled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitStats {
    /// Clips of the task's own words.
    pub keyword: usize,
    pub silence: usize,
    pub unknown_used: usize,
    /// Non-keyword clips of this split that were not sampled as `_unknown_`.
    pub unknown_left_out: usize,
}

/// Per-split statistics of a built task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub training: SplitStats,
    pub validation: SplitStats,
    pub testing: SplitStats,
}

/// The file lists of a task, before any audio is read.
#[derive(Debug, Clone)]
pub struct DatasetIndex {
    pub root: PathBuf,
    pub labels: Vec<String>,
    pub training: Vec<IndexEntry>,
    pub validation: Vec<IndexEntry>,
    pub testing: Vec<IndexEntry>,
    pub background_files: Vec<PathBuf>,
    pub stats: LoadStats,
    silence_volume: f32,
    seed: u64,
}

/// One loaded example: exactly [`CLIP_SAMPLES`] samples and a label index.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub samples: Vec<f32>,
    pub label: usize,
}

/// A task with its audio in memory.
#[derive(Debug, Clone)]
pub struct SpeechCommands {
    pub labels: Vec<String>,
    pub training: Vec<Clip>,
    pub validation: Vec<Clip>,
    pub testing: Vec<Clip>,
    /// The background recordings at full length (for augmentation).
    pub background: Vec<Vec<f32>>,
    pub stats: LoadStats,
}

impl SpeechCommands {
    pub fn split(&self, split: Split) -> &[Clip] {
        match split {
            Split::Training => &self.training,
            Split::Validation => &self.validation,
            Split::Testing => &self.testing,
        }
    }
}

/// Indexes and loads a task in one step.
pub fn load(root: &Path, config: &LoadConfig) -> Result<SpeechCommands> {
    index(root, config)?.load()
}

/// Builds the file lists of a task from a Speech Commands folder without reading audio.
pub fn index(root: &Path, config: &LoadConfig) -> Result<DatasetIndex> {
    for (field, v) in [
        ("LoadConfig.silence_percentage", config.silence_percentage),
        ("LoadConfig.unknown_percentage", config.unknown_percentage),
    ] {
        if !(0.0..=1000.0).contains(&v) {
            return Err(DatasetError::InvalidConfig {
                field,
                message: format!("must be a percentage in [0, 1000], found {v}"),
            });
        }
    }
    if !(config.silence_volume >= 0.0 && config.silence_volume.is_finite()) {
        return Err(DatasetError::InvalidConfig {
            field: "LoadConfig.silence_volume",
            message: format!("must be finite and >= 0, found {}", config.silence_volume),
        });
    }
    let words = word_folders(root)?;
    if words.is_empty() {
        return Err(DatasetError::NoWordFolders(root.to_path_buf()));
    }
    let (labels, extra_classes) = task_labels(root, &words, &config.task)?;
    let validation_set = read_list(root, VALIDATION_LIST)?;
    let testing_set = read_list(root, TESTING_LIST)?;

    // Sort every file into (split, word) buckets; `word` is the folder name.
    let mut buckets: [Vec<(String, PathBuf)>; 3] = Default::default();
    for word in &words {
        for file in wav_files(&root.join(word))? {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let rel = format!("{word}/{name}");
            let slot = if validation_set.contains(&rel) {
                1
            } else if testing_set.contains(&rel) {
                2
            } else {
                0
            };
            buckets[slot].push((word.clone(), file));
        }
    }

    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut stats = LoadStats::default();
    let mut splits: [Vec<IndexEntry>; 3] = Default::default();
    for (slot, bucket) in buckets.into_iter().enumerate() {
        let mut entries = Vec::new();
        let mut unknown = Vec::new();
        for (word, file) in bucket {
            match labels.iter().position(|l| *l == word) {
                Some(label) => entries.push(IndexEntry {
                    source: ClipSource::File(file),
                    label,
                }),
                None => unknown.push(file),
            }
        }
        let mut s = SplitStats {
            keyword: entries.len(),
            ..SplitStats::default()
        };
        if extra_classes {
            let share = |pct: f64| (entries.len() as f64 * pct / 100.0).ceil() as usize;
            s.silence = share(config.silence_percentage);
            s.unknown_used = share(config.unknown_percentage).min(unknown.len());
            s.unknown_left_out = unknown.len() - s.unknown_used;
            unknown.shuffle(&mut rng);
            entries.extend(unknown.drain(..s.unknown_used).map(|f| IndexEntry {
                source: ClipSource::File(f),
                label: 1,
            }));
            entries.extend((0..s.silence).map(|_| IndexEntry {
                source: ClipSource::Silence,
                label: 0,
            }));
        } else {
            s.unknown_left_out = unknown.len();
        }
        // Same order for the same seed, and classes interleaved for whoever reads sequentially.
        entries.shuffle(&mut rng);
        splits[slot] = entries;
        match slot {
            0 => stats.training = s,
            1 => stats.validation = s,
            _ => stats.testing = s,
        }
    }
    for (name, s) in [
        ("training", stats.training),
        ("validation", stats.validation),
        ("testing", stats.testing),
    ] {
        tracing::info!(
            split = name,
            keyword = s.keyword,
            silence = s.silence,
            unknown_used = s.unknown_used,
            unknown_left_out = s.unknown_left_out,
            "speech commands split built"
        );
    }

    let bg_dir = root.join(BACKGROUND_NOISE_DIR);
    let background_files = if bg_dir.is_dir() {
        wav_files(&bg_dir)?
    } else {
        Vec::new()
    };
    if background_files.is_empty() && extra_classes {
        tracing::warn!(folder = %bg_dir.display(), "no background noise: silence clips will be all zeros");
    }
    let [training, validation, testing] = splits;
    Ok(DatasetIndex {
        root: root.to_path_buf(),
        labels,
        training,
        validation,
        testing,
        background_files,
        stats,
        silence_volume: config.silence_volume,
        seed: config.seed,
    })
}

/// The label names of a task, and whether it has the silence and unknown classes.
fn task_labels(root: &Path, words: &[String], task: &Task) -> Result<(Vec<String>, bool)> {
    let require = |wanted: &[&str]| -> Result<()> {
        match wanted.iter().find(|w| !words.iter().any(|f| f == *w)) {
            Some(w) => Err(DatasetError::MissingWord {
                root: root.to_path_buf(),
                word: (*w).to_string(),
                found: words.join(", "),
            }),
            None => Ok(()),
        }
    };
    let with_extras = |keywords: &[&str]| {
        let mut labels = vec![SILENCE_LABEL.to_string(), UNKNOWN_LABEL.to_string()];
        labels.extend(keywords.iter().map(|w| (*w).to_string()));
        labels
    };
    match task {
        Task::Labels12 => {
            require(&KEYWORDS_12)?;
            Ok((with_extras(&KEYWORDS_12), true))
        }
        Task::Keywords(list) => {
            let list: Vec<&str> = list.iter().map(String::as_str).collect();
            if list.is_empty() {
                return Err(DatasetError::InvalidConfig {
                    field: "Task::Keywords",
                    message: "needs at least one keyword".into(),
                });
            }
            require(&list)?;
            Ok((with_extras(&list), true))
        }
        Task::Labels35 => {
            // v0.01 lacks five of the v0.02 words; fall back to its 30 when any of those is absent.
            let v2 = WORDS_V2.iter().all(|w| words.iter().any(|f| f == w));
            let set: &[&str] = if v2 { &WORDS_V2 } else { &WORDS_V1 };
            require(set)?;
            Ok((set.iter().map(|w| (*w).to_string()).collect(), false))
        }
    }
}

/// Reads a split list into a set of `word/file.wav` entries, checking that each one exists.
fn read_list(root: &Path, name: &str) -> Result<HashSet<String>> {
    let path = root.join(name);
    if !path.is_file() {
        return Err(DatasetError::MissingSplitList(path));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| DatasetError::io(&path, "reading split list", e))?;
    let mut set = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.trim();
        if entry.is_empty() {
            continue;
        }
        if !root.join(entry).is_file() {
            return Err(DatasetError::ListedFileMissing {
                list: path,
                line: i + 1,
                entry: entry.to_string(),
            });
        }
        set.insert(entry.replace('\\', "/"));
    }
    Ok(set)
}

impl DatasetIndex {
    pub fn split(&self, split: Split) -> &[IndexEntry] {
        match split {
            Split::Training => &self.training,
            Split::Validation => &self.validation,
            Split::Testing => &self.testing,
        }
    }

    /// Reads every clip (fitted to one second) and the background recordings into memory.
    pub fn load(&self) -> Result<SpeechCommands> {
        let background = self
            .background_files
            .iter()
            .map(|p| read_wav(p))
            .collect::<Result<Vec<_>>>()?;
        // Silence crops get their own stream so they do not depend on the file order.
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x5EED_511E_0CE5);
        let mut load_split = |entries: &[IndexEntry]| -> Result<Vec<Clip>> {
            let files: Vec<&Path> = entries
                .iter()
                .filter_map(|e| match &e.source {
                    ClipSource::File(p) => Some(p.as_path()),
                    ClipSource::Silence => None,
                })
                .collect();
            let mut audio = read_clips_parallel(&files)?.into_iter();
            entries
                .iter()
                .map(|e| {
                    let samples = match e.source {
                        ClipSource::File(_) => audio.next().unwrap_or_default(),
                        ClipSource::Silence => {
                            silence_clip(&background, self.silence_volume, &mut rng)
                        }
                    };
                    Ok(Clip {
                        samples,
                        label: e.label,
                    })
                })
                .collect()
        };
        Ok(SpeechCommands {
            labels: self.labels.clone(),
            training: load_split(&self.training)?,
            validation: load_split(&self.validation)?,
            testing: load_split(&self.testing)?,
            background,
            stats: self.stats,
        })
    }
}

/// A one-second crop of a random background recording at a random offset and gain.
fn silence_clip(background: &[Vec<f32>], volume: f32, rng: &mut StdRng) -> Vec<f32> {
    let mut clip = vec![0.0; CLIP_SAMPLES];
    let usable: Vec<&Vec<f32>> = background.iter().filter(|b| !b.is_empty()).collect();
    if usable.is_empty() {
        return clip;
    }
    let noise = usable[rng.random_range(0..usable.len())];
    let gain = rng.random_range(0.0..=volume);
    crate::augment::add_crop(&mut clip, noise, gain, rng);
    clip
}

/// Reads clips on all cores; order is kept, and the first error (in file order) is returned.
fn read_clips_parallel(files: &[&Path]) -> Result<Vec<Vec<f32>>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|p| read_clip(p))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for h in handles {
            // A panic inside read_clip would be a bug of ours, not bad input: propagate it.
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splits::{SplitPercentages, write_split_lists};
    use crate::wav::write_wav;

    /// Writes `n` tiny clips per word (value = word index, so labels can be checked from audio)
    /// plus split lists and, optionally, one background recording.
    fn fixture(words: &[&str], n: usize, background: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (w, word) in words.iter().enumerate() {
            std::fs::create_dir_all(dir.path().join(word)).unwrap();
            for i in 0..n {
                let name = format!("{:08x}_nohash_0.wav", i * 7919 + 1);
                let v = (w + 1) as f32 / 64.0;
                write_wav(&dir.path().join(word).join(name), &[v; 100]).unwrap();
            }
        }
        if background {
            let bg = dir.path().join(BACKGROUND_NOISE_DIR);
            std::fs::create_dir_all(&bg).unwrap();
            write_wav(&bg.join("noise.wav"), &vec![0.5; 2 * CLIP_SAMPLES]).unwrap();
        }
        write_split_lists(dir.path(), SplitPercentages::default()).unwrap();
        dir
    }

    #[test]
    fn labels12_adds_silence_and_unknown_and_is_seeded() {
        let mut words: Vec<&str> = KEYWORDS_12.to_vec();
        words.extend(["cat", "dog", "bird"]);
        let dir = fixture(&words, 30, true);
        let cfg = LoadConfig::default();
        let data = load(dir.path(), &cfg).unwrap();
        assert_eq!(data.labels.len(), 12);
        assert_eq!(data.labels[0], SILENCE_LABEL);
        assert_eq!(data.labels[2], "yes");
        let s = data.stats.training;
        let all = words.len() * 30;
        let total: usize = [
            data.stats.training,
            data.stats.validation,
            data.stats.testing,
        ]
        .iter()
        .map(|s| s.keyword + s.unknown_used + s.unknown_left_out)
        .sum();
        assert_eq!(total, all, "{:?}", data.stats);
        assert_eq!(s.silence, (s.keyword as f64 * 0.1).ceil() as usize);
        assert_eq!(s.unknown_used, (s.keyword as f64 * 0.1).ceil() as usize);
        assert_eq!(data.training.len(), s.keyword + s.silence + s.unknown_used);
        for clip in &data.training {
            assert_eq!(clip.samples.len(), CLIP_SAMPLES);
            match clip.label {
                // Silence: a crop of the 0.5 background at gain in [0, 1].
                0 => assert!(clip.samples.iter().all(|&v| (0.0..=0.5).contains(&v))),
                // Unknown: one of the three extra words (indices 10..13 -> values 11..13 / 64).
                1 => assert!(clip.samples[0] > 10.5 / 64.0),
                l => assert!((clip.samples[0] - (l - 1) as f32 / 64.0).abs() < 1e-4),
            }
        }
        let again = load(dir.path(), &cfg).unwrap();
        assert_eq!(again.training, data.training);
        let other = load(dir.path(), &LoadConfig { seed: 1, ..cfg }).unwrap();
        assert_ne!(other.training, data.training);
    }

    #[test]
    fn silence_is_zero_without_background() {
        let dir = fixture(&KEYWORDS_12, 5, false);
        let data = load(dir.path(), &LoadConfig::default()).unwrap();
        assert!(data.stats.training.silence > 0);
        for clip in data.training.iter().filter(|c| c.label == 0) {
            assert!(clip.samples.iter().all(|&v| v == 0.0));
        }
        assert_eq!(data.stats.training.unknown_used, 0);
    }

    #[test]
    fn labels35_uses_v1_words_when_v2_extras_are_absent() {
        let dir = fixture(&WORDS_V1, 1, false);
        let idx = index(
            dir.path(),
            &LoadConfig {
                task: Task::Labels35,
                ..LoadConfig::default()
            },
        )
        .unwrap();
        assert_eq!(idx.labels.len(), 30);
        let n = idx.training.len() + idx.validation.len() + idx.testing.len();
        assert_eq!(n, 30);
        assert_eq!(idx.stats.training.silence, 0);
    }

    #[test]
    fn reports_bad_folders_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LoadConfig::default();
        let missing = dir.path().join("absent");
        assert!(matches!(
            index(&missing, &cfg),
            Err(DatasetError::MissingRoot(_))
        ));
        assert!(matches!(
            index(dir.path(), &cfg),
            Err(DatasetError::NoWordFolders(_))
        ));

        let data = fixture(&["yes"], 2, false);
        let msg = index(data.path(), &cfg).unwrap_err().to_string();
        assert!(msg.contains("`no`"), "{msg}");

        let data = fixture(&KEYWORDS_12, 2, false);
        std::fs::remove_file(data.path().join(TESTING_LIST)).unwrap();
        let err = index(data.path(), &cfg).unwrap_err();
        assert!(err.to_string().contains(TESTING_LIST), "{err}");

        std::fs::write(data.path().join(TESTING_LIST), "yes/ghost.wav\n").unwrap();
        let msg = index(data.path(), &cfg).unwrap_err().to_string();
        assert!(msg.contains("ghost.wav") && msg.contains("line 1"), "{msg}");

        std::fs::write(data.path().join(TESTING_LIST), "").unwrap();
        std::fs::write(data.path().join("go").join("broken.wav"), b"RIFFxx").unwrap();
        let msg = load(data.path(), &cfg).unwrap_err().to_string();
        assert!(msg.contains("broken.wav"), "{msg}");
    }
}
