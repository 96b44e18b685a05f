#!/usr/bin/env bash
# Issue 10's run of record, call 3 of 3 (after gpu-record-1.sh and a call carrying runtime-b's part0):
# carry .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers, .gpu/device-env.sh. Ours on the
# files of call 1, Large 1024², 28 steps, CFG, batch 1, every row ≈ 15 s, alternating so no
# precision gets the machine's warmest minute: W8A8 (as shipped), FP16, weight-only FP8 (fp8-weights:
# the memory target's yardstick), three rounds (weight-only twice); then Medium W8A8 twice; then, with
# the time left, Medium's and Large's W8A8 steps by kernel (gpu-profile.sh: CUPTI).
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-record-3.sh
ENDS_BY=${ENDS_BY:-570}
WEIGHTS=fp8,fp16 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=record source bench/gpu/bench-row.sh
for round in 1 2 3; do
  CONFIG=large:fp8 row "Large W8A8 $round"
  CONFIG=large:fp16 row "Large FP16 $round"
  [ "$round" -lt 3 ] && CONFIG=large:fp8-weights row "Large weight-only FP8 $round"
done
CONFIG=medium:fp8 row "Medium W8A8 1"
CONFIG=medium:fp8 row "Medium W8A8 2"
grep -oE '"(config|precision|denoise_seconds|peak_gpu_mem_gb|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+)' \
  "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
if [ "$(left)" -gt 110 ]; then ENDS_BY=$(left) CONFIGS=medium:fp8,large:fp8 bash bench/gpu/gpu-profile.sh; fi
