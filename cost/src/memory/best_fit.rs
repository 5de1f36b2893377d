//! Greedy best-fit planner: buffers by size (largest first, then earliest), each at the lowest
//! offset that does not collide with an already placed buffer live at the same time.

use super::{Buffer, Plan, PlannerKind, lowest_fit, overlap_in_time};

pub fn plan(buffers: &[Buffer]) -> Plan {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].bytes), buffers[i].start, i));
    let mut offsets = vec![0u64; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut taken = Vec::new();
    let mut arena = 0;
    for i in order {
        let b = &buffers[i];
        taken.clear();
        taken.extend(
            placed
                .iter()
                .filter(|&&j| overlap_in_time(b, &buffers[j]) && buffers[j].bytes > 0)
                .map(|&j| (offsets[j], buffers[j].bytes)),
        );
        let off = lowest_fit(&mut taken, b.bytes);
        offsets[i] = off;
        arena = arena.max(off + b.bytes);
        placed.push(i);
    }
    Plan {
        planner: PlannerKind::BestFit,
        offsets,
        arena_bytes: arena,
    }
}
