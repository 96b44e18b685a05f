#!/usr/bin/env bash
# Issue 10, thirteenth session: MMDiT-X's attn and attn2 norms quantized by one node (NetOptions.pairedNorms,
# the default) against a node each (ATELIER_PAIRED_NORMS=0), Medium W8A8 alternating, three pairs; the
# images must be the same bits (image_sha256, also against the run of record's rows of the same files);
# then Medium under kernel-times.so with the timeline. After a call that wrote the Medium fp8 files and
# one that carried runtime-b's part0: carry .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers,
# .gpu/device-env.sh. ROUNDS pairs (default 3). Ends by ENDS_BY seconds (default 200). On the GPU machine:
# bash bench/gpu/gpu-paired-norms.sh
ENDS_BY=${ENDS_BY:-200}
WEIGHTS=fp8 MODELS=medium
source bench/gpu/call-start.sh
NAME=paired-norms source bench/gpu/bench-row.sh
for round in $(seq "${ROUNDS:-3}"); do
  CONFIG=medium:fp8 row "Medium W8A8, norms paired $round"
  CONFIG=medium:fp8 row "Medium W8A8, a node each $round" ATELIER_PAIRED_NORMS=0
done
grep -oE '"(denoise_seconds|paired_norms|image_sha256)": *("[^"]*"|[0-9.]+|true|false)' "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
if [ "$(left)" -gt 50 ]; then ENDS_BY=$(($(left) + 60)) CONFIGS=medium:fp8 bash bench/gpu/gpu-profile.sh; fi
