//! Cross-module tests: whole graphs through builder, validation, file format and interpreter.

use proptest::prelude::*;

use crate::graph::{Op, Window};
use crate::{Graph, GraphBuilder, Interpreter, QuantError, from_bytes, to_bytes};

/// Small deterministic generator (xorshift64*) for weights in tests.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.next() as i8).collect()
    }
    fn i32s(&mut self, n: usize, lim: i32) -> Vec<i32> {
        (0..n)
            .map(|_| (self.next() % (2 * lim as u64 + 1)) as i32 - lim)
            .collect()
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn scale(&mut self, lo: i32, hi: i32) -> f64 {
        2f64.powf(lo as f64 + (hi - lo) as f64 * self.unit())
    }
    pub(crate) fn f32s(&mut self, n: usize, a: f32, b: f32) -> Vec<f32> {
        (0..n).map(|_| a + (b - a) * self.unit() as f32).collect()
    }
}

/// A one-block KWT-like transformer: [T, F] input, class token, positional embedding,
/// single-head attention with 2 heads, MLP with GELU, class-token head.
fn tiny_transformer(seed: u64) -> Graph {
    let (t, f, d, h, mlp, classes) = (6, 10, 8, 2, 16, 3);
    let mut r = Rng(seed | 1);
    let mut b = GraphBuilder::new();
    let s = 2f64.powi(-4);
    b.input("x", &[t, f], s).unwrap();
    b.linear("embed", "x", r.i8s(d * f), r.i32s(d, 500), &[0.01], s)
        .unwrap();
    b.same_scale("cls", "embed", Op::ConcatClassToken { token: r.i8s(d) })
        .unwrap();
    b.add_embedding("pos", "cls", r.i8s((t + 1) * d), 0.02, s)
        .unwrap();
    b.layer_norm(
        "ln1",
        "pos",
        &r.f32s(d, 0.5, 1.5),
        &r.f32s(d, -0.2, 0.2),
        1e-5,
        2f64.powi(-5),
    )
    .unwrap();
    for (name, w) in ["q", "k", "v"].iter().zip([0.02, 0.02, 0.02]) {
        b.linear(name, "ln1", r.i8s(d * d), r.i32s(d, 200), &[w], s)
            .unwrap();
        b.split_heads(name, h).unwrap();
    }
    b.matmul("scores", "q_h", "k_h", true, 2f64.powi(-3))
        .unwrap();
    b.softmax("attn", "scores").unwrap();
    b.matmul("ctx_h", "attn", "v_h", false, s).unwrap();
    b.merge_heads("ctx", "ctx_h").unwrap();
    b.linear(
        "proj",
        "ctx",
        r.i8s(d * d),
        r.i32s(d, 100),
        &r.f32s(d, 0.01, 0.03)
            .iter()
            .map(|&v| v as f64)
            .collect::<Vec<_>>(),
        s,
    )
    .unwrap();
    b.add("res1", "pos", "proj", s).unwrap();
    b.scaled_layer_norm(
        "ln2",
        "res1",
        &r.f32s(d, 0.5, 1.5),
        &r.f32s(d, -0.2, 0.2),
        1e-5,
        2f64.powi(-5),
    )
    .unwrap();
    b.linear(
        "fc1",
        "ln2",
        r.i8s(mlp * d),
        r.i32s(mlp, 100),
        &[0.02],
        2f64.powi(-4),
    )
    .unwrap();
    b.gelu("gelu", "fc1", 2f64.powi(-4)).unwrap();
    b.linear("fc2", "gelu", r.i8s(d * mlp), r.i32s(d, 100), &[0.02], s)
        .unwrap();
    b.add("res2", "res1", "fc2", s).unwrap();
    b.same_scale("tok", "res2", Op::SelectToken { index: 0 })
        .unwrap();
    b.linear(
        "head",
        "tok",
        r.i8s(classes * d),
        r.i32s(classes, 100),
        &[0.03],
        2f64.powi(-3),
    )
    .unwrap();
    b.output("head");
    b.finish().unwrap()
}

