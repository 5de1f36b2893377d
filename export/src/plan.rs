//! Schedule and memory plan of a deployable integer graph (`quant::Graph`): the integer graph's
//! view of the cost model. The tensor lifetimes are turned into `cost::memory::Buffer`s and
//! planned by the cost model's own planner, so the code generator ([`crate::codegen`], which takes
//! its schedule, tensor storage and arena offsets from [`plan`]) allocates exactly the SRAM the
//! cost model reports, by construction and by test:
//!
//! * **SRAM** = [`Int8Plan::arena_bytes`]: the one static activation arena, planned by the same
//!   planners as the analytic model ([`cost::memory::plan`]: head-tail and best-fit, the smaller
//!   kept) over the buffers of [`Int8Plan::buffers`]. Every buffer is rounded up to
//!   [`ARENA_ALIGN`] bytes. Graph inputs live in the caller's `in` buffer (not in the arena),
//!   reshapes alias their input, and graph outputs stay live through the final copy into `out`.
//!   Lifetimes are counted in executed kernels (the cost model's ops), not graph nodes.
//! * **flash constants** = [`Int8Plan::weight_bytes`]: the bytes of every constant array the
//!   generated model source declares (int8 weights, or their blockwise run-length coding where
//!   that is smaller and [`Int8Options::sparse_weights`] is on, see [`crate::sparse`]; int32
//!   biases, 8-byte dyadic multipliers of Linear / Conv2d / DepthwiseConv2d, embeddings, class
//!   tokens, LayerNorm int8 gamma and int32 beta, 256-byte GELU tables, int32 shape and
//!   permutation of each transpose, and with [`Int8Options::softmax_lut`] one 1 KiB exponent
//!   table per softmax). Small per-node
//!   parameter structs are not counted. Flash as a whole ([`Int8Estimate::flash_bytes`]) adds
//!   the target's per-kernel code-size estimate.
//!
//! Attention fusion (pulp-transformer Sec. 4.5-4.6): a `MatMul(Q, K^T) -> Softmax ->
//! MatMul(A, V)` chain whose intermediates have no other reader runs as one depth-first tiled
//! kernel (S -> H -> S loop order): for each query row and head it computes one row of the
//! scores, its softmax and the `A V` row, so the `H x S x S` attention matrix is never
//! materialized; its scratch is one int8 row of `S` bytes (with operand tiles, on Cortex-M DSP
//! targets, 4 rows of scores and 4 rows of queries and of probabilities as int16 lanes, so
//! that the kernel runs 4 query rows per key and `V^T` row read:
//! [`cost::ops::attention_scratch_bytes`]). Head-split transposes
//! (`Transpose [1, 0, 2]`) feeding Q/K/V and the head-merge transpose after `A V` are folded
//! into strided views. A key operand that is an exact head replication of a tensor `X` (a
//! Linear with stacked identity weights, zero bias and unit requantization: how an FWSA graph,
//! `A = softmax(X W* X^T)`, is written in quant's op set) is read from `X` directly (head
//! stride 0): the FWSA kernel. A value operand projected by a private Linear is written by that
//! Linear transposed, `[H P, T]` (the Weight-Reuse layout of pulp-transformer 4.6.2,
//! `nas_linear_wrl_s8`), so the `A V` products read contiguous rows; each row is padded to a
//! word ([`wrl_row`]) so that those rows start word aligned.

use std::collections::{BTreeSet, HashMap};

use quant::graph::{Graph, Op, Requant};
use quant::{Dyadic, ISoftmax};
use rle::Encoded;
use serde::{Deserialize, Serialize};

use cost::memory::lifetime::align;
use cost::memory::{self, Buffer, BufferKind, PlannerKind};
use cost::target::{KernelClass, Target};
use cost::tiles::TileCandidate;

/// Which layers plan operand tiles (the cost model's setting, shared).
pub use cost::tiles::TilePolicy;

use crate::error::ExportError;
use crate::sparse::coded_weights;

/// Alignment of every arena buffer (word loads of the DSP dot product): the cost model's, so
/// that its SRAM figure and the exporter's arena round alike.
pub use cost::memory::lifetime::ALIGN as ARENA_ALIGN;

/// Bytes of one dyadic multiplier in flash (two int32).
pub const DYADIC_BYTES: u64 = 8;

/// Bytes of a softmax exponent table in flash (256 int32).
pub use cost::ops::SOFTMAX_LUT_BYTES;

/// Row stride of the transposed V projection (the cost model's rule, shared).
pub use cost::ops::wrl_row;

