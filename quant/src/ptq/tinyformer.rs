//! Post-training quantization of a single-path TinyFormer (hybrid CNN-transformer) into the
//! integer [`Graph`], with the KWT machinery (calibration, lowering and report through
//! `super::calibrate_and_lower`).
//!
//! Layout: the Burn model is NCHW, the integer graph HWC. [`FloatGraph::from_tinyformer`]
//! re-lays every weight once (conv `[cout, cin, k, k]` -> `[cout, k, k, cin]`, depthwise
//! `[c, 1, k, k]` -> `[k, k, c]`, the AvgPool head's `[c, h, w]` flatten -> `[h, w, c]`), so the
//! graph input is an HWC image and calibration images (CHW, as Burn takes them) are transposed
//! once. Tokens of a Transformer module are the pixels in row-major order, which is exactly
//! an HWC map reshaped to `[h * w, c]`: no transpose is needed on either side of the encoders.
//!
//! The model takes images already normalized per channel; the float graph's standardization
//! is the identity, and [`set_channel_standardization`] records the data set's per-channel
//! mean and std in the integer graph for a front end that receives raw pixels.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use training::tinyformer::modules::{Encoder, Head, TransformerModule};
use training::tinyformer::{TinyFormer, TinyFormerArch};

use super::error::{PtqError, Result};
use super::float_graph::{
    FOp, FloatGraph, INPUT, Walker, layer_norm_params, linear_params, values,
};
use super::{PtqOptions, PtqReport};
use crate::graph::{Graph, Standardization, Window};

/// Largest `|float - Burn|` logit difference, relative to `max(1, max|logit|)`, accepted by
/// [`quantize_tinyformer`].
pub const TINYFORMER_FLOAT_TOLERANCE: f32 = 1e-3;

/// Images checked against the Burn model before calibration.
const CHECKED_IMAGES: usize = 8;

/// CHW image -> HWC (the integer graph's layout).
pub fn chw_to_hwc(image: &[f32], [c, h, w]: [usize; 3]) -> Result<Vec<f32>> {
    if image.len() != c * h * w {
        return Err(PtqError::Calibration(format!(
            "image has {} values, expected {c}x{h}x{w} = {}",
            image.len(),
            c * h * w
        )));
    }
    let mut out = vec![0f32; image.len()];
    for ch in 0..c {
        for p in 0..h * w {
            out[p * c + ch] = image[ch * h * w + p];
        }
    }
    Ok(out)
}

/// The integer graph's single input as `[c, h, w]` (it is stored `[h, w, c]`).
pub fn image_input_chw(graph: &Graph) -> Result<[usize; 3]> {
    let shape = graph
        .inputs
        .first()
        .and_then(|n| graph.tensor(n))
        .map(|t| t.shape.clone())
        .ok_or_else(|| PtqError::Model("the graph has no declared input".into()))?;
    match shape.as_slice() {
        &[h, w, c] => Ok([c, h, w]),
        s => Err(PtqError::Model(format!(
            "the graph input {s:?} is not an HWC image"
        ))),
    }
}

/// Int8 input of one CHW image: transposed to HWC, then the graph's own input quantization
/// (its standardization, if any, then rounding at the input scale).
pub fn quantize_image(graph: &Graph, chw: &[f32]) -> Result<Vec<i8>> {
    let hwc = chw_to_hwc(chw, image_input_chw(graph)?)?;
    Ok(graph.quantize_input(&hwc)?)
}

/// Records the data set's per-channel normalization in the graph, so that its front end
/// takes raw (un-normalized) images: `quantize_input` then computes `(x - mean[c]) / std[c]`
/// on the HWC input's last axis (the channel) before rounding. The graph's scales are
/// unchanged: they were calibrated on the normalized images.
pub fn set_channel_standardization(graph: &mut Graph, mean: &[f32], std: &[f32]) -> Result<()> {
    let [c, _, _] = image_input_chw(graph)?;
    if mean.len() != c
        || std.len() != c
        || !mean.iter().all(|m| m.is_finite())
        || !std.iter().all(|s| s.is_finite() && *s > 0.0)
    {
        return Err(PtqError::Options(format!(
            "channel standardization needs {c} finite means and {c} finite positive stds, \
             got {} and {}",
            mean.len(),
            std.len()
        )));
    }
    graph.input_standardization = Some(Standardization {
        mean: mean.to_vec(),
        std: std.to_vec(),
    });
    Ok(())
}

