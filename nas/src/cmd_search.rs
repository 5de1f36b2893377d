//! `nas search`: TinyFormer's SuperNAS + SparseNAS under a target MCU's budget, or the same
//! selection loop over Keyword Transformers for a config with a `kwt_space`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use search::{SearchConfig, SearchOptions, run_search};

use crate::backend::Backend;

#[derive(Args)]
pub struct SearchArgs {
    /// Search configuration (RON): a TinyFormer search (e.g. configs/fashion_mnist.ron) or, with
    /// a `kwt_space`, a Keyword Transformer search (configs/kwt_search.ron).
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
    /// Also write the winner's C project (`best/c`, as `nas export` does, with the budget's
    /// operand-tile policy) once the search is done.
    #[arg(long)]
    export: bool,
}

pub fn run(args: SearchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading search config {}", args.config.display()))?;
    let device = args.backend.device()?.autodiff();
    let opts = SearchOptions {
        progress: !args.quiet,
        stop_after: args.stop_after,
    };
    if search::kwt::config::is_kwt_config(&text) {
        return run_kwt(&args, &device, &opts);
    }
    let cfg = SearchConfig::load(&args.config)?;
    let outcome = run_search(&cfg, &args.out, &device, &opts)
        .with_context(|| format!("search {}", args.config.display()))?;
    if !outcome.finished {
        stopped(&args);
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
        print_int8(&f.int8);
    }
    print_front(outcome.pareto.len(), &args.out, "best/ with model.int8");
    export_if_asked(&args, &cfg.budget)?;
    Ok(())
}

fn stopped(args: &SearchArgs) {
    println!(
        "stopped after {} evaluations; state saved in {} (run the same command to resume)",
        args.stop_after.unwrap_or(0),
        args.out.display()
    );
}

/// The KWT search (a config with a `kwt_space`).
fn run_kwt(args: &SearchArgs, device: &burn::tensor::Device, opts: &SearchOptions) -> Result<()> {
    let cfg = search::kwt::KwtSearchConfig::load(&args.config)?;
    let outcome = search::kwt::run_kwt_search(&cfg, &args.out, device, opts)
        .with_context(|| format!("KWT search {}", args.config.display()))?;
    if !outcome.finished {
        stopped(args);
        return Ok(());
    }
    if let Some(f) = &outcome.final_model {
        println!(
            "best KWT (candidate {}): valid {:.2} %, test {:.2} % (float), {:.0} % sparse; peak SRAM {} B, flash {} B, latency {:.1} ms",
            f.candidate,
            100.0 * f.valid_accuracy,
            100.0 * f.test_accuracy,
            100.0 * f.global_sparsity,
            f.resources.sram_bytes,
            f.resources.flash_bytes,
            f.resources.latency_ms
        );
        print_int8(&f.int8);
    }
    print_front(
        outcome.pareto.len(),
        &args.out,
        "best/ with model.int8 and model.bpk",
    );
    export_if_asked(args, &cfg.budget)
}

/// `--export`: the winner's C project in `best/c`.
fn export_if_asked(args: &SearchArgs, budget: &search::config::BudgetConfig) -> Result<()> {
    if args.export {
        let dir = search::export_best::export_best(&args.out, budget)?;
        println!(
            "C project of the best model in {} (build with `make -C {} host|m4|m7|rv32`)",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

fn print_int8(int8: &search::state::Int8Record) {
    println!(
        "int8 (integer-only, interpreter): test {:.2} %; exported C: arena {} B, flash {} B",
        100.0 * int8.test_accuracy,
        int8.arena_bytes,
        int8.flash_bytes
    );
}

fn print_front(front: usize, out: &std::path::Path, best: &str) {
    println!(
        "Pareto front: {front} candidates; results in {} (pareto.md, pareto.svg, summary.json, {best})",
        out.display()
    );
}
