#!/usr/bin/env bash
# Issue 10's next measurement in one call (bench/NOTES.md "Issue 10, sixth session"), after node and
# the CUDA provider are unpacked on this machine (runtime-a and runtime-b carried by this call or
# earlier ones); writes Large and Medium fp8 + fp16 if missing (/tmp/sd35-dir says where):
#   1. the whole step, Large 1024², 28 steps, CFG, W8A8: as today, then with cuBLASLt's fast
#      accumulation (ATELIER_FP8_FAST_ACCUM=1; rows say `fp8_fast_accumulation`);
#   2. Large fp16 in the same session (the FP8-vs-FP16 target);
#   3. Medium W8A8 without and with fast accumulation (the Medium ≤ 1.0 s target);
#   before them, the GEMM microbenchmark (.gpu/bundle/gemm-overlap from gemm-overlap.cu, ≈ 20 s): each
#   joint-block GEMM's kernel time ± fast accumulation, and the context stream's GEMMs run beside
#   the image stream's on a second stream (the next lever, NOTES "Issue 10, sixth session").
# The quality of fast accumulation: gpu-quality.sh with --variants fp16,w8a8,w8a8-fastacc in another
# call; PyTorch's rows for the same session: gpu-torch-fp8.sh --plan issue10-compiled --models large.
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-fastacc.sh
ENDS_BY=${ENDS_BY:-570}
MODELS=large,medium
WEIGHTS=fp8,fp16
source bench/gpu/call-start.sh
LOG="$OUT/fastacc.log"
at "GEMM microbenchmark" | tee -a "$LOG"
timeout 90 .gpu/bundle/gemm-overlap 50 2>&1 | tee "$OUT/gemm-overlap.log" | grep -v '^@@' | tee -a "$LOG"
bench=(node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/fastacc.json" --append
  --runtime capi --turbo '' --small '')
at "Large W8A8" | tee -a "$LOG"
timeout 95 "${bench[@]}" --configs large:fp8 --budget-s 85 2>&1 | tail -4 | tee -a "$LOG"
at "Large W8A8, fast accumulation" | tee -a "$LOG"
ATELIER_FP8_FAST_ACCUM=1 timeout 95 "${bench[@]}" --configs large:fp8 --budget-s 85 2>&1 | tail -4 | tee -a "$LOG"
at "Large fp16" | tee -a "$LOG"
timeout 90 "${bench[@]}" --configs large:fp16 --budget-s 80 2>&1 | tail -4 | tee -a "$LOG"
at "Medium W8A8" | tee -a "$LOG"
timeout 70 "${bench[@]}" --configs medium:fp8 --budget-s 60 2>&1 | tail -4 | tee -a "$LOG"
at "Medium W8A8, fast accumulation" | tee -a "$LOG"
ATELIER_FP8_FAST_ACCUM=1 timeout "$(left)" "${bench[@]}" --configs medium:fp8 --budget-s "$(($(left) - 10))" 2>&1 | tail -4 | tee -a "$LOG"
at "done" | tee -a "$LOG"
