//! Integer graph -> self-contained C project (model source, header, runtime, Makefile).
//!
//! Everything is generated in memory and checked first (ops, limits); files are written only
//! when the whole export can succeed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use quant::graph::Window;
use quant::{Dyadic, Graph, Op, Requant};
use serde::{Deserialize, Serialize};

use crate::error::{ExportError, Result, io_err};
use crate::plan::{Exec, FusedAttention, Int8Options, Int8Plan, Storage, View, wrl_row};

/// The bundled C runtime, copied into every exported project.
pub const RUNTIME_FILES: [(&str, &str); 5] = [
    ("nas_kernels.h", include_str!("../runtime/nas_kernels.h")),
    ("nas_dsp.h", include_str!("../runtime/nas_dsp.h")),
    ("nas_kernels.c", include_str!("../runtime/nas_kernels.c")),
    ("nas_sparse.h", include_str!("../runtime/nas_sparse.h")),
    ("nas_sparse.c", include_str!("../runtime/nas_sparse.c")),
];

/// Largest tensor rank the runtime's transpose accepts (`NAS_MAX_RANK` in `nas_kernels.h`).
pub const MAX_RANK: usize = 8;

/// Optional memory budgets of the target; an export over either is rejected before any file
/// is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportLimits {
    /// SRAM available for the activation arena, bytes.
    pub sram_bytes: Option<usize>,
    /// Flash available for weights and constants, bytes.
    pub flash_bytes: Option<usize>,
}

/// What an export produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReport {
    /// Model name (C identifier prefix).
    pub name: String,
    /// Bytes of the one static activation arena (SRAM).
    pub arena_bytes: usize,
    /// Bytes of all constant arrays (weights, biases, embeddings, class tokens, LayerNorm
    /// gamma/beta, GELU tables, requantization multipliers, transpose shapes): flash. Small
    /// per-node parameter structs (a few int32 fields each) are not included.
    pub weight_bytes: usize,
    /// The cost model's planner that produced the arena (`head-tail` or `best-fit`).
    pub planner: String,
    /// Number of fused (depth-first tiled) attention kernels emitted.
    pub fused_attention: usize,
    /// Total input elements (graph inputs concatenated in order).
    pub input_len: usize,
    /// Total output elements (graph outputs concatenated in order).
    pub output_len: usize,
    /// Arena offset of every arena buffer (tensors and fused-kernel scratch; graph inputs live
    /// in the caller's buffer; reshapes alias their input).
    pub tensor_offsets: Vec<(String, usize)>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The C kernel that implements `op`, or why there is none.
pub fn runtime_kernel(op: &Op) -> std::result::Result<&'static str, String> {
    Ok(match op {
        Op::Linear { .. } => "nas_linear_s8",
        Op::MatMul { .. } => "nas_matmul_s8",
        Op::Add(_) | Op::AddEmbedding { .. } => "nas_add_s8",
        Op::Conv2d { .. } => "nas_conv2d_s8",
        Op::DepthwiseConv2d { .. } => "nas_depthwise_conv2d_s8",
        Op::MaxPool2d(_) | Op::AvgPool2d(_) => "nas_pool2d_s8",
        Op::GlobalAvgPool | Op::SeqMeanPool => "nas_mean_rows_s8",
        Op::Relu => "nas_relu_s8",
        Op::Gelu(_) | Op::GeluTable(_) => "nas_lut_s8",
        Op::Softmax(_) => "nas_softmax_s8",
        Op::LayerNorm(_) => "nas_layernorm_s8",
        Op::ScaledLayerNorm(_) => "nas_scaled_layernorm_s8",
        Op::ConcatClassToken { .. } => "nas_concat_class_token_s8",
        Op::Reshape { .. } => "(alias, no kernel)",
        Op::Transpose { perm } => {
            if perm.len() > MAX_RANK {
                return Err(format!(
                    "rank {} exceeds the runtime's NAS_MAX_RANK {MAX_RANK}",
                    perm.len()
                ));
            }
            "nas_transpose_s8"
        }
        Op::Requant(_) => "nas_requant_s8",
        Op::SelectToken { .. } => "nas_copy_s8",
    })
}

/// Validates `graph` and checks that the C runtime has a kernel for every node; the error
/// names the first node that has none.
pub fn check_supported(graph: &Graph) -> Result<()> {
    graph.validate()?;
    for node in &graph.nodes {
        runtime_kernel(&node.op).map_err(|reason| ExportError::Unsupported {
            node: node.name.clone(),
            op: node.op.kind().into(),
            reason,
        })?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ExportError::BadName { name: name.into() })
    }
}

