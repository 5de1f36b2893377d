//! Synthetic data sets in the Speech Commands layout, for offline use and tests: a pure-Rust
//! "speech-like" keyword generator, and real synthetic speech through espeak-ng + sox.
//! Both write `word/<speaker>_nohash_<n>.wav`, the split lists and `_background_noise_/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{DatasetError, Result};
use crate::splits::{
    BACKGROUND_NOISE_DIR, Split, SplitCounts, SplitPercentages, which_set, write_split_lists,
};
use crate::wav::{CLIP_SAMPLES, SAMPLE_RATE, i16_to_f32, write_wav};

const SR: f32 = SAMPLE_RATE as f32;
const INSTALL_HINT: &str = "apt-get install -y espeak-ng sox";

/// What a generator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    pub root: PathBuf,
    pub words: Vec<String>,
    pub clips: usize,
    pub splits: SplitCounts,
}

/// A standard normal draw (Box-Muller), so no extra distribution crate is needed.
fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Words become folder names and tool arguments: keep them to plain lower-case text.
fn check_words(words: &[&str], per_word: usize) -> Result<()> {
    if words.is_empty() || per_word == 0 {
        return Err(DatasetError::InvalidConfig {
            field: "synth words/per_word",
            message: format!(
                "need at least one word and one clip per word, found {} words and {per_word}",
                words.len()
            ),
        });
    }
    for w in words {
        let ok = w.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '\'' || c == '-');
        if !ok {
            return Err(DatasetError::InvalidConfig {
                field: "synth word",
                message: format!(
                    "`{w}` must start with a letter or digit and hold only letters, digits, ' and -"
                ),
            });
        }
    }
    Ok(())
}

/// File stem of clip `i` of a word: speakers are shared across words (as in the real data set),
/// so the official hash puts all of one speaker's clips into the same split.
fn clip_name(speakers: &[u32], i: usize) -> String {
    let n = speakers.len();
    format!("{:08x}_nohash_{}.wav", speakers[i % n], i / n)
}

/// `n` distinct speaker ids, drawn so that the official hash rule sends every tenth speaker to
/// validation and every tenth to testing: a small synthetic set then never ends up with an empty
/// split by chance (the files still split by the real rule, nothing is forced).
fn speaker_ids(n: usize, rng: &mut StdRng) -> Vec<u32> {
    let percentages = SplitPercentages::default();
    let mut ids: Vec<u32> = Vec::with_capacity(n);
    while ids.len() < n {
        let want = match ids.len() % 10 {
            0 => Split::Validation,
            1 => Split::Testing,
            _ => Split::Training,
        };
        let id: u32 = rng.random();
        let name = format!("{id:08x}_nohash_0.wav");
        if !ids.contains(&id) && which_set(&name, percentages) == want {
            ids.push(id);
        }
    }
    ids
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| DatasetError::io(path, "creating folder", e))
}

/// Writes two 5-second noise recordings (white and brown) into `_background_noise_/`.
fn write_background(root: &Path, rng: &mut StdRng) -> Result<()> {
    let dir = root.join(BACKGROUND_NOISE_DIR);
    create_dir(&dir)?;
    let n = 5 * CLIP_SAMPLES;
    let white: Vec<f32> = (0..n).map(|_| 0.1 * gaussian(rng)).collect();
    let mut brown = Vec::with_capacity(n);
    let mut acc = 0.0f32;
    for _ in 0..n {
        // Leaky integration keeps the random walk bounded.
        acc = 0.995 * acc + 0.02 * gaussian(rng);
        brown.push(acc);
    }
    let peak = brown.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    brown.iter_mut().for_each(|v| *v *= 0.3 / peak);
    write_wav(&dir.join("white_noise.wav"), &white)?;
    write_wav(&dir.join("brown_noise.wav"), &brown)
}

/// Runs `f` over `jobs` on all cores, keeping order and returning the first error.
fn parallel_try<J: Sync, T: Send>(
    jobs: &[J],
    f: impl Fn(&J) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = jobs.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Result<Vec<T>>>()))
            .collect();
        let mut out = Vec::with_capacity(jobs.len());
        for h in handles {
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?);
        }
        Ok(out)
    })
}

