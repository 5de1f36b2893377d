//! Depthwise 2-D convolution (one filter per channel, NCHW, f32) forward and backward, for the
//! MobileNet blocks of the TinyFormer search on flex: Burn runs a depthwise convolution's
//! backward pass as a grouped transposed convolution and a grouped convolution, one small group
//! at a time (about 2.6 ms for 16 x 64 planes of 14 x 14, where these loops take a fraction).
//!
//! Each plane is worked on a zero-padded copy whose rows keep the padded width, so that, at
//! stride 1, every filter tap is one long contiguous multiply-add over the whole plane (the rows
//! of these images are too short, 7 to 28 values, to fill a vector register on their own); the
//! columns past the output width are computed and dropped. Other strides take plain loops.
//! Planes run in parallel (rayon). No fused multiply-add and fixed summation orders: the same
//! results on every vector width.

use rayon::prelude::*;

use crate::cpu_kernels::{dispatched, dot};

/// Shape of a depthwise convolution: input `[batch, channels, height, width]`, one
/// `[kernel[0], kernel[1]]` filter per channel, `stride`, zero padding `pad` (`[top, bottom]`,
/// `[left, right]`), no dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseShape {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [[usize; 2]; 2],
}

impl DepthwiseShape {
    /// Padded input rows and columns.
    fn padded(&self) -> [usize; 2] {
        [
            self.height + self.pad[0][0] + self.pad[0][1],
            self.width + self.pad[1][0] + self.pad[1][1],
        ]
    }

    /// Output `[height, width]`, or `None` when the filter is larger than the padded input (or a
    /// dimension or stride is zero).
    pub fn output(&self) -> Option<[usize; 2]> {
        let [hp, wp] = self.padded();
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || kh > hp || kw > wp {
            return None;
        }
        Some([(hp - kh) / sh + 1, (wp - kw) / sw + 1])
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    fn out_plane(&self) -> usize {
        let [oh, ow] = self.output().expect("a checked shape");
        oh * ow
    }

    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }
}

/// `x` plane copied into a zeroed `[hp, wp]` grid at the padding offset.
fn pad_plane(s: &DepthwiseShape, x: &[f32], out: &mut [f32]) {
    let [_, wp] = s.padded();
    out.fill(0.0);
    for (r, row) in x.chunks_exact(s.width).enumerate() {
        let at = (r + s.pad[0][0]) * wp + s.pad[1][0];
        out[at..at + s.width].copy_from_slice(row);
    }
}

/// `acc[i] += w * src[i]` over the shorter slice.
#[inline(always)]
fn axpy(w: f32, src: &[f32], acc: &mut [f32]) {
    for (a, &v) in acc.iter_mut().zip(src) {
        *a += w * v;
    }
}

/// One output plane at stride 1 on the padded grid: `wide` (the output rows at a stride of `wp`,
/// `(oh - 1) wp + ow` values: the last row stops at the output width, the end of the padded
/// plane) collects every tap as one multiply-add over the plane, then the first `ow` columns of
/// each row are `y`.
#[inline(always)]
fn forward_plane_loop(
    xp: &[f32],
    filter: &[f32],
    bias: f32,
    kernel: &[usize],
    wp: usize,
    wide: &mut [f32],
    y: &mut [f32],
) {
    let (kh, kw) = (kernel[0], kernel[1]);
    let ow = wp - kw + 1;
    let n = wide.len();
    wide.fill(bias);
    for i in 0..kh {
        for j in 0..kw {
            let at = i * wp + j;
            axpy(filter[i * kw + j], &xp[at..at + n], wide);
        }
    }
    for (r, out) in y.chunks_exact_mut(ow).enumerate() {
        out.copy_from_slice(&wide[r * wp..r * wp + ow]);
    }
}

dispatched!(
    /// `forward_plane_loop` for the widest vector set.
    forward_plane => forward_plane_loop(
        xp: &[f32], filter: &[f32], bias: f32, kernel: &[usize], wp: usize, wide: &mut [f32],
        y: &mut [f32]
    )
);

