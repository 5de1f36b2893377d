//! The fake-quantization points of a KWT under quantization-aware training, one
//! [`FakeQuant`] wherever the integer graph of `quant::ptq::kwt_graph` rounds: every Linear's
//! weight (per tensor) and output, and every activation that starts a new scale group (graph
//! input, position-embedding sum, attention scores and context, residual sums, LayerNorms,
//! GELU, heads). Softmax outputs are the integer kernel's uint8 codes at `2^-8`.
//!
//! Points are named like the tensors of the float graph (`block0.attn.q`, `head.fc`, ...);
//! weight points add `.weight`. Weights are rounded either at their point's learned
//! power-of-two scale (TQT, one per tensor) or, with [`KwtQuant::with_per_channel_weights`],
//! at PTQ's per-output-channel `max|w| / 127` (the weight point then goes unused).
//! [`KwtQuant::points`] lists them so that lowering can read the learned thresholds by name.
//!
//! Beyond rounding, the forward computes what the integer kernels compute where they differ from
//! the float ops (measured on KWT-1 by `quant/examples/kernel_fidelity.rs`): GELU is exact, as
//! the integer graph's default GELU table (`quant::GeluTable`), or I-BERT's i-GELU where the
//! graph is lowered with it (`--gelu ibert`, [`gelu_q`]: 24 % of its codes differ from the
//! exact GELU's); the position
//! embedding and the LayerNorm gains are rounded at `max|v| / 127` as the graph stores them,
//! and each Linear's bias as int32 at its accumulator's scale `S_x S_w` ([`linear`]);
//! LayerNorm normalises and applies its int8 gain and int32 offset as the graph's integer kernel
//! does, I-BERT's or TinyFormer's Scaled-LayerNorm with its INT16 saturations ([`NormKernel`],
//! [`int_layer_norm`], [`int_layer_norm_affine`]); activations round half up as the graph's
//! requantization does; the softmax is the integer kernel's, i-exp and
//! division ([`crate::int_softmax`]; the float softmax's gradient passes straight through); a
//! distillation model's two-head average is rounded at its point as the graph's `Add` rounds
//! it (the point keeps its initial threshold: training optimizes the heads' own logits). Every
//! constant is rounded with the f32 operations the lowering uses (`quant::rounding`), so the
//! graph stores the codes this forward trained with. [`QuantFormat`] says which weight format
//! and LayerNorm kernel the graph has.
//!
//! On the 1-block test models the forward's logits are then the graph's bit for bit
//! (`quant::qat` tests). With power-of-two weights and Scaled-LayerNorm (`with_format`) every
//! op's scaling is exact in f32 and a QAT-tuned KWT-1 was measured bit for bit too (every code
//! of 192 test clips, `quant/examples/qat_graph_trace.rs`). With per-channel weights or
//! I-BERT's LayerNorm, KWT-1 ends about 33-39 dB apart, and the trace shows why: run on the
//! graph's own inputs, every op gives the kernel's codes but for a few in a million Linear and
//! LayerNorm outputs, one code off, where the f32 sum and scaling fall on the other side of a
//! rounding boundary than the int32 accumulator and its 31-bit dyadic multiplier. Twelve
//! blocks then spread each such code: attention mixes it into every token, and by the last
//! block tens of percent of the codes differ by a step or a few. That is the integer
//! network's sensitivity to a one-code change, not a modelling error.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor};

use crate::error::TrainingError;
use crate::fake_quant::{
    FakeQuant, abs_max_codes, fake_quant_fixed_unsigned, per_channel_with_step, round_half_away,
    straight_through,
};
use crate::fused_ops::{self, layer_norm};
use crate::int_gelu::int_gelu;
pub use crate::int_softmax::SOFTMAX_OUT_EXP;
use crate::int_softmax::int_softmax;
use crate::kwt::KwtConfig;

/// The integer LayerNorm kernel a graph runs (`quant::IntLayerNorm::eval_row_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormKernel {
    /// I-BERT's i-LayerNorm: the normalised value at `G = 14` fractional bits, clamped to
    /// `+-2^(G+8)`, and an int32 affine result.
    #[default]
    IBert,
    /// TinyFormer's Scaled-LayerNorm: the normalised value at `G = 7` as INT16, and the affine
    /// result saturated to INT16 too.
    Scaled,
}

