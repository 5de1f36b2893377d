//! Per-op arithmetic: MACs, parameters, deployed weight bytes, scratch and the work that the
//! target's cycle table prices.
//!
//! Deployed weight format, as the exporter declares its constant arrays (`export::plan`): int8
//! weights, int32 biases, 8-byte dyadic multipliers (int32 multiplier + int32 shift) of every
//! Linear / Conv layer, one per tensor or per output channel ([`RequantGranularity`]), int8
//! LayerNorm gamma and int32 beta, int8 embedding tables and class tokens, 256-byte GELU
//! tables. The few int32 parameters of element-wise ops (Add, Softmax, LayerNorm, MatMul
//! requantization, pooling) live in small per-kernel structs that neither side counts. Scratch
//! is what the bundled runtime allocates: none for convolutions (no im2col; the window a narrow
//! Conv2d gathers, at most [`CONV_GATHER_MAX_BYTES`] as int16, lives on the stack), softmax and
//! LayerNorm (a second pass recomputes instead of keeping an int32 row). With a [`Sparsity`](crate::graph::Sparsity), the weight matrix is
//! stored blockwise run-length coded when `rle::predicted_size_bytes` is smaller than
//! dense (TinyFormer's self-adaptive rule), its MACs scale by the share of whole blocks the
//! pruner keeps (the stored MACs: those of the kept blocks), and it runs the sparse kernel class (the runtime's `nas_sparse.c`, which
//! reads the coded stream in place), priced per stored MAC by the entry of that kernel:
//! `sparse_mac` (Linear and pointwise), `sparse_conv_mac` (k x k Conv2d) or
//! `sparse_depthwise_mac`, plus `requant` per output as for dense layers (and the Linear and
//! depthwise kernels' `sparse_output` / `sparse_depthwise_output` per output); Linear, pointwise and
//! k x k layers in blocks of fewer than 4 weights at `sparse_mac_narrow` / `sparse_conv_mac_narrow`
//! (the kernels' DSP path takes blocks of exactly 4).

use crate::error::CostError;
use crate::graph::{Op, OpKind, RequantGranularity};
use crate::target::{KernelClass, Target};

/// Work units priced by [`crate::target::CycleTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A MAC of the dense Linear kernel with its operand tile (the DSP kernel's fast loop).
    LinearMac,
    /// A MAC of the fused attention's products with operand tiles, or of a layer-wise MatMul.
    MatMulMac,
    /// A MAC of the dense Linear kernel without a tile (no tiles planned, fewer than 4 rows or
    /// an input width that is not a multiple of 4).
    LinearMacUntiled,
    /// A MAC of the fused attention's products without tiles.
    MatMulMacUntiled,
    ConvMac,
    DepthwiseMac,
    Softmax,
    /// An element of I-BERT's LayerNorm.
    LayerNorm,
    /// An element of TinyFormer's Scaled-LayerNorm.
    ScaledLayerNorm,
    /// A row of either LayerNorm (its statistics).
    LayerNormRow,
    Gelu,
    Add,
    Relu,
    Requant,
    Pool,
    Copy,
    /// A stored MAC (kept blocks only) of the sparse Linear kernel: coded Linear and coded
    /// pointwise Conv2d.
    SparseMac,
    /// A stored MAC of the coded k x k Conv2d kernel (not pointwise).
    SparseConvMac,
    /// [`Work::SparseMac`] in blocks narrower than 4 weights.
    SparseMacNarrow,
    /// [`Work::SparseConvMac`] in blocks narrower than 4 weights.
    SparseConvMacNarrow,
    /// An output of a dense k x k Conv2d that gathers its windows ([`conv_gather_work`]), besides
    /// its MACs and requantization.
    ConvGather,
    /// [`Work::ConvGather`] of a 9-byte window (a one-channel 3 x 3 kernel).
    ConvGather9,
    /// A stored MAC of the coded depthwise Conv2d kernel.
    SparseDepthwiseMac,
    /// An output of the sparse Linear kernel (coded Linear and pointwise), besides its stored
    /// MACs and requantization.
    SparseOutput,
    /// An output of the coded depthwise kernel, besides its stored MACs and requantization.
    SparseDepthwiseOutput,
    /// A score of a fused attention core with operand tiles, besides its MACs: its
    /// requantization and softmax element.
    AttentionScore,
    /// [`Work::AttentionScore`] without operand tiles.
    AttentionScoreUntiled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpCost {
    pub macs: u64,
    /// Float-model parameter count (the KWT paper's count).
    pub params: u64,
    /// Deployed bytes in flash.
    pub weight_bytes: u64,
    /// Whether the weights are stored RLE-coded.
    pub sparse_coded: bool,
    pub output_bytes: u64,
    /// Kernel scratch (int32 accumulators, im2col, attention intermediates), live only during
    /// the op.
    pub scratch_bytes: u64,
    pub class: KernelClass,
    pub work: Vec<(Work, u64)>,
}

impl OpCost {
    /// Cycles on `target` ([`work_cycles`] of its work).
    pub fn cycles(&self, target: &Target) -> f64 {
        work_cycles(&self.work, target)
    }
}

