#!/usr/bin/env bash
# Issue 10, fourteenth session: Medium's idle microseconds before cuBLASLt's large GEMMs. The run of
# record's timeline shows 3–5 µs of idle before every large nvjet GEMM (0.55 of 0.79 idle ms per
# Medium step) and 0.3 µs before the small ones: the width of a cudaMemsetAsync and its latency, which
# cuBLASLt issues before kernels that use its workspace. Call 3 of a machine session, after a call
# that writes the files (carrying .gpu/runtime-a.tar.xz and .gpu/device-env.sh:
# `WEIGHTS=fp8 MODELS=large,medium bash -c "source bench/gpu/call-start.sh"`) and one carrying runtime-b's
# part0: carry .gpu/runtime-b.tar.xz.part1, .gpu/bundle, .gpu/tokenizers, .gpu/device-env.sh.
# 1. Medium W8A8 as shipped (JointQkvNorm one row per block again) three rows, between them the
#    heuristic offered no workspace (ATELIER_GEMM_WORKSPACE_MIB=0) twice and two rows per block once;
# 2. Large W8A8 shipped twice, no workspace once;
# 3. Medium profiled shipped and with no workspace, memsets and memcopies in the timeline
#    (kernel-times.c records them as "[memset N B]").
# (ATELIER_QKV_NORM_ROWS and its two-row kernel are gone since: that row measured them, 1.014 s.)
# Everything comes back as gaps.tar.gz (the device tool returns at most 8 files).
# Ends by ENDS_BY seconds (default 560). On the GPU machine, from the checkout: bash bench/gpu/gpu-gaps.sh
ENDS_BY=${ENDS_BY:-560}
WEIGHTS=fp8 MODELS=large,medium
source bench/gpu/call-start.sh
NAME=gaps source bench/gpu/bench-row.sh
bash bench/gpu/kernel-times.sh | tee -a "$LOG" || exit 1
# The plans' lines (the workspace each GEMM's algorithm asks for) of a row run with ATELIER_OPS_VERBOSE=1.
keep_plans() { grep -h "atelier:Fp8Linear: cuBLASLt" "$OUT/row.log" | sort | uniq -c > "$OUT/plans-$1.log"; }
CONFIG=medium:fp8 row "Medium W8A8 1" ATELIER_OPS_VERBOSE=1
keep_plans medium-shipped
CONFIG=medium:fp8 row "Medium W8A8, no cuBLASLt workspace" ATELIER_GEMM_WORKSPACE_MIB=0 ATELIER_OPS_VERBOSE=1
keep_plans medium-ws0
CONFIG=medium:fp8 row "Medium W8A8 2"
CONFIG=medium:fp8 row "Medium W8A8, JointQkvNorm two rows per block" ATELIER_QKV_NORM_ROWS=2
CONFIG=medium:fp8 row "Medium W8A8 3"
CONFIG=medium:fp8 row "Medium W8A8, no cuBLASLt workspace 2" ATELIER_GEMM_WORKSPACE_MIB=0
CONFIG=large:fp8 row "Large W8A8 1"
CONFIG=large:fp8 row "Large W8A8, no cuBLASLt workspace" ATELIER_GEMM_WORKSPACE_MIB=0
CONFIG=large:fp8 row "Large W8A8 2"
grep -oE '"(config|denoise_seconds|image_sha256|process_peak_gpu_mem_gb)": *("[^"]*"|[0-9.]+)' "$ROWS" \
  2>/dev/null | paste -sd' ' | tee -a "$LOG"
CONFIG=medium:fp8 profiled medium-shipped
CONFIG=medium:fp8 profiled medium-ws0 ATELIER_GEMM_WORKSPACE_MIB=0
at "done" | tee -a "$LOG"
(cd "$OUT" && tar czf gaps.tar.gz --exclude=gaps.tar.gz --exclude=weights.log ./*)
find "$OUT" -mindepth 1 ! -name gaps.tar.gz ! -name gaps.log -delete
