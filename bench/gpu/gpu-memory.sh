#!/usr/bin/env bash
# Issue 11's GPU memory rows in one call (bench/gpu/README.md, "Issue 11"), on a machine where node
# is unpacked already (runtime-a: smoke call A, or any earlier call that carried it). Writes only
# the files it needs (Large and Medium fp8 checkpoints, CLIP-L, CLIP-G, the fp8 T5: 17.8 GB, seconds
# in /dev/shm; files already there are kept, /tmp/sd35-dir says where) and runs atelier-bench.js on
# the C-API path, 1024², 28 steps, every session through the C API (each arena reports its
# high-water mark), --emulate-card (under a limit the bench holds the rest of the GPU: the child
# sees a card that size), --calibration /tmp/atelier-memory-calibration.json (unlimited rows measure
# overhead, MMDiT activations and text arenas; limited rows plan with those figures; the mixed-jobs
# call, gpu-memory-mixed.sh, reuses the file). All rows go to one file, most important first:
#   A1 Large fp8, unlimited, placement gpu: the baseline and the calibration           ≈ 20 s
#   A2 Large fp8 under 16 and 22 GiB, placements cpu-encoders and gpu                   ≈ 150 s
#   C  Large fp8 at 12 GiB with gpu-memory.ts's shipped constants: the refusal line     ≈ 5 s
#   B  Medium fp8 unlimited (its calibration), then at 10 GiB, auto and cpu-encoders    ≈ 110 s
#   D  Large fp8 unlimited at batch 2 and 4: the MMDiT's activations per batch          ≈ 45 s
#   E  Large fp8 at 12 GiB calibrated, auto (runs on the CPU placement if it fits)      ≈ 60 s
#   F  Large fp8 unlimited, cpu-encoders: the CPU encoders' seconds per prompt          ≈ 60 s
# Duration, from bench/results/gpu-2026-12-02*.json (Large fp8 C-API W8A8: load 3.3–3.5 s, warm-up
# 7.4–8.6 s with the step session's opening and capture, 3.7 s per 28-step image; Medium: 2.4–2.7,
# 4.4, 2.0 s; weights 49 GB in 7–13 s): a GPU-placement row ≈ 16 s, Medium ≈ 10 s, a refusal ≈ 5 s;
# a cpu-encoders row is a guess (T5-XXL in float32 on 16 cores: ≈ 30 s to open, ≈ 5 s per prompt
# pair) of ≈ 60 s. Total ≈ 470 s; each step's budget is what is left, less a reserve for the steps
# after it, and a step with under 70 s is skipped with a line saying so. Ends by 560 s.
# On the GPU machine, from the checkout: bash bench/gpu/gpu-memory.sh   (results under $OUT)
# Here, the same flow on the CPU with tiny weights (≈ 3 min): MEMORY_SMOKE=cpu OUT=/tmp/m bash bench/gpu/gpu-memory.sh
T0=$(date +%s)
left() { echo $((${1:-560} - $(date +%s) + T0)); }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
if [ "${MEMORY_SMOKE:-}" = cpu ]; then
  W=/tmp/sd35-tiny
  python3 bench/gpu/make_weights.py "$W" --tiny > "$OUT/weights.log" 2>&1
  extra=(--provider cpu --size 128 --custom-ops none --data /tmp/atelier-bench-smoke)
else
  source .gpu/device-env.sh
  command -v node > /dev/null || { echo "no node on this machine: run a call carrying .gpu/runtime-a.tar.xz first (smoke call A)"; exit 3; }
  { nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv; df -h /dev/shm; free -g; nproc; } 2>&1 | tee "$OUT/machine.log"
  W=$(cat /tmp/sd35-dir 2>/dev/null)
  if [ -z "$W" ]; then
    W=/dev/shm/sd35
    [ "$(df -B1 --output=avail /dev/shm | tail -1)" -gt 22000000000 ] || W=$PWD/.gpu/sd35
    echo "$W" > /tmp/sd35-dir
  fi
  python3 bench/gpu/make_weights.py "$W" --models large,medium --precisions fp8 --jobs 8 > "$OUT/weights.log" 2>&1
  extra=()
fi
tail -2 "$OUT/weights.log"
echo "weights done at $(( $(date +%s) - T0 )) s"
CAL=/tmp/atelier-memory-calibration.json
rm -f "$CAL" "$OUT/memory.json"
common=(--models "$W" --tokenizers .gpu/tokenizers --out "$OUT/memory.json" --append --precision fp8
  --runtime capi --session-api capi --turbo '' --small '' --steps 28 --emulate-card "${extra[@]}")
# budget CAP RESERVE: the cap, or what is left less the reserve for the steps after it.
budget() { local l=$(( $(left 540) - $2 )); echo $(( l < $1 ? l : $1 )); }
step() {
  local name=$1 b=$2; shift 2
  if [ "$b" -lt 70 ]; then echo "== $name: skipped (budget $b s) at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/memory.log"; return; fi
  echo "== $name (budget $b s) at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/memory.log"
  local t=$(( b + 30 )); [ "$t" -le "$(left 590)" ] || t=$(left 590)
  timeout "$t" node .gpu/bundle/atelier-bench.js "${common[@]}" --budget-s "$b" "$@" 2>&1 | tee -a "$OUT/memory.log"
}
step "A1 Large unlimited, gpu (baseline, calibration)" "$(budget 90 330)" \
  --configs large --gpu-memory-limit none --placement gpu --calibration "$CAL"
step "A2 Large under 16 and 22 GiB" "$(budget 300 170)" \
  --configs large --gpu-memory-limit 16GiB,22GiB --placement cpu-encoders,gpu --calibration "$CAL"
step "C Large at 12 GiB, shipped constants (the refusal)" "$(budget 70 160)" \
  --configs large --gpu-memory-limit 12GiB --placement auto
step "B1 Medium unlimited, gpu (calibration)" "$(budget 70 100)" \
  --configs medium --gpu-memory-limit none --placement gpu --calibration "$CAL"
step "B2 Medium at 10 GiB" "$(budget 150 50)" \
  --configs medium --gpu-memory-limit 10GiB --placement auto,cpu-encoders --calibration "$CAL"
step "D Large unlimited, batch 2 and 4 (activations per batch)" "$(budget 90 0)" \
  --configs large --gpu-memory-limit none --placement gpu --batch 2,4
step "E Large at 12 GiB, calibrated" "$(budget 100 0)" \
  --configs large --gpu-memory-limit 12GiB --placement auto --calibration "$CAL"
step "F Large unlimited, cpu-encoders" "$(budget 100 0)" \
  --configs large --gpu-memory-limit none --placement cpu-encoders
cp "$CAL" "$OUT/calibration.json" 2>/dev/null
echo "memory call done at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/memory.log"