/// `[h, w]` padding of a Burn conv or pool; asymmetric and `Same` padding have no integer form.
fn padding(name: &str, p: &PaddingConfig2d) -> Result<[usize; 2]> {
    match *p {
        PaddingConfig2d::Valid => Ok([0, 0]),
        PaddingConfig2d::Explicit(t, l, b, r) if t == b && l == r => Ok([t, l]),
        ref other => Err(PtqError::Model(format!(
            "`{name}`: padding {other:?} is not symmetric explicit padding"
        ))),
    }
}

/// A Burn conv as a float op: dense (`groups == 1`, weight re-laid OHWI) or depthwise
/// (`groups == cin == cout`, weight re-laid `[kh, kw, c]`).
fn conv_op(conv: &Conv2d, name: &str, cin: usize, cout: usize, k: usize) -> Result<FOp> {
    let w = conv.weight.val();
    let dims = w.dims();
    let depthwise = conv.groups == cin && cin == cout && conv.groups > 1;
    let want = [cout, if depthwise { 1 } else { cin }, k, k];
    if dims != want || !(conv.groups == 1 || depthwise) {
        return Err(PtqError::Model(format!(
            "`{name}`: weight {dims:?} with {} groups, expected {want:?} (dense or depthwise)",
            conv.groups
        )));
    }
    if conv.dilation != [1, 1] || conv.kernel_size != [k, k] {
        return Err(PtqError::Model(format!(
            "`{name}`: kernel {:?} dilation {:?}, expected [{k}, {k}] and [1, 1]",
            conv.kernel_size, conv.dilation
        )));
    }
    let window = Window {
        k: [k, k],
        stride: conv.stride,
        pad: padding(name, &conv.padding)?,
    };
    let w = values(w);
    let bias = match &conv.bias {
        Some(b) => values(b.val()),
        None => vec![0.0; cout],
    };
    if bias.len() != cout {
        return Err(PtqError::Model(format!(
            "`{name}`: bias has {} values, expected {cout}",
            bias.len()
        )));
    }
    if depthwise {
        let mut weight = vec![0f32; k * k * cout];
        for ch in 0..cout {
            for t in 0..k * k {
                weight[t * cout + ch] = w[ch * k * k + t];
            }
        }
        return Ok(FOp::DepthwiseConv2d {
            channels: cout,
            window,
            weight,
            bias,
        });
    }
    let mut weight = vec![0f32; cout * k * k * cin];
    for o in 0..cout {
        for i in 0..cin {
            for t in 0..k * k {
                weight[(o * k * k + t) * cin + i] = w[(o * cin + i) * k * k + t];
            }
        }
    }
    Ok(FOp::Conv2d {
        in_c: cin,
        out_c: cout,
        window,
        weight,
        bias,
    })
}

impl Walker {
    fn conv(
        &mut self,
        name: &str,
        conv: &Conv2d,
        x: usize,
        cout: usize,
        k: usize,
    ) -> Result<usize> {
        let cin = *self.shapes[x].last().unwrap_or(&0);
        let op = conv_op(conv, name, cin, cout, k)?;
        self.push(name, op, &[x])
    }

    fn relu(&mut self, name: &str, x: usize) -> Result<usize> {
        self.push(name, FOp::Relu, &[x])
    }

    fn sum(&mut self, name: &str, a: usize, b: usize) -> Result<usize> {
        let op = FOp::Add {
            alpha_a: 1.0,
            alpha_b: 1.0,
        };
        self.push(name, op, &[a, b])
    }

    fn reshape(&mut self, name: &str, x: usize, shape: Vec<usize>) -> Result<usize> {
        self.push(name, FOp::Reshape { shape }, &[x])
    }

