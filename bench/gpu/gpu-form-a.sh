#!/usr/bin/env bash
# Issue 10's tenth-session rows in one call (bench/NOTES.md "Issue 10, tenth session"), after node and
# the CUDA provider are unpacked on this machine; writes the Large fp8 and fp16 and Medium fp8 files if
# missing. Large and Medium 1024², 28 steps, CFG, batch 1, each row ≈ 15 s, so the pairs alternate
# twice (A B A B) on one machine:
#   Large W8A8 as shipped / with the per-tensor MLP (ATELIER_FP8_MLP_HANDOFF=1 on per-tensor-scaled
#     weights: the norm quantizes per tensor with a delayed scale, fc1 and fc2 in cuBLASLt's
#     scalar-scale mode, fc1 writing e4m3 itself; ATELIER_OPS_VERBOSE=1 on its first row makes the log
#     say whether cuBLASLt took e4m3 D);
#   Large FP16 (the session also had a row with the ninth session's adaLN table, since removed);
#   Medium W8A8 as shipped / with the per-tensor MLP;
# then the quality report of Large (fp16, W8A8, W8A8 with the per-tensor MLP; exact accumulation; 1
# seed), then, if time is left, the per-tensor MLP row once more with kernel-times.c preloaded (CUPTI,
# every kernel by name: kernel_breakdown.py sorts them here).
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-form-a.sh
ENDS_BY=${ENDS_BY:-570}
WEIGHTS=fp8,fp16 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=form-a source bench/gpu/bench-row.sh
MLP="ATELIER_FP8_MLP_HANDOFF=1"
CONFIG=large:fp8 row "Large W8A8 (as shipped)"
CONFIG=large:fp8 row "Large W8A8, per-tensor MLP" $MLP ATELIER_OPS_VERBOSE=1
CONFIG=large:fp8 row "Large W8A8 (as shipped), again"
CONFIG=large:fp8 row "Large W8A8, per-tensor MLP, again" $MLP
CONFIG=large:fp16 row "Large FP16"
CONFIG=large:fp16 row "Large FP16, again"
CONFIG=medium:fp8 row "Medium W8A8 (as shipped)"
CONFIG=medium:fp8 row "Medium W8A8, per-tensor MLP" $MLP
CONFIG=medium:fp8 row "Medium W8A8 (as shipped), again"
CONFIG=medium:fp8 row "Medium W8A8, per-tensor MLP, again" $MLP
grep -oE '"(config|denoise_seconds|fp8_mlp_handoff|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+|true|false)' \
  "$OUT/form-a.json" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
if [ "$(left)" -gt 120 ]; then
  at "quality" | tee -a "$LOG"
  QUALITY_MODELS=large timeout $(($(left) - 60)) bash bench/gpu/gpu-quality.sh --which large --seeds 1 \
    --variants fp16,w8a8,w8a8-handoff --budget-s $(($(left) - 75)) > "$OUT/quality.log" 2>&1
  grep -A8 "relative L2" "$OUT/quality.log" | tee -a "$LOG"
fi
if [ "$(left)" -gt 100 ] && bash bench/gpu/kernel-times.sh > /dev/null 2>&1; then
  at "Large W8A8, per-tensor MLP, profiled" | tee -a "$LOG"
  ATELIER_FP8_MLP_HANDOFF=1 KERNEL_TIMES_OUT="$OUT/kernels-large" LD_PRELOAD=/tmp/kernel-times.so \
    timeout $(($(left) - 5)) node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers \
    --out "$OUT/form-a-profiled.json" --runtime capi --turbo '' --small '' --configs large:fp8 --budget-s 90 \
    2>&1 | tail -1 | tee -a "$LOG"
fi
at "done" | tee -a "$LOG"
