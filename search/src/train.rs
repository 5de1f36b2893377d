//! The search's short training runs: SPOS supernet training, single-path training with
//! optional AGP blockwise pruning (masks reapplied after every optimizer step), and accuracy.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use pruning::mask::{BlockGeometry, BlockMask, Score, prune_blocks};
use pruning::schedule::Schedule;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use training::loss::smoothed_cross_entropy;
use training::schedule::WarmupCosine;
use training::tinyformer::{Supernet, SupernetConfig, TinyFormer, TinyFormerArch};

use crate::config::TrainConfig;
use crate::data::ImageTensors;
use crate::error::Result;
use crate::progress::Progress;
use crate::sparsity::{SparseConfig, layout};
use crate::weights::{WeightMut, for_each_weight_mut};

pub(crate) fn optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init()
}

pub(crate) fn schedule(cfg: &TrainConfig, steps: usize) -> WarmupCosine {
    WarmupCosine {
        peak_lr: cfg.lr,
        final_lr: cfg.lr * 0.01,
        warmup_steps: cfg.warmup_steps.min(steps / 2),
        total_steps: steps,
    }
}

/// Endless shuffled epochs of batch indices, from `seed`.
struct Batches {
    order: Vec<usize>,
    pos: usize,
    batch: usize,
    rng: StdRng,
}

impl Batches {
    fn new(n: usize, batch: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        Self {
            order,
            pos: 0,
            batch: batch.min(n).max(1),
            rng,
        }
    }

    fn next_indices(&mut self) -> Vec<usize> {
        if self.pos + self.batch > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.pos = 0;
        }
        let b = self.order[self.pos..self.pos + self.batch].to_vec();
        self.pos += self.batch;
        b
    }
}

/// Gradients of the label-smoothed loss of one batch, in `cfg.batch_shards` parts on threads.
fn batch_grads(
    model: &TinyFormer,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    cfg: &TrainConfig,
    device: &Device,
) -> GradientsParams {
    batch_step(model, x, y, cfg, false, device).0
}

/// [`batch_grads`] with the batch's mean loss and, when `count` asks, its correct predictions.
pub(crate) fn batch_step(
    model: &TinyFormer,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    cfg: &TrainConfig,
    count: bool,
    device: &Device,
) -> (GradientsParams, f32, u64) {
    let [b] = y.dims();
    training::shards::sharded_grads(model, device, b, cfg.batch_shards, |m, r| {
        let logits = m.forward(x.clone().slice(r.clone()));
        let labels = y.clone().slice(r);
        let correct = if count {
            training::metrics::count_correct(logits.clone(), labels.clone())
        } else {
            0
        };
        (
            smoothed_cross_entropy(logits, labels, cfg.label_smoothing),
            correct,
        )
    })
}

/// SPOS: every step trains one uniformly sampled path of the supernet.
#[allow(clippy::too_many_arguments)]
pub fn train_supernet(
    mut supernet: Supernet,
    scfg: &SupernetConfig,
    data: &ImageTensors,
    cfg: &TrainConfig,
    steps: usize,
    seed: u64,
    progress: Option<&Progress>,
    device: &Device,
) -> Result<Supernet> {
    let mut optim = optimizer(cfg);
    let lr = schedule(cfg, steps);
    let mut batches = Batches::new(data.len(), cfg.batch_size, seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5u64);
    let mut start = 0;
    if let Some(p) = progress {
        (supernet, optim, start) = p.resume(supernet, optim, steps)?;
        // the same paths and batches as the interrupted run drew up to there
        for _ in 0..start {
            scfg.sample_path(&mut rng);
            batches.next_indices();
        }
    }
    for step in start..steps {
        let path = scfg.sample_path(&mut rng);
        let model = supernet.extract(scfg, &path)?;
        let (x, y) = data.batch(&batches.next_indices(), device);
        // the path shares the supernet's parameter ids: its gradients update the supernet
        let grads = batch_grads(&model, x, y, cfg, device);
        supernet = optim.step(lr.lr(step), supernet, grads);
        if let Some(p) = progress {
            p.after_step(&supernet, &optim, step + 1, steps)?;
        }
    }
    Ok(supernet)
}

/// The pruning state of a model: one block mask per pruned layer.
#[derive(Debug, Clone, Default)]
pub struct Masks {
    pub layers: BTreeMap<String, (BlockGeometry, BlockMask)>,
}

impl Masks {
    /// Recomputes masks at `fraction` (0..=1) of each layer's target sparsity (AGP's cubic
    /// curve is applied by the caller through `fraction`); masks only grow.
    pub fn update(
        &mut self,
        model: &TinyFormer,
        arch: &TinyFormerArch,
        sparse: &SparseConfig,
        schedule_point: impl Fn(f64) -> f64,
    ) -> Result<()> {
        let weights = crate::weights::weights(model, arch);
        for spec in arch.layers() {
            let (Some(s), Some(l)) = (sparse.get(&spec.name), layout(&spec)) else {
                continue;
            };
            let geom = BlockGeometry::new(l, s.block, &spec.name)?;
            let w = &weights[&spec.name];
            let previous = self.layers.get(&spec.name).map(|(_, m)| m);
            let mask = prune_blocks(
                w,
                &geom,
                schedule_point(s.sparsity),
                Score::L2,
                previous,
                &spec.name,
            )?;
            self.layers.insert(spec.name.clone(), (geom, mask));
        }
        Ok(())
    }