/// Schedule options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Int8Options {
    /// Fuse attention chains into the depth-first tiled kernel (default). Off: every op runs
    /// layer-wise and materializes its output (the attention matrix included).
    pub fuse_attention: bool,
    /// Store Linear / Conv2d / depthwise weights blockwise run-length coded where that is
    /// smaller than dense, run by the sparse kernels (default; see [`crate::sparse`]). Off:
    /// every weight is dense.
    pub sparse_weights: bool,
    /// TinyFormer's softmax exponent table (default): every softmax, standalone or fused,
    /// reads its i-exp values from a 256-entry int32 table indexed by `max - x` (one per
    /// softmax, [`SOFTMAX_LUT_BYTES`] of flash each) instead of evaluating the i-exp
    /// polynomial. The input is int8, so the table holds every value the interpreter can
    /// compute: bit-exact either way.
    pub softmax_lut: bool,
    /// Which layers plan the operand tiles of the Cortex-M DSP kernels (default: all): a dense
    /// Linear with 4 rows or more and an input width that is a multiple of 4 gets an arena
    /// buffer for 4 input rows extended to int16 lanes ([`cost::ops::linear_tile_bytes`]), a
    /// fused attention whose reduction is a multiple of 4 a larger scratch (4 rows of scores, of
    /// queries and of probabilities, [`cost::ops::attention_scratch_bytes`]), so that those
    /// kernels extend one operand once instead of in every dot product (same results).
    /// [`TilePolicy::Auto`] keeps only the tiles that do not raise the arena
    /// ([`cost::tiles::choose`], as the cost model does); `Never`, or a target without the DSP
    /// extension ([`Int8Options::for_target`]): none planned.
    pub operand_tiles: TilePolicy,
}

impl Default for Int8Options {
    fn default() -> Self {
        Int8Options {
            fuse_attention: true,
            sparse_weights: true,
            softmax_lut: true,
            operand_tiles: TilePolicy::Always,
        }
    }
}

impl Int8Options {
    /// These options for `target`: operand tiles only where its core has the DSP extension
    /// (as the cost model plans them, `cost::estimate`).
    pub fn for_target(&self, target: &Target) -> Int8Options {
        Int8Options {
            operand_tiles: self.operand_tiles.on_target(target.has_dsp()),
            ..*self
        }
    }
}

/// A strided int8 view of a stored tensor: element `(h, r, i)` at
/// `tensor + h * head + r * row + i * inner` (in elements).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The stored tensor (graph input or arena tensor).
    pub tensor: String,
    /// Head stride (0: shared by every head).
    pub head: usize,
    /// Row stride.
    pub row: usize,
    /// Innermost stride.
    pub inner: usize,
}

/// A fused attention chain: `out[h, s, :] = requant_o(softmax(requant_s(q[h, s, :] . k[h, t, :])
/// over t) . v[h, t, :])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusedAttention {
    /// Heads `H`.
    pub heads: usize,
    /// Query rows `S`.
    pub rows: usize,
    /// Keys `T` (the softmax row length).
    pub keys: usize,
    /// Reduction length of `Q K^T` (`P`, or `E` for FWSA).
    pub inner: usize,
    /// Inner length of `V` and of the output.
    pub v_inner: usize,
    /// Query view.
    pub q: View,
    /// Key view (`head == 0` for FWSA).
    pub k: View,
    /// Value view.
    pub v: View,
    /// Output view (written).
    pub out: View,
    /// Requantization of the scores.
    pub score_rq: Dyadic,
    /// The softmax.
    pub softmax: ISoftmax,
    /// Requantization of `A V`.
    pub out_rq: Dyadic,
    /// Whether the keys are the shared (unreplicated) input of an FWSA graph.
    pub fwsa: bool,
    /// Node indices covered (all elided except `anchor`).
    pub nodes: Vec<usize>,
    /// The node where the kernel runs (the last covered node).
    pub anchor: usize,
    /// The Linear node projecting `V`, when it writes its output transposed (the Weight-Reuse
    /// layout `[H P, T]` of pulp-transformer 4.6.2, rows [`wrl_row`]`(T)` bytes apart): `v` is
    /// then read `v.row == 1`, the `A V` reduction contiguous.
    pub v_wrl: Option<usize>,
    /// The scratch also holds the DSP kernel's operand tiles ([`Int8Options::operand_tiles`]
    /// and [`cost::ops::attention_tiled`]).
    pub tiled: bool,
}

impl FusedAttention {
    /// Arena scratch of the kernel: one int8 row of scores / probabilities, with the operand
    /// tiles when [`FusedAttention::tiled`].
    pub fn scratch_bytes(&self) -> u64 {
        cost::ops::attention_scratch_bytes(self.keys, self.inner, self.tiled)
    }

    /// MACs of the two products.
    pub fn macs(&self) -> u64 {
        (self.heads * self.rows * self.keys * (self.inner + self.v_inner)) as u64
    }
}

/// What the generated code does for one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exec {
    /// Its own kernel.
    Kernel,
    /// A reshape: aliases its input, no code.
    Alias,
    /// Folded into a fused kernel that runs at a later node.
    Elided,
    /// Runs fused kernel number `.0` of [`Int8Plan::fused`].
    Fused(usize),
}

/// Where a tensor lives at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Storage {
    /// The caller's `in` buffer at this element offset.
    Input(usize),
    /// Arena buffer number (index into [`Int8Plan::buffers`]).
    Arena(usize),
}

