//! `nas data`: make data sets offline, or fetch the real one.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use datasets::Archive;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Synthetic key words generated in Rust (no external tools), Speech Commands layout.
    SynthKeywords(SynthArgs),
    /// Words spoken by espeak-ng (voices, accents, pitch, speed and noise varied), Speech
    /// Commands layout with split lists made by the official hashing rule.
    SynthSpeech(SynthArgs),
    /// Download and unpack a real data set: Speech Commands (default) or CIFAR-10 (needs
    /// internet; the only command that does).
    Download(DownloadArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DownloadDataset {
    /// Google Speech Commands, v0.02 (or v0.01 with --version 1).
    SpeechCommands,
    /// CIFAR-10's binary version, for `nas search --config configs/cifar10.ron`.
    Cifar10,
}

#[derive(Args)]
pub struct DownloadArgs {
    /// Destination folder (must not exist).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "speech-commands")]
    dataset: DownloadDataset,
    /// Speech Commands version: 1 (30 words) or 2 (35 words, the default).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    version: Option<u8>,
    /// Another URL of the same `.tar.gz` (a mirror).
    #[arg(long)]
    url: Option<String>,
}

fn download(args: &DownloadArgs) -> Result<()> {
    let (archive, default_url, name) = match (args.dataset, args.version) {
        (DownloadDataset::Cifar10, Some(_)) => {
            bail!("--version is a Speech Commands setting; CIFAR-10 has one binary version")
        }
        (DownloadDataset::Cifar10, None) => (
            Archive::Cifar10,
            datasets::CIFAR10_BINARY_URL,
            "CIFAR-10 (binary version)".to_string(),
        ),
        (DownloadDataset::SpeechCommands, v) => {
            let v = v.unwrap_or(2);
            let url = if v == 1 {
                datasets::SPEECH_COMMANDS_V1_URL
            } else {
                datasets::SPEECH_COMMANDS_V2_URL
            };
            (
                Archive::SpeechCommands,
                url,
                format!("Speech Commands v0.0{v}"),
            )
        }
    };
    let url = args.url.as_deref().unwrap_or(default_url);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("constant template")
        .progress_chars("=> "),
    );
    bar.set_message(name.clone());
    datasets::download::download(archive, url, &args.out, &mut |read, total| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(read);
    })
    .with_context(|| format!("fetching {name} into {}", args.out.display()))?;
    bar.finish();
    println!("{name} unpacked into {}", args.out.display());
    Ok(())
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
    /// Words to make (default: the 35 words of Speech Commands v0.02).
    #[arg(long, value_delimiter = ',')]
    words: Vec<String>,
    /// Clips per word.
    #[arg(long, default_value_t = 60)]
    per_word: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SynthArgs {
    fn words(&self) -> Vec<String> {
        if self.words.is_empty() {
            datasets::WORDS_V2.iter().map(|w| w.to_string()).collect()
        } else {
            self.words.clone()
        }
    }
}

pub fn run(cmd: DataCommand) -> Result<()> {
    let (args, espeak) = match &cmd {
        DataCommand::SynthKeywords(a) => (a, false),
        DataCommand::SynthSpeech(a) => (a, true),
        DataCommand::Download(a) => return download(a),
    };
    let words = args.words();
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    if espeak {
        datasets::synth_speech_espeak(&args.out, &refs, args.per_word, args.seed)
    } else {
        datasets::synth_keywords(&args.out, &refs, args.per_word, args.seed)
    }
    .with_context(|| format!("making a data set in {}", args.out.display()))?;
    println!(
        "{} words x {} clips written to {} in {:.1} s",
        words.len(),
        args.per_word,
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
