//! Block masks on plain weight slices (TinyFormer III-C2, Fig. 5).
//!
//! A *block* is a group of weights that is pruned together: `b` consecutive weights along the
//! reduction (input) dimension of one output of a Linear or (pointwise) Conv2d layer, or one
//! kernel row (width 3 for a 3x3 kernel) of a depthwise convolution. [`BlockGeometry`] maps a
//! weight tensor's row-major storage to its blocks; everything else here works on block
//! indices, so the same functions serve every layer kind.
//!
//! Block ids are ordered output by output, and within an output in the order a sparse kernel
//! visits them, which is also the order of [`BlockGeometry::to_rle_matrix`]'s rows and columns.

use serde::{Deserialize, Serialize};

use crate::error::PruneError;

/// How a layer's weights are stored, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightLayout {
    /// Burn's `Linear`: `[d_in, d_out]` (`y = x W`). Blocks: `b` consecutive inputs of one output.
    LinearInOut { d_in: usize, d_out: usize },
    /// `[d_out, d_in]` (PyTorch's `Linear`, the integer graph). Blocks as above.
    LinearOutIn { d_out: usize, d_in: usize },
    /// Conv2d, pointwise included (`kh = kw = 1`): `[c_out, c_in, kh, kw]` (per group `c_in`).
    /// Blocks: `b` consecutive input channels at one output channel and kernel position.
    Conv2d {
        c_out: usize,
        c_in: usize,
        kh: usize,
        kw: usize,
    },
    /// Depthwise Conv2d: `[channels, 1, kh, kw]`. Blocks: one kernel row, `kw` wide (the block
    /// size is always `kw`: 3 for TinyFormer's 3x3 kernels).
    Depthwise {
        channels: usize,
        kh: usize,
        kw: usize,
    },
}

impl WeightLayout {
    /// Number of weights.
    pub fn len(&self) -> usize {
        match *self {
            WeightLayout::LinearInOut { d_in, d_out }
            | WeightLayout::LinearOutIn { d_out, d_in } => d_in * d_out,
            WeightLayout::Conv2d {
                c_out,
                c_in,
                kh,
                kw,
            } => c_out * c_in * kh * kw,
            WeightLayout::Depthwise { channels, kh, kw } => channels * kh * kw,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dimension blocks run along, with its name (for error messages).
    pub fn reduction_dim(&self) -> (&'static str, usize) {
        match *self {
            WeightLayout::LinearInOut { d_in, .. } | WeightLayout::LinearOutIn { d_in, .. } => {
                ("input", d_in)
            }
            WeightLayout::Conv2d { c_in, .. } => ("input-channel", c_in),
            WeightLayout::Depthwise { kw, .. } => ("kernel-width", kw),
        }
    }

    /// Output units (rows of the RLE matrix).
    pub fn outputs(&self) -> usize {
        match *self {
            WeightLayout::LinearInOut { d_out, .. } | WeightLayout::LinearOutIn { d_out, .. } => {
                d_out
            }
            WeightLayout::Conv2d { c_out, .. } => c_out,
            WeightLayout::Depthwise { channels, .. } => channels,
        }
    }
}

/// Block size rules: Linear and Conv2d layers take 2 or 4 (TinyFormer's elastic block size),
/// depthwise layers always their kernel width.
pub const ALLOWED_BLOCKS: [usize; 2] = [2, 4];

/// The blocks of one weight tensor: `blocks()` blocks of `block()` weights each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockGeometry {
    layout: WeightLayout,
    block: usize,
    /// Blocks per output (per output and kernel position for Conv2d).
    per_group: usize,
}

impl BlockGeometry {
    /// Validates `block` against `layout`; `layer` names the layer in errors.
    pub fn new(layout: WeightLayout, block: usize, layer: &str) -> Result<Self, PruneError> {
        if layout.is_empty() {
            return Err(PruneError::Layout {
                layer: layer.into(),
                message: format!("empty weight tensor {layout:?}"),
            });
        }
        let (dim_name, dim) = layout.reduction_dim();
        match layout {
            WeightLayout::Depthwise { kw, .. } => {
                if block != kw {
                    return Err(PruneError::BlockNotAllowed {
                        layer: layer.into(),
                        block,
                        allowed: format!("{kw} (the kernel width) for a depthwise convolution"),
                    });
                }
            }
            _ => {
                if !ALLOWED_BLOCKS.contains(&block) {
                    return Err(PruneError::BlockNotAllowed {
                        layer: layer.into(),
                        block,
                        allowed: "2, 4".into(),
                    });
                }
            }
        }
        if dim % block != 0 {
            return Err(PruneError::BlockDoesNotDivide {
                layer: layer.into(),
                block,
                dim_name,
                dim,
            });
        }
        Ok(Self {
            layout,
            block,
            per_group: dim / block,
        })
    }