/// Places `word` (cut to one second) at `onset` in a silent clip, scales its peak to `gain` and
/// adds Gaussian noise of standard deviation `noise`.
fn place(word: &[f32], onset: f32, gain: f32, noise: f32, rng: &mut StdRng) -> Vec<f32> {
    let len = word.len().min(CLIP_SAMPLES);
    let start = ((CLIP_SAMPLES - len) as f32 * onset.clamp(0.0, 1.0)) as usize;
    let peak = word[..len].iter().fold(1e-9f32, |m, v| m.max(v.abs()));
    let mut clip = vec![0.0f32; CLIP_SAMPLES];
    for (c, w) in clip[start..start + len].iter_mut().zip(word) {
        *c = w * gain / peak;
    }
    for c in &mut clip {
        *c = (*c + noise * gaussian(rng)).clamp(-1.0, 1.0);
    }
    clip
}

// ---------------------------------------------------------------------------------------------
// Pure-Rust speech-like keywords.

/// One sound of a word's signature.
#[derive(Debug, Clone)]
struct Segment {
    voiced: bool,
    duration_s: f32,
    formants: [f32; 3],
    /// Relative pitch change across the segment.
    pitch_slope: f32,
    amplitude: f32,
    fricative_hz: f32,
    fricative_bw: f32,
}

/// A word's fixed recipe, derived from its name alone.
fn signature(word: &str) -> Vec<Segment> {
    let digest = sha1_smol::Sha1::from(word).digest().bytes();
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(seed));
    let n = rng.random_range(2..=4);
    (0..n)
        .map(|i| {
            // Words start voiced more often than not, like most keywords.
            let voiced = i == 0 && rng.random_bool(0.8) || i > 0 && rng.random_bool(0.7);
            Segment {
                voiced,
                duration_s: rng.random_range(0.06..0.15),
                formants: [
                    rng.random_range(250.0..850.0),
                    rng.random_range(850.0..2400.0),
                    rng.random_range(2300.0..3300.0),
                ],
                pitch_slope: rng.random_range(-0.3..0.3),
                amplitude: rng.random_range(0.5..1.0),
                fricative_hz: rng.random_range(2500.0..6500.0),
                fricative_bw: rng.random_range(600.0..2000.0),
            }
        })
        .collect()
}

/// A speaker's habits; each clip jitters them further.
#[derive(Debug, Clone, Copy)]
struct Voice {
    f0: f32,
    formant_scale: f32,
    speed: f32,
}

