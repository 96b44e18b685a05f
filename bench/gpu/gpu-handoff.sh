#!/usr/bin/env bash
# Issue 10's MLP hand-off in one call (fc1 writes e4m3 codes with a delayed per-tensor scale, fc2
# reads them as Fp8LinearQ: native/src/fp8_linear.h, NetOptions.fp8MlpHandoff), after node and the
# CUDA provider are unpacked on this machine; writes the Large fp8 files if missing (/tmp/sd35-dir):
#   1. capi-check mlp-handoff: Large's MLP today vs the hand-off (time per MLP, error of both against
#      float64); ATELIER_OPS_VERBOSE=1 to the log says whether cuBLASLt wrote e4m3 D itself or the
#      fallback ran (float16 h in scratch + our quantize_tensor);
#   2. the whole step, Large 1024², 28 steps, CFG, W8A8 (fast accumulation, the default): without and
#      with ATELIER_FP8_MLP_HANDOFF=1 (rows say `fp8_mlp_handoff`).
# Its quality: gpu-quality.sh --which large --seeds 2 --variants fp16,w8a8,w8a8-handoff in another call.
# Ends by ENDS_BY seconds (default 560). On the GPU machine, from the checkout: bash bench/gpu/gpu-handoff.sh
ENDS_BY=${ENDS_BY:-560}
WEIGHTS=fp8
source bench/gpu/call-start.sh
LOG="$OUT/handoff.log"
at "capi-check mlp-handoff" | tee -a "$LOG"
ATELIER_OPS_VERBOSE=1 timeout 200 node .gpu/bundle/capi-check.js --only mlp-handoff --out "$OUT/mlp-handoff.json" \
  > "$OUT/mlp-handoff.log" 2>&1
grep -E "e4m3_delayed|refused|PASS|FAIL" "$OUT/mlp-handoff.log" | tail -12 | tee -a "$LOG"
bench=(node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/handoff.json" --append
  --runtime capi --turbo '' --small '' --configs large:fp8)
at "Large W8A8" | tee -a "$LOG"
timeout 95 "${bench[@]}" --budget-s 85 2>&1 | tail -4 | tee -a "$LOG"
at "Large W8A8, MLP hand-off" | tee -a "$LOG"
ATELIER_FP8_MLP_HANDOFF=1 timeout "$(left)" "${bench[@]}" --budget-s "$(($(left) - 10))" 2>&1 | tail -4 | tee -a "$LOG"
at "done" | tee -a "$LOG"
