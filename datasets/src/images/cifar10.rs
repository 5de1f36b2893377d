//! The CIFAR-10 binary format: `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`,
//! each a run of 3073-byte records (one label byte, then the 32x32 red, green and blue planes),
//! with optional class names in `batches.meta.txt`.

use std::path::{Path, PathBuf};

use super::set::ImageSet;
use super::{CIFAR10_CLASSES, check_labels};
use crate::error::{DatasetError, Result};

/// Side of a CIFAR-10 image.
const SIDE: usize = 32;
/// Bytes of one CIFAR-10 image (three 32x32 planes).
const IMAGE_LEN: usize = 3 * SIDE * SIDE;
/// Bytes of one record: the label byte and the image.
pub const CIFAR10_RECORD_LEN: usize = 1 + IMAGE_LEN;
/// Folder that the official archive unpacks to.
const ARCHIVE_DIR: &str = "cifar-10-batches-bin";
const META_FILE: &str = "batches.meta.txt";
const TRAIN_BATCHES: usize = 5;

/// Reads one CIFAR-10 batch file into a 3x32x32 [`ImageSet`] with the given class names.
pub fn read_cifar10_batch(path: &Path, classes: &[String]) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DatasetError::MissingFile {
                path: path.into(),
                expected: format!("a CIFAR-10 batch of {CIFAR10_RECORD_LEN}-byte records"),
            }
        } else {
            DatasetError::io(path, "reading", e)
        }
    })?;
    if bytes.len() % CIFAR10_RECORD_LEN != 0 {
        return Err(DatasetError::RecordSize {
            path: path.into(),
            size: bytes.len() as u64,
            record: CIFAR10_RECORD_LEN,
        });
    }
    let count = bytes.len() / CIFAR10_RECORD_LEN;
    let mut labels = Vec::with_capacity(count);
    let mut images = Vec::with_capacity(count * IMAGE_LEN);
    for record in bytes.chunks_exact(CIFAR10_RECORD_LEN) {
        labels.push(record[0]);
        images.extend_from_slice(&record[1..]);
    }
    check_labels(path, &labels, classes.len())?;
    Ok(ImageSet {
        channels: 3,
        height: SIDE,
        width: SIDE,
        images,
        labels,
        classes: classes.to_vec(),
    })
}

/// Whether `dir` holds CIFAR-10's batches, itself or in `cifar-10-batches-bin` (as
/// [`read_cifar10`] finds them), rather than another image set.
pub fn is_cifar10_dir(dir: &Path) -> bool {
    dir.join(FIRST_BATCH).is_file() || dir.join(ARCHIVE_DIR).is_dir()
}

const FIRST_BATCH: &str = "data_batch_1.bin";

/// The folder holding the batches: `dir` itself, or `dir/cifar-10-batches-bin` when `dir` has no
/// `data_batch_1.bin` but that subfolder exists.
fn batches_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(DatasetError::MissingRoot(dir.into()));
    }
    let nested = dir.join(ARCHIVE_DIR);
    if !dir.join(FIRST_BATCH).is_file() && nested.is_dir() {
        Ok(nested)
    } else {
        Ok(dir.into())
    }
}