/// One input-gradient plane at stride 1 on the padded grid: `dyw` is the output gradient at a
/// row stride of `wp` (zeros past the output width; `(oh - 1) wp + ow` values), `dxp` (`hp`
/// rows of `wp`) receives every tap scattered back as one multiply-add.
#[inline(always)]
fn input_grad_plane_loop(
    dyw: &[f32],
    filter: &[f32],
    kernel: &[usize],
    wp: usize,
    dxp: &mut [f32],
) {
    let (kh, kw) = (kernel[0], kernel[1]);
    let n = dyw.len();
    dxp.fill(0.0);
    for i in 0..kh {
        for j in 0..kw {
            let at = i * wp + j;
            axpy(filter[i * kw + j], dyw, &mut dxp[at..at + n]);
        }
    }
}

dispatched!(
    /// `input_grad_plane_loop` for the widest vector set.
    input_grad_plane => input_grad_plane_loop(
        dyw: &[f32], filter: &[f32], kernel: &[usize], wp: usize, dxp: &mut [f32]
    )
);

/// One plane's contribution to its filter's gradient at stride 1: `grad[i, j] += dyw . xp`
/// shifted by the tap (the zeros of `dyw` past the output width drop the extra columns).
#[inline(always)]
fn filter_grad_plane_loop(xp: &[f32], dyw: &[f32], kernel: &[usize], wp: usize, grad: &mut [f32]) {
    let (kh, kw) = (kernel[0], kernel[1]);
    let n = dyw.len();
    for i in 0..kh {
        for j in 0..kw {
            let at = i * wp + j;
            grad[i * kw + j] += dot(dyw, &xp[at..at + n]);
        }
    }
}

dispatched!(
    /// `filter_grad_plane_loop` for the widest vector set.
    filter_grad_plane => filter_grad_plane_loop(
        xp: &[f32], dyw: &[f32], kernel: &[usize], wp: usize, grad: &mut [f32]
    )
);

/// `dy` plane (`oh` rows of `ow`) at a row stride of `wp`, zeros past `ow` (`out`:
/// `(oh - 1) wp + ow` values).
fn widen(dy: &[f32], ow: usize, wp: usize, out: &mut [f32]) {
    out.fill(0.0);
    for (r, src) in dy.chunks_exact(ow).enumerate() {
        out[r * wp..r * wp + ow].copy_from_slice(src);
    }
}

/// Calls `visit(input row, input column, output row, output column)` for every tap `(i, j)`
/// position of a strided plane that lands inside the input.
fn strided_taps(s: &DepthwiseShape, i: usize, j: usize, mut visit: impl FnMut(usize, usize)) {
    let [oh, ow] = s.output().expect("a checked shape");
    for r in 0..oh {
        let ih = (r * s.stride[0] + i).checked_sub(s.pad[0][0]);
        let Some(ih) = ih.filter(|&h| h < s.height) else {
            continue;
        };
        for c in 0..ow {
            let iw = (c * s.stride[1] + j).checked_sub(s.pad[1][0]);
            if let Some(iw) = iw.filter(|&w| w < s.width) {
                visit(ih * s.width + iw, r * ow + c);
            }
        }
    }
}

fn unit_stride(s: &DepthwiseShape) -> bool {
    s.stride == [1, 1]
}

/// Values of a plane at a row stride of `wp` whose rows are `ow` long: `(oh - 1) wp + ow`.
fn wide_len(s: &DepthwiseShape) -> usize {
    let [oh, ow] = s.output().expect("a checked shape");
    (oh - 1) * s.padded()[1] + ow
}

/// `y = depthwise(x, filters) + bias` (`filters` `[channels, kh, kw]`, `bias` one per channel);
/// `y` is `[batch, channels, oh, ow]` of [`DepthwiseShape::output`].
pub fn forward(s: &DepthwiseShape, x: &[f32], filters: &[f32], bias: &[f32], y: &mut [f32]) {
    let [hp, wp] = s.padded();
    let (plane, out_plane, taps, n) = (s.plane(), s.out_plane(), s.taps(), wide_len(s));
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(plane))
        .enumerate()
        .for_each_init(
            || (vec![0f32; hp * wp], vec![0f32; n]),
            |(xp, wide), (p, (yp, xs))| {
                let c = p % s.channels;
                let filter = &filters[c * taps..(c + 1) * taps];
                if unit_stride(s) {
                    pad_plane(s, xs, xp);
                    forward_plane(xp, filter, bias[c], &s.kernel, wp, wide, yp);
                    return;
                }
                yp.fill(bias[c]);
                for i in 0..s.kernel[0] {
                    for j in 0..s.kernel[1] {
                        let w = filter[i * s.kernel[1] + j];
                        strided_taps(s, i, j, |at, out| yp[out] += w * xs[at]);
                    }
                }
            },
        );
}