/// The schedule and memory plan of an integer graph.
#[derive(Debug, Clone)]
pub struct Int8Plan {
    /// One entry per graph node.
    pub exec: Vec<Exec>,
    /// Fused attention kernels.
    pub fused: Vec<FusedAttention>,
    /// Linear nodes that write their output transposed (`nas_linear_wrl_s8`).
    pub wrl: BTreeSet<usize>,
    /// Storage of every materialized tensor (elided tensors have none).
    pub storage: HashMap<String, Storage>,
    /// Arena buffers (outputs and kernel scratch), sizes rounded up to [`ARENA_ALIGN`]; `start`
    /// and `end` count executed kernels (the final copy-out is one more), `op` is the node.
    pub buffers: Vec<Buffer>,
    /// Arena offset of each buffer.
    pub offsets: Vec<u64>,
    /// The activation arena (SRAM) in bytes.
    pub arena_bytes: u64,
    /// The planner that produced the arena.
    pub planner: PlannerKind,
    /// Head-tail arena.
    pub head_tail_bytes: u64,
    /// Best-fit arena.
    pub best_fit_bytes: u64,
    /// Largest live set (lower bound of any arena) and the node where it occurs.
    pub max_live_bytes: u64,
    /// Node name at the largest live set.
    pub peak_node: String,
    /// Bytes of constant arrays (flash), per the module docs.
    pub weight_bytes: u64,
    /// Constant bytes of each node (0 for elided nodes and fused anchors without constants).
    pub node_weight_bytes: Vec<u64>,
    /// Run-length coded weights of each node that stores them so (see [`crate::sparse`]).
    pub coded: Vec<Option<Encoded>>,
    /// Total input elements (graph inputs concatenated).
    pub input_len: usize,
    /// Total output elements.
    pub output_len: usize,
}

impl Int8Plan {
    /// Arena offset of a materialized arena tensor.
    pub fn arena_offset(&self, tensor: &str) -> Option<u64> {
        match self.storage.get(tensor)? {
            Storage::Arena(b) => Some(self.offsets[*b]),
            Storage::Input(_) => None,
        }
    }
}

fn err(node: &str, problem: impl Into<String>) -> ExportError {
    ExportError::Plan(format!("node `{node}`: {}", problem.into()))
}

/// Constant bytes the generated source declares for `op` (see the module docs); `coded`: its
/// weights' run-length coding, when stored so.
pub fn const_bytes(op: &Op, input_rank: usize, coded: Option<&Encoded>) -> u64 {
    let rq = |r: &Requant| match r {
        Requant::PerTensor(_) => DYADIC_BYTES,
        Requant::PerChannel(v) => DYADIC_BYTES * v.len() as u64,
    };
    let weight_bytes = |w: &[i8]| coded.map_or(w.len(), rle::coded_size_bytes) as u64;
    match op {
        Op::Linear {
            weight,
            bias,
            requant,
            ..
        }
        | Op::Conv2d {
            weight,
            bias,
            requant,
            ..
        }
        | Op::DepthwiseConv2d {
            weight,
            bias,
            requant,
            ..
        } => weight_bytes(weight) + 4 * bias.len() as u64 + rq(requant),
        Op::AddEmbedding { embedding, .. } => embedding.len() as u64,
        Op::ConcatClassToken { token } => token.len() as u64,
        Op::LayerNorm(ln) | Op::ScaledLayerNorm(ln) => {
            ln.gamma.len() as u64 + 4 * ln.beta.len() as u64
        }
        Op::Gelu(_) | Op::GeluTable(_) => 256,
        Op::Transpose { .. } => 2 * 4 * input_rank as u64,
        _ => 0,
    }
}

/// The kernel class of an op (code size and cycle tables); `coded`: its weights are stored
/// run-length coded (the sparse kernels).
pub fn kernel_class(op: &Op, coded: bool) -> Option<KernelClass> {
    Some(match op {
        Op::Linear { .. } if coded => KernelClass::SparseLinear,
        // a pointwise convolution runs as a Linear over the pixels (see codegen)
        Op::Conv2d { window, .. } if window.is_pointwise() => {
            if coded {
                KernelClass::SparseLinear
            } else {
                KernelClass::Linear
            }
        }
        Op::Conv2d { .. } if coded => KernelClass::SparseConv,
        Op::DepthwiseConv2d { .. } if coded => KernelClass::SparseDepthwise,
        Op::Linear { .. } => KernelClass::Linear,
        Op::MatMul { .. } => KernelClass::MatMul,
        Op::Add(_) | Op::Requant(_) | Op::Relu => KernelClass::Add,
        Op::Conv2d { .. } => KernelClass::Conv,
        Op::DepthwiseConv2d { .. } => KernelClass::Depthwise,
        Op::MaxPool2d(_) | Op::AvgPool2d(_) | Op::GlobalAvgPool | Op::SeqMeanPool => {
            KernelClass::Pool
        }
        Op::Gelu(_) | Op::GeluTable(_) => KernelClass::Gelu,
        Op::Softmax(_) => KernelClass::Softmax,
        Op::LayerNorm(_) | Op::ScaledLayerNorm(_) => KernelClass::LayerNorm,
        Op::ConcatClassToken { .. }
        | Op::AddEmbedding { .. }
        | Op::Transpose { .. }
        | Op::SelectToken { .. } => KernelClass::Embedding,
        Op::Reshape { .. } => return None,
    })
}

/// Indices of the nodes reading each tensor.
fn consumers(graph: &Graph) -> HashMap<&str, Vec<usize>> {
    let mut c: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for t in &n.inputs {
            c.entry(t.as_str()).or_default().push(i);
        }
    }
    c
}