    /// Zeroes the pruned blocks (parameter ids kept, so the optimizer state stays attached).
    pub fn apply(&self, model: TinyFormer, arch: &TinyFormerArch) -> TinyFormer {
        let mut model = model;
        for_each_weight_mut(&mut model, arch, |name, w| {
            let Some((geom, mask)) = self.layers.get(name) else {
                return;
            };
            match w {
                WeightMut::Conv(p) => mask_param(p, geom, mask),
                WeightMut::Linear(p) => mask_param(p, geom, mask),
            }
        });
        model
    }
}

fn mask_param<const D: usize>(p: &mut Param<Tensor<D>>, geom: &BlockGeometry, mask: &BlockMask) {
    *p = p.clone().map(|w| {
        let dims = w.dims();
        let mut m = vec![1.0f32; dims.iter().product()];
        mask.apply(&mut m, geom);
        let m = Tensor::<D>::from_data(TensorData::new(m, dims), &w.device());
        let grad = w.is_require_grad();
        let masked = w.detach().mul(m).detach();
        if grad { masked.require_grad() } else { masked }
    });
}

/// What a single-path training run does besides training.
pub struct PruneRun<'a> {
    pub sparse: &'a SparseConfig,
    pub schedule: Schedule,
}

/// Trains a single-path model for `steps` optimizer steps; with `prune`, AGP pruning runs on
/// its schedule and the masks are reapplied after every step. Returns the model and masks.
#[allow(clippy::too_many_arguments)]
pub fn train_path(
    mut model: TinyFormer,
    arch: &TinyFormerArch,
    data: &ImageTensors,
    cfg: &TrainConfig,
    steps: usize,
    seed: u64,
    prune: Option<PruneRun<'_>>,
    masks: Masks,
    progress: Option<&Progress>,
    device: &Device,
) -> Result<(TinyFormer, Masks)> {
    let mut masks = masks;
    let mut optim = optimizer(cfg);
    let lr = schedule(cfg, steps.max(1));
    let mut batches = Batches::new(data.len(), cfg.batch_size, seed);
    let mut start = 0;
    if let Some(p) = progress {
        (model, optim, start) = p.resume(model, optim, steps)?;
        for _ in 0..start {
            batches.next_indices();
        }
        // The masks in force: the pruned blocks are exactly zero, so pruning the share of
        // the last update before `start` again by magnitude picks the same blocks.
        if let Some(p) = &prune
            && let Some(last) = (0..start).rev().find(|&s| p.schedule.is_update(s))
        {
            masks.update(&model, arch, p.sparse, |target| {
                p.schedule.sparsity(target, last)
            })?;
            model = masks.apply(model, arch);
        }
    }
    for step in start..steps {
        if let Some(p) = &prune
            && p.schedule.is_update(step)
        {
            masks.update(&model, arch, p.sparse, |target| {
                p.schedule.sparsity(target, step)
            })?;
            model = masks.apply(model, arch);
        }
        let (x, y) = data.batch(&batches.next_indices(), device);
        let grads = batch_grads(&model, x, y, cfg, device);
        model = optim.step(lr.lr(step), model, grads);
        model = masks.apply(model, arch);
        if let Some(p) = progress {
            p.after_step(&model, &optim, step + 1, steps)?;
        }
    }
    // Reach the final sparsity even when the schedule ends at the last step.
    if let Some(p) = &prune {
        masks.update(&model, arch, p.sparse, |target| target)?;
        model = masks.apply(model, arch);
    }
    Ok((model, masks))
}

/// One-shot blockwise magnitude pruning to `sparse` (SuperNAS's OneShotPrune).
pub fn prune_one_shot(
    model: TinyFormer,
    arch: &TinyFormerArch,
    sparse: &SparseConfig,
) -> Result<TinyFormer> {
    let mut masks = Masks::default();
    masks.update(&model, arch, sparse, |t| t)?;
    Ok(masks.apply(model, arch))
}

/// Every image's top-1 class, in `data`'s order (the model moved off autodiff).
pub fn predictions(
    model: &TinyFormer,
    data: &ImageTensors,
    batch: usize,
    device: &Device,
) -> Vec<usize> {
    let model = model.valid();
    let plain = device.clone().without_autodiff();
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for chunk in idx.chunks(batch.max(1)) {
        let (x, _) = data.batch(chunk, &plain);
        let classes = model
            .forward(x)
            .argmax(1)
            .reshape([chunk.len()])
            .into_data();
        out.extend(classes.iter::<i64>().map(|c| c as usize));
    }
    out
}

/// Top-1 accuracy on `data` (the model moved off autodiff).
pub fn accuracy(model: &TinyFormer, data: &ImageTensors, batch: usize, device: &Device) -> f64 {
    let predicted = predictions(model, data, batch, device);
    let correct = predicted
        .iter()
        .zip(&data.labels)
        .filter(|(p, l)| p == l)
        .count();
    correct as f64 / data.len().max(1) as f64
}
