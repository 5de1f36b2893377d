//! `nas data`: make data sets offline, or fetch the real one.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Synthetic key words generated in Rust (no external tools), Speech Commands layout.
    SynthKeywords(SynthArgs),
    /// Words spoken by espeak-ng (voices, accents, pitch, speed and noise varied), Speech
    /// Commands layout with split lists made by the official hashing rule.
    SynthSpeech(SynthArgs),
    /// Download and unpack the real Speech Commands archive (needs internet; the only command
    /// that does).
    Download(DownloadArgs),
}

#[derive(Args)]
pub struct DownloadArgs {
    /// Destination folder (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// Data set version: 1 (30 words) or 2 (35 words).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    version: u8,
    /// Another URL of the same `.tar.gz` (a mirror).
    #[arg(long)]
    url: Option<String>,
}

fn download(args: &DownloadArgs) -> Result<()> {
    let url = args.url.clone().unwrap_or_else(|| {
        if args.version == 1 {
            datasets::SPEECH_COMMANDS_V1_URL
        } else {
            datasets::SPEECH_COMMANDS_V2_URL
        }
        .to_string()
    });
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("constant template")
        .progress_chars("=> "),
    );
    bar.set_message("speech commands");
    datasets::download_speech_commands(&url, &args.out, &mut |read, total| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(read);
    })
    .with_context(|| format!("fetching Speech Commands into {}", args.out.display()))?;
    bar.finish();
    println!(
        "Speech Commands v0.0{} unpacked into {}",
        args.version,
        args.out.display()
    );
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
