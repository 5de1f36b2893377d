//! The official Speech Commands split rule (TensorFlow's `input_data.which_set`): a file's split is
//! a pure function of its speaker prefix, so every take of one speaker lands in the same split and
//! adding files later never moves old ones.

use std::path::{Path, PathBuf};

use crate::error::{DatasetError, Result};

/// TensorFlow's `MAX_NUM_WAVS_PER_CLASS` (2^27 - 1).
pub const MAX_NUM_WAVS_PER_CLASS: u64 = (1 << 27) - 1;
/// File holding the validation files of a data set, one relative path a line.
pub const VALIDATION_LIST: &str = "validation_list.txt";
/// File holding the testing files of a data set, one relative path a line.
pub const TESTING_LIST: &str = "testing_list.txt";
/// Folder of long noise recordings; not a word, never listed in a split.
pub const BACKGROUND_NOISE_DIR: &str = "_background_noise_";

/// One of the three partitions of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Split {
    Training,
    Validation,
    Testing,
}

/// Percentages of files (by hash) given to validation and testing; the rest is training.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SplitPercentages {
    pub validation: f64,
    pub testing: f64,
}

impl Default for SplitPercentages {
    fn default() -> Self {
        Self {
            validation: 10.0,
            testing: 10.0,
        }
    }
}

/// The part of a file name that decides its split: the base name with `_nohash_...` removed.
pub fn hash_name(file_name: &str) -> &str {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    match base.find("_nohash_") {
        Some(i) => &base[..i],
        None => base,
    }
}

/// TensorFlow's percentage hash of a file name, in [0, 100].
pub fn split_percentage(file_name: &str) -> f64 {
    let digest = sha1_smol::Sha1::from(hash_name(file_name)).digest().bytes();
    // int(hex, 16) mod (MAX + 1): the modulus is 2^27, so only the lowest 27 bits of the 160-bit
    // big-endian number matter, and they sit in its last four bytes.
    let low = u32::from_be_bytes([digest[16], digest[17], digest[18], digest[19]]);
    let residue = u64::from(low) & MAX_NUM_WAVS_PER_CLASS;
    residue as f64 * (100.0 / MAX_NUM_WAVS_PER_CLASS as f64)
}

/// Which split a file belongs to under the official rule.
pub fn which_set(file_name: &str, percentages: SplitPercentages) -> Split {
    let p = split_percentage(file_name);
    if p < percentages.validation {
        Split::Validation
    } else if p < percentages.validation + percentages.testing {
        Split::Testing
    } else {
        Split::Training
    }
}

/// Counts of files written into each list by [`write_split_lists`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitCounts {
    pub training: usize,
    pub validation: usize,
    pub testing: usize,
}

/// Word folders of a data set root: every sub-folder except those starting with `_`, sorted.
pub fn word_folders(root: &Path) -> Result<Vec<String>> {
    if !root.is_dir() {
        return Err(DatasetError::MissingRoot(root.to_path_buf()));
    }
    let mut words = Vec::new();
    for entry in read_dir(root)? {
        if entry.is_dir()
            && let Some(name) = entry.file_name().and_then(|n| n.to_str())
            && !name.starts_with('_')
            && !name.starts_with('.')
        {
            words.push(name.to_string());
        }
    }
    words.sort();
    Ok(words)
}

/// The `.wav` files directly inside `dir`, sorted by name.
pub fn wav_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = read_dir(dir)?
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    Ok(files)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, "listing folder", e))?;
    entries
        .map(|e| {
            e.map(|e| e.path())
                .map_err(|e| DatasetError::io(dir, "listing folder", e))
        })
        .collect()
}

