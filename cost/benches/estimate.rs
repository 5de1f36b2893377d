//! Candidates per second of the cost model: `estimate` of KWT-tiny and KWT-1 on STM32F746, with
//! every operand tile and with `auto` tiles (KWT-1: every tile free, one extra plan; a chain of
//! 24 Linears whose wide layers sit at the peak: the one-tile-at-a-time search).
//! `CARGO_TARGET_DIR=/tmp/target-cost cargo bench -p cost --bench estimate`

use cost::estimate::estimate;
use cost::graph::{GraphBuilder, OpKind};
use cost::kwt::{KwtConfig, kwt};
use cost::target::Target;
use cost::tiles::TilePolicy;
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
        for tiles in [TilePolicy::Always, TilePolicy::Auto] {
            g.bench_function(format!("{name}/stm32f746/tiles-{}", tiles.label()), |b| {
                b.iter(|| {
                    // Graph construction is part of evaluating a candidate.
                    let mut graph = kwt(black_box(&cfg)).expect("graph");
                    graph.operand_tiles = tiles;
                    black_box(estimate(&graph, &t).expect("estimate"))
                })
            });
        }
    }
    let mut chain = GraphBuilder::new("linear-chain");
    let mut x = chain.input("x", 16 * 64);
    for i in 0..24 {
        let (in_features, out_features) = if i % 2 == 0 { (64, 256) } else { (256, 64) };
        let kind = OpKind::Linear {
            tokens: 16,
            in_features,
            out_features,
            bias: true,
        };
        x = chain.op(format!("fc{i}"), kind, &[&x]);
    }
    let mut chain = chain.build().expect("chain");
    chain.operand_tiles = TilePolicy::Auto;
    g.bench_function("linear-chain-24/stm32f746/tiles-auto", |b| {
        b.iter(|| black_box(estimate(black_box(&chain), &t).expect("estimate")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
