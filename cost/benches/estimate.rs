//! Candidates per second of the cost model: `estimate` of KWT-tiny and KWT-1 on STM32F746.
//! `CARGO_TARGET_DIR=/tmp/target-cost cargo bench -p cost --bench estimate`

use cost::estimate::estimate;
use cost::kwt::{KwtConfig, kwt};
use cost::target::Target;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;

fn bench(c: &mut Criterion) {
    let t = Target::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/targets/stm32f746.ron"),
    )
    .expect("target file");
    let mut g = c.benchmark_group("estimate");
    g.throughput(Throughput::Elements(1));
    for (name, cfg) in [
        ("kwt-tiny", KwtConfig::tiny()),
        ("kwt-1", KwtConfig::kwt1()),
    ] {
        g.bench_function(format!("{name}/stm32f746"), |b| {
            b.iter(|| {
                // Graph construction is part of evaluating a candidate.
                let graph = kwt(black_box(&cfg)).expect("graph");
                black_box(estimate(&graph, &t).expect("estimate"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