/// Class names from `batches.meta.txt` (one a line, blank lines ignored) if the file exists,
/// else the ten CIFAR-10 names.
fn class_names(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(META_FILE);
    if !path.is_file() {
        return Ok(CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| DatasetError::io(&path, "reading", e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() || names.len() > 256 {
        return Err(DatasetError::ClassNames {
            path,
            message: format!(
                "holds {} class names, expected 1 to 256 (one a line)",
                names.len()
            ),
        });
    }
    Ok(names)
}

/// Reads a CIFAR-10 binary folder (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`,
/// optional `batches.meta.txt`; or the `cifar-10-batches-bin` folder inside `dir`) as
/// `(train, test)`.
pub fn read_cifar10(dir: impl AsRef<Path>) -> Result<(ImageSet, ImageSet)> {
    read_cifar10_files(dir.as_ref()).map_err(|e| e.with_hint_if_missing(CIFAR10_HINT))
}

/// How to get CIFAR-10 when it is not where a config says.
pub const CIFAR10_HINT: &str = "get CIFAR-10's binary version with `nas data download --dataset \
    cifar10 --out DIR` (needs internet), or unpack cifar-10-binary.tar.gz \
    (https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz) into the folder";

fn read_cifar10_files(dir: &Path) -> Result<(ImageSet, ImageSet)> {
    let dir = batches_dir(dir)?;
    let classes = class_names(&dir)?;
    let mut files: Vec<(PathBuf, String)> = (1..=TRAIN_BATCHES)
        .map(|k| {
            let what = format!("CIFAR-10 training batch {k} of {TRAIN_BATCHES}");
            (dir.join(format!("data_batch_{k}.bin")), what)
        })
        .collect();
    files.push((dir.join("test_batch.bin"), "the CIFAR-10 test batch".into()));
    for (path, what) in &files {
        if !path.is_file() {
            return Err(DatasetError::MissingFile {
                path: path.clone(),
                expected: format!("{what}, {CIFAR10_RECORD_LEN}-byte records"),
            });
        }
    }
    let test = read_cifar10_batch(&files[TRAIN_BATCHES].0, &classes)?;
    let mut train = read_cifar10_batch(&files[0].0, &classes)?;
    for (path, _) in &files[1..TRAIN_BATCHES] {
        let batch = read_cifar10_batch(path, &classes)?;
        train.images.extend_from_slice(&batch.images);
        train.labels.extend_from_slice(&batch.labels);
    }
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `labels.len()` records; image k has every pixel of plane c equal to `10 * k + c`.
    fn batch(first: u8, labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, &l) in labels.iter().enumerate() {
            b.push(l);
            for c in 0..3u8 {
                b.extend(std::iter::repeat_n(first + 10 * k as u8 + c, SIDE * SIDE));
            }
        }
        b
    }

    fn write_folder(dir: &Path) {
        for k in 1..=5u8 {
            let labels = [k - 1, k + 4];
            std::fs::write(
                dir.join(format!("data_batch_{k}.bin")),
                batch(k * 20, &labels),
            )
            .unwrap();
        }
        std::fs::write(dir.join("test_batch.bin"), batch(0, &[3, 9, 0])).unwrap();
    }

    #[test]
    fn reads_folder_with_default_names() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path());
        let (train, test) = read_cifar10(dir.path()).unwrap();
        assert_eq!((train.len(), test.len()), (10, 3));
        assert_eq!((train.channels, train.height, train.width), (3, 32, 32));
        assert_eq!(train.labels, vec![0, 5, 1, 6, 2, 7, 3, 8, 4, 9]);
        assert_eq!(test.labels, vec![3, 9, 0]);
        assert_eq!(train.classes[1], "automobile");
        // Third training image: batch 2, record 0, planes 40, 41, 42.
        let img = train.image(2);
        assert_eq!((img[0], img[1024], img[2048], img[3071]), (40, 41, 42, 42));
        assert_eq!(test.image(1)[0], 10);
    }

    #[test]
    fn reads_nested_archive_folder_and_meta_names() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join(ARCHIVE_DIR);
        std::fs::create_dir(&nested).unwrap();
        write_folder(&nested);
        let names: Vec<String> = (0..10).map(|k| format!("c{k}")).collect();
        std::fs::write(nested.join(META_FILE), format!("{}\n\n", names.join("\n"))).unwrap();
        let (train, _) = read_cifar10(dir.path()).unwrap();
        assert_eq!(train.classes, names);
    }

    #[test]
    fn missing_batch_names_path_and_expectation() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path());
        std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
        let err = read_cifar10(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("data_batch_4.bin")
                && msg.contains("batch 4 of 5")
                && msg.contains("nas data download --dataset cifar10"),
            "{msg}"
        );
        let err = read_cifar10(dir.path().join("absent")).unwrap_err();
        assert!(
            matches!(&err, DatasetError::NotThere { source, .. }
                if matches!(**source, DatasetError::MissingRoot(_))),
            "{err}"
        );
        assert!(err.to_string().contains("cifar-10-binary.tar.gz"), "{err}");
    }

    #[test]
    fn bad_size_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path());
        let path = dir.path().join("test_batch.bin");
        let mut bytes = batch(0, &[1, 2]);
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        let err = read_cifar10(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::RecordSize {
                    size: 6145,
                    record: 3073,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("test_batch.bin"), "{err}");
    }

    #[test]
    fn label_out_of_range_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path());
        std::fs::write(dir.path().join("data_batch_3.bin"), batch(0, &[1, 10])).unwrap();
        let err = read_cifar10(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::LabelOutOfRange {
                    index: 1,
                    label: 10,
                    classes: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("data_batch_3.bin"), "{err}");
        // With fewer names in batches.meta.txt, the bound follows them.
        write_folder(dir.path());
        std::fs::write(dir.path().join(META_FILE), "a\nb\nc\n").unwrap();
        let err = read_cifar10(dir.path()).unwrap_err();
        assert!(
            matches!(err, DatasetError::LabelOutOfRange { classes: 3, .. }),
            "{err}"
        );
        std::fs::write(dir.path().join(META_FILE), "\n \n").unwrap();
        let err = read_cifar10(dir.path()).unwrap_err();
        assert!(matches!(err, DatasetError::ClassNames { .. }), "{err}");
    }
}
