// AdaLNModulate on the GPU: one thread block per row of C channels, launched on ORT's stream with
// no allocation or synchronisation (CUDA-graph capturable). The row is read from global memory once,
// in 16-byte vectors, and kept in registers for both statistics (mean, then the squared deviations:
// two passes, so no cancellation) and the output; sums are in float32, reduced with warp shuffles
// and one shared-memory slot per warp. Rows too wide for registers take a streaming variant that
// reads x three times.
//
// AdaLNModulateQuant is the same kernel with MODE = kToken: the row's outputs, rounded to float16,
// stay in registers; a block max gives amax, and the row is written as e4m3 codes (plus act_scale)
// exactly as Fp8Linear's quantize kernel would have written them from AdaLNModulate's float16 y.
// Every instantiation computes each element with the one `modulate` below (explicitly rounded
// operations, no contraction), so y and the quantizer's input are the same floats.
//
// act_scaling "delayed_tensor" (adaln_modulate.h) is the same kernel again with the delayed modes
// (Mode below) over the same float16 values, the state and helpers being Fp8Linear's
// (delayed_scaling_cuda.cuh). A later call is two launches: kDelayed, whose every block reads s and d
// from the state, writes its row's codes with d and act_scale = s and max-es its amax into the state,
// then delayed_push_next (one thread: the amax into the ring, and from the ring the next call's s and
// d, what its start would have computed). The instance's first call (not capturable: it may
// allocate) is kMeasure (amax only), delayed_begin (s from that amax, margin 1; act_scale filled),
// kFirst (codes with its d), delayed_push_next.
//
// A second modulation (shift2, scale2: MMDiT-X's attn2 reads norm1(x) with its own) is PAIR = true
// in the per-token mode: after the first codes are written, the same registers (v, mean, rstd) are
// modulated again with shift2 and scale2 into x8_2 and act_scale_2 (its own amax, in its own shared
// slot). Rows too wide for registers, and the two-branch residual, make the pair a second launch of
// AdaLNModulateQuant over the row the first launch read (x, or the residual it wrote): the same bits.
//
// AdaLNResidualQuant is AdaLNModulateQuant with BRANCHES = 1 (and AdaLNResidual AdaLNModulate with
// it): each thread loads its vectors of x and of branch together, makes them x + gate · branch in
// registers (`gated_sum`: the product and the sum each rounded to the element type, as ONNX
// Runtime's Mul and Add kernels round them), writes that row of the residual once and normalises it
// from the same registers. BRANCHES = 2 (branch2 and gate2 given) adds gate2 · branch2 to that sum
// the same way, in its own instances (the others compile as before). branch2 is loaded where it is
// added, not with x and branch: held from the start, it made the widest rows (8 vectors a thread)
// spill ~150 bytes a thread; so they spill no more than the one-branch kernel.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <type_traits>

#include "adaln_modulate.h"
#include "cuda_reduce.h"
#include "delayed_scaling_cuda.cuh"
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

// The residual ops' extra inputs and output (BRANCHES > 0): branch [B·T, C], gate [B, C], residual
// [B·T, C]; with BRANCHES = 2 also branch2 [B·T, C] and gate2 [B, C].
struct Resid {
  const void* branch;
  const void* gate;
  void* out;
  const void* branch2;
  const void* gate2;
};

// Fp8Linear's quantizer on one value (fp8_linear_cuda.cu, quantize_rows): float16 y times 448/amax,
// rounded to nearest even e4m3, saturating.
__device__ __forceinline__ uint8_t to_e4m3(__half y, float inv) {
  return __nv_cvt_float_to_fp8(__fmul_rn(__half2float(y), inv), __NV_SATFINITE, __NV_E4M3);
}

// What a launch does with each row's outputs h, rounded to float16 (act_scaling, adaln_modulate.h).
enum Mode {
  kY,        // no quantization: y written in the element type (AdaLNModulate, AdaLNResidual)
  kToken,    // act_scale[row] = amax_row/448, codes e4m3(h · 448/amax_row) (act_scaling "token")
  kMeasure,  // "delayed_tensor"'s first call, 1st launch: the amax into the state, no codes
  kFirst,    // first call, 2nd launch: codes e4m3(h · d), d from the state (delayed_begin's)
  kDelayed,  // a later call: codes e4m3(h · d), act_scale = s (s, d from the state), the amax into it
};
__host__ __device__ constexpr bool quantizes(Mode m) { return m != kY; }

