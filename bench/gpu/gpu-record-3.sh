#!/usr/bin/env bash
# Issue 10's run of record, call 3 of 3 (after gpu-record-1.sh and a call carrying runtime-b's part0):
# carry .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers, .gpu/device-env.sh. Ours on the
# files of call 1, 1024², 28 steps, CFG, batch 1, every row ≈ 15 s, alternating so no variant gets
# the machine's warmest minute:
# - Medium W8A8 as shipped (two steps queued) and with one step queued (ATELIER_STEP_QUEUE=1), pairs;
# - Large W8A8 (as shipped), FP16, weight-only FP8 (fp8-weights: the memory target's yardstick),
#   three rounds (weight-only twice), and Large W8A8 with one step queued once;
# then, with the time left, Medium's and Large's W8A8 steps by kernel with the timeline (gpu-profile.sh).
# If the first row with two steps queued fails, every later row runs with one (and the log says so).
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-record-3.sh
ENDS_BY=${ENDS_BY:-570}
WEIGHTS=fp8,fp16 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=record source bench/gpu/bench-row.sh
ONE="ATELIER_STEP_QUEUE=1"
SHIPPED=()
CONFIG=medium:fp8 row "Medium W8A8 1"
if ! python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["rows"][-1]
sys.exit(0 if r.get("step_queue") == 2 and r.get("denoise_seconds", 0) > 0 else 1)' "$ROWS"; then
  at "two steps queued did not run (row.log below): every later row with one" | tee -a "$LOG"
  tail -30 "$OUT/row.log" | tee -a "$LOG"
  SHIPPED=("$ONE")
fi
CONFIG=medium:fp8 row "Medium W8A8, one step queued 1" $ONE
for round in 1 2 3; do
  CONFIG=large:fp8 row "Large W8A8 $round" "${SHIPPED[@]}"
  CONFIG=large:fp16 row "Large FP16 $round" "${SHIPPED[@]}"
  [ "$round" -lt 3 ] && CONFIG=large:fp8-weights row "Large weight-only FP8 $round" "${SHIPPED[@]}"
  [ "$round" -eq 2 ] && CONFIG=large:fp8 row "Large W8A8, one step queued" $ONE
done
CONFIG=medium:fp8 row "Medium W8A8 2" "${SHIPPED[@]}"
CONFIG=medium:fp8 row "Medium W8A8, one step queued 2" $ONE
CONFIG=medium:fp8 row "Medium W8A8 3" "${SHIPPED[@]}"
grep -oE '"(config|precision|denoise_seconds|step_queue|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+)' \
  "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
if [ "$(left)" -gt 110 ]; then
  ENDS_BY=$(left) CONFIGS=medium:fp8,large:fp8 PROFILE_ENV="${SHIPPED[*]}" bash bench/gpu/gpu-profile.sh
fi
