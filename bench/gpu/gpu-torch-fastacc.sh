#!/usr/bin/env bash
# Issue 10's owed fairness rows in one call (bench/NOTES.md "Issue 10, ninth session"): our W8A8
# (fast accumulation, as shipped) beside PyTorch's compiled FP8 with torch._scaled_mm's
# use_fast_accum — the same accumulation ours uses — and torch.compile bf16, Large 1024², 28 steps,
# CFG, batch 1, one machine session. node must be unpacked already (runtime-a and -b carried in
# earlier calls of the same machine); carry .gpu/bundle and .gpu/tokenizers. Writes the Large fp8
# and fp16 files if missing. OURS_ENV (env assignments) adds a second row of ours with them. Ends by
# ENDS_BY seconds (default 560).
# On the GPU machine, from the checkout: ENDS_BY=... bash bench/gpu/gpu-torch-fastacc.sh
ENDS_BY=${ENDS_BY:-560}
WEIGHTS=fp8,fp16
source bench/gpu/call-start.sh
LOG="$OUT/fastacc.log"
at "Large W8A8 (fast accumulation, as shipped)" | tee -a "$LOG"
timeout 80 node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/ours.json" \
  --runtime capi --turbo '' --small '' --configs large:fp8 --budget-s 70 2>&1 | tail -3 | tee -a "$LOG"
if [ -n "${OURS_ENV:-}" ]; then
  # A second row of ours with these settings (e.g. OURS_ENV="ATELIER_FP8_MLP_HANDOFF=0").
  at "Large W8A8, $OURS_ENV" | tee -a "$LOG"
  env $OURS_ENV timeout 80 node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers \
    --out "$OUT/ours.json" --append --runtime capi --turbo '' --small '' --configs large:fp8 --budget-s 70 2>&1 |
    tail -3 | tee -a "$LOG"
fi
at "PyTorch compiled FP8 (fast accumulation), then torch.compile bf16" | tee -a "$LOG"
ATELIER_TORCH_FP8_FAST_ACCUM=1 timeout "$(left $((ENDS_BY + 5)))" python3 bench/gpu/torch_bench.py --models-dir "$W" \
  --out "$OUT/torch-fastacc.json" --plan issue10-compiled --models large --no-encoders \
  --budget-s "$(left $((ENDS_BY - 5)))" 2>&1 | tail -25 | tee -a "$LOG"
at "done" | tee -a "$LOG"
