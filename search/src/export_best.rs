//! `nas search --export`: the winner's integer model as a C project, deployed as the search
//! measured it (the budget's operand-tile policy on its target).

use std::path::{Path, PathBuf};

use cost::target::Target;

use crate::config::BudgetConfig;
use crate::error::{Result, SearchError};

/// Writes the C project of `out/best/model.int8` into `out/best/c` for `budget`'s target and
/// returns that folder. The exporter checks the target's SRAM and flash again.
pub fn export_best(out: &Path, budget: &BudgetConfig) -> Result<PathBuf> {
    let best = out.join("best");
    let model = best.join("model.int8");
    let graph = quant::load(&model)
        .map_err(|e| SearchError::Search(format!("reading {}: {e}", model.display())))?;
    let target = Target::load(&budget.target)?;
    let opts = budget.limits(&target).int8_options().for_target(&target);
    let fail = |e: export::ExportError| {
        SearchError::Search(format!(
            "exporting {} for {}: {e}",
            model.display(),
            target.name
        ))
    };
    let (_, est) = export::plan::estimate(&graph, &target, &opts).map_err(fail)?;
    let dir = best.join("c");
    export::export_c_with(&graph, "model", &dir, &est.export_limits(), &opts).map_err(fail)?;
    Ok(dir)
}
