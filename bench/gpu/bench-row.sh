# Sourced after call-start.sh by the issue-10 A/B scripts (gpu-form-a.sh, gpu-form-a-3.sh) with NAME
# set: `row LABEL [VAR=value ...]` runs one atelier-bench.js row of $CONFIG (e.g. large:fp8) with those
# variables in its environment, appending to $OUT/$NAME.json, the row's summary line to $OUT/$NAME.log
# ($LOG), and our ops' verbose lines (which form each plan got, autotuning's timings) to $OUT/verbose.log.
# `profiled TAG [VAR=value ...]` runs one row of $CONFIG under kernel-times.so (bench/gpu/kernel-times.sh
# built it) into $OUT/kernels-TAG.*.csv and $OUT/profiled.json, when at least 90 s are left.
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

profiled() {
  local tag=$1
  shift
  [ "$(left)" -gt 90 ] || { at "no time left to profile $tag" | tee -a "$LOG"; return; }
  at "$CONFIG profiled ($tag)" | tee -a "$LOG"
  env "$@" KERNEL_TIMES_OUT="$OUT/kernels-$tag" LD_PRELOAD=/tmp/kernel-times.so timeout 85 \
    node .gpu/bundle/atelier-bench.js --models "$W" --tokenizers .gpu/tokenizers --out "$OUT/profiled.json" \
    --append --runtime capi --turbo '' --small '' --configs "$CONFIG" --budget-s 72 2>&1 | tail -1 | tee -a "$LOG"
}
