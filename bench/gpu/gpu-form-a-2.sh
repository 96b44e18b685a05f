#!/usr/bin/env bash
# Issue 10's tenth-session second call (bench/NOTES.md "Issue 10, tenth session"), on the machine of
# gpu-form-a.sh (node unpacked, the Large files written; carry .gpu/bundle and .gpu/tokenizers):
#   1. the quality report of Large, 1 seed: fp16, W8A8 and W8A8 with the per-tensor MLP (both exact
#      accumulation, so the MLP's form is the one difference), ≤ QUALITY_S seconds (default 260);
#   2. gpu-torch-fastacc.sh: our W8A8 as shipped and with the per-tensor MLP + adaLN table beside
#      PyTorch's compiled FP8 with fast accumulation and torch.compile bf16, to the end.
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-form-a-2.sh
T0=$(date +%s)
ENDS_BY=${ENDS_BY:-570}
QUALITY_S=${QUALITY_S:-260}
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
echo "== quality at 0 s" | tee "$OUT/form-a-2.log"
QUALITY_MODELS=large timeout "$QUALITY_S" bash bench/gpu/gpu-quality.sh --which large --seeds 1 --variants fp16,w8a8,w8a8-handoff \
  --budget-s $((QUALITY_S - 40)) > "$OUT/quality.log" 2>&1
grep -A8 "relative L2" "$OUT/quality.log" | tee -a "$OUT/form-a-2.log"
tail -3 "$OUT/quality.log" | tee -a "$OUT/form-a-2.log"
echo "== torch at $(($(date +%s) - T0)) s" | tee -a "$OUT/form-a-2.log"
OURS_ENV="ATELIER_FP8_MLP_HANDOFF=1 ATELIER_ADALN_TABLE=1" ENDS_BY=$((ENDS_BY - $(date +%s) + T0)) \
  bash bench/gpu/gpu-torch-fastacc.sh 2>&1 | tee -a "$OUT/form-a-2.log"
echo "== done at $(($(date +%s) - T0)) s" | tee -a "$OUT/form-a-2.log"
