// JointQkvNorm on the GPU: one kernel on ORT's stream, every size a kernel parameter (no
// allocation, no host memory, no synchronisation: CUDA-graph capturable and safe to replay).
//
// The vectorised kernel (head widths whose row is a power-of-two number ≤ 32 of 16-byte vectors,
// e.g. 64 in float16 or float32, with 16-byte-aligned tensors): one thread block per two token rows
// of q, k and v (a grid-stride loop past 2³¹ − 1 rows; both rows' loads in flight before either is
// reduced); its threads walk each row's source, the 3C
// values of one context_qkv or x_qkv row, one 16-byte vector each (VEC = 8 float16 or 4 float32
// values), so every load and store is 16 bytes and coalesced. A head of q or k is G = D / VEC
// consecutive threads, aligned within a warp (C, hence every part and head, is a whole number of
// G-vector groups): each thread sums the squares of its vector, a butterfly of shuffles over the
// group adds the G sums, and each thread scales its own vector. That is exactly how ONNX Runtime's
// SimplifiedLayerNormalization reduces a row of D ≤ 128 (layer_norm_impl.cu: one warp per row, lane
// j owns [VEC·j, VEC·j + VEC), its squares accumulated in order with fused multiply-adds, then the
// lanes' sums added with shuffles at offsets 16 … 1, where the lanes past the row add zeros): the
// butterfly yields the same association in every lane, lane 0's among them. Then ms = s / D (an
// IEEE division), inv = rsqrtf(ms + epsilon), y = (w · inv) · x, rounded once to the element type:
// ORT's own operations in its own order, so the outputs are the stock graph's bit for bit. v's
// vectors are stored as loaded.
//
// Any other head width or alignment takes the warp kernel: one warp per (token row, part, head),
// one element at a time, with ORT's one-warp loop (and its float16 start on an odd element); for
// D > 128 ORT itself uses several warps per row, so there the last bit may differ.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "joint_qkv_norm.h"