/// A name made safe for a C comment.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.:[]".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// C literal of an int32 (`INT32_MIN` cannot be written as a negative literal in C).
fn c_i32(v: i32) -> String {
    if v == i32::MIN {
        "(-2147483647 - 1)".into()
    } else {
        v.to_string()
    }
}

fn c_dyadic(d: Dyadic) -> String {
    format!("{{{}, {}}}", d.m, d.s)
}

/// The generated model source, before anything is written.
struct Generated {
    consts: String,
    body: String,
    weight_bytes: usize,
}

impl Generated {
    fn array<T>(&mut self, ident: &str, ctype: &str, vals: &[T], fmt: impl Fn(&T) -> String) {
        self.weight_bytes += std::mem::size_of_val(vals);
        let _ = write!(
            self.consts,
            "static const {ctype} {ident}[{}] = {{",
            vals.len()
        );
        for (i, v) in vals.iter().enumerate() {
            if i % 16 == 0 {
                self.consts.push_str("\n    ");
            }
            let _ = write!(self.consts, "{},", fmt(v));
        }
        self.consts.push_str("\n};\n");
    }

    fn u8s(&mut self, ident: &str, v: &[u8]) {
        self.array(ident, "uint8_t", v, |x| x.to_string());
    }

    /// Weights: the run-length coded stream when the plan codes them, else the dense array.
    /// Returns whether they are coded.
    fn weights(&mut self, ident: &str, dense: &[i8], coded: Option<&rle::Encoded>) -> bool {
        match coded {
            Some(e) => self.u8s(ident, &e.to_bytes()),
            None => self.i8s(ident, dense),
        }
        coded.is_some()
    }

    fn i8s(&mut self, ident: &str, v: &[i8]) {
        self.array(ident, "int8_t", v, |x| x.to_string());
    }

    fn i32s(&mut self, ident: &str, v: &[i32]) {
        self.array(ident, "int32_t", v, |x| c_i32(*x));
    }

    fn usizes(&mut self, ident: &str, v: &[usize]) {
        let v: Vec<i32> = v.iter().map(|&x| x as i32).collect();
        self.i32s(ident, &v);
    }

    fn requant(&mut self, p: &str, rq: &Requant) {
        let (vals, per_channel) = match rq {
            Requant::PerTensor(d) => (vec![*d], 0),
            Requant::PerChannel(v) => (v.clone(), 1),
        };
        // nas_dyadic is two int32: 8 bytes each
        self.weight_bytes += vals.len() * 8;
        let _ = write!(
            self.consts,
            "static const nas_dyadic {p}_m[{}] = {{",
            vals.len()
        );
        for (i, d) in vals.iter().enumerate() {
            if i % 8 == 0 {
                self.consts.push_str("\n    ");
            }
            let _ = write!(self.consts, "{},", c_dyadic(*d));
        }
        let _ = writeln!(
            self.consts,
            "\n}};\nstatic const nas_requant {p}_rq = {{{p}_m, {per_channel}}};"
        );
    }

    /// The softmax exponent table of node `p` (or `NULL` without one): entry `d` is the
    /// interpreter's e_i for `x_i - max = -d` (quant::ISoftmax::eval_row: the difference
    /// shifted by `j`, then the i-exp), so the C kernel reads exactly the values it would
    /// compute.
    fn softmax_lut(&mut self, p: &str, sm: &quant::ISoftmax, on: bool) -> String {
        if !on {
            return "NULL".into();
        }
        let table: Vec<i32> = (0..256i32)
            .map(|d| {
                let d = -d;
                let d = if sm.j >= 0 { d << sm.j } else { d >> -sm.j };
                sm.exp.eval(d)
            })
            .collect();
        self.i32s(&format!("{p}_exp"), &table);
        format!("{p}_exp")
    }

    fn param(&mut self, decl: String) {
        self.consts.push_str(&decl);
        self.consts.push('\n');
    }

    fn call(&mut self, s: String) {
        let _ = writeln!(self.body, "    {s};");
    }
}

fn c_window(w: &Window) -> String {
    format!(
        "{{{{{}, {}}}, {{{}, {}}}, {{{}, {}}}}}",
        w.k[0], w.k[1], w.stride[0], w.stride[1], w.pad[0], w.pad[1]
    )
}

