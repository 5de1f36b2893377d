//! How float constants (weights, biases, LayerNorm gains and offsets, embeddings) become
//! integers offline: in f32, with the very operations QAT's fake-quantized forward rounds them
//! with (`training::fake_quant`, `training::qat`): a step `max|v| / 127` computed in f32, each
//! value divided by its step in f32 and rounded half away from zero. IEEE f32 division is
//! correctly rounded on every CPU, so a QAT model's lowered graph stores exactly the codes its
//! forward trained with. In f64 they differed wherever the f32 quotient lands on a tie: on a
//! QAT-tuned KWT-1 one LayerNorm gain was 126.5 in f32 and 126.5000025 in f64, one code apart,
//! which moved 0.6 % of that LayerNorm's output codes (experiments/quantization).

/// `max|v| / 127` in f32; 1 for values that are all zero (any step rounds them to 0).
pub fn abs_max_step(values: impl IntoIterator<Item = f32>) -> f32 {
    let max = values.into_iter().fold(0f32, |m, v| m.max(v.abs()));
    if max > 0.0 { max / 127.0 } else { 1.0 }
}

/// `sign(v) floor(|v| + 1/2)` in f32: rounding half away from zero, as QAT's forward computes
/// it (`training::fake_quant::round_half_away`).
pub fn round_half_away(v: f32) -> f32 {
    if v == 0.0 {
        0.0
    } else {
        v.signum() * (v.abs() + 0.5).floor()
    }
}

/// `v / step` rounded half away from zero, saturated to the symmetric int8 range `[-127, 127]`.
pub fn to_int8(v: f32, step: f32) -> i8 {
    round_half_away((v / step).clamp(-127.0, 127.0)) as i8
}

/// `v / step` rounded half up (`floor(q + 1/2)`) and saturated to `[min, 127]`, as QAT's
/// learned points round (`training::fake_quant::fake_quant`, at their power-of-two steps) and
/// the graph's requantization does.
pub fn to_int8_half_up(v: f32, step: f32, min: f32) -> i8 {
    ((v / step).clamp(min, 127.0) + 0.5).floor().min(127.0) as i8
}

/// `v / step` rounded half away from zero, saturated to `[-limit, limit]` (exactly: the
/// clamp is taken in i64, where f32 could not hold a limit near 2^31).
pub fn to_int32(v: f32, step: f32, limit: i32) -> i32 {
    let limit = i64::from(limit).abs();
    (round_half_away(v / step) as i64).clamp(-limit, limit) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_away_from_zero_and_saturate() {
        assert_eq!(to_int8(2.5, 1.0), 3);
        assert_eq!(to_int8(-2.5, 1.0), -3);
        assert_eq!(to_int8(2.4999998, 1.0), 2);
        assert_eq!(to_int8(0.0, 1.0), 0);
        assert_eq!(to_int8(-1000.0, 1.0), -127);
        assert_eq!(to_int8_half_up(-2.5, 1.0, -128.0), -2);
        assert_eq!(to_int8_half_up(2.5, 1.0, -128.0), 3);
        assert_eq!(to_int8_half_up(-500.0, 1.0, -128.0), -128);
        assert_eq!(to_int8_half_up(-500.0, 1.0, -127.0), -127);
        assert_eq!(to_int8_half_up(500.0, 1.0, -127.0), 127);
        assert_eq!(to_int32(-7.5, 0.5, 10), -10);
        assert_eq!(to_int32(5.25, 0.5, 100), 11);
        // a limit f32 cannot hold (2^31 - 65 rounds to 2^31 in f32) still bounds exactly
        assert_eq!(to_int32(1e12, 1.0, i32::MAX - 64), i32::MAX - 64);
        assert_eq!(to_int32(f32::NEG_INFINITY, 1.0, 7), -7);
        assert_eq!(abs_max_step([0.0, -0.0]), 1.0);
        assert_eq!(abs_max_step([0.5, -1.27]), 1.27f32 / 127.0);
    }

    /// QAT's forward (Burn, f32) rounds a tensor at its abs-max step to the very codes
    /// [`to_int8`] stores, ties included: half of these values are built to sit on one.
    #[test]
    fn codes_are_the_ones_qat_computes() {
        use burn::tensor::{Device, Tensor, TensorData};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let device = Device::flex();
        let mut ties = 0;
        for _ in 0..200 {
            let max = rng.random_range(0.01f32..4.0);
            let step = max / 127.0;
            let mut v: Vec<f32> = (0..64)
                .map(|i| match i % 2 {
                    0 => rng.random_range(-max..max),
                    _ => (rng.random_range(-127i32..127) as f32 + 0.5) * step,
                })
                .collect();
            v[0] = max;
            ties += v
                .iter()
                .filter(|&&x| (x / step).fract().abs() == 0.5)
                .count();
            let t = Tensor::<1>::from_data(TensorData::new(v.clone(), [64]), &device);
            let fq: Vec<f32> = training::fake_quant::fake_quant_abs_max(t)
                .into_data()
                .iter::<f32>()
                .collect();
            let s = abs_max_step(v.iter().copied());
            for (x, f) in v.iter().zip(&fq) {
                assert_eq!(*f, to_int8(*x, s) as f32 * s, "{x} at step {s}");
            }
        }
        assert!(ties > 1000, "only {ties} ties exercised");
    }

    /// Per-channel Linear weights: QAT's `fake_quant_per_channel` of a `[in, out]` weight
    /// against the graph's `quantize_weight` of its `[out, in]` transpose, ties included.
    #[test]
    fn per_channel_weights_are_the_ones_qat_computes() {
        use burn::tensor::{Device, Tensor, TensorData};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (d_in, d_out) = (48, 32);
        let maxes: Vec<f32> = (0..d_out).map(|_| rng.random_range(0.01f32..2.0)).collect();
        let mut w = vec![0f32; d_in * d_out];
        for i in 0..d_in {
            for (o, &m) in maxes.iter().enumerate() {
                let step = m / 127.0;
                w[i * d_out + o] = match (i, i % 2) {
                    (0, _) => m,
                    (_, 0) => rng.random_range(-m..m),
                    _ => (rng.random_range(-127i32..127) as f32 + 0.5) * step,
                };
            }
        }
        let t = Tensor::<2>::from_data(TensorData::new(w.clone(), [d_in, d_out]), &Device::flex());
        let fq: Vec<f32> = training::fake_quant::fake_quant_per_channel(t)
            .into_data()
            .iter::<f32>()
            .collect();
        let rows: Vec<f32> = (0..d_out)
            .flat_map(|o| (0..d_in).map(move |i| (i, o)))
            .map(|(i, o)| w[i * d_out + o])
            .collect();
        let (codes, scales) = crate::ptq::kwt_graph::quantize_weight(&rows, d_in, true);
        for i in 0..d_in {
            for o in 0..d_out {
                let graph = codes[o * d_in + i] as f32 * scales[o] as f32;
                assert_eq!(
                    fq[i * d_out + o],
                    graph,
                    "w[{i}, {o}] = {}",
                    w[i * d_out + o]
                );
            }
        }
    }
}
