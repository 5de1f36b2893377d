//! The image ops of the float graph (TinyFormer's convolutions, pooling and ReLU): shape
//! checks, the float reference and the lowering to the integer ops of the same name. Kept out
//! of [`super::float_graph`] and [`super::kwt_graph`] so those stay KWT-sized.
//!
//! | float | integer | scales |
//! | --- | --- | --- |
//! | `Conv2d` | `Conv2d` (HWC, OHWI) | weight `max|w|/127` per tensor or per output channel |
//! | `DepthwiseConv2d` | `DepthwiseConv2d` (HWC, `[kh, kw, c]`) | per tensor or per channel |
//! | `MaxPool2d`, `AvgPool2d`, `Relu` | same | scale kept (one observer group with the producer) |

use crate::builder::GraphBuilder;
use crate::graph::{Op, Window};

use super::PtqOptions;
use super::error::{PtqError, Result, at};
use super::float_graph::{FOp, dot};
use super::kwt_graph::{quantize_bias, quantize_weight};
use crate::rounding::{abs_max_step, to_int8};

/// Output `[oh, ow]` of `window` over an `h x w` map (the integer graph's formula).
pub(super) fn window_out(name: &str, win: &Window, h: usize, w: usize) -> Result<[usize; 2]> {
    let mut out = [0; 2];
    for (i, n) in [h, w].into_iter().enumerate() {
        if win.k[i] == 0 || win.stride[i] == 0 || n + 2 * win.pad[i] < win.k[i] {
            return Err(PtqError::Model(format!(
                "`{name}`: window {win:?} does not fit a {h}x{w} map"
            )));
        }
        out[i] = (n + 2 * win.pad[i] - win.k[i]) / win.stride[i] + 1;
    }
    Ok(out)
}

/// Output shape of an image op on `xs`; checks its parameters so that [`eval`] cannot index
/// out of range.
pub(super) fn out_shape(name: &str, op: &FOp, xs: &[usize]) -> Result<Vec<usize>> {
    let bad = |m: String| Err(PtqError::Model(format!("`{name}`: {m}")));
    let hwc = |c: Option<usize>| -> Result<[usize; 3]> {
        if xs.len() != 3 || c.is_some_and(|c| xs[2] != c) {
            return Err(PtqError::Model(format!(
                "`{name}`: input {xs:?} is not [H, W, {}]",
                c.map_or("C".to_string(), |c| c.to_string())
            )));
        }
        Ok([xs[0], xs[1], xs[2]])
    };
    match op {
        FOp::Conv2d {
            in_c,
            out_c,
            window,
            weight,
            bias,
        } => {
            let [h, w, _] = hwc(Some(*in_c))?;
            if weight.len() != out_c * window.k[0] * window.k[1] * in_c || bias.len() != *out_c {
                return bad(format!(
                    "{} weights and {} biases for {out_c}x{:?}x{in_c}",
                    weight.len(),
                    bias.len(),
                    window.k
                ));
            }
            let [oh, ow] = window_out(name, window, h, w)?;
            Ok(vec![oh, ow, *out_c])
        }
        FOp::DepthwiseConv2d {
            channels,
            window,
            weight,
            bias,
        } => {
            let [h, w, _] = hwc(Some(*channels))?;
            if weight.len() != window.k[0] * window.k[1] * channels || bias.len() != *channels {
                return bad(format!(
                    "{} weights and {} biases for {:?}x{channels}",
                    weight.len(),
                    bias.len(),
                    window.k
                ));
            }
            let [oh, ow] = window_out(name, window, h, w)?;
            Ok(vec![oh, ow, *channels])
        }
        FOp::MaxPool2d(win) | FOp::AvgPool2d(win) => {
            let [h, w, c] = hwc(None)?;
            if win.pad[0] >= win.k[0] || win.pad[1] >= win.k[1] {
                return bad(format!(
                    "padding {:?} must be below kernel {:?}",
                    win.pad, win.k
                ));
            }
            let [oh, ow] = window_out(name, win, h, w)?;
            Ok(vec![oh, ow, c])
        }
        FOp::Relu => Ok(xs.to_vec()),
        other => bad(format!("{other:?} is not an image op")),
    }
}

/// In-range input positions `(iy, ix)` of output `(oy, ox)`'s window, with kernel offsets.
fn window_taps(
    win: &Window,
    [h, w]: [usize; 2],
    oy: usize,
    ox: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
    (0..win.k[0]).flat_map(move |ky| {
        (0..win.k[1]).filter_map(move |kx| {
            let iy = (oy * win.stride[0] + ky).checked_sub(win.pad[0])?;
            let ix = (ox * win.stride[1] + kx).checked_sub(win.pad[1])?;
            (iy < h && ix < w).then_some((ky, kx, iy, ix))
        })
    })
}