struct Ctx<'a> {
    graph: &'a Graph,
    producer: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
    outputs: BTreeSet<&'a str>,
    shapes: HashMap<&'a str, &'a [usize]>,
}

impl<'a> Ctx<'a> {
    /// `t` is read only by node `by` and is not a graph output.
    fn private_to(&self, t: &str, by: usize) -> bool {
        !self.outputs.contains(t) && self.consumers.get(t).is_some_and(|c| c == &vec![by])
    }

    fn shape(&self, t: &str) -> &'a [usize] {
        self.shapes.get(t).copied().unwrap_or(&[])
    }

    /// A `[H, R, I]` (or `[R, I]`, one head) operand as a view, folding a private head-split
    /// transpose. `rows_major`: the operand is stored `[H, R, I]`; otherwise `[H, I, R]`.
    /// Returns the view and the elided transpose node, if any.
    fn operand(&self, t: &'a str, consumer: usize, rows_major: bool) -> (View, Option<usize>) {
        let s = self.shape(t);
        let (h, a, b) = match *s {
            [a, b] => (1, a, b),
            [h, a, b] => (h, a, b),
            _ => unreachable!("rank checked by the caller"),
        };
        if rows_major
            && s.len() == 3
            && let Some(&p) = self.producer.get(t)
            && let Op::Transpose { perm } = &self.graph.nodes[p].op
            && perm == &[1, 0, 2]
            && self.private_to(t, consumer)
        {
            // t = transpose(src [R, H, I]): (h, r, i) at r*H*I + h*I + i
            let src = self.graph.nodes[p].inputs[0].as_str();
            return (
                View {
                    tensor: src.into(),
                    head: b,
                    row: h * b,
                    inner: 1,
                },
                Some(p),
            );
        }
        let view = if rows_major {
            View {
                tensor: t.into(),
                head: a * b,
                row: b,
                inner: 1,
            }
        } else {
            View {
                tensor: t.into(),
                head: a * b,
                row: 1,
                inner: b,
            }
        };
        (view, None)
    }

    /// The Weight-Reuse form of a value operand folded from the head-split transpose node
    /// `tp`: when the transpose's source `[T, H, P]` is (through private reshapes) the private
    /// output of a Linear, that Linear can write `[H P, T]` instead and `v` is read from it
    /// with `row == 1`. Returns the new view and the Linear node.
    fn weight_reuse(
        &self,
        view: &View,
        tp: usize,
        keys: usize,
        heads: usize,
        p: usize,
    ) -> Option<(View, usize)> {
        let mut t = view.tensor.as_str();
        let mut reader = tp;
        loop {
            if !self.private_to(t, reader) {
                return None;
            }
            let prod = *self.producer.get(t)?;
            match &self.graph.nodes[prod].op {
                Op::Reshape { .. } => {
                    reader = prod;
                    t = self.graph.nodes[prod].inputs[0].as_str();
                }
                Op::Linear { out_features, .. } => {
                    let rows = self.shape(t).iter().product::<usize>() / out_features.max(&1);
                    if *out_features != heads * p || rows != keys || view.head != p {
                        return None;
                    }
                    return Some((
                        View {
                            tensor: view.tensor.clone(),
                            head: p * wrl_row(keys),
                            row: 1,
                            inner: wrl_row(keys),
                        },
                        prod,
                    ));
                }
                _ => return None,
            }
        }
    }

    /// If `view.tensor` is an exact head replication `[R, H * I]` of a tensor `X [R, I]` (a
    /// private Linear with stacked identity weights, zero bias, unit requant), the view of `X`
    /// with head stride 0 and the replicating node.
    fn unreplicate(&self, view: &View, heads: usize, inner: usize) -> Option<(View, Vec<usize>)> {
        // look through private reshapes (aliases) back to the producer
        let mut t = view.tensor.as_str();
        let mut covered = Vec::new();
        let mut p = *self.producer.get(t)?;
        while let Op::Reshape { .. } = self.graph.nodes[p].op {
            covered.push(p);
            let src = self.graph.nodes[p].inputs[0].as_str();
            if !self.private_to(src, p) {
                return None;
            }
            t = src;
            p = *self.producer.get(t)?;
        }
        covered.push(p);
        let node = &self.graph.nodes[p];
        let Op::Linear {
            in_features,
            out_features,
            weight,
            bias,
            requant,
        } = &node.op
        else {
            return None;
        };
        let unit = |d: &Dyadic| d.s < 31 && d.m as i64 == 1i64 << d.s;
        let unit_rq = match requant {
            Requant::PerTensor(d) => unit(d),
            Requant::PerChannel(v) => v.iter().all(unit),
        };
        let identity = weight.iter().enumerate().all(|(idx, &w)| {
            let (o, i) = (idx / in_features, idx % in_features);
            w == i8::from(o % in_features == i)
        });
        let x = node.inputs[0].as_str();
        let xs = self.shape(x);
        if *in_features != inner
            || *out_features != heads * inner
            || !bias.iter().all(|&b| b == 0)
            || !unit_rq
            || !identity
            || xs.len() != 2
            || view.head != inner
            || view.row != heads * inner
            || view.inner != 1
            || self.outputs.contains(view.tensor.as_str())
        {
            return None;
        }
        Some((
            View {
                tensor: x.into(),
                head: 0,
                row: inner,
                inner: 1,
            },
            covered,
        ))
    }
}

