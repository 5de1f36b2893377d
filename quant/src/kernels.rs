//! Reference loops of the tensor ops (the non-I-BERT ones). Shapes are validated by
//! [`crate::graph::Graph::validate`] before any of these run; the bounds that make the int32
//! accumulators safe are checked there too (`terms * 2^14 + max|bias| <= 2^31 - 1`).

use crate::dyadic::{Dyadic, div_round};
use crate::graph::{Requant, Window};

/// `y[r, o] = requant_o(bias[o] + sum_i x[r, i] w[o, i])` for `rows` rows.
pub fn linear(x: &[i8], w: &[i8], bias: &[i32], rq: &Requant, in_f: usize, out: &mut [i8]) {
    let out_f = bias.len();
    for (xr, yr) in x.chunks_exact(in_f).zip(out.chunks_exact_mut(out_f)) {
        for (o, (wr, y)) in w.chunks_exact(in_f).zip(yr.iter_mut()).enumerate() {
            let mut acc = bias[o];
            for (&a, &b) in xr.iter().zip(wr) {
                acc += a as i32 * b as i32;
            }
            *y = rq.get(o).requantize(acc);
        }
    }
}

/// Geometry of a batched MatMul and the zero point of its first operand.
#[derive(Debug, Clone, Copy)]
pub struct MatMulDims {
    /// Leading (batch) elements.
    pub batch: usize,
    /// Rows of `a`.
    pub m: usize,
    /// Reduction length.
    pub k: usize,
    /// Columns of the output.
    pub n: usize,
    /// `b` stored `[B, N, K]`.
    pub transpose_b: bool,
    /// Zero point of `a` (-128 for softmax probabilities, else 0).
    pub a_zero_point: i32,
}

/// Batched `a [B, M, K] x b [B, K, N]` (or `b [B, N, K]` when transposed) -> `[B, M, N]`:
/// `y = requant(sum_k (a - zp_a) b)`.
pub fn matmul(a: &[i8], b: &[i8], d: &MatMulDims, rq: Dyadic, out: &mut [i8]) {
    let MatMulDims { m, k, n, .. } = *d;
    let zp = d.a_zero_point;
    for bi in 0..d.batch {
        let ab = &a[bi * m * k..(bi + 1) * m * k];
        let bb = &b[bi * k * n..(bi + 1) * k * n];
        let ob = &mut out[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            let ar = &ab[i * k..(i + 1) * k];
            for j in 0..n {
                let mut acc = 0i32;
                if d.transpose_b {
                    for (&p, &q) in ar.iter().zip(&bb[j * k..(j + 1) * k]) {
                        acc += (p as i32 - zp) * q as i32;
                    }
                } else {
                    for (kk, &p) in ar.iter().enumerate() {
                        acc += (p as i32 - zp) * bb[kk * n + j] as i32;
                    }
                }
                ob[i * n + j] = rq.requantize(acc);
            }
        }
    }
}

/// HWC convolution; weight `[oc, kh, kw, ic]`; zero padding.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[i8],
    hw: [usize; 2],
    ic: usize,
    oc: usize,
    win: &Window,
    w: &[i8],
    bias: &[i32],
    rq: &Requant,
    out_hw: [usize; 2],
    out: &mut [i8],
) {
    let [h, wd] = hw;
    let [kh, kw] = win.k;
    for oy in 0..out_hw[0] {
        for ox in 0..out_hw[1] {
            let ybase = (oy * out_hw[1] + ox) * oc;
            for o in 0..oc {
                let mut acc = bias[o];
                for ky in 0..kh {
                    let iy = (oy * win.stride[0] + ky) as isize - win.pad[0] as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * win.stride[1] + kx) as isize - win.pad[1] as isize;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        let xp = &x[(iy as usize * wd + ix as usize) * ic..][..ic];
                        let wp = &w[((o * kh + ky) * kw + kx) * ic..][..ic];
                        for (&a, &b) in xp.iter().zip(wp) {
                            acc += a as i32 * b as i32;
                        }
                    }
                }
                out[ybase + o] = rq.get(o).requantize(acc);
            }
        }
    }
}

/// HWC depthwise convolution; weight `[kh, kw, c]`; zero padding.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d(
    x: &[i8],
    hw: [usize; 2],
    c: usize,
    win: &Window,
    w: &[i8],
    bias: &[i32],
    rq: &Requant,
    out_hw: [usize; 2],
    out: &mut [i8],
) {
    let [h, wd] = hw;
    let [kh, kw] = win.k;
    for oy in 0..out_hw[0] {
        for ox in 0..out_hw[1] {
            let ybase = (oy * out_hw[1] + ox) * c;
            for ch in 0..c {
                let mut acc = bias[ch];
                for ky in 0..kh {
                    let iy = (oy * win.stride[0] + ky) as isize - win.pad[0] as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * win.stride[1] + kx) as isize - win.pad[1] as isize;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        acc += x[(iy as usize * wd + ix as usize) * c + ch] as i32
                            * w[(ky * kw + kx) * c + ch] as i32;
                    }
                }
                out[ybase + ch] = rq.get(ch).requantize(acc);
            }
        }
    }
}

/// HWC max (`avg = false`) or average (`avg = true`, `div_round(sum, count)`) pooling over
/// the in-range positions of each window.
pub fn pool2d(
    x: &[i8],
    hw: [usize; 2],
    c: usize,
    win: &Window,
    out_hw: [usize; 2],
    avg: bool,
    out: &mut [i8],
) {
    let [h, wd] = hw;
    for oy in 0..out_hw[0] {
        for ox in 0..out_hw[1] {
            let ybase = (oy * out_hw[1] + ox) * c;
            for ch in 0..c {
                let (mut sum, mut mx, mut count) = (0i32, i8::MIN, 0i32);
                for ky in 0..win.k[0] {
                    let iy = (oy * win.stride[0] + ky) as isize - win.pad[0] as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..win.k[1] {
                        let ix = (ox * win.stride[1] + kx) as isize - win.pad[1] as isize;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        let v = x[(iy as usize * wd + ix as usize) * c + ch];
                        sum += v as i32;
                        mx = mx.max(v);
                        count += 1;
                    }
                }
                // pad < k guarantees count >= 1
                out[ybase + ch] = if avg {
                    div_round(sum, count.max(1)) as i8
                } else {
                    mx
                };
            }
        }
    }
}

/// Mean over the leading axis of `[n, c]`: `div_round(sum, n)` per column (`n <= 2^23`).
pub fn mean_rows(x: &[i8], n: usize, c: usize, acc: &mut [i32], out: &mut [i8]) {
    acc[..c].fill(0);
    for row in x.chunks_exact(c).take(n) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as i32;
        }
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = div_round(a, n as i32) as i8;
    }
}

/// General axis permutation: output axis `i` is input axis `perm[i]`.
pub fn transpose(x: &[i8], shape: &[usize], perm: &[usize], out: &mut [i8]) {
    let r = shape.len();
    let mut in_strides = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let oshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let ostrides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut idx = vec![0usize; r];
    for o in out.iter_mut() {
        let off: usize = idx.iter().zip(&ostrides).map(|(i, s)| i * s).sum();
        *o = x[off];
        for ax in (0..r).rev() {
            idx[ax] += 1;
            if idx[ax] < oshape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
}