    /// Pre-norm encoder over `[T, c]` tokens with a ReLU MLP.
    fn encoder(&mut self, q: &str, e: &Encoder, x: usize, c: usize, mlp: usize) -> Result<usize> {
        if e.attn.heads * e.attn.dim_head != c {
            return Err(PtqError::Model(format!(
                "`{q}.attn`: {} heads x {} != {c} channels",
                e.attn.heads, e.attn.dim_head
            )));
        }
        let norm1 = layer_norm_params(&e.norm1, &format!("{q}.norm1"), c)?;
        let n1 = self.push(&format!("{q}.norm1"), norm1, &[x])?;
        let a = self.attention_dim(&format!("{q}.attn"), &e.attn, n1, c)?;
        let x1 = self.sum(&format!("{q}.add1"), x, a)?;
        let norm2 = layer_norm_params(&e.norm2, &format!("{q}.norm2"), c)?;
        let n2 = self.push(&format!("{q}.norm2"), norm2, &[x1])?;
        let fc1 = linear_params(&e.fc1, &format!("{q}.fc1"), c, mlp)?;
        let h = self.push(&format!("{q}.fc1"), fc1, &[n2])?;
        let h = self.relu(&format!("{q}.relu"), h)?;
        let fc2 = linear_params(&e.fc2, &format!("{q}.fc2"), mlp, c)?;
        let m = self.push(&format!("{q}.fc2"), fc2, &[h])?;
        self.sum(&format!("{q}.add2"), x1, m)
    }

    fn transformer(
        &mut self,
        p: &str,
        t: &TransformerModule,
        x: usize,
        c: usize,
        mlp_ratio: usize,
    ) -> Result<usize> {
        let [h, w] = [self.shapes[x][0], self.shapes[x][1]];
        let y = self.conv(&format!("{p}.local3"), &t.local3, x, c, 3)?;
        let y = self.relu(&format!("{p}.local3.relu"), y)?;
        let y = self.conv(&format!("{p}.local1"), &t.local1, y, c, 1)?;
        let mut tokens = self.reshape(&format!("{p}.tokens"), y, vec![h * w, c])?;
        for (e, enc) in t.encoders.iter().enumerate() {
            tokens = self.encoder(&format!("{p}.enc{e}"), enc, tokens, c, mlp_ratio * c)?;
        }
        let y = self.reshape(&format!("{p}.fold"), tokens, vec![h, w, c])?;
        let y = self.conv(&format!("{p}.fuse1"), &t.fuse1, y, c, 1)?;
        let y = self.relu(&format!("{p}.fuse1.relu"), y)?;
        let y = self.conv(&format!("{p}.fuse3"), &t.fuse3, y, c, 3)?;
        self.sum(&format!("{p}.add"), x, y)
    }

    fn tinyformer_head(&mut self, head: &Head, arch: &TinyFormerArch, x: usize) -> Result<usize> {
        let [h, w, c] = [self.shapes[x][0], self.shapes[x][1], self.shapes[x][2]];
        let pooled = match &head.seqpool {
            Some(score) => {
                // softmax over the tokens of Linear(c -> 1), as a [1, T] row, then the
                // weighted sum of the tokens as a [1, T] x [T, c] product.
                let tokens = self.reshape("head.tokens", x, vec![h * w, c])?;
                let lin = linear_params(score, "head.seqpool", c, 1)?;
                let s = self.push("head.seqpool", lin, &[tokens])?;
                let s = self.reshape("head.seqpool.row", s, vec![1, h * w])?;
                let p = self.push("head.seqpool.softmax", FOp::Softmax, &[s])?;
                let mm = FOp::MatMul {
                    transpose_b: false,
                    alpha: 1.0,
                };
                let y = self.push("head.pool", mm, &[p, tokens])?;
                self.reshape("head.pooled", y, vec![c])?
            }
            None => {
                let win = Window {
                    k: [2, 2],
                    stride: [2, 2],
                    pad: [0, 0],
                };
                let y = self.push("head.avgpool", FOp::AvgPool2d(win), &[x])?;
                let n: usize = self.shapes[y].iter().product();
                self.reshape("head.pooled", y, vec![n])?
            }
        };
        let d_in = self.shapes[pooled][0];
        // Burn's head flattens the pooled map in [h2, w2, c] order, as the graph does.
        let last = linear_params(&head.last, "head.last", d_in, arch.last_linear)?;
        let y = self.push("head.last", last, &[pooled])?;
        let y = self.relu("head.last.relu", y)?;
        let cls = linear_params(
            &head.classifier,
            "head.classifier",
            arch.last_linear,
            arch.classes,
        )?;
        self.push("head.classifier", cls, &[y])
    }
}

