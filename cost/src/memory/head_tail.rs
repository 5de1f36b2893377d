//! TinyFormer's head-tail alternation (Sec. III-D): graph inputs sit at the head of the arena,
//! the output (and scratch) of op `i` at the tail when `i` is even and at the head when odd, so
//! an op's inputs and outputs sit at opposite ends. Each end is a first-fit region growing
//! inward; the arena is the largest head extent + tail extent over all steps, and tail offsets
//! are measured back from the arena's end.

use super::{Buffer, BufferKind, Plan, PlannerKind, lowest_fit, overlap_in_time};

pub fn plan(buffers: &[Buffer]) -> Plan {
    let tail_side = |b: &Buffer| b.kind != BufferKind::Input && b.start.is_multiple_of(2);
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    // Producer order; within a step, outputs before scratch so outputs hug the ends.
    order.sort_by_key(|&i| {
        let b = &buffers[i];
        let k = match b.kind {
            BufferKind::Input => 0,
            BufferKind::Output => 1,
            BufferKind::Scratch => 2,
        };
        (b.start, k, i)
    });
    let mut pos = vec![0u64; buffers.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut taken = Vec::new();
    for i in order {
        let b = &buffers[i];
        let side = tail_side(b);
        taken.clear();
        taken.extend(
            placed
                .iter()
                .filter(|&&j| {
                    tail_side(&buffers[j]) == side
                        && overlap_in_time(b, &buffers[j])
                        && buffers[j].bytes > 0
                })
                .map(|&j| (pos[j], buffers[j].bytes)),
        );
        pos[i] = lowest_fit(&mut taken, b.bytes);
        placed.push(i);
    }
    let steps = buffers.iter().map(|b| b.end + 1).max().unwrap_or(0);
    let (mut head, mut tail) = (vec![0u64; steps], vec![0u64; steps]);
    for (i, b) in buffers.iter().enumerate() {
        let ext = pos[i] + b.bytes;
        let side = if tail_side(b) { &mut tail } else { &mut head };
        for e in &mut side[b.start..=b.end] {
            *e = (*e).max(ext);
        }
    }
    let arena = head
        .iter()
        .zip(&tail)
        .map(|(h, t)| h + t)
        .max()
        .unwrap_or(0);
    let offsets = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if tail_side(b) {
                arena - pos[i] - b.bytes
            } else {
                pos[i]
            }
        })
        .collect();
    Plan {
        planner: PlannerKind::HeadTail,
        offsets,
        arena_bytes: arena,
    }
}
