#!/usr/bin/env bash
# Issue 10's adaLN lever in one call (bench/NOTES.md "Issue 10, ninth session"), after node and the
# CUDA provider are unpacked on this machine; writes the Large fp8 and fp16 files if missing: the
# whole step, Large 1024², 28 steps, CFG, batch 1, one row each, back to back in one machine session:
#   W8A8 as shipped, W8A8 with the adaLN table (ATELIER_ADALN_TABLE=1: every adaLN modulation
#   computed once per job by a second small graph, models/adaln-table.ts; rows say `adaln_table`),
#   FP16 with the table, FP16; then, if ENDS_BY leaves time, Medium W8A8 without and with the table
#   (its fp8 files written first if missing).
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-adaln.sh
ENDS_BY=${ENDS_BY:-570}
WEIGHTS=fp8,fp16
source bench/gpu/call-start.sh
LOG="$OUT/adaln.log"
row() { # label, then env assignments
  local label=$1
  shift
  at "$label" | tee -a "$LOG"
  env "$@" timeout 85 node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers \
    --out "$OUT/adaln.json" --append --runtime capi --turbo '' --small '' --configs "$CONFIG" --budget-s 72 \
    2>&1 | tail -3 | tee -a "$LOG"
}
CONFIG=large:fp8 row "Large W8A8 (as shipped)"
CONFIG=large:fp8 row "Large W8A8, adaLN table" ATELIER_ADALN_TABLE=1
CONFIG=large:fp16 row "Large FP16, adaLN table" ATELIER_ADALN_TABLE=1
CONFIG=large:fp16 row "Large FP16"
# Medium: its files (≈ 40 s to write) and two rows of ≈ 40 s each, only if they fit.
if [ "$(left)" -gt 150 ]; then
  at "Medium fp8 files" | tee -a "$LOG"
  timeout "$(($(left) - 100))" python3 bench/gpu/make_weights.py "$W" --models medium --precisions fp8 --jobs 8 \
    > "$OUT/weights-medium.log" 2>&1
  tail -1 "$OUT/weights-medium.log" | tee -a "$LOG"
  [ "$(left)" -gt 90 ] && CONFIG=medium:fp8 row "Medium W8A8 (as shipped)"
  [ "$(left)" -gt 90 ] && CONFIG=medium:fp8 row "Medium W8A8, adaLN table" ATELIER_ADALN_TABLE=1
else
  echo "no time left for Medium ($(left) s)" | tee -a "$LOG"
fi
# What each row ran with (the table's flag as the engine built the step graph).
grep -oE '"(config|denoise_seconds|adaln_table)": *("[^"]*"|[0-9.]+|true|false)' "$OUT/adaln.json" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
