//! Exact minimum arena for tiny buffer sets, by search. Any packing can be pushed down until
//! every buffer rests at offset 0 or on top of a time-overlapping buffer; placing buffers in
//! increasing offset order, each candidate offset is 0 or the end of an earlier placed,
//! time-overlapping buffer. The search enumerates those orders and offsets with
//! branch-and-bound (the best planner's arena as the initial bound).

use super::{Buffer, overlap_in_time};

/// Largest buffer count the search accepts.
pub const MAX_BUFFERS: usize = 8;

/// Exact minimum arena, or `None` when there are more than [`MAX_BUFFERS`] nonempty buffers.
pub fn exact_min(buffers: &[Buffer]) -> Option<u64> {
    let bufs: Vec<&Buffer> = buffers.iter().filter(|b| b.bytes > 0).collect();
    if bufs.len() > MAX_BUFFERS {
        return None;
    }
    let upper = super::plan(buffers).best.arena_bytes;
    let mut best = upper;
    let mut offsets = vec![u64::MAX; bufs.len()];
    search(&bufs, &mut offsets, 0, 0, 0, &mut best);
    Some(best)
}

fn search(
    bufs: &[&Buffer],
    offsets: &mut [u64],
    placed: usize,
    min_off: u64,
    extent: u64,
    best: &mut u64,
) {
    if placed == bufs.len() {
        *best = (*best).min(extent);
        return;
    }
    for i in 0..bufs.len() {
        if offsets[i] != u64::MAX {
            continue;
        }
        let b = bufs[i];
        // Candidate offsets: 0 and tops of placed overlapping buffers; non-decreasing order.
        let mut cands: Vec<u64> = vec![0];
        for (j, &o) in offsets.iter().enumerate() {
            if o != u64::MAX && overlap_in_time(b, bufs[j]) {
                cands.push(o + bufs[j].bytes);
            }
        }
        cands.sort_unstable();
        cands.dedup();
        for off in cands {
            if off < min_off || off + b.bytes >= *best {
                continue;
            }
            let clash = offsets.iter().enumerate().any(|(j, &o)| {
                o != u64::MAX
                    && overlap_in_time(b, bufs[j])
                    && o < off + b.bytes
                    && off < o + bufs[j].bytes
            });
            if clash {
                continue;
            }
            offsets[i] = off;
            search(
                bufs,
                offsets,
                placed + 1,
                off,
                extent.max(off + b.bytes),
                best,
            );
            offsets[i] = u64::MAX;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{BufferKind, best_fit, check, head_tail, lower_bound};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A random small graph as buffers: one input, op `i` consumes 1-2 earlier tensors, some
    /// ops have scratch; lifetimes as in `lifetime::buffers`.
    fn random_graph(rng: &mut StdRng, ops: usize) -> Vec<Buffer> {
        let mut bufs = vec![Buffer {
            name: "in".into(),
            bytes: rng.random_range(1..64),
            start: 0,
            end: 0,
            kind: BufferKind::Input,
            op: 0,
        }];
        let mut tensors = vec![0usize];
        for step in 0..ops {
            let n_in = if tensors.len() > 1 && rng.random_bool(0.4) {
                2
            } else {
                1
            };
            for k in 0..n_in {
                let t = if k == 0 {
                    *tensors.last().unwrap()
                } else {
                    tensors[rng.random_range(0..tensors.len())]
                };
                bufs[t].end = bufs[t].end.max(step);
            }
            if rng.random_bool(0.25) {
                bufs.push(Buffer {
                    name: format!("s{step}"),
                    bytes: rng.random_range(1..32),
                    start: step,
                    end: step,
                    kind: BufferKind::Scratch,
                    op: step,
                });
            }
            tensors.push(bufs.len());
            bufs.push(Buffer {
                name: format!("t{step}"),
                bytes: rng.random_range(1..64),
                start: step,
                end: step,
                kind: BufferKind::Output,
                op: step,
            });
        }
        let last = bufs.len() - 1;
        bufs[last].end = ops - 1;
        bufs
    }

    #[test]
    fn planners_vs_exact_on_random_graphs() {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut n, mut ht_opt, mut bf_opt, mut best_opt) = (0, 0, 0, 0);
        let (mut ht_gap, mut bf_gap, mut best_gap) = (0.0f64, 0.0f64, 0.0f64);
        let (mut ht_sum, mut bf_sum, mut best_sum) = (0.0, 0.0, 0.0);
        while n < 300 {
            let ops = rng.random_range(2..7);
            let bufs = random_graph(&mut rng, ops);
            let Some(opt) = exact_min(&bufs) else {
                continue;
            };
            let (lb, _) = lower_bound(&bufs);
            let ht = head_tail::plan(&bufs);
            let bf = best_fit::plan(&bufs);
            check(&bufs, &ht).unwrap();
            check(&bufs, &bf).unwrap();
            assert!(opt >= lb, "exact {opt} below lower bound {lb}");
            for a in [ht.arena_bytes, bf.arena_bytes] {
                assert!(
                    a >= opt && a >= lb,
                    "planner {a} below optimum {opt} / bound {lb}"
                );
            }
            let g = |a: u64| (a - opt) as f64 / opt as f64;
            let best = ht.arena_bytes.min(bf.arena_bytes);
            ht_opt += (ht.arena_bytes == opt) as usize;
            bf_opt += (bf.arena_bytes == opt) as usize;
            best_opt += (best == opt) as usize;
            ht_gap = ht_gap.max(g(ht.arena_bytes));
            bf_gap = bf_gap.max(g(bf.arena_bytes));
            best_gap = best_gap.max(g(best));
            ht_sum += g(ht.arena_bytes);
            bf_sum += g(bf.arena_bytes);
            best_sum += g(best);
            n += 1;
        }
        let f = n as f64;
        println!(
            "{n} random graphs: optimal head-tail {ht_opt}, best-fit {bf_opt}, better-of-two {best_opt}; \
             mean gap head-tail {:.2}%, best-fit {:.2}%, better {:.2}%; max gap {:.1}% / {:.1}% / {:.1}%",
            100.0 * ht_sum / f,
            100.0 * bf_sum / f,
            100.0 * best_sum / f,
            100.0 * ht_gap,
            100.0 * bf_gap,
            100.0 * best_gap
        );
    }

    #[test]
    fn exact_on_known_case() {
        // Three buffers live together: the optimum is their sum.
        let b = |n: &str, bytes, s, e| Buffer {
            name: n.into(),
            bytes,
            start: s,
            end: e,
            kind: BufferKind::Output,
            op: s,
        };
        let bufs = vec![
            b("a", 10, 0, 2),
            b("b", 5, 1, 1),
            b("c", 7, 2, 3),
            b("d", 12, 3, 3),
        ];
        // steps: 0:{a}=10 1:{a,b}=15 2:{a,c}=17 3:{c,d}=19
        assert_eq!(lower_bound(&bufs), (19, 3));
        assert_eq!(exact_min(&bufs), Some(19));
    }

    proptest! {
        #[test]
        fn planned_offsets_never_overlap(seed in any::<u64>(), ops in 1usize..40) {
            let mut rng = StdRng::seed_from_u64(seed);
            let bufs = random_graph(&mut rng, ops);
            let (lb, _) = lower_bound(&bufs);
            for p in [head_tail::plan(&bufs), best_fit::plan(&bufs)] {
                prop_assert!(check(&bufs, &p).is_ok());
                prop_assert!(p.arena_bytes >= lb);
            }
        }
    }
}
