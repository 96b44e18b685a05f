// AdaLNModulate on the GPU: one thread block per row of C channels, launched on ORT's stream with
// no allocation or synchronisation (CUDA-graph capturable). The row is read from global memory once,
// in 16-byte vectors, and kept in registers for both statistics (mean, then the squared deviations:
// two passes, so no cancellation) and the output; sums are in float32, reduced with warp shuffles
// and one shared-memory slot per warp. Rows too wide for registers take a streaming variant that
// reads x three times.
//
// AdaLNModulateQuant is the same kernel with QUANT = true: the row's outputs, rounded to float16,
// stay in registers; a block max gives amax, and the row is written as e4m3 codes (plus act_scale)
// exactly as Fp8Linear's quantize kernel would have written them from AdaLNModulate's float16 y.
// Both instantiations compute each element with the one `modulate` below (explicitly rounded
// operations, no contraction), so y and the quantizer's input are the same floats.
//
// AdaLNResidualQuant is AdaLNModulateQuant with RESID = true (and AdaLNResidual AdaLNModulate with
// it): each thread loads its vectors of x and of branch together, makes them x + gate · branch in
// registers (`gated_sum`: the product and the sum each rounded to the element type, as ONNX
// Runtime's Mul and Add kernels round them), writes that row of the residual once and normalises it
// from the same registers.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "adaln_modulate.h"
#include "cuda_reduce.h"
#include "fp8_linear.h"

namespace atelier {
namespace {

using cuda_reduce::block_max;
using cuda_reduce::block_sum;
using cuda_reduce::kWarp;
constexpr int kMaxThreads = 512;
constexpr int kMaxWarps = kMaxThreads / kWarp;

// VEC elements moved as one aligned access (16 bytes when VEC · sizeof(T) = 16).
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

// (v − mean) · rstd · (1 + scale) + shift, each operation rounded on its own (as the CPU kernel
// does): the same value in AdaLNModulate and AdaLNModulateQuant whatever the compiler fuses around it.
__device__ __forceinline__ float modulate(float v, float mean, float rstd, float scale, float shift) {
  return __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v, mean), rstd), __fadd_rn(1.0f, scale)), shift);
}

// x + gate · branch as ONNX Runtime's Mul then Add compute it: each result rounded to T (for float16,
// __hmul and __hadd are correctly rounded, and float32 holds the exact product and, by Figueroa's
// bound p ≥ 2·11 + 2, rounding the float32 sum again to float16 gives the correctly rounded sum).
template <typename T>
__device__ __forceinline__ T gated_sum(T x, T gate, T branch) {
  const float gated = to_float(from_float<T>(__fmul_rn(to_float(gate), to_float(branch))));
  return from_float<T>(__fadd_rn(to_float(x), gated));
}

// AdaLNResidualQuant's extra inputs and output (RESID): branch [B·T, C], gate [B, C], residual [B·T, C].
struct Resid {
  const void* branch;
  const void* gate;
  void* out;
};

// Fp8Linear's quantizer on one value (fp8_linear_cuda.cu, quantize_rows): float16 y times 448/amax,
// rounded to nearest even e4m3, saturating.
__device__ __forceinline__ uint8_t to_e4m3(__half y, float inv) {
  return __nv_cvt_float_to_fp8(__fmul_rn(__half2float(y), inv), __NV_SATFINITE, __NV_E4M3);
}

// The outputs of AdaLNModulateQuant, when QUANT.
struct Quant {
  uint8_t* x8;
  float* act_scale;
};

struct Row {
  int64_t x;      // offset of the row in x and y
  int64_t shift;  // offset of its batch's shift and scale
};

__device__ __forceinline__ Row row_offsets(int tokens, int channels) {
  const int64_t row = blockIdx.x;
  return {row * channels, (row / tokens) * channels};
}

// Up to this many bytes of shift and of scale per thread are fetched before the reductions, so
// their latency hides behind the barriers; wider rows load them at the end (no register spills).
constexpr int kPrefetchBytes = 64;

