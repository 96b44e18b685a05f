#!/usr/bin/env bash
# Issue 10's PyTorch anchors in one call (bench/gpu/README.md): torch_bench.py --plan issue10, per
# model (Large, then Medium) at 1024², 28 steps, CFG, batch 1: eager bf16, torch.compile bf16, eager
# FP8 and torch.compile FP8 (every linear layer of the joint blocks on torch._scaled_mm with
# per-channel weight and per-token activation scales: fp8_torch.py). Writes only the fp16
# checkpoints (21.6 GB, seconds in /dev/shm; kept for later calls, /tmp/sd35-dir says where); no
# text encoders (--no-encoders). Unpacks node on the way when runtime-a is carried. Ends by 560 s;
# a compilation over --compile-budget-s or the run's budget is listed under `skipped`. ENDS_BY
# (seconds from its start, default 560) ends it earlier, to share a call with other work.
# On the GPU machine, from the checkout: bash bench/gpu/gpu-torch-fp8.sh [torch_bench args]
#   (same-session anchors for an Atelier step: ... --plan issue10-compiled --models large)
#   ATELIER_TORCH_FP8_FAST_ACCUM=1 gives torch._scaled_mm fast accumulation, as Atelier's W8A8 has by default.
T0=$(date +%s)
ENDS_BY=${ENDS_BY:-560}
left() { echo $((${1:-$ENDS_BY} - $(date +%s) + T0)); }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
source .gpu/device-env.sh
{ nvidia-smi; df -h /dev/shm; free -g; nproc; python3 -c 'import torch; print(torch.__version__, torch.version.cuda)'; } 2>&1 | tee "$OUT/machine.log"
W=$(cat /tmp/sd35-dir 2>/dev/null)
if [ -z "$W" ]; then
  W=/dev/shm/sd35
  [ "$(df -B1 --output=avail /dev/shm | tail -1)" -gt 53000000000 ] || W=$PWD/.gpu/sd35
  echo "$W" > /tmp/sd35-dir
fi
python3 bench/gpu/make_weights.py "$W" --models large,medium --precisions fp16 --encoders none --jobs 8 > "$OUT/weights.log" 2>&1
tail -1 "$OUT/weights.log"
echo "weights done at $(( $(date +%s) - T0 )) s"
timeout "$(left $((ENDS_BY + 5)))" python3 bench/gpu/torch_bench.py --models-dir "$W" --out "$OUT/torch-fp8.json" \
  --plan issue10 --no-encoders --budget-s "$(left $((ENDS_BY - 5)))" "$@" 2>&1 | tee "$OUT/torch-fp8.log"
echo "call done at $(( $(date +%s) - T0 )) s"