/// Float reference of an image op on an HWC input (shapes checked by [`out_shape`]).
pub(super) fn eval(op: &FOp, x: &[f32], xs: &[usize]) -> Vec<f32> {
    if matches!(op, FOp::Relu) {
        return x.iter().map(|&v| v.max(0.0)).collect();
    }
    let at = |i: usize| xs.get(i).copied().unwrap_or(1);
    let (hw, c) = ([at(0), at(1)], at(2));
    let dims = |win: &Window| -> [usize; 2] {
        let o = |i: usize| (hw[i] + 2 * win.pad[i] - win.k[i]) / win.stride[i] + 1;
        [o(0), o(1)]
    };
    match op {
        FOp::Conv2d {
            in_c,
            out_c,
            window,
            weight,
            bias,
        } => {
            let [oh, ow] = dims(window);
            let [kh, kw] = window.k;
            let mut y = Vec::with_capacity(oh * ow * out_c);
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..*out_c {
                        let mut acc = bias[o] as f64;
                        for (ky, kx, iy, ix) in window_taps(window, hw, oy, ox) {
                            let xp = &x[(iy * hw[1] + ix) * in_c..][..*in_c];
                            let wp = &weight[((o * kh + ky) * kw + kx) * in_c..][..*in_c];
                            acc += dot(xp, wp);
                        }
                        y.push(acc as f32);
                    }
                }
            }
            y
        }
        FOp::DepthwiseConv2d {
            channels,
            window,
            weight,
            bias,
        } => {
            let [oh, ow] = dims(window);
            let kw = window.k[1];
            let mut y = Vec::with_capacity(oh * ow * channels);
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..*channels {
                        let mut acc = bias[ch] as f64;
                        for (ky, kx, iy, ix) in window_taps(window, hw, oy, ox) {
                            acc += x[(iy * hw[1] + ix) * channels + ch] as f64
                                * weight[(ky * kw + kx) * channels + ch] as f64;
                        }
                        y.push(acc as f32);
                    }
                }
            }
            y
        }
        FOp::MaxPool2d(win) | FOp::AvgPool2d(win) => {
            let avg = matches!(op, FOp::AvgPool2d(_));
            let [oh, ow] = dims(win);
            let mut y = Vec::with_capacity(oh * ow * c);
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let (mut sum, mut max, mut n) = (0f64, f32::NEG_INFINITY, 0usize);
                        for (_, _, iy, ix) in window_taps(win, hw, oy, ox) {
                            let v = x[(iy * hw[1] + ix) * c + ch];
                            sum += v as f64;
                            max = max.max(v);
                            n += 1;
                        }
                        y.push(if avg {
                            (sum / n.max(1) as f64) as f32
                        } else {
                            max
                        });
                    }
                }
            }
            y
        }
        // ReLU returned above; `out_shape` rejects every other op before a node is pushed.
        _ => x.to_vec(),
    }
}

/// Symmetric int8 quantization of a depthwise `[kh, kw, c]` weight: the channel is the last
/// axis, so per-channel scales run across rows (unlike [`quantize_weight`]).
pub(super) fn quantize_depthwise(w: &[f32], c: usize, per_channel: bool) -> (Vec<i8>, Vec<f64>) {
    let scales: Vec<f32> = if per_channel {
        (0..c)
            .map(|ch| abs_max_step(w.iter().skip(ch).step_by(c).copied()))
            .collect()
    } else {
        vec![abs_max_step(w.iter().copied())]
    };
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| to_int8(v, scales[if per_channel { i % c } else { 0 }]))
        .collect();
    (q, scales.into_iter().map(f64::from).collect())
}

/// Emits the integer form of an image op; `so` is the output scale (ignored by the
/// scale-keeping ops).
pub(super) fn lower(
    b: &mut GraphBuilder,
    name: &str,
    x: &str,
    op: &FOp,
    so: f64,
    opts: &PtqOptions,
) -> Result<()> {
    let sx = b.scale(x).map_err(at(name))?;
    match op {
        FOp::Conv2d {
            in_c,
            window,
            weight,
            bias,
            ..
        } => {
            let terms = window.k[0] * window.k[1] * in_c;
            let (wq, ws) = quantize_weight(weight, terms, opts.per_channel);
            let bq = quantize_bias(bias, sx, &ws, terms);
            b.conv2d(name, x, *window, wq, bq, &ws, so)
                .map_err(at(name))?;
        }
        FOp::DepthwiseConv2d {
            channels,
            window,
            weight,
            bias,
        } => {
            let (wq, ws) = quantize_depthwise(weight, *channels, opts.per_channel);
            let bq = quantize_bias(bias, sx, &ws, window.k[0] * window.k[1]);
            b.depthwise_conv2d(name, x, *window, wq, bq, &ws, so)
                .map_err(at(name))?;
        }
        FOp::MaxPool2d(w) => {
            b.same_scale(name, x, Op::MaxPool2d(*w)).map_err(at(name))?;
        }
        FOp::AvgPool2d(w) => {
            b.same_scale(name, x, Op::AvgPool2d(*w)).map_err(at(name))?;
        }
        FOp::Relu => {
            b.same_scale(name, x, Op::Relu).map_err(at(name))?;
        }
        other => {
            return Err(PtqError::Model(format!(
                "`{name}`: {other:?} is not an image op"
            )));
        }
    }
    Ok(())
}
