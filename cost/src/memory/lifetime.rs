//! Tensor lifetimes over the op order. Step `i` is the execution of op `i`; a tensor is live
//! from the step that produces it (graph inputs: step 0) to its last consumer (graph outputs,
//! i.e. tensors nobody consumes, to the last step). Inputs and outputs of an op are live
//! together (no in-place reuse). Kernel scratch is live only during its op. Every buffer is
//! rounded up to [`ALIGN`] bytes, as the exporter places them (word loads of the kernels).

use crate::graph::Graph;
use crate::ops::OpCost;
use std::collections::HashMap;

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

fn align(bytes: u64) -> u64 {
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
            bytes: align(cost.output_bytes),
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
