#!/usr/bin/env bash
# Issue 10's run of record, call 3 of 3 (after gpu-record-1.sh and a call carrying runtime-b's part0,
# back to back: a machine idle for 30 s is released with its files): carry
# .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers, .gpu/device-env.sh. Ours on the files of
# call 1, 1024², 28 steps, CFG, batch 1, every row ≈ 11–15 s, alternating so no variant gets the
# machine's warmest minute:
# 1. capi-check paired-norms, mlp-handoff and qkv-norm (the thirteenth session's kernels, not yet run
#    on a GPU: the pair, Fp8Linear's delayed fill-and-push, JointQkvNorm's two rows per block), the
#    last once more with ATELIER_QKV_NORM_ROWS=1;
# 2. Medium W8A8 as shipped, three rows, between them one row each with a change of this session
#    switched off (ATELIER_PAIRED_NORMS=0, ATELIER_SHARED_ROWS=0, ATELIER_QKV_NORM_ROWS=1) and one
#    with one step queued (ATELIER_STEP_QUEUE=1); the images' hashes must agree (image_sha256);
# 3. Large W8A8 (as shipped), FP16, weight-only FP8 (fp8-weights: the memory target's yardstick),
#    three rounds (weight-only twice);
# then, with the time left, Medium's and Large's W8A8 steps by kernel with the timeline (gpu-profile.sh).
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-record-3.sh
ENDS_BY=${ENDS_BY:-570}
WEIGHTS=fp8,fp16 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=record source bench/gpu/bench-row.sh
at "capi-check paired-norms, mlp-handoff, qkv-norm" | tee -a "$LOG"
timeout 240 node .gpu/bundle/capi-check.js --only paired-norms,mlp-handoff,qkv-norm \
  --out "$OUT/capi-check.json" 2>&1 | tail -5 | tee -a "$LOG"
ATELIER_QKV_NORM_ROWS=1 timeout 90 node .gpu/bundle/capi-check.js --only qkv-norm \
  --out "$OUT/capi-check-qkv-rows-1.json" 2>&1 | tail -2 | tee -a "$LOG"
CONFIG=medium:fp8 row "Medium W8A8 1"
CONFIG=medium:fp8 row "Medium W8A8, norms not paired" ATELIER_PAIRED_NORMS=0
CONFIG=medium:fp8 row "Medium W8A8 2"
CONFIG=medium:fp8 row "Medium W8A8, SiLU(c) quantized per layer" ATELIER_SHARED_ROWS=0
CONFIG=medium:fp8 row "Medium W8A8 3"
CONFIG=medium:fp8 row "Medium W8A8, JointQkvNorm one row per block" ATELIER_QKV_NORM_ROWS=1
CONFIG=medium:fp8 row "Medium W8A8, one step queued" ATELIER_STEP_QUEUE=1
for round in 1 2 3; do
  CONFIG=large:fp8 row "Large W8A8 $round"
  CONFIG=large:fp16 row "Large FP16 $round"
  [ "$round" -lt 3 ] && CONFIG=large:fp8-weights row "Large weight-only FP8 $round"
done
grep -oE '"(config|precision|denoise_seconds|image_sha256|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+)' \
  "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
if [ "$(left)" -gt 110 ]; then ENDS_BY=$(left) CONFIGS=medium:fp8,large:fp8 bash bench/gpu/gpu-profile.sh; fi
