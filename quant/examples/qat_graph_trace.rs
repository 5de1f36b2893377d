//! Where QAT's fake-quantized forward and the integer graph lowered from it part, op by op.
//! First the stored constants: every Linear weight code and LayerNorm gain and offset as QAT's
//! forward rounds them against the graph's. Then every op of the forward (as `training::qat`
//! computes it, in Burn, f32) is evaluated on the interpreter's own dequantized inputs and its
//! rounded output compared code by code with the tensor the integer kernel wrote: a difference
//! is the op's own, not one carried from an earlier layer. Last the forward runs on its own
//! outputs, showing how such differences spread through the blocks to the logits.
//!
//! `cargo run --release -p quant --example qat_graph_trace -- CHECKPOINT DATA [N] [--per-tensor]
//! [--scaled-layer-norm] [--ibert-gelu]`
//! (CHECKPOINT: a float checkpoint, whose QAT starting point is traced (thresholds calibrated on
//! the first 512 training clips, as `nas quantize --mode qat` starts), or a QAT run's
//! `best.bpk`, loaded with the thresholds, gain and format its run folder's `qat.ron` names;
//! DATA: its Speech Commands folder, 12-label task unless a `data.ron` beside CHECKPOINT says
//! otherwise; N: test clips, default 16; `--per-tensor`, `--scaled-layer-norm`,
//! `--ibert-gelu`: the format of a float checkpoint's starting point, as `nas quantize`'s
//! `--per-tensor`, `--scaled-layer-norm` and `--gelu ibert` set it). The graph is lowered from
//! the model in the format its quantizers model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use quant::{Graph, Interpreter};
use training::fake_quant::{FakeQuant, fake_quant_abs_max, round_half_away};
use training::int_softmax::int_softmax;
use training::qat::{LinearQuant, NormKernel, gelu_q, layer_norm_q, linear, linear_parts};
use training::{Kwt, KwtConfig};

/// How one graph tensor's codes compare.
#[derive(Default)]
struct Tally {
    codes: u64,
    differ: u64,
    max_diff: i64,
    /// First differing element: (clip, index, QAT code, graph code).
    first: Option<(usize, usize, i64, i64)>,
    /// Sums of the squared graph codes and of the squared differences.
    signal: f64,
    noise: f64,
    /// Differing codes by channel (index of the last axis).
    channels: BTreeMap<usize, u64>,
}

impl Tally {
    fn snr_db(&self) -> f64 {
        10.0 * (self.signal / self.noise.max(f64::MIN_POSITIVE)).log10()
    }
}

/// The interpreter's tensors for a batch of clips.
struct Traces<'a> {
    graph: &'a Graph,
    clips: Vec<BTreeMap<String, Vec<i8>>>,
    device: Device,
}

impl Traces<'_> {
    fn info(&self, name: &str) -> Result<&quant::TensorInfo> {
        self.graph
            .tensor(name)
            .with_context(|| format!("`{name}` is not in the graph"))
    }

    /// The tensor `name` of every clip, dequantized, as `[clips, ..shape]`.
    fn tensor<const D: usize>(&self, name: &str) -> Result<Tensor<D>> {
        let info = self.info(name)?;
        let mut values = Vec::new();
        for c in &self.clips {
            let codes = c
                .get(name)
                .with_context(|| format!("`{name}` not traced"))?;
            values.extend(codes.iter().map(|&q| info.dequantize(q) as f32));
        }
        let mut shape = vec![self.clips.len()];
        shape.extend(&info.shape);
        if shape.len() != D {
            bail!("`{name}` has shape {:?}, not rank {}", info.shape, D - 1);
        }
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// Compares `qat` (`[clips, ..shape]`, on the grid of `name`'s scale) with the graph's codes.
    fn compare<const D: usize>(
        &self,
        tallies: &mut Vec<(String, Tally)>,
        name: &str,
        qat: Tensor<D>,
    ) -> Result<()> {
        let info = self.info(name)?;
        let scale = info.scale.to_f64();
        let values: Vec<f32> = qat.into_data().iter::<f32>().collect();
        let per_clip = values.len() / self.clips.len().max(1);
        let mut tally = Tally::default();
        for (clip, (c, v)) in self
            .clips
            .iter()
            .zip(values.chunks_exact(per_clip))
            .enumerate()
        {
            let codes = c
                .get(name)
                .with_context(|| format!("`{name}` not traced"))?;
            if codes.len() != v.len() {
                bail!(
                    "`{name}`: {} codes in the graph, {} values in QAT's forward",
                    codes.len(),
                    v.len()
                );
            }
            for (i, (&g, &f)) in codes.iter().zip(v).enumerate() {
                let q = (f as f64 / scale).round() as i64 + info.zero_point as i64;
                let d = (q - g as i64).abs();
                tally.codes += 1;
                tally.signal += ((g as i64 - info.zero_point as i64) as f64).powi(2);
                tally.noise += (d as f64).powi(2);
                if d != 0 {
                    tally.differ += 1;
                    tally.first.get_or_insert((clip, i, q, g as i64));
                    let last = info.shape.last().copied().unwrap_or(1).max(1);
                    *tally.channels.entry(i % last).or_default() += 1;
                }
                tally.max_diff = tally.max_diff.max(d);
            }
        }
        tallies.push((name.to_string(), tally));
        Ok(())
    }
}

