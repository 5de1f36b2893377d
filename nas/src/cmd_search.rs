//! `nas search`: TinyFormer's SuperNAS + SparseNAS under a target MCU's budget.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use search::{SearchConfig, SearchOptions, run_search};

use crate::backend::Backend;

#[derive(Args)]
pub struct SearchArgs {
    /// Search configuration (RON), e.g. configs/fashion_mnist.ron.
    #[arg(long)]
    config: PathBuf,
    /// Results folder (the search state lives there too; running again resumes).
    #[arg(long, default_value = "runs/search")]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    /// Hide the progress bars.
    #[arg(long)]
    quiet: bool,
    /// Stop after this many supernet/candidate evaluations (the state is saved; run again to
    /// resume).
    #[arg(long)]
    stop_after: Option<usize>,
}

pub fn run(args: SearchArgs) -> Result<()> {
    let cfg = SearchConfig::load(&args.config)?;
    let device = args.backend.device()?.autodiff();
    let opts = SearchOptions {
        progress: !args.quiet,
        stop_after: args.stop_after,
    };
    let outcome = run_search(&cfg, &args.out, &device, &opts)
        .with_context(|| format!("search {}", args.config.display()))?;
    if !outcome.finished {
        println!(
            "stopped after {} evaluations; state saved in {} (run the same command to resume)",
            args.stop_after.unwrap_or(0),
            args.out.display()
        );
        return Ok(());
    }
    if let Some(f) = &outcome.final_model {
        println!(
            "best model (candidate {}): valid {:.2} %, test {:.2} % (float), peak SRAM {} B, flash {} B, latency {:.1} ms",
            f.candidate,
            100.0 * f.valid_accuracy,
            100.0 * f.test_accuracy,
            f.resources.sram_bytes,
            f.resources.flash_bytes,
            f.resources.latency_ms
        );
        println!(
            "int8 (integer-only, interpreter): test {:.2} %; exported C: arena {} B, flash {} B",
            100.0 * f.int8.test_accuracy,
            f.int8.arena_bytes,
            f.int8.flash_bytes
        );
    }
    println!(
        "Pareto front: {} candidates; results in {} (pareto.md, pareto.svg, summary.json, best/ with model.int8)",
        outcome.pareto.len(),
        args.out.display()
    );
    Ok(())
}