/// An export, fully generated and checked but not yet written.
#[derive(Debug, Clone)]
pub struct CProject {
    /// The report (files empty until written).
    pub report: ExportReport,
    /// `(file name, contents)` of every file.
    pub files: Vec<(String, String)>,
}

/// Generates the whole C project in memory; rejects unsupported ops and budgets exceeded.
/// Attention chains are fused (depth-first tiled); see [`generate_with`].
pub fn generate(graph: &Graph, name: &str, limits: &ExportLimits) -> Result<CProject> {
    generate_with(graph, name, limits, &Int8Options::default())
}

/// [`generate`] with the cost model's schedule options (e.g. attention fusion off).
pub fn generate_with(
    graph: &Graph,
    name: &str,
    limits: &ExportLimits,
    opts: &Int8Options,
) -> Result<CProject> {
    check_name(name)?;
    check_supported(graph)?;
    let info: HashMap<&str, &quant::TensorInfo> =
        graph.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let numel = |t: &str| info[t].numel();
    let shape = |t: &str| info[t].shape.clone();

    // ---- schedule, storage and arena: the cost model's planner (one planner for both) ----
    let plan = crate::plan::plan(graph, opts)?;
    let arena_bytes = plan.arena_bytes as usize;
    let (input_len, output_len) = (plan.input_len, plan.output_len);
    let ptr = |t: &str| match plan.storage.get(t) {
        Some(Storage::Input(o)) => format!("(in + {o})"),
        Some(Storage::Arena(b)) => format!("(nas_arena.b + {})", plan.offsets[*b]),
        None => format!("/* `{}` is not stored */ NULL", comment_safe(t)),
    };

    // ---- code ----
    let mut g = Generated {
        consts: String::new(),
        body: String::new(),
        weight_bytes: 0,
    };
    for (i, node) in graph.nodes.iter().enumerate() {
        let p = format!("n{i}");
        match plan.exec[i] {
            Exec::Elided => {
                let _ = writeln!(
                    g.body,
                    "    /* {i}: `{}` {}: folded into a fused attention kernel */",
                    comment_safe(&node.name),
                    node.op.kind()
                );
                continue;
            }
            Exec::Fused(f) => {
                emit_attention(&mut g, i, node, &plan.fused[f], &plan, opts, &ptr);
                continue;
            }
            Exec::Alias | Exec::Kernel => {}
        }
        let x = ptr(&node.inputs[0]);
        let y = ptr(&node.output);
        let xs = shape(&node.inputs[0]);
        let os = shape(&node.output);
        let n = numel(&node.output);
        let _ = writeln!(
            g.consts,
            "\n/* node {i} `{}` ({}) */",
            comment_safe(&node.name),
            node.op.kind()
        );
        let _ = writeln!(
            g.body,
            "    /* {i}: `{}` {} {:?} -> {:?} */",
            comment_safe(&node.name),
            node.op.kind(),
            xs,
            os
        );
        match &node.op {
            Op::Linear {
                in_features,
                out_features,
                weight,
                bias,
                requant,
            } => {
                let coded = g.weights(&format!("{p}_w"), weight, plan.coded[i].as_ref());
                g.i32s(&format!("{p}_b"), bias);
                g.requant(&p, requant);
                let rows = numel(&node.inputs[0]) / in_features;
                g.param(format!(
                    "static const nas_linear_dims {p}_d = {{{rows}, {in_features}, {out_features}}};"
                ));
                // the V projection of a fused attention writes V^T (Weight-Reuse layout, rows
                // `wrl_row` apart; the plan never codes its weights)
                let (f, y_row) = if coded {
                    ("nas_linear_rle_s8", String::new())
                } else if plan.wrl.contains(&i) {
                    ("nas_linear_wrl_s8", format!("{}, ", wrl_row(rows)))
                } else {
                    ("nas_linear_s8", String::new())
                };
                let tile = if coded {
                    String::new()
                } else {
                    format!(", {}", tile_ptr(&plan, &node.name))
                };
                g.call(format!(
                    "{f}({x}, {p}_w, {p}_b, &{p}_rq, &{p}_d, {y_row}{y}{tile})"
                ));
            }
            Op::MatMul {
                transpose_b,
                requant,
            } => {
                let r = xs.len();
                let (m, k) = (xs[r - 2], xs[r - 1]);
                let batch: usize = xs[..r - 2].iter().product();
                // a_offset = -zp(a): 128 for softmax probabilities stored as p - 128
                let a_offset = -info[node.inputs[0].as_str()].zero_point;
                g.param(format!(
                    "static const nas_matmul_dims {p}_d = {{{batch}, {m}, {k}, {}, {}, {a_offset}}};\n\
                     static const nas_dyadic {p}_rq = {};",
                    os[r - 1],
                    i32::from(*transpose_b),
                    c_dyadic(*requant)
                ));
                let b = ptr(&node.inputs[1]);
                g.call(format!("nas_matmul_s8({x}, {b}, &{p}_d, {p}_rq, {y})"));
            }
            Op::Add(a) => {
                g.param(format!(
                    "static const nas_add_params {p}_p = {{{}, {}, {}}};",
                    a.ma, a.mb, a.s
                ));
                let b = ptr(&node.inputs[1]);
                g.call(format!("nas_add_s8({x}, {b}, {n}, &{p}_p, {y})"));
            }
            Op::AddEmbedding { embedding, add } => {
                g.i8s(&format!("{p}_e"), embedding);
                g.param(format!(
                    "static const nas_add_params {p}_p = {{{}, {}, {}}};",
                    add.ma, add.mb, add.s
                ));
                g.call(format!("nas_add_s8({x}, {p}_e, {n}, &{p}_p, {y})"));
            }
            Op::Conv2d {
                window,
                weight,
                bias,
                requant,
                ..
            }
            | Op::DepthwiseConv2d {
                window,
                weight,
                bias,
                requant,
                ..
            } => {
                let coded = g.weights(&format!("{p}_w"), weight, plan.coded[i].as_ref());
                g.i32s(&format!("{p}_b"), bias);
                g.requant(&p, requant);
                if matches!(node.op, Op::Conv2d { .. }) && window.is_pointwise() {
                    // [H, W, in] x [out, 1, 1, in]: a Linear over the H W pixels, run by the
                    // (faster, 4-row blocked) Linear kernels; same sums, same outputs
                    g.param(format!(
                        "static const nas_linear_dims {p}_d = {{{}, {}, {}}};",
                        xs[0] * xs[1],
                        xs[2],
                        os[2]
                    ));
                    let call = if coded {
                        format!("nas_linear_rle_s8({x}, {p}_w, {p}_b, &{p}_rq, &{p}_d, {y})")
                    } else {
                        format!(
                            "nas_linear_s8({x}, {p}_w, {p}_b, &{p}_rq, &{p}_d, {y}, {})",
                            tile_ptr(&plan, &node.name)
                        )
                    };
                    g.call(call);
                    continue;
                }
                g.param(format!(
                    "static const nas_hwc {p}_in = {{{}, {}, {}}}, {p}_out = {{{}, {}, {}}};\n\
                     static const nas_window {p}_win = {};",
                    xs[0],
                    xs[1],
                    xs[2],
                    os[0],
                    os[1],
                    os[2],
                    c_window(window)
                ));
                let f = match (matches!(node.op, Op::Conv2d { .. }), coded) {
                    (true, false) => "nas_conv2d_s8",
                    (true, true) => "nas_conv2d_rle_s8",
                    (false, false) => "nas_depthwise_conv2d_s8",
                    (false, true) => "nas_depthwise_conv2d_rle_s8",
                };
                g.call(format!(
                    "{f}({x}, &{p}_in, {p}_w, {p}_b, &{p}_rq, &{p}_win, &{p}_out, {y})"
                ));
            }
            Op::MaxPool2d(w) | Op::AvgPool2d(w) => {
                g.param(format!(
                    "static const nas_hwc {p}_in = {{{}, {}, {}}}, {p}_out = {{{}, {}, {}}};\n\
                     static const nas_window {p}_win = {};",
                    xs[0],
                    xs[1],
                    xs[2],
                    os[0],
                    os[1],
                    os[2],
                    c_window(w)
                ));
                let avg = i32::from(matches!(node.op, Op::AvgPool2d(_)));
                g.call(format!(
                    "nas_pool2d_s8({x}, &{p}_in, &{p}_win, &{p}_out, {avg}, {y})"
                ));
            }
            Op::GlobalAvgPool => {
                g.call(format!(
                    "nas_mean_rows_s8({x}, {}, {}, {y})",
                    xs[0] * xs[1],
                    xs[2]
                ));
            }
            Op::SeqMeanPool => {
                g.call(format!("nas_mean_rows_s8({x}, {}, {}, {y})", xs[0], xs[1]));
            }
            Op::Relu => g.call(format!("nas_relu_s8({x}, {n}, {y})")),
            op @ (Op::Gelu(_) | Op::GeluTable(_)) => {
                // the same table the interpreter looks up
                let table = op.gelu_lut().expect("a GELU op");
                g.i8s(&format!("{p}_lut"), &table[..]);
                g.call(format!("nas_lut_s8({x}, {n}, {p}_lut, {y})"));
            }
            Op::Softmax(sm) => {
                let lut = g.softmax_lut(&p, sm, opts.softmax_lut);
                g.param(format!(
                    "static const nas_softmax_params {p}_p = {{{}, {}, {{{}, {}, {}}}, {lut}, {}}};",
                    sm.len, sm.j, sm.exp.q_ln2, sm.exp.q_b, sm.exp.q_c, sm.out_shift
                ));
                g.call(format!(
                    "nas_softmax_s8({x}, {}, &{p}_p, {y})",
                    n / sm.len as usize
                ));
            }
            Op::LayerNorm(ln) | Op::ScaledLayerNorm(ln) => {
                g.i8s(&format!("{p}_g"), &ln.gamma);
                g.i32s(&format!("{p}_be"), &ln.beta);
                let nm = &ln.norm;
                g.param(format!(
                    "static const nas_layernorm_params {p}_p = {{{}, {}, {}u, {}, {p}_g, {p}_be, {}}};",
                    nm.len,
                    nm.r,
                    nm.eps_q,
                    nm.g,
                    c_dyadic(ln.requant)
                ));
                let f = if matches!(node.op, Op::LayerNorm(_)) {
                    "nas_layernorm_s8"
                } else {
                    "nas_scaled_layernorm_s8"
                };
                g.call(format!("{f}({x}, {}, &{p}_p, {y})", n / nm.len as usize));
            }
            Op::ConcatClassToken { token } => {
                g.i8s(&format!("{p}_tok"), token);
                g.call(format!(
                    "nas_concat_class_token_s8({x}, {}, {}, {p}_tok, {y})",
                    xs[0], xs[1]
                ));
            }
            Op::Reshape { .. } => {
                let _ = writeln!(g.body, "    /* reshape: aliases its input, no code */");
            }
            Op::Transpose { perm } => {
                g.usizes(&format!("{p}_shape"), &xs);
                g.usizes(&format!("{p}_perm"), perm);
                g.call(format!(
                    "nas_transpose_s8({x}, {p}_shape, {p}_perm, {}, {y})",
                    xs.len()
                ));
            }
            Op::Requant(d) => {
                g.param(format!("static const nas_dyadic {p}_d = {};", c_dyadic(*d)));
                g.call(format!("nas_requant_s8({x}, {n}, {p}_d, {y})"));
            }
            Op::SelectToken { index } => {
                g.call(format!("nas_copy_s8({x} + {}, {n}, {y})", index * n));
            }
        }
    }
    let mut out_off = 0usize;
    for o in &graph.outputs {
        let _ = writeln!(
            g.body,
            "    memcpy(out + {out_off}, {}, {});",
            ptr(o),
            numel(o)
        );
        out_off += numel(o);
    }

    if let Some(limit) = limits.sram_bytes
        && arena_bytes > limit
    {
        return Err(ExportError::ArenaTooLarge {
            need: arena_bytes,
            limit,
        });
    }
    if let Some(limit) = limits.flash_bytes
        && g.weight_bytes > limit
    {
        return Err(ExportError::FlashTooLarge {
            need: g.weight_bytes,
            limit,
        });
    }

    let up = name.to_ascii_uppercase();
    let mut h = String::new();
    let _ = writeln!(
        h,
        "/* {name}.h - generated by the `export` crate from an integer graph; do not edit. */\n\
         #ifndef {up}_H\n#define {up}_H\n\n#include <stdint.h>\n\n\
         /* int8 elements of all graph inputs, concatenated in order */\n\
         #define {up}_INPUT_LEN {input_len}\n\
         /* int8 elements of all graph outputs, concatenated in order */\n\
         #define {up}_OUTPUT_LEN {output_len}\n\
         /* bytes of the static activation arena (SRAM) */\n\
         #define {up}_ARENA_BYTES {arena_bytes}\n\
         /* bytes of constant arrays: weights, biases, tables, multipliers (flash) */\n\
         #define {up}_WEIGHT_BYTES {}\n",
        g.weight_bytes
    );
    h.push_str("/* Layout of `in` (real value = q * m * 2^-s):\n");
    let mut off = 0;
    for i in &graph.inputs {
        let t = info[i.as_str()];
        let _ = writeln!(
            h,
            " *   [{off}..{}) `{}` shape {:?} scale {} * 2^-{}",
            off + t.numel(),
            comment_safe(i),
            t.shape,
            t.scale.m,
            t.scale.s
        );
        off += t.numel();
    }
    h.push_str(" * Layout of `out`:\n");
    let mut off = 0;
    for o in &graph.outputs {
        let t = info[o.as_str()];
        let _ = writeln!(
            h,
            " *   [{off}..{}) `{}` shape {:?} scale {} * 2^-{}",
            off + t.numel(),
            comment_safe(o),
            t.shape,
            t.scale.m,
            t.scale.s
        );
        off += t.numel();
    }
    let _ = writeln!(
        h,
        " */\n\n/* Runs one sample. Not reentrant: all activations live in one static arena. */\n\
         void {name}_run(const int8_t *in, int8_t *out);\n"
    );
    if let Some(decl) = crate::front_end::header(graph, name) {
        h.push_str(&decl);
        h.push('\n');
    }
    let _ = writeln!(h, "#endif /* {up}_H */");

    let mut c = String::new();
    let _ = writeln!(
        c,
        "/* {name}.c - generated by the `export` crate; do not edit.\n \
         * Constants are `static const` (flash); activations share one static arena (SRAM)\n \
         * at offsets fixed by the memory planner. */\n\
         #include <string.h>\n#include \"nas_kernels.h\"\n#include \"nas_sparse.h\"\n#include \"{name}.h\"\n\n\
         /* word-aligned arena (the planner aligns every buffer to 4 bytes) */\n\
         static union {{\n    int32_t align;\n    int8_t b[{}];\n}} nas_arena;",
        arena_bytes.max(1)
    );
    c.push_str(&g.consts);
    let _ = writeln!(
        c,
        "\nvoid {name}_run(const int8_t *in, int8_t *out) {{\n    (void)in;\n{}}}",
        g.body
    );
    if let Some(front_end) = crate::front_end::source(graph, name) {
        c.push_str(&front_end);
    }

    let mut files = vec![
        (format!("{name}.h"), h),
        (format!("{name}.c"), c),
        ("Makefile".to_string(), makefile(name)),
    ];
    for (f, text) in RUNTIME_FILES {
        files.push((f.to_string(), text.to_string()));
    }
    if g.weight_bytes as u64 != plan.weight_bytes {
        // the cost model's flash figure and the emitted constants must agree exactly
        return Err(ExportError::Plan(format!(
            "internal: emitted {} constant bytes, the cost model counts {}",
            g.weight_bytes, plan.weight_bytes
        )));
    }
    let tensor_offsets = plan
        .buffers
        .iter()
        .zip(&plan.offsets)
        .map(|(b, &o)| (b.name.clone(), o as usize))
        .collect();
    Ok(CProject {
        report: ExportReport {
            name: name.into(),
            arena_bytes,
            weight_bytes: g.weight_bytes,
            planner: plan.planner.label().to_string(),
            fused_attention: plan.fused.len(),
            input_len,
            output_len,
            tensor_offsets,
            files: Vec::new(),
        },
        files,
    })
}

