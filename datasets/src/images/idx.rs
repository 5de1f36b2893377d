//! The idx format of MNIST and Fashion-MNIST: a big-endian magic number (`0x00000803` for 8-bit
//! images with three dimensions, `0x00000801` for 8-bit labels with one), one big-endian `u32`
//! per dimension, then the bytes. Files may be plain or gzipped (detected from their content).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::set::ImageSet;
use super::{FASHION_MNIST_CLASSES, check_labels};
use crate::error::{DatasetError, Result};

/// Magic number of an idx file of 8-bit images (rank 3: count, rows, columns).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an idx file of 8-bit labels (rank 1: count).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The contents of an idx images file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count * rows * cols` bytes, row-major per image.
    pub pixels: Vec<u8>,
}

/// Reads a whole file, inflating it when it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DatasetError::io(path, "reading", e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DatasetError::io(path, "decompressing (gzip)", e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Checks the magic number and returns the `rank` dimensions and the data after the header,
/// which must be exactly as long as the dimensions say.
fn parse_header<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    rank: usize,
    what: &'static str,
) -> Result<(Vec<usize>, &'a [u8])> {
    let header = 4 + 4 * rank;
    let word = |k: usize| u32::from_be_bytes([bytes[k], bytes[k + 1], bytes[k + 2], bytes[k + 3]]);
    if bytes.len() < 4 {
        return Err(DatasetError::Truncated {
            path: path.into(),
            expected: header as u64,
            found: bytes.len() as u64,
        });
    }
    let found = word(0);
    if found != magic {
        return Err(DatasetError::BadMagic {
            path: path.into(),
            found,
            expected: magic,
            what,
        });
    }
    if bytes.len() < header {
        return Err(DatasetError::Truncated {
            path: path.into(),
            expected: header as u64,
            found: bytes.len() as u64,
        });
    }
    let dims: Vec<usize> = (0..rank).map(|d| word(4 + 4 * d) as usize).collect();
    let body: u128 = dims.iter().map(|&d| d as u128).product();
    let expected = u64::try_from(header as u128 + body).unwrap_or(u64::MAX);
    let found = bytes.len() as u64;
    if found < expected {
        return Err(DatasetError::Truncated {
            path: path.into(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(DatasetError::TrailingData {
            path: path.into(),
            expected,
            found,
        });
    }
    Ok((dims, &bytes[header..]))
}

/// Reads an idx file of 8-bit images (plain or gzipped).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let bytes = read_maybe_gz(path)?;
    let (dims, body) = parse_header(path, &bytes, IDX_IMAGES_MAGIC, 3, "idx3 8-bit images")?;
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels: body.to_vec(),
    })
}

/// Reads an idx file of 8-bit labels (plain or gzipped).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    let (_, body) = parse_header(path, &bytes, IDX_LABELS_MAGIC, 1, "idx1 8-bit labels")?;
    Ok(body.to_vec())
}

/// Reads a matching pair of idx images and labels files into a one-channel [`ImageSet`],
/// checking that the counts agree and every label names one of `classes`.
pub fn read_idx_pair(images: &Path, labels: &Path, classes: &[&str]) -> Result<ImageSet> {
    let img = read_idx_images(images)?;
    let lab = read_idx_labels(labels)?;
    if img.count != lab.len() {
        return Err(DatasetError::CountMismatch {
            images: images.into(),
            labels: labels.into(),
            image_count: img.count,
            label_count: lab.len(),
        });
    }
    check_labels(labels, &lab, classes.len())?;
    Ok(ImageSet {
        channels: 1,
        height: img.rows,
        width: img.cols,
        images: img.pixels,
        labels: lab,
        classes: classes.iter().map(|s| s.to_string()).collect(),
    })
}

/// `dir/name` if it exists, else `dir/name.gz`, else a [`DatasetError::MissingFile`].
fn find_plain_or_gz(dir: &Path, name: &str, what: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DatasetError::MissingFile {
        path: plain,
        expected: format!("{what}, as `{name}` or `{name}.gz`"),
    })
}

