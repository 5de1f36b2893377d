//! MCU target descriptions, loaded from RON files (see `configs/targets/`).
//!
//! The per-kernel cycle figures in those files started as *initial estimates* (derived from the
//! MAC/cycle figures of pulp-transformer Table 4 and typical CMSIS-NN / PULP-NN kernels). On the
//! Cortex-M4/M7 and RV32 targets every entry is now refit from QEMU runs of the exported C
//! kernels (`export/tests/insn_count.rs` prints the fits; method in
//! experiments/export/README.md): Cortex-M4 and RV32 from instructions charged with the
//! Cortex-M4 TRM's and the CV32E40P manual's cycle counts, Cortex-M7 from the executed
//! instructions scheduled on a dual-issue pipeline model built from public measurements (ARM
//! publishes no M7 timing); all three modelled, not measured on silicon. GAP9 takes the RV32
//! figures for the kernel classes it has no estimate of its own for.

use crate::error::CostError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Kernel classes: the unit of both cycle costs and code size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KernelClass {
    Linear,
    MatMul,
    Conv,
    Depthwise,
    Softmax,
    LayerNorm,
    Gelu,
    Add,
    Pool,
    Embedding,
    Attention,
    /// Linear reading blockwise run-length coded weights (SparseEngine).
    SparseLinear,
    /// k x k Conv2d reading coded weights (a coded pointwise Conv2d runs the sparse Linear).
    SparseConv,
    /// Depthwise Conv2d reading coded weights.
    SparseDepthwise,
}

impl KernelClass {
    pub fn label(self) -> &'static str {
        match self {
            KernelClass::Linear => "linear",
            KernelClass::MatMul => "matmul",
            KernelClass::Conv => "conv",
            KernelClass::Depthwise => "depthwise",
            KernelClass::Softmax => "softmax",
            KernelClass::LayerNorm => "layernorm",
            KernelClass::Gelu => "gelu",
            KernelClass::Add => "add",
            KernelClass::Pool => "pool",
            KernelClass::Embedding => "embedding",
            KernelClass::Attention => "attention",
            KernelClass::SparseLinear => "sparse-linear",
            KernelClass::SparseConv => "sparse-conv",
            KernelClass::SparseDepthwise => "sparse-depthwise",
        }
    }
}