    pub fn layout(&self) -> WeightLayout {
        self.layout
    }

    pub fn block(&self) -> usize {
        self.block
    }

    pub fn blocks(&self) -> usize {
        self.layout.len() / self.block
    }

    /// Flat index of the first weight of block `id` and the stride between its weights.
    fn base_stride(&self, id: usize) -> (usize, usize) {
        let b = self.block;
        match self.layout {
            WeightLayout::LinearInOut { d_out, .. } => {
                let (o, j) = (id / self.per_group, id % self.per_group);
                (j * b * d_out + o, d_out)
            }
            WeightLayout::LinearOutIn { d_in, .. } => {
                let (o, j) = (id / self.per_group, id % self.per_group);
                (o * d_in + j * b, 1)
            }
            WeightLayout::Conv2d { c_in, kh, kw, .. } => {
                // id = ((co * kh + y) * kw + x) * per_group + j: input channels innermost.
                let j = id % self.per_group;
                let pos = id / self.per_group;
                let (x, rest) = (pos % kw, pos / kw);
                let (y, co) = (rest % kh, rest / kh);
                (((co * c_in + j * b) * kh + y) * kw + x, kh * kw)
            }
            WeightLayout::Depthwise { kw, .. } => (id * kw, 1),
        }
    }

    /// Flat indices of the weights of block `id`.
    pub fn elements(&self, id: usize) -> impl Iterator<Item = usize> + use<> {
        let (base, stride) = self.base_stride(id);
        (0..self.block).map(move |k| base + k * stride)
    }

    fn check(&self, weights: usize, layer: &str) -> Result<(), PruneError> {
        if weights != self.layout.len() {
            return Err(PruneError::ShapeMismatch {
                layer: layer.into(),
                len: weights,
                expected: self.layout.len(),
            });
        }
        Ok(())
    }

    /// The weights reordered as a row-major `rows x cols` matrix whose blocks are consecutive
    /// along `cols` (one row per output), the layout of [`crate::rle::encode`]:
    /// Linear `[d_out, d_in]`, Conv2d `[c_out, kh * kw * c_in]` (channels innermost),
    /// depthwise `[channels, kh * kw]`. Returns `(values, rows, cols)`.
    pub fn to_rle_matrix<T: Copy>(&self, weights: &[T]) -> (Vec<T>, usize, usize) {
        let rows = self.layout.outputs();
        let cols = self.layout.len() / rows;
        let mut out = Vec::with_capacity(self.layout.len());
        for id in 0..self.blocks() {
            out.extend(self.elements(id).map(|i| weights[i]));
        }
        (out, rows, cols)
    }
}

/// How blocks are ranked: by the L1 or the L2 norm of their weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Score {
    #[default]
    L1,
    L2,
}

/// The magnitude of every block.
pub fn block_scores(weights: &[f32], geom: &BlockGeometry, score: Score) -> Vec<f64> {
    (0..geom.blocks())
        .map(|id| {
            let vals = geom.elements(id).map(|i| weights[i] as f64);
            match score {
                Score::L1 => vals.map(f64::abs).sum(),
                Score::L2 => vals.map(|v| v * v).sum::<f64>().sqrt(),
            }
        })
        .collect()
}

/// Which blocks of a layer are pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMask {
    pruned: Vec<bool>,
}

impl BlockMask {
    /// Nothing pruned.
    pub fn dense(blocks: usize) -> Self {
        Self {
            pruned: vec![false; blocks],
        }
    }

    pub fn from_pruned(pruned: Vec<bool>) -> Self {
        Self { pruned }
    }

    pub fn blocks(&self) -> usize {
        self.pruned.len()
    }

    pub fn is_pruned(&self, id: usize) -> bool {
        self.pruned[id]
    }

    pub fn pruned(&self) -> &[bool] {
        &self.pruned
    }

    pub fn pruned_count(&self) -> usize {
        self.pruned.iter().filter(|&&p| p).count()
    }