// The quantizing modes' outputs and, for the delayed ones, the instance's state.
struct Quant {
  uint8_t* x8;
  float* act_scale;
  // PAIR: the second modulation's inputs and outputs (AdaLnArgs' shift2, scale2, x8_2, act_scale_2).
  const void* shift2;
  const void* scale2;
  uint8_t* x8_2;
  float* act_scale_2;
  float* state;  // ring and slots (delayed_scaling_cuda.cuh), or null
  DelayedSlots slots;
  float margin;
};

// The per-token modes take Fp8Linear's fmaxf amax; the delayed ones its tensor amax's BitsMax, so
// that a NaN wins as on the CPU (delayed_quantize_cpu).
template <Mode MODE>
using AmaxOp = std::conditional_t<MODE == kToken, cuda_reduce::Max, BitsMax>;

// kFirst and kDelayed: s and d from the state, where delayed_begin (the first call) or the previous
// call's delayed_push_next put them (delayed_scaling_cuda.cuh): no ring reduction per block.
template <Mode MODE>
__device__ __forceinline__ float2 tensor_scale(const Quant& q) {
  if constexpr (MODE == kFirst || MODE == kDelayed) {
    return make_float2(q.state[q.slots.s()], q.state[q.slots.d()]);
  } else {
    return make_float2(0.0f, 0.0f);
  }
}

// The multiplier of the row's codes; kToken and kDelayed also write its act_scale (thread 0).
template <Mode MODE>
__device__ __forceinline__ float row_multiplier(const Quant& q, float amax, float2 sd) {
  if constexpr (MODE == kToken) {
    if (threadIdx.x == 0) q.act_scale[blockIdx.x] = __fdiv_rn(amax, kE4m3Max);
    return amax > 0.0f ? __fdiv_rn(kE4m3Max, amax) : 0.0f;
  } else {
    if (MODE == kDelayed && threadIdx.x == 0) q.act_scale[blockIdx.x] = sd.x;
    return sd.y;
  }
}

// kMeasure and kDelayed, thread 0 with the block's amax: max-ed (by bits) into the state's slot; the
// push into the ring is delayed_push_next's, launched after the kernel. (One block per row makes
// thousands of blocks; the first form, a ring reduction in every block and a last-block counter on
// one address, ran 37.7 µs per launch on Large against the per-token form's 26.7, 2026-12-03.)
template <Mode MODE>
__device__ __forceinline__ void hand_on_amax(const Quant& q, float amax) {
  if (threadIdx.x == 0) max_into_slot(q.state, q.slots, amax);
}

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

// A row's codes from its float16 values h (ITEMS vectors a thread, as the kernel below holds them)
// times inv, one VEC-byte store per vector.
template <int VEC, int ITEMS>
__device__ __forceinline__ void write_codes(uint8_t* row, const Pack<__half, VEC> (&h)[ITEMS], float inv,
                                            int vectors) {
  Pack<uint8_t, VEC>* qr = reinterpret_cast<Pack<uint8_t, VEC>*>(row);
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j < vectors) {
      Pack<uint8_t, VEC> out;
#pragma unroll
      for (int e = 0; e < VEC; ++e) out.v[e] = to_e4m3(h[i].v[e], inv);
      qr[j] = out;
    }
  }
}