/// Cycle costs. MAC classes are cycles per *MAC instruction* (one SIMD instruction does
/// `simd_width` int8 MACs, loads and loop overhead amortized into it); element classes are cycles
/// per element. Work is split over `compute_cores`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleTable {
    /// The dense Linear kernel (and pointwise Conv2d), on cores with the DSP extension the loop
    /// with its operand tile.
    pub linear: f64,
    /// The fused attention's products (with operand tiles on DSP cores) and layer-wise MatMul.
    pub matmul: f64,
    /// The dense Linear without an operand tile (default: `linear`, for cores that have no
    /// tiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_untiled: Option<f64>,
    /// The fused attention's products without operand tiles (default: `matmul`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matmul_untiled: Option<f64>,
    pub conv: f64,
    pub depthwise: f64,
    pub softmax: f64,
    /// Per element of I-BERT's LayerNorm besides `layernorm_row` per row (without that entry:
    /// the per-row work folded in at some width).
    pub layernorm: f64,
    /// Per row (token) of a LayerNorm: the mean, variance and integer square root, which a
    /// narrow row (a searched TinyFormer's 12-24 channels) does not amortize (fit by
    /// export/tests/insn_count.rs `layernorm_row_widths`). Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layernorm_row: Option<f64>,
    /// [`Self::layernorm`] for TinyFormer's Scaled-LayerNorm (default: `layernorm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaled_layernorm: Option<f64>,
    pub gelu: f64,
    pub add: f64,
    /// Per element of a stand-alone ReLU (a compare and a store: far cheaper than `add`'s
    /// two-input requantizing sum).
    pub relu: f64,
    pub requant: f64,
    pub pool: f64,
    pub copy: f64,
    /// Cycles per stored MAC of the sparse Linear kernel (weights run-length coded), which also
    /// runs coded pointwise convolutions: per MAC, not per SIMD instruction, since the decoding
    /// dominates. Stored MACs: the MACs of the kept blocks.
    pub sparse_mac: f64,
    /// Cycles per stored MAC of the coded k x k Conv2d kernel (`nas_conv2d_rle_s8`; not
    /// pointwise, which runs the Linear kernel at `sparse_mac`), besides `requant` per output.
    pub sparse_conv_mac: f64,
    /// [`Self::sparse_mac`] for blocks narrower than 4 weights (the search's blocks of 2): the
    /// kernels' DSP path takes blocks of exactly 4, and a narrow block pays an entry's decoding
    /// for half the MACs (export/tests/insn_count.rs `sparse_block_sizes`). Default:
    /// `sparse_mac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_mac_narrow: Option<f64>,
    /// [`Self::sparse_conv_mac`] for blocks narrower than 4 weights (default: `sparse_conv_mac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_conv_mac_narrow: Option<f64>,
    /// Cycles per score of a fused attention core (a searched TinyFormer's `attn_core`) with
    /// operand tiles, besides its MACs and its output's requantization: the score's
    /// requantization, its softmax element and their loops, fit on attention at searched
    /// widths (export/tests/insn_count.rs `attention_head_widths`). Default: `softmax +
    /// requant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_score: Option<f64>,
    /// [`Self::attention_score`] without operand tiles (on DSP cores: heads whose width is not
    /// a multiple of 4, the short-row path). Default: `softmax + requant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_score_untiled: Option<f64>,
    /// Cycles per output of a dense k x k Conv2d that gathers its windows
    /// ([`crate::ops::conv_gather_work`]: kernel rows of `k cin` bytes that are not whole words, a
    /// window of at most 64 bytes: a one- or three-channel stem), besides its MACs and
    /// `requant`: the window's gathering and the short dot products' loops, fit on such layers
    /// (export/tests/insn_count.rs `conv_input_widths`). Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv_gather: Option<f64>,
    /// [`Self::conv_gather`] for windows of 9 bytes (a one-channel 3 x 3 stem: key-word MFCC
    /// and grayscale images), which the DSP kernel holds in registers. Default: `conv_gather`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv_gather_9: Option<f64>,
    /// Cycles per stored MAC of the coded depthwise Conv2d kernel
    /// (`nas_depthwise_conv2d_rle_s8`), besides `requant` (and
    /// [`Self::sparse_depthwise_output`]) per output.
    pub sparse_depthwise_mac: f64,
    /// Cycles per output of the sparse Linear kernel (coded Linear and pointwise layers) besides
    /// its stored MACs and `requant`: finding a coded row's entries and the loop over them,
    /// which the short rows of searched widths (12-96 inputs, a few kept blocks) pay per output,
    /// fit on such layers (export/tests/insn_count.rs `sparse_row_widths`). Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_output: Option<f64>,
    /// [`Self::sparse_output`] of the coded depthwise kernel: its per-pixel loop and the
    /// channels' kernel rows clipped to the input (channels that keep no row still pay it).
    /// Default: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_depthwise_output: Option<f64>,
    /// Fixed cycles per kernel call (prologue, pointer setup, fork/join on multi-core).
    pub call_overhead: f64,
}

/// Code size in bytes of each kernel class, counted once per distinct class used, plus the
/// runtime (scheduler, requantization helpers, startup) counted once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSizeTable {
    pub runtime: u64,
    pub linear: u64,
    pub matmul: u64,
    pub conv: u64,
    pub depthwise: u64,
    pub softmax: u64,
    pub layernorm: u64,
    pub gelu: u64,
    pub add: u64,
    pub pool: u64,
    pub embedding: u64,
    pub attention: u64,
    pub sparse_linear: u64,
    pub sparse_conv: u64,
    pub sparse_depthwise: u64,
}

impl CycleTable {
    pub fn layernorm_row(&self) -> f64 {
        self.layernorm_row.unwrap_or(0.0)
    }

    pub fn scaled_layernorm(&self) -> f64 {
        self.scaled_layernorm.unwrap_or(self.layernorm)
    }

    pub fn conv_gather(&self) -> f64 {
        self.conv_gather.unwrap_or(0.0)
    }

    pub fn conv_gather_9(&self) -> f64 {
        self.conv_gather_9.unwrap_or_else(|| self.conv_gather())
    }

    pub fn sparse_output(&self) -> f64 {
        self.sparse_output.unwrap_or(0.0)
    }

    pub fn sparse_depthwise_output(&self) -> f64 {
        self.sparse_depthwise_output.unwrap_or(0.0)
    }

    pub fn linear_untiled(&self) -> f64 {
        self.linear_untiled.unwrap_or(self.linear)
    }

    pub fn matmul_untiled(&self) -> f64 {
        self.matmul_untiled.unwrap_or(self.matmul)
    }

