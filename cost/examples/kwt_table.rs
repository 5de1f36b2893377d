//! Cost KWT-tiny/1/2/3 on every target in `configs/targets/` and print a Markdown table.
//!
//! `cargo run -p cost --example kwt_table [-- --svg DIR]` (with `--svg`, also writes the
//! memory-over-time plot of each model on the STM32F746 into DIR).

use cost::attention::{AttentionVariant, Tiling};
use cost::estimate::estimate;
use cost::kwt::{KwtConfig, kwt};
use cost::report::table::verdict;
use cost::target::Target;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let targets = Target::load_dir(root.join("configs/targets"))?;
    let args: Vec<String> = std::env::args().collect();
    let svg_dir: Option<PathBuf> = args
        .iter()
        .position(|a| a == "--svg")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let models = [
        ("KWT-tiny", KwtConfig::tiny()),
        ("KWT-1", KwtConfig::kwt1()),
        ("KWT-2", KwtConfig::kwt2()),
        ("KWT-3", KwtConfig::kwt3()),
    ];
    println!(
        "| model | target | params | MACs | SRAM KiB (MHSA, LWT) | flash KiB | latency ms | verdict | SRAM KiB (auto FWSA, DFT) | latency ms (auto) | verdict (auto) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|");
    for (name, cfg) in models {
        let base = kwt(&cfg)?;
        let auto = kwt(&KwtConfig {
            variant: AttentionVariant::Auto,
            tiling: Tiling::DepthFirst,
            ..cfg
        })?;
        for t in &targets {
            let e = estimate(&base, t)?;
            let a = estimate(&auto, t)?;
            println!(
                "| {name} | {} | {} | {:.1}M | {:.1} ({}) | {:.1} | {:.1} | {} | {:.1} | {:.1} | {} |",
                t.name,
                e.params,
                e.macs as f64 / 1e6,
                e.peak_sram_bytes as f64 / 1024.0,
                e.planner.label(),
                e.flash.total as f64 / 1024.0,
                e.latency_s * 1e3,
                verdict(&e),
                a.peak_sram_bytes as f64 / 1024.0,
                a.latency_s * 1e3,
                verdict(&a),
            );
            if let Some(dir) = &svg_dir
                && t.name == "stm32f746"
            {
                std::fs::create_dir_all(dir)?;
                let file = dir.join(format!("{}_{}_memory.svg", name.to_lowercase(), t.name));
                cost::report::svg::write_memory_svg(&e, &file)?;
            }
        }
    }
    Ok(())
}
