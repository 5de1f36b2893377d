//! Reference loops of the tensor ops (the non-I-BERT ones), in an order that vectorizes
//! (integer sums are exact in any order: the results are the plain loops', as the tests
//! check) and compiled for AVX-512, AVX2 and the baseline. Shapes are validated by
//! [`crate::graph::Graph::validate`] before any of these run; the bounds that make the int32
//! accumulators safe are checked there too (`terms * 2^14 + max|bias| <= 2^31 - 1`).

use crate::dyadic::{Dyadic, div_round};
use crate::graph::{Requant, Window};

/// `acc[j] += a * row[j]`: one stride-1 pass over the accumulators, which vectorizes.
#[inline(always)]
fn add_scaled_row(acc: &mut [i32], a: i32, row: &[i8]) {
    for (s, &b) in acc.iter_mut().zip(row) {
        *s += a * b as i32;
    }
}

/// `sum a[i] b[i]` in i32 (integer sums are exact in any order, so this vectorizes).
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&p, &q)| p as i32 * q as i32).sum()
}

/// `y[r, o] = requant_o(bias[o] + sum_i x[r, i] w[o, i])` for `rows` rows.
#[inline(always)]
fn linear_loop(x: &[i8], w: &[i8], bias: &[i32], rq: &Requant, in_f: usize, out: &mut [i8]) {
    let out_f = bias.len();
    for (xr, yr) in x.chunks_exact(in_f).zip(out.chunks_exact_mut(out_f)) {
        for (o, (wr, y)) in w.chunks_exact(in_f).zip(yr.iter_mut()).enumerate() {
            *y = rq.get(o).requantize(bias[o] + dot_i8(xr, wr));
        }
    }
}

training::dispatched!(
    /// `y[r, o] = requant_o(bias[o] + sum_i x[r, i] w[o, i])` for every `in_f`-long row of `x`.
    linear => linear_loop(
        x: &[i8], w: &[i8], bias: &[i32], rq: &Requant, in_f: usize, out: &mut [i8]
    )
);

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

#[inline(always)]
fn matmul_loop(a: &[i8], b: &[i8], d: &MatMulDims, rq: Dyadic, out: &mut [i8]) {
    let MatMulDims { m, k, n, .. } = *d;
    let zp = d.a_zero_point;
    // The inner loop runs over the longer of k and n (attention's q k^T has k = the head's
    // width, p v has n = it): b is transposed per batch when its layout does not fit.
    let rows_of_b = n >= k;
    let mut bt = vec![0i8; if rows_of_b == d.transpose_b { k * n } else { 0 }];
    let mut acc = vec![0i32; if rows_of_b { n } else { 0 }];
    for bi in 0..d.batch {
        let ab = &a[bi * m * k..(bi + 1) * m * k];
        let mut bb = &b[bi * k * n..(bi + 1) * k * n];
        if rows_of_b == d.transpose_b {
            // [n, k] -> [k, n] or [k, n] -> [n, k]
            let shape = if d.transpose_b { [n, k] } else { [k, n] };
            transpose(bb, &shape, &[1, 0], &mut bt);
            bb = &bt;
        }
        let ob = &mut out[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            let ar = &ab[i * k..(i + 1) * k];
            let orow = &mut ob[i * n..(i + 1) * n];
            if rows_of_b {
                // b [k, n]: its rows in turn, each scaled by one element of a's row
                acc.fill(0);
                for (kk, &p) in ar.iter().enumerate() {
                    add_scaled_row(&mut acc, p as i32 - zp, &bb[kk * n..(kk + 1) * n]);
                }
                for (o, &s) in orow.iter_mut().zip(&acc) {
                    *o = rq.requantize(s);
                }
            } else {
                // b [n, k]: sum (p - zp) q = sum p q - zp sum q
                for (j, o) in orow.iter_mut().enumerate() {
                    let bcol = &bb[j * k..(j + 1) * k];
                    let sum_q: i32 = bcol.iter().map(|&q| q as i32).sum();
                    *o = rq.requantize(dot_i8(ar, bcol) - zp * sum_q);
                }
            }
        }
    }
}

training::dispatched!(
    /// Batched `a [B, M, K] x b [B, K, N]` (or `b [B, N, K]` when transposed) -> `[B, M, N]`:
    /// `y = requant(sum_k (a - zp_a) b)`.
    matmul => matmul_loop(a: &[i8], b: &[i8], d: &MatMulDims, rq: Dyadic, out: &mut [i8])
);