/// Detects the fusable attention chains (see the module docs).
fn find_attention(graph: &Graph) -> Vec<FusedAttention> {
    let mut ctx = Ctx {
        graph,
        producer: HashMap::new(),
        consumers: consumers(graph),
        outputs: graph.outputs.iter().map(|s| s.as_str()).collect(),
        shapes: graph
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice()))
            .collect(),
    };
    for (i, n) in graph.nodes.iter().enumerate() {
        ctx.producer.insert(n.output.as_str(), i);
    }
    let mut found: Vec<FusedAttention> = Vec::new();
    let mut taken: BTreeSet<usize> = BTreeSet::new();
    for (i1, n1) in graph.nodes.iter().enumerate() {
        let Op::MatMul {
            transpose_b: tb1,
            requant: rq1,
        } = &n1.op
        else {
            continue;
        };
        let scores = n1.output.as_str();
        let Some(&[i_sm]) = ctx.consumers.get(scores).map(|v| v.as_slice()) else {
            continue;
        };
        let Op::Softmax(sm) = &graph.nodes[i_sm].op else {
            continue;
        };
        let attn = graph.nodes[i_sm].output.as_str();
        let Some(&[i2]) = ctx.consumers.get(attn).map(|v| v.as_slice()) else {
            continue;
        };
        let n2 = &graph.nodes[i2];
        let Op::MatMul {
            transpose_b: tb2,
            requant: rq2,
        } = &n2.op
        else {
            continue;
        };
        if n2.inputs[0] != attn || ctx.outputs.contains(scores) || ctx.outputs.contains(attn) {
            continue;
        }
        let qs = ctx.shape(&n1.inputs[0]);
        if !(2..=3).contains(&qs.len()) || n1.inputs[0] == n1.inputs[1] {
            continue;
        }
        let ss = ctx.shape(scores);
        let os = ctx.shape(&n2.output);
        let r = qs.len();
        let heads = if r == 3 { qs[0] } else { 1 };
        let (rows, inner, keys, v_inner) = (qs[r - 2], qs[r - 1], ss[r - 1], os[r - 1]);
        if sm.len as usize != keys {
            continue;
        }
        let (q, tq) = ctx.operand(&n1.inputs[0], i1, true);
        let (mut k, tk) = ctx.operand(&n1.inputs[1], i1, *tb1);
        let (mut v, tv) = ctx.operand(&n2.inputs[1], i2, !*tb2);
        let mut v_wrl = None;
        if let Some(tp) = tv
            && let Some((vw, lin)) = ctx.weight_reuse(&v, tp, keys, heads, v_inner)
        {
            v = vw;
            v_wrl = Some(lin);
        }
        let mut nodes = vec![i1, i_sm, i2];
        nodes.extend([tq, tk, tv].into_iter().flatten());
        let mut fwsa = false;
        if let Some((kx, covered)) = ctx.unreplicate(&k, heads, inner) {
            // the replicated tensor must only feed the (elided) key path
            let only_key = tk.is_some_and(|t| ctx.private_to(&k.tensor, t));
            if only_key {
                k = kx;
                nodes.extend(covered);
                fwsa = true;
            }
        }
        // output: fold a private head-merge transpose
        let mut anchor = i2;
        let mut out = View {
            tensor: n2.output.clone(),
            head: rows * v_inner,
            row: v_inner,
            inner: 1,
        };
        if r == 3
            && let Some(&[it]) = ctx.consumers.get(n2.output.as_str()).map(|v| v.as_slice())
            && let Op::Transpose { perm } = &graph.nodes[it].op
            && perm == &[1, 0, 2]
            && !ctx.outputs.contains(n2.output.as_str())
        {
            anchor = it;
            nodes.push(it);
            out = View {
                tensor: graph.nodes[it].output.clone(),
                head: v_inner,
                row: heads * v_inner,
                inner: 1,
            };
        }
        // every covered node once, the anchor last, inputs produced before the anchor
        if nodes.iter().any(|n| taken.contains(n)) || nodes.iter().any(|&n| n > anchor) {
            continue;
        }
        let ready = [&q, &k, &v].iter().all(|vw| {
            ctx.producer
                .get(vw.tensor.as_str())
                .is_none_or(|&p| p < anchor && !nodes.contains(&p))
        });
        if !ready {
            continue;
        }
        nodes.sort_unstable();
        taken.extend(nodes.iter().copied());
        found.push(FusedAttention {
            heads,
            rows,
            keys,
            inner,
            v_inner,
            q,
            k,
            v,
            out,
            score_rq: *rq1,
            softmax: *sm,
            out_rq: *rq2,
            fwsa,
            nodes,
            anchor,
            v_wrl,
            tiled: false,
        });
    }
    found
}

