//! Static memory planning of the activation arena.
//!
//! Kept behind the single function [`plan_arena`] so that the cost crate's shared planner can
//! replace it (the cost model's SRAM figure must equal what the exported C allocates).

/// Alignment of every arena buffer in bytes (word loads of the DSP dot product and int32
/// friendliness; costs at most 3 bytes per buffer).
pub const ARENA_ALIGN: usize = 4;

/// Greedy best-fit placement of buffers with known lifetimes.
///
/// `lifetimes[i] = (size_bytes, first_use_step, last_use_step)`, steps inclusive. Two buffers
/// may share bytes only when their step ranges are disjoint. Buffers are placed largest first;
/// each goes into the smallest gap (between buffers already placed whose lifetimes overlap
/// its own) that holds it, else above the highest of them. Offsets are multiples of
/// [`ARENA_ALIGN`]. Returns the offsets (in input order) and the arena size.
pub fn plan_arena(lifetimes: &[(usize, usize, usize)]) -> (Vec<usize>, usize) {
    let align = |v: usize| v.div_ceil(ARENA_ALIGN) * ARENA_ALIGN;
    let mut order: Vec<usize> = (0..lifetimes.len()).collect();
    // largest first; ties by earlier first use, then index, for determinism
    order.sort_by_key(|&i| (std::cmp::Reverse(lifetimes[i].0), lifetimes[i].1, i));
    let mut offsets = vec![0usize; lifetimes.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut total = 0usize;
    for &i in &order {
        let (size, first, last) = lifetimes[i];
        let size = align(size);
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| {
                let (_, f, l) = lifetimes[j];
                f <= last && first <= l
            })
            .map(|&j| (offsets[j], offsets[j] + align(lifetimes[j].0)))
            .collect();
        busy.sort_unstable();
        let mut best: Option<(usize, usize)> = None; // (gap size, offset)
        let mut cursor = 0usize;
        for &(start, end) in &busy {
            if start >= cursor + size {
                let gap = start - cursor;
                if best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let off = best.map_or(cursor, |(_, o)| o);
        offsets[i] = off;
        total = total.max(off + size);
        placed.push(i);
    }
    (offsets, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(l: &[(usize, usize, usize)]) -> usize {
        let (off, total) = plan_arena(l);
        for i in 0..l.len() {
            assert!(off[i] % ARENA_ALIGN == 0);
            assert!(off[i] + l[i].0 <= total);
            for j in 0..i {
                let overlap_t = l[i].1 <= l[j].2 && l[j].1 <= l[i].2;
                let overlap_m = off[i] < off[j] + l[j].0 && off[j] < off[i] + l[i].0;
                assert!(!(overlap_t && overlap_m), "{i} and {j} collide");
            }
        }
        total
    }

    #[test]
    fn chain_reuses_memory() {
        // a chain: each buffer lives from its producer to its consumer
        let l: Vec<_> = (0..6).map(|i| (100, i, i + 1)).collect();
        assert_eq!(check(&l), 2 * 100);
    }

    #[test]
    fn best_fit_fills_gaps() {
        let l = [
            (400, 0, 1),
            (100, 1, 3),
            (300, 2, 3),
            (64, 3, 4),
            (1000, 5, 6),
        ];
        let total = check(&l);
        assert_eq!(total, 1000);
        assert_eq!(check(&[]), 0);
        assert_eq!(check(&[(5, 0, 0)]), 8);
    }

    #[test]
    fn random_lifetimes_never_collide() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let n = (s % 20) as usize;
            let l: Vec<_> = (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let f = (s % 10) as usize;
                    ((s >> 8) as usize % 300 + 1, f, f + (s >> 20) as usize % 5)
                })
                .collect();
            check(&l);
        }
    }
}