// ITEMS vectors per thread stay in registers as loaded (fp16 stays packed): the block covers
// ITEMS · blockDim.x · VEC channels.
template <typename T, int VEC, int ITEMS, Mode MODE, int BRANCHES, bool PAIR>
__global__ void __launch_bounds__(kMaxThreads)
    adaln_modulate_kernel(const T* __restrict__ x, const T* __restrict__ shift, const T* __restrict__ scale,
                          T* __restrict__ y, Quant q, Resid r, int tokens, int channels, float epsilon) {
  static_assert(!PAIR || MODE == kToken, "the second modulation is per token");
  using P = Pack<T, VEC>;
  using H = Pack<__half, VEC>;
  constexpr bool kPrefetch = ITEMS * sizeof(P) <= kPrefetchBytes;
  constexpr int kEarly = kPrefetch ? ITEMS : 1;
  __shared__ float partials[quantizes(MODE) ? (PAIR ? 4 : 3) : 2][kMaxWarps];
  const Row at = row_offsets(tokens, channels);
  const int vectors = channels / VEC;
  const P* xr = reinterpret_cast<const P*>(x + at.x);
  const P* sh = reinterpret_cast<const P*>(shift + at.shift);
  const P* sc = reinterpret_cast<const P*>(scale + at.shift);

  P v[ITEMS];
  P s[kEarly];
  P k[kEarly];
  P b[BRANCHES >= 1 ? ITEMS : 1];  // branch, folded into v below
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int j = threadIdx.x + i * blockDim.x;
    if (j < vectors) {
      v[i] = xr[j];
      if constexpr (BRANCHES >= 1) b[i] = reinterpret_cast<const P*>(static_cast<const T*>(r.branch) + at.x)[j];
      if constexpr (kPrefetch) {
        s[i] = sh[j];
        k[i] = sc[j];
      }
    }
  }
  const float2 sd = tensor_scale<MODE>(q);  // while the loads are in flight
  if constexpr (BRANCHES >= 1) {
    const P* gr = reinterpret_cast<const P*>(static_cast<const T*>(r.gate) + at.shift);
    P* out = reinterpret_cast<P*>(static_cast<T*>(r.out) + at.x);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      const int j = threadIdx.x + i * blockDim.x;
      if (j < vectors) {
        const P g = gr[j];
#pragma unroll
        for (int e = 0; e < VEC; ++e) v[i].v[e] = gated_sum(v[i].v[e], g.v[e], b[i].v[e]);
        if constexpr (BRANCHES == 2) {
          const P b2 = reinterpret_cast<const P*>(static_cast<const T*>(r.branch2) + at.x)[j];
          const P g2 = reinterpret_cast<const P*>(static_cast<const T*>(r.gate2) + at.shift)[j];
#pragma unroll
          for (int e = 0; e < VEC; ++e) v[i].v[e] = gated_sum(v[i].v[e], g2.v[e], b2.v[e]);
        }
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

  if constexpr (!quantizes(MODE)) {
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
          amax = AmaxOp<MODE>{}(amax, fabsf(__half2float(h[i].v[e])));
        }
      }
    }
    // kFirst has its scale already; the others reduce the row's amax.
    if constexpr (MODE != kFirst) amax = cuda_reduce::block_reduce(amax, partials[2], AmaxOp<MODE>{});
    if constexpr (MODE == kMeasure) {
      hand_on_amax<MODE>(q, amax);
      return;
    }
    write_codes<VEC, ITEMS>(q.x8 + at.x, h, row_multiplier<MODE>(q, amax, sd), vectors);
    if constexpr (MODE == kDelayed) hand_on_amax<MODE>(q, amax);
    if constexpr (PAIR) {
      // The second modulation from the same v, mean and rstd, into h again (its codes are written).
      const P* sh2 = reinterpret_cast<const P*>(static_cast<const T*>(q.shift2) + at.shift);
      const P* sc2 = reinterpret_cast<const P*>(static_cast<const T*>(q.scale2) + at.shift);
      float amax2 = 0.0f;
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) {
        const int j = threadIdx.x + i * blockDim.x;
        if (j < vectors) {
          const P s2 = sh2[j];
          const P k2 = sc2[j];
#pragma unroll
          for (int e = 0; e < VEC; ++e) {
            h[i].v[e] =
                __float2half_rn(modulate(to_float(v[i].v[e]), mean, rstd, to_float(k2.v[e]), to_float(s2.v[e])));
            amax2 = fmaxf(amax2, fabsf(__half2float(h[i].v[e])));
          }
        }
      }
      amax2 = cuda_reduce::block_reduce(amax2, partials[3], cuda_reduce::Max{});
      if (threadIdx.x == 0) q.act_scale_2[blockIdx.x] = __fdiv_rn(amax2, kE4m3Max);
      write_codes<VEC, ITEMS>(q.x8_2 + at.x, h, amax2 > 0.0f ? __fdiv_rn(kE4m3Max, amax2) : 0.0f, vectors);
    }
  }
}

