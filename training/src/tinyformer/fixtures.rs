//! Small deterministic data and models for tests of the crates that consume TinyFormers
//! (quantization, export): labeled grating images and a TinyFormer trained a few steps on them,
//! so that its logits depend on the input (a random model's arg-max is nearly constant).

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{TinyFormer, TinyFormerArch};

/// xorshift64 in [-1, 1).
fn next_unit(state: &mut u64) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % 20_000) as f32 / 10_000.0 - 1.0
}

/// `n` labeled CHW images for `a`: class `k` is a grating at angle `k pi / classes` (random
/// frequency, phase and per-channel contrast) plus noise.
pub fn gratings(n: usize, a: &TinyFormerArch, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut state = seed | 1;
    let [c, h, w] = a.input;
    let mut xs = Vec::with_capacity(n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % a.classes;
        let angle = k as f32 * std::f32::consts::PI / a.classes as f32;
        let f = 0.9 + 0.3 * next_unit(&mut state);
        let (fy, fx, ph) = (
            f * angle.sin(),
            f * angle.cos(),
            3.0 * next_unit(&mut state),
        );
        let mut im = Vec::with_capacity(c * h * w);
        for _ in 0..c {
            let amp = 1.0 + 0.4 * next_unit(&mut state);
            for y in 0..h {
                for x in 0..w {
                    let v = (fy * y as f32 + fx * x as f32 + ph).sin();
                    im.push(amp * v + 0.4 * next_unit(&mut state));
                }
            }
        }
        xs.push(im);
        ys.push(k);
    }
    (xs, ys)
}

/// A TinyFormer (init seed 7) trained for `steps` AdamW steps (batch 16, lr 3e-3) on 160
/// [`gratings`] (seed 99), returned off autodiff.
pub fn trained(a: &TinyFormerArch, steps: usize) -> TinyFormer {
    let device = Device::flex().autodiff();
    let mut m = TinyFormer::init(a, 7, &device).expect("a valid fixture architecture");
    let mut optim = AdamWConfig::new().init();
    let (xs, ys) = gratings(160, a, 99);
    let [c, h, w] = a.input;
    let batch = 16;
    for step in 0..steps {
        let idx: Vec<usize> = (0..batch).map(|j| (step * batch + j) % xs.len()).collect();
        let x: Vec<f32> = idx.iter().flat_map(|&i| xs[i].iter().copied()).collect();
        let y: Vec<i64> = idx.iter().map(|&i| ys[i] as i64).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [batch, c, h, w]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch]), &device);
        let loss = crate::loss::smoothed_cross_entropy(m.forward(x), y, 0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        m = optim.step(3e-3, m, grads);
    }
    m.valid()
}
