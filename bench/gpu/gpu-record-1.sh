#!/usr/bin/env bash
# Issue 10's run of record, call 1 of 3 (bench/NOTES.md "Issue 10, eleventh session"): carry
# .gpu/runtime-a.tar.xz, .gpu/device-env.sh and .gpu/ref. Writes the Large fp8 + fp16 and Medium fp8
# files into /dev/shm, then PyTorch's two compiled anchors on Large: FP8 (every joint-block linear on
# torch._scaled_mm, row-wise scales, use_fast_accum as ours) and torch.compile bf16, batch 1 and 28 steps
# only (≈ 225 s; the plan's batch-4 and 20-step rows took the call to 510 s). Call 2 carries
# runtime-b's part0 only (`true`); call 3 (gpu-record-3.sh) runs ours on the same files.
# Ends by ENDS_BY seconds (default 580). On the GPU machine, from the checkout: bash bench/gpu/gpu-record-1.sh
ENDS_BY=${ENDS_BY:-580}
WEIGHTS=fp8,fp16 MODELS=large,medium
source bench/gpu/call-start.sh
LOG="$OUT/record-1.log"
at "PyTorch compiled FP8 (fast accumulation), then torch.compile bf16" | tee -a "$LOG"
ATELIER_TORCH_FP8_FAST_ACCUM=1 timeout "$(left $((ENDS_BY + 5)))" python3 bench/gpu/torch_bench.py --models-dir "$W" \
  --out "$OUT/torch-record.json" --plan issue10-compiled --batches 1 --steps 28 --models large --no-encoders \
  --budget-s "$(left $((ENDS_BY - 5)))" 2>&1 | tail -25 | tee -a "$LOG"
at "done" | tee -a "$LOG"
