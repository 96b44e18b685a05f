#!/usr/bin/env bash
# Issue 10's tenth-session third call (bench/NOTES.md "Issue 10, tenth session"), on the machine of
# gpu-form-a.sh: where the step's GPU time goes with the per-tensor MLP and the adaLN table, by
# kernel (kernel-times.c through CUPTI, preloaded; sorted here by kernel_breakdown.py into GEMM /
# attention / the rest): Large W8A8, then Medium W8A8 (its fp8 files written if missing), one
# profiled row each. Ends by ENDS_BY seconds (default 300).
ENDS_BY=${ENDS_BY:-300}
WEIGHTS=fp8
MODELS=large,medium
source bench/gpu/call-start.sh
LOG="$OUT/form-a-3.log"
at "kernel-times" | tee -a "$LOG"
bash bench/gpu/kernel-times.sh 2>&1 | tee -a "$LOG" | tail -1 | grep -q '/tmp/kernel-times.so' || exit 4
for model in large medium; do
  [ "$(left)" -gt 70 ] || { echo "no time left for $model ($(left) s)" | tee -a "$LOG"; break; }
  at "$model W8A8, per-tensor MLP + adaLN table, profiled" | tee -a "$LOG"
  ATELIER_FP8_MLP_HANDOFF=1 ATELIER_ADALN_TABLE=1 KERNEL_TIMES_OUT="$OUT/kernels-$model" LD_PRELOAD=/tmp/kernel-times.so \
    timeout $(($(left) - 5)) node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers \
    --out "$OUT/form-a-profiled.json" --append --runtime capi --turbo '' --small '' --configs "$model:fp8" \
    --budget-s 70 2>&1 | tail -3 | tee -a "$LOG"
done
at "done" | tee -a "$LOG"