// ITEMS vectors per thread stay in registers as loaded (fp16 stays packed): the block covers
// ITEMS · blockDim.x · VEC channels.
template <typename T, int VEC, int ITEMS, bool QUANT, bool RESID>
__global__ void __launch_bounds__(kMaxThreads)
    adaln_modulate_kernel(const T* __restrict__ x, const T* __restrict__ shift, const T* __restrict__ scale,
                          T* __restrict__ y, Quant q, Resid r, int tokens, int channels, float epsilon) {
  using P = Pack<T, VEC>;
  using H = Pack<__half, VEC>;
  using Q = Pack<uint8_t, VEC>;
  constexpr bool kPrefetch = ITEMS * sizeof(P) <= kPrefetchBytes;
  constexpr int kEarly = kPrefetch ? ITEMS : 1;
  __shared__ float partials[QUANT ? 3 : 2][kMaxWarps];
  const Row at = row_offsets(tokens, channels);
  const int vectors = channels / VEC;
  const P* xr = reinterpret_cast<const P*>(x + at.x);
  const P* sh = reinterpret_cast<const P*>(shift + at.shift);
  const P* sc = reinterpret_cast<const P*>(scale + at.shift);

  P v[ITEMS];
  P s[kEarly];
  P k[kEarly];
  P b[RESID ? ITEMS : 1];  // branch, folded into v below
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j < vectors) {
      v[i] = xr[j];
      if constexpr (RESID) b[i] = reinterpret_cast<const P*>(static_cast<const T*>(r.branch) + at.x)[j];
      if constexpr (kPrefetch) {
        s[i] = sh[j];
        k[i] = sc[j];
      }
    }
  }
  if constexpr (RESID) {
    const P* gr = reinterpret_cast<const P*>(static_cast<const T*>(r.gate) + at.shift);
    P* out = reinterpret_cast<P*>(static_cast<T*>(r.out) + at.x);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      const int j = threadIdx.x + i * blockDim.x;
      if (j < vectors) {
        const P g = gr[j];
#pragma unroll
        for (int e = 0; e < VEC; ++e) v[i].v[e] = gated_sum(v[i].v[e], g.v[e], b[i].v[e]);
        out[j] = v[i];
      }
    }
  }

  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < ITEMS; ++i)
    if (threadIdx.x + i * blockDim.x < vectors)
#pragma unroll
      for (int e = 0; e < VEC; ++e) sum += to_float(v[i].v[e]);
  const float mean = block_sum(sum, partials[0]) / channels;

  float squares = 0.0f;
#pragma unroll
  for (int i = 0; i < ITEMS; ++i)
    if (threadIdx.x + i * blockDim.x < vectors)
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const float d = to_float(v[i].v[e]) - mean;
        squares += d * d;
      }
  const float rstd = rsqrtf(block_sum(squares, partials[1]) / channels + epsilon);

  if constexpr (!QUANT) {
    P* yr = reinterpret_cast<P*>(y + at.x);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      const int j = threadIdx.x + i * blockDim.x;
      if (j < vectors) {
        if constexpr (!kPrefetch) {
          s[0] = sh[j];
          k[0] = sc[j];
        }
        const P& si = s[kPrefetch ? i : 0];
        const P& ki = k[kPrefetch ? i : 0];
        P out;
#pragma unroll
        for (int e = 0; e < VEC; ++e)
          out.v[e] = from_float<T>(modulate(to_float(v[i].v[e]), mean, rstd, to_float(ki.v[e]), to_float(si.v[e])));
        yr[j] = out;
      }
    }
  } else {
    // y rounded to float16 stays in registers for the amax and the codes.
    H h[ITEMS];
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      const int j = threadIdx.x + i * blockDim.x;
      if (j < vectors) {
        if constexpr (!kPrefetch) {
          s[0] = sh[j];
          k[0] = sc[j];
        }
        const P& si = s[kPrefetch ? i : 0];
        const P& ki = k[kPrefetch ? i : 0];
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          h[i].v[e] =
              __float2half_rn(modulate(to_float(v[i].v[e]), mean, rstd, to_float(ki.v[e]), to_float(si.v[e])));
          amax = fmaxf(amax, fabsf(__half2float(h[i].v[e])));
        }
      }
    }
    amax = block_max(amax, partials[2]);
    const float inv = amax > 0.0f ? __fdiv_rn(kE4m3Max, amax) : 0.0f;
    const int64_t row = blockIdx.x;
    if (threadIdx.x == 0) q.act_scale[row] = __fdiv_rn(amax, kE4m3Max);
    Q* qr = reinterpret_cast<Q*>(q.x8 + at.x);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      const int j = threadIdx.x + i * blockDim.x;
      if (j < vectors) {
        Q out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) out.v[e] = to_e4m3(h[i].v[e], inv);
        qr[j] = out;
      }
    }
  }
}

