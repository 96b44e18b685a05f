#!/usr/bin/env bash
# Issue 16 on a machine with several GPUs (nvidia-h200-x2 or -x4): SD3.5 Large FP8, 1024², 28
# steps, on the random-weight files of bench/gpu/ (make_weights.py, in /dev/shm), with 1, 2 (and
# 4) GPUs, one process (`queue.concurrency: N`) and gateway + one `atelier worker` per GPU
# (Redis on the same machine), 8 users each keeping 4 jobs queued (bench/multi-gpu/multi-gpu.ts).
#
# The same command for both calls of one machine (bench/multi-gpu/README.md has the carry lists):
#   call 1 (runtime-a, the bundle): unpacks node and .gpu/multi.tar.xz, writes the weights, checks
#          the bundle; the CUDA provider is not there yet, so it stops there (~1–2 min)
#   call 2 (runtime-b), within 30 s of call 1: the runs, ending by 560 s
#   On the GPU machine, from the checkout:  bash bench/multi-gpu/gpu-multi.sh [extra driver flags]
# Results under $OUT: multi-gpu-<date>.json, multi-gpu-table.md, multi-gpu.log, machine.log,
# weights.log, check.log, logs.tar.xz (every process's log and config).
T0=$(date +%s)
left() { echo $((${1:-560} - $(date +%s) + T0)); }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
# NVLink multicast stays off (the device notes: it can take the host's shared GPUs out of service).
# Atelier uses none of NCCL, PyTorch or NVSHMEM; the driver passes these on to every process anyway.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
source .gpu/device-env.sh
RUNTIME=${ATELIER_GPU:-/opt/atelier-gpu}
MULTI=$RUNTIME/multi
if [ -f .gpu/multi.tar.xz ]; then
  rm -rf "$MULTI" && tar -xJf .gpu/multi.tar.xz -C "$RUNTIME" && echo "bundle unpacked into $MULTI"
fi
[ -f "$MULTI/dist/js/multi-gpu.js" ] || { echo "no bundle in $MULTI: carry .gpu/multi.tar.xz (node bench/multi-gpu/bundle.mjs)"; exit 1; }

# Redis: the GPU image lists none (KINDS.md); a carried one (bundle.mjs --with-redis) is used if there.
if ! command -v redis-server >/dev/null && [ -x "$MULTI/redis/redis-server" ]; then
  mkdir -p /tmp/atelier-redis-bin
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/redis/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s/redis/redis-server "$@"\n' \
    "$MULTI" "$MULTI" > /tmp/atelier-redis-bin/redis-server
  chmod +x /tmp/atelier-redis-bin/redis-server
  export PATH=/tmp/atelier-redis-bin:$PATH
fi
if redis-server --version >/dev/null 2>&1; then REDIS=yes; else REDIS=no; fi

{ nvidia-smi; nvidia-smi topo -m; nproc; free -g; df -h /dev/shm /tmp; node --version;
  echo "redis-server: $REDIS $(redis-server --version 2>/dev/null)"; } > "$OUT/machine.log" 2>&1

# 14.9 GB: Large fp8 (MMDiT + VAE), CLIP-L, CLIP-G, T5-XXL fp8. SD35_DIR and MAKE_WEIGHTS_EXTRA
# (--tiny) are for trying this script elsewhere.
W=${SD35_DIR:-/dev/shm/sd35}
[ -n "${SD35_DIR:-}" ] || [ -d "$W/large" ] || [ "$(df -B1 --output=avail /dev/shm | tail -1)" -gt 17000000000 ] || W=$PWD/.gpu/sd35
python3 bench/gpu/make_weights.py "$W" --models large --precisions fp8 --jobs 16 ${MAKE_WEIGHTS_EXTRA:-} >> "$OUT/weights.log" 2>&1 \
  || { echo "make_weights failed: $OUT/weights.log"; tail -5 "$OUT/weights.log"; exit 1; }
echo "weights in $W at $(( $(date +%s) - T0 )) s"

PROVIDER_LIB=$RUNTIME/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so
if [ ! -f "$PROVIDER_LIB" ]; then
  node "$MULTI/dist/js/multi-gpu.js" --check 2>&1 | tee "$OUT/check.log"
  echo "prepared (no CUDA provider yet): now call 2 with .gpu/runtime-b.tar.xz and .gpu/device-env.sh, same command"
  exit 0
fi

NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
# Most important first: the one-GPU baseline, two GPUs both ways, then four; the driver skips what
# the budget no longer covers and says so.
if [ "$NGPU" -ge 4 ]; then RUNS=embedded:1,embedded:2,cluster:2,embedded:4,cluster:4,cluster:1; PLANNED=5
elif [ "$NGPU" -ge 2 ]; then RUNS=embedded:1,embedded:2,cluster:2,cluster:1; PLANNED=4
else RUNS=embedded:1,cluster:1; PLANNED=2; fi
if [ "$REDIS" = no ]; then
  RUNS=$(echo "$RUNS" | tr ',' '\n' | grep -v cluster | paste -sd,)
  PLANNED=$(echo "$RUNS" | tr ',' '\n' | wc -l)
  echo "no redis-server on this machine: the cluster runs are left out (bundle.mjs --with-redis carries one)"
fi
# Each run: start-up (model load, graph builds the first time), warm-up, the window, drain, stop.
OVERHEAD=60
BUDGET=$(left 540)
DURATION=$(( (BUDGET - PLANNED * OVERHEAD) / PLANNED ))
[ "$DURATION" -gt 90 ] && DURATION=90
[ "$DURATION" -lt 20 ] && DURATION=20
echo "$NGPU GPU(s), runs $RUNS, ${DURATION} s each, budget ${BUDGET} s"

DATE=$(date -u +%F)
WORK=/tmp/atelier-multi-gpu
rm -rf "$WORK"
timeout "$(left 555)" node "$MULTI/dist/js/multi-gpu.js" --runs "$RUNS" \
  --models "$W/large" --checkpoint sd3.5_large_fp8_scaled.safetensors --tokenizers "$MULTI/tokenizers" \
  --provider cuda --precision fp8 --steps 28 --warmup-steps 2 --users 8 --queued 4 \
  --duration-s "$DURATION" --budget-s "$BUDGET" --overhead-estimate-s "$OVERHEAD" \
  --job-timeout-s 400 --drain-timeout-s 60 --work-dir "$WORK" \
  --out "$OUT/multi-gpu-$DATE.json" --markdown "$OUT/multi-gpu-table.md" "$@" 2>&1 | tee "$OUT/multi-gpu.log"
(cd "$WORK" 2>/dev/null && find . \( -name '*.log' -o -name atelier.yaml \) -print0 \
  | tar -cJf "$OUT/logs.tar.xz" --null -T -)
echo "done at $(( $(date +%s) - T0 )) s"
