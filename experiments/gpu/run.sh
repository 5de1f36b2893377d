#!/usr/bin/env bash
# Runs on the lent GPU machine from the repository root, with .bin/ and .gl/ carried
# (experiments/gpu/prepare.sh makes them): the KWT-1 training throughput of Burn (wgpu) beside
# PyTorch (CUDA) on the same GPU, then a resumable TinyFormer search on Fashion-MNIST for the
# seconds left. Everything it measures lands under $OUT (the device tool brings it back).
#   SEARCH_SECONDS  wall-clock budget of the search stage (default 300; 0 skips it)
#   SKIP_BENCH=1    skip the throughput stage (a later session resuming the search)
#   BENCH_PRESET, BENCH_BATCHES  the KWT and batch sizes benchmarked (default kwt-1, "512 64")
#   VK_DRIVER_FILES  the Vulkan driver (default: the lent machine's NVIDIA one; Mesa's lavapipe,
#                    /usr/share/vulkan/icd.d/lvp_icd.x86_64.json, for a dry run without a GPU)
# A search cut off by the budget resumes where it stopped: carry its folder back as
# .bin/search-state (see experiments/gpu/README.md).
set -uo pipefail
OUT=${OUT:-runs/gpu}
SEARCH_SECONDS=${SEARCH_SECONDS:-300}
mkdir -p "$OUT"
log() { echo "[$(date -u +%T)] $*" | tee -a "$OUT/log.txt"; }

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
NAS=/tmp/nas
gunzip -c .bin/nas.gz > "$NAS" && chmod +x "$NAS"
{
    nvidia-smi -L
    echo "cpus: $(nproc)"
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} > "$OUT/machine.txt" 2>&1
log "machine: $(head -1 "$OUT/machine.txt")"

if [ "${SKIP_BENCH:-0}" != 1 ]; then
    for batch in ${BENCH_BATCHES:-512 64}; do
        log "bench batch $batch"
        timeout 180 "$NAS" bench train --backend wgpu --preset "${BENCH_PRESET:-kwt-1}" \
            --batch-size "$batch" --steps 20 --warmup 5 2>&1 | tee -a "$OUT/bench.txt"
        timeout 120 python3 experiments/kwt_throughput/pytorch_kwt.py --device cuda \
            --preset "${BENCH_PRESET:-kwt-1}" --batch-size "$batch" --steps 20 --warmup 5 2>&1 | tee -a "$OUT/bench.txt"
    done
fi

if [ "$SEARCH_SECONDS" -gt 0 ]; then
    if [ -d .bin/search-state ] && [ ! -d "$OUT/search" ]; then
        cp -r .bin/search-state "$OUT/search"
    fi
    log "search for at most $SEARCH_SECONDS s"
    start=$(date +%s)
    timeout "$SEARCH_SECONDS" "$NAS" search --quiet --backend wgpu \
        --config experiments/gpu/fashion_mnist_gpu.ron --out "$OUT/search" 2>&1 |
        tee -a "$OUT/search.txt"
    log "search stage: exit ${PIPESTATUS[0]} after $(($(date +%s) - start)) s (124: cut off, resumable)"
fi
log done
