//! The operand-tile flags `nas export` and `nas verify` share.

use clap::Args;
use export::TilePolicy;

#[derive(Args)]
pub struct TileArgs {
    /// Which layers plan operand tiles for the Cortex-M DSP kernels (faster Linear and
    /// attention layers for some SRAM): `on` every layer that can, `auto` only where the tile
    /// does not raise the peak SRAM, `off` none. Targets without the DSP extension never get
    /// them.
    #[arg(long, value_name = "on|off|auto", default_value = "on")]
    operand_tiles: TilePolicy,
    /// Same as `--operand-tiles off`.
    #[arg(long, conflicts_with = "operand_tiles")]
    no_operand_tiles: bool,
}

impl TileArgs {
    pub fn policy(&self) -> TilePolicy {
        if self.no_operand_tiles {
            TilePolicy::Never
        } else {
            self.operand_tiles
        }
    }
}
