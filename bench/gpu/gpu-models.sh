#!/usr/bin/env bash
# Issue 15's GPU figures in one call (bench/gpu/README.md, "Issue 15"), on a machine where node and
# the CUDA provider are unpacked (runtime-a and runtime-b carried by earlier calls or this one) and
# the Large and Medium fp8 files are in /tmp/sd35-dir's folder (make_weights.py makes any missing).
# Each phase is its own process (a fresh CUDA context), on the C-API path with W8A8, 1024², 8 steps
# at most per job (Turbo 4), rows appended to $OUT/models.json:
#   resident 3  Large + Large Turbo + Medium loaded together, a job on each       ≈ 60 s
#   lora        Large, rank-16 LoRAs: first use (merge + load), cached, new ones   ≈ 130 s
#   switch      the three with models.maxResident 1, jobs alternating             ≈ 80 s
#   resident 1, resident 2                                                         ≈ 25 + 45 s
# Large Turbo is a hard link of the Large fp8 file (its own file to the engine, no disk).
# ENDS_BY (seconds from the start, default 560) bounds it; a phase with under 60 s left is skipped.
# PHASES (default "resident3 lora switch resident1 resident2") picks and orders the phases.
# Here, the same on the CPU with tiny weights: MODELS_SMOKE=cpu OUT=/tmp/mb bash bench/gpu/gpu-models.sh
T0=$(date +%s)
ENDS_BY=${ENDS_BY:-560}
left() { echo $((ENDS_BY - $(date +%s) + T0)); }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
if [ "${MODELS_SMOKE:-}" = cpu ]; then
  W=/tmp/sd35-tiny
  [ -f "$W/checkpoints/sd3.5_medium_fp8_scaled.safetensors" ] || python3 bench/gpu/make_weights.py "$W" --tiny > "$OUT/weights.log" 2>&1
  extra=(--provider cpu --size 128 --custom-ops none)
else
  source .gpu/device-env.sh
  command -v node > /dev/null || { echo "no node on this machine: carry .gpu/runtime-a.tar.xz"; exit 3; }
  W=$(cat /tmp/sd35-dir 2>/dev/null); W=${W:-/dev/shm/sd35}; echo "$W" > /tmp/sd35-dir
  python3 bench/gpu/make_weights.py "$W" --models large,medium --precisions fp8 --jobs 8 > "$OUT/weights.log" 2>&1
  tail -1 "$OUT/weights.log"
  extra=()
fi
ln -f "$W/checkpoints/sd3.5_large_fp8_scaled.safetensors" "$W/checkpoints/sd3.5_large_turbo_fp8_scaled.safetensors"
BUNDLE=${BUNDLE:-.gpu/bundle}
phase() {
  local name=$1; shift
  local t; t=$(left)
  if [ "$t" -lt 60 ]; then echo "== $name: skipped ($t s left)" | tee -a "$OUT/models.log"; return; fi
  echo "== $name at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/models.log"
  timeout "$t" node "$BUNDLE/models-bench.js" --models "$W" --tokenizers .gpu/tokenizers \
    --out "$OUT/models.json" "${extra[@]}" "$@" 2>&1 | tee -a "$OUT/models.log"
}
for p in ${PHASES:-resident3 lora switch resident1 resident2}; do
  case $p in
    resident3) phase "resident 3 (Large, Turbo, Medium)" --phase resident --count 3 ;;
    lora) phase "LoRA merge + load (Large)" --phase lora ;;
    switch) phase "switch (models.maxResident 1)" --phase switch ;;
    resident1) phase "resident 1 (Large)" --phase resident --count 1 ;;
    resident2) phase "resident 2 (Large, Turbo)" --phase resident --count 2 ;;
    *) echo "PHASES: unknown phase $p" ;;
  esac
done
echo "models call done at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/models.log"
