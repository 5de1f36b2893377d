//! Tensor lifetimes over the op order. Step `i` is the execution of op `i`; a tensor is live
//! from the step that produces it (graph inputs: step 0) to its last consumer (graph outputs,
//! i.e. tensors nobody consumes, to the last step). Inputs and outputs of an op are live
//! together (no in-place reuse). Kernel scratch is live only during its op. Every buffer is
//! rounded up to [`ALIGN`] bytes, as the exporter places them (word loads of the kernels).

use crate::graph::{Graph, OpKind};
use crate::ops::{OpCost, wrl_row};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferKind {
    Input,
    Output,
    Scratch,
}

/// An arena buffer with an inclusive live range `[start, end]` of steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    pub name: String,
    pub bytes: u64,
    pub start: usize,
    pub end: usize,
    pub kind: BufferKind,
    /// Op index that owns it (producer; for graph inputs the first consumer).
    pub op: usize,
}

/// Alignment of every arena buffer, bytes.
pub const ALIGN: u64 = 4;

/// `bytes` rounded up to [`ALIGN`], as an arena buffer is placed.
pub fn align(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGN) * ALIGN
}

/// Buffers of a validated graph given its op costs (same order as `graph.ops`).
pub fn buffers(graph: &Graph, costs: &[OpCost]) -> Vec<Buffer> {
    let last = graph.ops.len().saturating_sub(1);
    let mut out = Vec::with_capacity(graph.inputs.len() + 2 * graph.ops.len());
    let mut index: HashMap<&str, usize> = HashMap::new();
    for i in &graph.inputs {
        index.insert(&i.name, out.len());
        out.push(Buffer {
            name: i.name.clone(),
            bytes: align(i.bytes),
            start: 0,
            end: 0,
            kind: BufferKind::Input,
            op: 0,
        });
    }
    let padded = padded_values(graph);
    let mut consumed = vec![false; out.len() + graph.ops.len()];
    for (step, (op, cost)) in graph.ops.iter().zip(costs).enumerate() {
        for t in &op.inputs {
            if let Some(&b) = index.get(t.as_str()) {
                out[b].end = out[b].end.max(step);
                consumed[b] = true;
            }
        }
        if cost.scratch_bytes > 0 {
            out.push(Buffer {
                name: format!("{}.scratch", op.name),
                bytes: align(cost.scratch_bytes),
                start: step,
                end: step,
                kind: BufferKind::Scratch,
                op: step,
            });
        }
        index.insert(&op.name, out.len());
        out.push(Buffer {
            name: op.name.clone(),
            bytes: align(
                padded
                    .get(op.name.as_str())
                    .copied()
                    .unwrap_or(cost.output_bytes),
            ),
            start: step,
            end: step,
            kind: BufferKind::Output,
            op: step,
        });
        consumed.resize(out.len(), false);
    }
    for (b, buf) in out.iter_mut().enumerate() {
        if buf.kind == BufferKind::Output && !consumed[b] {
            buf.end = last;
        }
    }
    out
}

/// Bytes of the V operands of fused attention cores that their projection writes transposed
/// with word-padded rows (`[H P, wrl_row(S)]`), as the exporter does: a Linear's output read
/// only by an `AttentionCore`, as its third input.
fn padded_values(graph: &Graph) -> HashMap<&str, u64> {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for op in &graph.ops {
        for t in &op.inputs {
            *readers.entry(t.as_str()).or_default() += 1;
        }
    }
    let linear: HashSet<&str> = graph
        .ops
        .iter()
        .filter(|op| matches!(op.kind, OpKind::Linear { .. }))
        .map(|op| op.name.as_str())
        .collect();
    graph
        .ops
        .iter()
        .filter_map(|op| match op.kind {
            OpKind::AttentionCore { seq, heads, proj } => {
                let v = op.inputs.get(2)?.as_str();
                (linear.contains(v) && readers.get(v) == Some(&1))
                    .then(|| (v, (heads * proj * wrl_row(seq)) as u64))
            }
            _ => None,
        })
        .collect()
}

/// Live bytes at each of `steps` steps.
pub fn live_bytes_per_step(buffers: &[Buffer], steps: usize) -> Vec<u64> {
    let mut diff = vec![0i128; steps + 1];
    for b in buffers {
        if b.start < steps {
            diff[b.start] += b.bytes as i128;
            diff[(b.end + 1).min(steps)] -= b.bytes as i128;
        }
    }
    let mut acc = 0i128;
    diff[..steps]
        .iter()
        .map(|d| {
            acc += d;
            acc as u64
        })
        .collect()
}

/// Lower bound of any arena: the largest live set, and the step where it occurs.
pub fn lower_bound(buffers: &[Buffer]) -> (u64, usize) {
    let steps = buffers.iter().map(|b| b.end + 1).max().unwrap_or(0);
    live_bytes_per_step(buffers, steps)
        .into_iter()
        .enumerate()
        .map(|(i, b)| (b, i))
        .fold((0, 0), |acc, x| if x.0 > acc.0 { x } else { acc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::ops::{Deploy, op_cost};

    /// Attention over `seq` tokens, 2 heads of 4: Q, K, V projections (seq x 8) and the fused
    /// core; with `share_v` the V projection also feeds the output layer.
    fn attention(seq: usize, share_v: bool) -> Vec<Buffer> {
        let mut g = GraphBuilder::new("attn");
        let x = g.input("x", 8 * seq as u64);
        let lin = |g: &mut GraphBuilder, name: &str, x: &str| {
            let kind = OpKind::Linear {
                tokens: seq,
                in_features: 8,
                out_features: 8,
                bias: true,
            };
            g.op(name, kind, &[x])
        };
        let q = lin(&mut g, "q", &x);
        let k = lin(&mut g, "k", &x);
        let v = lin(&mut g, "v", &x);
        let core = OpKind::AttentionCore {
            seq,
            heads: 2,
            proj: 4,
        };
        let a = g.op("core", core, &[&q, &k, &v]);
        let add = OpKind::Add { elems: 8 * seq };
        g.op("out", add, &[&a, if share_v { &v } else { &x }]);
        let graph = g.build().unwrap();
        let costs: Vec<OpCost> = graph
            .ops
            .iter()
            .map(|op| op_cost(op, None, Deploy::default()).unwrap())
            .collect();
        buffers(&graph, &costs)
    }

    fn bytes(buffers: &[Buffer], name: &str) -> u64 {
        buffers.iter().find(|b| b.name == name).unwrap().bytes
    }

    #[test]
    fn a_private_value_projection_gets_word_padded_transposed_rows() {
        let b = attention(19, false);
        // [H P, S] = 8 rows of 19 bytes, each padded to 20
        assert_eq!(bytes(&b, "v"), 160);
        assert_eq!(bytes(&b, "q"), 152);
        assert_eq!(bytes(&b, "k"), 152);
        // a V read by another op stays row-major and unpadded (the exporter keeps it so)
        assert_eq!(bytes(&attention(19, true), "v"), 152);
        // short rows are not padded (5 -> 8 would add 60 %)
        assert_eq!(bytes(&attention(5, false), "v"), 40);
    }
}
