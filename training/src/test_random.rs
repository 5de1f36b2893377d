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
    let mut seed = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |v: u64| seed = (seed ^ v).wrapping_mul(0x0100_0000_01b3);
    shape.iter().for_each(|&d| mix(d as u64));
    let values: Vec<f32> = match dist {
        Distribution::Normal(mean, std) => {
            mix(1);
            mix(mean.to_bits());
            mix(std.to_bits());
            let d = rand_distr::Normal::new(mean as f32, std as f32).expect("finite normal");
            let mut rng = StdRng::seed_from_u64(seed);
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
        Distribution::Uniform(low, high) => {
            mix(2);
            mix(low.to_bits());
            mix(high.to_bits());
            let d = rand_distr::Uniform::new(low as f32, high as f32).expect("low < high");
            let mut rng = StdRng::seed_from_u64(seed);
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
        other => panic!("seeded: {other:?} is not drawn by the tests"),
    };
    Tensor::from_data(TensorData::new(values, shape), device)
}