/// Cycles of one kernel call doing `work` on `target`: MAC work / simd width, everything split
/// over the worker cores, plus one call overhead.
pub fn work_cycles(work: &[(Work, u64)], target: &Target) -> f64 {
    let c = &target.cycles;
    let simd = target.simd_width as f64;
    let total: f64 = work
        .iter()
        .map(|&(w, n)| {
            let n = n as f64;
            match w {
                Work::LinearMac => n * c.linear / simd,
                Work::MatMulMac => n * c.matmul / simd,
                Work::LinearMacUntiled => n * c.linear_untiled() / simd,
                Work::MatMulMacUntiled => n * c.matmul_untiled() / simd,
                Work::ConvMac => n * c.conv / simd,
                Work::DepthwiseMac => n * c.depthwise / simd,
                Work::Softmax => n * c.softmax,
                Work::LayerNorm => n * c.layernorm,
                Work::ScaledLayerNorm => n * c.scaled_layernorm(),
                Work::LayerNormRow => n * c.layernorm_row(),
                Work::Gelu => n * c.gelu,
                Work::Add => n * c.add,
                Work::Relu => n * c.relu,
                Work::Requant => n * c.requant,
                Work::Pool => n * c.pool,
                Work::Copy => n * c.copy,
                Work::SparseMac => n * c.sparse_mac,
                Work::SparseConvMac => n * c.sparse_conv_mac,
                Work::SparseMacNarrow => n * c.sparse_mac_narrow(),
                Work::SparseConvMacNarrow => n * c.sparse_conv_mac_narrow(),
                Work::ConvGather => n * c.conv_gather(),
                Work::ConvGather9 => n * c.conv_gather_9(),
                Work::SparseDepthwiseMac => n * c.sparse_depthwise_mac,
                Work::SparseOutput => n * c.sparse_output(),
                Work::SparseDepthwiseOutput => n * c.sparse_depthwise_output(),
                Work::AttentionScore => n * c.attention_score(true),
                Work::AttentionScoreUntiled => n * c.attention_score(false),
            }
        })
        .sum();
    total / target.workers() as f64 + c.call_overhead
}

/// The work unit of a weight layer's MACs: when its weights are coded, the stored MACs of the
/// sparse kernel of the same class (Linear, k x k Conv2d, depthwise), at the narrow-block rate
/// for blocks of fewer than 4 weights (Linear and Conv2d; a depthwise kernel's blocks are its
/// kernel rows).
fn mac_work(coded: bool, dense: Work, block: usize) -> Work {
    let narrow = block < 4;
    match (coded, dense) {
        (false, w) => w,
        (true, Work::ConvMac) if narrow => Work::SparseConvMacNarrow,
        (true, Work::ConvMac) => Work::SparseConvMac,
        (true, Work::DepthwiseMac) => Work::SparseDepthwiseMac,
        (true, _) if narrow => Work::SparseMacNarrow,
        (true, _) => Work::SparseMac,
    }
}

/// A weight layer's kernel, for [`weight_layer_work`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKernel {
    /// Linear, or a pointwise Conv2d (run as a Linear over its pixels); `tiled`: dense, with its
    /// operand tile planned ([`linear_tile_bytes`]).
    Linear {
        tiled: bool,
    },
    /// A `kh x kw` Conv2d over `cin` input channels (not pointwise).
    Conv {
        kh: usize,
        kw: usize,
        cin: usize,
    },
    Depthwise,
}

impl WeightKernel {
    /// The kernel class it runs (code size and cycle tables): the sparse kernel of the same
    /// shape when its weights are `coded`.
    pub fn class(self, coded: bool) -> KernelClass {
        match (self, coded) {
            (WeightKernel::Linear { .. }, false) => KernelClass::Linear,
            (WeightKernel::Linear { .. }, true) => KernelClass::SparseLinear,
            (WeightKernel::Conv { .. }, false) => KernelClass::Conv,
            (WeightKernel::Conv { .. }, true) => KernelClass::SparseConv,
            (WeightKernel::Depthwise, false) => KernelClass::Depthwise,
            (WeightKernel::Depthwise, true) => KernelClass::SparseDepthwise,
        }
    }
}

/// The work of one weight layer's kernel call: `macs` (the stored MACs, when its weights are
/// coded in blocks of `coded_block` weights) at its kernel's rate, a requantization per output,
/// a gathering dense Conv2d's per-output work ([`conv_gather_work`]), and the sparse Linear and
/// depthwise kernels' per-output work.
pub fn weight_layer_work(
    kernel: WeightKernel,
    macs: u64,
    outputs: u64,
    coded_block: Option<usize>,
) -> Vec<(Work, u64)> {
    let coded = coded_block.is_some();
    let dense = match kernel {
        WeightKernel::Linear { tiled } => linear_work(tiled),
        WeightKernel::Conv { .. } => Work::ConvMac,
        WeightKernel::Depthwise => Work::DepthwiseMac,
    };
    let mut work = vec![
        (mac_work(coded, dense, coded_block.unwrap_or(0)), macs),
        (Work::Requant, outputs),
    ];
    match (kernel, coded) {
        (WeightKernel::Conv { kh, kw, cin }, false) => {
            work.extend(conv_gather_work(kh, kw, cin).map(|w| (w, outputs)))
        }
        (WeightKernel::Linear { .. }, true) => work.push((Work::SparseOutput, outputs)),
        (WeightKernel::Depthwise, true) => work.push((Work::SparseDepthwiseOutput, outputs)),
        _ => {}
    }
    work
}

