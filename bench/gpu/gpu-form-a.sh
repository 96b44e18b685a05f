#!/usr/bin/env bash
# Issue 10's tenth-session rows in one call (bench/NOTES.md "Issue 10, tenth session"), after node and
# the CUDA provider are unpacked on this machine; writes the Large fp8 and fp16 files if missing.
# Large 1024², 28 steps, CFG, batch 1, one row each, back to back in one machine session:
#   W8A8 as shipped;
#   W8A8 with the per-tensor MLP (ATELIER_FP8_MLP_HANDOFF=1 on per-tensor-scaled weights: the norm
#     quantizes per tensor with a delayed scale, fc1 and fc2 in cuBLASLt's scalar-scale mode, fc1
#     writing e4m3 itself; ATELIER_OPS_VERBOSE=1 makes the log say whether cuBLASLt took e4m3 D);
#   W8A8 with the adaLN table (ATELIER_ADALN_TABLE=1), and with both;
#   FP16 with the table, FP16.
# Then, if ENDS_BY leaves time, Medium W8A8 as shipped and with both (its fp8 files written first).
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-form-a.sh
ENDS_BY=${ENDS_BY:-570}
WEIGHTS=fp8,fp16
source bench/gpu/call-start.sh
LOG="$OUT/form-a.log"
row() { # label, then env assignments
  local label=$1
  shift
  at "$label" | tee -a "$LOG"
  env "$@" timeout 85 node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers \
    --out "$OUT/form-a.json" --append --runtime capi --turbo '' --small '' --configs "$CONFIG" --budget-s 72 \
    > "$OUT/row.log" 2>&1
  # The verbose lines of our ops say which form each MLP plan got (once per plan, so few lines).
  grep -E "atelier:(Fp8Linear|AdaLN).*(e4m3|refused|delayed)" "$OUT/row.log" | sort | uniq -c | head -8 | tee -a "$LOG"
  tail -3 "$OUT/row.log" | tee -a "$LOG"
}
CONFIG=large:fp8 row "Large W8A8 (as shipped)"
CONFIG=large:fp8 row "Large W8A8, per-tensor MLP" ATELIER_FP8_MLP_HANDOFF=1 ATELIER_OPS_VERBOSE=1
CONFIG=large:fp8 row "Large W8A8, adaLN table" ATELIER_ADALN_TABLE=1
CONFIG=large:fp8 row "Large W8A8, per-tensor MLP + adaLN table" ATELIER_FP8_MLP_HANDOFF=1 ATELIER_ADALN_TABLE=1
CONFIG=large:fp16 row "Large FP16, adaLN table" ATELIER_ADALN_TABLE=1
CONFIG=large:fp16 row "Large FP16"
if [ "$(left)" -gt 150 ]; then
  at "Medium fp8 files" | tee -a "$LOG"
  timeout "$(($(left) - 100))" python3 bench/gpu/make_weights.py "$W" --models medium --precisions fp8 --jobs 8 \
    > "$OUT/weights-medium.log" 2>&1
  tail -1 "$OUT/weights-medium.log" | tee -a "$LOG"
  [ "$(left)" -gt 90 ] && CONFIG=medium:fp8 row "Medium W8A8 (as shipped)"
  [ "$(left)" -gt 90 ] && CONFIG=medium:fp8 row "Medium W8A8, per-tensor MLP + adaLN table" ATELIER_FP8_MLP_HANDOFF=1 ATELIER_ADALN_TABLE=1
else
  echo "no time left for Medium ($(left) s)" | tee -a "$LOG"
fi
# What each row ran with, as the engine built its graphs.
grep -oE '"(config|denoise_seconds|adaln_table|fp8_mlp_handoff|peak_gpu_mem_gb|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+|true|false)' \
  "$OUT/form-a.json" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