// Rows wider than the register-resident kernels cover: x is read once per pass, from L2 mostly.
// kToken, kMeasure: a third pass finds amax of the float16-rounded outputs; kToken, kFirst and
// kDelayed then recompute and quantize them (kDelayed taking the amax in that pass).
// BRANCHES > 0: the first pass makes x + gate · branch (+ gate2 · branch2) and writes it; the later
// passes read that back (each thread only its own vectors, so no barrier is needed).
template <typename T, int VEC, Mode MODE, int BRANCHES>
__global__ void __launch_bounds__(kMaxThreads)
    adaln_modulate_streaming_kernel(const T* __restrict__ x, const T* __restrict__ shift,
                                    const T* __restrict__ scale, T* __restrict__ y, Quant q, Resid r, int tokens,
                                    int channels, float epsilon) {
  using P = Pack<T, VEC>;
  using Q = Pack<uint8_t, VEC>;
  __shared__ float partials[quantizes(MODE) ? 3 : 2][kMaxWarps];
  const Row at = row_offsets(tokens, channels);
  const int vectors = channels / VEC;
  const P* xr = reinterpret_cast<const P*>(x + at.x);
  const float2 sd = tensor_scale<MODE>(q);

  float sum = 0.0f;
  for (int j = threadIdx.x; j < vectors; j += blockDim.x) {
    P p = xr[j];
    if constexpr (BRANCHES >= 1) {
      const P b = reinterpret_cast<const P*>(static_cast<const T*>(r.branch) + at.x)[j];
      const P g = reinterpret_cast<const P*>(static_cast<const T*>(r.gate) + at.shift)[j];
#pragma unroll
      for (int e = 0; e < VEC; ++e) p.v[e] = gated_sum(p.v[e], g.v[e], b.v[e]);
      if constexpr (BRANCHES == 2) {
        const P b2 = reinterpret_cast<const P*>(static_cast<const T*>(r.branch2) + at.x)[j];
        const P g2 = reinterpret_cast<const P*>(static_cast<const T*>(r.gate2) + at.shift)[j];
#pragma unroll
        for (int e = 0; e < VEC; ++e) p.v[e] = gated_sum(p.v[e], g2.v[e], b2.v[e]);
      }
      reinterpret_cast<P*>(static_cast<T*>(r.out) + at.x)[j] = p;
    }
#pragma unroll
    for (int e = 0; e < VEC; ++e) sum += to_float(p.v[e]);
  }
  const float mean = block_sum(sum, partials[0]) / channels;
  if constexpr (BRANCHES >= 1) xr = reinterpret_cast<const P*>(static_cast<const T*>(r.out) + at.x);

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
  if constexpr (!quantizes(MODE)) {
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
    if constexpr (MODE == kToken || MODE == kMeasure) {
      for (int j = threadIdx.x; j < vectors; j += blockDim.x) {
        const P p = xr[j];
        const P s = sh[j];
        const P k = sc[j];
#pragma unroll
        for (int e = 0; e < VEC; ++e)
          amax = AmaxOp<MODE>{}(amax, fabsf(__half2float(__float2half_rn(modulate(
                                             to_float(p.v[e]), mean, rstd, to_float(k.v[e]), to_float(s.v[e]))))));
      }
      amax = cuda_reduce::block_reduce(amax, partials[2], AmaxOp<MODE>{});
    }
    if constexpr (MODE == kMeasure) {
      hand_on_amax<MODE>(q, amax);
      return;
    }
    const float inv = row_multiplier<MODE>(q, amax, sd);
    Q* qr = reinterpret_cast<Q*>(q.x8 + at.x);
    for (int j = threadIdx.x; j < vectors; j += blockDim.x) {
      const P p = xr[j];
      const P s = sh[j];
      const P k = sc[j];
      Q out;
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const __half h =
            __float2half_rn(modulate(to_float(p.v[e]), mean, rstd, to_float(k.v[e]), to_float(s.v[e])));
        if constexpr (MODE == kDelayed) amax = AmaxOp<MODE>{}(amax, fabsf(__half2float(h)));
        out.v[e] = to_e4m3(h, inv);
      }
      qr[j] = out;
    }
    if constexpr (MODE == kDelayed) {
      amax = cuda_reduce::block_reduce(amax, partials[2], AmaxOp<MODE>{});
      hand_on_amax<MODE>(q, amax);
    }
  }
}