/// The arena offset of a node's kernel scratch (`<node>.scratch`), if the plan gave it one.
fn scratch_offset(plan: &Int8Plan, node: &str) -> Option<u64> {
    let name = format!("{node}.scratch");
    plan.buffers
        .iter()
        .position(|b| b.name == name)
        .map(|b| plan.offsets[b])
}

/// The operand tile of a node the runtime runs as a Linear: its arena scratch as an `int32_t *`,
/// or `NULL` when the plan gave it none.
fn tile_ptr(plan: &Int8Plan, node: &str) -> String {
    scratch_offset(plan, node).map_or_else(
        || "NULL".to_string(),
        |o| format!("(int32_t *)(void *)(nas_arena.b + {o})"),
    )
}

fn c_strides(v: &View) -> String {
    format!("{{{}, {}, {}}}", v.head, v.row, v.inner)
}

/// The fused (depth-first tiled) attention kernel at node `i`.
fn emit_attention(
    g: &mut Generated,
    i: usize,
    node: &quant::Node,
    fa: &FusedAttention,
    plan: &Int8Plan,
    opts: &Int8Options,
    ptr: &dyn Fn(&str) -> String,
) {
    let p = &format!("n{i}");
    let sm = &fa.softmax;
    let kind = if fa.fwsa { "FWSA" } else { "MHSA" };
    let _ = writeln!(
        g.consts,
        "\n/* node {i} `{}`: fused {kind} attention (depth-first, S->H->S) */",
        comment_safe(&node.name)
    );
    let lut = g.softmax_lut(p, sm, opts.softmax_lut);
    g.param(format!(
        "static const nas_attention_params {p}_att = {{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, \
         {{{}, {}, {{{}, {}, {}}}, {lut}, {}}}, {}, {}}};",
        fa.heads,
        fa.rows,
        fa.keys,
        fa.inner,
        fa.v_inner,
        c_strides(&fa.q),
        c_strides(&fa.k),
        c_strides(&fa.v),
        c_strides(&fa.out),
        c_dyadic(fa.score_rq),
        sm.len,
        sm.j,
        sm.exp.q_ln2,
        sm.exp.q_b,
        sm.exp.q_c,
        sm.out_shift,
        c_dyadic(fa.out_rq),
        i32::from(fa.tiled)
    ));
    let scratch = scratch_offset(plan, &node.name)
        .map_or_else(|| "NULL".to_string(), |o| format!("(nas_arena.b + {o})"));
    let _ = writeln!(
        g.body,
        "    /* {i}: `{}` fused {kind} attention, H={} S={} T={} P={}: never materializes the \
         {}x{}x{} attention matrix */",
        comment_safe(&node.name),
        fa.heads,
        fa.rows,
        fa.keys,
        fa.inner,
        fa.heads,
        fa.rows,
        fa.keys
    );
    let f = if fa.fwsa {
        "nas_fwsa_s8"
    } else {
        "nas_attention_s8"
    };
    g.call(format!(
        "{f}({}, {}, {}, &{p}_att, {scratch}, {})",
        ptr(&fa.q.tensor),
        ptr(&fa.k.tensor),
        ptr(&fa.v.tensor),
        ptr(&fa.out.tensor)
    ));
}