impl NormKernel {
    /// `Scaled` when `scaled` holds.
    pub fn scaled_if(scaled: bool) -> Self {
        if scaled { Self::Scaled } else { Self::IBert }
    }

    /// Fractional bits `G` of the normalised value.
    pub fn frac(self) -> i32 {
        match self {
            Self::IBert => NORM_FRAC,
            Self::Scaled => SCALED_NORM_FRAC,
        }
    }

    /// The range of the normalised value in units of `2^-G`.
    fn normalized_range(self) -> (f32, f32) {
        match self {
            Self::IBert => {
                let lim = 2f32.powi(NORM_FRAC + 8);
                (-lim, lim)
            }
            Self::Scaled => (i16::MIN as f32, i16::MAX as f32),
        }
    }
}

/// A LayerNorm; under QAT (`input`: the point that rounded `x`) as the integer graph's
/// `kernel` computes it: the integer normalisation ([`int_layer_norm`]), the gain rounded to
/// int8 at `max|gamma| / 127` as `quant::IntLayerNorm` stores it, the affine part in the
/// kernel's integer units ([`int_layer_norm_affine`]).
pub fn layer_norm_q<const D: usize>(
    norm: &LayerNorm,
    x: Tensor<D>,
    input: Option<&FakeQuant>,
    kernel: NormKernel,
) -> Tensor<D> {
    let Some(input) = input else {
        return layer_norm(norm, x);
    };
    let normalized = int_layer_norm(x, input.scale_exp());
    int_layer_norm_affine(
        normalized,
        norm.gamma.val(),
        norm.beta.as_ref().map(|b| b.val()),
        kernel,
    )
}

/// Fractional bits of the integer LayerNorm's mean (`quant::ibert::NORM_MEAN_FRAC`).
pub const NORM_MEAN_FRAC: i32 = 4;
/// Fractional bits of I-BERT's normalised value, `G` (`quant::ibert::IBERT_NORM_FRAC`).
pub const NORM_FRAC: i32 = 14;
/// Fractional bits of Scaled-LayerNorm's normalised value (`quant::ibert::SCALED_NORM_FRAC`).
pub const SCALED_NORM_FRAC: i32 = 7;

/// The affine part of the integer LayerNorm, from rows `n` normalised as [`int_layer_norm`]
/// gives them, as `quant::IntLayerNorm::eval_row_ibert` (`kernel` I-BERT) or
/// `eval_row_scaled` (Scaled) computes it, in the kernel's integer units: `n` rounded to
/// `2^-G` (the kernel's division) and clamped to the kernel's range, the gain's int8 codes at
/// `S_g = max|gamma| / 127`, the offset's int32 codes at `S_g 2^-G` (`|.| <= 2^30`), their
/// `n gamma + beta` (saturated to INT16 by Scaled-LayerNorm), scaled back by `S_g 2^-G` once.
/// Integers in f32 are exact to `2^24`, so this is the kernel's sum wherever `|n gamma|`
/// stays there; the float product `n (S_g gamma)` would round a second time. Straight-through
/// gradients through each rounding (those of `n gamma + beta`); none through a saturated sum.
pub fn int_layer_norm_affine<const D: usize>(
    n: Tensor<D>,
    gamma: Tensor<1>,
    beta: Option<Tensor<1>>,
    kernel: NormKernel,
) -> Tensor<D> {
    let frac = 2f32.powi(kernel.frac());
    let (lo, hi) = kernel.normalized_range();
    let n = straight_through(n.mul_scalar(frac), |v| round_half_away(v).clamp(lo, hi));
    let (gamma, s_g) = abs_max_codes(gamma);
    let step = s_g.div_scalar(frac);
    let mut y = n * gamma.unsqueeze();
    if let Some(beta) = beta {
        let limit = 2f32.powi(30);
        let beta = straight_through(beta / step.clone(), |b| {
            round_half_away(b).clamp(-limit, limit)
        });
        y = y + beta.unsqueeze();
    }
    if kernel == NormKernel::Scaled {
        y = y.clamp(i16::MIN as f32, i16::MAX as f32);
    }
    y * step.unsqueeze()
}