/// The input gradient `dx` (`[batch, channels, height, width]`) from the output gradient `dy`.
pub fn input_grad(s: &DepthwiseShape, dy: &[f32], filters: &[f32], dx: &mut [f32]) {
    let [hp, wp] = s.padded();
    let [_, ow] = s.output().expect("a checked shape");
    let (plane, out_plane, taps, n) = (s.plane(), s.out_plane(), s.taps(), wide_len(s));
    dx.par_chunks_mut(plane)
        .zip(dy.par_chunks(out_plane))
        .enumerate()
        .for_each_init(
            || (vec![0f32; n], vec![0f32; hp * wp]),
            |(dyw, dxp), (p, (dxs, dys))| {
                let c = p % s.channels;
                let filter = &filters[c * taps..(c + 1) * taps];
                if unit_stride(s) {
                    widen(dys, ow, wp, dyw);
                    input_grad_plane(dyw, filter, &s.kernel, wp, dxp);
                    for (r, row) in dxs.chunks_exact_mut(s.width).enumerate() {
                        let at = (r + s.pad[0][0]) * wp + s.pad[1][0];
                        row.copy_from_slice(&dxp[at..at + s.width]);
                    }
                    return;
                }
                dxs.fill(0.0);
                for i in 0..s.kernel[0] {
                    for j in 0..s.kernel[1] {
                        let w = filter[i * s.kernel[1] + j];
                        strided_taps(s, i, j, |at, out| dxs[at] += w * dys[out]);
                    }
                }
            },
        );
}