    /// Fraction of pruned blocks (= of pruned weights: all blocks of a layer are equal).
    pub fn sparsity(&self) -> f64 {
        if self.pruned.is_empty() {
            0.0
        } else {
            self.pruned_count() as f64 / self.pruned.len() as f64
        }
    }

    /// Sets the weights of every pruned block to exactly zero.
    pub fn apply(&self, weights: &mut [f32], geom: &BlockGeometry) {
        for (id, _) in self.pruned.iter().enumerate().filter(|(_, p)| **p) {
            for i in geom.elements(id) {
                weights[i] = 0.0;
            }
        }
    }

    /// Whether every weight of every pruned block is exactly zero.
    pub fn holds(&self, weights: &[f32], geom: &BlockGeometry) -> bool {
        self.pruned
            .iter()
            .enumerate()
            .filter(|(_, p)| **p)
            .all(|(id, _)| geom.elements(id).all(|i| weights[i] == 0.0))
    }

    /// Packed as hexadecimal, 4 blocks a digit (block `4k + j` is bit `j` of digit `k`).
    pub fn to_hex(&self) -> String {
        self.pruned
            .chunks(4)
            .map(|c| {
                let v = c
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (j, &p)| acc | (u32::from(p) << j));
                char::from_digit(v, 16).expect("a nibble")
            })
            .collect()
    }

    /// The inverse of [`BlockMask::to_hex`] for a layer of `blocks` blocks.
    pub fn from_hex(hex: &str, blocks: usize) -> Option<Self> {
        if hex.len() != blocks.div_ceil(4) {
            return None;
        }
        let mut pruned = Vec::with_capacity(blocks);
        for c in hex.chars() {
            let v = c.to_digit(16)?;
            for j in 0..4 {
                if pruned.len() < blocks {
                    pruned.push(v >> j & 1 == 1);
                } else if v >> j & 1 == 1 {
                    return None;
                }
            }
        }
        Some(Self { pruned })
    }
}

/// Number of blocks to prune for `sparsity`: the nearest whole number of blocks, so the
/// realized sparsity is within half a block of the target (the rule the cost model's size
/// prediction uses too).
pub fn target_blocks(blocks: usize, sparsity: f64) -> usize {
    rle::pruned_blocks(blocks, sparsity)
}

/// Prunes the `target_blocks(.., sparsity)` blocks of smallest score. Blocks pruned in
/// `previous` stay pruned (masks only grow, as AGP requires); ties go to the lower block id,
/// so the result is deterministic.
pub fn prune_blocks(
    weights: &[f32],
    geom: &BlockGeometry,
    sparsity: f64,
    score: Score,
    previous: Option<&BlockMask>,
    layer: &str,
) -> Result<BlockMask, PruneError> {
    geom.check(weights.len(), layer)?;
    if !(0.0..1.0).contains(&sparsity) {
        return Err(PruneError::SparsityOutOfRange {
            layer: layer.into(),
            value: sparsity,
        });
    }
    let n = geom.blocks();
    let mut mask = match previous {
        Some(p) if p.blocks() == n => p.clone(),
        Some(p) => {
            return Err(PruneError::Layout {
                layer: layer.into(),
                message: format!("mask has {} blocks, the layer {n}", p.blocks()),
            });
        }
        None => BlockMask::dense(n),
    };
    let want = target_blocks(n, sparsity);
    let have = mask.pruned_count();
    if want <= have {
        return Ok(mask);
    }
    let scores = block_scores(weights, geom, score);
    let mut candidates: Vec<usize> = (0..n).filter(|&id| !mask.pruned[id]).collect();
    candidates.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    for &id in &candidates[..want - have] {
        mask.pruned[id] = true;
    }
    Ok(mask)
}

/// One-shot blockwise magnitude pruning of a weight slice in place; returns the mask.
pub fn prune_in_place(
    weights: &mut [f32],
    geom: &BlockGeometry,
    sparsity: f64,
    score: Score,
    layer: &str,
) -> Result<BlockMask, PruneError> {
    let mask = prune_blocks(weights, geom, sparsity, score, None, layer)?;
    mask.apply(weights, geom);
    Ok(mask)
}