/// The QAT model of a float checkpoint (its starting point, in the format of `opts`) or of a
/// QAT run's checkpoint (its thresholds, gain and format from the run's `qat.ron`).
fn load_model(
    checkpoint: &std::path::Path,
    samples: &[Vec<f32>],
    opts: &quant::ptq::PtqOptions,
) -> Result<(Kwt, KwtConfig)> {
    let device = Device::flex();
    match training::load_checkpoint(checkpoint, &device) {
        Ok((float, config)) => {
            let t = quant::qat::initial_thresholds(&float, &config, samples, opts)?;
            let model = quant::qat::attach(float, &config, &t, 1.0, opts.quant_format())?;
            Ok((model, config))
        }
        Err(plain) => quant::qat::load_qat_checkpoint(checkpoint, &device)
            .map_err(|e| anyhow::anyhow!("{plain}; as a QAT run's checkpoint: {e}")),
    }
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut flag = |name: &str| {
        let on = args.iter().any(|a| a == name);
        args.retain(|a| a != name);
        on
    };
    let per_tensor = flag("--per-tensor");
    let scaled_layer_norm = flag("--scaled-layer-norm");
    let ibert_gelu = flag("--ibert-gelu");
    let (checkpoint, data, n) = match args.as_slice() {
        [c, d] => (c, d, 16),
        [c, d, n] => (c, d, n.parse().context("N")?),
        _ => {
            bail!(
                "usage: qat_graph_trace CHECKPOINT DATA [N] [--per-tensor] [--scaled-layer-norm] \
                 [--ibert-gelu]"
            )
        }
    };
    let opts = quant::ptq::PtqOptions {
        per_channel: !per_tensor,
        scaled_layer_norm,
        gelu: quant::ptq::GeluMethod::ibert_if(ibert_gelu),
        ..Default::default()
    };
    let checkpoint = PathBuf::from(checkpoint);
    let spec = training::DataSpec::beside(&checkpoint)?
        .unwrap_or_else(|| {
            training::DataSpec::speech_commands(PathBuf::new(), datasets::Task::Labels12)
        })
        .with_folder(PathBuf::from(data));
    let splits = spec.load(false)?;
    let samples = (0..quant::ptq::PtqOptions::default()
        .calibration_samples
        .min(splits.train.len()))
        .map(|i| Ok(splits.train.sample(i, None)?.0))
        .collect::<Result<Vec<_>>>()?;
    let (model, config) = load_model(&checkpoint, &samples, &opts)?;
    let (graph, _) = quant::qat::lower_qat(&model, &config, &samples, &opts)?;
    let test = splits.test.as_ref();
    let n = n.min(test.len());
    let clips = (0..n)
        .map(|i| Ok(test.sample(i, None)?.0))
        .collect::<Result<Vec<_>>>()?;

    let mut interp = Interpreter::new(graph.clone())?;
    let mut traced = Vec::with_capacity(n);
    for x in &clips {
        interp.execute(&[&graph.quantize_input(x)?])?;
        traced.push(interp.trace());
    }
    let traces = Traces {
        graph: &graph,
        clips: traced,
        device: Device::flex(),
    };
    check_layer_norm_constants(&model, &graph)?;
    check_linear_weights(&model, &graph)?;
    for free in [false, true] {
        let tallies = trace_ops(&model, &config, &clips, &traces, free)?;
        print_table(&tallies, n, free);
    }
    Ok(())
}