// Rows wider than the register-resident kernels cover: x is read once per pass, from L2 mostly.
// QUANT: a third pass finds amax of the float16-rounded outputs, a fourth recomputes and quantizes.
// RESID: the first pass makes x + gate · branch and writes it; the later passes read that back
// (each thread only its own vectors, so no barrier is needed).
template <typename T, int VEC, bool QUANT, bool RESID>
__global__ void __launch_bounds__(kMaxThreads)
    adaln_modulate_streaming_kernel(const T* __restrict__ x, const T* __restrict__ shift,
                                    const T* __restrict__ scale, T* __restrict__ y, Quant q, Resid r, int tokens,
                                    int channels, float epsilon) {
  using P = Pack<T, VEC>;
  using Q = Pack<uint8_t, VEC>;
  __shared__ float partials[QUANT ? 3 : 2][kMaxWarps];
  const Row at = row_offsets(tokens, channels);
  const int vectors = channels / VEC;
  const P* xr = reinterpret_cast<const P*>(x + at.x);

  float sum = 0.0f;
  for (int j = threadIdx.x; j < vectors; j += blockDim.x) {
    P p = xr[j];
    if constexpr (RESID) {
      const P b = reinterpret_cast<const P*>(static_cast<const T*>(r.branch) + at.x)[j];
      const P g = reinterpret_cast<const P*>(static_cast<const T*>(r.gate) + at.shift)[j];
#pragma unroll
      for (int e = 0; e < VEC; ++e) p.v[e] = gated_sum(p.v[e], g.v[e], b.v[e]);
      reinterpret_cast<P*>(static_cast<T*>(r.out) + at.x)[j] = p;
    }
#pragma unroll
    for (int e = 0; e < VEC; ++e) sum += to_float(p.v[e]);
  }
  const float mean = block_sum(sum, partials[0]) / channels;
  if constexpr (RESID) xr = reinterpret_cast<const P*>(static_cast<const T*>(r.out) + at.x);

  float squares = 0.0f;
  for (int j = threadIdx.x; j < vectors; j += blockDim.x) {
    const P p = xr[j];
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const float d = to_float(p.v[e]) - mean;
      squares += d * d;
    }
  }
  const float rstd = rsqrtf(block_sum(squares, partials[1]) / channels + epsilon);

  const P* sh = reinterpret_cast<const P*>(shift + at.shift);
  const P* sc = reinterpret_cast<const P*>(scale + at.shift);
  if constexpr (!QUANT) {
    P* yr = reinterpret_cast<P*>(y + at.x);
    for (int j = threadIdx.x; j < vectors; j += blockDim.x) {
      const P p = xr[j];
      const P s = sh[j];
      const P k = sc[j];
      P out;
#pragma unroll
      for (int e = 0; e < VEC; ++e)
        out.v[e] = from_float<T>(modulate(to_float(p.v[e]), mean, rstd, to_float(k.v[e]), to_float(s.v[e])));
      yr[j] = out;
    }
  } else {
    float amax = 0.0f;
    for (int j = threadIdx.x; j < vectors; j += blockDim.x) {
      const P p = xr[j];
      const P s = sh[j];
      const P k = sc[j];
#pragma unroll
      for (int e = 0; e < VEC; ++e)
        amax = fmaxf(amax, fabsf(__half2float(__float2half_rn(
                               modulate(to_float(p.v[e]), mean, rstd, to_float(k.v[e]), to_float(s.v[e]))))));
    }
    amax = block_max(amax, partials[2]);
    const float inv = amax > 0.0f ? __fdiv_rn(kE4m3Max, amax) : 0.0f;
    if (threadIdx.x == 0) q.act_scale[blockIdx.x] = __fdiv_rn(amax, kE4m3Max);
    Q* qr = reinterpret_cast<Q*>(q.x8 + at.x);
    for (int j = threadIdx.x; j < vectors; j += blockDim.x) {
      const P p = xr[j];
      const P s = sh[j];
      const P k = sc[j];
      Q out;
#pragma unroll
      for (int e = 0; e < VEC; ++e)
        out.v[e] = to_e4m3(
            __float2half_rn(modulate(to_float(p.v[e]), mean, rstd, to_float(k.v[e]), to_float(s.v[e]))), inv);
      qr[j] = out;
    }
  }
}

