#!/usr/bin/env bash
# Issue 10's next measurements in one call (bench/NOTES.md "Issue 10, seventh session"), after node
# and the CUDA provider are unpacked on this machine; writes the Large fp8 and fp16 files if missing:
#   1. capi-check mlp-handoff (the MLP hand-off against today's pair; the log says whether cuBLASLt
#      wrote e4m3 itself or the fallback ran);
#   2. the whole step, Large 1024², 28 steps, CFG, one row each, in one machine session:
#      W8A8 as shipped (fast accumulation), W8A8 with exact accumulation (ATELIER_FP8_FAST_ACCUM=0),
#      W8A8 from the bundle of commit 0002109 (before the sixth session's native glue change; carry
#      it as .gpu/bundle-0002109, built by `git worktree add /tmp/wt-old 0002109` and its
#      bench/gpu/bundle.mjs) — the seventh session's machine ran W8A8 3.3 % slower than the fifth's,
#      FP16 only 1.5 %: this tells a regression of ours from the machine —, W8A8 with the MLP hand-off
#      (ATELIER_FP8_MLP_HANDOFF=1), and FP16;
#   3. the quality report of Large for fp16, w8a8 (exact), w8a8-fastacc and w8a8-handoff, 1 seed.
# Ends by ENDS_BY seconds (default 570). On the GPU machine, from the checkout: bash bench/gpu/gpu-w8a8-ab.sh
ENDS_BY=${ENDS_BY:-570}
WEIGHTS=fp8,fp16
source bench/gpu/call-start.sh
LOG="$OUT/ab.log"
at "capi-check mlp-handoff" | tee -a "$LOG"
ATELIER_OPS_VERBOSE=1 timeout 150 node .gpu/bundle/capi-check.js --only mlp-handoff --out "$OUT/mlp-handoff.json" \
  > "$OUT/mlp-handoff.log" 2>&1
grep -E "e4m3_delayed|refused|PASS|FAIL" "$OUT/mlp-handoff.log" | tail -12 | tee -a "$LOG"
row() { # label, bundle dir, then env assignments
  local label=$1 dir=$2
  shift 2
  at "$label" | tee -a "$LOG"
  env "$@" timeout 75 node "$dir/atelier-bench.js" --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/ab.json" \
    --append --runtime capi --turbo '' --small '' --configs "$CONFIG" --budget-s 65 2>&1 | tail -3 | tee -a "$LOG"
}
CONFIG=large:fp8 row "Large W8A8 (fast accumulation, as shipped)" .gpu/bundle
CONFIG=large:fp8 row "Large W8A8, exact accumulation" .gpu/bundle ATELIER_FP8_FAST_ACCUM=0
if [ -f .gpu/bundle-0002109/atelier-bench.js ]; then
  CONFIG=large:fp8 row "Large W8A8, bundle of 0002109" .gpu/bundle-0002109
else
  echo "no .gpu/bundle-0002109: the regression row is skipped" | tee -a "$LOG"
fi
CONFIG=large:fp8 row "Large W8A8, MLP hand-off" .gpu/bundle ATELIER_FP8_MLP_HANDOFF=1
CONFIG=large:fp16 row "Large FP16" .gpu/bundle
at "quality" | tee -a "$LOG"
ENDS_BY=$(($(left) - 5)) timeout "$(left)" bash bench/gpu/gpu-quality.sh --which large --seeds 1 \
  --variants fp16,w8a8,w8a8-fastacc,w8a8-handoff > "$OUT/quality.log" 2>&1
grep -A8 "relative L2" "$OUT/quality.log" | tee -a "$LOG"
at "done" | tee -a "$LOG"
