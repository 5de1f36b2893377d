//! Speed of PTQ calibration, which every `nas quantize` (three times with `--mode qat`) and
//! every KWT search candidate pays: the float graph's forward on one KWT-1 clip, and
//! `calibrate` (forward plus observers) over 32 clips. Untrained KWT-1 weights and seeded
//! random 98x40 features: the cost does not depend on the values.
//! `CARGO_TARGET_DIR=/tmp/target-quant cargo bench -p quant --bench calibration`

use burn::tensor::Device;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quant::ptq::FloatGraph;
use quant::ptq::kwt_graph::{calibrate, scale_groups};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use training::KwtConfig;

const CLIPS: usize = 32;

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let cfg = KwtConfig::preset("kwt-1", 12).expect("preset");
    let model = cfg.init(0, &device).expect("model");
    let fg = FloatGraph::from_kwt(&model, &cfg).expect("float graph");
    let mut rng = StdRng::seed_from_u64(1);
    let clips: Vec<Vec<f32>> = (0..CLIPS)
        .map(|_| {
            (0..cfg.frames * cfg.features)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect()
        })
        .collect();
    let (groups, n_groups) = scale_groups(&fg);
    let mut g = c.benchmark_group("calibration");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("float-graph-run/kwt-1", |b| {
        b.iter(|| black_box(fg.run(black_box(&clips[0])).expect("run")))
    });
    g.throughput(Throughput::Elements(CLIPS as u64));
    g.bench_function(format!("calibrate/kwt-1/{CLIPS}-clips"), |b| {
        b.iter(|| {
            black_box(calibrate(&fg, &groups, n_groups, black_box(&clips)).expect("calibrate"))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
