//! The prunable layers of the model zoo, by path. KWT has only Linear layers (Burn layout
//! `[d_in, d_out]`); the TinyFormer models will add Conv2d and depthwise layers.
//!
//! KWT paths: `embed`, `blocks.{i}.attn.qkv`, `blocks.{i}.attn.out`, `blocks.{i}.mlp.fc1`,
//! `blocks.{i}.mlp.fc2`, `head.fc` and, with a distillation token, `dist_head.fc`.

use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use training::Kwt;

use crate::config::LayerInfo;
use crate::mask::{BlockGeometry, BlockMask, WeightLayout};

/// Every Linear layer of `model` with its path, in forward order.
pub fn linear_layers(model: &Kwt) -> Vec<(String, &Linear)> {
    let mut out = vec![("embed".to_string(), &model.embed)];
    for (i, b) in model.blocks.iter().enumerate() {
        out.push((format!("blocks.{i}.attn.qkv"), &b.attn.qkv));
        out.push((format!("blocks.{i}.attn.out"), &b.attn.out));
        out.push((format!("blocks.{i}.mlp.fc1"), &b.mlp.fc1));
        out.push((format!("blocks.{i}.mlp.fc2"), &b.mlp.fc2));
    }
    out.push(("head.fc".to_string(), &model.head.fc));
    if let Some(h) = &model.dist_head {
        out.push(("dist_head.fc".to_string(), &h.fc));
    }
    out
}

/// [`linear_layers`], mutable.
pub fn linear_layers_mut(model: &mut Kwt) -> Vec<(String, &mut Linear)> {
    let mut out = vec![("embed".to_string(), &mut model.embed)];
    for (i, b) in model.blocks.iter_mut().enumerate() {
        out.push((format!("blocks.{i}.attn.qkv"), &mut b.attn.qkv));
        out.push((format!("blocks.{i}.attn.out"), &mut b.attn.out));
        out.push((format!("blocks.{i}.mlp.fc1"), &mut b.mlp.fc1));
        out.push((format!("blocks.{i}.mlp.fc2"), &mut b.mlp.fc2));
    }
    out.push(("head.fc".to_string(), &mut model.head.fc));
    if let Some(h) = &mut model.dist_head {
        out.push(("dist_head.fc".to_string(), &mut h.fc));
    }
    out
}

/// Layout of a Burn Linear weight.
pub fn linear_layout(linear: &Linear) -> WeightLayout {
    let [d_in, d_out] = linear.weight.val().dims();
    WeightLayout::LinearInOut { d_in, d_out }
}

/// The prunable layers of a KWT, for [`crate::PruningConfig::plan`].
pub fn kwt_layers(model: &Kwt) -> Vec<LayerInfo> {
    linear_layers(model)
        .into_iter()
        .map(|(name, l)| LayerInfo {
            name,
            layout: linear_layout(l),
        })
        .collect()
}

/// The weights of a Linear layer, row-major `[d_in, d_out]`.
pub fn linear_weights(linear: &Linear) -> Vec<f32> {
    linear.weight.val().into_data().iter::<f32>().collect()
}

/// A `[d_in, d_out]` tensor of 1.0 (kept) and 0.0 (pruned) values on `linear`'s device.
pub fn mask_tensor(linear: &Linear, geom: &BlockGeometry, mask: &BlockMask) -> Tensor<2> {
    let w = linear.weight.val();
    let dims = w.dims();
    let mut values = vec![1.0f32; dims[0] * dims[1]];
    mask.apply(&mut values, geom);
    Tensor::from_data(TensorData::new(values, dims), &w.device())
}

/// Multiplies `linear`'s weight by `mask` (from [`mask_tensor`]) so pruned weights are exactly
/// zero. The parameter keeps its id (the optimizer's state stays attached) and its gradient
/// requirement.
pub fn apply_mask_tensor(linear: &mut Linear, mask: &Tensor<2>) {
    linear.weight = linear.weight.clone().map(|w| {
        let grad = w.is_require_grad();
        let masked = w.detach().mul(mask.clone()).detach();
        if grad { masked.require_grad() } else { masked }
    });
}
