//! `nas cost`: will this model fit the MCU, and how fast will it run?

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use cost::attention::{AttentionVariant, Tiling};
use cost::estimate::Violation;
use cost::target::Target;
use cost::tiles::TilePolicy;
use training::KwtConfig;

#[derive(Args)]
pub struct CostArgs {
    /// Architecture file (RON): a KWT description such as the `model.ron` beside every
    /// checkpoint. Alternatively --preset, --arch or --int8.
    #[arg(long, conflicts_with_all = ["preset", "arch", "int8"], required_unless_present_any = ["preset", "arch", "int8"])]
    model: Option<PathBuf>,
    /// A TinyFormer single-path architecture (the `arch.ron` of `nas search`'s best/ folder).
    #[arg(long, conflicts_with_all = ["preset", "int8"])]
    arch: Option<PathBuf>,
    /// Per-layer sparsity (a search's `best/sparsity.ron`) of --arch, or of --model for a KWT
    /// (then the KWT is costed as the exporter deploys it: fused MHSA attention, pruned layers
    /// run-length coded); without it: dense.
    #[arg(long, conflicts_with_all = ["preset", "int8"])]
    sparsity: Option<PathBuf>,
    /// An integer model (`model.int8`): the exporter's own arena and flash figures for it on
    /// the target, and the cost model's cycles of each kernel call the exported code makes.
    #[arg(long, conflicts_with = "preset")]
    int8: Option<PathBuf>,
    /// A KWT preset (kwt-1, kwt-2, kwt-3, kwt-tiny, kwt-micro) with 12 classes.
    #[arg(long)]
    preset: Option<String>,
    /// Target description (RON), e.g. configs/targets/stm32f746.ron.
    #[arg(long)]
    target: PathBuf,
    /// Attention kernel: MHSA, FWSA or the cheaper of the two per layer.
    #[arg(long, value_enum, default_value = "auto")]
    attention: Attention,
    /// Use depth-first tiling of attention where it lowers the peak.
    #[arg(long)]
    depth_first: bool,
    /// Which layers plan operand tiles for the Cortex-M DSP kernels, as `nas export
    /// --operand-tiles` deploys them: `on`, `off`, or `auto` (only where the tile does not
    /// raise the peak SRAM).
    #[arg(long, value_name = "on|off|auto", default_value = "on")]
    operand_tiles: TilePolicy,
    /// Write the memory-over-time plot (SVG) here (with --int8: the exporter's arena plan).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the latency of each op (SVG bars, in execution order) here (with --int8: each
    /// kernel call of the exported code).
    #[arg(long)]
    latency_plot: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Attention {
    Mhsa,
    Fwsa,
    Auto,
}

/// The cost model's view of a KWT.
pub fn cost_config(
    m: &KwtConfig,
    variant: AttentionVariant,
    tiling: Tiling,
) -> Result<cost::kwt::KwtConfig> {
    if m.heads * m.dim_head != m.dim {
        bail!(
            "the analytic KWT model supports KWTs whose heads x dim_head equals dim; this one has {} x {} != {} (cost its quantized model instead: --int8 model.int8; a KWT search writes that figure per layer in best/cost.txt)",
            m.heads,
            m.dim_head,
            m.dim
        );
    }
    if m.distill_token {
        tracing::warn!(
            "the distillation token and head are not costed (they are dropped for deployment)"
        );
    }
    Ok(cost::kwt::KwtConfig {
        dim: m.dim,
        depth: m.depth,
        heads: m.heads,
        mlp_dim: m.mlp_dim,
        frames: m.frames,
        features: m.features,
        classes: m.classes,
        variant,
        tiling,
    })
}

fn read_ron<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ron::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// `--int8`: what `nas export` allocates for an integer model, and how long its kernels run.
fn int8_cost(path: &std::path::Path, target: &Target, args: &CostArgs) -> Result<()> {
    let graph = quant::load(path).with_context(|| format!("loading {}", path.display()))?;
    let opts = export::Int8Options {
        operand_tiles: args.operand_tiles,
        ..Default::default()
    };
    let (plan, e) = export::plan::estimate(&graph, target, &opts)?;
    let latency = export::latency::latency(&graph, &plan, target);
    print!("{}", latency.table(target.clock_hz));
    println!(
        "{} on {}: arena {} B of {} B SRAM ({}), flash {} B of {} B ({} B constants + {} B code), {} MACs, latency {:.2} ms, {} fused attention kernel(s), {} layer(s) with run-length coded weights ({} B saved)",
        path.display(),
        e.target,
        e.arena_bytes,
        e.sram_limit,
        e.planner,
        e.flash_bytes,
        e.flash_limit,
        e.weight_bytes,
        e.code_bytes,
        e.macs,
        e.latency_s * 1e3,
        e.fused_attention,
        e.coded_layers,
        e.coded_saving_bytes
    );
    if !e.sram_fits() || e.flash_bytes > e.flash_limit {
        println!("does NOT fit {}", e.target);
    } else {
        println!("fits {}", e.target);
    }
    let title = format!("{} on {}", path.display(), target.name);
    if let Some(out) = &args.plot {
        let svg = cost::report::live_memory_svg(
            &title,
            &plan.buffers,
            latency.kernels.len(),
            plan.arena_bytes,
            plan.planner.label(),
        )?;
        write_plot(&svg, out, "memory")?;
    }
    if let Some(out) = &args.latency_plot {
        let ms = 1e3 / target.clock_hz as f64;
        let bars: Vec<(String, f64)> = latency
            .kernels
            .iter()
            .map(|k| (k.node.clone(), k.cycles * ms))
            .collect();
        write_plot(&cost::report::latency_svg(&title, &bars)?, out, "latency")?;
    }
    Ok(())
}

pub fn run(args: CostArgs) -> Result<()> {
    let target = Target::load(&args.target)?;
    if let Some(path) = &args.int8 {
        return int8_cost(path, &target, &args);
    }
    if let Some(path) = &args.arch {
        let arch: training::tinyformer::TinyFormerArch = read_ron(path)?;
        arch.validate()
            .with_context(|| format!("architecture {}", path.display()))?;
        let sparse: search::sparsity::SparseConfig = match &args.sparsity {
            Some(p) => read_ron(p)?,
            None => Default::default(),
        };
        let mut graph = search::cost_graph::tinyformer_graph(&arch, &sparse)?;
        graph.operand_tiles = args.operand_tiles;
        return report(&cost::estimate::estimate(&graph, &target)?, &args, &target);
    }
    let model: KwtConfig = match (&args.model, &args.preset) {
        (Some(path), _) => training::checkpoint::read_ron(path)?,
        (None, Some(name)) => KwtConfig::preset(name, 12)?,
        (None, None) => bail!("give --model FILE, --preset NAME, --arch FILE or --int8 FILE"),
    };
    model.validate()?;
    if let Some(path) = &args.sparsity {
        // a searched (or pruned) KWT: the deployed graph, as the KWT search costs it
        let pruning: pruning::PruningConfig = read_ron(path)?;
        let sparse = search::kwt::space::sparse_from_pruning(&model, &pruning)
            .map_err(|e| anyhow::anyhow!("sparsity {}: {e}", path.display()))?;
        let mut graph = search::kwt::cost::kwt_graph(&model, &sparse)?;
        graph.operand_tiles = args.operand_tiles;
        return report(&cost::estimate::estimate(&graph, &target)?, &args, &target);
    }
    let variant = match args.attention {
        Attention::Mhsa => AttentionVariant::Mhsa,
        Attention::Fwsa => AttentionVariant::Fwsa,
        Attention::Auto => AttentionVariant::Auto,
    };
    let tiling = if args.depth_first {
        Tiling::DepthFirst
    } else {
        Tiling::LayerWise
    };
    let mut graph = cost::kwt::kwt(&cost_config(&model, variant, tiling)?)?;
    graph.operand_tiles = args.operand_tiles;
    report(&cost::estimate::estimate(&graph, &target)?, &args, &target)
}

fn report(e: &cost::estimate::Estimate, args: &CostArgs, target: &Target) -> Result<()> {
    println!("{}", cost::report::layer_table(e));
    println!("{}", cost::report::summary_line(e));
    println!("peak SRAM at `{}`", e.peak_op);
    for v in &e.violations {
        match v {
            Violation::Sram {
                needed,
                available,
                at_op,
                layers,
            } => println!(
                "SRAM: needs {needed} B at `{at_op}`, {available} B available; live there: {}",
                layers.join(", ")
            ),
            Violation::Flash {
                needed,
                available,
                layers,
            } => println!(
                "flash: needs {needed} B, {available} B available; largest layers: {}",
                layers.join(", ")
            ),
        }
    }
    if let Some(path) = &args.plot {
        write_plot(&cost::report::memory_svg(e)?, path, "memory")?;
    }
    if let Some(path) = &args.latency_plot {
        let svg = cost::report::estimate_latency_svg(e, target.clock_hz)?;
        write_plot(&svg, path, "latency")?;
    }
    Ok(())
}

/// Writes a plot and says where.
fn write_plot(svg: &str, path: &std::path::Path, what: &str) -> Result<()> {
    cost::report::write_svg(svg, path).with_context(|| format!("writing {}", path.display()))?;
    println!("{what} plot: {}", path.display());
    Ok(())
}
