#!/usr/bin/env bash
# Builds kernel-times.c (GPU time per kernel name through CUPTI) on the GPU machine against the
# CUPTI of its PyTorch install, into /tmp/kernel-times.so. Use:
#   KERNEL_TIMES_OUT=$OUT/kernels LD_PRELOAD=/tmp/kernel-times.so node .gpu/bundle/atelier-bench.js …
# then `python3 bench/gpu/kernel_breakdown.py $OUT/kernels.*.csv` (here) sorts the kernels into
# GEMM / attention / the rest.
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
INC=$(dirname "$(ls $NV/*/include/cupti.h 2>/dev/null | head -1)")
LIB=$(ls $NV/*/lib/libcupti.so* 2>/dev/null | head -1)
[ -n "$LIB" ] && [ -f "$INC/cupti.h" ] || { echo "kernel-times: no CUPTI under $NV"; exit 1; }
# The newest record struct of a kind the headers define: CUpti_Activity<kind><N>.
newest() { for v in 14 13 12 11 10 9 8 7 6 5 4 3 2; do
  grep -qs "} CUpti_Activity$1$v;" "$INC/cupti_activity.h" && { echo "CUpti_Activity$1$v"; return; }; done; }
MEMSET=$(newest Memset) MEMCPY=$(newest Memcpy)
for v in 14 13 12 11 10 9 8 7 6 5 4; do
  grep -qs "CUpti_ActivityKernel$v;" "$INC/cupti_activity.h" || continue
  g++ -x c -O2 -shared -fPIC -DKERNEL_RECORD="CUpti_ActivityKernel$v" -DMEMSET_RECORD="$MEMSET" \
    -DMEMCPY_RECORD="$MEMCPY" -I"$INC" -I/usr/local/cuda/include \
    bench/gpu/kernel-times.c -x none -o /tmp/kernel-times.so "$LIB" -Wl,-rpath,"$(dirname "$LIB")" -lpthread &&
    { echo "kernel-times: /tmp/kernel-times.so (CUpti_ActivityKernel$v, $LIB)"; exit 0; }
done
echo "kernel-times: build failed"; exit 1
