#!/usr/bin/env bash
# Issue 10's memory target in one short call (bench/NOTES.md "Issue 10, tenth session": W8A8 29.87 GiB
# against weight-only 29.81, measured a day apart): Large 1024², 28 steps, CFG, batch 1, weight-only
# FP8 (`fp8-weights`) and W8A8 (`fp8`, as shipped) alternating twice in one machine session, so
# their peaks (process and device, nvidia-smi) compare on the same machine. Ends by ENDS_BY seconds
# (default 150). On the GPU machine, from the checkout: bash bench/gpu/gpu-memory-w8a8.sh
ENDS_BY=${ENDS_BY:-150}
source bench/gpu/call-start.sh
NAME=memory-w8a8 source bench/gpu/bench-row.sh
for round in 1 2; do
  CONFIG=large:fp8-weights row "Large weight-only FP8 $round"
  CONFIG=large:fp8 row "Large W8A8 $round"
done
grep -oE '"(precision|fp8_linear|denoise_seconds|peak_gpu_mem_gb|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+)' \
  "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