int threads_for(int vectors, int items) {
  const int threads = (vectors + items - 1) / items;
  return (threads + kWarp - 1) / kWarp * kWarp;
}

Resid resid_of(const AdaLnArgs& a) { return Resid{a.branch, a.gate, a.residual, a.branch2, a.gate2}; }

template <typename T, int VEC, int ITEMS, Mode MODE, int BRANCHES, bool PAIR>
void launch_items(const AdaLnArgs& a, const Quant& q, cudaStream_t stream, int vectors) {
  const int rows = static_cast<int>(a.batch * a.tokens);
  adaln_modulate_kernel<T, VEC, ITEMS, MODE, BRANCHES, PAIR><<<rows, threads_for(vectors, ITEMS), 0, stream>>>(
      static_cast<const T*>(a.x), static_cast<const T*>(a.shift), static_cast<const T*>(a.scale),
      static_cast<T*>(a.y), q, resid_of(a), static_cast<int>(a.tokens), static_cast<int>(a.channels), a.epsilon);
}

// The fewest vectors per thread that keep a block within kTargetThreads (measured on the H200 with
// SD3.5's widths: narrower blocks let more rows be in flight per SM); rows wider than that get up
// to 8 vectors per thread in up to kMaxThreads threads, and wider ones the streaming kernel. Every
// op and mode takes the same choice for a shape, so their reductions (and y) are the same.
constexpr int kTargetThreads = 256;

// Whether launch() runs the register-resident kernel for this row width (else the streaming one).
template <int VEC>
bool in_registers(const AdaLnArgs& a) {
  return static_cast<int>(a.channels) / VEC <= 8 * kMaxThreads;
}

