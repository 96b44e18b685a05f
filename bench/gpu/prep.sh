#!/usr/bin/env bash
# Everything the GPU calls carry, made here in the git-ignored .gpu/ of a fresh checkout (≈ 10 min on
# 2 cores, most of it FA3's and the op library's compile): Stability's reference (.gpu/ref), node and
# the CUDA provider (runtime-a, runtime-b split in two parts: bench/gpu/runtime-split.sh), the
# tokenizers, FA3's sources and the bundle with the CUDA op library. Idempotent: what is there stays.
# Needs the mirrors of Stability-AI/sd3.5, Dao-AILab/flash-attention and NVIDIA/cutlass in
# /work/.mirror (the tool library's fetch), node_modules (npm install) and nvcc.
# Run from anywhere: bash bench/gpu/prep.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for mirror in Stability-AI+sd3.5 Dao-AILab+flash-attention NVIDIA+cutlass; do
  [ -d "/work/.mirror/$mirror/repo" ] || { echo "prep: no mirror /work/.mirror/$mirror (fetch github:${mirror/+//} first)" >&2; exit 1; }
done
[ -d .gpu/ref ] || bash bench/gpu/fetch-reference.sh
[ -f .gpu/runtime-a.tar.xz ] && [ -f .gpu/runtime-b.tar.xz ] || bash ../shared/gpu/make-bundle.sh
[ -f .gpu/runtime-b.tar.xz.part1 ] || split -n 2 -d -a 1 .gpu/runtime-b.tar.xz .gpu/runtime-b.tar.xz.part
if [ ! -d .gpu/tokenizers ]; then
  mkdir -p .gpu/tokenizers
  cp -r ../shared/golden/tokenizers/clip .gpu/tokenizers/clip
  cp -r ../shared/golden/tokenizers/t5_tiny .gpu/tokenizers/t5
  chmod -R u+w .gpu/tokenizers
fi
bash native/fa3-deps.sh
node bench/gpu/bundle.mjs
ls -la .gpu