/// The input rows (`iy` range of `ky`) and columns (`ix` range of `kx`) output pixel `(oy,
/// ox)`'s window covers inside the map (zero padding: the rest adds nothing): `(k0, k1, i0)`
/// per axis, the taps `k0..k1` reading from input index `i0` on.
#[inline(always)]
fn window_span(o: usize, axis: usize, size: usize, win: &Window) -> (usize, usize, usize) {
    let start = (o * win.stride[axis]) as isize - win.pad[axis] as isize;
    let k0 = (-start).max(0) as usize;
    let k1 = ((size as isize - start).max(0) as usize).min(win.k[axis]);
    (k0, k1.max(k0), (start + k0 as isize) as usize)
}

/// Calls `f(tap, pixel)` for each position of output pixel `(oy, ox)`'s window inside the map:
/// `tap` indexes the window (`ky kw + kx`), `pixel` the input (`iy w + ix`).
#[inline(always)]
fn for_each_tap(
    oy: usize,
    ox: usize,
    hw: [usize; 2],
    win: &Window,
    mut f: impl FnMut(usize, usize),
) {
    let (ky0, ky1, iy0) = window_span(oy, 0, hw[0], win);
    let (kx0, kx1, ix0) = window_span(ox, 1, hw[1], win);
    for ky in ky0..ky1 {
        let iy = iy0 + ky - ky0;
        for kx in kx0..kx1 {
            f(ky * win.k[1] + kx, iy * hw[1] + ix0 + kx - kx0);
        }
    }
}

