//! The Rust integer reference interpreter: runs a validated [`Graph`] on int8 inputs, one
//! sample at a time, with every buffer allocated once in [`Interpreter::new`].

use std::collections::{BTreeMap, HashMap};

use crate::error::{QuantError, Result};
use crate::graph::{Graph, Op};
use crate::kernels;

/// Runs one graph; reusable across samples (buffers are kept between runs).
#[derive(Debug, Clone)]
pub struct Interpreter {
    graph: Graph,
    shapes: Vec<Vec<usize>>,
    zero_points: Vec<i32>,
    names: Vec<String>,
    slots: Vec<Vec<i8>>,
    node_io: Vec<(Vec<usize>, usize)>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    luts: Vec<Option<Box<[i8; 256]>>>,
    /// Per node: a Softmax's exponentials of every difference from its row's maximum.
    exp_tables: Vec<Option<Box<[i32; 256]>>>,
    scratch_a: Vec<i32>,
    scratch_b: Vec<i32>,
}

impl Interpreter {
    /// Validates `graph` and allocates every tensor buffer.
    pub fn new(graph: Graph) -> Result<Self> {
        graph.validate()?;
        let index: HashMap<&str, usize> = graph
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let shapes: Vec<Vec<usize>> = graph.tensors.iter().map(|t| t.shape.clone()).collect();
        let zero_points = graph.tensors.iter().map(|t| t.zero_point).collect();
        let names = graph.tensors.iter().map(|t| t.name.clone()).collect();
        let slots = graph.tensors.iter().map(|t| vec![0i8; t.numel()]).collect();
        let node_io = graph
            .nodes
            .iter()
            .map(|n| {
                (
                    n.inputs.iter().map(|i| index[i.as_str()]).collect(),
                    index[n.output.as_str()],
                )
            })
            .collect();
        let inputs = graph.inputs.iter().map(|i| index[i.as_str()]).collect();
        let outputs = graph.outputs.iter().map(|i| index[i.as_str()]).collect();
        let luts = graph.nodes.iter().map(|n| n.op.gelu_lut()).collect();
        let exp_tables = graph
            .nodes
            .iter()
            .map(|n| match &n.op {
                Op::Softmax(sm) => Some(Box::new(sm.exp_table())),
                _ => None,
            })
            .collect();
        let max_len = graph.tensors.iter().map(|t| t.numel()).max().unwrap_or(0);
        Ok(Interpreter {
            graph,
            shapes,
            zero_points,
            names,
            slots,
            node_io,
            inputs,
            outputs,
            luts,
            exp_tables,
            scratch_a: vec![0; max_len],
            scratch_b: vec![0; max_len],
        })
    }

    /// The graph being run.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs one sample; `inputs` in the order of `graph.inputs`. Returns the outputs in the
    /// order of `graph.outputs`.
    pub fn run(&mut self, inputs: &[&[i8]]) -> Result<Vec<Vec<i8>>> {
        self.execute(inputs)?;
        Ok(self
            .outputs
            .iter()
            .map(|&o| self.slots[o].clone())
            .collect())
    }

    /// Runs a single-input graph on one sample and returns its first output.
    pub fn run_single(&mut self, input: &[i8]) -> Result<Vec<i8>> {
        self.execute(&[input])?;
        Ok(self.slots[self.outputs[0]].clone())
    }

    /// Runs a single-input graph on many samples; returns the first output of each.
    pub fn run_many<S: AsRef<[i8]>>(&mut self, samples: &[S]) -> Result<Vec<Vec<i8>>> {
        samples
            .iter()
            .map(|s| self.run_single(s.as_ref()))
            .collect()
    }