    pub fn sparse_mac_narrow(&self) -> f64 {
        self.sparse_mac_narrow.unwrap_or(self.sparse_mac)
    }

    pub fn sparse_conv_mac_narrow(&self) -> f64 {
        self.sparse_conv_mac_narrow.unwrap_or(self.sparse_conv_mac)
    }

    /// Per score of a fused attention core besides its MACs and output requantization, with
    /// operand tiles (`tiled`) or without.
    pub fn attention_score(&self, tiled: bool) -> f64 {
        let entry = if tiled {
            self.attention_score
        } else {
            self.attention_score_untiled
        };
        entry.unwrap_or(self.softmax + self.requant)
    }
}

impl CodeSizeTable {
    pub fn of(&self, class: KernelClass) -> u64 {
        match class {
            KernelClass::Linear => self.linear,
            KernelClass::MatMul => self.matmul,
            KernelClass::Conv => self.conv,
            KernelClass::Depthwise => self.depthwise,
            KernelClass::Softmax => self.softmax,
            KernelClass::LayerNorm => self.layernorm,
            KernelClass::Gelu => self.gelu,
            KernelClass::Add => self.add,
            KernelClass::Pool => self.pool,
            KernelClass::Embedding => self.embedding,
            KernelClass::Attention => self.attention,
            KernelClass::SparseLinear => self.sparse_linear,
            KernelClass::SparseConv => self.sparse_conv,
            KernelClass::SparseDepthwise => self.sparse_depthwise,
        }
    }
}

/// One MCU target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub core: String,
    pub clock_hz: u64,
    /// Total on-chip SRAM (L2 on PULP parts).
    pub sram_bytes: u64,
    /// Part of the SRAM usable as the activation arena (e.g. the 512 KB AXI SRAM of the
    /// STM32H743); defaults to `sram_bytes`.
    #[serde(default)]
    pub arena_bytes: Option<u64>,
    pub flash_bytes: u64,
    /// Software-managed L1 (tightly coupled) memory, if the part tiles through one.
    #[serde(default)]
    pub l1_bytes: Option<u64>,
    /// int8 lanes per MAC instruction (2 for Cortex-M SMLAD, 4 for XpulpV2 sdot4).
    pub simd_width: u32,
    /// Cores on the part.
    pub cores: u32,
    /// Cores that run kernels (GAP9: 8 cluster workers of 9 cores); defaults to `cores`.
    #[serde(default)]
    pub compute_cores: Option<u32>,
    pub cycles: CycleTable,
    pub code_size: CodeSizeTable,
}

impl Target {
    /// Bytes available to the activation arena.
    pub fn arena_limit(&self) -> u64 {
        self.arena_bytes.unwrap_or(self.sram_bytes)
    }

    pub fn workers(&self) -> u32 {
        self.compute_cores.unwrap_or(self.cores)
    }

    /// Whether the core has the Armv7E-M / Armv8-M DSP extension (SXTB16, SMLAD) that the
    /// runtime's operand tiles serve: Cortex-M4, M7, M33, M35P, M55, M85.
    pub fn has_dsp(&self) -> bool {
        [
            "cortex-m4",
            "cortex-m7",
            "cortex-m33",
            "cortex-m35p",
            "cortex-m55",
            "cortex-m85",
        ]
        .iter()
        .any(|c| self.core.eq_ignore_ascii_case(c))
    }

    /// Parse a RON string; `origin` names the source in errors. Optional fields take a bare
    /// value (`linear_untiled: 1.8`) as well as `Some(1.8)`.
    pub fn from_ron_str(text: &str, origin: &Path) -> Result<Target, CostError> {
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let t: Target = options
            .from_str(text)
            .map_err(|source| CostError::TargetParse {
                path: origin.to_path_buf(),
                source,
            })?;
        t.validate()?;
        Ok(t)
    }

