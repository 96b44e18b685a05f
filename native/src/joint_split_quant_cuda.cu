// JointSplitQuant on the GPU: one thread block per joint row, Fp8Linear's quantize kernel
// (fp8_linear_cuda.cu, quantize_rows: 16-byte loads, a block max, the row read again from L1/L2
// to write the codes, the same roundings) with the destination chosen by the row's token: the
// context's codes and scales for t < Tc, the image's otherwise. No allocation, no synchronisation.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_reduce.h"
#include "fp8_linear.h"
#include "joint_split_quant.h"

namespace atelier {
namespace {

using cuda_reduce::kWarp;
constexpr int kThreads = 256;

template <int VEC>
__global__ void __launch_bounds__(kThreads)
    joint_split_quant_kernel(const __half* __restrict__ joint, __nv_fp8_storage_t* __restrict__ context_x8,
                             float* __restrict__ context_scale, __nv_fp8_storage_t* __restrict__ x_x8,
                             float* __restrict__ x_scale, int64_t tokens, int64_t context_tokens, int64_t k) {
  const int64_t row = blockIdx.x;
  const int64_t b = row / tokens;
  const int64_t t = row - b * tokens;
  const bool context = t < context_tokens;
  const int64_t out = context ? b * context_tokens + t : b * (tokens - context_tokens) + (t - context_tokens);
  const __half* xr = joint + row * k;
  __nv_fp8_storage_t* qr = (context ? context_x8 : x_x8) + out * k;
  const int64_t vectors = k / VEC;

  float amax = 0.0f;
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    if constexpr (VEC == 8) {
      const uint4 packed = reinterpret_cast<const uint4*>(xr)[v];
      const __half2* h = reinterpret_cast<const __half2*>(&packed);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        amax = fmaxf(amax, fmaxf(fabsf(f.x), fabsf(f.y)));
      }
    } else {
      amax = fmaxf(amax, fabsf(__half2float(xr[v])));
    }
  }
  __shared__ float partials[kThreads / kWarp];
  amax = cuda_reduce::block_max(amax, partials);

  const float inv = amax > 0.0f ? __fdiv_rn(kE4m3Max, amax) : 0.0f;
  if (threadIdx.x == 0) (context ? context_scale : x_scale)[out] = __fdiv_rn(amax, kE4m3Max);

  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    if constexpr (VEC == 8) {
      const uint4 packed = reinterpret_cast<const uint4*>(xr)[v];
      const __half2* h = reinterpret_cast<const __half2*>(&packed);
      uint16_t pairs[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        const float2 q = make_float2(__fmul_rn(f.x, inv), __fmul_rn(f.y, inv));
        pairs[i] = __nv_cvt_float2_to_fp8x2(q, __NV_SATFINITE, __NV_E4M3);
      }
      uint2 packed_out;
      packed_out.x = static_cast<uint32_t>(pairs[0]) | (static_cast<uint32_t>(pairs[1]) << 16);
      packed_out.y = static_cast<uint32_t>(pairs[2]) | (static_cast<uint32_t>(pairs[3]) << 16);
      reinterpret_cast<uint2*>(qr)[v] = packed_out;
    } else {
      qr[v] = __nv_cvt_float_to_fp8(__fmul_rn(__half2float(xr[v]), inv), __NV_SATFINITE, __NV_E4M3);
    }
  }
}

bool aligned(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

}  // namespace

const char* joint_split_quant_cuda(const JointSplitQuantArgs& a, void* stream) {
  const int64_t rows = a.batch * a.tokens;
  if (rows > INT32_MAX) return "JointSplitQuant: too many rows for the CUDA kernel (B·T must fit in int32)";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const auto* joint = reinterpret_cast<const __half*>(a.joint);
  // 16-byte loads and 8-byte stores when every row starts aligned (C a multiple of 8).
  const bool vectorised = a.channels % 8 == 0 && aligned(a.joint, 16) && aligned(a.context_x8, 8) && aligned(a.x_x8, 8);
  if (vectorised)
    joint_split_quant_kernel<8><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(
        joint, a.context_x8, a.context_scale, a.x_x8, a.x_scale, a.tokens, a.context_tokens, a.channels);
  else
    joint_split_quant_kernel<1><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(
        joint, a.context_x8, a.context_scale, a.x_x8, a.x_scale, a.tokens, a.context_tokens, a.channels);
  const cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

}  // namespace atelier