/// Schedules and plans `graph` (validated first).
pub fn plan(graph: &Graph, opts: &Int8Options) -> Result<Int8Plan, ExportError> {
    graph.validate()?;
    let on = opts.operand_tiles != TilePolicy::Never;
    let all = plan_with_tiles(graph, opts, &|_| on)?;
    if opts.operand_tiles != TilePolicy::Auto {
        return Ok(all);
    }
    // The nodes with a tile and its scratch without one: a Linear none, a fused attention its
    // row of scores.
    let candidates: Vec<(usize, TileCandidate)> = all
        .buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| b.kind == BufferKind::Scratch)
        .filter_map(|(i, b)| {
            let untiled = match all.exec[b.op] {
                Exec::Fused(f) if all.fused[f].tiled => {
                    let fa = &all.fused[f];
                    align(cost::ops::attention_scratch_bytes(fa.keys, fa.inner, false))
                }
                Exec::Kernel => 0,
                _ => return None,
            };
            Some((
                b.op,
                TileCandidate {
                    buffer: i,
                    untiled_bytes: untiled,
                },
            ))
        })
        .collect();
    let keep = cost::tiles::choose(
        &all.buffers,
        &candidates.iter().map(|c| c.1).collect::<Vec<_>>(),
    );
    let dropped: BTreeSet<usize> = candidates
        .iter()
        .zip(keep)
        .filter(|(_, k)| !k)
        .map(|(c, _)| c.0)
        .collect();
    if dropped.is_empty() {
        return Ok(all);
    }
    plan_with_tiles(graph, opts, &|node| !dropped.contains(&node))
}

/// [`plan`] with operand tiles where `tiled(node)` allows them.
fn plan_with_tiles(
    graph: &Graph,
    opts: &Int8Options,
    tiled: &dyn Fn(usize) -> bool,
) -> Result<Int8Plan, ExportError> {
    let mut fused = if opts.fuse_attention {
        find_attention(graph)
    } else {
        Vec::new()
    };
    for fa in &mut fused {
        fa.tiled = cost::ops::attention_tiled(fa.keys, fa.inner, tiled(fa.anchor));
    }
    let n_nodes = graph.nodes.len();
    let mut exec = vec![Exec::Kernel; n_nodes];
    for (i, n) in graph.nodes.iter().enumerate() {
        if matches!(n.op, Op::Reshape { .. }) {
            exec[i] = Exec::Alias;
        }
    }
    let wrl: BTreeSet<usize> = fused.iter().filter_map(|f| f.v_wrl).collect();
    for (f, fa) in fused.iter().enumerate() {
        for &n in &fa.nodes {
            exec[n] = Exec::Elided;
        }
        exec[fa.anchor] = Exec::Fused(f);
    }
    let numel: HashMap<&str, usize> = graph
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.numel()))
        .collect();
    let rank: HashMap<&str, usize> = graph
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.len()))
        .collect();

    let mut storage: HashMap<String, Storage> = HashMap::new();
    let mut input_len = 0usize;
    for i in &graph.inputs {
        storage.insert(i.clone(), Storage::Input(input_len));
        input_len += numel[i.as_str()];
    }
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut node_weight_bytes = vec![0u64; n_nodes];
    let mut coded: Vec<Option<Encoded>> = vec![None; n_nodes];
    // extends the lifetime of the buffer behind `t` (if any) to `step`
    let touch = |buffers: &mut Vec<Buffer>, storage: &HashMap<String, Storage>, t: &str, step| {
        if let Some(Storage::Arena(b)) = storage.get(t) {
            buffers[*b].end = buffers[*b].end.max(step);
        }
    };
    // Buffer lifetimes count executed kernels, not graph nodes: reshapes and the nodes a fused
    // attention covers run nothing, and the cost model's op list has no counterpart for them,
    // so the planners (head-tail alternates ends by step parity) see the same sequence here.
    let mut kernel_step = vec![0usize; n_nodes];
    let mut kernels = Vec::new();
    for (i, e) in exec.iter().enumerate() {
        kernel_step[i] = kernels.len();
        if matches!(e, Exec::Kernel | Exec::Fused(_)) {
            kernels.push(i);
        }
    }
    for (node_index, node) in graph.nodes.iter().enumerate() {
        let step = kernel_step[node_index];
        match exec[node_index] {
            Exec::Elided => {}
            Exec::Alias => {
                let src = storage
                    .get(node.inputs[0].as_str())
                    .copied()
                    .ok_or_else(|| {
                        err(
                            &node.name,
                            format!("input `{}` is not stored", node.inputs[0]),
                        )
                    })?;
                storage.insert(node.output.clone(), src);
            }
            Exec::Kernel => {
                for t in &node.inputs {
                    if !storage.contains_key(t) {
                        return Err(err(&node.name, format!("input `{t}` is not stored")));
                    }
                    touch(&mut buffers, &storage, t, step);
                }
                if opts.sparse_weights && !wrl.contains(&node_index) {
                    coded[node_index] = coded_weights(&node.op);
                }
                node_weight_bytes[node_index] = const_bytes(
                    &node.op,
                    rank[node.inputs[0].as_str()],
                    coded[node_index].as_ref(),
                );
                if opts.softmax_lut && matches!(node.op, Op::Softmax(_)) {
                    node_weight_bytes[node_index] += SOFTMAX_LUT_BYTES;
                }
                let elems = match &node.op {
                    // transposed V rows padded to a word (`wrl_row`)
                    Op::Linear { out_features, .. } if wrl.contains(&node_index) => {
                        out_features * wrl_row(numel[node.output.as_str()] / out_features)
                    }
                    _ => numel[node.output.as_str()],
                };
                let tile = match linear_shape(node, &numel) {
                    Some((rows, in_f)) if tiled(node_index) && coded[node_index].is_none() => {
                        cost::ops::linear_tile_bytes(rows, in_f)
                    }
                    _ => 0,
                };
                if tile > 0 {
                    // before the output, as the cost model lists an op's buffers
                    buffers.push(Buffer {
                        name: format!("{}.scratch", node.name),
                        bytes: align(tile),
                        start: step,
                        end: step,
                        kind: BufferKind::Scratch,
                        op: node_index,
                    });
                }
                storage.insert(node.output.clone(), Storage::Arena(buffers.len()));
                buffers.push(Buffer {
                    name: node.output.clone(),
                    bytes: align(elems as u64),
                    start: step,
                    end: step,
                    kind: BufferKind::Output,
                    op: node_index,
                });
            }
            Exec::Fused(f) => {
                let fa = &fused[f];
                for vw in [&fa.q, &fa.k, &fa.v] {
                    if !storage.contains_key(&vw.tensor) {
                        return Err(err(
                            &node.name,
                            format!("input `{}` is not stored", vw.tensor),
                        ));
                    }
                    touch(&mut buffers, &storage, &vw.tensor, step);
                }
                if opts.softmax_lut {
                    node_weight_bytes[node_index] = SOFTMAX_LUT_BYTES;
                }
                buffers.push(Buffer {
                    name: format!("{}.scratch", node.name),
                    bytes: align(fa.scratch_bytes()),
                    start: step,
                    end: step,
                    kind: BufferKind::Scratch,
                    op: node_index,
                });
                storage.insert(fa.out.tensor.clone(), Storage::Arena(buffers.len()));
                buffers.push(Buffer {
                    name: fa.out.tensor.clone(),
                    bytes: align(numel[fa.out.tensor.as_str()] as u64),
                    start: step,
                    end: step,
                    kind: BufferKind::Output,
                    op: node_index,
                });
            }
        }
    }
    let mut output_len = 0usize;
    for o in &graph.outputs {
        touch(&mut buffers, &storage, o, kernels.len());
        output_len += numel[o.as_str()];
    }
    let planned = memory::plan(&buffers);
    let (max_live, peak_step) = memory::lower_bound(&buffers);
    let peak_node = kernels.get(peak_step).map_or_else(
        || "<copy-out>".to_string(),
        |&n| graph.nodes[n].name.clone(),
    );
    Ok(Int8Plan {
        exec,
        fused,
        wrl,
        storage,
        offsets: planned.best.offsets,
        arena_bytes: planned.best.arena_bytes,
        planner: planned.best.planner,
        head_tail_bytes: planned.head_tail_bytes,
        best_fit_bytes: planned.best_fit_bytes,
        max_live_bytes: max_live,
        peak_node,
        weight_bytes: node_weight_bytes.iter().sum(),
        node_weight_bytes,
        coded,
        buffers,
        input_len,
        output_len,
    })
}