fn tiny_cnn(seed: u64) -> Graph {
    let mut r = Rng(seed | 1);
    let mut b = GraphBuilder::new();
    b.input("img", &[9, 7, 3], 2f64.powi(-6)).unwrap();
    let w3 = Window {
        k: [3, 3],
        stride: [2, 1],
        pad: [1, 1],
    };
    b.conv2d(
        "conv",
        "img",
        w3,
        r.i8s(4 * 9 * 3),
        r.i32s(4, 1000),
        &[0.01, 0.02, 0.015, 0.03],
        2f64.powi(-5),
    )
    .unwrap();
    b.same_scale("relu", "conv", Op::Relu).unwrap();
    b.depthwise_conv2d(
        "dw",
        "relu",
        Window {
            k: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
        },
        r.i8s(9 * 4),
        r.i32s(4, 300),
        &[0.02],
        2f64.powi(-5),
    )
    .unwrap();
    b.same_scale(
        "max",
        "dw",
        Op::MaxPool2d(Window {
            k: [2, 2],
            stride: [2, 2],
            pad: [1, 1],
        }),
    )
    .unwrap();
    b.same_scale(
        "avg",
        "max",
        Op::AvgPool2d(Window {
            k: [2, 2],
            stride: [1, 1],
            pad: [0, 1],
        }),
    )
    .unwrap();
    b.same_scale("gap", "avg", Op::GlobalAvgPool).unwrap();
    b.linear(
        "fc",
        "gap",
        r.i8s(5 * 4),
        r.i32s(5, 100),
        &[0.05],
        2f64.powi(-3),
    )
    .unwrap();
    b.output("fc");
    b.finish().unwrap()
}

