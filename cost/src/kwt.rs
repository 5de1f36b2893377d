//! Graph constructors: the Keyword Transformer (KWT, Berg et al. 2021) and an attention block.
//!
//! KWT: MFCC input `frames x features` (98 x 40) projected to `dim`, a class token prepended
//! (`seq = frames + 1 = 99`), learned positional embedding, `depth` post-norm encoder blocks
//! (attention without Q/K/V biases, head size `dim / heads`, MLP with GELU), and a head
//! (LayerNorm + Linear) on the class token. Constants are costed as `nas quantize` and
//! `nas export` deploy them by default (per-channel requantization, softmax exponent tables).

use crate::attention::{AttentionSpec, AttentionVariant, Tiling};
use crate::error::CostError;
use crate::graph::{Graph, GraphBuilder, OpKind, RequantGranularity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KwtConfig {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    pub frames: usize,
    pub features: usize,
    pub classes: usize,
    pub variant: AttentionVariant,
    pub tiling: Tiling,
}

impl KwtConfig {
    /// Paper configuration: 98 frames x 40 MFCC, 12 classes, MHSA, layer-wise.
    pub fn new(dim: usize, depth: usize, heads: usize, mlp_dim: usize) -> Self {
        KwtConfig {
            dim,
            depth,
            heads,
            mlp_dim,
            frames: 98,
            features: 40,
            classes: 12,
            variant: AttentionVariant::Mhsa,
            tiling: Tiling::LayerWise,
        }
    }
    pub fn kwt1() -> Self {
        Self::new(64, 12, 1, 256)
    }
    pub fn kwt2() -> Self {
        Self::new(128, 12, 2, 512)
    }
    pub fn kwt3() -> Self {
        Self::new(192, 12, 3, 768)
    }
    pub fn tiny() -> Self {
        Self::new(32, 2, 2, 64)
    }
}

/// Shape of one encoder block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockConfig {
    pub seq: usize,
    pub dim: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    pub variant: AttentionVariant,
    pub tiling: Tiling,
}

/// One post-norm encoder block on `x` (`seq x dim`): attention + residual + LayerNorm, then
/// MLP (Linear, GELU, Linear) + residual + LayerNorm. Returns the block output tensor.
pub fn attention_block(
    b: &mut GraphBuilder,
    prefix: &str,
    x: &str,
    cfg: &BlockConfig,
) -> Result<String, CostError> {
    let BlockConfig {
        seq,
        dim,
        heads,
        mlp_dim,
        variant,
        tiling,
    } = *cfg;
    if heads == 0 || !dim.is_multiple_of(heads) {
        return Err(CostError::InvalidOp {
            graph: prefix.to_string(),
            op: format!("{prefix}.attn"),
            problem: format!("dim {dim} must be a nonzero multiple of heads {heads}"),
        });
    }
    let n = |s: &str| format!("{prefix}.{s}");
    let attn = b.op(
        n("attn"),
        OpKind::Attention(AttentionSpec {
            seq,
            embed: dim,
            proj: dim / heads,
            heads,
            qkv_bias: false,
            variant,
            tiling,
        }),
        &[x],
    );
    let elems = seq * dim;
    let a1 = b.op(n("add1"), OpKind::Add { elems }, &[x, &attn]);
    let n1 = b.op(
        n("ln1"),
        OpKind::LayerNorm {
            tokens: seq,
            dim,
            scaled: false,
        },
        &[&a1],
    );
    let lin = |i, o| OpKind::Linear {
        tokens: seq,
        in_features: i,
        out_features: o,
        bias: true,
    };
    let h = b.op(n("fc1"), lin(dim, mlp_dim), &[&n1]);
    let g = b.op(
        n("gelu"),
        OpKind::Gelu {
            elems: seq * mlp_dim,
        },
        &[&h],
    );
    let f = b.op(n("fc2"), lin(mlp_dim, dim), &[&g]);
    let a2 = b.op(n("add2"), OpKind::Add { elems }, &[&n1, &f]);
    Ok(b.op(
        n("ln2"),
        OpKind::LayerNorm {
            tokens: seq,
            dim,
            scaled: false,
        },
        &[&a2],
    ))
}

/// The KWT cost graph.
pub fn kwt(c: &KwtConfig) -> Result<Graph, CostError> {
    let name = format!("kwt-d{}-l{}-h{}-m{}", c.dim, c.depth, c.heads, c.mlp_dim);
    let mut b = GraphBuilder::new(name);
    // as `nas quantize` deploys it by default: per-channel weight scales
    b.requant(RequantGranularity::PerChannel);
    let x = b.input("mfcc", (c.frames * c.features) as u64);
    let proj = b.op(
        "embed",
        OpKind::Linear {
            tokens: c.frames,
            in_features: c.features,
            out_features: c.dim,
            bias: true,
        },
        &[&x],
    );
    let seq = c.frames + 1;
    let cls = b.op(
        "cls",
        OpKind::ClassToken {
            tokens: c.frames,
            dim: c.dim,
        },
        &[&proj],
    );
    let mut h = b.op(
        "pos",
        OpKind::PosEmbedding {
            tokens: seq,
            dim: c.dim,
        },
        &[&cls],
    );
    for l in 0..c.depth {
        let cfg = BlockConfig {
            seq,
            dim: c.dim,
            heads: c.heads,
            mlp_dim: c.mlp_dim,
            variant: c.variant,
            tiling: c.tiling,
        };
        h = attention_block(&mut b, &format!("l{l}"), &h, &cfg)?;
    }
    let t = b.op(
        "take_cls",
        OpKind::TakeToken {
            tokens: seq,
            dim: c.dim,
        },
        &[&h],
    );
    let n = b.op(
        "head_ln",
        OpKind::LayerNorm {
            tokens: 1,
            dim: c.dim,
            scaled: false,
        },
        &[&t],
    );
    b.op(
        "head",
        OpKind::Linear {
            tokens: 1,
            in_features: c.dim,
            out_features: c.classes,
            bias: true,
        },
        &[&n],
    );
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::op_cost;

    fn params(c: &KwtConfig) -> u64 {
        let g = kwt(c).unwrap();
        g.ops
            .iter()
            .map(|op| {
                op_cost(op, None, crate::ops::Deploy::default())
                    .unwrap()
                    .params
            })
            .sum()
    }

    #[test]
    fn kwt_param_counts_match_paper_table1() {
        // KWT paper Table 1: 607K / 2,394K / 5,361K.
        let p = [
            params(&KwtConfig::kwt1()),
            params(&KwtConfig::kwt2()),
            params(&KwtConfig::kwt3()),
        ];
        println!("KWT-1/2/3 params: {p:?}");
        assert_eq!(p, [607_436, 2_394_508, 5_361_228]);
        assert_eq!(p.map(|x| x / 1000), [607, 2394, 5361]);
    }

    #[test]
    fn heads_must_divide_dim() {
        let mut c = KwtConfig::tiny();
        c.heads = 3;
        let e = kwt(&c).unwrap_err().to_string();
        assert!(e.contains("l0.attn") && e.contains("heads 3"), "{e}");
    }
}