/// `(rows, in_features)` of a node the runtime runs as a Linear (a Linear, or a pointwise
/// Conv2d over its pixels).
pub fn linear_shape(node: &quant::Node, numel: &HashMap<&str, usize>) -> Option<(usize, usize)> {
    let rows = |in_f: usize| numel.get(node.inputs[0].as_str()).map(|n| n / in_f.max(1));
    match &node.op {
        Op::Linear { in_features, .. } => Some((rows(*in_features)?, *in_features)),
        Op::Conv2d { window, in_c, .. } if window.is_pointwise() => Some((rows(*in_c)?, *in_c)),
        _ => None,
    }
}

/// The int8 graph against a target: SRAM (arena) and flash (constants + code estimate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Int8Estimate {
    /// Target name.
    pub target: String,
    /// Activation arena bytes (SRAM used).
    pub arena_bytes: u64,
    /// SRAM available for the arena.
    pub sram_limit: u64,
    /// Constant bytes (flash).
    pub weight_bytes: u64,
    /// Code-size estimate of the kernels used (flash).
    pub code_bytes: u64,
    /// `weight_bytes + code_bytes`.
    pub flash_bytes: u64,
    /// Flash available.
    pub flash_limit: u64,
    /// MACs of one inference.
    pub macs: u64,
    /// Planner that produced the arena.
    pub planner: String,
    /// Number of fused attention kernels.
    pub fused_attention: usize,
    /// Layers whose weights are stored run-length coded (sparse kernels).
    pub coded_layers: usize,
    /// Cycles of one inference by the target's cycle table ([`crate::latency`]).
    pub cycles: f64,
    /// Those cycles at the target's clock, in seconds.
    pub latency_s: f64,
    /// Flash those layers save against dense weights.
    pub coded_saving_bytes: u64,
}

impl Int8Estimate {
    /// Whether the arena fits the SRAM limit.
    pub fn sram_fits(&self) -> bool {
        self.arena_bytes <= self.sram_limit
    }
    /// Whether constants and code fit the flash limit.
    pub fn flash_fits(&self) -> bool {
        self.flash_bytes <= self.flash_limit
    }
    /// Both.
    pub fn fits(&self) -> bool {
        self.sram_fits() && self.flash_fits()
    }
    /// The code generator's limits on this target: the SRAM for the arena, the flash left
    /// for constants once the kernels' code is placed.
    pub fn export_limits(&self) -> crate::ExportLimits {
        crate::ExportLimits {
            sram_bytes: Some(self.sram_limit as usize),
            flash_bytes: Some(self.flash_limit.saturating_sub(self.code_bytes) as usize),
        }
    }
}

