#!/usr/bin/env bash
# Issue 10, twelfth session: FlashAttention-3 in the step (atelier:FlashAttention; bench/NOTES.md
# "Issue 10, twelfth session"). After a call that wrote the Large fp8 + fp16 and Medium fp8 files
# (call-start.sh with WEIGHTS=fp8,fp16 MODELS=large,medium) and one that carried runtime-b's part0:
# carry .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers, .gpu/device-env.sh.
#   1. capi-check flash-attention: FlashAttention vs MultiHeadAttention at Medium's joint and attn2 and
#      Large's joint shapes (time per call, accuracy against float64, CUDA-graph replays).
#   2. Rows, alternating FA3 (as shipped) and MultiHeadAttention (ATELIER_FLASH_ATTENTION=0): Medium
#      W8A8, Large W8A8, Large FP16.
#   3. Medium W8A8 with FA3 once more under kernel-times.c (CUPTI): where its step goes now.
# Ends by ENDS_BY seconds (default 540). On the GPU machine, from the checkout: bash bench/gpu/gpu-fa3-step.sh
ENDS_BY=${ENDS_BY:-540}
WEIGHTS=fp8,fp16 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=fa3-step source bench/gpu/bench-row.sh
at "capi-check flash-attention" | tee -a "$LOG"
timeout 200 node .gpu/bundle/capi-check.js \
  --only flash-attention --out "$OUT/capi-check-flash.json" 2>&1 | tail -3 | tee -a "$LOG"
OFF="ATELIER_FLASH_ATTENTION=0"
for round in 1 2; do
  CONFIG=medium:fp8 row "Medium W8A8, FA3 $round"
  CONFIG=medium:fp8 row "Medium W8A8, MultiHeadAttention $round" $OFF
  CONFIG=large:fp8 row "Large W8A8, FA3 $round"
  CONFIG=large:fp8 row "Large W8A8, MultiHeadAttention $round" $OFF
done
CONFIG=large:fp16 row "Large FP16, FA3"
CONFIG=large:fp16 row "Large FP16, MultiHeadAttention" $OFF
if [ "$(left)" -gt 110 ] && bash bench/gpu/kernel-times.sh > /dev/null 2>&1; then
  at "Medium W8A8, FA3, profiled" | tee -a "$LOG"
  KERNEL_TIMES_OUT="$OUT/kernels-medium" LD_PRELOAD=/tmp/kernel-times.so timeout 100 \
    node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/profiled.json" \
    --runtime capi --turbo '' --small '' --configs medium:fp8 --budget-s 90 2>&1 | tail -1 | tee -a "$LOG"
fi
grep -oE '"(config|precision|denoise_seconds|flash_attention|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+|true|false)' \
  "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