impl FloatGraph {
    /// Walks a single-path TinyFormer into the float graph (HWC input `[h, w, c]`, identity
    /// standardization: the model takes normalized images). Node names follow
    /// [`TinyFormerArch::layers`]: `s{i}.down[.relu|.pool]`,
    /// `s{i}.mb{j}.{expand[.relu], dw[.relu], project, add}`,
    /// `s{i}.tr{j}.{local3[.relu], local1, tokens, enc{e}.{norm1, attn.*, add1, norm2, fc1, relu,
    /// fc2, add2}, fold, fuse1[.relu], fuse3, add}`, then `head.{tokens, seqpool[.row|.softmax],
    /// pool}` or `head.avgpool`, and `head.{pooled, last[.relu], classifier}` (the logits).
    pub fn from_tinyformer(model: &TinyFormer, arch: &TinyFormerArch) -> Result<Self> {
        arch.validate()?;
        let mismatch = |m: String| Err(PtqError::Model(m));
        if model.stages.len() != arch.stages.len() {
            return mismatch(format!(
                "{} stages, the architecture has {}",
                model.stages.len(),
                arch.stages.len()
            ));
        }
        if model.head.pooling() != arch.pooling {
            return mismatch(format!(
                "head pooling {:?}, the architecture says {:?}",
                model.head.pooling(),
                arch.pooling
            ));
        }
        let [c0, h, w] = arch.input;
        let mut wk = Walker {
            nodes: Vec::new(),
            shapes: vec![vec![h, w, c0]],
        };
        let mut x = 0;
        for (i, (stage, sa)) in model.stages.iter().zip(&arch.stages).enumerate() {
            let (p, c) = (format!("s{i}"), sa.channels);
            if stage.down.kind() != sa.downsample
                || stage.mobilenets.len() != sa.mobilenets.len()
                || stage.transformers.len() != sa.transformers.len()
            {
                return mismatch(format!(
                    "stage {i}: the model's modules differ from the architecture"
                ));
            }
            x = wk.conv(&format!("{p}.down"), &stage.down.conv, x, c, 3)?;
            x = wk.relu(&format!("{p}.down.relu"), x)?;
            if let Some(pool) = &stage.down.pool {
                if pool.dilation != [1, 1] || pool.ceil_mode {
                    return mismatch(format!("`{p}.down.pool`: dilation or ceil mode"));
                }
                let win = Window {
                    k: pool.kernel_size,
                    stride: pool.stride,
                    pad: padding(&format!("{p}.down.pool"), &pool.padding)?,
                };
                x = wk.push(&format!("{p}.down.pool"), FOp::MaxPool2d(win), &[x])?;
            }
            for (j, (m, ma)) in stage.mobilenets.iter().zip(&sa.mobilenets).enumerate() {
                let q = format!("{p}.mb{j}");
                let e = c * ma.expansion;
                let y = wk.conv(&format!("{q}.expand"), &m.expand, x, e, 1)?;
                let y = wk.relu(&format!("{q}.expand.relu"), y)?;
                let y = wk.conv(&format!("{q}.dw"), &m.dw, y, e, 3)?;
                let y = wk.relu(&format!("{q}.dw.relu"), y)?;
                let y = wk.conv(&format!("{q}.project"), &m.project, y, c, 1)?;
                x = wk.sum(&format!("{q}.add"), x, y)?;
            }
            for (j, (t, ta)) in stage.transformers.iter().zip(&sa.transformers).enumerate() {
                if t.encoders.len() != ta.encoders {
                    return mismatch(format!(
                        "`{p}.tr{j}`: {} encoders, the architecture has {}",
                        t.encoders.len(),
                        ta.encoders
                    ));
                }
                x = wk.transformer(&format!("{p}.tr{j}"), t, x, c, ta.mlp_ratio)?;
            }
        }
        let out = wk.tinyformer_head(&model.head, arch, x)?;
        Ok(FloatGraph {
            input: INPUT.to_string(),
            input_shape: vec![h, w, c0],
            nodes: wk.nodes,
            output: out,
            standardization: Standardization {
                mean: vec![0.0; c0],
                std: vec![1.0; c0],
            },
        })
    }
}