/// Output positions of a Linear / Conv node: output elements per output channel.
pub(crate) fn node_positions(graph: &Graph, node: usize) -> u64 {
    let n = &graph.nodes[node];
    let shape = graph
        .tensor(&n.output)
        .map_or(&[][..], |t| t.shape.as_slice());
    let channels = shape.last().copied().unwrap_or(1).max(1);
    (shape.iter().product::<usize>() / channels) as u64
}

/// MACs of a node with dense weights (0 for element-wise ops).
pub fn node_macs(graph: &Graph, node: usize) -> u64 {
    let n = &graph.nodes[node];
    let out = graph.tensor(&n.output).map_or(0, |t| t.numel()) as u64;
    match &n.op {
        Op::Linear { in_features, .. } => out * *in_features as u64,
        Op::MatMul { .. } => {
            let s = graph
                .tensor(&n.inputs[0])
                .map_or(&[][..], |t| t.shape.as_slice());
            out * s.last().copied().unwrap_or(0) as u64
        }
        Op::Conv2d { in_c, window, .. } => out * (window.k[0] * window.k[1] * in_c) as u64,
        Op::DepthwiseConv2d { window, .. } => out * (window.k[0] * window.k[1]) as u64,
        _ => 0,
    }
}

/// Plans `graph` and sets it against `target`.
pub fn estimate(
    graph: &Graph,
    target: &Target,
    opts: &Int8Options,
) -> Result<(Int8Plan, Int8Estimate), ExportError> {
    let p = plan(graph, &opts.for_target(target))?;
    let (mut coded_layers, mut coded_saving_bytes) = (0, 0);
    for e in p.coded.iter().flatten() {
        coded_layers += 1;
        coded_saving_bytes += (e.rows * e.cols - rle::coded_size_bytes(e)) as u64;
    }
    let lat = crate::latency::latency(graph, &p, target);
    let classes: BTreeSet<KernelClass> = lat.kernels.iter().map(|k| k.class).collect();
    let code_bytes =
        target.code_size.runtime + classes.iter().map(|&k| target.code_size.of(k)).sum::<u64>();
    let e = Int8Estimate {
        target: target.name.clone(),
        arena_bytes: p.arena_bytes,
        sram_limit: target.arena_limit(),
        weight_bytes: p.weight_bytes,
        code_bytes,
        flash_bytes: p.weight_bytes + code_bytes,
        flash_limit: target.flash_bytes,
        planner: p.planner.label().into(),
        fused_attention: p.fused.len(),
        coded_layers,
        coded_saving_bytes,
        macs: lat.kernels.iter().map(|k| k.macs).sum(),
        cycles: lat.cycles,
        latency_s: lat.seconds,
    };
    Ok((p, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quant::GraphBuilder;

    /// `x [S, P]` as query, key and value of one head; `scores_out` also returns the scores.
    fn single_head(scores_out: bool) -> Graph {
        let mut b = GraphBuilder::new();
        b.input("x", &[6, 4], 0.0625).unwrap();
        b.linear("q", "x", vec![1; 16], vec![0; 4], &[0.01], 0.0625)
            .unwrap();
        b.matmul("scores", "q", "x", true, 0.25).unwrap();
        b.softmax("attn", "scores").unwrap();
        b.matmul("ctx", "attn", "x", false, 0.0625).unwrap();
        b.output("ctx");
        if scores_out {
            b.output("scores");
        }
        b.finish().unwrap()
    }

    #[test]
    fn fuses_a_private_chain_only() {
        let p = plan(&single_head(false), &Int8Options::default()).unwrap();
        assert_eq!(p.fused.len(), 1);
        let f = &p.fused[0];
        assert_eq!(
            (f.heads, f.rows, f.keys, f.inner, f.v_inner),
            (1, 6, 6, 4, 4)
        );
        assert_eq!(p.exec[1..], [Exec::Elided, Exec::Elided, Exec::Fused(0)]);
        // graph input in the caller's buffer; arena: q (24) + scratch (8) + ctx (24)
        assert_eq!(p.storage["x"], Storage::Input(0));
        assert!(!p.storage.contains_key("scores") && !p.storage.contains_key("attn"));
        assert_eq!(p.arena_bytes, 24 + 8 + 24);

        let p = plan(&single_head(true), &Int8Options::default()).unwrap();
        assert!(p.fused.is_empty(), "scores are a graph output: no fusion");
        let off = plan(
            &single_head(false),
            &Int8Options {
                fuse_attention: false,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(off.fused.is_empty());
        // q, scores, attn, ctx: scores and attn (36 each) are live together at the softmax
        assert!(off.arena_bytes >= 36 + 36);
    }

    #[test]
    fn invalid_graph_is_an_error() {
        let mut g = single_head(false);
        g.nodes[1].inputs[0] = "nope".into();
        assert!(plan(&g, &Int8Options::default()).is_err());
    }
}