/// `(x - mean) / sqrt(var + eps)` over the last axis as `quant::ibert::normalize_row` computes
/// it from int8 codes at scale `2^exp` (`x` must lie on that grid): the mean rounded half away
/// from zero to `2^(exp - 4)`, the variance of the centred values in those units floored (after
/// dropping `r` bits per square for rows over 256), the standard deviation floored to an
/// integer of those units, each as the kernel's integers give it (the variance by
/// [`floor_mean`]; rows of up to 2048 values). Straight-through gradients (those of the float
/// LayerNorm) through each rounding. The kernel's final division rounds at `2^-G`:
/// [`int_layer_norm_affine`] models that.
pub fn int_layer_norm<const D: usize>(x: Tensor<D>, exp: i32) -> Tensor<D> {
    let n = x.dims()[D - 1];
    let unit = 2f32.powi(exp - NORM_MEAN_FRAC);
    let lg = n.next_power_of_two().trailing_zeros();
    let r = lg.saturating_sub(8).next_multiple_of(2) as i32;
    let eps_q = (fused_ops::LAYER_NORM_EPSILON as f32 / (unit * unit) / 2f32.powi(r)).round();
    let u = x / unit;
    // |u| <= 2^11 and n <= 2^11: the sum is exact and the division correctly rounded
    let mean = u.clone().sum_dim(D - 1).div_scalar(n as f32);
    let mu = straight_through(mean, round_half_away);
    let c = u - mu;
    let sq = c.clone().powi_scalar(2) / 2f32.powi(r);
    let sq = straight_through(sq, fused_ops::floor);
    let var = sq.clone().mean_dim(D - 1);
    let var = var.clone() + (floor_mean(sq.detach()) - var).detach();
    // f32's correctly rounded root of an integer below 2^24 floors to its integer root
    let std = straight_through(var.add_scalar(eps_q).sqrt(), |s| s.floor().clamp_min(1.0));
    // the squares lost `r` bits, so `std` counts units of `2^(r/2)`
    c / std.mul_scalar(2f32.powi(r / 2))
}

/// `floor(sum / n)` over the last axis of non-negative integers below `2^24` in rows of
/// `n <= 2^11`, exactly: a plain f32 sum of such values rounds once it passes `2^24`, which a
/// row of large squares does, and the floored variance then differs from the kernel's u32 one.
/// The values' high and low 12 bits are summed apart (each sum below `2^23`) and divided in
/// two steps whose operands stay below `2^24`, so every division is of exact integers, and
/// correctly rounded division of integers below `2^24` floors to the integer quotient.
pub fn floor_mean<const D: usize>(v: Tensor<D>) -> Tensor<D> {
    let n = v.dims()[D - 1] as f32;
    let split = 4096.0;
    let hi = fused_ops::floor(v.clone().div_scalar(split));
    let lo = v - hi.clone().mul_scalar(split);
    let (hi, lo) = (hi.sum_dim(D - 1), lo.sum_dim(D - 1));
    let q = hi.clone().div_scalar(n).floor();
    let rem = hi - q.clone().mul_scalar(n);
    let rest = (rem.mul_scalar(split) + lo).div_scalar(n).floor();
    q.mul_scalar(split) + rest
}

/// A Linear's weight and output points.
#[derive(Module, Debug)]
pub struct LinearQuant {
    pub weight: FakeQuant,
    pub output: FakeQuant,
    /// Round the weight per output channel at `max|w| / 127` instead of at `weight`'s
    /// learned power-of-two scale.
    pub per_channel: bool,
}

/// Attention: q, k and v are separate Linears in the integer graph, each with its own scales.
#[derive(Module, Debug)]
pub struct AttentionQuant {
    pub q: LinearQuant,
    pub k: LinearQuant,
    pub v: LinearQuant,
    pub scores: FakeQuant,
    pub context: FakeQuant,
    pub out: LinearQuant,
}

#[derive(Module, Debug)]
pub struct BlockQuant {
    pub attn: AttentionQuant,
    pub add1: FakeQuant,
    pub norm1: FakeQuant,
    pub fc1: LinearQuant,
    pub gelu: FakeQuant,
    pub fc2: LinearQuant,
    pub add2: FakeQuant,
    pub norm2: FakeQuant,
    /// The LayerNorms run TinyFormer's Scaled-LayerNorm, not I-BERT's ([`NormKernel`]).
    pub scaled_layer_norm: bool,
    /// The GELU is I-BERT's i-GELU ([`gelu_q`]), not the exact table.
    pub ibert_gelu: bool,
}