/// Reads an MNIST-layout folder (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally `.gz`) as
/// `(train, test)` with the given class names.
pub fn read_idx_dir(dir: &Path, classes: &[&str]) -> Result<(ImageSet, ImageSet)> {
    if !dir.is_dir() {
        return Err(DatasetError::MissingRoot(dir.into()));
    }
    let mut sets = Vec::with_capacity(2);
    for (split, prefix) in [("training", "train"), ("test", "t10k")] {
        let images = find_plain_or_gz(
            dir,
            &format!("{prefix}-images-idx3-ubyte"),
            &format!("the idx {split} images"),
        )?;
        let labels = find_plain_or_gz(
            dir,
            &format!("{prefix}-labels-idx1-ubyte"),
            &format!("the idx {split} labels"),
        )?;
        sets.push(read_idx_pair(&images, &labels, classes)?);
    }
    let test = sets.pop().expect("two sets");
    let train = sets.pop().expect("two sets");
    Ok((train, test))
}

/// Reads a Fashion-MNIST folder (see [`read_idx_dir`]) as `(train, test)` with the ten
/// Fashion-MNIST class names. The Debian package `dataset-fashion-mnist` installs one at
/// `/usr/share/datasets/fashion-mnist`.
pub fn read_fashion_mnist(dir: impl AsRef<Path>) -> Result<(ImageSet, ImageSet)> {
    read_idx_dir(dir.as_ref(), &FASHION_MNIST_CLASSES)
        .map_err(|e| e.with_hint_if_missing(FASHION_MNIST_HINT))
}

