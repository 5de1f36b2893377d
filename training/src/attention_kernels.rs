//! Scaled dot-product attention, `softmax(scale q k^T) v`, and its gradients without the score
//! matrix: each head runs by blocks of query rows (at least 32, about 32,768 scores) whose scores
//! stay in L2 and are never kept; the backward pass recomputes them from each row's log-sum-exp (as
//! FlashAttention does on a GPU). The products go to `gemm` (the crate flex itself calls), the
//! exponentials to the vectorized loops of [`crate::cpu_kernels`].
//!
//! A key-word TinyFormer's first stage attends over 48 x 20 = 960 tokens with heads of 6 to 12
//! channels: composed of Burn operations, one head's scores for a batch of 32 are 118 MB, written
//! and read back about ten times a step (product, scale, softmax, its backward, two products)
//! for a handful of multiply-adds per element, and kept until the backward pass. Heads run in
//! parallel, each in a fixed order: results do not depend on the thread count.

use rayon::prelude::*;

use crate::cpu_kernels::dispatched;
use crate::matmul_kernels::{MatrixView, StridedMatrices, product_into};

/// Each `tokens`-long row of `s` to `exp(s - max)`, with the row's log-sum-exp into `lse` and
/// the reciprocal of its sum into `inv`.
#[inline(always)]
fn exp_rows_loop(s: &mut [f32], tokens: usize, lse: &mut [f32], inv: &mut [f32]) {
    for ((row, l), r) in s.chunks_exact_mut(tokens).zip(lse).zip(inv) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for v in row.iter_mut() {
            *v = crate::cpu_kernels::exp(*v - max);
        }
        let total = crate::cpu_kernels::sum(row);
        *l = max + total.ln();
        *r = 1.0 / total;
    }
}

/// Rows of scores `s` to probabilities `p = exp(s - lse)`, rows of `dp` (`dout v^T`) to the
/// scores' gradient `p (dp - delta)`.
#[inline(always)]
fn score_grads_loop(s: &mut [f32], dp: &mut [f32], tokens: usize, lse: &[f32], delta: &[f32]) {
    let rows = s.chunks_exact_mut(tokens).zip(dp.chunks_exact_mut(tokens));
    for ((sr, dr), (&l, &dl)) in rows.zip(lse.iter().zip(delta)) {
        for (sv, dv) in sr.iter_mut().zip(dr.iter_mut()) {
            let p = crate::cpu_kernels::exp(*sv - l);
            *sv = p;
            *dv = p * (*dv - dl);
        }
    }
}

dispatched!(
    /// [`exp_rows_loop`] in the widest vector set the CPU has.
    exp_rows => exp_rows_loop(s: &mut [f32], tokens: usize, lse: &mut [f32], inv: &mut [f32])
);

dispatched!(
    /// [`score_grads_loop`] in the widest vector set the CPU has.
    score_grads => score_grads_loop(
        s: &mut [f32], dp: &mut [f32], tokens: usize, lse: &[f32], delta: &[f32]
    )
);

/// Query rows per block: its scores (two buffers of `rows x tokens` backward) stay within L2,
/// and `gemm` gets at least 32 rows.
fn block_rows(tokens: usize) -> usize {
    (32_768 / tokens).max(32).min(tokens)
}

/// One head forward by blocks of query rows and `gemm`: `q` (times the scale), `k`, `v`
/// row-major `[tokens, dim]`; writes `out` (`[tokens, dim]`) and each row's log-sum-exp of its
/// scores into `lse`.
fn forward_head(q: &[f32], k: &[f32], v: &[f32], dim: usize, out: &mut [f32], lse: &mut [f32]) {
    let t = lse.len();
    let bq = block_rows(t);
    let (mut scores, mut inv) = (vec![0f32; bq * t], vec![0f32; bq]);
    let (kt, vm) = (
        MatrixView::transposed(k, dim, t),
        MatrixView::row_major(v, t, dim),
    );
    for i0 in (0..t).step_by(bq) {
        let rows = bq.min(t - i0);
        let s = &mut scores[..rows * t];
        product_into(
            MatrixView::row_major(&q[i0 * dim..], rows, dim),
            kt,
            s,
            false,
        );
        exp_rows(s, t, &mut lse[i0..i0 + rows], &mut inv[..rows]);
        let o = &mut out[i0 * dim..(i0 + rows) * dim];
        product_into(MatrixView::row_major(s, rows, t), vm, o, false);
        for (row, &r) in o.chunks_exact_mut(dim).zip(&inv) {
            for x in row {
                *x *= r;
            }
        }
    }
}