/// Build targets of the generated Makefile: `(make target, compiler, flags, linker flags, run
/// command prefix)`. The flags are the ones that boot on QEMU here (see TOOLCHAINS.md).
pub const MAKE_TARGETS: [(&str, &str, &str, &str, &str); 5] = [
    ("host", "gcc", "-O2", "", ""),
    (
        "host-asan",
        "gcc",
        "-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer",
        "",
        "ASAN_OPTIONS=detect_leaks=0",
    ),
    (
        "m4",
        "arm-none-eabi-gcc",
        "-O2 -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 $(PICOLIBC)",
        "$(ARM_MEM)",
        "qemu-system-arm -M mps2-an386 -nographic -semihosting -kernel",
    ),
    (
        "m7",
        "arm-none-eabi-gcc",
        "-O2 -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16 $(PICOLIBC)",
        "$(ARM_MEM)",
        "qemu-system-arm -M mps2-an500 -nographic -semihosting -kernel",
    ),
    (
        "rv32",
        "riscv64-unknown-elf-gcc",
        // loop heads word-aligned: the CV32E40P takes a cycle more to jump to a 32-bit
        // instruction that is not (1.5 % more code, 3 % fewer cycles on EEGFormer's attention)
        "-O2 -falign-loops=4 -march=rv32imc -mabi=ilp32 $(PICOLIBC)",
        "$(RV_MEM)",
        "qemu-system-riscv32 -M virt -cpu rv32,a=false,f=false,d=false -bios none -nographic -semihosting -kernel",
    ),
];

