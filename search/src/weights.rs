//! The weight tensors of a single-path TinyFormer by the layer names of
//! [`TinyFormerArch::layers`], for pruning and for reading the realized sparsity.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use training::tinyformer::{TinyFormer, TinyFormerArch};

/// A mutable weight: convolutions `[cout, cin/groups, k, k]`, Linear `[in, out]`.
pub enum WeightMut<'a> {
    Conv(&'a mut Param<Tensor<4>>),
    Linear(&'a mut Param<Tensor<2>>),
}

/// Calls `f` with every weight layer's name and weight, in the order of `arch.layers()`.
pub fn for_each_weight_mut(
    model: &mut TinyFormer,
    _arch: &TinyFormerArch,
    mut f: impl FnMut(&str, WeightMut<'_>),
) {
    let conv = |name: String, c: &mut Conv2d, f: &mut dyn FnMut(&str, WeightMut<'_>)| {
        f(&name, WeightMut::Conv(&mut c.weight))
    };
    let lin = |name: String, l: &mut Linear, f: &mut dyn FnMut(&str, WeightMut<'_>)| {
        f(&name, WeightMut::Linear(&mut l.weight))
    };
    let f: &mut dyn FnMut(&str, WeightMut<'_>) = &mut f;
    for (i, s) in model.stages.iter_mut().enumerate() {
        conv(format!("s{i}.down"), &mut s.down.conv, f);
        for (j, m) in s.mobilenets.iter_mut().enumerate() {
            conv(format!("s{i}.mb{j}.expand"), &mut m.expand, f);
            conv(format!("s{i}.mb{j}.dw"), &mut m.dw, f);
            conv(format!("s{i}.mb{j}.project"), &mut m.project, f);
        }
        for (j, t) in s.transformers.iter_mut().enumerate() {
            let p = format!("s{i}.tr{j}");
            conv(format!("{p}.local3"), &mut t.local3, f);
            conv(format!("{p}.local1"), &mut t.local1, f);
            for (e, enc) in t.encoders.iter_mut().enumerate() {
                lin(format!("{p}.enc{e}.qkv"), &mut enc.attn.qkv, f);
                lin(format!("{p}.enc{e}.out"), &mut enc.attn.out, f);
                lin(format!("{p}.enc{e}.fc1"), &mut enc.fc1, f);
                lin(format!("{p}.enc{e}.fc2"), &mut enc.fc2, f);
            }
            conv(format!("{p}.fuse1"), &mut t.fuse1, f);
            conv(format!("{p}.fuse3"), &mut t.fuse3, f);
        }
    }
    if let Some(s) = &mut model.head.seqpool {
        lin("head.seqpool".into(), s, f);
    }
    lin("head.last".into(), &mut model.head.last, f);
    lin("head.classifier".into(), &mut model.head.classifier, f);
}

/// Every weight layer's values (row-major in its tensor layout), by name.
pub fn weights(model: &TinyFormer, arch: &TinyFormerArch) -> BTreeMap<String, Vec<f32>> {
    let mut out = BTreeMap::new();
    // Cloning a module shares its tensors; only the values are read.
    let mut m = model.clone();
    for_each_weight_mut(&mut m, arch, |name, w| {
        let values = match w {
            WeightMut::Conv(p) => p.val().into_data().iter::<f32>().collect(),
            WeightMut::Linear(p) => p.val().into_data().iter::<f32>().collect(),
        };
        out.insert(name.to_string(), values);
    });
    out
}