int threads_for(int vectors, int items) {
  const int threads = (vectors + items - 1) / items;
  return (threads + kWarp - 1) / kWarp * kWarp;
}

template <typename T, int VEC, int ITEMS, bool QUANT, bool RESID>
void launch_items(const AdaLnArgs& a, cudaStream_t stream, int vectors) {
  const int rows = static_cast<int>(a.batch * a.tokens);
  adaln_modulate_kernel<T, VEC, ITEMS, QUANT, RESID><<<rows, threads_for(vectors, ITEMS), 0, stream>>>(
      static_cast<const T*>(a.x), static_cast<const T*>(a.shift), static_cast<const T*>(a.scale),
      static_cast<T*>(a.y), Quant{a.x8, a.act_scale}, Resid{a.branch, a.gate, a.residual},
      static_cast<int>(a.tokens), static_cast<int>(a.channels), a.epsilon);
}

// The fewest vectors per thread that keep a block within kTargetThreads (measured on the H200 with
// SD3.5's widths: narrower blocks let more rows be in flight per SM); rows wider than that get up
// to 8 vectors per thread in up to kMaxThreads threads, and wider ones the streaming kernel. Both
// ops take the same choice for a shape, so their reductions (and y) are the same.
constexpr int kTargetThreads = 256;

template <typename T, int VEC, bool QUANT, bool RESID>
void launch(const AdaLnArgs& a, cudaStream_t stream) {
  const int vectors = static_cast<int>(a.channels) / VEC;
  if (vectors <= kTargetThreads)
    launch_items<T, VEC, 1, QUANT, RESID>(a, stream, vectors);
  else if (vectors <= 2 * kTargetThreads)
    launch_items<T, VEC, 2, QUANT, RESID>(a, stream, vectors);
  else if (vectors <= 4 * kTargetThreads)
    launch_items<T, VEC, 4, QUANT, RESID>(a, stream, vectors);
  else if (vectors <= 8 * kMaxThreads)
    launch_items<T, VEC, 8, QUANT, RESID>(a, stream, vectors);
  else
    adaln_modulate_streaming_kernel<T, VEC, QUANT, RESID>
        <<<static_cast<int>(a.batch * a.tokens), kMaxThreads, 0, stream>>>(
            static_cast<const T*>(a.x), static_cast<const T*>(a.shift), static_cast<const T*>(a.scale),
            static_cast<T*>(a.y), Quant{a.x8, a.act_scale}, Resid{a.branch, a.gate, a.residual},
            static_cast<int>(a.tokens), static_cast<int>(a.channels), a.epsilon);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// 16-byte vectors when every row starts on a 16-byte boundary, else one element at a time. The
// codes of a row (VEC bytes per vector) are then VEC-aligned too.
template <typename T, bool QUANT, bool RESID>
void dispatch(const AdaLnArgs& a, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vectorised = a.channels % kVec == 0 && aligned16(a.x) && aligned16(a.shift) &&
                          aligned16(a.scale) && (QUANT ? aligned16(a.x8) : aligned16(a.y)) &&
                          (!RESID || (aligned16(a.branch) && aligned16(a.gate) && aligned16(a.residual)));
  if (vectorised)
    launch<T, kVec, QUANT, RESID>(a, stream);
  else
    launch<T, 1, QUANT, RESID>(a, stream);
}

template <bool QUANT, bool RESID>
void dispatch(const AdaLnArgs& a, Dtype dtype, cudaStream_t stream) {
  if (dtype == Dtype::f32)
    dispatch<float, QUANT, RESID>(a, stream);
  else
    dispatch<__half, QUANT, RESID>(a, stream);
}

}  // namespace

const char* adaln_modulate_cuda(const AdaLnArgs& args, Dtype dtype, void* stream) {
  if (args.batch * args.tokens > INT32_MAX || args.channels > INT32_MAX)
    return "AdaLNModulate: tensor too large for the CUDA kernel (rows and channels must fit in int32)";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  // The residual forms: AdaLNResidualQuant (codes) and AdaLNResidual (y).
  if (args.branch != nullptr && args.x8 != nullptr)
    dispatch<true, true>(args, dtype, s);
  else if (args.branch != nullptr)
    dispatch<false, true>(args, dtype, s);
  else if (args.x8 != nullptr)
    dispatch<true, false>(args, dtype, s);
  else
    dispatch<false, false>(args, dtype, s);
  const cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

}  // namespace atelier
