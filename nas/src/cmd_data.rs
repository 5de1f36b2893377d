//! `nas data`: make data sets offline.

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
