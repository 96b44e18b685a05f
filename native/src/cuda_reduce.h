// Warp and block reductions of one float per thread, shared by our CUDA kernels (include from .cu
// files only). A block reduction leaves the result in every thread: each warp folds the per-warp
// partials itself, so no second barrier is needed to broadcast; a caller passes a different
// `partials` array (one float per warp) for each reduction it makes in a kernel. Missing warps count
// as 0: the identity of a sum, and of a max over non-negative values (amax).
#pragma once

#include <cuda_runtime.h>

namespace atelier {
namespace cuda_reduce {

constexpr int kWarp = 32;

struct Sum {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

template <typename Op>
__device__ __forceinline__ float block_reduce(float v, float* partials, Op op) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  v = warp_reduce(v, op);
  if (lane == 0) partials[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / kWarp) ? partials[lane] : 0.0f;
  return warp_reduce(v, op);
}

__device__ __forceinline__ float block_sum(float v, float* partials) { return block_reduce(v, partials, Sum{}); }
__device__ __forceinline__ float block_max(float v, float* partials) { return block_reduce(v, partials, Max{}); }

}  // namespace cuda_reduce
}  // namespace atelier