fn makefile(name: &str) -> String {
    let mut m = format!(
        "# Generated by the `export` crate for model `{name}`.\n\
         #   make <t>      compile the model and runtime for target <t> into build/<t>/\n\
         #                 (and link build/<t>/{name}.elf when a main.c is present)\n\
         #   make run-<t>  run build/<t>/{name}.elf (natively or under QEMU, 60 s timeout)\n\
         # Targets: host, host-asan (gcc + ASan/UBSan), m4 (Cortex-M4, mps2-an386),\n\
         # m7 (Cortex-M7, mps2-an500), rv32 (rv32imc, QEMU virt). Cross targets need:\n\
         #   apt-get install -y --no-install-recommends {}\n\n\
         NAME := {name}\n\
         SRCS := $(NAME).c nas_kernels.c nas_sparse.c $(wildcard main.c)\n\
         HDRS := $(NAME).h nas_kernels.h nas_dsp.h nas_sparse.h\n\
         CFLAGS_COMMON := -std=c99 -Wall -Wextra -Werror\n\
         # picolibc + semihosting boots QEMU's boards without a linker script or startup file\n\
         PICOLIBC := --specs=picolibc.specs --oslib=semihost --crt0=semihost\n\
         ARM_MEM := -Wl,--defsym=__flash=0x0 -Wl,--defsym=__flash_size=0x400000 \
         -Wl,--defsym=__ram=0x20000000 -Wl,--defsym=__ram_size=0x400000\n\
         RV_MEM := -Wl,--defsym=__flash=0x80000000 -Wl,--defsym=__flash_size=0x400000 \
         -Wl,--defsym=__ram=0x80400000 -Wl,--defsym=__ram_size=0x400000\n\
         # a faulting guest can hang QEMU: always run under a timeout\n\
         TIMEOUT := timeout 60\n\n\
         .PHONY: all clean",
        crate::error::APT_PACKAGES
    );
    for (t, ..) in MAKE_TARGETS {
        let _ = write!(m, " {t} run-{t}");
    }
    m.push_str("\nall: host\nclean:\n\trm -rf build\n");
    for (t, cc, flags, ld, run) in MAKE_TARGETS {
        let _ = write!(
            m,
            "\n# ---- {t} ----\n\
             {t}_OBJS := $(patsubst %.c,build/{t}/%.o,$(SRCS))\n\
             ifneq ($(wildcard main.c),)\n\
             {t}: build/{t}/$(NAME).elf\n\
             else\n\
             {t}: $({t}_OBJS)\n\
             endif\n\
             build/{t}/%.o: %.c $(HDRS)\n\
             \t@mkdir -p build/{t}\n\
             \t{cc} $(CFLAGS_COMMON) {flags} -c $< -o $@\n\
             build/{t}/$(NAME).elf: $({t}_OBJS)\n\
             \t{cc} $(CFLAGS_COMMON) {flags} $^ {ld} -o $@\n\
             run-{t}: build/{t}/$(NAME).elf\n\
             \t{run_env}$(TIMEOUT) {run_cmd}\n",
            run_env = if t == "host-asan" {
                format!("{run} ")
            } else {
                String::new()
            },
            run_cmd = if run.is_empty() || t == "host-asan" {
                format!("./build/{t}/$(NAME).elf")
            } else {
                format!("{run} build/{t}/$(NAME).elf")
            },
        );
    }
    m
}

