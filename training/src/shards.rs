//! Gradients of one batch computed in shards on threads: Burn's CPU backends run most of a
//! training step on one core, so the trainers split a batch into parts whose forward and
//! backward passes run concurrently.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};

/// The gradients of the mean loss of a batch of `batch` samples, its loss and a count the
/// caller accumulates (e.g. correct predictions), with `loss_of(model, samples)` the mean loss
/// of `samples` (a range of the batch) under `model`.
///
/// With `shards` > 1 on a CPU device (ignored on others) each part runs on its own thread
/// with its own `fork` of the model (plain clones share the parameters' autodiff nodes, Burn
/// merges such graphs into one mutex-guarded graph and their backward passes run one after
/// another), inside its own rayon pool with an equal share of the global pool's threads (see
/// `shard_pools`); each part's loss is weighted by its share of the batch and the gradients
/// are summed in part order. The result depends on `shards` (float rounding, as any batch
/// split) but not on the threads' timing.
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
    if shards > 1 && !on_cpu(device) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| tracing::info!("batch_shards {shards} ignored: not a CPU device"));
    }
    let shards = effective_shards(device, shards, batch);
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
    let pools = shard_pools(shards);
    let parts: Vec<(GradientsParams, f32, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..shards)
            .map(|i| {
                let (lo, hi) = (i * batch / shards, (i + 1) * batch / shards);
                let part = model.clone().fork(device);
                let weight = (hi - lo) as f64 / batch as f64;
                let pool = pools.as_ref().map(|pools| &pools[i]);
                scope.spawn(move || {
                    let work = move || {
                        let (loss, count) = loss_of(&part, lo..hi);
                        let loss = loss * weight;
                        let loss_value: f32 = loss.clone().into_scalar();
                        let grads = GradientsParams::from_grads(loss.backward(), &part);
                        (grads, loss_value, count)
                    };
                    match pool {
                        Some(pool) => pool.install(work),
                        None => work(),
                    }
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

/// How many parts [`sharded_grads`] splits a batch of `batch` samples into on `device`.
pub fn effective_shards(device: &Device, shards: usize, batch: usize) -> usize {
    if on_cpu(device) {
        shards.clamp(1, batch.max(1))
    } else {
        1
    }
}

/// Whether `device` is one of Burn's CPU backends, whose training step the shards spread over
/// the cores. A GPU runs the whole batch in parallel already, and with 2 shards on wgpu
/// (lavapipe) the quick start's losses drifted from the 1-shard and CPU runs, which agree.
#[allow(deprecated)] // ndarray is deprecated in Burn 0.22 but still a `--backend` choice
fn on_cpu(device: &Device) -> bool {
    let inner = device.clone().inner();
    inner == Device::flex() || inner == Device::ndarray()
}

/// One rayon pool per shard, each with `1 / shards` of the global pool's threads (at least one),
/// kept for the next step; `None` when a pool cannot be built (the shards then share the global
/// pool). Why: the backend's kernels (gemm above 192^3 multiply-adds, flex's convolutions and
/// reductions) fan out over the global pool, so with as many shards as cores every shard's
/// products were split over threads that were busy with the other shards' work, and waited
/// for them (KWT-1, batch 32, 2 cores: the pools alone gave +22-41 % samples/s).
fn shard_pools(shards: usize) -> Option<Arc<Vec<rayon::ThreadPool>>> {
    static POOLS: Mutex<Option<(usize, Arc<Vec<rayon::ThreadPool>>)>> = Mutex::new(None);
    let mut cached = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((n, pools)) = cached.as_ref()
        && *n == shards
    {
        return Some(pools.clone());
    }
    let threads = (rayon::current_num_threads() / shards).max(1);
    let pools: Result<Vec<_>, _> = (0..shards)
        .map(|i| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(move |t| format!("nas-shard{i}-{t}"))
                .build()
        })
        .collect();
    match pools {
        Ok(pools) => {
            let pools = Arc::new(pools);
            *cached = Some((shards, pools.clone()));
            Some(pools)
        }
        Err(e) => {
            tracing::warn!("no thread pool per training shard ({e}); the shards share one");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    #[allow(deprecated)] // ndarray: see `on_cpu`
    fn shards_apply_to_the_cpu_backends() {
        for device in [Device::flex(), Device::ndarray()] {
            assert!(on_cpu(&device));
            assert!(on_cpu(&device.autodiff()));
        }
    }

    /// Every shard runs in its own pool (named after the shard) with its share of the threads,
    /// the pools follow a change of the shard count, and one shard stays on the caller's thread.
    #[test]
    fn each_shard_runs_in_its_own_pool() {
        let device = Device::flex().autodiff();
        let model = crate::init::linear(&mut StdRng::seed_from_u64(1), 4, 3, true, &device);
        let xs: Vec<f32> = (0..12 * 4).map(|i| (i as f32 * 0.3).cos()).collect();
        let x = Tensor::<2>::from_data(TensorData::new(xs, [12, 4]), &device);
        let global = rayon::current_num_threads();
        for shards in [2, 3, 2, 1] {
            let seen = Mutex::new(Vec::new());
            sharded_grads(&model, &device, 12, shards, |m, r| {
                let name = std::thread::current().name().map(str::to_owned);
                seen.lock()
                    .unwrap()
                    .push((r.start, name, rayon::current_num_threads()));
                let part = x.clone().narrow(0, r.start, r.len());
                (
                    crate::fused_ops::linear_layer(m, part)
                        .powf_scalar(2.0)
                        .mean(),
                    0,
                )
            });
            let mut seen = seen.into_inner().unwrap();
            seen.sort_by_key(|s| s.0);
            assert_eq!(seen.len(), shards);
            if shards == 1 {
                assert_eq!(seen[0].2, global, "one shard uses the global pool");
                continue;
            }
            for (i, (_, name, threads)) in seen.iter().enumerate() {
                let name = name.as_deref().unwrap_or("");
                assert!(
                    name.starts_with(&format!("nas-shard{i}-")),
                    "shard {i} ran on {name:?}"
                );
                assert_eq!(*threads, (global / shards).max(1), "shard {i}'s pool size");
            }
        }
    }
}
