#!/usr/bin/env bash
# Builds .gpu/fa3/fa3-bench (git-ignored) from bench/gpu/fa3-bench.cu: FlashAttention-3's Hopper forward
# kernel for head dim 64 fp16 (sm_90a only) plus cuDNN's fp16 flash SDPA, in one binary. Needs no GPU.
#   bash bench/gpu/fa3-build.sh            incremental (an object whose inputs did not change is kept)
#   FA3_CLEAN=1 bash bench/gpu/fa3-build.sh  from scratch
#   NVCC=/path/to/nvcc                       another nvcc (default: nvcc on PATH, else /usr/local/cuda)
# Inputs: FA3 hopper/ and CUTLASS from native/fa3-deps.sh (run here when missing), cuDNN headers and
# the cuDNN frontend from native/cudnn-deps.mjs in .gpu/cudnn/ (headers only: the binary dlopens
# libcudnn.so.9 at run time). Links libcudart shared (so the cuDNN frontend's own dlopen of
# libcudart.so.13 gets the same runtime) and libdl.
#
# Two objects: FA3's kernel is the op library's own (native/fa3/fa3_forward.cu, built and cached by
# native/library.mjs with hopper/setup.py's flags), and fa3-bench.cu, the host side and cuDNN, compiled
# here with the same flags: setup.py's nvcc flags for its _sm90.cu files (plus the ones PyTorch's
# CUDAExtension adds to every nvcc call: the __CUDA_NO_HALF* defines and --expt-relaxed-constexpr),
# and the FLASHATTENTION_DISABLE_* defines setup.py passes when the matching FLASH_ATTENTION_DISABLE_*
# environment variables are TRUE, for everything but hdim 64 / fp16 / sm90 / forward.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
dir=.gpu/fa3
src=bench/gpu/fa3-bench.cu
bin=$dir/fa3-bench
objs=$dir/obj

NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}

bash native/fa3-deps.sh
[ -f .gpu/cudnn/frontend/include/cudnn_frontend.h ] && [ -f .gpu/cudnn/include/cudnn.h ] || {
  echo "fa3-build: .gpu/cudnn/ lacks the cuDNN headers or frontend: run node native/cudnn-deps.mjs" >&2
  exit 1
}

fa3_commit=$(awk '$1 == "flash-attention" { print $2 }' $dir/SOURCES)
cutlass_commit=$(awk '$1 == "cutlass" { print $2 }' $dir/SOURCES)

if [ "${FA3_CLEAN:-0}" = 1 ]; then rm -rf "$objs" "$bin"; fi
mkdir -p "$objs"

arch=(-gencode arch=compute_90a,code=sm_90a)
common=(
  -O3 -std=c++17 --ftemplate-backtrace-limit=0 --use_fast_math -lineinfo
  --expt-relaxed-constexpr --expt-extended-lambda
  -DCUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED -DCUTLASS_ENABLE_GDC_FOR_SM90 -DCUTLASS_DEBUG_TRACE_LEVEL=0 -DNDEBUG
  -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
  -D__CUDA_NO_HALF2_OPERATORS__
  -DFLASHATTENTION_DISABLE_BACKWARD -DFLASHATTENTION_DISABLE_SPLIT -DFLASHATTENTION_DISABLE_PAGEDKV
  -DFLASHATTENTION_DISABLE_APPENDKV -DFLASHATTENTION_DISABLE_LOCAL -DFLASHATTENTION_DISABLE_SOFTCAP
  -DFLASHATTENTION_DISABLE_PACKGQA -DFLASHATTENTION_DISABLE_FP8 -DFLASHATTENTION_DISABLE_VARLEN
  -DFLASHATTENTION_DISABLE_CLUSTER -DFLASHATTENTION_DISABLE_HDIM96 -DFLASHATTENTION_DISABLE_HDIM128
  -DFLASHATTENTION_DISABLE_HDIM192 -DFLASHATTENTION_DISABLE_HDIM256 -DFLASHATTENTION_DISABLE_SM8x
  -DFLASHATTENTION_DISABLE_HDIMDIFF64 -DFLASHATTENTION_DISABLE_HDIMDIFF192 -DFLASHATTENTION_DISABLE_DROPOUT
  -I "$dir/hopper" -I "$dir/cutlass/include"
)
host_flags=(
  -I native/src
  -DNV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING -isystem .gpu/cudnn/include -isystem .gpu/cudnn/frontend/include
  "-DFA3_BENCH_FA3_COMMIT=\"$fa3_commit\"" "-DFA3_BENCH_CUTLASS_COMMIT=\"$cutlass_commit\""
)

# An object is stale when missing or built from other inputs: the signature hashes nvcc, the flags, the
# source and the deps' SOURCES (contents, not times, so an edit during a build counts).
stale() {  # stale OBJ FLAGS...
  local obj=$1
  shift
  local sig
  sig=$({ printf '%s\n' "$NVCC" "$@"; cat "$src" "$dir/SOURCES"; } | sha256sum | cut -c1-16)
  echo "$sig" > "$obj.flags.new"
  [ -f "$obj" ] && [ -f "$obj.flags" ] && [ "$(cat "$obj.flags")" = "$sig" ] && return 1
  return 0
}

compile() {  # compile NAME FLAGS...
  local name=$1
  shift
  local obj=$objs/$name.o
  if stale "$obj" "${arch[@]}" "${common[@]}" "$@"; then
    echo "fa3-build: compiling $name ($(date +%T))"
    local t0=$SECONDS
    "$NVCC" "${arch[@]}" "${common[@]}" "$@" -c "$src" -o "$obj.tmp" > "$objs/$name.log" 2>&1 || {
      echo "fa3-build: $name failed; $objs/$name.log:" >&2
      tail -n 60 "$objs/$name.log" >&2
      return 1
    }
    mv "$obj.tmp" "$obj"
    mv "$obj.flags.new" "$obj.flags"
    echo "fa3-build: $name done in $((SECONDS - t0)) s"
  else
    echo "fa3-build: $name up to date"
  fi
}

t0=$SECONDS
echo "fa3-build: FA3's object (native/library.mjs; minutes when not cached)"
kernel_obj=$(NVCC="$NVCC" node --input-type=module -e \
  "const m = await import('./native/library.mjs'); console.log(m.fa3Object(process.env.NVCC))")
compile host "${host_flags[@]}"

if [ ! -f "$bin" ] || [ "$kernel_obj" -nt "$bin" ] || [ "$objs/host.o" -nt "$bin" ]; then
  echo "fa3-build: linking $bin"
  "$NVCC" "${arch[@]}" -cudart shared "$kernel_obj" "$objs/host.o" -o "$bin.tmp" -ldl
  mv "$bin.tmp" "$bin"
fi
echo "fa3-build: $bin, $(stat -c %s "$bin") bytes, $((SECONDS - t0)) s"
