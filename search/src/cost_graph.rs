//! A TinyFormer single-path model (with its sparsity) as the cost model's graph, and the
//! resource check every candidate passes before any training (Alg. 1-3's ResourceEval).
//! Feature maps are HWC int8, so the unfold to tokens is free.

use cost::estimate::{Estimate, estimate};
use cost::graph::{Graph, GraphBuilder, OpKind, RequantGranularity, Sparsity};
use cost::target::Target;
use cost::tiles::TilePolicy;
use serde::{Deserialize, Serialize};
use training::tinyformer::{Downsample, Pooling, TinyFormerArch};

use crate::error::Result;
use crate::sparsity::SparseConfig;

/// A cost graph under construction whose named ops take their sparsity from `sparse`.
pub(crate) struct Builder<'a> {
    pub(crate) b: GraphBuilder,
    sparse: &'a SparseConfig,
}

impl<'a> Builder<'a> {
    /// A graph named `name` with per-channel requantization, as the search's PTQ deploys it.
    pub(crate) fn new(name: &str, sparse: &'a SparseConfig) -> Self {
        let mut b = GraphBuilder::new(name);
        b.requant(RequantGranularity::PerChannel);
        Self { b, sparse }
    }

    pub(crate) fn op(&mut self, name: &str, kind: OpKind, inputs: &[&str]) -> String {
        let out = self.b.op(name, kind, inputs);
        if let Some(s) = self.sparse.get(name) {
            self.b.sparsity(Sparsity {
                rho: s.sparsity,
                block: s.block,
            });
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        x: &str,
        hw: (usize, usize),
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> String {
        self.op(
            name,
            OpKind::Conv2d {
                h: hw.0,
                w: hw.1,
                cin,
                cout,
                k,
                stride,
                pad: k / 2,
            },
            &[x],
        )
    }

    fn relu(&mut self, name: &str, x: &str, elems: usize) -> String {
        self.op(name, OpKind::Relu { elems }, &[x])
    }

    pub(crate) fn linear(
        &mut self,
        name: &str,
        x: &str,
        tokens: usize,
        i: usize,
        o: usize,
    ) -> String {
        self.op(
            name,
            OpKind::Linear {
                tokens,
                in_features: i,
                out_features: o,
                bias: true,
            },
            &[x],
        )
    }
}

/// The cost graph of `arch` with `sparse` applied, op for op as the exporter deploys the
/// integer model: MHSA attention as Q/K/V projections, the fused depth-first core (quant lowers
/// TinyFormer's attention as MHSA; `export` fuses it) and the output projection; per-channel
/// requantization (the search's PTQ uses per-channel weight scales).
pub fn tinyformer_graph(arch: &TinyFormerArch, sparse: &SparseConfig) -> Result<Graph> {
    let mut g = Builder::new("tinyformer", sparse);
    let [mut cin, h0, w0] = arch.input;
    let mut x = g.b.input("image", (cin * h0 * w0) as u64);
    let (mut h, mut w) = (h0, w0);
    for (i, s) in arch.stages.iter().enumerate() {
        let c = s.channels;
        let p = format!("s{i}");
        x = match s.downsample {
            Downsample::ConvStride2 => {
                let y = g.conv(&format!("{p}.down"), &x, (h, w), cin, c, 3, 2);
                g.relu(&format!("{p}.down.relu"), &y, (h / 2) * (w / 2) * c)
            }
            Downsample::ConvMaxPool => {
                let y = g.conv(&format!("{p}.down"), &x, (h, w), cin, c, 3, 1);
                let y = g.relu(&format!("{p}.down.relu"), &y, h * w * c);
                g.op(
                    &format!("{p}.down.pool"),
                    OpKind::Pool {
                        h,
                        w,
                        c,
                        k: 2,
                        stride: 2,
                    },
                    &[&y],
                )
            }
        };
        h /= 2;
        w /= 2;
        let hw = h * w;
        for (j, m) in s.mobilenets.iter().enumerate() {
            let q = format!("{p}.mb{j}");
            let e = c * m.expansion;
            let y = g.conv(&format!("{q}.expand"), &x, (h, w), c, e, 1, 1);
            let y = g.relu(&format!("{q}.expand.relu"), &y, hw * e);
            let y = g.op(
                &format!("{q}.dw"),
                OpKind::DepthwiseConv2d {
                    h,
                    w,
                    c: e,
                    k: 3,
                    stride: 1,
                    pad: 1,
                },
                &[&y],
            );
            let y = g.relu(&format!("{q}.dw.relu"), &y, hw * e);
            let y = g.conv(&format!("{q}.project"), &y, (h, w), e, c, 1, 1);
            x = g.op(
                &format!("{q}.add"),
                OpKind::Add { elems: hw * c },
                &[&x, &y],
            );
        }
        for (j, t) in s.transformers.iter().enumerate() {
            let q = format!("{p}.tr{j}");
            let y = g.conv(&format!("{q}.local3"), &x, (h, w), c, c, 3, 1);
            let y = g.relu(&format!("{q}.local3.relu"), &y, hw * c);
            let mut tok = g.conv(&format!("{q}.local1"), &y, (h, w), c, c, 1, 1);
            for e in 0..t.encoders {
                let r = format!("{q}.enc{e}");
                let n1 = g.op(
                    &format!("{r}.ln1"),
                    // quantized with Scaled-LayerNorm, as the search does
                    OpKind::LayerNorm {
                        tokens: hw,
                        dim: c,
                        scaled: true,
                    },
                    &[&tok],
                );
                // As the exporter runs it: Q, K, V projections, the fused depth-first core,
                // the output projection.
                let q = g.linear(&format!("{r}.attn.q"), &n1, hw, c, c);
                let k = g.linear(&format!("{r}.attn.k"), &n1, hw, c, c);
                let v = g.linear(&format!("{r}.attn.v"), &n1, hw, c, c);
                let core = g.op(
                    &format!("{r}.attn.core"),
                    OpKind::AttentionCore {
                        seq: hw,
                        heads: t.heads,
                        proj: c / t.heads,
                    },
                    &[&q, &k, &v],
                );
                let a = g.linear(&format!("{r}.attn.out"), &core, hw, c, c);
                let a = g.op(
                    &format!("{r}.add1"),
                    OpKind::Add { elems: hw * c },
                    &[&tok, &a],
                );
                let n2 = g.op(
                    &format!("{r}.ln2"),
                    // quantized with Scaled-LayerNorm, as the search does
                    OpKind::LayerNorm {
                        tokens: hw,
                        dim: c,
                        scaled: true,
                    },
                    &[&a],
                );
                let m = t.mlp_ratio * c;
                let f = g.linear(&format!("{r}.fc1"), &n2, hw, c, m);
                let f = g.relu(&format!("{r}.fc1.relu"), &f, hw * m);
                let f = g.linear(&format!("{r}.fc2"), &f, hw, m, c);
                tok = g.op(
                    &format!("{r}.add2"),
                    OpKind::Add { elems: hw * c },
                    &[&a, &f],
                );
            }
            let y = g.conv(&format!("{q}.fuse1"), &tok, (h, w), c, c, 1, 1);
            let y = g.relu(&format!("{q}.fuse1.relu"), &y, hw * c);
            let y = g.conv(&format!("{q}.fuse3"), &y, (h, w), c, c, 3, 1);
            x = g.op(
                &format!("{q}.add"),
                OpKind::Add { elems: hw * c },
                &[&x, &y],
            );
        }
        cin = c;
    }
    let c = cin;
    let pooled = match arch.pooling {
        Pooling::SeqPool => {
            let s = g.linear("head.seqpool", &x, h * w, c, 1);
            let s = g.op(
                "head.softmax",
                OpKind::Softmax {
                    rows: 1,
                    cols: h * w,
                },
                &[&s],
            );
            g.op(
                "head.pool",
                OpKind::MatMul {
                    batch: 1,
                    m: 1,
                    k: h * w,
                    n: c,
                },
                &[&s, &x],
            )
        }
        Pooling::AvgPool => g.op(
            "head.pool",
            OpKind::Pool {
                h,
                w,
                c,
                k: 2,
                stride: 2,
            },
            &[&x],
        ),
    };
    let y = g.linear(
        "head.last",
        &pooled,
        1,
        arch.pooled_features(),
        arch.last_linear,
    );
    let y = g.relu("head.last.relu", &y, arch.last_linear);
    g.linear("head.classifier", &y, 1, arch.last_linear, arch.classes);
    Ok(g.b.build()?)
}

/// The limits a candidate must meet, and how it is deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub sram_bytes: u64,
    pub flash_bytes: u64,
    pub latency_ms: Option<f64>,
    /// Which layers the exporter plans the DSP kernels' operand tiles for (where the target has
    /// DSP).
    #[serde(default)]
    pub operand_tiles: TilePolicy,
}

impl Limits {
    /// The exporter's options for a candidate deployed under these limits.
    pub fn int8_options(&self) -> export::Int8Options {
        export::Int8Options {
            operand_tiles: self.operand_tiles,
            ..export::Int8Options::default()
        }
    }
}

/// A candidate's resources and the limits it breaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub sram_bytes: u64,
    pub peak_op: String,
    pub flash_bytes: u64,
    pub latency_ms: f64,
    pub macs: u64,
    /// Empty when the candidate fits; otherwise one line per broken limit.
    pub violations: Vec<String>,
}