/// Writes `validation_list.txt` and `testing_list.txt` for every WAV in the word folders of `root`
/// (paths `word/file.wav`, sorted), using the official rule.
pub fn write_split_lists(root: &Path, percentages: SplitPercentages) -> Result<SplitCounts> {
    let mut validation = String::new();
    let mut testing = String::new();
    let mut counts = SplitCounts::default();
    for word in word_folders(root)? {
        for file in wav_files(&root.join(&word))? {
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let line = format!("{word}/{name}\n");
            match which_set(name, percentages) {
                Split::Validation => {
                    validation.push_str(&line);
                    counts.validation += 1;
                }
                Split::Testing => {
                    testing.push_str(&line);
                    counts.testing += 1;
                }
                Split::Training => counts.training += 1,
            }
        }
    }
    for (name, text) in [(VALIDATION_LIST, validation), (TESTING_LIST, testing)] {
        let path = root.join(name);
        std::fs::write(&path, text)
            .map_err(|e| DatasetError::io(&path, "writing split list", e))?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_name_strips_nohash_suffix_and_folder() {
        assert_eq!(hash_name("yes/0a7c2a8d_nohash_0.wav"), "0a7c2a8d");
        assert_eq!(hash_name("0a7c2a8d_nohash_12.wav"), "0a7c2a8d");
        assert_eq!(hash_name("foo.wav"), "foo.wav");
    }

    #[test]
    fn matches_python_reference_values() {
        // Computed with python3 hashlib, exactly as TensorFlow's which_set does:
        //   h = re.sub(r'_nohash_.*$', '', os.path.basename(n))
        //   p = (int(hashlib.sha1(h.encode()).hexdigest(), 16) % (2**27)) * (100.0 / (2**27 - 1))
        let cases = [
            (
                "yes/0a7c2a8d_nohash_0.wav",
                56.836387193474074,
                Split::Training,
            ),
            (
                "no/0b09edd3_nohash_1.wav",
                44.480195972920924,
                Split::Training,
            ),
            ("foo.wav", 35.58048706934219, Split::Training),
            (
                "00000000_nohash_0.wav",
                9.555729549793373,
                Split::Validation,
            ),
            (
                "9e3779b1_nohash_0.wav",
                1.7013542480867672,
                Split::Validation,
            ),
            ("be1e0823_nohash_0.wav", 16.829276955345847, Split::Testing),
            ("c6ef3620_nohash_0.wav", 14.580752064144253, Split::Testing),
            ("daa66d13_nohash_0.wav", 79.2701518481236, Split::Training),
        ];
        for (name, pct, split) in cases {
            let got = split_percentage(name);
            assert!((got - pct).abs() < 1e-9, "{name}: {got} vs {pct}");
            assert_eq!(
                which_set(name, SplitPercentages::default()),
                split,
                "{name}"
            );
        }
    }

    #[test]
    fn writes_lists_for_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (word, file) in [
            ("yes", "00000000_nohash_0.wav"),
            ("yes", "be1e0823_nohash_0.wav"),
            ("no", "daa66d13_nohash_0.wav"),
            ("no", "9e3779b1_nohash_3.wav"),
            (BACKGROUND_NOISE_DIR, "be1e0823_nohash_1.wav"),
        ] {
            std::fs::create_dir_all(root.join(word)).unwrap();
            crate::wav::write_wav(&root.join(word).join(file), &[0.0; 10]).unwrap();
        }
        let counts = write_split_lists(root, SplitPercentages::default()).unwrap();
        assert_eq!(
            counts,
            SplitCounts {
                training: 1,
                validation: 2,
                testing: 1
            }
        );
        let val = std::fs::read_to_string(root.join(VALIDATION_LIST)).unwrap();
        assert_eq!(val, "no/9e3779b1_nohash_3.wav\nyes/00000000_nohash_0.wav\n");
        let test = std::fs::read_to_string(root.join(TESTING_LIST)).unwrap();
        assert_eq!(test, "yes/be1e0823_nohash_0.wav\n");
        assert!(matches!(
            write_split_lists(&root.join("nope"), SplitPercentages::default()),
            Err(DatasetError::MissingRoot(_))
        ));
    }
}
