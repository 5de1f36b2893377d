//! Gradients of one batch computed in shards on threads: Burn's CPU backends run most of a
//! training step on one core, so the trainers split a batch into parts whose forward and
//! backward passes run concurrently.

use std::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};

/// The gradients of the mean loss of a batch of `batch` samples, its loss and a count the
/// caller accumulates (e.g. correct predictions), with `loss_of(model, samples)` the mean loss
/// of `samples` (a range of the batch) under `model`.
///
/// With `shards` > 1 each part runs on its own thread with its own `fork` of the model (plain
/// clones share the parameters' autodiff nodes, Burn merges such graphs into one
/// mutex-guarded graph and their backward passes run one after another); each part's loss is
/// weighted by its share of the batch and the gradients are summed in part order. The result
/// depends on `shards` (float rounding, as any batch split) but not on the threads' timing.
/// The gradients are keyed by parameter id, so they apply to `model` or to any module that
/// shares its parameters (a supernet a path was extracted from).
pub fn sharded_grads<M, F>(
    model: &M,
    device: &Device,
    batch: usize,
    shards: usize,
    loss_of: F,
) -> (GradientsParams, f32, u64)
where
    M: Module + Send,
    F: Fn(&M, Range<usize>) -> (Tensor<1>, u64) + Sync,
{
    let shards = shards.clamp(1, batch.max(1));
    if shards == 1 {
        let (loss, count) = loss_of(model, 0..batch);
        let loss_value: f32 = loss.clone().into_scalar();
        return (
            GradientsParams::from_grads(loss.backward(), model),
            loss_value,
            count,
        );
    }
    let loss_of = &loss_of;
    let parts: Vec<(GradientsParams, f32, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..shards)
            .map(|i| {
                let (lo, hi) = (i * batch / shards, (i + 1) * batch / shards);
                let part = model.clone().fork(device);
                let weight = (hi - lo) as f64 / batch as f64;
                scope.spawn(move || {
                    let (loss, count) = loss_of(&part, lo..hi);
                    let loss = loss * weight;
                    let loss_value: f32 = loss.clone().into_scalar();
                    let grads = GradientsParams::from_grads(loss.backward(), &part);
                    (grads, loss_value, count)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a training shard panicked"))
            .collect()
    });
    let mut acc = GradientsAccumulator::new();
    let (mut loss_value, mut count) = (0.0f32, 0u64);
    for (grads, l, c) in parts {
        acc.accumulate(model, grads);
        loss_value += l;
        count += c;
    }
    (acc.grads(), loss_value, count)
}
