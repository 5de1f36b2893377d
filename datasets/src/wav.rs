//! 16 kHz mono 16-bit PCM WAV files, the only audio format of the Speech Commands data set.

use std::io::Read;
use std::path::Path;

use crate::error::{DatasetError, Result};

/// Sample rate of every clip, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one clip: exactly one second.
pub const CLIP_SAMPLES: usize = 16_000;

const EXPECTED_FORMAT: &str = "16000 Hz, 1 channel, 16-bit integer PCM";

/// Reads a whole 16 kHz mono 16-bit WAV file as samples in [-1, 1], at its own length.
pub fn read_wav(path: &Path) -> Result<Vec<f32>> {
    let file = std::fs::File::open(path).map_err(|e| DatasetError::io(path, "opening WAV", e))?;
    decode_wav(std::io::BufReader::new(file), path)
}

/// Reads a WAV file and pads with zeros or cuts it to exactly [`CLIP_SAMPLES`].
pub fn read_clip(path: &Path) -> Result<Vec<f32>> {
    Ok(fit_length(read_wav(path)?, CLIP_SAMPLES))
}

/// Decodes WAV bytes from any reader; `path` is only used to name the source in errors.
pub fn decode_wav<R: Read>(reader: R, path: &Path) -> Result<Vec<f32>> {
    let wav_err = |source| DatasetError::Wav {
        path: path.to_path_buf(),
        source,
    };
    let reader = hound::WavReader::new(reader).map_err(wav_err)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        let format = match spec.sample_format {
            hound::SampleFormat::Int => "integer PCM",
            hound::SampleFormat::Float => "float",
        };
        return Err(DatasetError::WavFormat {
            path: path.to_path_buf(),
            found: format!(
                "{} Hz, {} channel(s), {}-bit {format}",
                spec.sample_rate, spec.channels, spec.bits_per_sample
            ),
            expected: EXPECTED_FORMAT,
        });
    }
    reader
        .into_samples::<i16>()
        .map(|s| s.map(i16_to_f32).map_err(wav_err))
        .collect()
}

/// Converts one 16-bit sample to [-1, 1) the way TensorFlow's `decode_wav` does (divide by 32768).
pub fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// Converts a float sample to 16 bits, clamping out-of-range values instead of wrapping.
pub fn f32_to_i16(s: f32) -> i16 {
    // NaN maps to 0 through the `as` cast, which saturates.
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Pads with trailing zeros or cuts the tail so the result has exactly `len` samples.
pub fn fit_length(mut samples: Vec<f32>, len: usize) -> Vec<f32> {
    samples.resize(len, 0.0);
    samples
}

/// Writes samples (clamped to [-1, 1]) as a 16 kHz mono 16-bit WAV file.
pub fn write_wav(path: &Path, samples: &[f32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let wav_err = |source| DatasetError::Wav {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(wav_err)?;
    for &s in samples {
        writer.write_sample(f32_to_i16(s)).map_err(wav_err)?;
    }
    writer.finalize().map_err(wav_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips_and_fits_to_one_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<f32> = (0..1000).map(|i| (i as f32 / 1000.0) - 0.5).collect();
        write_wav(&path, &samples).unwrap();
        let back = read_wav(&path).unwrap();
        assert_eq!(back.len(), 1000);
        for (a, b) in samples.iter().zip(&back) {
            assert!((a - b).abs() < 1.0 / 16384.0);
        }
        let clip = read_clip(&path).unwrap();
        assert_eq!(clip.len(), CLIP_SAMPLES);
        assert!(clip[1000..].iter().all(|&s| s == 0.0));

        let long = vec![0.25f32; 20_000];
        write_wav(&path, &long).unwrap();
        assert_eq!(read_clip(&path).unwrap().len(), CLIP_SAMPLES);
    }

    #[test]
    fn out_of_range_samples_are_clamped() {
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
        assert_eq!(f32_to_i16(f32::NAN), 0);
    }

    #[test]
    fn rejects_wrong_rate_and_channels_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stereo44k.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let msg = read_wav(&path).unwrap_err().to_string();
        assert!(msg.contains("stereo44k.wav"), "{msg}");
        assert!(msg.contains("44100 Hz, 2 channel(s)"), "{msg}");
        assert!(msg.contains("expected 16000 Hz"), "{msg}");
    }

    #[test]
    fn rejects_float_wav_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("float.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        w.write_sample(0.5f32).unwrap();
        w.finalize().unwrap();
        assert!(matches!(
            read_wav(&path),
            Err(DatasetError::WavFormat { .. })
        ));

        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"definitely not RIFF").unwrap();
        let msg = read_wav(&junk).unwrap_err().to_string();
        assert!(msg.contains("junk.wav"), "{msg}");
        let missing = read_wav(&dir.path().join("none.wav")).unwrap_err();
        assert!(missing.to_string().contains("none.wav"));
    }
}
