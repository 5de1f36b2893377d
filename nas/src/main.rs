//! `nas`: find, train, compress and deploy tiny transformers for microcontrollers.

mod backend;
mod cmd_bench;
mod cmd_cost;
mod cmd_data;
mod cmd_eval;
mod cmd_train;
mod run_config;

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
    /// Accuracy and confusion matrix of a checkpoint on a Speech Commands folder.
    Eval(cmd_eval::EvalArgs),
    /// Peak SRAM, flash and latency of a model on an MCU target, layer by layer.
    Cost(cmd_cost::CostArgs),
    /// Speed benchmarks.
    #[command(subcommand)]
    Bench(cmd_bench::BenchCommand),
    /// Make or fetch data sets.
    #[command(subcommand)]
    Data(cmd_data::DataCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => cmd_train::run(args),
        Command::Eval(args) => cmd_eval::run(args),
        Command::Data(cmd) => cmd_data::run(cmd),
        Command::Cost(args) => cmd_cost::run(args),
        Command::Bench(cmd) => cmd_bench::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