/// `out[o] = requant_o(acc[o])`.
#[inline(always)]
fn requantize_into(out: &mut [i8], acc: &[i32], rq: &Requant) {
    for (o, (y, &s)) in out.iter_mut().zip(acc).enumerate() {
        *y = rq.get(o).requantize(s);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conv2d_loop(
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
    let taps = win.k[0] * win.k[1] * ic;
    if taps > oc {
        // long filters (a 3 x 3 window over many channels): each pixel's window gathered into
        // one zero-padded patch, then one dot product per filter (weight rows are [kh, kw, ic])
        let mut patch = vec![0i8; taps];
        for oy in 0..out_hw[0] {
            for ox in 0..out_hw[1] {
                patch.fill(0);
                let (ky0, ky1, iy0) = window_span(oy, 0, hw[0], win);
                let (kx0, kx1, ix0) = window_span(ox, 1, hw[1], win);
                for ky in ky0..ky1 {
                    let iy = iy0 + ky - ky0;
                    let from = (iy * hw[1] + ix0) * ic;
                    let to = (ky * win.k[1] + kx0) * ic;
                    let len = (kx1 - kx0) * ic;
                    patch[to..to + len].copy_from_slice(&x[from..from + len]);
                }
                let ybase = (oy * out_hw[1] + ox) * oc;
                let filters = w.chunks_exact(taps).take(oc);
                for (o, (y, f)) in out[ybase..ybase + oc].iter_mut().zip(filters).enumerate() {
                    *y = rq.get(o).requantize(bias[o] + dot_i8(&patch, f));
                }
            }
        }
        return;
    }
    // short filters (an image stem over 1-3 channels): weights as [kh, kw, ic, oc], each input
    // value then updates every output channel's accumulator in one stride-1 pass; zero inputs
    // (ReLU outputs) are skipped
    let mut wt = vec![0i8; taps * oc];
    transpose(&w[..oc * taps], &[oc, taps], &[1, 0], &mut wt);
    let mut acc = vec![0i32; oc];
    for oy in 0..out_hw[0] {
        for ox in 0..out_hw[1] {
            acc.copy_from_slice(&bias[..oc]);
            for_each_tap(oy, ox, hw, win, |tap, pixel| {
                for (c, &v) in x[pixel * ic..][..ic].iter().enumerate() {
                    if v != 0 {
                        let row = &wt[(tap * ic + c) * oc..][..oc];
                        add_scaled_row(&mut acc, v as i32, row);
                    }
                }
            });
            let ybase = (oy * out_hw[1] + ox) * oc;
            requantize_into(&mut out[ybase..ybase + oc], &acc, rq);
        }
    }
}

training::dispatched!(
    /// HWC convolution; weight `[oc, kh, kw, ic]`; zero padding.
    conv2d => conv2d_loop(
        x: &[i8], hw: [usize; 2], ic: usize, oc: usize, win: &Window, w: &[i8], bias: &[i32],
        rq: &Requant, out_hw: [usize; 2], out: &mut [i8]
    )
);

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn depthwise_conv2d_loop(
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
    let mut acc = vec![0i32; c];
    for oy in 0..out_hw[0] {
        for ox in 0..out_hw[1] {
            acc.copy_from_slice(&bias[..c]);
            // every channel at once: the pixel's c values times the tap's c weights
            for_each_tap(oy, ox, hw, win, |tap, pixel| {
                let (xp, wp) = (&x[pixel * c..][..c], &w[tap * c..][..c]);
                for ((s, &a), &b) in acc.iter_mut().zip(xp).zip(wp) {
                    *s += a as i32 * b as i32;
                }
            });
            let ybase = (oy * out_hw[1] + ox) * c;
            requantize_into(&mut out[ybase..ybase + c], &acc, rq);
        }
    }
}

training::dispatched!(
    /// HWC depthwise convolution; weight `[kh, kw, c]`; zero padding.
    depthwise_conv2d => depthwise_conv2d_loop(
        x: &[i8], hw: [usize; 2], c: usize, win: &Window, w: &[i8], bias: &[i32], rq: &Requant,
        out_hw: [usize; 2], out: &mut [i8]
    )
);

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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    // The plain loops the kernels replaced: the definitions they must equal.

    fn plain_linear(x: &[i8], w: &[i8], bias: &[i32], rq: &Requant, in_f: usize) -> Vec<i8> {
        let mut out = Vec::new();
        for xr in x.chunks_exact(in_f) {
            for (o, wr) in w.chunks_exact(in_f).enumerate() {
                let mut acc = bias[o];
                for (&a, &b) in xr.iter().zip(wr) {
                    acc += a as i32 * b as i32;
                }
                out.push(rq.get(o).requantize(acc));
            }
        }
        out
    }

    fn plain_matmul(a: &[i8], b: &[i8], d: &MatMulDims, rq: Dyadic) -> Vec<i8> {
        let MatMulDims { m, k, n, .. } = *d;
        let mut out = Vec::new();
        for bi in 0..d.batch {
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0i32;
                    for kk in 0..k {
                        let p = a[bi * m * k + i * k + kk] as i32 - d.a_zero_point;
                        let q = if d.transpose_b {
                            b[bi * k * n + j * k + kk]
                        } else {
                            b[bi * k * n + kk * n + j]
                        };
                        acc += p * q as i32;
                    }
                    out.push(rq.requantize(acc));
                }
            }
        }
        out
    }

    /// Convolution (`depthwise`: weight `[kh, kw, c]`, else `[oc, kh, kw, ic]`) by the
    /// definition.
    #[allow(clippy::too_many_arguments)]
    fn plain_conv(
        x: &[i8],
        [h, wd]: [usize; 2],
        ic: usize,
        oc: usize,
        win: &Window,
        w: &[i8],
        bias: &[i32],
        rq: &Requant,
        [oh, ow]: [usize; 2],
        depthwise: bool,
    ) -> Vec<i8> {
        let [kh, kw] = win.k;
        let mut out = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let mut acc = bias[o];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * win.stride[0] + ky) as isize - win.pad[0] as isize;
                            let ix = (ox * win.stride[1] + kx) as isize - win.pad[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            let px = (iy as usize * wd + ix as usize) * ic;
                            if depthwise {
                                acc += x[px + o] as i32 * w[(ky * kw + kx) * oc + o] as i32;
                            } else {
                                for c in 0..ic {
                                    acc += x[px + c] as i32
                                        * w[((o * kh + ky) * kw + kx) * ic + c] as i32;
                                }
                            }
                        }
                    }
                    out.push(rq.get(o).requantize(acc));
                }
            }
        }
        out
    }

    fn codes(rng: &mut StdRng, n: usize) -> Vec<i8> {
        // a third zeros, as after a ReLU (the convolution skips them)
        (0..n)
            .map(|_| {
                if rng.random_bool(0.3) {
                    0
                } else {
                    rng.random_range(-128..=127)
                }
            })
            .collect()
    }

    fn requant(rng: &mut StdRng, channels: usize) -> Requant {
        let d = |rng: &mut StdRng| {
            // scales 2^-14..2^-8: accumulators of 10^3-10^5 land inside the int8 range
            Dyadic::new(rng.random_range(1 << 24..1 << 26), rng.random_range(33..38)).unwrap()
        };
        if rng.random_bool(0.5) {
            Requant::PerTensor(d(rng))
        } else {
            Requant::PerChannel((0..channels).map(|_| d(rng)).collect())
        }
    }

    /// Counts outputs strictly inside (-128, 127) and not 0: the cases test rounding, not
    /// only saturation.
    fn interior(out: &[i8], count: &mut [usize; 2]) {
        count[0] += out
            .iter()
            .filter(|&&v| v != 0 && v > -128 && v < 127)
            .count();
        count[1] += out.len();
    }

    #[test]
    fn linear_and_matmul_equal_their_definitions() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = [0usize; 2];
        let mut forms = std::collections::BTreeSet::new();
        for case in 0..40 {
            let (rows, in_f, out_f) = (
                rng.random_range(1..6),
                rng.random_range(1..70),
                rng.random_range(1..40),
            );
            let (x, w) = (codes(&mut rng, rows * in_f), codes(&mut rng, out_f * in_f));
            let bias: Vec<i32> = (0..out_f).map(|_| rng.random_range(-5000..5000)).collect();
            let rq = requant(&mut rng, out_f);
            let mut out = vec![0i8; rows * out_f];
            linear(&x, &w, &bias, &rq, in_f, &mut out);
            assert_eq!(out, plain_linear(&x, &w, &bias, &rq, in_f));
            // the baseline copy too (the dispatched one is this CPU's widest)
            let mut base = vec![0i8; out.len()];
            linear_loop(&x, &w, &bias, &rq, in_f, &mut base);
            assert_eq!(base, out);
            interior(&out, &mut seen);

            let d = MatMulDims {
                batch: rng.random_range(1..4),
                m: rng.random_range(1..20),
                k: rng.random_range(1..70),
                n: rng.random_range(1..40),
                transpose_b: case % 2 == 0,
                a_zero_point: if rng.random_bool(0.5) { -128 } else { 0 },
            };
            let a = codes(&mut rng, d.batch * d.m * d.k);
            let b = codes(&mut rng, d.batch * d.k * d.n);
            let rq = requant(&mut rng, 1).get(0);
            let mut out = vec![0i8; d.batch * d.m * d.n];
            matmul(&a, &b, &d, rq, &mut out);
            assert_eq!(out, plain_matmul(&a, &b, &d, rq), "{d:?}");
            let mut base = vec![0i8; out.len()];
            matmul_loop(&a, &b, &d, rq, &mut base);
            assert_eq!(base, out);
            interior(&out, &mut seen);
            // both layouts of b, read as rows (n >= k) and as columns
            forms.insert((d.transpose_b, d.n >= d.k));
        }
        assert!(seen[0] * 2 > seen[1], "{seen:?}");
        assert_eq!(forms.len(), 4, "{forms:?}");
    }

    #[test]
    fn convolutions_equal_their_definitions() {
        let mut rng = StdRng::seed_from_u64(8);
        let mut seen = [0usize; 2];
        let mut forms = std::collections::BTreeSet::new();
        for case in 0..60 {
            let k = [rng.random_range(1..4), rng.random_range(1..4)];
            let win = Window {
                k,
                stride: [rng.random_range(1..3), rng.random_range(1..3)],
                pad: [rng.random_range(0..k[0]), rng.random_range(0..k[1])],
            };
            let hw = [rng.random_range(k[0]..9), rng.random_range(k[1]..9)];
            let out_hw = [0, 1].map(|a| (hw[a] + 2 * win.pad[a] - k[a]) / win.stride[a] + 1);
            let (ic, oc) = (rng.random_range(1..6), rng.random_range(1..37));
            let x = codes(&mut rng, hw[0] * hw[1] * ic);
            let w = codes(&mut rng, oc * k[0] * k[1] * ic);
            let bias: Vec<i32> = (0..oc).map(|_| rng.random_range(-5000..5000)).collect();
            let rq = requant(&mut rng, oc);
            let mut out = vec![0i8; out_hw[0] * out_hw[1] * oc];
            conv2d(&x, hw, ic, oc, &win, &w, &bias, &rq, out_hw, &mut out);
            let want = plain_conv(&x, hw, ic, oc, &win, &w, &bias, &rq, out_hw, false);
            assert_eq!(out, want, "case {case}: {win:?} {hw:?} ic {ic} oc {oc}");
            let mut base = vec![0i8; out.len()];
            conv2d_loop(&x, hw, ic, oc, &win, &w, &bias, &rq, out_hw, &mut base);
            assert_eq!(base, out);
            interior(&out, &mut seen);
            // patches and dot products (long filters), or scaled weight rows
            forms.insert(k[0] * k[1] * ic > oc);

            let c = oc;
            let x = codes(&mut rng, hw[0] * hw[1] * c);
            let w = codes(&mut rng, k[0] * k[1] * c);
            let mut out = vec![0i8; out_hw[0] * out_hw[1] * c];
            depthwise_conv2d(&x, hw, c, &win, &w, &bias, &rq, out_hw, &mut out);
            let want = plain_conv(&x, hw, c, c, &win, &w, &bias, &rq, out_hw, true);
            assert_eq!(out, want, "case {case}: depthwise {win:?} {hw:?} c {c}");
            let mut base = vec![0i8; out.len()];
            depthwise_conv2d_loop(&x, hw, c, &win, &w, &bias, &rq, out_hw, &mut base);
            assert_eq!(base, out);
            interior(&out, &mut seen);
        }
        assert!(seen[0] * 2 > seen[1], "{seen:?}");
        assert_eq!(forms.len(), 2);
    }
}