/// Writes the project files into `out_dir` (created if needed).
pub fn write_project(project: &CProject, out_dir: &Path) -> Result<ExportReport> {
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let mut report = project.report.clone();
    for (f, text) in &project.files {
        let path = out_dir.join(f);
        std::fs::write(&path, text).map_err(io_err(&path))?;
        report.files.push(path);
    }
    Ok(report)
}

/// Exports `graph` as a self-contained C project in `out_dir`: `<name>.h`, `<name>.c`, the
/// runtime ([`RUNTIME_FILES`]) and a `Makefile`. No limits.
pub fn export_c(graph: &Graph, name: &str, out_dir: &Path) -> Result<ExportReport> {
    export_c_with_limits(graph, name, out_dir, &ExportLimits::default())
}

/// [`export_c`] with SRAM / flash budgets: an export over budget fails before any file is
/// written.
pub fn export_c_with_limits(
    graph: &Graph,
    name: &str,
    out_dir: &Path,
    limits: &ExportLimits,
) -> Result<ExportReport> {
    let project = generate(graph, name, limits)?;
    write_project(&project, out_dir)
}

/// [`export_c_with_limits`] with the schedule options (e.g. attention fusion off).
pub fn export_c_with(
    graph: &Graph,
    name: &str,
    out_dir: &Path,
    limits: &ExportLimits,
    opts: &Int8Options,
) -> Result<ExportReport> {
    let project = generate_with(graph, name, limits, opts)?;
    write_project(&project, out_dir)
}

#[cfg(test)]
mod tests {
    use super::RUNTIME_FILES;

    /// The cost model's rule for which Conv2d layers gather their windows uses the runtime's
    /// window limit.
    #[test]
    fn conv_gather_limit_matches_the_runtime() {
        let src = RUNTIME_FILES
            .iter()
            .find(|(name, _)| *name == "nas_kernels.c")
            .unwrap()
            .1;
        let limit: usize = src
            .lines()
            .find_map(|l| l.strip_prefix("#define NAS_CONV_PATCH "))
            .expect("nas_kernels.c defines NAS_CONV_PATCH")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(limit, cost::ops::CONV_GATHER_MAX_BYTES);
    }
}
