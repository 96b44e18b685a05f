#!/usr/bin/env bash
# Issue 10: two denoising steps queued (the default on CUDA since the thirteenth session: the step
# sessions on our own CUDA stream, an event per binding; capi-denoiser.ts StepQueue) against one
# (ATELIER_STEP_QUEUE=1), alternating: Medium W8A8 three pairs, Large W8A8 two pairs; then Medium with two
# queued under kernel-times.so (gpu-profile.sh: the timeline says whether the idle between replays
# went). After calls that wrote the Large and Medium fp8 files and carried runtime-b's part0: carry
# .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers, .gpu/device-env.sh.
# Ends by ENDS_BY seconds (default 240). On the GPU machine, from the checkout: bash bench/gpu/gpu-step-queue.sh
ENDS_BY=${ENDS_BY:-240}
WEIGHTS=fp8 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=step-queue source bench/gpu/bench-row.sh
ONE="ATELIER_STEP_QUEUE=1"
for round in 1 2 3; do
  CONFIG=medium:fp8 row "Medium W8A8, two steps queued $round"
  CONFIG=medium:fp8 row "Medium W8A8, one step queued $round" $ONE
done
for round in 1 2; do
  CONFIG=large:fp8 row "Large W8A8, two steps queued $round"
  CONFIG=large:fp8 row "Large W8A8, one step queued $round" $ONE
done
if [ "$(left)" -gt 50 ]; then
  ENDS_BY=$(($(left) + 60)) CONFIGS=medium:fp8 bash bench/gpu/gpu-profile.sh
fi
grep -oE '"(config|denoise_seconds|step_queue)": *("[^"]*"|[0-9.]+)' "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
