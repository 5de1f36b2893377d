//! Fetching the real data sets (Speech Commands, CIFAR-10), when the user asks for it.
//!
//! An archive is streamed straight through gzip and tar into a temporary folder beside the
//! destination, checked to be the data set's layout, then renamed into place: an
//! interrupted download never leaves a half-written data set that looks complete. Timeouts
//! are short for connecting (offline machines fail fast with a clear message) and absent for
//! the body (2.3 GB for Speech Commands).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{DatasetError, Result};
use crate::splits::{TESTING_LIST, VALIDATION_LIST};

/// The official v0.02 archive (35 words, 105,829 clips, about 2.3 GB).
pub const SPEECH_COMMANDS_V2_URL: &str =
    "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz";
/// The official v0.01 archive (30 words, 64,727 clips, about 1.4 GB).
pub const SPEECH_COMMANDS_V1_URL: &str =
    "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz";
/// The official CIFAR-10 binary version (about 162 MB; unpacks to `cifar-10-batches-bin/`).
pub const CIFAR10_BINARY_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// How long to wait for a connection or for the response head.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The data sets that can be downloaded, each with the check its unpacked folder must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// Speech Commands (v0.01 or v0.02): one folder per word and both split lists.
    SpeechCommands,
    /// CIFAR-10's binary version: five training batches and the test batch.
    Cifar10,
}

impl Archive {
    /// What to do instead on a machine without internet.
    fn offline_hint(self) -> &'static str {
        match self {
            Archive::SpeechCommands => {
                "is this machine online? Offline, make a data set with `nas data synth-speech`"
            }
            Archive::Cifar10 => {
                "is this machine online? Offline, copy cifar-10-binary.tar.gz from a machine \
                 that has it and unpack it into the folder"
            }
        }
    }

    /// Refuses an unpacked folder that is not this data set.
    fn check(self, dir: &Path, out: &Path) -> Result<()> {
        match self {
            Archive::SpeechCommands => {
                for list in [VALIDATION_LIST, TESTING_LIST] {
                    if !dir.join(list).is_file() {
                        return Err(DatasetError::MissingSplitList(out.join(list)));
                    }
                }
                Ok(())
            }
            Archive::Cifar10 => crate::images::read_cifar10(dir).map(|_| ()),
        }
    }
}

/// Downloads the `archive`'s `.tar.gz` at `url` and unpacks it into `out` (which must not
/// exist yet). `progress` is called with the compressed bytes read so far and the total, when
/// known.
pub fn download(
    archive: Archive,
    url: &str,
    out: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
    if out.exists() {
        return Err(DatasetError::InvalidConfig {
            field: "out",
            message: format!(
                "{} already exists; remove it or choose another folder",
                out.display()
            ),
        });
    }
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(CONNECT_TIMEOUT))
        .build()
        .new_agent();
    let response = agent.get(url).call().map_err(|e| DatasetError::Download {
        url: url.to_string(),
        message: format!("{e} ({})", archive.offline_hint()),
    })?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response.into_body().into_reader();
    let reader = Progress {
        inner: body,
        read: 0,
        total,
        report: progress,
    };
    unpack(archive, reader, out).map_err(|e| match e {
        DatasetError::Io { source, .. } if source.kind() != std::io::ErrorKind::Other => {
            DatasetError::Download {
                url: url.to_string(),
                message: source.to_string(),
            }
        }
        other => other,
    })
}

/// Unpacks a gzip-compressed tar stream into `out` through a temporary sibling folder and
/// checks that the result is the `archive`'s data set.
pub fn unpack(archive: Archive, reader: impl Read, out: &Path) -> Result<PathBuf> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DatasetError::io(parent, "creating folder", e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let partial = parent.join(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(|e| DatasetError::io(&partial, "removing stale folder", e))?;
    }
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    tar.unpack(&partial)
        .map_err(|e| DatasetError::io(&partial, "unpacking the archive", e))?;
    if let Err(e) = archive.check(&partial, out) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out)
        .map_err(|e| DatasetError::io(out, "moving the unpacked folder into place", e))?;
    Ok(out.to_path_buf())
}

struct Progress<'a, R> {
    inner: R,
    read: u64,
    total: Option<u64>,
    report: &'a mut dyn FnMut(u64, Option<u64>),
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.report)(self.read, self.total);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpacks_a_speech_commands_archive_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = archive(&[
            ("validation_list.txt", b"yes/a_nohash_0.wav\n"),
            ("testing_list.txt", b""),
            ("yes/a_nohash_0.wav", b"RIFF"),
        ]);
        let out = dir.path().join("sc");
        unpack(Archive::SpeechCommands, bytes.as_slice(), &out).unwrap();
        assert!(out.join("yes/a_nohash_0.wav").is_file());
        assert!(!dir.path().join(".sc.partial").exists());
    }

    #[test]
    fn an_archive_without_split_lists_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sc");
        let err = unpack(
            Archive::SpeechCommands,
            archive(&[("yes/x.wav", b"RIFF")]).as_slice(),
            &out,
        )
        .unwrap_err();
        assert!(err.to_string().contains("validation_list.txt"), "{err}");
        assert!(!out.exists() && !dir.path().join(".sc.partial").exists());
        let err = unpack(Archive::SpeechCommands, &b"not gzip"[..], &out).unwrap_err();
        assert!(err.to_string().contains("unpacking"), "{err}");
    }

    #[test]
    fn unpacks_a_cifar10_archive_and_refuses_an_incomplete_one() {
        let dir = tempfile::tempdir().unwrap();
        let record = |label: u8| {
            let mut r = vec![label];
            r.resize(crate::images::CIFAR10_RECORD_LEN, 7);
            r
        };
        let names: Vec<String> = (1..=5)
            .map(|k| format!("cifar-10-batches-bin/data_batch_{k}.bin"))
            .chain(["cifar-10-batches-bin/test_batch.bin".to_string()])
            .collect();
        let records: Vec<Vec<u8>> = (0..names.len()).map(|k| record(k as u8)).collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&records)
            .map(|(n, r)| (n.as_str(), r.as_slice()))
            .collect();
        let out = dir.path().join("cifar10");
        unpack(Archive::Cifar10, archive(&files).as_slice(), &out).unwrap();
        let (train, test) = crate::images::read_cifar10(&out).unwrap();
        assert_eq!((train.labels, test.labels), (vec![0, 1, 2, 3, 4], vec![5]));
        // without its test batch it is not CIFAR-10: refused, nothing left behind
        let out = dir.path().join("partial");
        let err = unpack(Archive::Cifar10, archive(&files[..5]).as_slice(), &out).unwrap_err();
        assert!(err.to_string().contains("test_batch.bin"), "{err}");
        assert!(!out.exists() && !dir.path().join(".partial.partial").exists());
    }

    #[test]
    fn an_unreachable_server_fails_fast_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        // Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
        for (archive, hint) in [
            (Archive::SpeechCommands, "synth-speech"),
            (Archive::Cifar10, "cifar-10-binary.tar.gz"),
        ] {
            let err = download(
                archive,
                "http://127.0.0.1:9/x.tar.gz",
                &dir.path().join("x"),
                &mut |_, _| {},
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("127.0.0.1:9") && err.contains(hint), "{err}");
        }
    }
}
