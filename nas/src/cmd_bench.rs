//! `nas bench`: speed measurements that are kept out of the test suite.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::optim::AdamWConfig;
use burn::tensor::{Distribution, Int, Tensor};
use clap::{Args, Subcommand};
use training::KwtConfig;

use crate::backend::Backend;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training throughput (samples/s) of a KWT on random 98x40 inputs: the same optimizer
    /// step as `nas train`. experiments/kwt_throughput/pytorch_kwt.py is the PyTorch twin.
    Train(TrainBenchArgs),
}

#[derive(Args)]
pub struct TrainBenchArgs {
    #[arg(long, default_value = "kwt-1")]
    preset: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first (allocation, autotuning).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    /// Batch parts run on their own threads (the trainer's `batch_shards`).
    #[arg(long, default_value_t = 1)]
    shards: usize,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    let BenchCommand::Train(args) = cmd;
    if args.batch_size == 0 || args.steps == 0 {
        bail!("--batch-size and --steps must be at least 1");
    }
    if args.shards == 0 || args.shards > args.batch_size {
        bail!("--shards must be in [1, --batch-size]");
    }
    let device = args.backend.device()?.autodiff();
    let cfg = KwtConfig::preset(&args.preset, 12)?;
    let mut model = cfg.init(0, &device)?;
    let params = burn::module::Module::num_params(&model);
    let mut optim = AdamWConfig::new().with_weight_decay(0.1).init();
    let x = Tensor::<3>::random(
        [args.batch_size, cfg.frames, cfg.features],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let y = Tensor::<1, Int>::random([args.batch_size], Distribution::Uniform(0.0, 12.0), &device);
    let mut started = Instant::now();
    for i in 0..args.warmup + args.steps {
        if i == args.warmup {
            device.sync()?;
            started = Instant::now();
        }
        // The step reads its loss back, a host sync each step as in the trainer.
        let (next, _, _) = training::trainer::optimizer_step(
            model,
            &mut optim,
            x.clone(),
            y.clone(),
            None,
            1e-3,
            0.1,
            args.shards,
        );
        model = next;
    }
    device.sync()?;
    let secs = started.elapsed().as_secs_f64();
    // Flex runs the fused operations' loops in the widest vector set the CPU has: say which.
    let kernels = match args.backend {
        Backend::Flex => format!(
            " [cpu kernels {}]",
            training::cpu_kernels::VectorIsa::detect().name()
        ),
        _ => String::new(),
    };
    println!(
        "burn {:?} {} ({params} params) batch {} shards {}: {:.1} samples/s ({:.1} ms/step){kernels}",
        args.backend,
        args.preset,
        args.batch_size,
        args.shards,
        (args.steps * args.batch_size) as f64 / secs,
        1e3 * secs / args.steps as f64
    );
    Ok(())
}