impl Resources {
    pub fn fits(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs the cost model and checks `limits`.
pub fn evaluate(
    arch: &TinyFormerArch,
    sparse: &SparseConfig,
    target: &Target,
    limits: &Limits,
) -> Result<(Resources, Estimate)> {
    evaluate_graph(tinyformer_graph(arch, sparse)?, target, limits)
}

/// Estimates `graph` on `target`, deployed as `limits` says (which operand tiles), and names
/// every limit it breaks.
pub fn evaluate_graph(
    mut graph: Graph,
    target: &Target,
    limits: &Limits,
) -> Result<(Resources, Estimate)> {
    graph.operand_tiles = limits.operand_tiles;
    let est = estimate(&graph, target)?;
    let latency_ms = est.latency_s * 1e3;
    let mut violations = Vec::new();
    if est.peak_sram_bytes > limits.sram_bytes {
        violations.push(format!(
            "SRAM {} B > {} B (peak at {})",
            est.peak_sram_bytes, limits.sram_bytes, est.peak_op
        ));
    }
    if est.flash.total > limits.flash_bytes {
        violations.push(format!(
            "flash {} B > {} B",
            est.flash.total, limits.flash_bytes
        ));
    }
    if let Some(l) = limits.latency_ms
        && latency_ms > l
    {
        violations.push(format!("latency {latency_ms:.1} ms > {l} ms"));
    }
    Ok((
        Resources {
            sram_bytes: est.peak_sram_bytes,
            peak_op: est.peak_op.clone(),
            flash_bytes: est.flash.total,
            latency_ms,
            macs: est.macs,
            violations,
        },
        est,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use training::tinyformer::{DotArch, MobileNetArch, TransformerArch};

    fn arch() -> TinyFormerArch {
        TinyFormerArch {
            input: [1, 16, 16],
            classes: 4,
            stages: vec![DotArch {
                downsample: Downsample::ConvMaxPool,
                channels: 8,
                mobilenets: vec![MobileNetArch { expansion: 2 }],
                transformers: vec![TransformerArch {
                    heads: 2,
                    mlp_ratio: 2,
                    encoders: 1,
                }],
            }],
            pooling: Pooling::SeqPool,
            last_linear: 16,
        }
    }

    fn target() -> Target {
        Target::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs/targets/stm32f746.ron"),
        )
        .unwrap()
    }

    /// The cost model's SRAM and flash for a TinyFormer path equal the exporter's for its
    /// integer model under each operand-tile policy (`auto` runs the same choice on both sides),
    /// and `auto` costs no more SRAM than no tiles.
    #[test]
    fn cost_model_equals_the_export_under_every_tile_policy() {
        let mut a = arch();
        // attention-heavy: a small image, wide tokens, 2 encoders (the V projection's and the
        // attention's tiles sit at the peak, the others do not)
        let mut wide = arch();
        wide.input = [1, 8, 8];
        wide.pooling = Pooling::AvgPool;
        wide.stages[0].downsample = Downsample::ConvStride2;
        wide.stages[0].channels = 32;
        wide.stages[0].transformers[0].encoders = 2;
        wide.stages[0].transformers[0].mlp_ratio = 1;
        for a in [&mut a, &mut wide] {
            let model = training::tinyformer::TinyFormer::init(a, 3, &burn::tensor::Device::flex())
                .unwrap();
            let (images, _) = training::tinyformer::fixtures::gratings(8, a, 5);
            let opts = quant::ptq::PtqOptions {
                scaled_layer_norm: true,
                ..Default::default()
            };
            let (graph, _) = quant::ptq::quantize_tinyformer(&model, a, &images, &opts).unwrap();
            let mut srams = Vec::new();
            for tiles in [TilePolicy::Always, TilePolicy::Never, TilePolicy::Auto] {
                let limits = Limits {
                    sram_bytes: 1 << 20,
                    flash_bytes: 1 << 20,
                    latency_ms: None,
                    operand_tiles: tiles,
                };
                let (r, _) = evaluate(a, &SparseConfig::new(), &target(), &limits).unwrap();
                // dense, as costed (an untrained model's int8 weights hold zero runs that the
                // exporter would code)
                let int8 = export::Int8Options {
                    sparse_weights: false,
                    ..limits.int8_options()
                };
                let (_, e) = export::plan::estimate(&graph, &target(), &int8).unwrap();
                assert_eq!(
                    (r.sram_bytes, r.flash_bytes),
                    (e.arena_bytes, e.flash_bytes),
                    "{tiles:?}"
                );
                srams.push(r.sram_bytes);
            }
            assert!(srams[2] <= srams[1] && srams[1] <= srams[0], "{srams:?}");
            if a.stages[0].channels == 32 {
                // the tiles at the attention raise the peak: auto drops them
                assert!(srams[0] > srams[1] && srams[2] == srams[1], "{srams:?}");
            }
        }
    }

    #[test]
    fn every_broken_limit_is_named_and_sparsity_shrinks_flash() {
        let a = arch();
        let dense = SparseConfig::new();
        let roomy = Limits {
            sram_bytes: 1 << 20,
            flash_bytes: 1 << 20,
            latency_ms: Some(1e6),
            operand_tiles: TilePolicy::Always,
        };
        let (r, est) = evaluate(&a, &dense, &target(), &roomy).unwrap();
        assert!(r.fits(), "{:?}", r.violations);
        assert_eq!(r.sram_bytes, est.peak_sram_bytes);
        let tight = Limits {
            sram_bytes: 1,
            flash_bytes: 1,
            latency_ms: Some(0.0),
            operand_tiles: TilePolicy::Always,
        };
        let (r, _) = evaluate(&a, &dense, &target(), &tight).unwrap();
        let kinds: Vec<&str> = r
            .violations
            .iter()
            .map(|v| v.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(kinds, ["SRAM", "flash", "latency"], "{:?}", r.violations);
        // 75 % blockwise sparsity on the MLP makes its weights RLE-coded: fewer weight bytes,
        // and flash changes by exactly that saving plus the sparse Linear kernel's code.
        let mut sparse = SparseConfig::new();
        for name in ["s0.tr0.enc0.fc1", "s0.tr0.enc0.fc2"] {
            sparse.insert(
                name.into(),
                crate::sparsity::LayerSparsity {
                    block: 4,
                    sparsity: 0.75,
                },
            );
        }
        let (s, es) = evaluate(&a, &sparse, &target(), &roomy).unwrap();
        let (d, ed) = evaluate(&a, &dense, &target(), &roomy).unwrap();
        assert!(
            es.flash.weights < ed.flash.weights,
            "{} vs {}",
            es.flash.weights,
            ed.flash.weights
        );
        assert_eq!(
            s.flash_bytes + (ed.flash.weights - es.flash.weights),
            d.flash_bytes + target().code_size.sparse_linear
        );
    }
}