/// Fraction of exactly-zero weights.
pub fn zero_fraction(weights: &[f32]) -> f64 {
    if weights.is_empty() {
        return 0.0;
    }
    weights.iter().filter(|&&w| w == 0.0).count() as f64 / weights.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn geom(layout: WeightLayout, b: usize) -> BlockGeometry {
        BlockGeometry::new(layout, b, "t").unwrap()
    }

    #[test]
    fn linear_in_out_blocks_run_along_the_input() {
        // [d_in = 4, d_out = 2]: weight (i, o) at i * 2 + o.
        let g = geom(WeightLayout::LinearInOut { d_in: 4, d_out: 2 }, 2);
        assert_eq!(g.blocks(), 4);
        let blocks: Vec<Vec<usize>> = (0..4).map(|id| g.elements(id).collect()).collect();
        // output 0: inputs 0,1 then 2,3; output 1 likewise.
        assert_eq!(blocks, vec![vec![0, 2], vec![4, 6], vec![1, 3], vec![5, 7]]);
        // The RLE matrix is the transpose [d_out, d_in].
        let w: Vec<i32> = (0..8).collect();
        let (m, rows, cols) = g.to_rle_matrix(&w);
        assert_eq!((rows, cols), (2, 4));
        assert_eq!(m, vec![0, 2, 4, 6, 1, 3, 5, 7]);
    }

    #[test]
    fn linear_out_in_blocks_are_contiguous() {
        let g = geom(WeightLayout::LinearOutIn { d_out: 2, d_in: 4 }, 4);
        assert_eq!(g.elements(1).collect::<Vec<_>>(), vec![4, 5, 6, 7]);
    }

    #[test]
    fn conv2d_blocks_run_along_input_channels() {
        // [c_out 1, c_in 4, 1x2 kernel]: weight (co, ci, y, x) at ((co*4 + ci)*1 + y)*2 + x.
        let g = geom(
            WeightLayout::Conv2d {
                c_out: 1,
                c_in: 4,
                kh: 1,
                kw: 2,
            },
            2,
        );
        assert_eq!(g.blocks(), 4);
        let blocks: Vec<Vec<usize>> = (0..4).map(|id| g.elements(id).collect()).collect();
        // position x=0: channels 0,1 (idx 0,2) then 2,3 (idx 4,6); position x=1: 1,3 and 5,7.
        assert_eq!(blocks, vec![vec![0, 2], vec![4, 6], vec![1, 3], vec![5, 7]]);
        // Pointwise is the Linear [d_out, d_in] case.
        let p = geom(
            WeightLayout::Conv2d {
                c_out: 2,
                c_in: 4,
                kh: 1,
                kw: 1,
            },
            2,
        );
        let l = geom(WeightLayout::LinearOutIn { d_out: 2, d_in: 4 }, 2);
        for id in 0..4 {
            assert!(p.elements(id).eq(l.elements(id)));
        }
    }

    #[test]
    fn depthwise_blocks_are_kernel_rows() {
        let layout = WeightLayout::Depthwise {
            channels: 2,
            kh: 3,
            kw: 3,
        };
        let g = geom(layout, 3);
        assert_eq!(g.blocks(), 6);
        assert_eq!(g.elements(4).collect::<Vec<_>>(), vec![12, 13, 14]);
        let err = BlockGeometry::new(layout, 2, "dw").unwrap_err().to_string();
        assert!(err.contains("dw") && err.contains("kernel width"), "{err}");
        // Pruning the weakest rows of a depthwise kernel.
        let mut w: Vec<f32> = (0..18).map(|i| 1.0 + i as f32).collect();
        let m = prune_in_place(&mut w, &g, 0.5, Score::L2, "dw").unwrap();
        assert_eq!(m.pruned(), &[true, true, true, false, false, false]);
        assert!(w[..9].iter().all(|&v| v == 0.0) && w[9..].iter().all(|&v| v > 0.0));
    }

    #[test]
    fn bad_block_sizes_are_named_errors() {
        let l = WeightLayout::LinearInOut { d_in: 6, d_out: 2 };
        let err = BlockGeometry::new(l, 4, "fc").unwrap_err().to_string();
        assert!(
            err.contains("fc") && err.contains("does not divide") && err.contains('6'),
            "{err}"
        );
        let err = BlockGeometry::new(l, 3, "fc").unwrap_err().to_string();
        assert!(err.contains("2, 4"), "{err}");
    }

    #[test]
    fn l1_and_l2_can_disagree() {
        // Block 0: (1, 1) -> L1 2, L2 1.41; block 1: (1.9, 0) -> L1 1.9, L2 1.9.
        let g = geom(WeightLayout::LinearOutIn { d_out: 1, d_in: 4 }, 2);
        let w = [1.0f32, 1.0, 1.9, 0.0];
        let l1 = prune_blocks(&w, &g, 0.5, Score::L1, None, "t").unwrap();
        let l2 = prune_blocks(&w, &g, 0.5, Score::L2, None, "t").unwrap();
        assert_eq!(l1.pruned(), &[false, true]);
        assert_eq!(l2.pruned(), &[true, false]);
    }

    #[test]
    fn sparsity_outside_zero_one_is_refused() {
        let g = geom(WeightLayout::LinearOutIn { d_out: 1, d_in: 4 }, 2);
        for s in [-0.1, 1.0, f64::NAN] {
            let err = prune_blocks(&[0.0; 4], &g, s, Score::L1, None, "x")
                .unwrap_err()
                .to_string();
            assert!(err.contains("[0, 1)"), "{err}");
        }
        assert!(prune_blocks(&[0.0; 3], &g, 0.5, Score::L1, None, "x").is_err());
    }

    fn layout() -> impl Strategy<Value = (WeightLayout, usize)> {
        prop_oneof![
            (1usize..6, 1usize..9, prop::sample::select(vec![2usize, 4])).prop_map(|(o, k, b)| (
                WeightLayout::LinearInOut {
                    d_in: k * b,
                    d_out: o
                },
                b
            )),
            (
                1usize..4,
                1usize..5,
                1usize..4,
                prop::sample::select(vec![2usize, 4])
            )
                .prop_map(|(o, k, kk, b)| (
                    WeightLayout::Conv2d {
                        c_out: o,
                        c_in: k * b,
                        kh: kk,
                        kw: kk
                    },
                    b
                )),
            (1usize..6).prop_map(|c| (
                WeightLayout::Depthwise {
                    channels: c,
                    kh: 3,
                    kw: 3
                },
                3
            )),
        ]
    }

    proptest! {
        /// Blocks partition the tensor; pruning hits its target within half a block, zeroes
        /// exactly the pruned blocks, keeps the largest blocks, and only grows.
        #[test]
        fn masks_partition_and_meet_their_target(
            (layout, b) in layout(),
            seed in any::<u64>(),
            s1 in 0.0f64..0.95,
            s2 in 0.0f64..0.95,
            l2 in any::<bool>(),
        ) {
            let g = BlockGeometry::new(layout, b, "p").unwrap();
            let mut seen = vec![0u8; layout.len()];
            for id in 0..g.blocks() {
                for i in g.elements(id) { seen[i] += 1; }
            }
            prop_assert!(seen.iter().all(|&c| c == 1));

            let mut x = seed | 1;
            let w: Vec<f32> = (0..layout.len()).map(|_| {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                (x % 2001) as f32 / 1000.0 - 1.0
            }).collect();
            let score = if l2 { Score::L2 } else { Score::L1 };
            let (lo, hi) = if s1 <= s2 { (s1, s2) } else { (s2, s1) };
            let m1 = prune_blocks(&w, &g, lo, score, None, "p").unwrap();
            let mut pruned = w.clone();
            m1.apply(&mut pruned, &g);
            let m2 = prune_blocks(&pruned, &g, hi, score, Some(&m1), "p").unwrap();
            for (m, s) in [(&m1, lo), (&m2, hi)] {
                prop_assert!((m.sparsity() - s).abs() <= 0.5 / g.blocks() as f64 + 1e-12);
            }
            prop_assert!((0..g.blocks()).all(|id| !m1.is_pruned(id) || m2.is_pruned(id)));
            m2.apply(&mut pruned, &g);
            prop_assert!(m2.holds(&pruned, &g));
            prop_assert!((zero_fraction(&pruned) - m2.sparsity()).abs() < 1e-12
                || w.contains(&0.0));
            // Every kept block of the one-shot mask scores at least every pruned one.
            let sc = block_scores(&w, &g, score);
            let max_pruned = (0..g.blocks()).filter(|&i| m1.is_pruned(i)).map(|i| sc[i]).fold(f64::MIN, f64::max);
            let min_kept = (0..g.blocks()).filter(|&i| !m1.is_pruned(i)).map(|i| sc[i]).fold(f64::MAX, f64::min);
            prop_assert!(max_pruned <= min_kept);
            prop_assert_eq!(BlockMask::from_hex(&m2.to_hex(), g.blocks()), Some(m2.clone()));
        }
    }
}