/// One head backward by blocks of query rows and `gemm`, from [`forward_head`]'s operands, the
/// output gradient `dout` and `delta` (each row's `sum_d dout * out`): writes `dq` and adds to
/// `dk`, `dv` (all `[tokens, dim]`).
#[allow(clippy::too_many_arguments)]
fn backward_head(
    [q, k, v, dout]: [&[f32]; 4],
    delta: &[f32],
    lse: &[f32],
    scale: f32,
    dim: usize,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let t = lse.len();
    let bq = block_rows(t);
    let (mut scores, mut grads) = (vec![0f32; bq * t], vec![0f32; bq * t]);
    let (km, kt, vt) = (
        MatrixView::row_major(k, t, dim),
        MatrixView::transposed(k, dim, t),
        MatrixView::transposed(v, dim, t),
    );
    for i0 in (0..t).step_by(bq) {
        let rows = bq.min(t - i0);
        let qb = MatrixView::row_major(&q[i0 * dim..], rows, dim);
        let gb = MatrixView::row_major(&dout[i0 * dim..], rows, dim);
        let (s, ds) = (&mut scores[..rows * t], &mut grads[..rows * t]);
        product_into(qb, kt, s, false);
        product_into(gb, vt, ds, false);
        score_grads(s, ds, t, &lse[i0..i0 + rows], &delta[i0..i0 + rows]);
        let (p, ds) = (&*s, &*ds);
        let dqb = &mut dq[i0 * dim..(i0 + rows) * dim];
        product_into(MatrixView::row_major(ds, rows, t), km, dqb, false);
        for x in dqb.iter_mut() {
            *x *= scale;
        }
        // q is already scaled: dK = scale dS^T Q
        product_into(MatrixView::transposed(ds, t, rows), qb, dk, true);
        product_into(MatrixView::transposed(p, t, rows), gb, dv, true);
    }
}

/// The shape of an attention: `batch` dimensions (batch, heads), `tokens` rows of `dim`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape<'a> {
    pub batch: &'a [usize],
    pub tokens: usize,
    pub dim: usize,
}

impl<'a> AttentionShape<'a> {
    /// The shape of `[batch.., tokens, dim]` operands (rank at least 2).
    pub fn of(dims: &'a [usize]) -> Self {
        let rank = dims.len();
        Self {
            batch: &dims[..rank - 2],
            tokens: dims[rank - 2],
            dim: dims[rank - 1],
        }
    }

    fn heads(&self) -> usize {
        self.batch.iter().product()
    }

    fn fits(&self, operands: &[&StridedMatrices]) -> bool {
        self.tokens > 0
            && operands
                .iter()
                .all(|m| m.fits(self.batch, self.tokens, self.dim))
    }

    /// Head `h` of `m` as a row-major `[tokens, dim]` times `factor`.
    fn rows(&self, m: &StridedMatrices, h: usize, factor: f32) -> Vec<f32> {
        let start = m.offset(self.batch, h);
        let mut out = Vec::with_capacity(self.tokens * self.dim);
        for t in 0..self.tokens {
            let row = start + t * m.row_stride;
            out.extend((0..self.dim).map(|d| m.data[row + d * m.col_stride] * factor));
        }
        out
    }
}

/// `softmax(scale q k^T) v` of every head, row-major `[batch.., tokens, dim]`, and each row's
/// log-sum-exp of its scores (`[batch.., tokens]`) for [`backward`]; `None` when an operand's
/// strides reach outside its buffer or there are no tokens.
pub fn forward(
    shape: AttentionShape,
    scale: f32,
    q: StridedMatrices,
    k: StridedMatrices,
    v: StridedMatrices,
) -> Option<(Vec<f32>, Vec<f32>)> {
    if !shape.fits(&[&q, &k, &v]) {
        return None;
    }
    let (t, dim) = (shape.tokens, shape.dim);
    let heads = shape.heads();
    let (mut out, mut lse) = (vec![0f32; heads * t * dim], vec![0f32; heads * t]);
    if dim == 0 {
        return Some((out, lse));
    }
    out.par_chunks_mut(t * dim)
        .zip(lse.par_chunks_mut(t))
        .enumerate()
        .for_each(|(h, (out, lse))| {
            let (qh, kh, vh) = (
                shape.rows(&q, h, scale),
                shape.rows(&k, h, 1.0),
                shape.rows(&v, h, 1.0),
            );
            forward_head(&qh, &kh, &vh, dim, out, lse);
        });
    Some((out, lse))
}

