//! Seeded random tensors for tests. Burn's own generator is process-wide and unseeded, so a
//! test drawing from it sees other inputs on every run (and, seeded, other tests' draws in
//! between): a tolerance that holds on most draws then fails now and then.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::Distribution as _;

/// A tensor of `shape` drawn from `dist` (normal or uniform) with a generator seeded by the
/// shape and the distribution: the same call gives the same values on every run.
pub(crate) fn seeded<const D: usize>(
    shape: [usize; D],
    dist: Distribution,
    device: &Device,
) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let (kind, a, b) = match dist {
        Distribution::Normal(mean, std) => (1, mean, std),
        Distribution::Uniform(low, high) => (2, low, high),
        other => panic!("seeded: {other:?} is not drawn by the tests"),
    };
    let mut seed = 0xcbf2_9ce4_8422_2325u64;
    for v in shape
        .iter()
        .map(|&d| d as u64)
        .chain([kind, a.to_bits(), b.to_bits()])
    {
        seed = (seed ^ v).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let values: Vec<f32> = match kind {
        1 => {
            let d = rand_distr::Normal::new(a as f32, b as f32).expect("finite normal");
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
        _ => {
            let d = rand_distr::Uniform::new(a as f32, b as f32).expect("low < high");
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
    };
    Tensor::from_data(TensorData::new(values, shape), device)
}