fn print_table(tallies: &[(String, Tally)], n: usize, free: bool) {
    if free {
        println!("\nThe forward running on its own outputs, {n} test clips:");
    } else {
        println!("Each op of QAT's forward on the integer graph's own inputs, {n} test clips:");
    }
    println!("| tensor | codes | differ | max diff | SNR | first (clip, index, QAT, graph) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (name, t) in tallies {
        let kind = name
            .rsplit('.')
            .next()
            .unwrap_or(name)
            .trim_end_matches(char::is_numeric);
        let e = by_kind.entry(kind.to_string()).or_default();
        e.0 += t.codes;
        e.1 += t.differ;
        if t.differ > 0 {
            println!(
                "| {name} | {} | {:.4} % | {} | {:.1} dB | {:?} |",
                t.codes,
                100.0 * t.differ as f64 / t.codes as f64,
                t.max_diff,
                t.snr_db(),
                t.first.unwrap_or_default()
            );
            if !free && t.differ * 1000 > t.codes {
                let mut worst: Vec<_> = t.channels.iter().collect();
                worst.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
                println!(
                    "|   by channel: {:?} | | | | | |",
                    &worst[..worst.len().min(6)]
                );
            }
        }
    }
    println!(
        "(tensors not listed: every code equal)\n\n| op | codes | differ |\n| --- | --- | --- |"
    );
    for (k, (codes, differ)) in &by_kind {
        println!(
            "| {k} | {codes} | {differ} ({:.4} %) |",
            100.0 * *differ as f64 / *codes as f64
        );
    }
}

/// The tensors the traced ops read: in forced mode the graph's (dequantized), in free mode the
/// forward's own outputs.
struct Env<'a> {
    tr: &'a Traces<'a>,
    free: bool,
    /// The LayerNorm kernel QAT models.
    kernel: NormKernel,
    own: BTreeMap<String, Tensor<4>>,
    tallies: Vec<(String, Tally)>,
}

impl Env<'_> {
    /// Records QAT's output `y` for the graph tensor `name` and compares it with the graph's.
    fn put<const D: usize>(&mut self, name: &str, y: Tensor<D>) -> Result<()> {
        self.tr.compare(&mut self.tallies, name, y.clone())?;
        self.keep(name, y);
        Ok(())
    }

    /// The LayerNorm `norm` of tensor `input` (rounded by `input_point`) as QAT computes it,
    /// rounded by `point` and compared with the graph's `out`.
    fn layer_norm<const D: usize>(
        &mut self,
        out: &str,
        norm: &LayerNorm,
        point: &FakeQuant,
        input: &str,
        input_point: &FakeQuant,
    ) -> Result<()> {
        let y = layer_norm_q(norm, self.get::<D>(input)?, Some(input_point), self.kernel);
        self.put(out, point.forward(y))
    }

    /// The Linear `l` (quantizers `lq`) of tensor `input` (rounded by `input_point`) as QAT
    /// computes it, compared with the graph's `out`.
    fn linear<const D: usize>(
        &mut self,
        out: &str,
        l: &Linear,
        lq: &LinearQuant,
        input: &str,
        input_point: &FakeQuant,
    ) -> Result<()> {
        let y = linear(l, self.get::<D>(input)?, Some(lq), Some(input_point));
        self.put(out, y)
    }

    /// Stores a layout op's output (no comparison).
    fn keep<const D: usize>(&mut self, name: &str, y: Tensor<D>) {
        if self.free {
            self.own.insert(name.to_string(), y.unsqueeze::<4>());
        }
    }

    fn get<const D: usize>(&self, name: &str) -> Result<Tensor<D>> {
        if !self.free {
            return self.tr.tensor::<D>(name);
        }
        let t = self
            .own
            .get(name)
            .with_context(|| format!("`{name}` not computed"))?;
        let dims = t.dims();
        // unsqueeze prepended ones: drop them again
        let shape: [usize; D] = std::array::from_fn(|i| dims[4 - D + i]);
        Ok(t.clone().reshape(shape))
    }
}