    /// A tensor of the last run by name (every intermediate is kept), for per-layer debugging.
    pub fn tensor(&self, name: &str) -> Option<&[i8]> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.slots[i].as_slice())
    }

    /// Every tensor of the last run by name.
    pub fn trace(&self) -> BTreeMap<String, Vec<i8>> {
        self.names
            .iter()
            .cloned()
            .zip(self.slots.iter().cloned())
            .collect()
    }

    /// Runs one sample, leaving every tensor in its buffer.
    pub fn execute(&mut self, inputs: &[&[i8]]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(QuantError::BadInput {
                tensor: format!("<{} graph inputs>", self.inputs.len()),
                expected: self.inputs.len(),
                found: inputs.len(),
            });
        }
        for (&slot, data) in self.inputs.iter().zip(inputs) {
            if data.len() != self.slots[slot].len() {
                return Err(QuantError::BadInput {
                    tensor: self.names[slot].clone(),
                    expected: self.slots[slot].len(),
                    found: data.len(),
                });
            }
            self.slots[slot].copy_from_slice(data);
        }
        for ni in 0..self.graph.nodes.len() {
            let (ins, out_id) = &self.node_io[ni];
            let mut out = std::mem::take(&mut self.slots[*out_id]);
            let x = &self.slots[ins[0]];
            let xs = &self.shapes[ins[0]];
            let os = &self.shapes[*out_id];
            let (sa, sb) = (&mut self.scratch_a, &mut self.scratch_b);
            match &self.graph.nodes[ni].op {
                Op::Linear {
                    in_features,
                    weight,
                    bias,
                    requant,
                    ..
                } => kernels::linear(x, weight, bias, requant, *in_features, &mut out),
                Op::MatMul {
                    transpose_b,
                    requant,
                } => {
                    let r = xs.len();
                    let (m, k) = (xs[r - 2], xs[r - 1]);
                    let n = os[r - 1];
                    let batch = xs[..r - 2].iter().product();
                    let b = &self.slots[ins[1]];
                    let mm = kernels::MatMulDims {
                        batch,
                        m,
                        k,
                        n,
                        transpose_b: *transpose_b,
                        a_zero_point: self.zero_points[ins[0]],
                    };
                    kernels::matmul(x, b, &mm, *requant, &mut out);
                }
                Op::Add(p) => {
                    let b = &self.slots[ins[1]];
                    for ((o, &u), &v) in out.iter_mut().zip(x.iter()).zip(b.iter()) {
                        *o = p.eval(u, v);
                    }
                }
                Op::Conv2d {
                    in_c,
                    out_c,
                    window,
                    weight,
                    bias,
                    requant,
                } => kernels::conv2d(
                    x,
                    [xs[0], xs[1]],
                    *in_c,
                    *out_c,
                    window,
                    weight,
                    bias,
                    requant,
                    [os[0], os[1]],
                    &mut out,
                ),
                Op::DepthwiseConv2d {
                    channels,
                    window,
                    weight,
                    bias,
                    requant,
                } => kernels::depthwise_conv2d(
                    x,
                    [xs[0], xs[1]],
                    *channels,
                    window,
                    weight,
                    bias,
                    requant,
                    [os[0], os[1]],
                    &mut out,
                ),
                Op::MaxPool2d(w) => {
                    kernels::pool2d(x, [xs[0], xs[1]], xs[2], w, [os[0], os[1]], false, &mut out)
                }
                Op::AvgPool2d(w) => {
                    kernels::pool2d(x, [xs[0], xs[1]], xs[2], w, [os[0], os[1]], true, &mut out)
                }
                Op::GlobalAvgPool => kernels::mean_rows(x, xs[0] * xs[1], xs[2], sa, &mut out),
                Op::SeqMeanPool => kernels::mean_rows(x, xs[0], xs[1], sa, &mut out),
                Op::Relu => {
                    for (o, &v) in out.iter_mut().zip(x.iter()) {
                        *o = v.max(0);
                    }
                }
                Op::Gelu(_) | Op::GeluTable(_) => {
                    let lut = self.luts[ni].as_ref().expect("built for every Gelu node");
                    for (o, &v) in out.iter_mut().zip(x.iter()) {
                        *o = lut[(v as i32 + 128) as usize];
                    }
                }
                Op::Softmax(sm) => {
                    let n = sm.len as usize;
                    let table = self.exp_tables[ni]
                        .as_ref()
                        .expect("built for every Softmax node");
                    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
                        sm.eval_row_with(table, xr, or, &mut sa[..n]);
                    }
                }
                Op::LayerNorm(ln) | Op::ScaledLayerNorm(ln) => {
                    let n = ln.norm.len as usize;
                    let scaled = matches!(self.graph.nodes[ni].op, Op::ScaledLayerNorm(_));
                    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
                        if scaled {
                            ln.eval_row_scaled(xr, or, &mut sa[..n], &mut sb[..n]);
                        } else {
                            ln.eval_row_ibert(xr, or, &mut sa[..n], &mut sb[..n]);
                        }
                    }
                }
                Op::ConcatClassToken { token } => {
                    out[..token.len()].copy_from_slice(token);
                    out[token.len()..].copy_from_slice(x);
                }
                Op::AddEmbedding { embedding, add } => {
                    for ((o, &u), &v) in out.iter_mut().zip(x.iter()).zip(embedding.iter()) {
                        *o = add.eval(u, v);
                    }
                }
                Op::Reshape { .. } => out.copy_from_slice(x),
                Op::Transpose { perm } => kernels::transpose(x, xs, perm, &mut out),
                Op::Requant(d) => {
                    for (o, &v) in out.iter_mut().zip(x.iter()) {
                        *o = d.requantize(v as i32);
                    }
                }
                Op::SelectToken { index } => {
                    let n = out.len();
                    out.copy_from_slice(&x[index * n..(index + 1) * n]);
                }
            }
            self.slots[*out_id] = out;
        }
        Ok(())
    }
}
