//! Per-op arithmetic: MACs, parameters, deployed weight bytes, scratch and the work that the
//! target's cycle table prices.
//!
//! Deployed weight format, as the exporter declares its constant arrays (`export::plan`): int8
//! weights, int32 biases, 8-byte dyadic multipliers (int32 multiplier + int32 shift) of every
//! Linear / Conv layer, one per tensor or per output channel ([`RequantGranularity`]), int8
//! LayerNorm gamma and int32 beta, int8 embedding tables and class tokens, 256-byte GELU
//! tables. The few int32 parameters of element-wise ops (Add, Softmax, LayerNorm, MatMul
//! requantization, pooling) live in small per-kernel structs that neither side counts. Scratch
//! is what the bundled runtime allocates: none for convolutions (no im2col), softmax and
//! LayerNorm (a second pass recomputes instead of keeping an int32 row). With a [`Sparsity`](crate::graph::Sparsity), the weight matrix is
//! stored blockwise run-length coded when `rle::predicted_size_bytes` is smaller than
//! dense (TinyFormer's self-adaptive rule), its MACs scale by `1 - rho`, and it runs the
//! sparse kernel class (the runtime's `nas_sparse.c`, which reads the coded stream in place).

use crate::error::CostError;
use crate::graph::{Op, OpKind, RequantGranularity};
use crate::target::{KernelClass, Target};

/// Work units priced by [`crate::target::CycleTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    LinearMac,
    MatMulMac,
    ConvMac,
    DepthwiseMac,
    Softmax,
    LayerNorm,
    Gelu,
    Add,
    Relu,
    Requant,
    Pool,
    Copy,
    /// A MAC of a sparse kernel (nonzero blocks only).
    SparseMac,
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
    /// Cycles on `target`: MAC work / simd width, everything split over the worker cores, plus
    /// one call overhead.
    pub fn cycles(&self, target: &Target) -> f64 {
        let c = &target.cycles;
        let simd = target.simd_width as f64;
        let total: f64 = self
            .work
            .iter()
            .map(|&(w, n)| {
                let n = n as f64;
                match w {
                    Work::LinearMac => n * c.linear / simd,
                    Work::MatMulMac => n * c.matmul / simd,
                    Work::ConvMac => n * c.conv / simd,
                    Work::DepthwiseMac => n * c.depthwise / simd,
                    Work::Softmax => n * c.softmax,
                    Work::LayerNorm => n * c.layernorm,
                    Work::Gelu => n * c.gelu,
                    Work::Add => n * c.add,
                    Work::Relu => n * c.relu,
                    Work::Requant => n * c.requant,
                    Work::Pool => n * c.pool,
                    Work::Copy => n * c.copy,
                    Work::SparseMac => n * c.sparse_mac,
                }
            })
            .sum();
        total / target.workers() as f64 + c.call_overhead
    }
}

/// The work unit of a weight layer's MACs: the sparse kernels' when its weights are coded.
fn mac_work(coded: bool, dense: Work) -> Work {
    if coded { Work::SparseMac } else { dense }
}

/// Bytes of one dyadic multiplier.
const REQUANT_BYTES: u64 = 8;

/// Flash of one softmax exponent table (256 int32 i-exp values, indexed by `max - x`).
pub const SOFTMAX_LUT_BYTES: u64 = 256 * 4;

/// How the deployed model stores its constants (the graph-wide settings of
/// [`crate::graph::Graph`]); the default is the exporter's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deploy {
    pub requant: RequantGranularity,
    pub softmax_lut: bool,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            requant: RequantGranularity::PerTensor,
            softmax_lut: true,
        }
    }
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
                    (coded, 1.0 - sp.rho, true)
                } else {
                    (dense, 1.0, false)
                })
            }
            _ => Ok((dense, 1.0, false)),
        }
    };
    let scale = |m: u64, f: f64| (m as f64 * f).round() as u64;
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
            OpCost {
                macs,
                params: v(in_features * out_features) + b,
                // the runtime's Linear always reads an int32 bias (zeros without one)
                weight_bytes: wb + 4 * v(out_features) + rq(out_features),
                sparse_coded: coded,
                output_bytes: out,
                scratch_bytes: 0,
                class: if coded {
                    KernelClass::SparseLinear
                } else {
                    KernelClass::Linear
                },
                work: vec![
                    (mac_work(coded, Work::LinearMac), macs),
                    (Work::Requant, out),
                ],
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
        OpKind::LayerNorm { dim, .. } => OpCost {
            macs: 0,
            params: 2 * v(dim),
            weight_bytes: 5 * v(dim),
            sparse_coded: false,
            output_bytes: out,
            scratch_bytes: 0,
            class: KernelClass::LayerNorm,
            work: vec![(Work::LayerNorm, out)],
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
            let (class, work) = match (pointwise, coded) {
                (true, true) => (KernelClass::SparseLinear, Work::SparseMac),
                (true, false) => (KernelClass::Linear, Work::LinearMac),
                (false, true) => (KernelClass::SparseConv, Work::SparseMac),
                (false, false) => (KernelClass::Conv, Work::ConvMac),
            };
            OpCost {
                macs,
                params: v(k * k * cin * cout + cout),
                weight_bytes: wb + 4 * v(cout) + rq(cout),
                sparse_coded: coded,
                output_bytes: out,
                scratch_bytes: 0,
                class,
                work: vec![(work, macs), (Work::Requant, out)],
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
                class: if coded {
                    KernelClass::SparseDepthwise
                } else {
                    KernelClass::Depthwise
                },
                work: vec![
                    (mac_work(coded, Work::DepthwiseMac), macs),
                    (Work::Requant, out),
                ],
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
                scratch_bytes: v(seq),
                class: KernelClass::Attention,
                work: vec![
                    (Work::MatMulMac, macs),
                    (Work::Softmax, scores),
                    (Work::Requant, scores + out),
                ],
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
}