/// Evaluates every op of the fake-quantized forward on the graph's dequantized inputs
/// (`free`: on its own outputs) and compares each output with the graph's.
fn trace_ops(
    model: &Kwt,
    cfg: &KwtConfig,
    clips: &[Vec<f32>],
    tr: &Traces,
    free: bool,
) -> Result<Vec<(String, Tally)>> {
    let q = model.qat.as_ref().context("the model has no quantizers")?;
    let mut env = Env {
        tr,
        free,
        kernel: q.head.norm_kernel(),
        own: BTreeMap::new(),
        tallies: Vec::new(),
    };
    let device = Device::flex();
    let batch = clips.len();
    let raw: Vec<f32> = clips.iter().flatten().copied().collect();
    let raw = Tensor::<3>::from_data(
        TensorData::new(raw, [batch, cfg.frames, cfg.features]),
        &device,
    );
    let input_name = tr.graph.inputs.first().context("the graph has no input")?;
    env.put(input_name, q.input.forward(model.input_norm.forward(raw)))?;
    env.linear::<3>("embed", &model.embed, &q.embed, input_name, &q.input)?;
    let embedded: Tensor<3> = env.get::<3>("embed")?;
    let dim = embedded.dims()[2];
    // the tokens at the embedding's scale, the class token first, as the graph concatenates
    let token = |t: Tensor<3>| q.embed.output.forward(t.expand([batch, 1, dim]));
    let mut tokens = vec![token(model.cls_token.val())];
    tokens.extend(model.dist_token.as_ref().map(|t| token(t.val())));
    tokens.push(embedded);
    env.keep("cls_token", Tensor::cat(tokens, 1));
    let pos = fake_quant_abs_max(model.pos_embedding.val());
    let tokens: Tensor<3> = env.get::<3>("cls_token")?;
    env.put("pos_embedding", q.pos_embedding.forward(tokens + pos))?;

    let mut x_name = "pos_embedding".to_string();
    let mut x_point: &FakeQuant = &q.pos_embedding;
    for (l, (block, bq)) in model.blocks.iter().zip(&q.blocks).enumerate() {
        let p = format!("block{l}");
        let name = |s: &str| format!("{p}.{s}");
        let (attn_in, attn_in_point) = if block.post_norm {
            (x_name.clone(), x_point)
        } else {
            env.layer_norm::<3>(&name("norm1"), &block.norm1, &bq.norm1, &x_name, x_point)?;
            (name("norm1"), &bq.norm1)
        };
        // attention, part by part
        let a = &block.attn;
        let aq = &bq.attn;
        let (h, dh) = (a.heads, a.dim_head);
        let inner = h * dh;
        for (i, (part, lq)) in [("q", &aq.q), ("k", &aq.k), ("v", &aq.v)]
            .iter()
            .enumerate()
        {
            let (w, b) = a.qkv_part(i);
            let y = linear_parts(env.get::<3>(&attn_in)?, w, b, Some(lq), Some(attn_in_point));
            let tokens = y.dims()[1];
            env.put(&name(&format!("attn.{part}")), y.clone())?;
            let heads = y.reshape([batch, tokens, h, dh]).swap_dims(1, 2);
            env.keep(&name(&format!("attn.{part}.t")), heads);
        }
        let scores = env
            .get::<4>(&name("attn.q.t"))?
            .matmul(env.get::<4>(&name("attn.k.t"))?.swap_dims(2, 3))
            .mul_scalar((dh as f64).powf(-0.5));
        env.put(&name("attn.scores"), aq.scores.forward(scores))?;
        let probs = int_softmax(env.get::<4>(&name("attn.scores"))?, aq.scores.scale_exp())
            .context("no integer softmax for this row length and scale")?;
        env.put(&name("attn.softmax"), probs)?;
        let ctx = env
            .get::<4>(&name("attn.softmax"))?
            .matmul(env.get::<4>(&name("attn.v.t"))?);
        env.put(&name("attn.context"), aq.context.forward(ctx))?;
        let ctx: Tensor<4> = env.get::<4>(&name("attn.context"))?;
        let tokens = ctx.dims()[2];
        env.keep(
            &name("attn.merge"),
            ctx.swap_dims(1, 2).reshape([batch, tokens, inner]),
        );
        let merge = name("attn.merge");
        env.linear::<3>(&name("attn.out"), &a.out, &aq.out, &merge, &aq.context)?;
        let add1 = env.get::<3>(&x_name)? + env.get::<3>(&name("attn.out"))?;
        env.put(&name("add1"), bq.add1.forward(add1))?;
        let (mlp_in, mlp_in_point) = if block.post_norm {
            env.layer_norm::<3>(
                &name("norm1"),
                &block.norm1,
                &bq.norm1,
                &name("add1"),
                &bq.add1,
            )?;
            (name("norm1"), &bq.norm1)
        } else {
            env.layer_norm::<3>(
                &name("norm2"),
                &block.norm2,
                &bq.norm2,
                &name("add1"),
                &bq.add1,
            )?;
            (name("norm2"), &bq.norm2)
        };
        let m = &block.mlp;
        env.linear::<3>(&name("mlp.fc1"), &m.fc1, &bq.fc1, &mlp_in, mlp_in_point)?;
        let ibert_exp = bq.ibert_gelu.then(|| bq.fc1.output.scale_exp());
        let g = bq
            .gelu
            .forward(gelu_q(env.get::<3>(&name("mlp.fc1"))?, ibert_exp));
        env.put(&name("mlp.gelu"), g)?;
        env.linear::<3>(
            &name("mlp.fc2"),
            &m.fc2,
            &bq.fc2,
            &name("mlp.gelu"),
            &bq.gelu,
        )?;
        let residual = if block.post_norm {
            name("norm1")
        } else {
            name("add1")
        };
        let add2 = env.get::<3>(&residual)? + env.get::<3>(&name("mlp.fc2"))?;
        env.put(&name("add2"), bq.add2.forward(add2))?;
        if block.post_norm {
            env.layer_norm::<3>(
                &name("norm2"),
                &block.norm2,
                &bq.norm2,
                &name("add2"),
                &bq.add2,
            )?;
            (x_name, x_point) = (name("norm2"), &bq.norm2);
        } else {
            (x_name, x_point) = (name("add2"), &bq.add2);
        }
    }
    let x: Tensor<3> = env.get::<3>(&x_name)?;
    let dist = model.dist_head.as_ref().zip(q.dist_head.as_ref());
    let heads = std::iter::once(("head", &model.head, &q.head))
        .chain(dist.map(|(h, hq)| ("dist_head", h, hq)));
    for (i, (p, head, hq)) in heads.enumerate() {
        let name = |s: &str| format!("{p}.{s}");
        env.keep(
            &name("token"),
            x.clone().narrow(1, i, 1).squeeze_dim::<2>(1),
        );
        env.layer_norm::<2>(&name("norm"), &head.norm, &hq.norm, &name("token"), x_point)?;
        env.linear::<2>(&name("fc"), &head.fc, &hq.fc, &name("norm"), &hq.norm)?;
    }
    if let Some(average) = &q.logits {
        let sum = env.get::<2>("head.fc")? + env.get::<2>("dist_head.fc")?;
        env.put("logits", average.forward(sum.mul_scalar(0.5)))?;
    }
    Ok(env.tallies)
}