namespace atelier {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kMaxThreads = 1024;
// Blocks per launch at most; the grid-stride loops cover the rest.
constexpr int64_t kMaxBlocks = INT32_MAX;
constexpr int kWarpKernelThreads = 256;
constexpr int64_t kWarpKernelMaxBlocks = 8192;

// VEC elements moved as one aligned 16-byte access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// A 16-byte load through the read-only data cache (the inputs are never written while the kernel
// runs); the pointers arrive in a struct, so the compiler would otherwise emit generic loads.
template <typename P>
__device__ __forceinline__ P load16(const P* p) {
  static_assert(sizeof(P) == sizeof(uint4), "16-byte vectors only");
  const uint4 bits = __ldg(reinterpret_cast<const uint4*>(p));
  P out;
  memcpy(&out, &bits, sizeof out);
  return out;
}

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

// Everything a kernel needs, typed.
template <typename T>
struct Params {
  const T* context;  // [B, Tc, 3C]
  const T* x;        // [B, Tx, 3C]
  const T* ctx_ln_q;
  const T* ctx_ln_k;
  const T* x_ln_q;
  const T* x_ln_k;
  T* q;
  T* k;
  T* v;
  int64_t rows;  // B · (Tc + Tx)
  int64_t tokens;  // Tc + Tx
  int64_t context_tokens;
  int64_t x_tokens;
  int heads;
  int head_dim;
  float epsilon;
};

// Where token row `row` of q, k and v comes from: its qkv row and its stream's weights.
template <typename T>
struct Source {
  const T* qkv;  // the row's 3C values
  const T* ln_q;
  const T* ln_k;
  int64_t stream_row;  // the row's index within its own stream (b · Tc + t, or b · Tx + t − Tc)
};

template <typename T>
__device__ __forceinline__ Source<T> source_of(const Params<T>& p, int64_t row) {
  const int64_t width = 3 * static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t b = row / p.tokens;
  const int64_t t = row - b * p.tokens;
  if (t < p.context_tokens) {
    const int64_t r = b * p.context_tokens + t;
    return {p.context + r * width, p.ctx_ln_q, p.ctx_ln_k, r};
  }
  const int64_t r = b * p.x_tokens + (t - p.context_tokens);
  return {p.x + r * width, p.x_ln_q, p.x_ln_k, r};
}

// The RMSNorm of one value: (w · inv) · x, each product rounded (ORT's order).
__device__ __forceinline__ float scaled(float x, float w, float inv) { return __fmul_rn(__fmul_rn(w, inv), x); }

// inv = rsqrtf(s / D + epsilon), as ORT's cuApplyLayerNorm computes c_inv_std_dev.
__device__ __forceinline__ float inverse_rms(float squares, int head_dim, float epsilon) {
  return rsqrtf(__fadd_rn(__fdiv_rn(squares, static_cast<float>(head_dim)), epsilon));
}

// ROWS token rows per block, their loads issued before any reduction. One: two (twice the bytes in
// flight per thread, the same bits) ran slower in the whole step on the H200, 59.6 against 49.6 µs a
// Medium call and Medium W8A8 1.014 against 0.998–1.007 s (the fourteenth session), though not in
// capi-check's copies.
template <typename T, int G>
__global__ void __launch_bounds__(kMaxThreads) joint_qkv_norm_vector_kernel(Params<T> p) {
  constexpr int ROWS = 1;
  constexpr int VEC = 16 / sizeof(T);
  using P = Pack<T, VEC>;
  const int per_part = p.heads * G;  // vectors of q (of k, of v) in a row
  const int vectors = 3 * per_part;
  const int lane_in_head = threadIdx.x & (G - 1);  // blockDim.x is a multiple of 32, so of G
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * ROWS; first < p.rows;
       first += static_cast<int64_t>(gridDim.x) * ROWS) {
    Source<T> s[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) s[r] = source_of(p, first + r < p.rows ? first + r : first);
    // `base` is the same in every thread of the block, so whole warps (whole groups) iterate together.
    for (int base = 0; base < vectors; base += blockDim.x) {
      const int j = base + threadIdx.x;
      const bool active = j < vectors;
      const int part = (j >= per_part) + (j >= 2 * per_part);  // 0 q, 1 k, 2 v
      P value[ROWS];
      P weight[ROWS];
      float squares[ROWS];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        value[r] = P{};
        weight[r] = P{};
        squares[r] = 0.0f;
        if (active && first + r < p.rows) {
          value[r] = load16(reinterpret_cast<const P*>(s[r].qkv) + j);
          if (part < 2) weight[r] = load16(reinterpret_cast<const P*>(part == 0 ? s[r].ln_q : s[r].ln_k) + lane_in_head);
        }
      }
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        if (active && part < 2)
#pragma unroll
          for (int e = 0; e < VEC; ++e) {
            const float f = to_float(value[r].v[e]);
            squares[r] = __fmaf_rn(f, f, squares[r]);
          }
#pragma unroll
        for (int offset = G / 2; offset > 0; offset >>= 1)
          squares[r] = __fadd_rn(squares[r], __shfl_xor_sync(kFullMask, squares[r], offset));
      }
      if (!active) continue;
      const int within = j - part * per_part;
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        if (first + r >= p.rows) continue;
        const int64_t out = (first + r) * per_part + within;
        if (part == 2) {
          reinterpret_cast<P*>(p.v)[out] = value[r];
          continue;
        }
        const float inv = inverse_rms(squares[r], p.head_dim, p.epsilon);
        P y;
#pragma unroll
        for (int e = 0; e < VEC; ++e) y.v[e] = from_float<T>(scaled(to_float(value[r].v[e]), to_float(weight[r].v[e]), inv));
        reinterpret_cast<P*>(part == 0 ? p.q : p.k)[out] = y;
      }
    }
  }
}

// The elements ORT's one-warp loop hands lane `lane` first: float16 lanes own 8-element chunks
// (read as __half2 pairs, after lane 0 took element 0 alone when the row starts on an odd element),
// float32 lanes 4-element chunks; the elements past the last whole chunk go to the lane whose chunk
// would have held them.
template <typename T>
__device__ __forceinline__ float warp_squares(const T* row, int d, int lane, bool odd_start) {
  constexpr int VEC = sizeof(T) == 2 ? 8 : 4;
  float squares = 0.0f;
  int l = VEC * lane;
  if (sizeof(T) == 2 && odd_start) {
    if (lane == 0) {
      const float f = to_float(row[0]);
      squares = __fmaf_rn(f, f, squares);
    }
    ++l;
  }
  for (; l + VEC - 1 < d; l += VEC * kWarp)
    for (int e = 0; e < VEC; ++e) {
      const float f = to_float(row[l + e]);
      squares = __fmaf_rn(f, f, squares);
    }
  for (; l < d; ++l) {
    const float f = to_float(row[l]);
    squares = __fmaf_rn(f, f, squares);
  }
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    squares = __fadd_rn(squares, __shfl_xor_sync(kFullMask, squares, offset));
  return squares;
}

