//! `nas verify`: export an integer model, build and run it natively or under QEMU and compare
//! every output with the Rust integer interpreter.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use export::{Int8Options, Target};

use crate::tile_args::TileArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Platform {
    /// Host gcc with AddressSanitizer and UndefinedBehaviorSanitizer.
    Host,
    /// Cortex-M4 under qemu-system-arm (mps2-an386).
    M4,
    /// Cortex-M7 under qemu-system-arm (mps2-an500).
    M7,
    /// RV32IMC under qemu-system-riscv32 (virt).
    Rv32,
    /// Every platform whose tools are installed (the others are skipped with a note).
    All,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Integer model (`NASI8` file).
    #[arg(long)]
    model: PathBuf,
    /// Where to build and run.
    #[arg(long, value_enum, default_value = "host")]
    platform: Platform,
    /// Number of input samples (random; when 3 or more, the last two are all -128 and all 127).
    #[arg(long, default_value_t = 8)]
    inputs: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Verify the layer-wise schedule instead of the fused depth-first attention kernel.
    #[arg(long)]
    no_fuse_attention: bool,
    /// Store every weight dense instead of blockwise run-length coded where that is smaller
    /// (the sparse kernels).
    #[arg(long)]
    dense_weights: bool,
    /// Evaluate the softmax exponent with I-BERT's i-exp polynomial instead of reading it from
    /// a 1 KiB table per softmax (less flash, more cycles).
    #[arg(long)]
    no_softmax_lut: bool,
    #[command(flatten)]
    tiles: TileArgs,
}

/// Deterministic inputs: xorshift64* bytes, plus the saturation edges.
fn samples(len: usize, n: usize, seed: u64) -> Vec<Vec<i8>> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8 as i8
    };
    (0..n)
        .map(|i| {
            if n >= 3 && i == n - 2 {
                vec![-128; len]
            } else if n >= 3 && i == n - 1 {
                vec![127; len]
            } else {
                (0..len).map(|_| next()).collect()
            }
        })
        .collect()
}

pub fn run(args: VerifyArgs) -> Result<()> {
    if args.inputs == 0 {
        bail!("--inputs must be at least 1");
    }
    let graph = quant::load(&args.model)
        .with_context(|| format!("reading integer model {}", args.model.display()))?;
    export::check_supported(&graph)?;
    let targets: Vec<Target> = match args.platform {
        Platform::Host => vec![Target::Host],
        Platform::M4 => vec![Target::CortexM4],
        Platform::M7 => vec![Target::CortexM7],
        Platform::Rv32 => vec![Target::Rv32],
        Platform::All => Target::ALL
            .into_iter()
            .filter(|t| match t.check_tools() {
                Ok(()) => true,
                Err(e) => {
                    println!("note: skipping {t}: {e}");
                    false
                }
            })
            .collect(),
    };
    if targets.is_empty() {
        bail!("no platform has its tools installed");
    }
    let len: usize = graph
        .inputs
        .iter()
        .filter_map(|i| graph.tensor(i))
        .map(|t| t.numel())
        .sum();
    let xs = samples(len, args.inputs, args.seed);
    let opts = Int8Options {
        fuse_attention: !args.no_fuse_attention,
        sparse_weights: !args.dense_weights,
        softmax_lut: !args.no_softmax_lut,
        operand_tiles: args.tiles.policy(),
    };
    let rep = export::verify_with(&graph, &xs, &targets, &opts)?;
    println!(
        "model {}: arena {} B, constants {} B, {} sample(s)",
        args.model.display(),
        rep.arena_bytes,
        rep.weight_bytes,
        xs.len()
    );
    for t in &rep.targets {
        let verdict = match t.first_mismatch {
            None => "bit-exact".to_string(),
            Some(m) => format!(
                "MISMATCH ({} elements; first: sample {} index {}: C {} vs interpreter {})",
                t.mismatches, m.sample, m.index, m.got, m.want
            ),
        };
        let front_end = match (t.front_end_checked, t.front_end_mismatches) {
            (0, _) => String::new(),
            (n, 0) => format!("; front end bit-exact on {n} raw values"),
            (n, bad) => format!("; front end MISMATCH on {bad} of {n} raw values"),
        };
        println!(
            "{:<9} {} samples  build {:.2}s  run {:.2}s  {verdict}{front_end}",
            t.target.to_string(),
            t.samples,
            t.build_s,
            t.run_s
        );
    }
    rep.ensure_exact()?;
    let front_end = if rep.targets.iter().any(|t| t.front_end_checked > 0) {
        " and every raw input quantizes as in Rust"
    } else {
        ""
    };
    println!("PASS: every output equals the interpreter's{front_end}");
    Ok(())
}