impl BlockQuant {
    /// The kernel of this block's LayerNorms.
    pub fn norm_kernel(&self) -> NormKernel {
        NormKernel::scaled_if(self.scaled_layer_norm)
    }
}

#[derive(Module, Debug)]
pub struct HeadQuant {
    pub norm: FakeQuant,
    pub fc: LinearQuant,
    /// The LayerNorm runs TinyFormer's Scaled-LayerNorm, not I-BERT's ([`NormKernel`]).
    pub scaled_layer_norm: bool,
}

impl HeadQuant {
    /// The kernel of the head's LayerNorm.
    pub fn norm_kernel(&self) -> NormKernel {
        NormKernel::scaled_if(self.scaled_layer_norm)
    }
}

/// All points of one KWT.
#[derive(Module, Debug)]
pub struct KwtQuant {
    /// The standardized input.
    pub input: FakeQuant,
    /// The embedding; its output scale also covers the class and distillation tokens.
    pub embed: LinearQuant,
    pub pos_embedding: FakeQuant,
    pub blocks: Vec<BlockQuant>,
    pub head: HeadQuant,
    pub dist_head: Option<HeadQuant>,
    /// The two-head average of a distillation model: the inference logits
    /// ([`crate::kwt::KwtOutput::logits`]) are rounded here. Training optimizes the heads' own
    /// logits, so this point keeps its initial threshold.
    pub logits: Option<FakeQuant>,
}

/// What the integer graph does beyond rounding at the points, which the forward then models:
/// how it stores weights and which LayerNorm and GELU kernels it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct QuantFormat {
    /// Weights per output channel at `max|w| / 127` (else per tensor at their points' learned
    /// power-of-two scales).
    pub per_channel_weights: bool,
    /// TinyFormer's Scaled-LayerNorm instead of I-BERT's i-LayerNorm ([`NormKernel`]).
    pub scaled_layer_norm: bool,
    /// I-BERT's i-GELU instead of the exact GELU table ([`gelu_q`]; absent where the format
    /// was written before it was modelled, which is the exact table's).
    #[serde(default)]
    pub ibert_gelu: bool,
}

/// Whether a point rounds a weight or an activation (their integer ranges differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    Weight,
    Activation,
}

/// Builds points by name from initial log2 thresholds.
struct Init<'a> {
    log2_t: &'a BTreeMap<String, f32>,
    lr_gain: f32,
    device: &'a Device,
}

impl Init<'_> {
    fn point(&self, name: &str, kind: PointKind) -> Result<FakeQuant, TrainingError> {
        let l = *self.log2_t.get(name).ok_or_else(|| {
            TrainingError::InvalidModel(format!(
                "no initial threshold for quantization point `{name}`"
            ))
        })?;
        if !l.is_finite() {
            return Err(TrainingError::InvalidModel(format!(
                "initial log2 threshold of `{name}` is {l}"
            )));
        }
        Ok(match kind {
            PointKind::Weight => FakeQuant::weight(l, self.lr_gain, self.device),
            PointKind::Activation => FakeQuant::activation(l, self.lr_gain, self.device),
        })
    }

    fn act(&self, name: &str) -> Result<FakeQuant, TrainingError> {
        self.point(name, PointKind::Activation)
    }

    fn linear(&self, name: &str) -> Result<LinearQuant, TrainingError> {
        Ok(LinearQuant {
            weight: self.point(&format!("{name}.weight"), PointKind::Weight)?,
            output: self.act(name)?,
            per_channel: false,
        })
    }

    fn head(&self, p: &str) -> Result<HeadQuant, TrainingError> {
        Ok(HeadQuant {
            norm: self.act(&format!("{p}.norm"))?,
            fc: self.linear(&format!("{p}.fc"))?,
            scaled_layer_norm: false,
        })
    }
}