/// Two-pole resonator (Klatt): unity gain at DC, peak at `hz` with bandwidth `bw`.
#[derive(Default)]
struct Resonator {
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn step(&mut self, x: f32, hz: f32, bw: f32) -> f32 {
        let r = (-std::f32::consts::PI * bw / SR).exp();
        let b = 2.0 * r * (std::f32::consts::TAU * hz / SR).cos();
        let c = -r * r;
        let y = (1.0 - b - c) * x + b * self.y1 + c * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Renders one utterance of a signature: an impulse-train source through three formant
/// resonators for voiced sounds, band-passed noise for fricatives, with smooth transitions.
fn render(segments: &[Segment], voice: Voice, rng: &mut StdRng) -> Vec<f32> {
    // Each utterance also moves every sound's formants a little, as real speakers do.
    let jitter: Vec<[f32; 3]> = segments
        .iter()
        .map(|_| std::array::from_fn(|_| rng.random_range(0.9..1.1)))
        .collect();
    let durations: Vec<usize> = segments
        .iter()
        .map(|s| (s.duration_s * rng.random_range(0.85..1.15) / voice.speed * SR) as usize)
        .collect();
    let total: usize = durations.iter().sum();
    let blend = (0.025 * SR) as usize;
    let mut out = Vec::with_capacity(total);
    let (mut formant_filters, mut fric_filter) =
        (<[Resonator; 3]>::default(), Resonator::default());
    let mut phase = 0.0f32;
    let (mut seg, mut seg_start) = (0usize, 0usize);
    for n in 0..total {
        while n >= seg_start + durations[seg] && seg + 1 < segments.len() {
            seg_start += durations[seg];
            seg += 1;
        }
        let local = n - seg_start;
        let u = local as f32 / durations[seg].max(1) as f32;
        // Cross-fade into the next segment over its last `blend` samples (coarticulation).
        let next = (seg + 1).min(segments.len() - 1);
        let w = if next != seg && durations[seg] > local + blend {
            0.0
        } else if next != seg {
            1.0 - (durations[seg] - local) as f32 / blend as f32
        } else {
            0.0
        };
        let (a, b) = (&segments[seg], &segments[next]);
        let mix = |x: f32, y: f32| x + (y - x) * w;
        let f0 = voice.f0 * (1.0 + a.pitch_slope * (u - 0.5));
        phase += f0 / SR;
        let pulse = if phase >= 1.0 {
            phase -= 1.0;
            1.0
        } else {
            0.0
        };
        let mut voiced = pulse * 30.0;
        for (k, filt) in formant_filters.iter_mut().enumerate() {
            let hz = mix(
                a.formants[k] * jitter[seg][k],
                b.formants[k] * jitter[next][k],
            ) * voice.formant_scale;
            voiced = filt.step(voiced, hz.min(0.45 * SR), 60.0 + 40.0 * k as f32);
        }
        let hiss = fric_filter.step(
            gaussian(rng),
            mix(a.fricative_hz, b.fricative_hz).min(0.45 * SR),
            mix(a.fricative_bw, b.fricative_bw),
        );
        let gate = |s: &Segment, voiced: bool| if s.voiced == voiced { s.amplitude } else { 0.0 };
        let v_amp = mix(gate(a, true), gate(b, true));
        let f_amp = mix(gate(a, false), gate(b, false));
        out.push(v_amp * voiced + f_amp * 4.0 * hiss);
    }
    // 10 ms fades so the word has no clicks at its ends.
    let fade = ((0.01 * SR) as usize).min(total / 2);
    for i in 0..fade {
        let g = i as f32 / fade as f32;
        out[i] *= g;
        out[total - 1 - i] *= g;
    }
    out
}

/// Writes a synthetic keyword data set: `per_word` clips of each word, deterministic in `seed`.
/// Each word has a fixed signature of 2-4 voiced or fricative sounds derived from its name; each
/// clip varies speaker pitch, speed, formant scale, onset, loudness and noise.
pub fn synth_keywords(
    out_dir: &Path,
    words: &[&str],
    per_word: usize,
    seed: u64,
) -> Result<SynthSummary> {
    check_words(words, per_word)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let ids = speaker_ids(per_word.div_ceil(2), &mut rng);
    let voices: Vec<Voice> = ids
        .iter()
        .map(|_| Voice {
            f0: rng.random_range(90.0..250.0),
            formant_scale: rng.random_range(0.88..1.15),
            speed: rng.random_range(0.85..1.2),
        })
        .collect();
    struct Job {
        path: PathBuf,
        word: usize,
        voice: Voice,
        onset: f32,
        gain: f32,
        noise: f32,
        seed: u64,
    }
    let mut jobs = Vec::with_capacity(words.len() * per_word);
    for (w, word) in words.iter().enumerate() {
        let dir = out_dir.join(word);
        create_dir(&dir)?;
        for i in 0..per_word {
            let base = voices[i % voices.len()];
            let gain = rng.random_range(0.05..0.9);
            jobs.push(Job {
                path: dir.join(clip_name(&ids, i)),
                word: w,
                voice: Voice {
                    f0: base.f0 * rng.random_range(0.9..1.1),
                    formant_scale: base.formant_scale * rng.random_range(0.96..1.04),
                    speed: base.speed * rng.random_range(0.92..1.08),
                },
                onset: rng.random(),
                gain,
                // Noise relative to the word's loudness: SNR roughly 10 to 35 dB.
                noise: gain * rng.random_range(0.006..0.1),
                seed: rng.random(),
            });
        }
    }
    let signatures: Vec<Vec<Segment>> = words.iter().map(|w| signature(w)).collect();
    parallel_try(&jobs, |job| {
        let mut rng = StdRng::seed_from_u64(job.seed);
        let word = render(&signatures[job.word], job.voice, &mut rng);
        let clip = place(&word, job.onset, job.gain, job.noise, &mut rng);
        write_wav(&job.path, &clip)
    })?;
    finish(out_dir, words, jobs.len(), &mut rng)
}

fn finish(out_dir: &Path, words: &[&str], clips: usize, rng: &mut StdRng) -> Result<SynthSummary> {
    write_background(out_dir, rng)?;
    let splits = write_split_lists(out_dir, SplitPercentages::default())?;
    tracing::info!(root = %out_dir.display(), clips, ?splits, "synthetic data set written");
    Ok(SynthSummary {
        root: out_dir.to_path_buf(),
        words: words.iter().map(|w| (*w).to_string()).collect(),
        clips,
        splits,
    })
}

// ---------------------------------------------------------------------------------------------
// espeak-ng + sox.

const ESPEAK_VOICES: [&str; 7] = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
];
const ESPEAK_VARIANTS: [&str; 11] = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4",
];