/// Largest `|float graph - Burn|` logit difference over `images` (CHW, normalized).
pub fn tinyformer_float_error(
    model: &TinyFormer,
    arch: &TinyFormerArch,
    fg: &FloatGraph,
    images: &[Vec<f32>],
) -> Result<f32> {
    if images.is_empty() {
        return Ok(0.0);
    }
    let [c, h, w] = arch.input;
    if let Some(i) = images.iter().position(|im| im.len() != c * h * w) {
        return Err(PtqError::Calibration(format!(
            "image {i} has {} values, expected {c}x{h}x{w}",
            images[i].len()
        )));
    }
    let device: Device = model.head.classifier.weight.val().device();
    let flat: Vec<f32> = images.iter().flatten().copied().collect();
    let x = Tensor::<4>::from_data(TensorData::new(flat, [images.len(), c, h, w]), &device);
    let burn = values(model.forward(x));
    let classes = burn.len() / images.len();
    let mut worst = 0f32;
    for (i, im) in images.iter().enumerate() {
        let ours = fg.logits(&chw_to_hwc(im, arch.input)?)?;
        let theirs = &burn[i * classes..(i + 1) * classes];
        if ours.len() != theirs.len() {
            return Err(PtqError::FloatMismatch(format!(
                "{} logits vs Burn's {}",
                ours.len(),
                theirs.len()
            )));
        }
        for (a, b) in ours.iter().zip(theirs) {
            let d = (a - b).abs();
            // NaN compares false: report it rather than hide it.
            if d.is_nan() {
                return Err(PtqError::FloatMismatch(format!("image {i}: NaN logit")));
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}

/// Quantizes a TinyFormer with `calibration_images` (each CHW, normalized as the model was
/// trained) into the integer graph (HWC input, identity standardization: see
/// [`set_channel_standardization`]); returns it with its per-layer report.
pub fn quantize_tinyformer(
    model: &TinyFormer,
    arch: &TinyFormerArch,
    calibration_images: &[Vec<f32>],
    opts: &PtqOptions,
) -> Result<(Graph, PtqReport)> {
    opts.validate()?;
    let fg = FloatGraph::from_tinyformer(model, arch)?;
    let take = calibration_images.len().min(opts.calibration_samples);
    if take == 0 {
        return Err(PtqError::Calibration("no calibration images".into()));
    }
    let images = &calibration_images[..take];
    // Also checks every image's length.
    let samples: Vec<Vec<f32>> = images
        .iter()
        .enumerate()
        .map(|(i, im)| {
            chw_to_hwc(im, arch.input).map_err(|e| PtqError::Calibration(format!("image {i}: {e}")))
        })
        .collect::<Result<_>>()?;
    let checked = &images[..images.len().min(CHECKED_IMAGES)];
    let err = tinyformer_float_error(model, arch, &fg, checked)?;
    let logit_scale = checked
        .iter()
        .map(|im| fg.logits(&chw_to_hwc(im, arch.input)?))
        .collect::<Result<Vec<_>>>()?
        .iter()
        .flatten()
        .fold(1f32, |m, v| m.max(v.abs()));
    if err > TINYFORMER_FLOAT_TOLERANCE * logit_scale {
        return Err(PtqError::FloatMismatch(format!(
            "max |logit difference| {err:e} over {} images",
            checked.len()
        )));
    }
    super::calibrate_and_lower(&fg, &samples, opts)
}

#[cfg(test)]
#[path = "tinyformer_tests.rs"]
mod tests;
