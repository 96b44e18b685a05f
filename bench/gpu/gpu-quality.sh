#!/usr/bin/env bash
# Issue 10's FP8 quality report (bench/gpu/README.md), after node is unpacked on this machine (an
# earlier call's device-env.sh with runtime-a): quality-bench.js runs the same seeds through the
# C-API path with fp16 weights, W8A8 (our atelier:Fp8Linear) and weight-only fp8, Large then
# Medium at 1024², 28 steps, and reports the relative L2 of the final latent and of the velocity and
# denoised estimate at steps 1, 7, 14, 21, 28 (W8A8 vs fp16, weight-only fp8 vs fp16, W8A8 vs
# weight-only). Reuses the weights of call 1 (/tmp/sd35-dir) or writes them (fp16 and fp8 files of
# both models (QUALITY_MODELS, default large,medium) and the encoders, 49 GB: under a minute in /dev/shm). Ends by 560 s; the report is
# saved after every variant, and variants that would not fit the budget are listed as skipped.
# On the GPU machine, from the checkout: bash bench/gpu/gpu-quality.sh [quality-bench args]
T0=$(date +%s)
left() { echo $((${1:-560} - $(date +%s) + T0)); }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
source .gpu/device-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv | tee "$OUT/machine.log"
W=$(cat /tmp/sd35-dir 2>/dev/null)
if [ -z "$W" ]; then
  W=/dev/shm/sd35
  [ "$(df -B1 --output=avail /dev/shm | tail -1)" -gt 53000000000 ] || W=$PWD/.gpu/sd35
  echo "$W" > /tmp/sd35-dir
fi
# Keeps files already there; an fp8 file holds its fp16 file's values quantized (make_weights.file_seed).
python3 bench/gpu/make_weights.py "$W" --models "${QUALITY_MODELS:-large,medium}" --precisions fp16,fp8 --jobs 8 > "$OUT/weights.log" 2>&1
tail -2 "$OUT/weights.log"
echo "weights done at $(( $(date +%s) - T0 )) s"
timeout "$(left 565)" node .gpu/bundle/quality-bench.js --models "$W" --tokenizers .gpu/tokenizers \
  --out "$OUT/quality.json" --budget-s "$(left 550)" "$@" 2>&1 | tee "$OUT/quality.log"
echo "quality done at $(( $(date +%s) - T0 )) s"
