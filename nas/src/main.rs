//! `nas`: find, train, compress and deploy tiny transformers for microcontrollers.

mod allocator;
mod backend;
mod cmd_bench;
mod cmd_cost;
mod cmd_data;
mod cmd_eval;
mod cmd_export;
mod cmd_prune;
mod cmd_quantize;
mod cmd_search;
mod cmd_train;
mod cmd_verify;
mod eval_tinyformer;
mod quantize_tinyformer;
mod run_config;
mod tile_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "nas",
    version,
    about = "Find, train, compress and deploy tiny transformers on microcontrollers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a RON config (without --config: the built-in offline quick start).
    Train(cmd_train::TrainArgs),
    /// Accuracy and confusion matrix of a checkpoint or integer model: on a Speech Commands
    /// folder, an image set, or the splits of the search config a TinyFormer came from.
    Eval(cmd_eval::EvalArgs),
    /// Blockwise AGP pruning with fine-tuning, sparsity report and accuracy-vs-sparsity sweep.
    Prune(cmd_prune::PruneArgs),
    /// Integer-only int8 quantization (PTQ, or TQT quantization-aware fine-tuning) with a
    /// per-layer report against the float model.
    Quantize(cmd_quantize::QuantizeArgs),
    /// Hardware-aware search (TinyFormer SuperNAS + SparseNAS) under a target MCU's budget.
    Search(cmd_search::SearchArgs),
    /// Peak SRAM, flash and latency of a model on an MCU target, layer by layer.
    Cost(cmd_cost::CostArgs),
    /// Speed benchmarks.
    #[command(subcommand)]
    Bench(cmd_bench::BenchCommand),
    /// Make or fetch data sets.
    #[command(subcommand)]
    Data(cmd_data::DataCommand),
    /// Export an integer model as a C project, checked against a target's SRAM and flash.
    Export(cmd_export::ExportArgs),
    /// Build an exported integer model natively or under QEMU and compare with the interpreter.
    Verify(cmd_verify::VerifyArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // The GPU runtime logs every kernel autotuning at info; the user's job is ours.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,cubecl=warn,wgpu=warn,naga=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    allocator::tune_for_training();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => cmd_train::run(args),
        Command::Eval(args) => cmd_eval::run(args),
        Command::Prune(args) => cmd_prune::run(args),
        Command::Quantize(args) => cmd_quantize::run(args),
        Command::Data(cmd) => cmd_data::run(cmd),
        Command::Cost(args) => cmd_cost::run(args),
        Command::Search(args) => cmd_search::run(args),
        Command::Bench(cmd) => cmd_bench::run(cmd),
        Command::Export(args) => cmd_export::run(args),
        Command::Verify(args) => cmd_verify::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error with its causes, each said once: library errors put their cause in their own
/// message too, so a cause already contained in the text so far is not repeated.
fn error_message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("target file t.ron: cannot read: no such file");
        let e = e.context("search s.ron");
        assert_eq!(
            error_message(&e),
            "search s.ron: target file t.ron: cannot read: no such file"
        );
    }
}
