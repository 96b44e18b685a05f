#!/usr/bin/env bash
# Issue 10's tenth-session third machine session (bench/NOTES.md "Issue 10, tenth session"), after
# node and the CUDA provider are unpacked: the per-tensor MLP with the cheaper delayed norm (s and d
# read from the state, the push and the next scale in one small kernel after it, no per-block ring
# reduction or last-block counter) and with cuBLASLt's algorithms timed per shape
# (ATELIER_GEMM_AUTOTUNE=1, now also for fc1's e4m3-D plans; ATELIER_OPS_VERBOSE=1 on its first row
# logs each candidate). Large 1024², 28 steps, CFG, batch 1, alternating twice: W8A8 as shipped,
# per-tensor MLP, per-tensor MLP + autotune, FP16; then the last form once more with kernel-times.c
# preloaded (CUPTI), then Medium as shipped and with both. Ends by ENDS_BY seconds (default 400).
ENDS_BY=${ENDS_BY:-400}
WEIGHTS=fp8,fp16 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=form-a-3 source bench/gpu/bench-row.sh
MLP="ATELIER_FP8_MLP_HANDOFF=1"
TUNE="ATELIER_GEMM_AUTOTUNE=1"
for round in 1 2; do
  CONFIG=large:fp8 row "Large W8A8 (as shipped) $round"
  CONFIG=large:fp8 row "Large W8A8, per-tensor MLP $round" $MLP
  if [ $round = 1 ]; then
    CONFIG=large:fp8 row "Large W8A8, per-tensor MLP + autotune $round" $MLP $TUNE ATELIER_OPS_VERBOSE=1
  else
    CONFIG=large:fp8 row "Large W8A8, per-tensor MLP + autotune $round" $MLP $TUNE
  fi
  CONFIG=large:fp16 row "Large FP16 $round"
done
if [ "$(left)" -gt 105 ] && bash bench/gpu/kernel-times.sh > /dev/null 2>&1; then
  at "Large W8A8, per-tensor MLP + autotune, profiled" | tee -a "$LOG"
  env $MLP $TUNE KERNEL_TIMES_OUT="$OUT/kernels-large" LD_PRELOAD=/tmp/kernel-times.so timeout 100 \
    node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/profiled.json" \
    --runtime capi --turbo '' --small '' --configs large:fp8 --budget-s 90 2>&1 | tail -1 | tee -a "$LOG"
fi
[ "$(left)" -gt 40 ] && CONFIG=medium:fp8 row "Medium W8A8 (as shipped)"
[ "$(left)" -gt 40 ] && CONFIG=medium:fp8 row "Medium W8A8, per-tensor MLP + autotune" $MLP $TUNE
grep -oE '"(config|denoise_seconds|fp8_mlp_handoff|gemm_autotune|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+|true|false)' \
  "$OUT/form-a-3.json" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
