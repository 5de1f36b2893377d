//! Sparse weight storage (TinyFormer's SparseEngine, Sec. III-D): the weights of a Linear,
//! Conv2d or depthwise layer are stored blockwise run-length coded (the `rle` crate's format,
//! read in place by `runtime/nas_sparse.c`) wherever that is strictly smaller than dense, the
//! paper's self-adaptive rule. The choice is made from the int8 weights themselves, so pruned
//! blocks (and blocks that quantized to zero) are skipped in flash and in the MAC loop.
//!
//! Rows are output channels and blocks run along the reduction dimension in the layout the
//! sparse kernel reads: Linear `[out, in]`; Conv2d `[out_c, kh, kw, in_c]` (a block of `b` input
//! channels at one kernel position, as `pruning` masks it); depthwise `[c, kh, kw]`, transposed
//! from the dense `[kh, kw, c]`, one block per kernel row (`b = kw`).

use quant::graph::Op;
use rle::Encoded;

/// Block sizes tried for Linear and Conv2d weights (TinyFormer's choices); the smallest coding
/// wins, ties going to the larger block (fewer entries to decode).
pub const BLOCK_CANDIDATES: [usize; 2] = [4, 2];

/// The weight matrix of `op` as `(values, rows, cols)` in the sparse kernel's layout, with the
/// block sizes to try; `None` for ops without a weight matrix.
fn reduction_matrix(op: &Op) -> Option<(Vec<i8>, usize, usize, Vec<usize>)> {
    match op {
        Op::Linear {
            in_features,
            out_features,
            weight,
            ..
        } => Some((
            weight.clone(),
            *out_features,
            *in_features,
            BLOCK_CANDIDATES.to_vec(),
        )),
        Op::Conv2d {
            in_c,
            out_c,
            window,
            weight,
            ..
        } => Some((
            weight.clone(),
            *out_c,
            window.k[0] * window.k[1] * in_c,
            BLOCK_CANDIDATES.to_vec(),
        )),
        Op::DepthwiseConv2d {
            channels,
            window,
            weight,
            ..
        } => {
            let taps = window.k[0] * window.k[1];
            let transposed = (0..channels * taps)
                .map(|i| weight[(i % taps) * channels + i / taps])
                .collect();
            Some((transposed, *channels, taps, vec![window.k[1]]))
        }
        _ => None,
    }
}

/// The run-length coding of `op`'s weights when it is strictly smaller than the dense array
/// (smallest over the candidate block sizes), else `None` (stored dense).
pub fn coded_weights(op: &Op) -> Option<Encoded> {
    let (values, rows, cols, blocks) = reduction_matrix(op)?;
    blocks
        .into_iter()
        .filter(|&b| b <= cols)
        .filter_map(|b| rle::encode(&values, rows, cols, b).ok())
        .filter(|e| rle::coded_size_bytes(e) < values.len())
        .min_by_key(|e| (rle::coded_size_bytes(e), std::cmp::Reverse(e.block)))
}

/// MACs the sparse kernel performs per output position: every stored value (the zeros of
/// filler entries included: the kernel multiplies them too).
pub fn coded_macs_per_position(enc: &Encoded) -> u64 {
    let entries = enc.row_entries.iter().map(|&n| n as u64).sum::<u64>();
    enc.payload.len() as u64 - entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use quant::Dyadic;
    use quant::graph::{Requant, Window};

    fn linear(weight: Vec<i8>, out: usize, inp: usize) -> Op {
        Op::Linear {
            in_features: inp,
            out_features: out,
            weight,
            bias: vec![0; out],
            requant: Requant::PerTensor(Dyadic { m: 1 << 30, s: 31 }),
        }
    }

    #[test]
    fn dense_weights_stay_dense_and_pruned_ones_are_coded() {
        let dense: Vec<i8> = (0..8 * 16).map(|i| (i % 7) as i8 - 3 + 4).collect();
        assert!(coded_weights(&linear(dense, 8, 16)).is_none());
        // 75 % of the 4-blocks zero: 8 rows x 1 block of 4 stored.
        let pruned: Vec<i8> = (0..8 * 16)
            .map(|i| if i % 16 < 4 { 1 + (i % 3) as i8 } else { 0 })
            .collect();
        let e = coded_weights(&linear(pruned.clone(), 8, 16)).expect("smaller coded");
        assert_eq!(e.block, 4);
        assert_eq!(rle::coded_size_bytes(&e), 16 + 2 * 8 + 8 * 5);
        assert_eq!(rle::decode(&e).unwrap(), pruned);
        assert_eq!(coded_macs_per_position(&e), 8 * 4);
    }

    #[test]
    fn depthwise_rows_are_channels_and_blocks_kernel_rows() {
        // 3x3 depthwise over 4 channels, layout [kh, kw, c]; channel c keeps kernel row c % 3.
        let c = 4;
        let mut w = vec![0i8; 9 * c];
        for ch in 0..c {
            for kx in 0..3 {
                w[((ch % 3) * 3 + kx) * c + ch] = (ch + kx + 1) as i8;
            }
        }
        let op = Op::DepthwiseConv2d {
            channels: c,
            window: Window {
                k: [3, 3],
                stride: [1, 1],
                pad: [1, 1],
            },
            weight: w.clone(),
            bias: vec![0; c],
            requant: Requant::PerTensor(Dyadic { m: 1 << 30, s: 31 }),
        };
        // 36 dense bytes vs 16 + 8 + 4 * 4 = 40 coded: stays dense at this size...
        assert!(coded_weights(&op).is_none());
        // ...but the layout is right: decode the coding at block 3 and compare per channel.
        let (m, rows, cols, blocks) = reduction_matrix(&op).unwrap();
        assert_eq!((rows, cols, blocks), (c, 9, vec![3]));
        let e = rle::encode(&m, rows, cols, 3).unwrap();
        assert_eq!(e.nonzero_blocks, c);
        for ch in 0..c {
            for t in 0..9 {
                assert_eq!(m[ch * 9 + t], w[t * c + ch]);
            }
        }
    }
}