/// The filter and bias gradients (`[channels, kh, kw]`, `[channels]`) from the input `x` and the
/// output gradient `dy`, summed over the batch in order.
pub fn filter_grad(
    s: &DepthwiseShape,
    x: &[f32],
    dy: &[f32],
    dfilters: &mut [f32],
    dbias: &mut [f32],
) {
    let [hp, wp] = s.padded();
    let [_, ow] = s.output().expect("a checked shape");
    let (plane, out_plane, taps, n) = (s.plane(), s.out_plane(), s.taps(), wide_len(s));
    dfilters
        .par_chunks_mut(taps)
        .zip(dbias.par_iter_mut())
        .enumerate()
        .for_each_init(
            || (vec![0f32; hp * wp], vec![0f32; n]),
            |(xp, dyw), (c, (grad, db))| {
                grad.fill(0.0);
                *db = 0.0;
                for b in 0..s.batch {
                    let p = b * s.channels + c;
                    let xs = &x[p * plane..(p + 1) * plane];
                    let dys = &dy[p * out_plane..(p + 1) * out_plane];
                    *db += dys.iter().sum::<f32>();
                    if unit_stride(s) {
                        pad_plane(s, xs, xp);
                        widen(dys, ow, wp, dyw);
                        filter_grad_plane(xp, dyw, &s.kernel, wp, grad);
                        continue;
                    }
                    for i in 0..s.kernel[0] {
                        for j in 0..s.kernel[1] {
                            let mut acc = 0f32;
                            strided_taps(s, i, j, |at, out| acc += dys[out] * xs[at]);
                            grad[i * s.kernel[1] + j] += acc;
                        }
                    }
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straight from the definition, in f64.
    fn reference(s: &DepthwiseShape, x: &[f32], f: &[f32], b: &[f32]) -> Vec<f64> {
        let [oh, ow] = s.output().unwrap();
        let [kh, kw] = s.kernel;
        let mut y = vec![0f64; s.batch * s.channels * oh * ow];
        for n in 0..s.batch {
            for c in 0..s.channels {
                for r in 0..oh {
                    for q in 0..ow {
                        let mut acc = b[c] as f64;
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (r * s.stride[0] + i) as isize - s.pad[0][0] as isize;
                                let iw = (q * s.stride[1] + j) as isize - s.pad[1][0] as isize;
                                if ih < 0
                                    || iw < 0
                                    || ih as usize >= s.height
                                    || iw as usize >= s.width
                                {
                                    continue;
                                }
                                let xi = ((n * s.channels + c) * s.height + ih as usize) * s.width
                                    + iw as usize;
                                acc += f[c * kh * kw + i * kw + j] as f64 * x[xi] as f64;
                            }
                        }
                        y[((n * s.channels + c) * oh + r) * ow + q] = acc;
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn shapes() -> Vec<DepthwiseShape> {
        let s = |batch, channels, h, w, k: [usize; 2], stride, pad| DepthwiseShape {
            batch,
            channels,
            height: h,
            width: w,
            kernel: k,
            stride,
            pad,
        };
        vec![
            s(2, 3, 7, 7, [3, 3], [1, 1], [[1, 1], [1, 1]]),
            s(1, 2, 14, 9, [3, 3], [1, 1], [[1, 1], [1, 1]]),
            s(2, 2, 6, 5, [5, 3], [1, 1], [[2, 1], [0, 2]]),
            s(1, 1, 5, 5, [1, 1], [1, 1], [[0, 0], [0, 0]]),
            s(2, 2, 8, 7, [3, 3], [2, 2], [[1, 1], [1, 1]]),
            s(1, 3, 9, 6, [3, 2], [2, 1], [[0, 1], [1, 0]]),
            s(1, 1, 3, 3, [3, 3], [1, 1], [[0, 0], [0, 0]]),
        ]
    }

    /// The forward pass equals the definition; the gradients equal the definition's through the
    /// identity `sum(dy * y(x, f, b))`: `dx`, `df`, `db` are its partial derivatives, checked by
    /// the chain rule on the reference (the reference is linear in each).
    #[test]
    fn forward_and_gradients_match_the_definition() {
        for (k, s) in shapes().into_iter().enumerate() {
            let [oh, ow] = s.output().unwrap();
            let taps = s.kernel[0] * s.kernel[1];
            let x = values(s.batch * s.channels * s.height * s.width, 11 + k as u64);
            let f = values(s.channels * taps, 23 + k as u64);
            let b = values(s.channels, 31 + k as u64);
            let dy = values(s.batch * s.channels * oh * ow, 41 + k as u64);
            let mut y = vec![0f32; dy.len()];
            forward(&s, &x, &f, &b, &mut y);
            let want = reference(&s, &x, &f, &b);
            for (a, w) in y.iter().zip(&want) {
                assert!((*a as f64 - w).abs() < 1e-5, "{s:?}: {a} vs {w}");
            }
            let loss = |x: &[f32], f: &[f32], b: &[f32]| -> f64 {
                reference(&s, x, f, b)
                    .iter()
                    .zip(&dy)
                    .map(|(y, g)| y * *g as f64)
                    .sum()
            };
            // the loss is linear in each argument: a unit step gives the exact derivative
            let partial = |which: usize, i: usize| -> f64 {
                let (mut x2, mut f2, mut b2) = (x.clone(), f.clone(), b.clone());
                match which {
                    0 => x2[i] += 1.0,
                    1 => f2[i] += 1.0,
                    _ => b2[i] += 1.0,
                }
                loss(&x2, &f2, &b2) - loss(&x, &f, &b)
            };
            let mut dx = vec![0f32; x.len()];
            input_grad(&s, &dy, &f, &mut dx);
            let (mut df, mut db) = (vec![0f32; f.len()], vec![0f32; b.len()]);
            filter_grad(&s, &x, &dy, &mut df, &mut db);
            for (which, got) in [(0, &dx), (1, &df), (2, &db)] {
                for (i, g) in got.iter().enumerate() {
                    let w = partial(which, i);
                    assert!(
                        (*g as f64 - w).abs() < 1e-4,
                        "{s:?} {which}[{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn output_shape_and_refusals() {
        let mut s = shapes()[0];
        assert_eq!(s.output(), Some([7, 7]));
        s.stride = [2, 2];
        assert_eq!(s.output(), Some([4, 4]));
        s.kernel = [10, 3];
        assert_eq!(s.output(), None);
        s.kernel = [3, 3];
        s.stride = [0, 1];
        assert_eq!(s.output(), None);
    }
}
