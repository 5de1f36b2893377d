//! `nas cost`: will this model fit the MCU, and how fast will it run?

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use cost::attention::{AttentionVariant, Tiling};
use cost::estimate::Violation;
use cost::target::Target;
use training::KwtConfig;

#[derive(Args)]
pub struct CostArgs {
    /// Architecture file (RON): a KWT description such as the `model.ron` beside every
    /// checkpoint. Alternatively --preset.
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    model: Option<PathBuf>,
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
    /// Write the memory-over-time plot (SVG) here.
    #[arg(long)]
    plot: Option<PathBuf>,
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
            "the cost model supports KWTs whose heads x dim_head equals dim; this one has {} x {} != {}",
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

pub fn run(args: CostArgs) -> Result<()> {
    let model: KwtConfig = match (&args.model, &args.preset) {
        (Some(path), _) => training::checkpoint::read_ron(path)?,
        (None, Some(name)) => KwtConfig::preset(name, 12)?,
        (None, None) => bail!("give --model FILE or --preset NAME"),
    };
    model.validate()?;
    let target = Target::load(&args.target)?;
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
    let graph = cost::kwt::kwt(&cost_config(&model, variant, tiling)?)?;
    let e = cost::estimate::estimate(&graph, &target)?;
    println!("{}", cost::report::layer_table(&e));
    println!("{}", cost::report::summary_line(&e));
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
        cost::report::write_memory_svg(&e, path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("memory plot: {}", path.display());
    }
    Ok(())
}
