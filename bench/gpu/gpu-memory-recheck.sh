#!/usr/bin/env bash
# Issue 11's rows that failed or were not reached on 2026-12-02 (bench/NOTES.md "Issue 11, measured"),
# in one call after node and the CUDA provider are on the machine: U, Large fp8 unlimited with
# everything resident (the twin that denoise_vs_unlimited divides by, in this run's file), then Large
# fp8 at 22 and 16 GiB with both placements (everything resident is the target; the cpu-encoders row is the
# one whose untiled VAE decode ran out of its arena that day) and at 12 GiB calibrated (auto: the CPU
# placement if it fits, tiled) — both with the VAE's cuDNN workspace now bounded under a limit
# (component-session.ts). T5-XXL's seconds per prompt on the CPU come with the cpu-encoders rows. The
# calibration is the one measured that day (bench/results/gpu-2026-12-02-memory-calibration.json,
# copied to /tmp so the run cannot change the committed file). ≈ 330 s; ends by ENDS_BY (default 560).
# Then gpu-memory-mixed.sh (X) in a later call on the same machine (it reads the same /tmp file).
# On the GPU machine, from the checkout: bash bench/gpu/gpu-memory-recheck.sh
ENDS_BY=${ENDS_BY:-560}
WEIGHTS=fp8
source bench/gpu/call-start.sh
CAL=/tmp/atelier-memory-calibration.json
[ -f "$CAL" ] || cp bench/results/gpu-2026-12-02-memory-calibration.json "$CAL"
common=(--models "$W" --tokenizers .gpu/tokenizers --out "$OUT/memory-recheck.json" --append --precision fp8
  --runtime capi --session-api capi --turbo '' --small '' --steps 28 --emulate-card --configs large --calibration "$CAL")
echo "== U: unlimited, gpu at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/memory-recheck.log"
timeout "$(left 75)" node .gpu/bundle/atelier-bench.js "${common[@]}" --gpu-memory-limit none --placement gpu \
  --budget-s "$(left 65)" 2>&1 | tee -a "$OUT/memory-recheck.log"
echo "== 22 and 16 GiB, gpu and cpu-encoders at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/memory-recheck.log"
timeout "$(left 330)" node .gpu/bundle/atelier-bench.js "${common[@]}" --gpu-memory-limit 22GiB,16GiB --placement gpu,cpu-encoders \
  --budget-s "$(left 320)" 2>&1 | tee -a "$OUT/memory-recheck.log"
echo "== 12 GiB, auto at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/memory-recheck.log"
timeout "$(left 420)" node .gpu/bundle/atelier-bench.js "${common[@]}" --gpu-memory-limit 12GiB --placement auto \
  --budget-s "$(left 410)" 2>&1 | tee -a "$OUT/memory-recheck.log"
cp "$CAL" "$OUT/calibration.json" 2>/dev/null
echo "recheck done at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/memory-recheck.log"
