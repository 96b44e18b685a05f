#!/usr/bin/env bash
# Smoke call B (after smoke call A unpacked node on this machine; bench/gpu/README.md): the C-API
# checks, then the whole atelier-bench flow on tiny random weights (both runtime paths, Large and
# Medium, fp16 and fp8, Turbo, small size): CUDA graph capture of the product's own graphs, custom
# ops, pings, fallbacks, in about 2 minutes.
# On the GPU machine, from the checkout: bash bench/gpu/gpu-smoke.sh   (results under $OUT)
T0=$(date +%s)
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
source .gpu/device-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv | tee "$OUT/machine.log"
timeout 150 node .gpu/bundle/capi-check.js --out "$OUT/capi-check.json" 2>&1 | tee "$OUT/capi-check.log"
echo "capi-check done at $(( $(date +%s) - T0 )) s"
python3 bench/gpu/make_weights.py /tmp/sd35-tiny --tiny > "$OUT/tiny-weights.log" 2>&1
timeout 240 node .gpu/bundle/atelier-bench.js --models /tmp/sd35-tiny --tokenizers .gpu/tokenizers \
  --out "$OUT/atelier-tiny.json" --size 256 --small-size 128 --steps 8 --budget-s 200 "$@" 2>&1 | tee "$OUT/atelier-tiny.log"
echo "smoke done at $(( $(date +%s) - T0 )) s"