/// The gradients `(dq, dk, dv)`, row-major `[batch.., tokens, dim]`, of [`forward`]'s output
/// `out` and log-sum-exp `lse` given the output gradient `dout`; `None` as [`forward`].
pub fn backward(
    shape: AttentionShape,
    scale: f32,
    [q, k, v, dout]: [StridedMatrices; 4],
    out: &[f32],
    lse: &[f32],
) -> Option<[Vec<f32>; 3]> {
    let (t, dim) = (shape.tokens, shape.dim);
    let heads = shape.heads();
    let sizes_match = out.len() == heads * t * dim && lse.len() == heads * t;
    if !shape.fits(&[&q, &k, &v, &dout]) || !sizes_match {
        return None;
    }
    let mut grads = [0; 3].map(|_| vec![0f32; heads * t * dim]);
    if dim == 0 {
        return Some(grads);
    }
    let [dq, dk, dv] = &mut grads;
    dq.par_chunks_mut(t * dim)
        .zip(dk.par_chunks_mut(t * dim))
        .zip(dv.par_chunks_mut(t * dim))
        .enumerate()
        .for_each(|(h, ((dq, dk), dv))| {
            let (qh, gh) = (shape.rows(&q, h, scale), shape.rows(&dout, h, 1.0));
            let oh = &out[h * t * dim..][..t * dim];
            let delta: Vec<f32> = gh
                .chunks_exact(dim)
                .zip(oh.chunks_exact(dim))
                .map(|(g, o)| crate::cpu_kernels::dot(g, o))
                .collect();
            let lse = &lse[h * t..][..t];
            let (kh, vh) = (shape.rows(&k, h, 1.0), shape.rows(&v, h, 1.0));
            backward_head([&qh, &kh, &vh, &gh], &delta, lse, scale, dim, dq, dk, dv);
        });
    Some(grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 attention of one head (`[t, d]` row-major operands) and its gradients for `dout`,
    /// each with the magnitude of its terms (the sum of their absolute values): f32 rounding
    /// errors scale with that, not with the result, which cancellation can make small.
    #[allow(clippy::type_complexity)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dout: &[f32],
        t: usize,
        d: usize,
        scale: f64,
    ) -> [(Vec<f64>, Vec<f64>); 4] {
        let at = |m: &[f32], i: usize, j: usize| f64::from(m[i * d + j]);
        let mut p = vec![0f64; t * t];
        for i in 0..t {
            let s: Vec<f64> = (0..t)
                .map(|j| scale * (0..d).map(|c| at(q, i, c) * at(k, j, c)).sum::<f64>())
                .collect();
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = s.iter().map(|x| (x - max).exp()).sum();
            for j in 0..t {
                p[i * t + j] = (s[j] - max).exp() / total;
            }
        }
        let zeros = || (vec![0f64; t * d], vec![0f64; t * d]);
        let [mut out, mut dq, mut dk, mut dv] = [zeros(), zeros(), zeros(), zeros()];
        for i in 0..t {
            for c in 0..d {
                for j in 0..t {
                    out.0[i * d + c] += p[i * t + j] * at(v, j, c);
                    out.1[i * d + c] += p[i * t + j] * at(v, j, c).abs();
                }
            }
        }
        for i in 0..t {
            let dp: Vec<f64> = (0..t)
                .map(|j| (0..d).map(|c| at(dout, i, c) * at(v, j, c)).sum())
                .collect();
            let delta: f64 = (0..t).map(|j| p[i * t + j] * dp[j]).sum();
            for j in 0..t {
                let pij = p[i * t + j];
                let ds = pij * (dp[j] - delta);
                let ds_mag = pij * (dp[j].abs() + delta.abs());
                for c in 0..d {
                    dq.0[i * d + c] += scale * ds * at(k, j, c);
                    dq.1[i * d + c] += scale * ds_mag * at(k, j, c).abs();
                    dk.0[j * d + c] += scale * ds * at(q, i, c);
                    dk.1[j * d + c] += scale * ds_mag * at(q, i, c).abs();
                    dv.0[j * d + c] += pij * at(dout, i, c);
                    dv.1[j * d + c] += pij * at(dout, i, c).abs();
                }
            }
        }
        [out, dq, dk, dv]
    }

    fn values(len: usize, seed: u32, spread: f32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(seed.wrapping_mul(97));
                ((h >> 8) % 2001) as f32 / 1000.0 * spread - spread
            })
            .collect()
    }

    fn contiguous<'a>(
        data: &'a [f32],
        batch_strides: &'a [usize],
        dim: usize,
    ) -> StridedMatrices<'a> {
        StridedMatrices {
            data,
            start: 0,
            batch_strides,
            row_stride: dim,
            col_stride: 1,
        }
    }

    /// `got` within `tol` of `want` relative to the magnitude of each element's terms.
    fn assert_close(got: &[f32], (want, magnitude): &(Vec<f64>, Vec<f64>), tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, ((g, w), m)) in got.iter().zip(want).zip(magnitude).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= tol * m + 1e-30,
                "{what} element {i}: {g} vs {w} (terms' magnitude {m})"
            );
        }
    }

    /// One token, one block (up to 99 tokens), several blocks with a short last one (300: 109,
    /// 109, 82 rows; 1,100: 34 of 32 and one of 12), several head widths; two heads whose
    /// scores span +-30 (exponentials from 1e-26 to 1).
    #[test]
    fn forward_and_gradients_match_the_f64_definition() {
        for (t, d) in [
            (1, 3),
            (15, 6),
            (17, 1),
            (40, 12),
            (99, 16),
            (300, 5),
            (1100, 2),
        ] {
            let heads = 2;
            let scale = (d as f64).powf(-0.5);
            let n = heads * t * d;
            let (q, k, v, g) = (
                values(n, 1, 3.0),
                values(n, 2, 3.0),
                values(n, 3, 1.0),
                values(n, 4, 1.0),
            );
            let strides = [t * d];
            let shape = AttentionShape {
                batch: &[heads],
                tokens: t,
                dim: d,
            };
            let op = |m| contiguous(m, &strides, d);
            let (out, lse) = forward(shape, scale as f32, op(&q), op(&k), op(&v)).unwrap();
            let grads = backward(
                shape,
                scale as f32,
                [op(&q), op(&k), op(&v), op(&g)],
                &out,
                &lse,
            )
            .unwrap();
            for h in 0..heads {
                let part = |m: &[f32]| m[h * t * d..][..t * d].to_vec();
                let want = reference(&part(&q), &part(&k), &part(&v), &part(&g), t, d, scale);
                let got = [&out, &grads[0], &grads[1], &grads[2]];
                for ((name, got), want) in ["out", "dq", "dk", "dv"].iter().zip(got).zip(&want) {
                    let what = format!("t {t} d {d} head {h} {name}");
                    assert_close(&part(got), want, 1e-5, &what);
                }
            }
        }
    }

    /// Heads read through the strides of `[batch, tokens, heads, dim]` viewed as
    /// `[batch, heads, tokens, dim]` (how the model hands them over) give the contiguous result.
    #[test]
    fn strided_heads_equal_contiguous_ones() {
        let (b, h, t, d) = (2, 3, 21, 5);
        let n = b * h * t * d;
        let qs: Vec<Vec<f32>> = (0..3).map(|s| values(n, 10 + s, 2.0)).collect();
        // element [b, t, h, d] of the interleaved buffer
        let interleaved: Vec<Vec<f32>> = qs
            .iter()
            .map(|m| {
                let mut out = vec![0f32; n];
                for (bi, hi, ti, di) in itertools(b, h, t, d) {
                    out[((bi * t + ti) * h + hi) * d + di] = m[((bi * h + hi) * t + ti) * d + di];
                }
                out
            })
            .collect();
        let shape = AttentionShape {
            batch: &[b, h],
            tokens: t,
            dim: d,
        };
        let plain_strides = [h * t * d, t * d];
        let view_strides = [t * h * d, d];
        let plain = |m| contiguous(m, &plain_strides, d);
        let view = |m| StridedMatrices {
            data: m,
            start: 0,
            batch_strides: &view_strides,
            row_stride: h * d,
            col_stride: 1,
        };
        let want = forward(shape, 0.4, plain(&qs[0]), plain(&qs[1]), plain(&qs[2])).unwrap();
        let got = forward(
            shape,
            0.4,
            view(&interleaved[0]),
            view(&interleaved[1]),
            view(&interleaved[2]),
        )
        .unwrap();
        assert_eq!(got, want);
    }

    fn itertools(
        b: usize,
        h: usize,
        t: usize,
        d: usize,
    ) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        (0..b).flat_map(move |bi| {
            (0..h).flat_map(move |hi| {
                (0..t).flat_map(move |ti| (0..d).map(move |di| (bi, hi, ti, di)))
            })
        })
    }

    #[test]
    fn operands_reaching_outside_their_buffers_are_refused() {
        let data = values(40, 1, 1.0);
        let shape = AttentionShape {
            batch: &[2],
            tokens: 5,
            dim: 4,
        };
        let ok = contiguous(&data, &[20], 4);
        assert!(forward(shape, 1.0, ok, ok, ok).is_some());
        let short = contiguous(&data[..39], &[20], 4);
        assert!(forward(shape, 1.0, ok, short, ok).is_none());
        let empty = AttentionShape { tokens: 0, ..shape };
        assert!(forward(empty, 1.0, ok, ok, ok).is_none());
    }
}
