#!/usr/bin/env bash
# Issue 10, step 8 in one call (bench/NOTES.md "Issue 10, step 8"), after node and the CUDA provider
# are unpacked on this machine (runtime-a and runtime-b carried by this call or earlier ones) and the
# Large fp8 + fp16 files are written (make_weights.py; /tmp/sd35-dir says where):
#   1. the op checks of the two fusions (capi-check residual-norm, token-split);
#   2. the whole step, Large 1024², 28 steps, CFG: W8A8 with the fusions (the default since this
#      measurement; ATELIER_STEP_FUSIONS=1 kept explicit) and without (ATELIER_STEP_FUSIONS=0),
#      then fp16 with them (rows say `step_fusions`);
#   3. where the fused W8A8 step's GPU time goes: the same row once more with kernel-times.c preloaded
#      (CUPTI, every kernel by name; sorted by kernel_breakdown.py here), so it does not disturb 2;
# PyTorch's rows for the same session come from gpu-torch-fp8.sh (--plan issue10-compiled --models
# large: torch.compile FP8, then bf16) in another call on the same machine.
# Ends by ENDS_BY seconds (default 570); each part is bounded so a slow one cannot take the rest.
# On the GPU machine, from the checkout: bash bench/gpu/gpu-step8.sh
ENDS_BY=${ENDS_BY:-570}
WEIGHTS=fp8,fp16
source bench/gpu/call-start.sh
LOG="$OUT/step8.log"
at "op checks" | tee -a "$LOG"
timeout 150 node .gpu/bundle/capi-check.js --only residual-norm,token-split --out "$OUT/step8-check.json" 2>&1 | tail -40 | tee -a "$LOG"
bench=(node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/step8.json" --append
  --runtime capi --turbo '' --small '')
at "W8A8 with the fusions" | tee -a "$LOG"
ATELIER_STEP_FUSIONS=1 timeout 95 "${bench[@]}" --configs large:fp8 --budget-s 85 2>&1 | tail -8 | tee -a "$LOG"
at "W8A8 without" | tee -a "$LOG"
ATELIER_STEP_FUSIONS=0 timeout 95 "${bench[@]}" --configs large:fp8 --budget-s 85 2>&1 | tail -8 | tee -a "$LOG"
at "fp16 with the fusions" | tee -a "$LOG"
ATELIER_STEP_FUSIONS=1 timeout 90 "${bench[@]}" --configs large:fp16 --budget-s 80 2>&1 | tail -8 | tee -a "$LOG"
at "kernel breakdown (W8A8 with the fusions)" | tee -a "$LOG"
if bash bench/gpu/kernel-times.sh 2>&1 | tee -a "$LOG" | tail -1 | grep -q '/tmp/kernel-times.so'; then
  ATELIER_STEP_FUSIONS=1 KERNEL_TIMES_OUT="$OUT/kernels" LD_PRELOAD=/tmp/kernel-times.so timeout 95 \
    node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/step8-profiled.json" \
    --runtime capi --turbo '' --small '' --configs large:fp8 --budget-s 85 2>&1 | tail -4 | tee -a "$LOG"
fi
at "done" | tee -a "$LOG"