/// Compares every LayerNorm's int8 gain and int32 offset as QAT's forward rounds them
/// (`training::qat::int_layer_norm_affine`, Burn f32) with the graph's stored ones.
fn check_layer_norm_constants(model: &Kwt, graph: &Graph) -> Result<()> {
    let values = |t: Tensor<1>| -> Vec<f32> { t.into_data().iter::<f32>().collect() };
    let mut norms = vec![("head.norm".to_string(), &model.head.norm)];
    if let Some(h) = &model.dist_head {
        norms.push(("dist_head.norm".to_string(), &h.norm));
    }
    for (l, b) in model.blocks.iter().enumerate() {
        norms.push((format!("block{l}.norm1"), &b.norm1));
        norms.push((format!("block{l}.norm2"), &b.norm2));
    }
    let (mut total, mut differ) = (0usize, 0usize);
    for (name, norm) in norms {
        let node = graph.nodes.iter().find(|n| n.name == name);
        let Some(quant::Op::LayerNorm(ln) | quant::Op::ScaledLayerNorm(ln)) = node.map(|n| &n.op)
        else {
            bail!("`{name}` is not a LayerNorm in the graph");
        };
        let gamma = norm.gamma.val();
        let max = values(gamma.clone().abs().max())[0];
        let s = if max == 0.0 { 1.0 } else { max / 127.0 };
        let gq = values(fake_quant_abs_max(gamma).div_scalar(s));
        let step = s / 2f32.powi(ln.norm.g as i32);
        let bq = match &norm.beta {
            Some(b) => values(round_half_away(b.val().div_scalar(step))),
            None => vec![0.0; gq.len()],
        };
        for (c, (g, b)) in gq.iter().zip(&bq).enumerate() {
            total += 1;
            if g.round() != ln.gamma[c] as f32 || *b != ln.beta[c] as f32 {
                differ += 1;
                println!(
                    "{name} channel {c}: gain QAT {g}, graph {}; offset QAT {b}, graph {}",
                    ln.gamma[c], ln.beta[c]
                );
            }
        }
    }
    println!(
        "LayerNorm channels: {differ} of {total} with another gain or offset than the graph's"
    );
    Ok(())
}