/// The work of one call of the depth-first fused attention core: `scores` scores (heads x
/// query rows x keys), the `macs` of its two products, `outputs` requantized outputs; `tiled`
/// as [`attention_tiled`] decides.
pub fn attention_core_work(scores: u64, macs: u64, outputs: u64, tiled: bool) -> Vec<(Work, u64)> {
    if tiled {
        vec![
            (Work::MatMulMac, macs),
            (Work::AttentionScore, scores),
            (Work::Requant, outputs),
        ]
    } else {
        vec![
            (Work::MatMulMacUntiled, macs),
            (Work::AttentionScoreUntiled, scores),
            (Work::Requant, outputs),
        ]
    }
}

/// The work of one LayerNorm over `rows` rows of `elems` elements in all: its variant's entry
/// per element, `layernorm_row` per row.
pub fn layer_norm_work(rows: u64, elems: u64, scaled: bool) -> Vec<(Work, u64)> {
    let per_element = if scaled {
        Work::ScaledLayerNorm
    } else {
        Work::LayerNorm
    };
    vec![(per_element, elems), (Work::LayerNormRow, rows)]
}

/// Largest window (`kh kw cin` bytes) the dense Conv2d kernel gathers (the runtime's
/// `NAS_CONV_PATCH`).
pub const CONV_GATHER_MAX_BYTES: usize = 64;

/// The per-output work of a dense k x k Conv2d beyond its MACs and requantization, where its
/// kernel (`nas_conv2d_s8`) gathers each window inside the input into one operand: its kernel
/// rows (`kw cin` bytes) are not whole words and the window fits [`CONV_GATHER_MAX_BYTES`] (a
/// one- or three-channel stem). [`Work::ConvGather9`] for a 9-byte window, which the DSP
/// kernel keeps in registers, else [`Work::ConvGather`]; `None` where it does not gather.
pub fn conv_gather_work(kh: usize, kw: usize, cin: usize) -> Option<Work> {
    let window = kh * kw * cin;
    if (kw * cin).is_multiple_of(4) || window > CONV_GATHER_MAX_BYTES {
        None
    } else if window == 9 {
        Some(Work::ConvGather9)
    } else {
        Some(Work::ConvGather)
    }
}

/// The work unit of a dense Linear's MACs: the tiled loop where it has its operand tile.
fn linear_work(tiled: bool) -> Work {
    if tiled {
        Work::LinearMac
    } else {
        Work::LinearMacUntiled
    }
}

/// Bytes of one dyadic multiplier.
const REQUANT_BYTES: u64 = 8;

/// Flash of one softmax exponent table (256 int32 i-exp values, indexed by `max - x`).
pub const SOFTMAX_LUT_BYTES: u64 = 256 * 4;

/// Row stride, in bytes, of the fused attention's V operand as its projection writes it: the
/// Weight-Reuse layout `[H P, S]`, each row rounded up to a word so that every row the `A V`
/// step loads word by word starts word aligned (an unaligned LDR costs the Cortex-M7 3-4 cycles,
/// the M4 1-2), where that adds at most 1/16 to the operand: SRAM is the harder limit, and
/// short rows have few words to misalign (S = 5 would grow by 60 % to save about 1 % of the
/// stage's cycles; S = 81 grows by 3.7 % and saves about 8 % on the M7).
pub fn wrl_row(seq: usize) -> usize {
    let padded = seq.next_multiple_of(4);
    if (padded - seq) * 16 <= seq {
        padded
    } else {
        seq
    }
}

/// Arena bytes of a dense Linear's operand tile (the runtime's
/// `nas_linear_s8_get_buffer_size`): 4 input rows extended to int16 lanes, which the Cortex-M
/// DSP kernel reads against every weight row once; only where it is used (4 rows or more, the
/// input width a multiple of 4).
pub fn linear_tile_bytes(rows: usize, in_features: usize) -> u64 {
    if rows >= 4 && in_features > 0 && in_features.is_multiple_of(4) {
        8 * in_features as u64
    } else {
        0
    }
}

/// Whether the depth-first fused attention core runs with operand tiles (the generator's
/// `tiled` flag): tiles planned, the `q . k` reduction `inner` a multiple of 4 (ECGFormer's
/// P = 2 keeps its own two-scores-per-step loop: tiling only its probabilities saved 1 % of
/// the stage's modelled M7 cycles and cost the M4 5 %), and 16 keys or more (the tiles pad the
/// keys to a multiple of 4: at most 3/16 wasted work; fewer keys amortize the tiling poorly).
pub fn attention_tiled(keys: usize, inner: usize, tiles: bool) -> bool {
    tiles && inner > 0 && inner.is_multiple_of(4) && keys >= 16
}

/// Arena scratch of the depth-first fused attention core (the runtime's
/// `nas_attention_s8_get_buffer_size`): one int8 row of `keys` scores; when
/// [`attention_tiled`], 4 rows of scores (`keys` rounded up to a word) and the tiles of 4 rows
/// of probabilities and of 4 query rows, extended to int16 lanes.
pub fn attention_scratch_bytes(keys: usize, inner: usize, tiles: bool) -> u64 {
    let kp = keys.next_multiple_of(4) as u64;
    if attention_tiled(keys, inner, tiles) {
        4 * kp + 8 * kp + 8 * inner as u64
    } else {
        keys as u64
    }
}

