#!/usr/bin/env bash
# Issue 10's memory target, second try (bench/NOTES.md "Issue 10, eleventh session"): the run of
# record (gpu-record-3.sh) measured W8A8 29.87 GiB against weight-only FP8 29.80, all of the 70 MiB
# outside ONNX Runtime's arenas. This library sizes cuBLASLt's workspace to what each plan's
# candidate algorithms ask for (it was 32 MiB per stream) and shares one cuBLASLt handle per device.
# Large 1024², 28 steps, CFG, batch 1 on one machine: W8A8 (verbose: each plan's workspace),
# weight-only FP8, W8A8, weight-only FP8, W8A8 without GEMM autotuning (the code autotuning loads).
# Carry as gpu-record-3.sh (node and runtime-b's part0 unpacked by earlier calls of the machine
# session; writes the Large fp8 files if missing). Ends by ENDS_BY seconds (default 200).
# On the GPU machine, from the checkout: bash bench/gpu/gpu-memory-w8a8-2.sh
ENDS_BY=${ENDS_BY:-200}
WEIGHTS=fp8 MODELS=large
source bench/gpu/call-start.sh
NAME=memory-2 source bench/gpu/bench-row.sh
CONFIG=large:fp8 row "Large W8A8 1 (verbose)" ATELIER_OPS_VERBOSE=1
grep -E "atelier:Fp8Linear: cuBLASLt .*workspace" "$OUT/row.log" | sed -E 's/stream scratch [0-9.]+ MiB//' |
  sort | uniq -c | sort -rn | head -20 | tee -a "$LOG"
CONFIG=large:fp8-weights row "Large weight-only FP8 1"
CONFIG=large:fp8 row "Large W8A8 2"
CONFIG=large:fp8-weights row "Large weight-only FP8 2"
CONFIG=large:fp8 row "Large W8A8 without autotuning" ATELIER_GEMM_AUTOTUNE=0
grep -oE '"(precision|gemm_autotune|denoise_seconds|process_peak_gpu_mem_gb|arena_total_gb|non_arena_gb)": *("[^"]*"|[0-9.]+|true|false)' \
  "$ROWS" 2>/dev/null | paste -sd' ' | tee -a "$LOG"
at "done" | tee -a "$LOG"
