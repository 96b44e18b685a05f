#!/usr/bin/env bash
# Issue 10's next measurement and issue 15's branch price in one call (bench/NOTES.md "Issue 10,
# step 8 measured" and "Issue 15"), after node and the CUDA provider are unpacked on this machine
# and the Large fp8 files are written (/tmp/sd35-dir says where; written here if missing):
#   1. the FP8 GEMM checks at Large's shapes without and with cuBLASLt autotuning
#      (ATELIER_GEMM_AUTOTUNE=1: the heuristic's candidates timed on the first call, the fastest kept);
#   2. the whole step, Large 1024², 28 steps, CFG, W8A8: without and with autotuning (the first
#      prints each candidate's time: ATELIER_OPS_VERBOSE=1, to the log only);
#   3. capi-check lora-branch: Fp8Linear alone vs + a LoRA branch at Large's four layer shapes.
# Ends by ENDS_BY seconds (default 560). On the GPU machine, from the checkout: bash bench/gpu/gpu-autotune.sh
ENDS_BY=${ENDS_BY:-560}
WEIGHTS=fp8
source bench/gpu/call-start.sh
LOG="$OUT/autotune.log"
at "FP8 GEMM checks, heuristic" | tee -a "$LOG"
timeout 150 node .gpu/bundle/capi-check.js --only fp8 --out "$OUT/gemm-heuristic.json" 2>&1 | tail -5 | tee -a "$LOG"
at "FP8 GEMM checks, autotuned" | tee -a "$LOG"
ATELIER_GEMM_AUTOTUNE=1 ATELIER_OPS_VERBOSE=1 timeout 150 node .gpu/bundle/capi-check.js --only fp8 \
  --out "$OUT/gemm-autotune.json" > "$OUT/gemm-autotune.log" 2>&1
grep -E "autotune|PASS|FAIL" "$OUT/gemm-autotune.log" | tail -30 | tee -a "$LOG"
bench=(node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/autotune.json" --append
  --runtime capi --turbo '' --small '' --configs large:fp8)
at "W8A8 step, heuristic" | tee -a "$LOG"
timeout 95 "${bench[@]}" --budget-s 85 2>&1 | tail -4 | tee -a "$LOG"
at "W8A8 step, autotuned" | tee -a "$LOG"
ATELIER_GEMM_AUTOTUNE=1 timeout 110 "${bench[@]}" --budget-s 100 2>&1 | tail -4 | tee -a "$LOG"
at "lora-branch" | tee -a "$LOG"
timeout "$(left)" node .gpu/bundle/capi-check.js --only lora-branch --out "$OUT/lora-branch.json" 2>&1 | tail -4 | tee -a "$LOG"
at "done" | tee -a "$LOG"