impl KwtQuant {
    /// Points for a model of `cfg`, each starting at `log2_t[name]` (every point must be
    /// there); thresholds learn `lr_gain` times faster than weights (see [`FakeQuant`]).
    pub fn new(
        cfg: &KwtConfig,
        log2_t: &BTreeMap<String, f32>,
        lr_gain: f32,
        device: &Device,
    ) -> Result<Self, TrainingError> {
        if !(lr_gain.is_finite() && lr_gain > 0.0) {
            return Err(TrainingError::InvalidConfig(format!(
                "the threshold learning-rate gain must be positive, got {lr_gain}"
            )));
        }
        let init = Init {
            log2_t,
            lr_gain,
            device,
        };
        let blocks = (0..cfg.depth)
            .map(|l| {
                let p = format!("block{l}");
                Ok(BlockQuant {
                    attn: AttentionQuant {
                        q: init.linear(&format!("{p}.attn.q"))?,
                        k: init.linear(&format!("{p}.attn.k"))?,
                        v: init.linear(&format!("{p}.attn.v"))?,
                        scores: init.act(&format!("{p}.attn.scores"))?,
                        context: init.act(&format!("{p}.attn.context"))?,
                        out: init.linear(&format!("{p}.attn.out"))?,
                    },
                    add1: init.act(&format!("{p}.add1"))?,
                    norm1: init.act(&format!("{p}.norm1"))?,
                    fc1: init.linear(&format!("{p}.mlp.fc1"))?,
                    gelu: init.act(&format!("{p}.mlp.gelu"))?,
                    fc2: init.linear(&format!("{p}.mlp.fc2"))?,
                    add2: init.act(&format!("{p}.add2"))?,
                    norm2: init.act(&format!("{p}.norm2"))?,
                    scaled_layer_norm: false,
                    ibert_gelu: false,
                })
            })
            .collect::<Result<Vec<_>, TrainingError>>()?;
        Ok(Self {
            input: init.act("input")?,
            embed: init.linear("embed")?,
            pos_embedding: init.act("pos_embedding")?,
            blocks,
            head: init.head("head")?,
            dist_head: cfg
                .distill_token
                .then(|| init.head("dist_head"))
                .transpose()?,
            logits: cfg.distill_token.then(|| init.act("logits")).transpose()?,
        })
    }

    /// Rounds every Linear weight per output channel at `max|w| / 127` (`on`) or at its
    /// point's learned power-of-two scale.
    pub fn with_per_channel_weights(mut self, on: bool) -> Self {
        let heads = std::iter::once(&mut self.head).chain(self.dist_head.as_mut());
        let mut linears: Vec<&mut LinearQuant> = vec![&mut self.embed];
        for b in &mut self.blocks {
            linears.extend([
                &mut b.attn.q,
                &mut b.attn.k,
                &mut b.attn.v,
                &mut b.attn.out,
                &mut b.fc1,
                &mut b.fc2,
            ]);
        }
        linears.extend(heads.map(|h| &mut h.fc));
        for l in linears {
            l.per_channel = on;
        }
        self
    }

    /// Whether weights are rounded per output channel.
    pub fn per_channel_weights(&self) -> bool {
        self.embed.per_channel
    }

    /// Computes every LayerNorm as TinyFormer's Scaled-LayerNorm (`on`) or as I-BERT's
    /// i-LayerNorm, as the graph will be lowered.
    pub fn with_scaled_layer_norm(mut self, on: bool) -> Self {
        for b in &mut self.blocks {
            b.scaled_layer_norm = on;
        }
        for h in std::iter::once(&mut self.head).chain(self.dist_head.as_mut()) {
            h.scaled_layer_norm = on;
        }
        self
    }

    /// Whether the LayerNorms are Scaled-LayerNorms.
    pub fn scaled_layer_norm(&self) -> bool {
        self.head.scaled_layer_norm
    }

    /// Computes every GELU as I-BERT's i-GELU (`on`) or as the exact GELU table, as the
    /// graph will be lowered.
    pub fn with_ibert_gelu(mut self, on: bool) -> Self {
        for b in &mut self.blocks {
            b.ibert_gelu = on;
        }
        self
    }

    /// Whether the GELUs are i-GELUs (false for a model without blocks).
    pub fn ibert_gelu(&self) -> bool {
        self.blocks.first().is_some_and(|b| b.ibert_gelu)
    }

    /// These points modelling a graph of `format`.
    pub fn with_format(self, format: QuantFormat) -> Self {
        self.with_per_channel_weights(format.per_channel_weights)
            .with_scaled_layer_norm(format.scaled_layer_norm)
            .with_ibert_gelu(format.ibert_gelu)
    }