/// Checks that a tool runs; a missing binary becomes [`DatasetError::ToolMissing`].
fn check_tool(tool: &'static str) -> Result<()> {
    match Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DatasetError::ToolMissing {
            tool,
            install: INSTALL_HINT,
        }),
        Err(e) => Err(DatasetError::ToolFailed {
            tool,
            what: "a version check".into(),
            message: e.to_string(),
        }),
    }
}

/// True when both espeak-ng and sox can be run.
pub fn espeak_available() -> bool {
    check_tool("espeak-ng").is_ok() && check_tool("sox").is_ok()
}

/// Speaks `word` with espeak-ng and converts it with sox to 16 kHz mono 16-bit samples.
fn espeak_word(word: &str, voice: &str, pitch: u32, speed: u32) -> Result<Vec<f32>> {
    let what = format!("`{word}` (voice {voice}, pitch {pitch}, speed {speed})");
    let failed = |tool, message: String| DatasetError::ToolFailed {
        tool,
        what: what.clone(),
        message,
    };
    let mut espeak = Command::new("espeak-ng")
        .args([
            "-v",
            voice,
            "-p",
            &pitch.to_string(),
            "-s",
            &speed.to_string(),
            "--stdout",
            word,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed("espeak-ng", e.to_string()))?;
    let espeak_out = espeak
        .stdout
        .take()
        .ok_or_else(|| failed("espeak-ng", "no stdout".into()))?;
    // `-D`: no dither. sox dithers the resampled 16-bit output with unseeded noise by
    // default, which made two runs with the same seed differ in every clip.
    let sox = Command::new("sox")
        .args([
            "-q", "-D", "-t", "wav", "-", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16",
        ])
        .args(["-e", "signed-integer", "-"])
        .stdin(Stdio::from(espeak_out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed("sox", e.to_string()))?;
    let sox_out = sox
        .wait_with_output()
        .map_err(|e| failed("sox", e.to_string()))?;
    let espeak_status = espeak
        .wait()
        .map_err(|e| failed("espeak-ng", e.to_string()))?;
    if !espeak_status.success() {
        return Err(failed("espeak-ng", format!("exited with {espeak_status}")));
    }
    if !sox_out.status.success() {
        let mut msg = String::new();
        let _ = sox_out.stderr.as_slice().read_to_string(&mut msg);
        return Err(failed(
            "sox",
            format!("exited with {}: {}", sox_out.status, msg.trim()),
        ));
    }
    if sox_out.stdout.len() < 2 {
        return Err(failed("sox", "produced no audio".into()));
    }
    Ok(sox_out
        .stdout
        .chunks_exact(2)
        .map(|b| i16_to_f32(i16::from_le_bytes([b[0], b[1]])))
        .collect())
}

/// Cuts leading and trailing near-silence (below 2% of the peak).
fn trim(samples: &[f32]) -> &[f32] {
    let peak = samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let loud = |v: &f32| v.abs() > 0.02 * peak;
    match (
        samples.iter().position(loud),
        samples.iter().rposition(loud),
    ) {
        (Some(a), Some(b)) if peak > 0.0 => &samples[a..=b],
        _ => samples,
    }
}

/// Writes a data set of espeak-ng speech: `per_word` clips of each word with varied accent,
/// voice variant, pitch and speed per speaker, and seeded onset, gain and noise per clip.
/// Needs `espeak-ng` and `sox` on PATH.
pub fn synth_speech_espeak(
    out_dir: &Path,
    words: &[&str],
    per_word: usize,
    seed: u64,
) -> Result<SynthSummary> {
    check_words(words, per_word)?;
    check_tool("espeak-ng")?;
    check_tool("sox")?;
    let mut rng = StdRng::seed_from_u64(seed);
    let ids = speaker_ids(per_word.div_ceil(2), &mut rng);
    let speakers: Vec<(String, u32, u32)> = ids
        .iter()
        .map(|_| {
            let accent = ESPEAK_VOICES[rng.random_range(0..ESPEAK_VOICES.len())];
            let variant = ESPEAK_VARIANTS[rng.random_range(0..ESPEAK_VARIANTS.len())];
            (
                format!("{accent}+{variant}"),
                rng.random_range(25..=75),
                rng.random_range(130..=190),
            )
        })
        .collect();
    struct Job<'a> {
        path: PathBuf,
        word: &'a str,
        voice: &'a str,
        pitch: u32,
        speed: u32,
        onset: f32,
        gain: f32,
        noise: f32,
        seed: u64,
    }
    let mut jobs = Vec::with_capacity(words.len() * per_word);
    for word in words {
        let dir = out_dir.join(word);
        create_dir(&dir)?;
        for i in 0..per_word {
            let (voice, pitch, speed) = &speakers[i % speakers.len()];
            let gain = rng.random_range(0.1..0.9);
            jobs.push(Job {
                path: dir.join(clip_name(&ids, i)),
                word,
                voice,
                pitch: (*pitch as i64 + rng.random_range(-8..=8)).clamp(0, 99) as u32,
                speed: (*speed as i64 + rng.random_range(-15..=15)).clamp(80, 450) as u32,
                onset: rng.random(),
                gain,
                noise: gain * rng.random_range(0.003..0.05),
                seed: rng.random(),
            });
        }
    }
    parallel_try(&jobs, |job| {
        let audio = espeak_word(job.word, job.voice, job.pitch, job.speed)?;
        let mut rng = StdRng::seed_from_u64(job.seed);
        let clip = place(trim(&audio), job.onset, job.gain, job.noise, &mut rng);
        write_wav(&job.path, &clip)
    })?;
    finish(out_dir, words, jobs.len(), &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech_commands::{KEYWORDS_12, LoadConfig, Task, load};
    use crate::wav::read_wav;
    use crate::{Mfcc, MfccConfig};

    #[test]
    fn keywords_are_deterministic_and_loadable_as_labels12() {
        let mut words: Vec<&str> = KEYWORDS_12.to_vec();
        words.extend(["cat", "dog"]);
        let a = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        let summary = synth_keywords(a.path(), &words, 6, 42).unwrap();
        println!("synth_keywords 12x6: {:?}", start.elapsed());
        assert_eq!(summary.clips, 72);
        let b = tempfile::tempdir().unwrap();
        synth_keywords(b.path(), &words, 6, 42).unwrap();
        let f = "yes/".to_string()
            + &std::fs::read_dir(a.path().join("yes"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .file_name()
                .to_string_lossy();
        assert_eq!(
            read_wav(&a.path().join(&f)).unwrap(),
            read_wav(&b.path().join(&f)).unwrap()
        );
        let data = load(a.path(), &LoadConfig::default()).unwrap();
        assert_eq!(data.labels.len(), 12);
        assert_eq!(data.background.len(), 2);
        let n = data.training.len() + data.validation.len() + data.testing.len();
        assert!(n >= 72);
    }

    /// Learnable but not trivial: nearest-centroid on time-averaged MFCCs beats chance by far,
    /// while loudness alone does not.
    #[test]
    fn keywords_are_separable_by_spectrum_not_loudness() {
        let words = KEYWORDS_12;
        let dir = tempfile::tempdir().unwrap();
        synth_keywords(dir.path(), &words, 24, 7).unwrap();
        let mut mfcc = Mfcc::new(MfccConfig::default()).unwrap();
        let mut feats: Vec<(usize, Vec<f32>, f32)> = Vec::new();
        for (w, word) in words.iter().enumerate() {
            for f in crate::splits::wav_files(&dir.path().join(word)).unwrap() {
                let x = crate::wav::read_clip(&f).unwrap();
                let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
                let m = mfcc.compute(&x).unwrap();
                // Mean over the 30 loudest frames, without c0 (overall level).
                let mut frames: Vec<&[f32]> = m.chunks(40).collect();
                frames.sort_by(|a, b| b[0].total_cmp(&a[0]));
                let mut mean = vec![0.0f32; 39];
                for fr in &frames[..30] {
                    for (a, v) in mean.iter_mut().zip(&fr[1..]) {
                        *a += v / 30.0;
                    }
                }
                feats.push((w, mean, rms));
            }
        }
        let (train, test): (Vec<_>, Vec<_>) =
            feats.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let centroid = |w: usize| {
            let rows: Vec<&Vec<f32>> = train
                .iter()
                .filter(|(_, f)| f.0 == w)
                .map(|(_, f)| &f.1)
                .collect();
            (0..39)
                .map(|k| rows.iter().map(|r| r[k]).sum::<f32>() / rows.len() as f32)
                .collect::<Vec<f32>>()
        };
        let cents: Vec<Vec<f32>> = (0..words.len()).map(centroid).collect();
        let dist =
            |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>();
        let correct = test
            .iter()
            .filter(|(_, f)| {
                let best = (0..words.len())
                    .min_by(|&a, &b| dist(&f.1, &cents[a]).total_cmp(&dist(&f.1, &cents[b])))
                    .unwrap();
                best == f.0
            })
            .count();
        let acc = correct as f32 / test.len() as f32;
        // Loudness: mean RMS per word should overlap heavily (all words share the gain range).
        let rms_mean = |w: usize| {
            let r: Vec<f32> = feats.iter().filter(|f| f.0 == w).map(|f| f.2).collect();
            r.iter().sum::<f32>() / r.len() as f32
        };
        let spread: Vec<f32> = (0..words.len()).map(rms_mean).collect();
        println!("nearest-centroid accuracy {acc:.2}, per-word mean RMS {spread:?}");
        // Chance is 0.1; a crude order-free classifier should be well above it.
        assert!(acc > 0.4, "spectral nearest-centroid accuracy {acc}");
    }

    /// Timing check for the documented speed (12 words x 100 clips); run with `--ignored`.
    #[test]
    #[ignore]
    fn keywords_12x100_timing() {
        let dir = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        let mut words: Vec<&str> = KEYWORDS_12.to_vec();
        words.extend(["cat", "dog"]);
        synth_keywords(dir.path(), &words[..12], 100, 1).unwrap();
        println!("synth_keywords 12x100: {:?}", start.elapsed());
    }

    #[test]
    fn rejects_bad_words() {
        let dir = tempfile::tempdir().unwrap();
        assert!(synth_keywords(dir.path(), &["../x"], 1, 0).is_err());
        assert!(synth_keywords(dir.path(), &["-v"], 1, 0).is_err());
        assert!(synth_keywords(dir.path(), &["ok"], 0, 0).is_err());
        assert!(synth_keywords(dir.path(), &[], 1, 0).is_err());
    }

    #[test]
    fn espeak_speech_when_tools_exist() {
        if !espeak_available() && std::env::var_os("CI").is_none() {
            println!(
                "skipped espeak_speech_when_tools_exist: espeak-ng or sox not installed ({INSTALL_HINT})"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        let summary = synth_speech_espeak(dir.path(), &["yes", "no"], 3, 5).unwrap();
        println!("synth_speech_espeak 2x3: {:?}", start.elapsed());
        assert_eq!(summary.clips, 6);
        for word in ["yes", "no"] {
            for f in crate::splits::wav_files(&dir.path().join(word)).unwrap() {
                let x = read_wav(&f).unwrap();
                assert_eq!(x.len(), CLIP_SAMPLES);
                assert!(
                    x.iter().any(|v| v.abs() > 0.05),
                    "{} is silent",
                    f.display()
                );
            }
        }
        let cfg = LoadConfig {
            task: Task::Keywords(vec!["yes".into(), "no".into()]),
            ..LoadConfig::default()
        };
        let data = load(dir.path(), &cfg).unwrap();
        assert_eq!(data.labels.len(), 4);
        // Same seed, same bytes (sox dithers at random unless told not to).
        let again = tempfile::tempdir().unwrap();
        synth_speech_espeak(again.path(), &["yes", "no"], 3, 5).unwrap();
        for word in ["yes", "no"] {
            let a = crate::splits::wav_files(&dir.path().join(word)).unwrap();
            let b = crate::splits::wav_files(&again.path().join(word)).unwrap();
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.file_name(), y.file_name());
                assert!(
                    std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
                    "{} differs between two runs with the same seed",
                    x.display()
                );
            }
        }
    }
}