/// How to get Fashion-MNIST when it is not where a config says.
pub const FASHION_MNIST_HINT: &str = "install it with `apt-get install dataset-fashion-mnist` \
    (into /usr/share/datasets/fashion-mnist), or put the four idx files of \
    https://github.com/zalandoresearch/fashion-mnist (gzipped or not) in the folder";

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
        let mut b = IDX_IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in [count, rows, cols] {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend((0..count * rows * cols).map(|i| (i % 251) as u8));
        b
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut b = IDX_LABELS_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// Writes a full MNIST-layout folder: train 5 images, test 3, 2x3 pixels; train gzipped.
    fn write_dir(dir: &Path) {
        std::fs::write(
            dir.join("train-images-idx3-ubyte.gz"),
            gzip(&idx_images(5, 2, 3)),
        )
        .unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte.gz"),
            gzip(&idx_labels(&[0, 9, 3, 3, 1])),
        )
        .unwrap();
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx_images(3, 2, 3)).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_labels(&[2, 2, 7])).unwrap();
    }

    #[test]
    fn reads_plain_and_gzipped_folder() {
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path());
        let (train, test) = read_fashion_mnist(dir.path()).unwrap();
        assert_eq!((train.len(), test.len()), (5, 3));
        assert_eq!((train.channels, train.height, train.width), (1, 2, 3));
        assert_eq!(train.labels, vec![0, 9, 3, 3, 1]);
        assert_eq!(test.labels, vec![2, 2, 7]);
        assert_eq!(train.image(1), &[6, 7, 8, 9, 10, 11]);
        assert_eq!(train.classes[9], "Ankle boot");
        assert_eq!(test.classes.len(), 10);
    }

    #[test]
    fn reads_single_files_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a");
        let gz = dir.path().join("a.gz");
        std::fs::write(&plain, idx_images(2, 4, 4)).unwrap();
        std::fs::write(&gz, gzip(&idx_images(2, 4, 4))).unwrap();
        let a = read_idx_images(&plain).unwrap();
        assert_eq!((a.count, a.rows, a.cols, a.pixels.len()), (2, 4, 4, 32));
        assert_eq!(a, read_idx_images(&gz).unwrap());
    }

    #[test]
    fn missing_file_names_path_and_expectation() {
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path());
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        let err = read_idx_dir(dir.path(), &FASHION_MNIST_CLASSES).unwrap_err();
        assert!(matches!(err, DatasetError::MissingFile { .. }), "{err}");
        let msg = read_fashion_mnist(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
        assert!(msg.contains(".gz") && msg.contains("test labels"), "{msg}");
        assert!(
            msg.contains("apt-get install dataset-fashion-mnist"),
            "{msg}"
        );
        let err = read_idx_dir(&dir.path().join("nope"), &FASHION_MNIST_CLASSES).unwrap_err();
        assert!(matches!(err, DatasetError::MissingRoot(_)), "{err}");
        let msg = read_fashion_mnist(dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("nope") && msg.contains("dataset-fashion-mnist"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_magic_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels-as-images");
        std::fs::write(&path, idx_labels(&[1, 2])).unwrap();
        let err = read_idx_images(&path).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::BadMagic {
                    found: 0x801,
                    expected: 0x803,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("labels-as-images"), "{err}");
        assert!(err.to_string().contains("0x00000801"), "{err}");
    }

    #[test]
    fn truncated_and_oversized_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imgs");
        let full = idx_images(3, 2, 2);
        for cut in [0, 2, 10, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let err = read_idx_images(&path).unwrap_err();
            assert!(
                matches!(err, DatasetError::Truncated { .. }),
                "cut {cut}: {err}"
            );
            assert!(err.to_string().contains("imgs"), "{err}");
        }
        // Huge dimensions in the header must not allocate or panic.
        let mut huge = IDX_IMAGES_MAGIC.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0xff; 12]);
        std::fs::write(&path, &huge).unwrap();
        let err = read_idx_images(&path).unwrap_err();
        assert!(matches!(err, DatasetError::Truncated { .. }), "{err}");
        let mut long = full.clone();
        long.push(0);
        std::fs::write(&path, &long).unwrap();
        let err = read_idx_images(&path).unwrap_err();
        assert!(matches!(err, DatasetError::TrailingData { .. }), "{err}");
        // A gzip stream cut short fails with an I/O error naming the file.
        let gz = gzip(&full);
        std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let err = read_idx_images(&path).unwrap_err();
        assert!(matches!(err, DatasetError::Io { .. }), "{err}");
        assert!(err.to_string().contains("imgs"), "{err}");
    }

    #[test]
    fn count_mismatch_and_bad_label_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (imgs, labs) = (dir.path().join("i"), dir.path().join("l"));
        std::fs::write(&imgs, idx_images(3, 1, 1)).unwrap();
        std::fs::write(&labs, idx_labels(&[0, 1])).unwrap();
        let err = read_idx_pair(&imgs, &labs, &FASHION_MNIST_CLASSES).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::CountMismatch {
                    image_count: 3,
                    label_count: 2,
                    ..
                }
            ),
            "{err}"
        );
        std::fs::write(&labs, idx_labels(&[0, 10, 1])).unwrap();
        let err = read_idx_pair(&imgs, &labs, &FASHION_MNIST_CLASSES).unwrap_err();
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
        assert!(err.to_string().contains(&*labs.to_string_lossy()), "{err}");
    }

    #[test]
    fn real_fashion_mnist_if_installed() {
        let dir = Path::new("/usr/share/datasets/fashion-mnist");
        if !dir.is_dir() {
            eprintln!(
                "skipping: {} is absent (install the Debian package dataset-fashion-mnist)",
                dir.display()
            );
            return;
        }
        let (train, test) = read_fashion_mnist(dir).unwrap();
        assert_eq!((train.len(), test.len()), (60_000, 10_000));
        for set in [&train, &test] {
            assert_eq!((set.channels, set.height, set.width), (1, 28, 28));
            assert_eq!(set.classes.len(), 10);
        }
        assert_eq!(train.class_counts(), vec![6_000; 10]);
        assert_eq!(test.class_counts(), vec![1_000; 10]);
        let (mean, std) = train.channel_stats();
        assert!((mean[0] - 0.286).abs() < 0.01, "mean {mean:?}");
        assert!((std[0] - 0.353).abs() < 0.01, "std {std:?}");
    }
}
