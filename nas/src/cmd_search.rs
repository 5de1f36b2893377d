//! `nas search`: TinyFormer's SuperNAS + SparseNAS under a target MCU's budget, or the same
//! selection loop over Keyword Transformers for a config with a `kwt_space`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use search::{SearchConfig, SearchOptions, run_search};
use training::speech_data::DataSpec;

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
        let hint = format!(
            "nas quantize --checkpoint {} --config {} --estimator mse --out FILE",
            args.out.join("best").join("model.bpk").display(),
            args.config.display()
        );
        print_int8(&f.int8, f.test_accuracy, &args.out, &hint);
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
        let (DataSpec::SpeechCommands { folder, .. } | DataSpec::SyntheticKeywords { folder, .. }) =
            &cfg.data;
        let hint = format!(
            "nas quantize --checkpoint {} --data {} --estimator mse --out FILE",
            args.out.join("best").join("model.bpk").display(),
            folder.display()
        );
        print_int8(&f.int8, f.test_accuracy, &args.out, &hint);
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

/// Test accuracy points the int8 model may lose against the float one before the search says
/// so: PTQ usually costs a point or two; a larger loss means a tensor that 8 bits cannot hold.
const INT8_LOSS_WARNING_POINTS: f64 = 5.0;

fn print_int8(int8: &search::state::Int8Record, float_accuracy: f64, out: &Path, hint: &str) {
    println!(
        "int8 (integer-only, interpreter): test {:.2} %; exported C: arena {} B, flash {} B{}",
        100.0 * int8.test_accuracy,
        int8.arena_bytes,
        int8.flash_bytes,
        int8.latency_ms
            .map(|ms| format!(", {ms:.1} ms by the cost model"))
            .unwrap_or_default()
    );
    if let Some(warning) = int8_loss_warning(float_accuracy, int8.test_accuracy, out, hint) {
        tracing::warn!(
            float_accuracy,
            int8 = int8.test_accuracy,
            "int8 far below float"
        );
        println!("{warning}");
    }
}

/// What to tell a user whose int8 model lost more than [`INT8_LOSS_WARNING_POINTS`].
fn int8_loss_warning(float: f64, int8: f64, out: &Path, hint: &str) -> Option<String> {
    let loss = 100.0 * (float - int8);
    (loss > INT8_LOSS_WARNING_POINTS).then(|| {
        format!(
            "warning: the int8 model scores {loss:.2} points below the float one; {} lists each \
             tensor's SNR against the float graph. Recalibrating may help: {hint}",
            out.join("best").join("quantization.txt").display()
        )
    })
}

fn print_front(front: usize, out: &std::path::Path, best: &str) {
    println!(
        "Pareto front: {front} candidates; results in {} (pareto.md, pareto.svg, summary.json, {best})",
        out.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_int8_loss_is_reported_with_the_report_and_the_hint() {
        let out = Path::new("runs/s");
        assert_eq!(int8_loss_warning(0.9444, 0.93, out, "h"), None);
        assert_eq!(int8_loss_warning(0.90, 0.851, out, "h"), None);
        let w = int8_loss_warning(0.9444, 0.4583, out, "nas quantize ...").unwrap();
        assert!(w.contains("48.61 points"), "{w}");
        assert!(w.contains("runs/s/best/quantization.txt"), "{w}");
        assert!(w.ends_with("nas quantize ..."), "{w}");
    }
}
