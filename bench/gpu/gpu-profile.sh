#!/usr/bin/env bash
# Where a step goes, by kernel (CUPTI through kernel-times.c): one row per config in $CONFIGS (default
# medium:fp8,large:fp8), each under kernel-times.so, its per-kernel CSVs in $OUT/kernels-<config>.*.csv
# (sort them here with bench/gpu/kernel_breakdown.py) and the last kernels' timeline in
# $OUT/kernels-<config>.*.timeline.csv (the GPU's idle time: bench/gpu/kernel_timeline.py). After call-start.sh's files exist (any earlier
# call with the same WEIGHTS and MODELS) and node and the CUDA provider are unpacked: carry
# .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers, .gpu/device-env.sh.
# Extra environment for every row: PROFILE_ENV (e.g. "ATELIER_FLASH_ATTENTION=0").
# Ends by ENDS_BY seconds (default 300). On the GPU machine, from the checkout: bash bench/gpu/gpu-profile.sh
ENDS_BY=${ENDS_BY:-300}
WEIGHTS=${WEIGHTS:-fp8} MODELS=${MODELS:-large,medium}
source bench/gpu/call-start.sh
LOG="$OUT/profile.log"
bash bench/gpu/kernel-times.sh | tee -a "$LOG" || exit 1
CONFIGS=${CONFIGS:-medium:fp8,large:fp8}
for config in ${CONFIGS//,/ }; do
  [ "$(left)" -gt 100 ] || { at "no time left for $config" | tee -a "$LOG"; break; }
  at "$config profiled" | tee -a "$LOG"
  # shellcheck disable=SC2086  # PROFILE_ENV is a list of VAR=value words
  env ${PROFILE_ENV:-} KERNEL_TIMES_OUT="$OUT/kernels-${config/:/-}" LD_PRELOAD=/tmp/kernel-times.so timeout 100 \
    node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/profiled.json" \
    --append --runtime capi --turbo '' --small '' --configs "$config" --budget-s 90 2>&1 | tail -1 | tee -a "$LOG"
done
at "done" | tee -a "$LOG"
