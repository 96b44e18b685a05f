# Sourced after call-start.sh by the issue-10 A/B scripts (gpu-form-a.sh, gpu-form-a-3.sh) with NAME
# set: `row LABEL [VAR=value ...]` runs one atelier-bench.js row of $CONFIG (e.g. large:fp8) with those
# variables in its environment, appending to $OUT/$NAME.json, the row's summary line to $OUT/$NAME.log
# ($LOG), and our ops' verbose lines (which form each plan got, autotuning's timings) to $OUT/verbose.log.
LOG="$OUT/$NAME.log"
ROWS="$OUT/$NAME.json"
row() {
  local label=$1
  shift
  at "$label" | tee -a "$LOG"
  env "$@" timeout 85 node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers \
    --out "$ROWS" --append --runtime capi --turbo '' --small '' --configs "$CONFIG" --budget-s 72 \
    > "$OUT/row.log" 2>&1
  grep -E "atelier:(Fp8Linear|AdaLN).*(e4m3|refused|delayed|autotune)" "$OUT/row.log" | sort | uniq -c |
    sort -rn | head -40 >> "$OUT/verbose.log"
  tail -1 "$OUT/row.log" | tee -a "$LOG"
}
