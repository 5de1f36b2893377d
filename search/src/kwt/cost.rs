//! A KWT candidate (with its sparsity) as the cost model's graph, op for op as `nas quantize`
//! lowers it and `nas export` deploys it: the embedding Linear, class token and position
//! embedding, per (post-norm) block the Q/K/V projections, the fused depth-first attention
//! core, the output projection, LayerNorms, the GELU MLP, then the class token's LayerNorm and
//! classifier. Pruned layers are costed run-length coded.

use cost::estimate::Estimate;
use cost::graph::{Graph, OpKind};
use cost::target::Target;
use training::KwtConfig;

use crate::cost_graph::{Builder, Limits, Resources, evaluate_graph};
use crate::error::{Result, SearchError};
use crate::sparsity::SparseConfig;

/// The cost graph of `cfg` with `sparse` (keyed by `pruning::kwt_layers` paths).
pub fn kwt_graph(cfg: &KwtConfig, sparse: &SparseConfig) -> Result<Graph> {
    if cfg.distill_token || cfg.norm != training::NormPlacement::PostNorm {
        return Err(SearchError::Search(
            "the KWT search costs post-norm models without a distillation token".into(),
        ));
    }
    let mut g = Builder::new(
        &format!(
            "kwt-d{}-l{}-h{}x{}-m{}",
            cfg.dim, cfg.depth, cfg.heads, cfg.dim_head, cfg.mlp_dim
        ),
        sparse,
    );
    let (d, m, inner) = (cfg.dim, cfg.mlp_dim, cfg.heads * cfg.dim_head);
    let x = g.b.input("mfcc", (cfg.frames * cfg.features) as u64);
    let x = g.linear("embed", &x, cfg.frames, cfg.features, d);
    let x = g.op(
        "cls_token",
        OpKind::ClassToken {
            tokens: cfg.frames,
            dim: d,
        },
        &[&x],
    );
    let seq = cfg.frames + 1;
    let mut x = g.op(
        "pos_embedding",
        OpKind::PosEmbedding {
            tokens: seq,
            dim: d,
        },
        &[&x],
    );
    let ln = |tokens| OpKind::LayerNorm {
        tokens,
        dim: d,
        scaled: false,
    };
    for i in 0..cfg.depth {
        let p = format!("blocks.{i}");
        let q = g.linear(&format!("{p}.attn.q"), &x, seq, d, inner);
        let k = g.linear(&format!("{p}.attn.k"), &x, seq, d, inner);
        let v = g.linear(&format!("{p}.attn.v"), &x, seq, d, inner);
        let core = g.op(
            &format!("{p}.attn.core"),
            OpKind::AttentionCore {
                seq,
                heads: cfg.heads,
                proj: cfg.dim_head,
            },
            &[&q, &k, &v],
        );
        let a = g.linear(&format!("{p}.attn.out"), &core, seq, inner, d);
        let a = g.op(
            &format!("{p}.add1"),
            OpKind::Add { elems: seq * d },
            &[&x, &a],
        );
        let a = g.op(&format!("{p}.norm1"), ln(seq), &[&a]);
        let f = g.linear(&format!("{p}.mlp.fc1"), &a, seq, d, m);
        let f = g.op(
            &format!("{p}.mlp.gelu"),
            OpKind::Gelu { elems: seq * m },
            &[&f],
        );
        let f = g.linear(&format!("{p}.mlp.fc2"), &f, seq, m, d);
        let f = g.op(
            &format!("{p}.add2"),
            OpKind::Add { elems: seq * d },
            &[&a, &f],
        );
        x = g.op(&format!("{p}.norm2"), ln(seq), &[&f]);
    }
    let t = g.op(
        "head.token",
        OpKind::TakeToken {
            tokens: seq,
            dim: d,
        },
        &[&x],
    );
    let t = g.op("head.norm", ln(1), &[&t]);
    g.linear("head.fc", &t, 1, d, cfg.classes);
    Ok(g.b.build()?)
}

/// Runs the cost model on a KWT candidate and checks `limits`.
pub fn evaluate_kwt(
    cfg: &KwtConfig,
    sparse: &SparseConfig,
    target: &Target,
    limits: &Limits,
) -> Result<(Resources, Estimate)> {
    evaluate_graph(kwt_graph(cfg, sparse)?, target, limits)
}
