#!/usr/bin/env bash
# Issue 10, twelfth session, machine session 3: the denoising loop with one step queued ahead
# (capi-denoiser.ts issues step i + 1 before reporting step i), Medium W8A8 twice, then once under
# kernel-times.so with its timeline (gpu-profile.sh; kernel_timeline.py says where the GPU idles).
# After a call that wrote the Medium fp8 files and one that carried runtime-b's part0: carry
# .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers, .gpu/device-env.sh.
# Ends by ENDS_BY seconds (default 120). On the GPU machine, from the checkout: bash bench/gpu/gpu-pipelined.sh
ENDS_BY=${ENDS_BY:-120}
WEIGHTS=fp8 MODELS=medium
source bench/gpu/call-start.sh
NAME=pipelined source bench/gpu/bench-row.sh
CONFIG=medium:fp8 row "Medium W8A8, one step queued ahead 1"
CONFIG=medium:fp8 row "Medium W8A8, one step queued ahead 2"
if [ "$(left)" -gt 50 ]; then ENDS_BY=$(($(left) + 60)) WEIGHTS=fp8 MODELS=medium CONFIGS=medium:fp8 bash bench/gpu/gpu-profile.sh; fi
at "done" | tee -a "$LOG"
