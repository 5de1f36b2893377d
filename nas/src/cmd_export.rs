//! `nas export`: integer model -> self-contained C project, checked against a target first.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use cost::target::Target;
use export::Int8Options;

use crate::tile_args::TileArgs;

#[derive(Args)]
pub struct ExportArgs {
    /// Integer model (`NASI8` file, e.g. written by `nas quantize`).
    #[arg(long)]
    model: PathBuf,
    /// Target description (RON), e.g. configs/targets/stm32f746.ron.
    #[arg(long)]
    target: PathBuf,
    /// Directory for the C project (created; nothing is written when the model is rejected).
    #[arg(long)]
    out: PathBuf,
    /// C identifier prefix of the generated files and entry point `<name>_run`.
    #[arg(long, default_value = "model")]
    name: String,
    /// Run attention layer-wise (materialize the H x S x S matrix) instead of the fused
    /// depth-first tiled kernel.
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

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::INFINITY
    } else {
        100.0 * a as f64 / b as f64
    }
}

pub fn run(args: ExportArgs) -> Result<()> {
    let graph = quant::load(&args.model)
        .with_context(|| format!("reading integer model {}", args.model.display()))?;
    let target = Target::load(&args.target)?;
    // an op the runtime lacks is an error before anything else (and before any file)
    export::check_supported(&graph)?;
    let opts = Int8Options {
        fuse_attention: !args.no_fuse_attention,
        sparse_weights: !args.dense_weights,
        softmax_lut: !args.no_softmax_lut,
        operand_tiles: args.tiles.policy(),
    }
    .for_target(&target);
    let (_, est) = export::plan::estimate(&graph, &target, &opts)?;
    println!(
        "model {} ({} nodes, {} fused attention kernel(s)) on target {}",
        args.model.display(),
        graph.nodes.len(),
        est.fused_attention,
        target.name
    );
    println!(
        "SRAM : activation arena {} B of {} B ({:.1}%, {} planner) {}",
        est.arena_bytes,
        est.sram_limit,
        pct(est.arena_bytes, est.sram_limit),
        est.planner,
        if est.sram_fits() {
            "ok"
        } else {
            "DOES NOT FIT"
        }
    );
    println!(
        "flash: constants {} B + code estimate {} B = {} B of {} B ({:.1}%) {}",
        est.weight_bytes,
        est.code_bytes,
        est.flash_bytes,
        est.flash_limit,
        pct(est.flash_bytes, est.flash_limit),
        if est.flash_fits() {
            "ok"
        } else {
            "DOES NOT FIT"
        }
    );
    if est.coded_layers > 0 {
        println!(
            "       {} layer(s) store blockwise run-length coded weights (sparse kernels), \
             {} B less than dense",
            est.coded_layers, est.coded_saving_bytes
        );
    }
    let mut problems = Vec::new();
    if !est.sram_fits() {
        problems.push(format!(
            "activation arena {} B exceeds the {} B SRAM of {}",
            est.arena_bytes, est.sram_limit, target.name
        ));
    }
    if !est.flash_fits() {
        problems.push(format!(
            "constants + code {} B exceed the {} B flash of {}",
            est.flash_bytes, est.flash_limit, target.name
        ));
    }
    if !problems.is_empty() {
        bail!(
            "the model does not fit target {}: {}; nothing was written",
            target.name,
            problems.join("; ")
        );
    }
    let report = export::export_c_with(&graph, &args.name, &args.out, &est.export_limits(), &opts)?;
    tracing::info!(
        arena = report.arena_bytes,
        constants = report.weight_bytes,
        "exported"
    );
    println!(
        "wrote {} files to {} (entry point {}_run; build with `make -C {} host|m4|m7|rv32`)",
        report.files.len(),
        args.out.display(),
        report.name,
        args.out.display()
    );
    if let Some(features) = export::front_end::standardized_features(&graph) {
        println!(
            "front end: {}_quantize_input(raw, in) standardizes raw features with the training \
             statistics ({features} mean/std pair(s), one per feature, outside the constants above) \
             and rounds them at the input's scale, as the Rust reference does",
            report.name
        );
    }
    Ok(())
}