template <typename T, int VEC, Mode MODE, int BRANCHES, bool PAIR = false>
void launch(const AdaLnArgs& a, const Quant& q, cudaStream_t stream) {
  const int vectors = static_cast<int>(a.channels) / VEC;
  if (vectors <= kTargetThreads)
    launch_items<T, VEC, 1, MODE, BRANCHES, PAIR>(a, q, stream, vectors);
  else if (vectors <= 2 * kTargetThreads)
    launch_items<T, VEC, 2, MODE, BRANCHES, PAIR>(a, q, stream, vectors);
  else if (vectors <= 4 * kTargetThreads)
    launch_items<T, VEC, 4, MODE, BRANCHES, PAIR>(a, q, stream, vectors);
  else if (vectors <= 8 * kMaxThreads)
    launch_items<T, VEC, 8, MODE, BRANCHES, PAIR>(a, q, stream, vectors);
  else
    adaln_modulate_streaming_kernel<T, VEC, MODE, BRANCHES>
        <<<static_cast<int>(a.batch * a.tokens), kMaxThreads, 0, stream>>>(
            static_cast<const T*>(a.x), static_cast<const T*>(a.shift), static_cast<const T*>(a.scale),
            static_cast<T*>(a.y), q, resid_of(a), static_cast<int>(a.tokens), static_cast<int>(a.channels),
            a.epsilon);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// 16-byte vectors when every row starts on a 16-byte boundary, else one element at a time. The
// codes of a row (VEC bytes per vector) are then VEC-aligned too.
template <typename T, Mode MODE, int BRANCHES>
void dispatch(const AdaLnArgs& a, const Quant& q, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vectorised = a.channels % kVec == 0 && aligned16(a.x) && aligned16(a.shift) &&
                          aligned16(a.scale) && (quantizes(MODE) ? aligned16(a.x8) : aligned16(a.y)) &&
                          (BRANCHES < 1 || (aligned16(a.branch) && aligned16(a.gate) && aligned16(a.residual))) &&
                          (BRANCHES < 2 || (aligned16(a.branch2) && aligned16(a.gate2)));
  if (vectorised)
    launch<T, kVec, MODE, BRANCHES>(a, q, stream);
  else
    launch<T, 1, MODE, BRANCHES>(a, q, stream);
}

// The per-token ops with a second modulation: one launch with PAIR where the row fits in registers
// and the residual has at most one branch; otherwise the op's launch, then AdaLNModulateQuant of the
// row it read (x, or the residual it wrote) with shift2 and scale2.
template <typename T, int BRANCHES>
void dispatch_pair(const AdaLnArgs& a, const Quant& q, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vectorised = a.channels % kVec == 0 && aligned16(a.x) && aligned16(a.shift) && aligned16(a.scale) &&
                          aligned16(a.x8) && aligned16(a.shift2) && aligned16(a.scale2) && aligned16(a.x8_2) &&
                          (BRANCHES < 1 || (aligned16(a.branch) && aligned16(a.gate) && aligned16(a.residual)));
  if constexpr (BRANCHES <= 1) {
    if (vectorised && in_registers<kVec>(a)) return launch<T, kVec, kToken, BRANCHES, true>(a, q, stream);
    if (!vectorised && in_registers<1>(a)) return launch<T, 1, kToken, BRANCHES, true>(a, q, stream);
  }
  AdaLnArgs first = a;
  first.shift2 = first.scale2 = nullptr;
  first.x8_2 = nullptr;
  first.act_scale_2 = nullptr;
  dispatch<T, kToken, BRANCHES>(first, q, stream);
  AdaLnArgs second = first;
  if (BRANCHES > 0) second.x = a.residual;
  second.branch = second.gate = second.branch2 = second.gate2 = nullptr;
  second.residual = nullptr;
  second.shift = a.shift2;
  second.scale = a.scale2;
  second.x8 = a.x8_2;
  second.act_scale = a.act_scale_2;
  Quant q2 = q;
  q2.x8 = a.x8_2;
  q2.act_scale = a.act_scale_2;
  dispatch<T, kToken, 0>(second, q2, stream);
}

// How many gated branches the residual has: none (AdaLNModulate, AdaLNModulateQuant), one (branch
// given: AdaLNResidual, AdaLNResidualQuant) or two (branch2 too).
template <typename T, Mode MODE>
void dispatch_branches(const AdaLnArgs& a, const Quant& q, cudaStream_t stream) {
  if constexpr (MODE == kToken) {
    if (a.x8_2 != nullptr) {
      if (a.branch == nullptr)
        dispatch_pair<T, 0>(a, q, stream);
      else if (a.branch2 == nullptr)
        dispatch_pair<T, 1>(a, q, stream);
      else
        dispatch_pair<T, 2>(a, q, stream);
      return;
    }
  }
  if (a.branch == nullptr)
    dispatch<T, MODE, 0>(a, q, stream);
  else if (a.branch2 == nullptr)
    dispatch<T, MODE, 1>(a, q, stream);
  else
    dispatch<T, MODE, 2>(a, q, stream);
}

// The element type.
template <Mode MODE>
void dispatch(const AdaLnArgs& a, const Quant& q, Dtype dtype, cudaStream_t stream) {
  if (dtype == Dtype::f32)
    dispatch_branches<float, MODE>(a, q, stream);
  else
    dispatch_branches<__half, MODE>(a, q, stream);
}

Quant quant_of(const AdaLnArgs& a, float* state, const Fp8DelayedConfig& config) {
  Quant q;
  q.x8 = a.x8;
  q.act_scale = a.act_scale;
  q.shift2 = a.shift2;
  q.scale2 = a.scale2;
  q.x8_2 = a.x8_2;
  q.act_scale_2 = a.act_scale_2;
  q.state = state;
  q.slots = DelayedSlots{static_cast<int>(config.history)};
  q.margin = config.margin;
  return q;
}

bool fits_int32(const AdaLnArgs& a) { return a.batch * a.tokens <= INT32_MAX && a.channels <= INT32_MAX; }

// delayed_begin's block (one block per call: it only fills act_scale).
constexpr int kBeginThreads = 256;

}  // namespace

