#!/usr/bin/env bash
# Issue 10's first whole-model FP8 measurement (after node is unpacked on this machine, e.g. by
# device-env.sh in an earlier call): Large and Medium fp8 at 1024², 28 steps, on the stock path
# (weight-only fp8), the C-API path with W8A8 (our atelier:Fp8Linear: what precision fp8 runs on
# Hopper), and the C-API path with weight-only fp8 (precision fp8-weights: block-fp8). Each row's
# fp8_linear and fp8_reason say which ran. Writes only the fp8 files (≈ 20 GB, seconds in /dev/shm).
# On the GPU machine, from the checkout: bash bench/gpu/gpu-w8a8.sh   (results under $OUT)
T0=$(date +%s)
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
source .gpu/device-env.sh
W=/dev/shm/sd35
python3 bench/gpu/make_weights.py "$W" --models large,medium --precisions fp8 --jobs 8 > "$OUT/weights.log" 2>&1
echo "weights done at $(( $(date +%s) - T0 )) s"
common=(--models "$W" --tokenizers .gpu/tokenizers --configs large,medium --turbo '' --small '')
timeout 260 node .gpu/bundle/atelier-bench.js "${common[@]}" --precision fp8 --runtime stock,capi \
  --out "$OUT/atelier-w8a8.json" --budget-s 240 2>&1 | tee "$OUT/atelier-w8a8.log"
timeout 150 node .gpu/bundle/atelier-bench.js "${common[@]}" --precision fp8-weights --runtime capi \
  --out "$OUT/atelier-capi-fp8.json" --budget-s 130 2>&1 | tee "$OUT/atelier-capi-fp8.log"
echo "done at $(( $(date +%s) - T0 )) s"
