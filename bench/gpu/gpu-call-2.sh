#!/usr/bin/env bash
# GPU call 2 of issue 9's measurement, right after call 1 on the same machine (bench/gpu/README.md):
# the C-API checks (capi-check.js, < 60 s), then atelier-bench.js on both runtime paths over the
# weights call 1 left in /dev/shm. Ends by 560 s; rows are saved as they are measured.
# On the GPU machine, from the checkout: bash bench/gpu/gpu-call-2.sh   (results under $OUT)
T0=$(date +%s)
left() { echo $((${1:-560} - $(date +%s) + T0)); }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
source .gpu/device-env.sh
W=$(cat /tmp/sd35-dir 2>/dev/null) || { echo "no /tmp/sd35-dir: run call 1 on this machine first"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv | tee "$OUT/machine.log"
timeout 150 node .gpu/bundle/capi-check.js --out "$OUT/capi-check.json" 2>&1 | tee "$OUT/capi-check.log"
echo "capi-check done at $(( $(date +%s) - T0 )) s"
timeout "$(left 565)" node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers \
  --out "$OUT/atelier.json" --budget-s "$(left 535)" "$@" 2>&1 | tee "$OUT/atelier.log"
echo "call 2 done at $(( $(date +%s) - T0 )) s"