/// Counts the Linear weight codes QAT's forward rounds otherwise than the graph stores them.
fn check_linear_weights(model: &Kwt, graph: &Graph) -> Result<()> {
    let q = model.qat.as_ref().context("the model has no quantizers")?;
    let mut linears = vec![("embed".to_string(), model.embed.weight.val(), &q.embed)];
    for (l, (b, bq)) in model.blocks.iter().zip(&q.blocks).enumerate() {
        let a = &b.attn;
        let parts = [("q", &bq.attn.q), ("k", &bq.attn.k), ("v", &bq.attn.v)];
        for (i, (part, lq)) in parts.into_iter().enumerate() {
            let w = a.qkv_part(i).0;
            linears.push((format!("block{l}.attn.{part}"), w, lq));
        }
        linears.push((
            format!("block{l}.attn.out"),
            a.out.weight.val(),
            &bq.attn.out,
        ));
        linears.push((format!("block{l}.mlp.fc1"), b.mlp.fc1.weight.val(), &bq.fc1));
        linears.push((format!("block{l}.mlp.fc2"), b.mlp.fc2.weight.val(), &bq.fc2));
    }
    linears.push((
        "head.fc".to_string(),
        model.head.fc.weight.val(),
        &q.head.fc,
    ));
    if let Some((h, hq)) = model.dist_head.as_ref().zip(q.dist_head.as_ref()) {
        linears.push(("dist_head.fc".to_string(), h.fc.weight.val(), &hq.fc));
    }
    let (mut total, mut differ) = (0usize, 0usize);
    for (name, w, lq) in linears {
        let node = graph.nodes.iter().find(|n| n.name == name);
        let Some(quant::Op::Linear {
            weight,
            in_features,
            ..
        }) = node.map(|n| &n.op)
        else {
            bail!("`{name}` is not a Linear in the graph");
        };
        // QAT's codes: the fake-quantized weight over its step
        let (fq, step): (Tensor<2>, Vec<f32>) = if lq.per_channel {
            let max = w.clone().abs().max_dim(0);
            let step: Vec<f32> = max.into_data().iter::<f32>().collect();
            let step = step
                .into_iter()
                .map(|m| if m > 0.0 { m / 127.0 } else { 1.0 })
                .collect();
            (training::fake_quant::fake_quant_per_channel(w), step)
        } else {
            let out = w.dims()[1];
            (
                lq.weight.forward(w),
                vec![2f32.powi(lq.weight.scale_exp()); out],
            )
        };
        let out = step.len();
        let fq: Vec<f32> = fq.into_data().iter::<f32>().collect();
        let d_in = *in_features;
        for (k, f) in fq.iter().enumerate() {
            let (i, o) = (k / out, k % out);
            let code = (f / step[o]).round() as i8;
            total += 1;
            if code != weight[o * d_in + i] {
                differ += 1;
                if differ <= 5 {
                    println!(
                        "{name}[{o}, {i}]: QAT {code}, graph {}",
                        weight[o * d_in + i]
                    );
                }
            }
        }
    }
    println!("Linear weight codes: {differ} of {total} differ from the graph's");
    Ok(())
}
