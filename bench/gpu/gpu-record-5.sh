#!/usr/bin/env bash
# Issue 10's run of record, fourteenth session, call 3 of 3 (after gpu-record-1.sh and a call carrying
# runtime-b's part0, back to back): carry .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers,
# .gpu/device-env.sh. Ours on the files of call 1, 1024², 28 steps, CFG, batch 1, alternating:
# 1. Medium W8A8 as shipped (no cuBLASLt workspace offered, JointQkvNorm one row per block) four rows,
#    between them three with 32 MiB offered (ATELIER_GEMM_WORKSPACE_MIB=32, as before);
# 2. Large W8A8, FP16, weight-only FP8 three rounds (weight-only twice), one Large W8A8 with 32 MiB;
# 3. Medium profiled as shipped and with 32 MiB (kernel-times.c: kernels, memsets, memcopies).
# Everything comes back as record.tar.gz and record.log (the device tool returns at most 8 files).
# Ends by ENDS_BY seconds (default 560). On the GPU machine, from the checkout: bash bench/gpu/gpu-record-5.sh
ENDS_BY=${ENDS_BY:-560}
WEIGHTS=fp8,fp16 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=record source bench/gpu/bench-row.sh
bash bench/gpu/kernel-times.sh | tee -a "$LOG"
CONFIG=medium:fp8 row "Medium W8A8 1"
CONFIG=medium:fp8 row "Medium W8A8, 32 MiB workspace offered 1" ATELIER_GEMM_WORKSPACE_MIB=32
CONFIG=medium:fp8 row "Medium W8A8 2"
CONFIG=medium:fp8 row "Medium W8A8, 32 MiB workspace offered 2" ATELIER_GEMM_WORKSPACE_MIB=32
CONFIG=medium:fp8 row "Medium W8A8 3"
CONFIG=medium:fp8 row "Medium W8A8, 32 MiB workspace offered 3" ATELIER_GEMM_WORKSPACE_MIB=32
CONFIG=medium:fp8 row "Medium W8A8 4"
for round in 1 2 3; do
  CONFIG=large:fp8 row "Large W8A8 $round"
  CONFIG=large:fp16 row "Large FP16 $round"
  [ "$round" -lt 3 ] && CONFIG=large:fp8-weights row "Large weight-only FP8 $round"
  [ "$round" -eq 2 ] && CONFIG=large:fp8 row "Large W8A8, 32 MiB workspace offered" ATELIER_GEMM_WORKSPACE_MIB=32
done
grep -oE '"(config|precision|denoise_seconds|image_sha256|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+)' \
  "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
CONFIG=medium:fp8 profiled medium-shipped
CONFIG=medium:fp8 profiled medium-ws32 ATELIER_GEMM_WORKSPACE_MIB=32
at "done" | tee -a "$LOG"
(cd "$OUT" && tar czf record.tar.gz --exclude=record.tar.gz --exclude=weights.log ./*)
find "$OUT" -mindepth 1 ! -name record.tar.gz ! -name record.log ! -name torch-record.json -delete