    /// Load one target file.
    pub fn load(path: impl AsRef<Path>) -> Result<Target, CostError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CostError::TargetIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_ron_str(&text, path)
    }

    /// Load every `*.ron` file of a directory, sorted by file name.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<Target>, CostError> {
        let dir = dir.as_ref();
        let rd = std::fs::read_dir(dir).map_err(|source| CostError::TargetIo {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "ron"))
            .collect();
        paths.sort();
        paths.iter().map(Self::load).collect()
    }

    fn validate(&self) -> Result<(), CostError> {
        let err = |field, problem: &str| CostError::TargetField {
            target: self.name.clone(),
            field,
            problem: problem.to_string(),
        };
        for (field, v) in [
            ("clock_hz", self.clock_hz),
            ("sram_bytes", self.sram_bytes),
            ("flash_bytes", self.flash_bytes),
            ("simd_width", self.simd_width as u64),
            ("cores", self.cores as u64),
        ] {
            if v == 0 {
                return Err(err(field, "must be >= 1"));
            }
        }
        if let Some(a) = self.arena_bytes
            && (a == 0 || a > self.sram_bytes)
        {
            return Err(err("arena_bytes", "must be in 1..=sram_bytes"));
        }
        if let Some(w) = self.compute_cores
            && (w == 0 || w > self.cores)
        {
            return Err(err("compute_cores", "must be in 1..=cores"));
        }
        let c = &self.cycles;
        for (field, v) in [
            ("cycles.linear", c.linear),
            ("cycles.matmul", c.matmul),
            ("cycles.linear_untiled", c.linear_untiled()),
            ("cycles.matmul_untiled", c.matmul_untiled()),
            ("cycles.conv", c.conv),
            ("cycles.depthwise", c.depthwise),
            ("cycles.softmax", c.softmax),
            ("cycles.layernorm", c.layernorm),
            ("cycles.layernorm_row", c.layernorm_row()),
            ("cycles.scaled_layernorm", c.scaled_layernorm()),
            ("cycles.gelu", c.gelu),
            ("cycles.add", c.add),
            ("cycles.relu", c.relu),
            ("cycles.requant", c.requant),
            ("cycles.pool", c.pool),
            ("cycles.copy", c.copy),
            ("cycles.sparse_mac", c.sparse_mac),
            ("cycles.sparse_conv_mac", c.sparse_conv_mac),
            ("cycles.sparse_mac_narrow", c.sparse_mac_narrow()),
            ("cycles.sparse_conv_mac_narrow", c.sparse_conv_mac_narrow()),
            ("cycles.attention_score", c.attention_score(true)),
            ("cycles.attention_score_untiled", c.attention_score(false)),
            ("cycles.conv_gather", c.conv_gather()),
            ("cycles.conv_gather_9", c.conv_gather_9()),
            ("cycles.sparse_output", c.sparse_output()),
            (
                "cycles.sparse_depthwise_output",
                c.sparse_depthwise_output(),
            ),
            ("cycles.sparse_depthwise_mac", c.sparse_depthwise_mac),
            ("cycles.call_overhead", c.call_overhead),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(err(field, "must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn targets_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets")
    }

    #[test]
    fn all_shipped_targets_load() {
        let ts = Target::load_dir(targets_dir()).unwrap();
        let names: Vec<_> = ts.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["gap9", "rv32imc", "stm32f746", "stm32h743", "stm32l4"]
        );
        let f7 = &ts[2];
        assert_eq!(f7.clock_hz, 216_000_000);
        assert_eq!(f7.sram_bytes, 320 * 1024);
        assert_eq!(f7.flash_bytes, 1024 * 1024);
        let h7 = &ts[3];
        assert_eq!(h7.arena_limit(), 512 * 1024);
        let gap9 = &ts[0];
        assert_eq!((gap9.cores, gap9.l1_bytes), (9, Some(128 * 1024)));
    }

    #[test]
    fn unknown_field_is_rejected_with_path() {
        let text = std::fs::read_to_string(targets_dir().join("stm32l4.ron")).unwrap();
        let bad = text.replacen("clock_hz:", "bogus: 1, clock_hz:", 1);
        let e = Target::from_ron_str(&bad, Path::new("x/stm32l4.ron")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("x/stm32l4.ron") && msg.contains("bogus"),
            "{msg}"
        );
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let text = std::fs::read_to_string(targets_dir().join("stm32l4.ron")).unwrap();
        let start = text.find("simd_width").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        let missing = format!("{}{}", &text[..start], &text[end..]);
        let msg = Target::from_ron_str(&missing, Path::new("l4.ron"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("l4.ron") && msg.contains("simd_width"),
            "{msg}"
        );
        let zero = text.replacen("cores: 1", "cores: 0", 1);
        let msg = Target::from_ron_str(&zero, Path::new("l4.ron"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`cores`"), "{msg}");
        let msg = Target::load("/nonexistent/t.ron").unwrap_err().to_string();
        assert!(msg.contains("/nonexistent/t.ron"), "{msg}");
    }
}