    /// The graph format these points model.
    pub fn format(&self) -> QuantFormat {
        QuantFormat {
            per_channel_weights: self.per_channel_weights(),
            scaled_layer_norm: self.scaled_layer_norm(),
            ibert_gelu: self.ibert_gelu(),
        }
    }

    /// Every point with its name and kind, in a fixed order.
    pub fn points(&self) -> Vec<(String, PointKind, &FakeQuant)> {
        type Points<'a> = Vec<(String, PointKind, &'a FakeQuant)>;
        fn act<'a>(name: String, q: &'a FakeQuant, out: &mut Points<'a>) {
            out.push((name, PointKind::Activation, q));
        }
        fn linear<'a>(name: String, l: &'a LinearQuant, out: &mut Points<'a>) {
            out.push((format!("{name}.weight"), PointKind::Weight, &l.weight));
            out.push((name, PointKind::Activation, &l.output));
        }
        let mut out = Vec::new();
        act("input".into(), &self.input, &mut out);
        linear("embed".into(), &self.embed, &mut out);
        act("pos_embedding".into(), &self.pos_embedding, &mut out);
        for (l, b) in self.blocks.iter().enumerate() {
            let p = format!("block{l}");
            linear(format!("{p}.attn.q"), &b.attn.q, &mut out);
            linear(format!("{p}.attn.k"), &b.attn.k, &mut out);
            linear(format!("{p}.attn.v"), &b.attn.v, &mut out);
            act(format!("{p}.attn.scores"), &b.attn.scores, &mut out);
            act(format!("{p}.attn.context"), &b.attn.context, &mut out);
            linear(format!("{p}.attn.out"), &b.attn.out, &mut out);
            act(format!("{p}.add1"), &b.add1, &mut out);
            act(format!("{p}.norm1"), &b.norm1, &mut out);
            linear(format!("{p}.mlp.fc1"), &b.fc1, &mut out);
            act(format!("{p}.mlp.gelu"), &b.gelu, &mut out);
            linear(format!("{p}.mlp.fc2"), &b.fc2, &mut out);
            act(format!("{p}.add2"), &b.add2, &mut out);
            act(format!("{p}.norm2"), &b.norm2, &mut out);
        }
        for (p, h) in [
            ("head", Some(&self.head)),
            ("dist_head", self.dist_head.as_ref()),
        ] {
            if let Some(h) = h {
                act(format!("{p}.norm"), &h.norm, &mut out);
                linear(format!("{p}.fc"), &h.fc, &mut out);
            }
        }
        if let Some(q) = &self.logits {
            act("logits".into(), q, &mut out);
        }
        out
    }

    /// `(name, log2 threshold)` of every point.
    pub fn thresholds(&self) -> BTreeMap<String, f32> {
        self.points()
            .into_iter()
            .map(|(n, _, q)| (n, q.log2_threshold()))
            .collect()
    }
}

/// `x` through `q` when quantizing, unchanged otherwise.
pub fn maybe<const D: usize>(q: Option<&FakeQuant>, x: Tensor<D>) -> Tensor<D> {
    match q {
        Some(q) => q.forward(x),
        None => x,
    }
}

/// Softmax over the last axis; under QAT (`scores_exp`: the exponent of the scale `scores`
/// were rounded at) the integer kernel's probabilities ([`int_softmax`]) with the float
/// softmax's gradient passed straight through. Where the kernel has no constants for the row
/// length and scale (lowering fails there too) the float softmax rounded at its output scale.
pub fn softmax_q<const D: usize>(scores: Tensor<D>, scores_exp: Option<i32>) -> Tensor<D> {
    let Some(exp) = scores_exp else {
        // no clone: the float path's softmax may then reuse the scores' buffer
        return fused_ops::softmax(scores, D - 1);
    };
    let p = fused_ops::softmax(scores.clone(), D - 1);
    match int_softmax(scores, exp) {
        // `p - p` is exactly 0: the value is the kernel's to the bit
        Some(kernel) => kernel + (p.clone() - p.detach()),
        None => fake_quant_fixed_unsigned(p, SOFTMAX_OUT_EXP, 8),
    }
}

