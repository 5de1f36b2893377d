//! `nas bench`: speed measurements that are kept out of the test suite.

use std::time::Instant;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::optim::AdamWConfig;
use burn::tensor::{Distribution, Int, Tensor};
use clap::{Args, Subcommand};
use training::KwtConfig;
use training::tinyformer::{TinyFormer, TinyFormerArch};

use crate::backend::Backend;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training throughput (samples/s) of a KWT on random 98x40 inputs: the same optimizer
    /// step as `nas train`. experiments/kwt_throughput/pytorch_kwt.py is the PyTorch twin.
    /// With --arch, of a TinyFormer path on random images: the step `nas search` trains with.
    Train(TrainBenchArgs),
    /// Attention forward and backward on random `[batch, heads, tokens, dim]` operands: the fused
    /// kernels (scores never stored) against the scores materialized, per shape.
    Attention(AttentionBenchArgs),
}

#[derive(Args)]
pub struct AttentionBenchArgs {
    /// Token counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [99, 240, 960])]
    tokens: Vec<usize>,
    /// Head widths to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [6, 16, 32, 64])]
    dims: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    heads: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Timed repetitions per shape and path.
    #[arg(long, default_value_t = 5)]
    steps: usize,
}

#[derive(Args)]
pub struct TrainBenchArgs {
    #[arg(long, default_value = "kwt-1")]
    preset: String,
    /// A TinyFormer single-path architecture (a search's `best/arch.ron`) instead of a KWT.
    #[arg(long, conflicts_with = "preset")]
    arch: Option<PathBuf>,
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
    match cmd {
        BenchCommand::Train(args) => train(args),
        BenchCommand::Attention(args) => attention(args),
    }
}

/// Milliseconds per forward and backward pass of both attention paths on fresh random operands
/// (one untimed pass first), per shape.
fn attention(args: AttentionBenchArgs) -> Result<()> {
    if args.steps == 0 || args.heads == 0 || args.batch_size == 0 {
        bail!("--steps, --heads and --batch-size must be at least 1");
    }
    let device = burn::tensor::Device::flex().autodiff();
    println!(
        "attention forward + backward, batch {} heads {}, ms per pass (flex, {} cpu kernels)",
        args.batch_size,
        args.heads,
        training::cpu_kernels::VectorIsa::detect().name()
    );
    println!("| tokens | dim | fused ms | materialized ms | speed-up |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for &t in &args.tokens {
        for &d in &args.dims {
            if t == 0 || d == 0 {
                bail!("--tokens and --dims must be at least 1");
            }
            let shape = [args.batch_size, args.heads, t, d];
            let time = |fused: bool| -> Result<f64> {
                let mut total = 0.0;
                for i in 0..=args.steps {
                    let operand = || {
                        Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device)
                            .require_grad()
                    };
                    let (q, k, v) = (operand(), operand(), operand());
                    device.sync()?;
                    let started = Instant::now();
                    let scale = (d as f64).powf(-0.5);
                    let out = if fused {
                        training::fused_ops::attention(q.clone(), k, v, scale)
                    } else {
                        training::fused_ops::materialized_attention(q.clone(), k, v, scale)
                    };
                    let grads = out.sum().backward();
                    let _ = q.grad(&grads);
                    device.sync()?;
                    if i > 0 {
                        total += started.elapsed().as_secs_f64();
                    }
                }
                Ok(1e3 * total / args.steps as f64)
            };
            let (fused, materialized) = (time(true)?, time(false)?);
            println!(
                "| {t} | {d} | {fused:.1} | {materialized:.1} | {:.2}x |",
                materialized / fused
            );
        }
    }
    Ok(())
}

fn train(args: TrainBenchArgs) -> Result<()> {
    if args.batch_size == 0 || args.steps == 0 {
        bail!("--batch-size and --steps must be at least 1");
    }
    if args.shards == 0 || args.shards > args.batch_size {
        bail!("--shards must be in [1, --batch-size]");
    }
    let device = args.backend.device()?.autodiff();
    let b = args.batch_size;
    let (name, params, mut step): (String, usize, Box<dyn FnMut()>) = match &args.arch {
        None => {
            let cfg = KwtConfig::preset(&args.preset, 12)?;
            let mut model = Some(cfg.init(0, &device)?);
            let params = model.as_ref().map_or(0, burn::module::Module::num_params);
            let mut optim = AdamWConfig::new().with_weight_decay(0.1).init();
            let x = Tensor::<3>::random(
                [b, cfg.frames, cfg.features],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let y = Tensor::<1, Int>::random([b], Distribution::Uniform(0.0, 12.0), &device);
            let shards = args.shards;
            let step = move || {
                // The step reads its loss back, a host sync each step as in the trainer.
                let (next, _, _) = training::trainer::optimizer_step(
                    model.take().expect("a model between steps"),
                    &mut optim,
                    x.clone(),
                    y.clone(),
                    None,
                    1e-3,
                    0.1,
                    shards,
                );
                model = Some(next);
            };
            (args.preset.clone(), params, Box::new(step))
        }
        Some(path) => {
            let arch: TinyFormerArch = training::checkpoint::read_ron(path)?;
            arch.validate()
                .with_context(|| format!("architecture {}", path.display()))?;
            let mut model = Some(TinyFormer::init(&arch, 0, &device)?);
            let params = model.as_ref().map_or(0, burn::module::Module::num_params);
            let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
            let x = Tensor::<4>::random(
                [b, arch.input[0], arch.input[1], arch.input[2]],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let classes = arch.classes as f64;
            let y = Tensor::<1, Int>::random([b], Distribution::Uniform(0.0, classes), &device);
            let shards = args.shards;
            let dev = device.clone();
            let step = move || {
                // as `nas search` trains a path (search::train): sharded gradients, loss read back
                let m = model.take().expect("a model between steps");
                let (grads, _, _) = training::shards::sharded_grads(&m, &dev, b, shards, |m, r| {
                    let logits = m.forward(x.clone().slice(r.clone()));
                    let loss =
                        training::loss::smoothed_cross_entropy(logits, y.clone().slice(r), 0.1);
                    (loss, 0)
                });
                model = Some(optim.step(3e-3, m, grads));
            };
            (
                format!("tinyformer {}", path.display()),
                params,
                Box::new(step),
            )
        }
    };
    let mut started = Instant::now();
    for i in 0..args.warmup + args.steps {
        if i == args.warmup {
            device.sync()?;
            started = Instant::now();
        }
        step();
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
        "burn {:?} {name} ({params} params) batch {} shards {}: {:.1} samples/s ({:.1} ms/step){kernels}",
        args.backend,
        args.batch_size,
        training::shards::effective_shards(&device, args.shards, args.batch_size),
        (args.steps * args.batch_size) as f64 / secs,
        1e3 * secs / args.steps as f64
    );
    Ok(())
}
