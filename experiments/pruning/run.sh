#!/bin/sh
# Reproduces experiments/pruning: a dense KWT-tiny on synthetic key words (made in Rust,
# offline), then blockwise AGP and one-shot pruning with fine-tuning at 0-90% sparsity. CPU only.
# Run from the repository root. Outputs go to runs/pruning/; the recorded copies are here.
set -e
# The recorded run used the dev profile (dependencies at opt-level 3, workspace crates at 1).
cargo build -p nas
NAS=${CARGO_TARGET_DIR:-target}/debug/nas
$NAS train --config configs/prune/kwt_tiny_dense.ron --quiet
$NAS prune --checkpoint runs/pruning/kwt-tiny-dense/best.bpk \
    --config configs/prune/kwt_tiny_agp.ron --quiet
$NAS prune --checkpoint runs/pruning/kwt-tiny-dense/best.bpk \
    --config configs/prune/kwt_tiny_oneshot.ron --sweep 0.5,0.75 --quiet
$NAS prune --checkpoint runs/pruning/kwt-tiny-dense/best.bpk \
    --config configs/prune/kwt_tiny_agp.ron --sweep 0.9 --out runs/pruning/kwt-tiny-agp-90 --quiet
$NAS prune --checkpoint runs/pruning/kwt-tiny-dense/best.bpk \
    --config configs/prune/kwt_tiny_oneshot.ron --sweep 0.9 --out runs/pruning/kwt-tiny-oneshot-90 --quiet
E=experiments/pruning
cp runs/pruning/kwt-tiny-oneshot/sweep.json $E/oneshot-sweep.json
cp runs/pruning/kwt-tiny-agp-90/sweep.json $E/agp-90-sweep.json
cp runs/pruning/kwt-tiny-oneshot-90/sweep.json $E/oneshot-90-sweep.json
cp runs/pruning/kwt-tiny-agp-90/sparsity-90/report.txt $E/report-90.txt
for f in sweep.json sweep.svg; do cp runs/pruning/kwt-tiny-agp/$f experiments/pruning/; done
for s in 00 50 75; do
    cp runs/pruning/kwt-tiny-agp/sparsity-$s/report.txt experiments/pruning/report-$s.txt
    cp runs/pruning/kwt-tiny-agp/sparsity-$s/report.json experiments/pruning/report-$s.json
done