const char* adaln_modulate_cuda(const AdaLnArgs& args, Dtype dtype, void* stream) {
  if (!fits_int32(args))
    return "AdaLNModulate: tensor too large for the CUDA kernel (rows and channels must fit in int32)";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Quant q = quant_of(args, nullptr, Fp8DelayedConfig{});
  if (args.x8 != nullptr)
    dispatch<kToken>(args, q, dtype, s);
  else
    dispatch<kY>(args, q, dtype, s);
  const cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

bool adaln_modulate_cuda_delayed(const AdaLnArgs& args, Dtype dtype, AdaLnDelayedCuda& delayed, void* stream,
                                 char* error, size_t error_size) {
  if (!fits_int32(args)) {
    std::snprintf(error, error_size, "tensor too large for the CUDA kernel (rows and channels must fit in int32)");
    return false;
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const auto launched = [&](const char* what) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) std::snprintf(error, error_size, "CUDA %s failed: %s", what, cudaGetErrorString(e));
    return e == cudaSuccess;
  };
  if (delayed.seeded) {
    // Graph-capturable: two launches on the fixed state, nothing allocated, no synchronisation.
    dispatch<kDelayed>(args, quant_of(args, delayed.state, delayed.config), dtype, s);
    if (!launched("kernel launch")) return false;
    delayed_push_next<<<1, 1, 0, s>>>(delayed.state, DelayedSlots{static_cast<int>(delayed.config.history)},
                                      delayed.config.margin);
    return launched("delayed-scale push launch");
  }
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(s, &capturing);
  if (capturing != cudaStreamCaptureStatusNone) {
    std::snprintf(error, error_size,
                  "act_scaling \"delayed_tensor\": the kernel's first call (it allocates its amax history and "
                  "scales by its own amax in several launches) may not be captured into a CUDA graph: run it "
                  "once before capturing");
    return false;
  }
  const DelayedSlots slots{static_cast<int>(delayed.config.history)};
  const size_t bytes = static_cast<size_t>(slots.count()) * sizeof(float);
  if (delayed.state == nullptr) {
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&delayed.state), bytes);
    if (e != cudaSuccess) {
      delayed.state = nullptr;
      std::snprintf(error, error_size, "cannot allocate the delayed-scaling state: %s", cudaGetErrorString(e));
      return false;
    }
    cudaGetDevice(&delayed.device);
  }
  // An empty ring at position 0, amax and counter zero (also after a first call that failed midway).
  const cudaError_t zeroed = cudaMemsetAsync(delayed.state, 0, bytes, s);
  if (zeroed != cudaSuccess) {
    std::snprintf(error, error_size, "cannot zero the delayed-scaling state: %s", cudaGetErrorString(zeroed));
    return false;
  }
  const Quant q = quant_of(args, delayed.state, delayed.config);
  dispatch<kMeasure>(args, q, dtype, s);
  if (!launched("kernel launch (amax)")) return false;
  delayed_begin<kBeginThreads><<<1, kBeginThreads, 0, s>>>(delayed.state, slots, delayed.config.margin, true,
                                                           args.act_scale, args.batch * args.tokens);
  if (!launched("delayed-scale kernel launch")) return false;
  dispatch<kFirst>(args, q, dtype, s);
  if (!launched("kernel launch (codes)")) return false;
  delayed_push_next<<<1, 1, 0, s>>>(delayed.state, slots, delayed.config.margin);
  if (!launched("delayed-scale push launch")) return false;
  delayed.seeded = true;
  return true;
}

void adaln_delayed_cuda_release(AdaLnDelayedCuda& delayed) {
  if (delayed.state == nullptr) return;
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(delayed.device);
  cudaFree(delayed.state);
  cudaSetDevice(previous);
  delayed.state = nullptr;
  delayed.seeded = false;
}

}  // namespace atelier
