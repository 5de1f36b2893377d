#!/usr/bin/env bash
# Packs what experiments/gpu/run.sh needs on the lent GPU machine (which has no cargo) into the
# git-ignored folders .bin/ and .gl/, to be carried by the device tool: `carry: [".bin", ".gl"]`.
# Everything carried travels in at most 64 MiB, so the binary goes gzip-compressed.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --locked -p nas --features wgpu
rm -rf .bin && mkdir -p .bin .gl
strip -o .bin/nas target/release/nas
gzip -9 .bin/nas

# Fashion-MNIST for the search (Debian package dataset-fashion-mnist; the reader takes .gz).
cp -r /usr/share/datasets/fashion-mnist .bin/fashion-mnist

# The Vulkan loader and GL dispatch libraries the NVIDIA Vulkan driver needs (TOOLCHAINS.md).
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    mkdir -p /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086 # $o holds several options on purpose
    apt-get $o update
    # shellcheck disable=SC2086
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .bin .gl