#[test]
fn tiny_transformer_runs_and_traces() {
    let g = tiny_transformer(7);
    let mut it = Interpreter::new(g.clone()).unwrap();
    let mut r = Rng(99);
    let x = r.i8s(60);
    let y = it.run_single(&x).unwrap();
    assert_eq!(y.len(), 3);
    let trace = it.trace();
    assert_eq!(trace.len(), g.tensors.len());
    assert_eq!(trace["attn"].len(), 2 * 7 * 7);
    // every attention row sums to about 1.0 = 256 uint8 codes, stored as p - 128 (each entry
    // rounded: +-0.5 LSB each)
    for row in trace["attn"].chunks(7) {
        let s: i32 = row.iter().map(|&v| v as i32 + 128).sum();
        assert!((s - 256).abs() <= 4, "{row:?}");
    }
    // deterministic
    assert_eq!(it.run_single(&x).unwrap(), y);
    // many samples
    let samples: Vec<Vec<i8>> = (0..50).map(|_| r.i8s(60)).collect();
    assert_eq!(it.run_many(&samples).unwrap().len(), 50);
    // wrong input length is an error naming the tensor
    match it.run_single(&x[..10]) {
        Err(QuantError::BadInput {
            tensor,
            expected: 60,
            found: 10,
        }) => assert_eq!(tensor, "x"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn linear_and_conv_match_integer_reference() {
    let g = tiny_cnn(3);
    let mut it = Interpreter::new(g.clone()).unwrap();
    let x = Rng(5).i8s(9 * 7 * 3);
    it.run_single(&x).unwrap();
    let conv = it.tensor("conv").unwrap();
    let Op::Conv2d {
        weight,
        bias,
        requant,
        ..
    } = &g.nodes[0].op
    else {
        panic!()
    };
    // naive reference straight from the formula
    for oy in 0..5 {
        for ox in 0..7 {
            for o in 0..4 {
                let mut acc = bias[o] as i64;
                for ky in 0..3i64 {
                    for kx in 0..3i64 {
                        let (iy, ix) = (oy as i64 * 2 - 1 + ky, ox as i64 - 1 + kx);
                        if !(0..9).contains(&iy) || !(0..7).contains(&ix) {
                            continue;
                        }
                        for i in 0..3i64 {
                            acc += x[((iy * 7 + ix) * 3 + i) as usize] as i64
                                * weight[(((o as i64 * 3 + ky) * 3 + kx) * 3 + i) as usize] as i64;
                        }
                    }
                }
                let want = requant.get(o).requantize(acc as i32);
                assert_eq!(conv[(oy * 7 + ox) * 4 + o], want);
            }
        }
    }
    assert_eq!(it.tensor("max").unwrap().len(), 3 * 4 * 4);
    assert_eq!(it.tensor("gap").unwrap().len(), 4);
}

#[test]
fn validation_errors_name_the_node() {
    let mut b = GraphBuilder::new();
    b.input("x", &[4, 8], 0.1).unwrap();
    let err = b
        .linear("fc", "x", vec![0; 12 * 3], vec![0; 3], &[0.1], 0.1)
        .unwrap_err();
    assert!(
        matches!(&err, QuantError::InvalidParams { node, .. } if node == "fc"),
        "{err}"
    );
    let err = b
        .linear("fc", "nope", vec![0; 24], vec![0; 3], &[0.1], 0.1)
        .unwrap_err();
    assert!(
        matches!(&err, QuantError::UnknownTensor { tensor, .. } if tensor == "nope"),
        "{err}"
    );
    let err = b
        .same_scale("sel", "x", Op::SelectToken { index: 4 })
        .unwrap_err();
    assert!(
        matches!(&err, QuantError::ShapeMismatch { node, .. } if node == "sel"),
        "{err}"
    );

    let mut g = tiny_transformer(1);
    let i = g.tensors.iter().position(|t| t.name == "attn").unwrap();
    g.tensors[i].scale = crate::Dyadic::pow2(-6).unwrap();
    assert!(matches!(g.validate(), Err(QuantError::ScaleMismatch { node, .. }) if node == "attn"));
    let mut g = tiny_transformer(1);
    let i = g.tensors.iter().position(|t| t.name == "fc1").unwrap();
    g.tensors[i].shape = vec![7, 15];
    assert!(matches!(g.validate(), Err(QuantError::ShapeMismatch { node, .. }) if node == "fc1"));
    let mut g = tiny_transformer(1);
    g.nodes.swap(3, 4);
    assert!(matches!(
        g.validate(),
        Err(QuantError::UnknownTensor { .. })
    ));
    let mut g = tiny_transformer(1);
    if let Op::Linear { bias, .. } = &mut g.nodes[0].op {
        bias[0] = i32::MAX - 10; // accumulator bound violated
    }
    assert!(matches!(g.validate(), Err(QuantError::InvalidParams { node, .. }) if node == "embed"));
}

#[test]
fn file_round_trip_and_corruption() {
    let g = tiny_transformer(11);
    let bytes = to_bytes(&g).unwrap();
    assert_eq!(&bytes[..5], b"NASI8");
    let g2 = from_bytes(&bytes).unwrap();
    assert_eq!(g, g2);
    let x = Rng(3).i8s(60);
    let y1 = Interpreter::new(g).unwrap().run_single(&x).unwrap();
    let y2 = Interpreter::new(g2.clone())
        .unwrap()
        .run_single(&x)
        .unwrap();
    assert_eq!(y1, y2);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.nasi8");
    crate::save(&from_bytes(&bytes).unwrap(), &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(crate::load(&path).is_ok());
    assert!(matches!(
        crate::load(dir.path().join("missing")),
        Err(QuantError::Io { .. })
    ));

    let mut b = bytes.clone();
    b[0] = b'X';
    assert!(matches!(from_bytes(&b), Err(QuantError::BadMagic { .. })));
    let mut b = bytes.clone();
    b[5..9].copy_from_slice(&5u32.to_le_bytes());
    assert!(matches!(
        from_bytes(&b),
        Err(QuantError::UnsupportedVersion {
            found: 5,
            supported: 4
        })
    ));
    // a damaged version naming version 2 fails the checksum (it covers the version since 3)
    b[5..9].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(from_bytes(&b), Err(QuantError::Checksum { .. })));
    // a version-2 file (hash of the payload alone, no GELU table op) is still read
    let v2_hash = crate::format::fnv1a32(&b[crate::format::HEADER_LEN..]);
    b[17..21].copy_from_slice(&v2_hash.to_le_bytes());
    assert_eq!(from_bytes(&b).unwrap(), g2);
    b[5..9].copy_from_slice(&1u32.to_le_bytes());
    let err = from_bytes(&b).unwrap_err();
    assert!(matches!(err, QuantError::ObsoleteVersion { found: 1, .. }));
    assert!(err.to_string().contains("nas quantize"), "{err}");
    assert!(matches!(
        from_bytes(&bytes[..bytes.len() - 1]),
        Err(QuantError::Truncated { .. })
    ));
    assert!(matches!(
        from_bytes(&bytes[..3]),
        Err(QuantError::Truncated { .. })
    ));
    let mut b = bytes.clone();
    b.push(0);
    assert!(matches!(
        from_bytes(&b),
        Err(QuantError::TrailingBytes { extra: 1 })
    ));
    let mut b = bytes.clone();
    let last = b.len() - 2;
    b[last] ^= 0x01;
    assert!(matches!(from_bytes(&b), Err(QuantError::Checksum { .. })));
}

#[test]
fn a_version_3_softmax_reads_at_2_to_the_minus_8_and_a_shifted_one_round_trips() {
    let build = |shift: u32| {
        let mut b = GraphBuilder::new();
        b.input("x", &[3, 40], 2f64.powi(-4)).unwrap();
        b.softmax_at("p", "x", shift).unwrap();
        b.output("p");
        b.finish().unwrap()
    };
    let (plain, fine) = (build(0), build(3));
    assert_eq!(
        fine.tensor("p").unwrap().scale,
        crate::Dyadic::pow2(-11).unwrap()
    );
    assert_eq!(from_bytes(&to_bytes(&fine).unwrap()).unwrap(), fine);
    // a version-3 file has no shift field (and its hash covers version and payload)
    let bytes = to_bytes(&plain).unwrap();
    let json = String::from_utf8(bytes[crate::format::HEADER_LEN..].to_vec()).unwrap();
    assert!(json.contains(",\"out_shift\":0"), "{json}");
    let v3 = json.replace(",\"out_shift\":0", "").into_bytes();
    let mut file = crate::format::MAGIC.to_vec();
    file.extend_from_slice(&3u32.to_le_bytes());
    file.extend_from_slice(&(v3.len() as u64).to_le_bytes());
    let hashed = [3u32.to_le_bytes().as_slice(), &v3].concat();
    file.extend_from_slice(&crate::format::fnv1a32(&hashed).to_le_bytes());
    file.extend_from_slice(&v3);
    assert_eq!(from_bytes(&file).unwrap(), plain);
    // a shift beyond the kernels' range is refused on load
    let bad = to_bytes(&fine)
        .map(|b| String::from_utf8(b[crate::format::HEADER_LEN..].to_vec()).unwrap())
        .unwrap()
        .replace("\"out_shift\":3", "\"out_shift\":9");
    assert!(crate::graph::Graph::validate(&serde_json::from_str(&bad).unwrap()).is_err());
}

#[test]
fn every_single_byte_flip_is_an_error() {
    let bytes = to_bytes(&tiny_cnn(4)).unwrap();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            assert!(
                from_bytes(&b).is_err(),
                "flip {bit:#x} at byte {i} accepted"
            );
        }
    }
}

/// A random chain of ops over a `[t, d]` activation, or a typed error from the builder.
fn random_chain(seed: u64, ops: &[u8], t: usize, d: usize) -> crate::Result<Graph> {
    let mut r = Rng(seed | 1);
    let mut b = GraphBuilder::new();
    let mut cur = b.input("x", &[t, d], r.scale(-8, 2))?;
    for (i, op) in ops.iter().enumerate() {
        let name = format!("n{i}");
        let shape = b.shape(&cur)?;
        let dim = *shape.last().unwrap_or(&1);
        cur = match op % 8 {
            0 => {
                let o = 1 + (r.next() % 24) as usize;
                let ws: Vec<f64> = if r.next().is_multiple_of(2) {
                    vec![r.scale(-10, -2)]
                } else {
                    (0..o).map(|_| r.scale(-10, -2)).collect()
                };
                b.linear(
                    &name,
                    &cur,
                    r.i8s(o * dim),
                    r.i32s(o, 1 << 12),
                    &ws,
                    r.scale(-8, 2),
                )?
            }
            1 => {
                let side = b.requant(&format!("{name}_rq"), &cur, r.scale(-8, 2))?;
                b.add(&name, &cur, &side, r.scale(-8, 2))?
            }
            2 if r.next().is_multiple_of(2) => b.gelu(&name, &cur, r.scale(-8, 2))?,
            2 => b.gelu_table(&name, &cur, r.scale(-8, 2))?,
            3 => {
                // probabilities (zero point -128) are only read as a MatMul's first operand
                let p = b.softmax(&format!("{name}_p"), &cur)?;
                b.matmul(&name, &p, &cur, true, r.scale(-8, 4))?
            }
            4 => b.layer_norm(
                &name,
                &cur,
                &r.f32s(dim, -2.0, 2.0),
                &r.f32s(dim, -1.0, 1.0),
                1e-5,
                r.scale(-8, 2),
            )?,
            5 => b.scaled_layer_norm(
                &name,
                &cur,
                &r.f32s(dim, -2.0, 2.0),
                &r.f32s(dim, -1.0, 1.0),
                1e-5,
                r.scale(-8, 2),
            )?,
            6 if shape.len() == 2 => b.matmul(&name, &cur, &cur, true, r.scale(-8, 4))?,
            _ if shape.len() == 2 => {
                let tr = b.same_scale(
                    &format!("{name}_t"),
                    &cur,
                    Op::Transpose { perm: vec![1, 0] },
                )?;
                b.same_scale(&name, &tr, Op::Relu)?
            }
            _ => b.same_scale(&name, &cur, Op::Relu)?,
        };
    }
    b.output(&cur);
    b.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_run_and_round_trip(
        seed in any::<u64>(),
        ops in proptest::collection::vec(any::<u8>(), 1..8),
        t in 1usize..6,
        d in 1usize..20,
        cut in any::<prop::sample::Index>(),
    ) {
        let g = random_chain(seed, &ops, t, d);
        prop_assume!(g.is_ok());
        let g = g.unwrap();
        let mut it = Interpreter::new(g.clone()).unwrap();
        let mut r = Rng(seed ^ 0x9e37_79b9);
        let inputs: Vec<Vec<i8>> = (0..4).map(|_| r.i8s(t * d)).collect();
        let extreme = vec![vec![127i8; t * d], vec![-128i8; t * d], vec![0i8; t * d]];
        let all: Vec<Vec<i8>> = inputs.into_iter().chain(extreme).collect();
        let outs = it.run_many(&all).unwrap();
        let bytes = to_bytes(&g).unwrap();
        let g2 = from_bytes(&bytes).unwrap();
        let outs2 = Interpreter::new(g2).unwrap().run_many(&all).unwrap();
        prop_assert_eq!(outs, outs2);
        // truncation anywhere is an error, never a panic
        let k = cut.index(bytes.len());
        prop_assert!(from_bytes(&bytes[..k]).is_err());
        let mut flipped = bytes.clone();
        flipped[cut.index(bytes.len())] ^= 0x5a;
        prop_assert!(from_bytes(&flipped).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut b = b"NASI8".to_vec();
        b.extend(&data);
        let _ = from_bytes(&b);
        let _ = from_bytes(&data);
    }
}

#[test]
fn random_chains_mostly_build() {
    let mut ok = 0;
    let mut errs = std::collections::BTreeMap::new();
    for seed in 0..300u64 {
        let ops: Vec<u8> = (0..6)
            .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
            .collect();
        match random_chain(
            seed,
            &ops,
            1 + (seed % 5) as usize,
            1 + (seed % 19) as usize,
        ) {
            Ok(_) => ok += 1,
            Err(e) => {
                *errs
                    .entry(e.to_string().chars().take(60).collect::<String>())
                    .or_insert(0) += 1
            }
        }
    }
    println!("built {ok}/300, errors {errs:#?}");
    assert!(ok >= 240, "only {ok}/300 random graphs built: {errs:#?}");
}

#[test]
fn softmax_probabilities_are_uint8_and_feed_only_a_matmul() {
    // a softmax output read by anything but a MatMul's first operand is refused, naming it
    let mut b = GraphBuilder::new();
    b.input("x", &[2, 4], 0.25).unwrap();
    b.softmax("p", "x").unwrap();
    b.same_scale("r", "p", Op::Relu).unwrap();
    b.output("r");
    let err = b.finish().unwrap_err();
    assert!(
        matches!(&err, QuantError::InvalidParams { node, reason } if node == "r" && reason.contains("`p`")),
        "{err}"
    );
    // p . v with p the uint8 probabilities: uniform rows of 4 are p = 64 each (stored -64),
    // so every output is sum_k 64 v[k, n] times 2^-8 (S_p S_v / S_y): a quarter of v's
    // column sums
    let mut b = GraphBuilder::new();
    b.input("x", &[1, 4], 0.25).unwrap();
    b.input("v", &[4, 3], 1.0).unwrap();
    b.softmax("p", "x").unwrap();
    b.matmul("y", "p", "v", false, 1.0).unwrap();
    b.output("y");
    let g = b.finish().unwrap();
    assert_eq!(g.tensor("p").unwrap().zero_point, -128);
    assert_eq!(g.tensor("p").unwrap().dequantize(-64), 0.25);
    let mut it = Interpreter::new(g).unwrap();
    let v: Vec<i8> = vec![1, -2, 30, 3, -4, 30, 5, -6, 30, 7, -8, 30];
    let out = it.run(&[&[9, 9, 9, 9], &v]).unwrap();
    assert_eq!(it.tensor("p").unwrap(), &[-64i8; 4]);
    assert_eq!(out[0], vec![4, -5, 30]);
}