/// GELU; under QAT with `ibert_exp` (the exponent of the scale `x` was rounded at) the
/// integer graph's i-GELU ([`int_gelu`]) with the exact GELU's gradient passed straight
/// through. Where the kernel has no constants for the scale (lowering fails there too) the
/// exact GELU.
pub fn gelu_q<const D: usize>(x: Tensor<D>, ibert_exp: Option<i32>) -> Tensor<D> {
    let Some(exp) = ibert_exp else {
        return fused_ops::gelu(x);
    };
    let g = fused_ops::gelu(x.clone());
    match int_gelu(x, exp) {
        Some(kernel) => kernel + (g.clone() - g.detach()),
        None => g,
    }
}

/// `l.forward(x)`, or with fake-quantized weight and output. `input`, the point that rounded
/// `x`, sets the bias's rounding: the integer graph stores it as int32 at the accumulator's
/// scale `S_x S_w` (without `input` the bias stays float).
pub fn linear<const D: usize>(
    l: &Linear,
    x: Tensor<D>,
    q: Option<&LinearQuant>,
    input: Option<&FakeQuant>,
) -> Tensor<D> {
    linear_parts(
        x,
        l.weight.val(),
        l.bias.as_ref().map(|b| b.val()),
        q,
        input,
    )
}

/// [`linear`] of a weight `[in, out]` and bias given as tensors (a part of a Linear: the
/// attention's q, k and v are thirds of one).
pub fn linear_parts<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    q: Option<&LinearQuant>,
    input: Option<&FakeQuant>,
) -> Tensor<D> {
    let Some(q) = q else {
        return fused_ops::linear(x, weight, bias);
    };
    let out = weight.dims()[1];
    // the weight step of each output channel
    let (w, w_step) = if q.per_channel {
        let (w, step) = per_channel_with_step(weight);
        (w, step.reshape([out]))
    } else {
        let step = Tensor::<1>::full([out], 2f32.powi(q.weight.scale_exp()), &weight.device());
        (q.weight.forward(weight), step)
    };
    let bias = match (bias, input) {
        (Some(b), Some(input)) => {
            let step = w_step.mul_scalar(2f32.powi(input.scale_exp()));
            Some(straight_through(b, |b| {
                round_half_away(b / step.clone()) * step
            }))
        }
        (b, _) => b,
    };
    q.output.forward(fused_ops::linear(x, w, bias))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::NormPlacement;

    /// The points of a one-block KWT, as the integer graph names its tensors.
    fn names(distill: bool) -> Vec<String> {
        let mut n: Vec<String> = ["input", "embed.weight", "embed", "pos_embedding"]
            .map(String::from)
            .to_vec();
        for l in ["attn.q", "attn.k", "attn.v"] {
            n.push(format!("block0.{l}.weight"));
            n.push(format!("block0.{l}"));
        }
        n.extend(["block0.attn.scores", "block0.attn.context"].map(String::from));
        n.extend(["block0.attn.out.weight", "block0.attn.out"].map(String::from));
        n.extend(["block0.add1", "block0.norm1"].map(String::from));
        n.extend(["block0.mlp.fc1.weight", "block0.mlp.fc1", "block0.mlp.gelu"].map(String::from));
        n.extend(["block0.mlp.fc2.weight", "block0.mlp.fc2"].map(String::from));
        n.extend(["block0.add2", "block0.norm2"].map(String::from));
        let heads: &[&str] = if distill {
            &["head", "dist_head"]
        } else {
            &["head"]
        };
        for h in heads {
            n.extend([
                format!("{h}.norm"),
                format!("{h}.fc.weight"),
                format!("{h}.fc"),
            ]);
        }
        if distill {
            n.push("logits".into());
        }
        n
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    #[test]
    fn floor_mean_is_the_integer_quotient_where_an_f32_sum_rounds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut naive_wrong = 0;
        for n in [7usize, 64, 192, 2048] {
            let rows = 64;
            let v: Vec<u32> = (0..rows * n)
                .map(|_| rng.random_range(0..1u32 << 24))
                .collect();
            let t = Tensor::<1>::from_data(
                burn::tensor::TensorData::new(v.iter().map(|&x| x as f32).collect(), [rows * n]),
                &Device::flex(),
            )
            .reshape([rows, n]);
            let exact: Vec<f32> = v
                .chunks_exact(n)
                .map(|r| (r.iter().map(|&x| x as u64).sum::<u64>() / n as u64) as f32)
                .collect();
            assert_eq!(values(floor_mean(t.clone())), exact, "rows of {n}");
            let naive = values(t.mean_dim(1).floor());
            naive_wrong += naive.iter().zip(&exact).filter(|(a, b)| a != b).count();
        }
        assert!(
            naive_wrong > 0,
            "the f32 mean never rounded: the test shows nothing"
        );
    }

    /// With per-channel weights the weight points go unused: every Linear (q, k and v too) is
    /// rounded at its columns' `max|w| / 127`, whatever the points' thresholds say; with
    /// power-of-two weights the thresholds matter.
    #[test]
    fn per_channel_weights_ignore_every_weight_threshold() {
        let device = Device::flex();
        let mut cfg = KwtConfig::preset("kwt-micro", 4).unwrap();
        cfg.frames = 6;
        cfg.features = 5;
        let mut model = cfg.init(1, &device).unwrap();
        let x = crate::test_random::seeded::<3>(
            [2, 6, 5],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut logits = |weight_threshold: f32, per_channel: bool| -> Vec<f32> {
            let init: BTreeMap<String, f32> = names(false)
                .into_iter()
                .map(|n| {
                    let t = if n.ends_with(".weight") {
                        weight_threshold
                    } else {
                        3.5
                    };
                    (n, t)
                })
                .collect();
            let q = KwtQuant::new(&cfg, &init, 4.0, &device).unwrap();
            model.qat = Some(q.with_per_channel_weights(per_channel));
            model
                .forward(x.clone())
                .logits()
                .into_data()
                .iter()
                .collect()
        };
        assert_eq!(logits(0.5, true), logits(-3.0, true));
        assert_ne!(logits(0.5, false), logits(-3.0, false));
    }

    #[test]
    fn points_are_named_like_the_integer_graph_and_quantize_the_forward_pass() {
        let device = Device::flex();
        for distill in [false, true] {
            let mut cfg = KwtConfig::preset("kwt-micro", 4).unwrap();
            cfg.frames = 6;
            cfg.features = 5;
            cfg.distill_token = distill;
            cfg.norm = if distill {
                NormPlacement::PreNorm
            } else {
                NormPlacement::PostNorm
            };
            let want = names(distill);
            let init: BTreeMap<String, f32> = want.iter().map(|n| (n.clone(), 3.5)).collect();
            let q = KwtQuant::new(&cfg, &init, 4.0, &device).unwrap();
            let got: Vec<String> = q.points().into_iter().map(|(n, _, _)| n).collect();
            let mut sorted = want.clone();
            sorted.sort();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            assert_eq!(got_sorted, sorted);
            assert_eq!(q.thresholds(), init);

            let mut model = cfg.init(1, &device).unwrap();
            let x = crate::test_random::seeded::<3>(
                [2, 6, 5],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let float: Vec<f32> = model
                .forward(x.clone())
                .logits()
                .into_data()
                .iter()
                .collect();
            model.qat = Some(q);
            let fake: Vec<f32> = model
                .forward(x.clone())
                .logits()
                .into_data()
                .iter()
                .collect();
            let pow2 = model.qat.take().unwrap();
            assert!(!pow2.per_channel_weights());
            let per_channel = pow2.with_per_channel_weights(true);
            assert!(per_channel.per_channel_weights());
            model.qat = Some(per_channel);
            let fake_pc: Vec<f32> = model.forward(x).logits().into_data().iter().collect();
            assert_ne!(fake, fake_pc, "per-channel weights round differently");
            model.qat = Some(model.qat.take().unwrap().with_per_channel_weights(false));
            assert!(fake.iter().all(|v| v.is_finite()));
            assert_ne!(float, fake, "the quantizers must act");
            // Head outputs, and the two heads' average, are rounded to their point's grid
            // (2^(4 - 7) = 1/8).
            assert!(
                fake.iter()
                    .all(|v| (v * 8.0 - (v * 8.0).round()).abs() < 1e-4),
                "{fake:?}"
            );
        }
        let err = KwtQuant::new(
            &KwtConfig::preset("kwt-micro", 4).unwrap(),
            &BTreeMap::new(),
            1.0,
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no initial threshold"), "{err}");
    }
}
