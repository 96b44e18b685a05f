#!/usr/bin/env bash
# FlashAttention-3 (Hopper forward kernel, head dim 64, fp16, non-causal) against cuDNN's fp16 flash
# SDPA (what ONNX Runtime's CUDA provider runs today), same binary, same tensors, on SD3.5's attention
# shapes (B=2 for CFG; q/k/v/o [B, T, H·64] fp16): medium-joint T=4429 H=24, medium-attn2 T=4096 H=24,
# large-joint T=4429 H=38. Per shape and engine: ms per call (median of 3 rounds of 50 calls, CUDA
# events, rounds alternating FA3 / cuDNN), TFLOP/s (4·B·H·T²·64), max abs error and relative L2
# against a float64 reference on 256 query rows, and cuDNN's relative L2 against FA3's whole output.
# Writes $OUT/fa3.jsonl (one JSON line per shape and engine) and $OUT/fa3.log (the table).
#
# On the GPU machine (H100/H200, sm_90), from the checkout root, with .gpu/fa3/fa3-bench (built here by
# bench/gpu/fa3-build.sh) and .gpu/device-env.sh carried:   bash bench/gpu/gpu-fa3.sh [fa3-bench args]
set -uo pipefail
source .gpu/device-env.sh
OUT=${OUT:-/tmp/fa3-out}
mkdir -p "$OUT"
bin=.gpu/fa3/fa3-bench
if [ ! -x "$bin" ]; then
  echo "gpu-fa3: no $bin: build it with bash bench/gpu/fa3-build.sh and carry it" | tee "$OUT/fa3.log"
  exit 1
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv \
  2>&1 | tee "$OUT/fa3.log"
timeout 500 "$bin" --out "$OUT/fa3.jsonl" "$@" 2>&1 | tee -a "$OUT/fa3.log"
rc=${PIPESTATUS[0]}
echo "gpu-fa3: fa3-bench exit status $rc (0: all checks passed; 3: an accuracy check failed)" | tee -a "$OUT/fa3.log"
exit "$rc"
