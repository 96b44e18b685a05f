#!/usr/bin/env bash
# Issue 11's mixed-jobs target in one call (bench/gpu/README.md, "Issue 11"), best right after
# gpu-memory.sh on the same machine (node unpacked, the weights in /dev/shm, its calibration in
# /tmp/atelier-memory-calibration.json; without the calibration atelier-bench first measures one
# unlimited Large row, ≈ 20 s). 100 consecutive jobs of mixed sizes (512² to 1024², landscape and
# portrait, none over 1024²'s pixels) and counts (1–4) through one Large fp8 load on the C-API path,
# models.gpuMemoryLimit 24 GiB on a GPU made that small (--emulate-card), placement auto, 8 steps a
# job (the arenas peak in the first step; 8 runs each binding's 2 plain steps, the capture and
# replays), in runs of 4 rerolls per size × count (--mixed-repeat 4: 25 runs, 24 shape switches —
# each new shape opens a step session with its own copy of the weights, ≈ 6.5 s). Reports each
# job's outcome (completed, refused by the preflight, out of memory, crashed), whether jobs after a
# failure completed, and the child's peak per job. Target: 100 of 100 completed, no out-of-memory.
# Duration, from bench/results/gpu-2026-12-02*.json (Large fp8 C-API W8A8: 0.122 s per image-step at
# 1024², 0.15 s per VAE decode, ≈ 6.5 s per step-session opening): the seed-1 plan has 248 images,
# ≈ 415 s of jobs, + load ≈ 5 s (+ 20 s of calibration when missing) ≈ 440 s. The budget (545 s)
# stops it between jobs; jobs it leaves out are counted as skipped. Ends by 560 s.
# On the GPU machine, from the checkout: bash bench/gpu/gpu-memory-mixed.sh [atelier-bench args]
# ENDS_BY (seconds from the start, default 560) moves the end earlier, to leave room for more work in the call.
T0=$(date +%s)
ENDS_BY=${ENDS_BY:-560}
left() { echo $((${1:-$ENDS_BY} - $(date +%s) + T0)); }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
source .gpu/device-env.sh
command -v node > /dev/null || { echo "no node on this machine: run a call carrying .gpu/runtime-a.tar.xz first (smoke call A)"; exit 3; }
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv 2>&1 | tee "$OUT/machine.log"
W=$(cat /tmp/sd35-dir 2>/dev/null)
if [ -z "$W" ]; then
  W=/dev/shm/sd35
  [ "$(df -B1 --output=avail /dev/shm | tail -1)" -gt 22000000000 ] || W=$PWD/.gpu/sd35
  echo "$W" > /tmp/sd35-dir
fi
python3 bench/gpu/make_weights.py "$W" --models large --precisions fp8 --jobs 8 > "$OUT/weights.log" 2>&1
tail -1 "$OUT/weights.log"
echo "weights done at $(( $(date +%s) - T0 )) s"
CAL=/tmp/atelier-memory-calibration.json
[ -f "$CAL" ] && cp "$CAL" "$OUT/calibration-before.json"
timeout "$(left $((ENDS_BY + 25)))" node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers \
  --out "$OUT/memory-mixed.json" --configs large --precision fp8 --runtime capi --session-api capi \
  --emulate-card --gpu-memory-limit 24GiB --placement auto --calibration "$CAL" \
  --mixed 100 --mixed-steps 8 --mixed-repeat 4 --mixed-seed 1 --budget-s "$(left $((ENDS_BY - 15)))" "$@" 2>&1 | tee "$OUT/memory-mixed.log"
cp "$CAL" "$OUT/calibration.json" 2>/dev/null
echo "mixed call done at $(( $(date +%s) - T0 )) s"
