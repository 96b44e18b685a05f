#!/usr/bin/env bash
# GPU call 1 of issue 9's measurement (bench/gpu/README.md): writes the random-weight SD3.5 files
# into /dev/shm (kept for call 2 while the machine is held) and runs the PyTorch anchor
# (torch_bench.py --plan issue9). Unpacks node (runtime-a) for call 2 on the way. Ends by 560 s.
# On the GPU machine, from the checkout: bash bench/gpu/gpu-call-1.sh   (results under $OUT)
T0=$(date +%s)
left() { echo $((${1:-560} - $(date +%s) + T0)); }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
source .gpu/device-env.sh
{ nvidia-smi; df -h /dev/shm /tmp .; free -g; nproc; } 2>&1 | tee "$OUT/machine.log"
W=/dev/shm/sd35
[ "$(df -B1 --output=avail /dev/shm | tail -1)" -gt 53000000000 ] || W=$PWD/.gpu/sd35
echo "$W" > /tmp/sd35-dir
python3 bench/gpu/make_weights.py "$W" --jobs 8 2>&1 | tee "$OUT/weights.log"
python3 bench/gpu/check_weights.py "$W" 2>&1 | tail -3 | tee -a "$OUT/weights.log"
echo "weights done at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/weights.log"
timeout "$(left 565)" python3 bench/gpu/torch_bench.py --models-dir "$W" --out "$OUT/torch.json" \
  --plan issue9 --budget-s "$(left 555)" 2>&1 | tee "$OUT/torch.log"
echo "call 1 done at $(( $(date +%s) - T0 )) s"
