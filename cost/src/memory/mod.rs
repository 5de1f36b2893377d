//! Activation memory: tensor lifetimes over the op order and arena planners.
//!
//! Two planners run on every graph: TinyFormer's head-tail alternation and a greedy best-fit
//! (largest first, lowest offset). The better arena is the peak SRAM. An exact search for tiny
//! graphs ([`exact::exact_min`]) measures their gap in tests.

pub mod best_fit;
pub mod exact;
pub mod head_tail;
pub mod lifetime;

pub use lifetime::{Buffer, BufferKind, live_bytes_per_step, lower_bound};

use crate::error::CostError;

/// Which planner produced a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannerKind {
    HeadTail,
    BestFit,
}

impl PlannerKind {
    pub fn label(self) -> &'static str {
        match self {
            PlannerKind::HeadTail => "head-tail",
            PlannerKind::BestFit => "best-fit",
        }
    }
}

/// Byte offsets of each buffer in an arena of `arena_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub planner: PlannerKind,
    pub offsets: Vec<u64>,
    pub arena_bytes: u64,
}

/// Both planners' results and the chosen (smaller) one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub best: Plan,
    pub head_tail_bytes: u64,
    pub best_fit_bytes: u64,
}

/// Run both planners and keep the smaller arena (head-tail on ties).
pub fn plan(buffers: &[Buffer]) -> Planned {
    let ht = head_tail::plan(buffers);
    let bf = best_fit::plan(buffers);
    let (htb, bfb) = (ht.arena_bytes, bf.arena_bytes);
    Planned {
        best: if bfb < htb { bf } else { ht },
        head_tail_bytes: htb,
        best_fit_bytes: bfb,
    }
}

/// Do two buffers share a step?
pub fn overlap_in_time(a: &Buffer, b: &Buffer) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// Check that simultaneously live buffers never share bytes and everything fits the arena.
pub fn check(buffers: &[Buffer], plan: &Plan) -> Result<(), CostError> {
    for (i, a) in buffers.iter().enumerate() {
        let oa = plan.offsets[i];
        if oa + a.bytes > plan.arena_bytes {
            return Err(CostError::Overlap {
                planner: plan.planner.label(),
                a: a.name.clone(),
                b: "<arena end>".into(),
            });
        }
        for (j, b) in buffers.iter().enumerate().skip(i + 1) {
            let ob = plan.offsets[j];
            if a.bytes > 0
                && b.bytes > 0
                && overlap_in_time(a, b)
                && oa < ob + b.bytes
                && ob < oa + a.bytes
            {
                return Err(CostError::Overlap {
                    planner: plan.planner.label(),
                    a: a.name.clone(),
                    b: b.name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Lowest offset `>= 0` where `size` bytes fit between the `taken` intervals `(offset, size)`.
pub(crate) fn lowest_fit(taken: &mut [(u64, u64)], size: u64) -> u64 {
    taken.sort_unstable();
    let mut off = 0;
    for &(o, s) in taken.iter() {
        if o >= off + size {
            break;
        }
        off = off.max(o + s);
    }
    off
}