/// How the deployed model stores its constants and which kernel buffers it plans (the
/// graph-wide settings of [`crate::graph::Graph`], resolved against the target); the default
/// is the exporter's default for a Cortex-M target with the DSP extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deploy {
    pub requant: RequantGranularity,
    pub softmax_lut: bool,
    /// The DSP kernels' operand tiles ([`linear_tile_bytes`], [`attention_scratch_bytes`]) are
    /// planned in the arena.
    pub operand_tiles: bool,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            requant: RequantGranularity::PerTensor,
            softmax_lut: true,
            operand_tiles: true,
        }
    }
}

/// The fraction of a `rows x cols` matrix's blocks of `block` that the pruner keeps at block
/// sparsity `rho`: whole blocks ([`rle::pruned_blocks`]), as it prunes and as the exporter's
/// sparse kernels multiply (1 - rho itself is off by up to half a block).
fn kept_fraction(rows: usize, cols: usize, block: usize, rho: f64) -> f64 {
    let blocks = rows * cols.div_ceil(block.max(1));
    if blocks == 0 {
        return 1.0;
    }
    (blocks - rle::pruned_blocks(blocks, rho)) as f64 / blocks as f64
}

/// Cost of one op; `l1` is the target's L1 size (used by depth-first attention tiling),
/// `deploy` the graph's constant format.
pub fn op_cost(op: &Op, l1: Option<u64>, deploy: Deploy) -> Result<OpCost, CostError> {
    let v = |x: usize| x as u64;
    let requant = deploy.requant;
    let lut = if deploy.softmax_lut {
        SOFTMAX_LUT_BYTES
    } else {
        0
    };
    // Dyadic multipliers of a weight layer with `channels` outputs.
    let rq = |channels: usize| match requant {
        RequantGranularity::PerTensor => REQUANT_BYTES,
        RequantGranularity::PerChannel => REQUANT_BYTES * v(channels),
    };
    let out = op.kind.output_elems();
    // Dense weight bytes vs RLE-coded: returns (bytes, mac scale, coded?).
    let weights = |rows: usize, cols: usize| -> Result<(u64, f64, bool), CostError> {
        let dense = v(rows * cols);
        match op.sparsity {
            Some(sp) if sp.rho > 0.0 => {
                let coded =
                    rle::predicted_size_bytes(rows, cols, sp.block, sp.rho).map_err(|source| {
                        CostError::Sparse {
                            op: op.name.clone(),
                            source,
                        }
                    })? as u64;
                Ok(if coded < dense {
                    (coded, kept_fraction(rows, cols, sp.block, sp.rho), true)
                } else {
                    (dense, 1.0, false)
                })
            }
            _ => Ok((dense, 1.0, false)),
        }
    };
    let scale = |m: u64, f: f64| (m as f64 * f).round() as u64;
    // block width of a coded layer (its work unit's rate: `mac_work`)
    let block = op.sparsity.map_or(0, |sp| sp.block);
    let cost = match op.kind {
        OpKind::Linear {
            tokens,
            in_features,
            out_features,
            bias,
        } => {
            let (wb, f, coded) = weights(out_features, in_features)?;
            let b = if bias { v(out_features) } else { 0 };
            let macs = scale(v(tokens * in_features * out_features), f);
            let tile = if deploy.operand_tiles && !coded {
                linear_tile_bytes(tokens, in_features)
            } else {
                0
            };
            OpCost {
                macs,
                params: v(in_features * out_features) + b,
                // the runtime's Linear always reads an int32 bias (zeros without one)
                weight_bytes: wb + 4 * v(out_features) + rq(out_features),
                sparse_coded: coded,
                output_bytes: out,
                scratch_bytes: tile,
                class: WeightKernel::Linear { tiled: false }.class(coded),
                work: weight_layer_work(
                    WeightKernel::Linear { tiled: tile > 0 },
                    macs,
                    out,
                    coded.then_some(block),
                ),
            }
        }
        OpKind::MatMul { batch, m, k, n } => {
            let macs = v(batch * m * k * n);
            OpCost {
                macs,
                params: 0,
                weight_bytes: 0,
                sparse_coded: false,
                output_bytes: out,
                scratch_bytes: 0,
                class: KernelClass::MatMul,
                work: vec![(Work::MatMulMac, macs), (Work::Requant, out)],
            }
        }
        OpKind::Softmax { .. } => OpCost {
            macs: 0,
            params: 0,
            weight_bytes: lut,
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::Softmax,
            work: vec![(Work::Softmax, out)],
        },
        OpKind::LayerNorm {
            tokens,
            dim,
            scaled,
        } => OpCost {
            macs: 0,
            params: 2 * v(dim),
            weight_bytes: 5 * v(dim),
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::LayerNorm,
            work: layer_norm_work(v(tokens), out, scaled),
        },
        OpKind::Gelu { .. } => OpCost {
            macs: 0,
            params: 0,
            weight_bytes: 256,
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::Gelu,
            work: vec![(Work::Gelu, out)],
        },
        OpKind::Relu { .. } => OpCost {
            macs: 0,
            params: 0,
            weight_bytes: 0,
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::Add,
            work: vec![(Work::Relu, out)],
        },
        OpKind::Add { .. } => OpCost {
            macs: 0,
            params: 0,
            weight_bytes: 0,
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::Add,
            work: vec![(Work::Add, out)],
        },
        OpKind::Conv2d {
            cin,
            cout,
            k,
            stride,
            pad,
            ..
        } => {
            let (wb, f, coded) = weights(cout, k * k * cin)?;
            let macs = scale(out * v(k * k * cin), f);
            // The runtime runs a pointwise convolution as a Linear over the pixels.
            let pointwise = k == 1 && stride == 1 && pad == 0;
            let tile = if pointwise && deploy.operand_tiles && !coded {
                linear_tile_bytes((out / v(cout.max(1))) as usize, cin)
            } else {
                0
            };
            let kernel = if pointwise {
                WeightKernel::Linear { tiled: tile > 0 }
            } else {
                WeightKernel::Conv { kh: k, kw: k, cin }
            };
            OpCost {
                macs,
                params: v(k * k * cin * cout + cout),
                weight_bytes: wb + 4 * v(cout) + rq(cout),
                sparse_coded: coded,
                output_bytes: out,
                scratch_bytes: tile,
                class: kernel.class(coded),
                work: weight_layer_work(kernel, macs, out, coded.then_some(block)),
            }
        }
        OpKind::DepthwiseConv2d { c, k, .. } => {
            let (wb, f, coded) = weights(c, k * k)?;
            let macs = scale(out * v(k * k), f);
            OpCost {
                macs,
                params: v(k * k * c + c),
                weight_bytes: wb + 4 * v(c) + rq(c),
                sparse_coded: coded,
                output_bytes: out,
                scratch_bytes: 0,
                class: WeightKernel::Depthwise.class(coded),
                work: weight_layer_work(WeightKernel::Depthwise, macs, out, coded.then_some(block)),
            }
        }
        OpKind::Pool { k, .. } => OpCost {
            macs: 0,
            params: 0,
            weight_bytes: 0,
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::Pool,
            work: vec![(Work::Pool, out * v(k * k))],
        },
        OpKind::ClassToken { dim, .. } => OpCost {
            macs: 0,
            params: v(dim),
            weight_bytes: v(dim),
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::Embedding,
            work: vec![(Work::Copy, out)],
        },
        OpKind::PosEmbedding { tokens, dim } => OpCost {
            macs: 0,
            params: v(tokens * dim),
            weight_bytes: v(tokens * dim),
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::Embedding,
            work: vec![(Work::Add, out)],
        },
        OpKind::TakeToken { .. } => OpCost {
            macs: 0,
            params: 0,
            weight_bytes: 0,
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::Embedding,
            work: vec![(Work::Copy, out)],
        },
        OpKind::AttentionCore { seq, heads, proj } => {
            let scores = v(heads * seq * seq);
            let macs = 2 * scores * v(proj);
            OpCost {
                macs,
                params: 0,
                weight_bytes: lut,
                sparse_coded: false,
                output_bytes: out,
                scratch_bytes: attention_scratch_bytes(seq, proj, deploy.operand_tiles),
                class: KernelClass::Attention,
                work: attention_core_work(
                    scores,
                    macs,
                    out,
                    attention_tiled(seq, proj, deploy.operand_tiles),
                ),
            }
        }
        OpKind::Attention(a) => {
            let r = a.resolve(l1);
            let per_channel_extra = match requant {
                RequantGranularity::PerTensor => 0,
                RequantGranularity::PerChannel => REQUANT_BYTES * (r.proj_channels - r.proj_layers),
            };
            OpCost {
                macs: r.macs(),
                params: r.params,
                weight_bytes: r.weight_bytes + per_channel_extra + lut,
                sparse_coded: false,
                output_bytes: out,
                scratch_bytes: r.scratch_bytes(),
                class: KernelClass::Attention,
                work: vec![
                    (Work::LinearMac, r.proj_macs),
                    (Work::MatMulMac, r.matmul_macs),
                    (Work::Softmax, r.softmax_elems),
                    (Work::Requant, r.requant_elems),
                ],
            }
        }
    };
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Sparsity;

    fn linear(sp: Option<Sparsity>) -> Op {
        Op {
            name: "fc".into(),
            kind: OpKind::Linear {
                tokens: 1,
                in_features: 256,
                out_features: 64,
                bias: true,
            },
            inputs: vec!["x".into()],
            sparsity: sp,
        }
    }

    #[test]
    fn dense_linear_bytes() {
        let c = op_cost(&linear(None), None, Deploy::default()).unwrap();
        assert_eq!(c.params, 256 * 64 + 64);
        assert_eq!(c.weight_bytes, 256 * 64 + 4 * 64 + 8);
        assert_eq!(c.macs, 256 * 64);
    }

    #[test]
    fn sparse_linear_uses_rle_when_smaller() {
        let sp = Sparsity {
            rho: 0.75,
            block: 4,
        };
        let c = op_cost(&linear(Some(sp)), None, Deploy::default()).unwrap();
        let coded = rle::predicted_size_bytes(64, 256, 4, 0.75).unwrap() as u64;
        assert!(c.sparse_coded);
        assert_eq!(c.class, KernelClass::SparseLinear);
        assert_eq!(c.weight_bytes, coded + 4 * 64 + 8);
        assert_eq!(c.macs, 256 * 64 / 4);
        // 0.4 of 4,096 blocks is 1,638.4: the pruner keeps 1,638 whole blocks of 4 weights
        let sp = Sparsity { rho: 0.6, block: 4 };
        let c = op_cost(&linear(Some(sp)), None, Deploy::default()).unwrap();
        assert_eq!(c.macs, 1_638 * 4);
        // Low sparsity, block 1: RLE is larger than dense -> stays dense.
        let c = op_cost(
            &linear(Some(Sparsity { rho: 0.1, block: 1 })),
            None,
            Deploy::default(),
        )
        .unwrap();
        assert!(!c.sparse_coded);
        assert_eq!(c.class, KernelClass::Linear);
        assert_eq!(c.weight_bytes, 256 * 64 + 4 * 64 + 8);
    }

    /// A LayerNorm is charged its variant's entry per element (`layernorm`, or
    /// `scaled_layernorm` for Scaled-LayerNorm) plus `layernorm_row` per row; a table without
    /// the two optional entries charges `layernorm` per element alone.
    #[test]
    fn layernorm_pays_per_element_of_its_variant_and_per_row() {
        let ln = |scaled| {
            let op = Op {
                name: "ln".into(),
                kind: OpKind::LayerNorm {
                    tokens: 240,
                    dim: 12,
                    scaled,
                },
                inputs: vec!["x".into()],
                sparsity: None,
            };
            op_cost(&op, None, Deploy::default()).unwrap()
        };
        let mut t = shipped_target("stm32f746");
        t.cycles.layernorm = 50.0;
        t.cycles.scaled_layernorm = Some(60.0);
        t.cycles.layernorm_row = Some(200.0);
        let call = t.cycles.call_overhead;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(
            ln(false).cycles(&t),
            2880.0 * 50.0 + 240.0 * 200.0 + call
        ));
        assert!(close(
            ln(true).cycles(&t),
            2880.0 * 60.0 + 240.0 * 200.0 + call
        ));
        t.cycles.scaled_layernorm = None;
        t.cycles.layernorm_row = None;
        assert!(close(ln(true).cycles(&t), 2880.0 * 50.0 + call));
        // a cost graph written before the variant existed reads as I-BERT's
        let kind: OpKind = ron::from_str("LayerNorm(tokens: 4, dim: 8)").unwrap();
        assert_eq!(
            kind,
            OpKind::LayerNorm {
                tokens: 4,
                dim: 8,
                scaled: false
            }
        );
    }

    /// A dense k x k Conv2d whose kernel rows are not whole words and whose window fits 64
    /// bytes (a one- or three-channel stem) is charged `conv_gather` (`conv_gather_9` for a
    /// 9-byte window) per output besides its MACs and requantization; whole-word rows, wider windows, pointwise and coded layers are
    /// not; a table without the entry charges nothing for it.
    #[test]
    fn gathered_conv_windows_pay_their_entry_per_output() {
        let conv2d = |cin: usize, k: usize| OpKind::Conv2d {
            h: 12,
            w: 10,
            cin,
            cout: 8,
            k,
            stride: 1,
            pad: k / 2,
        };
        let dense = |cin, k| op_cost(&conv("c", conv2d(cin, k), None), None, Deploy::default());
        let mut t = shipped_target("stm32f746");
        t.cycles.conv_gather = Some(30.0);
        t.cycles.conv_gather_9 = Some(20.0);
        let mut without = t.clone();
        without.cycles.conv_gather = None;
        without.cycles.conv_gather_9 = None;
        // (cin, k, gathered): 3 and 9 bytes a row; 24 (whole words); 5 x 5 x 3 = 75 > 64;
        // 3 x 3 x 7 = 63, the largest gathered
        for (cin, k, gathered) in [
            (1, 3, true),
            (3, 3, true),
            (7, 3, true),
            (8, 3, false),
            (3, 5, false),
            (1, 1, false),
        ] {
            let c = dense(cin, k).unwrap();
            let extra = c.cycles(&t) - c.cycles(&without);
            let want = match (gathered, k * k * cin) {
                (false, _) => 0.0,
                (true, 9) => 20.0 * c.output_bytes as f64,
                (true, _) => 30.0 * c.output_bytes as f64,
            };
            assert!(
                (extra - want).abs() < 1e-6,
                "cin {cin} k {k}: {extra} vs {want}"
            );
            if k > 1 {
                // (a pointwise layer runs the Linear kernel whatever its rows)
                assert_eq!(
                    conv_gather_work(k, k, cin).is_some(),
                    gathered,
                    "cin {cin} k {k}"
                );
            }
        }
        let coded = op_cost(
            &conv("c", conv2d(3, 3), Some(Sparsity { rho: 0.9, block: 3 })),
            None,
            Deploy::default(),
        )
        .unwrap();
        assert!(coded.sparse_coded);
        assert!(
            !coded
                .work
                .iter()
                .any(|(w, _)| matches!(w, Work::ConvGather | Work::ConvGather9))
        );
        // without its own entry a 9-byte window takes `conv_gather`
        t.cycles.conv_gather_9 = None;
        let c = dense(1, 3).unwrap();
        let extra = c.cycles(&t) - c.cycles(&without);
        assert!((extra - 30.0 * c.output_bytes as f64).abs() < 1e-6);
    }

    /// The sparse Linear kernel (coded Linear and pointwise layers) and the coded depthwise
    /// kernel pay their per-output entry besides requant; dense layers and the coded k x k
    /// Conv2d do not.
    #[test]
    fn coded_linear_and_depthwise_pay_their_per_output_entry() {
        let mut t = shipped_target("stm32f746");
        t.cycles.sparse_output = Some(7.0);
        t.cycles.sparse_depthwise_output = Some(11.0);
        let mut without = t.clone();
        without.cycles.sparse_output = None;
        without.cycles.sparse_depthwise_output = None;
        let sp = Some(Sparsity {
            rho: 0.75,
            block: 4,
        });
        let dw = |sparsity| Op {
            name: "dw".into(),
            kind: OpKind::DepthwiseConv2d {
                h: 8,
                w: 8,
                c: 16,
                k: 3,
                stride: 1,
                pad: 1,
            },
            inputs: vec!["x".into()],
            sparsity,
        };
        let dw_coded = Some(Sparsity {
            rho: 0.67,
            block: 3,
        });
        let conv3 = Op {
            name: "c".into(),
            kind: OpKind::Conv2d {
                h: 8,
                w: 8,
                cin: 16,
                cout: 16,
                k: 3,
                stride: 1,
                pad: 1,
            },
            inputs: vec!["x".into()],
            sparsity: sp,
        };
        for (op, entry) in [
            (linear(sp), 7.0),
            (linear(None), 0.0),
            (dw(dw_coded), 11.0),
            (dw(None), 0.0),
            (conv3, 0.0),
        ] {
            let c = op_cost(&op, None, Deploy::default()).unwrap();
            assert_eq!(c.sparse_coded, entry > 0.0 || op.name == "c", "{}", op.name);
            let extra = c.cycles(&t) - c.cycles(&without);
            let want = entry * c.output_bytes as f64;
            assert!(
                (extra - want).abs() < 1e-6,
                "{}: {extra} vs {want}",
                op.name
            );
        }
    }

    /// The shipped target `configs/targets/{file}.ron`.
    fn shipped_target(file: &str) -> Target {
        Target::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../configs/targets/{file}.ron")),
        )
        .unwrap()
    }

    fn conv(name: &str, kind: OpKind, sp: Option<Sparsity>) -> Op {
        Op {
            name: name.into(),
            kind,
            inputs: vec!["x".into()],
            sparsity: sp,
        }
    }

    /// Each coded weight layer is charged the sparse entry of the kernel it runs, per stored
    /// MAC, plus `requant` per output: the Linear's (`sparse_mac`) for Linear and pointwise,
    /// `sparse_conv_mac` for a k x k Conv2d, `sparse_depthwise_mac` for depthwise.
    #[test]
    fn coded_layers_are_charged_the_entry_of_their_kernel() {
        let half = Some(Sparsity { rho: 0.5, block: 4 });
        let conv2d = |k: usize, pad: usize| OpKind::Conv2d {
            h: 8,
            w: 8,
            cin: 32,
            cout: 32,
            k,
            stride: 1,
            pad,
        };
        let dw = OpKind::DepthwiseConv2d {
            h: 8,
            w: 8,
            c: 64,
            k: 3,
            stride: 1,
            pad: 1,
        };
        let ops = [
            ("fc", linear(half).kind, half),
            ("pw", conv2d(1, 0), half),
            ("conv", conv2d(3, 1), half),
            (
                "dw",
                dw.clone(),
                Some(Sparsity {
                    rho: 2.0 / 3.0,
                    block: 3,
                }),
            ),
            ("conv-dense", conv2d(3, 1), None),
            ("dw-dense", dw, None),
        ];
        let costs: Vec<OpCost> = ops
            .iter()
            .map(|(n, k, sp)| op_cost(&conv(n, k.clone(), *sp), None, Deploy::default()).unwrap())
            .collect();
        // (class, MAC unit, per-output unit besides requant)
        let expect = [
            (
                KernelClass::SparseLinear,
                Work::SparseMac,
                Some(Work::SparseOutput),
            ),
            (
                KernelClass::SparseLinear,
                Work::SparseMac,
                Some(Work::SparseOutput),
            ),
            (KernelClass::SparseConv, Work::SparseConvMac, None),
            (
                KernelClass::SparseDepthwise,
                Work::SparseDepthwiseMac,
                Some(Work::SparseDepthwiseOutput),
            ),
            (KernelClass::Conv, Work::ConvMac, None),
            (KernelClass::Depthwise, Work::DepthwiseMac, None),
        ];
        for ((c, (n, _, _)), (class, work, per_output)) in costs.iter().zip(&ops).zip(expect) {
            assert_eq!(c.class, class, "{n}");
            assert_eq!(
                c.sparse_coded,
                c.class != KernelClass::Conv && c.class != KernelClass::Depthwise,
                "{n}"
            );
            let mut want = vec![(work, c.macs), (Work::Requant, c.output_bytes)];
            want.extend(per_output.map(|w| (w, c.output_bytes)));
            assert_eq!(c.work, want, "{n}");
        }
        // stored MACs: the kept blocks' share of the dense MACs (padding taps included)
        assert_eq!(costs[2].macs, 8 * 8 * 32 * 9 * 32 / 2);
        assert_eq!(costs[3].macs, 8 * 8 * 64 * 9 / 3);
        let base = shipped_target("stm32l4");
        let cycles = |t: &Target| costs.iter().map(|c| c.cycles(t)).collect::<Vec<f64>>();
        let before = cycles(&base);
        // raising one entry by 1 cycle raises exactly the layers of its kernel, by their
        // stored MACs (one worker core)
        type Entry = fn(&mut crate::target::CycleTable) -> &mut f64;
        let entries: [(Entry, &[usize]); 3] = [
            (|c| &mut c.sparse_mac, &[0, 1]),
            (|c| &mut c.sparse_conv_mac, &[2]),
            (|c| &mut c.sparse_depthwise_mac, &[3]),
        ];
        for (entry, hit) in entries {
            let mut t = base.clone();
            *entry(&mut t.cycles) += 1.0;
            for (i, (b, a)) in before.iter().zip(cycles(&t)).enumerate() {
                let d = if hit.contains(&i) {
                    costs[i].macs as f64
                } else {
                    0.0
                };
                assert!((a - b - d).abs() < 1e-6, "{}: {b} -> {a}", ops[i].0);
            }
        }
    }

    /// Blocks of fewer than 4 weights (the search's blocks of 2) run the sparse kernels' scalar
    /// path: their Linear, pointwise and k x k layers take the narrow entries, a depthwise layer
    /// (blocks are its kernel rows) its own; a target file without the narrow entries prices
    /// them as wide blocks.
    #[test]
    fn narrow_blocks_take_the_narrow_entries() {
        let pairs = Some(Sparsity { rho: 0.5, block: 2 });
        let conv2d = |k: usize, pad: usize| OpKind::Conv2d {
            h: 8,
            w: 8,
            cin: 16,
            cout: 16,
            k,
            stride: 1,
            pad,
        };
        let ops = [
            ("fc", linear(pairs).kind),
            ("pw", conv2d(1, 0)),
            ("conv", conv2d(3, 1)),
        ];
        let costs: Vec<OpCost> = ops
            .iter()
            .map(|(n, k)| op_cost(&conv(n, k.clone(), pairs), None, Deploy::default()).unwrap())
            .collect();
        let works: Vec<Work> = costs.iter().map(|c| c.work[0].0).collect();
        assert_eq!(
            works,
            [
                Work::SparseMacNarrow,
                Work::SparseMacNarrow,
                Work::SparseConvMacNarrow
            ]
        );
        let f7 = shipped_target("stm32f746");
        let (narrow_mac, narrow_conv) = (
            f7.cycles.sparse_mac_narrow(),
            f7.cycles.sparse_conv_mac_narrow(),
        );
        assert!(narrow_mac > f7.cycles.sparse_mac && narrow_conv > f7.cycles.sparse_conv_mac);
        let mut wide = f7.clone();
        wide.cycles.sparse_mac_narrow = None;
        wide.cycles.sparse_conv_mac_narrow = None;
        for (c, entry, fallback) in [
            (&costs[0], narrow_mac, f7.cycles.sparse_mac),
            (&costs[2], narrow_conv, f7.cycles.sparse_conv_mac),
        ] {
            let d = c.cycles(&f7) - c.cycles(&wide);
            let want = c.macs as f64 * (entry - fallback);
            assert!((d - want).abs() < 1e-6 * want, "{d} vs {want}");
        }
    }

    /// A fused attention core is priced per score by the entry of its path (tiled when its
    /// head width is a multiple of 4 and it has 16 keys or more), and without the entries by
    /// `softmax + requant` per score as before.
    #[test]
    fn attention_core_takes_the_score_entry_of_its_path() {
        let core = |proj: usize| {
            conv(
                "attn",
                OpKind::AttentionCore {
                    seq: 240,
                    heads: 2,
                    proj,
                },
                None,
            )
        };
        let f7 = shipped_target("stm32f746");
        let mut plain = f7.clone();
        plain.cycles.attention_score = None;
        plain.cycles.attention_score_untiled = None;
        let scores = 2.0 * 240.0 * 240.0;
        for (proj, work, entry) in [
            (12, Work::AttentionScore, f7.cycles.attention_score),
            (
                6,
                Work::AttentionScoreUntiled,
                f7.cycles.attention_score_untiled,
            ),
        ] {
            let c = op_cost(&core(proj), None, Deploy::default()).unwrap();
            assert_eq!(c.work[1], (work, 2 * 240 * 240));
            let entry = entry.expect("stm32f746 sets both attention_score entries");
            let d = c.cycles(&f7) - c.cycles(&plain);
            let want = scores * (entry - f7.cycles.softmax - f7.cycles.requant);
            assert!(
                (d - want).abs() < 1e-6 * want.abs(),
                "P = {proj}: {d} vs {want}"
            );
        }
    }
}