template <typename T>
__global__ void __launch_bounds__(kWarpKernelThreads) joint_qkv_norm_warp_kernel(Params<T> p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = p.rows * 3 * p.heads;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
  const int64_t c = static_cast<int64_t>(p.heads) * p.head_dim;
  const int d = p.head_dim;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp; w < warps;
       w += stride) {
    const int64_t row = w / (3 * p.heads);
    const int rest = static_cast<int>(w - row * 3 * p.heads);
    const int part = rest / p.heads;
    const int head = rest - part * p.heads;
    const Source<T> s = source_of(p, row);
    const T* in = s.qkv + part * c + head * d;
    T* out = (part == 0 ? p.q : part == 1 ? p.k : p.v) + row * c + head * d;
    if (part == 2) {
      for (int i = lane; i < d; i += kWarp) out[i] = in[i];
      continue;
    }
    // ORT's q (k) tensor holds this head as row stream_row · heads + head of its [·, D] view.
    const bool odd_start = ((s.stream_row * p.heads + head) * d) & 1;
    const float inv = inverse_rms(warp_squares(in, d, lane, odd_start), d, p.epsilon);
    const T* weight = part == 0 ? s.ln_q : s.ln_k;
    for (int i = lane; i < d; i += kWarp) out[i] = from_float<T>(scaled(to_float(in[i]), to_float(weight[i]), inv));
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename T>
Params<T> params_of(const JointQkvNormArgs& a) {
  return {static_cast<const T*>(a.context_qkv),
          static_cast<const T*>(a.x_qkv),
          static_cast<const T*>(a.ctx_ln_q),
          static_cast<const T*>(a.ctx_ln_k),
          static_cast<const T*>(a.x_ln_q),
          static_cast<const T*>(a.x_ln_k),
          static_cast<T*>(a.q),
          static_cast<T*>(a.k),
          static_cast<T*>(a.v),
          a.rows(),
          a.tokens(),
          a.context_tokens,
          a.x_tokens,
          static_cast<int>(a.heads),
          static_cast<int>(a.head_dim),
          a.epsilon};
}

// Threads per block of the vector kernel: the row's vectors in as few passes of at most kMaxThreads
// threads as they fit, spread evenly over the passes, whole warps.
int vector_threads(int64_t vectors) {
  const int64_t passes = (vectors + kMaxThreads - 1) / kMaxThreads;
  const int64_t per_pass = (vectors + passes - 1) / passes;
  return static_cast<int>((per_pass + kWarp - 1) / kWarp * kWarp);
}

template <typename T, int G>
void launch_vector(const Params<T>& p, cudaStream_t stream) {
  const int64_t vectors = 3 * static_cast<int64_t>(p.heads) * G;
  const unsigned blocks = static_cast<unsigned>(p.rows < kMaxBlocks ? p.rows : kMaxBlocks);
  joint_qkv_norm_vector_kernel<T, G><<<blocks, vector_threads(vectors), 0, stream>>>(p);
}

template <typename T>
void launch(const JointQkvNormArgs& a, cudaStream_t stream) {
  constexpr int VEC = 16 / sizeof(T);
  const Params<T> p = params_of<T>(a);
  const bool aligned = aligned16(a.context_qkv) && aligned16(a.x_qkv) && aligned16(a.ctx_ln_q) &&
                       aligned16(a.ctx_ln_k) && aligned16(a.x_ln_q) && aligned16(a.x_ln_k) && aligned16(a.q) &&
                       aligned16(a.k) && aligned16(a.v);
  const int64_t g = a.head_dim % VEC == 0 ? a.head_dim / VEC : 0;
  // A row of at most kMaxThreads vectors per pass: any C ORT could hand us fits a few passes.
  if (aligned && 3 * a.heads * g <= INT32_MAX) {
    switch (g) {
      case 1:
        return launch_vector<T, 1>(p, stream);
      case 2:
        return launch_vector<T, 2>(p, stream);
      case 4:
        return launch_vector<T, 4>(p, stream);
      case 8:
        return launch_vector<T, 8>(p, stream);
      case 16:
        return launch_vector<T, 16>(p, stream);
      case 32:
        return launch_vector<T, 32>(p, stream);
      default:
        break;
    }
  }
  const int64_t warps = a.rows() * 3 * a.heads;
  const int64_t per_block = kWarpKernelThreads / kWarp;
  const int64_t wanted = (warps + per_block - 1) / per_block;
  const unsigned blocks = static_cast<unsigned>(wanted < kWarpKernelMaxBlocks ? wanted : kWarpKernelMaxBlocks);
  joint_qkv_norm_warp_kernel<T><<<blocks, kWarpKernelThreads, 0, stream>>>(p);
}

}  // namespace

const char* joint_qkv_norm_cuda(const JointQkvNormArgs& args, Dtype dtype, void* stream) {
  if (args.rows() <= 0 || args.channels() <= 0) return nullptr;
  if (args.heads > INT32_MAX / 3 || args.head_dim > INT32_MAX || args.heads * args.head_dim > INT32_MAX / 3)
    return "JointQkvNorm: rows too wide for the CUDA kernel (3C must fit in int32)";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (dtype == Dtype::f32)
    launch<float>(args, s);
  else
    launch<__half>(args, s);
  const cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

}  // namespace atelier
