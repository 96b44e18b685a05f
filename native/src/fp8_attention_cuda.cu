// Fp8Attention on the GPU (fp8_attention.h), four steps on ONNX Runtime's stream:
//
// 1. amax: a grid of kAmaxBlocks blocks per tensor (q, k, v: blockIdx.y) reads its share with
//    16-byte loads and writes one partial maximum |x|; no atomics, so nothing to clear first.
// 2. quantize: every block folds its tensor's partials into amax (they are a few KB, in L2), so all
//    blocks agree on inv = 448 / amax; the tensor is written as e4m3 (cvt.rn.satfinite, as
//    Fp8Linear's quantizer). Block 0 of each tensor writes its descale (amax / 448), block 0 of v
//    also Scale_O = inv_v, block 0 of q the static Descale_S = 1/448 and Scale_S = 448 and, for a
//    padding-mask plan, the sequence lengths.
// 3. cuDNN's FP8 flash attention (fp8_attention_cudnn.cc): O as e4m3 with Scale_O = inv_v.
// 4. dequantize: out = float16(O8 · descale_v).
//
// Resources, as Fp8Linear's: the cuDNN graph and plan per shape, made the first time it is seen
// (never while the stream is being captured) and shared by every kernel of the process on that
// device, shape and scale; the intermediates — partials, scalars, q8, k8, v8, o8
// and cuDNN's workspace — in one scratch buffer per CUDA stream shared by the Fp8Attention kernels on
// it, grown only with a new plan and never during a capture (a grown buffer's predecessor stays
// allocated until the stream's last kernel is destroyed: a captured graph may still point into it).
// A call on a known shape allocates nothing and never synchronises.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "cuda_reduce.h"
#include "fp8_attention.h"
#include "fp8_attention_cudnn.h"
#include "stream_scratch.cuh"

namespace atelier {
namespace {

constexpr int kThreads = 256;
// Partial maxima per tensor: about two blocks per SM of an H200 (132 SMs), a few KB to fold.
constexpr int kAmaxBlocks = 264;
constexpr int kQuantizeBlocks = 528;
constexpr int kDequantizeBlocks = 528;
constexpr size_t kAlign = 256;
constexpr float kE4m3Max = 448.0f;
using cuda_reduce::kWarp;

// Scalars cuDNN reads or writes, by index into the scalar block (float32 each).
enum Scalar { kDescaleQ, kDescaleK, kDescaleV, kDescaleS, kScaleS, kScaleO, kAmaxS, kAmaxO, kScalarCount };

bool verbose() {
  static const bool on = [] {
    const char* v = std::getenv("ATELIER_OPS_VERBOSE");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

void set_error(char* error, size_t size, const char* format, ...) __attribute__((format(printf, 3, 4)));
void set_error(char* error, size_t size, const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(error, size, format, args);
  va_end(args);
}

size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

struct Tensors3 {
  const __half* x[3];
};
struct Codes3 {
  __nv_fp8_storage_t* x[3];
};

// ---- kernels -------------------------------------------------------------------------------------

// VEC halves per access: 8 (16 bytes) when the element count and the pointers allow, else 1.
template <int VEC>
__global__ void __launch_bounds__(kThreads) amax_partials(Tensors3 in, int64_t n, float* __restrict__ partials) {
  const __half* x = in.x[blockIdx.y];
  const int64_t vectors = n / VEC;
  float amax = 0.0f;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < vectors;
       v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (VEC == 8) {
      const uint4 packed = reinterpret_cast<const uint4*>(x)[v];
      const __half2* h = reinterpret_cast<const __half2*>(&packed);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        amax = fmaxf(amax, fmaxf(fabsf(f.x), fabsf(f.y)));
      }
    } else {
      amax = fmaxf(amax, fabsf(__half2float(x[v])));
    }
  }
  __shared__ float shared[kThreads / kWarp];
  amax = cuda_reduce::block_max(amax, shared);
  if (threadIdx.x == 0) partials[blockIdx.y * gridDim.x + blockIdx.x] = amax;
}

template <int VEC>
__global__ void __launch_bounds__(kThreads)
    quantize(Tensors3 in, Codes3 out, int64_t n, const float* __restrict__ partials, int partial_count,
             float* __restrict__ scalars, int32_t* __restrict__ seq_len, int batch, int tokens) {
  const int t = blockIdx.y;
  float amax = 0.0f;
  for (int i = threadIdx.x; i < partial_count; i += blockDim.x) amax = fmaxf(amax, partials[t * partial_count + i]);
  __shared__ float shared[kThreads / kWarp];
  amax = cuda_reduce::block_max(amax, shared);
  const float inv = amax > 0.0f ? __fdiv_rn(kE4m3Max, amax) : 0.0f;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    scalars[kDescaleQ + t] = __fdiv_rn(amax, kE4m3Max);
    if (t == 2) scalars[kScaleO] = inv;
    if (t == 0) {
      scalars[kDescaleS] = __fdiv_rn(1.0f, kE4m3Max);
      scalars[kScaleS] = kE4m3Max;
    }
  }
  if (seq_len != nullptr && t == 0 && blockIdx.x == 0)
    for (int b = threadIdx.x; b < batch; b += blockDim.x) seq_len[b] = tokens;

  const __half* x = in.x[t];
  __nv_fp8_storage_t* q = out.x[t];
  const int64_t vectors = n / VEC;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < vectors;
       v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (VEC == 8) {
      const uint4 packed = reinterpret_cast<const uint4*>(x)[v];
      const __half2* h = reinterpret_cast<const __half2*>(&packed);
      uint16_t pairs[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        const float2 scaled = make_float2(__fmul_rn(f.x, inv), __fmul_rn(f.y, inv));
        pairs[i] = __nv_cvt_float2_to_fp8x2(scaled, __NV_SATFINITE, __NV_E4M3);
      }
      uint2 codes;
      codes.x = static_cast<uint32_t>(pairs[0]) | (static_cast<uint32_t>(pairs[1]) << 16);
      codes.y = static_cast<uint32_t>(pairs[2]) | (static_cast<uint32_t>(pairs[3]) << 16);
      reinterpret_cast<uint2*>(q)[v] = codes;
    } else {
      q[v] = __nv_cvt_float_to_fp8(__fmul_rn(__half2float(x[v]), inv), __NV_SATFINITE, __NV_E4M3);
    }
  }
}

__device__ __forceinline__ float e4m3_value(__nv_fp8_storage_t code) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(code, __NV_E4M3)));
}

template <int VEC>
__global__ void __launch_bounds__(kThreads)
    dequantize(const __nv_fp8_storage_t* __restrict__ o8, __half* __restrict__ out, int64_t n,
               const float* __restrict__ scalars) {
  const float descale = scalars[kDescaleV];
  const int64_t vectors = n / VEC;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < vectors;
       v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (VEC == 8) {
      const uint2 codes = reinterpret_cast<const uint2*>(o8)[v];
      const __nv_fp8_storage_t* c = reinterpret_cast<const __nv_fp8_storage_t*>(&codes);
      __half2 h[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        h[i] = __floats2half2_rn(__fmul_rn(e4m3_value(c[2 * i]), descale), __fmul_rn(e4m3_value(c[2 * i + 1]), descale));
      reinterpret_cast<uint4*>(out)[v] = *reinterpret_cast<const uint4*>(h);
    } else {
      out[v] = __float2half_rn(__fmul_rn(e4m3_value(o8[v]), descale));
    }
  }
}

// ---- per-stream scratch --------------------------------------------------------------------------

using Scratch = StreamScratch::Buffer;

// Never destroyed: kernels may be released after static destructors ran.
StreamScratch& attention_scratch() {
  static StreamScratch* scratch = new StreamScratch;
  return *scratch;
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(stream, &status);
  return status != cudaStreamCaptureStatusNone;
}

bool check_launch(const char* what, char* error, size_t error_size) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return true;
  set_error(error, error_size, "%s failed: %s", what, cudaGetErrorString(e));
  return false;
}

#ifdef ATELIER_WITH_CUDNN
// One cuDNN graph and plan, shared by every Fp8Attention kernel of the process on the same device,
// shape and scale (SD3.5 Large's 38 blocks build one, not 38): the cache holds it weakly, the
// kernels' plans strongly, so it goes with the last session using it. Its handle's stream is set
// per call, so calls on it are serialised.
struct SharedSdpa {
  std::mutex mutex;
  cudnn_sdpa::Plan* plan = nullptr;
  ~SharedSdpa() {
    if (plan != nullptr) cudnn_sdpa::destroy_plan(plan);
  }
};

struct SdpaKey {
  int device;
  int64_t batch, tokens, heads, head_dim;
  float scale;
  bool operator<(const SdpaKey& o) const {
    if (device != o.device) return device < o.device;
    if (batch != o.batch) return batch < o.batch;
    if (tokens != o.tokens) return tokens < o.tokens;
    if (heads != o.heads) return heads < o.heads;
    if (head_dim != o.head_dim) return head_dim < o.head_dim;
    return scale < o.scale;
  }
};

std::mutex& sdpa_cache_mutex() {
  static std::mutex m;
  return m;
}
std::map<SdpaKey, std::weak_ptr<SharedSdpa>>& sdpa_cache() {
  static std::map<SdpaKey, std::weak_ptr<SharedSdpa>> c;
  return c;
}
#endif

struct Plan {
  int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;
  float scale = 0.0f;
#ifdef ATELIER_WITH_CUDNN
  std::shared_ptr<SharedSdpa> sdpa;
#endif
  // Offsets in the stream's scratch and the bytes it must hold.
  size_t partials = 0, scalars = 0, seq_len = 0, codes[4] = {}, workspace = 0, bytes = 0;
};

}  // namespace

struct Fp8AttentionCuda {
  std::mutex mutex;
  std::vector<std::unique_ptr<Plan>> plans;
};

namespace {

Scratch* scratch_for(Fp8AttentionCuda& kernel, cudaStream_t stream, size_t bytes, char* error, size_t error_size) {
  return attention_scratch().get(&kernel, stream, bytes, error, error_size);
}

void release_scratch(Fp8AttentionCuda& kernel) { attention_scratch().release(&kernel); }

#ifdef ATELIER_WITH_CUDNN
// The process's cuDNN plan for this device, shape and scale, built if no live kernel has it; null
// with a message.
std::shared_ptr<SharedSdpa> shared_sdpa(const Fp8AttentionArgs& args, bool* built, char* error, size_t error_size) {
  int device = 0, major = 0, minor = 0;
  cudaGetDevice(&device);
  const SdpaKey key{device, args.batch, args.tokens, args.heads, args.head_dim, args.scale};
  std::lock_guard<std::mutex> lock(sdpa_cache_mutex());
  std::weak_ptr<SharedSdpa>& slot = sdpa_cache()[key];
  *built = false;
  if (std::shared_ptr<SharedSdpa> live = slot.lock()) return live;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  auto fresh = std::make_shared<SharedSdpa>();
  fresh->plan = cudnn_sdpa::make_plan(args.batch, args.tokens, args.heads, args.head_dim, args.scale,
                                      major * 10 + minor, error, error_size);
  if (fresh->plan == nullptr) return nullptr;
  slot = fresh;
  *built = true;
  return fresh;
}

// A shape's plan (the shared cuDNN one) and scratch layout; null with a message.
std::unique_ptr<Plan> make_plan(const Fp8AttentionArgs& args, bool* built, char* error, size_t error_size) {
  auto plan = std::make_unique<Plan>();
  plan->batch = args.batch;
  plan->tokens = args.tokens;
  plan->heads = args.heads;
  plan->head_dim = args.head_dim;
  plan->scale = args.scale;
  plan->sdpa = shared_sdpa(args, built, error, error_size);
  if (!plan->sdpa) return nullptr;
  const size_t n = static_cast<size_t>(args.elements());
  size_t at = 0;
  plan->partials = at;
  at += align_up(3 * kAmaxBlocks * sizeof(float));
  plan->scalars = at;
  at += align_up(kScalarCount * sizeof(float));
  plan->seq_len = at;
  at += align_up(static_cast<size_t>(args.batch) * sizeof(int32_t));
  for (size_t& code : plan->codes) {
    code = at;
    at += align_up(n);
  }
  plan->workspace = at;
  plan->bytes = at + static_cast<size_t>(cudnn_sdpa::workspace_bytes(plan->sdpa->plan));
  return plan;
}
#endif

}  // namespace

Fp8AttentionCuda* fp8_attention_cuda_create(char* error, size_t error_size) {
#ifdef ATELIER_WITH_CUDNN
  if (const char* why = cudnn_sdpa::open_library()) {
    set_error(error, error_size, "%s", why);
    return nullptr;
  }
  auto* kernel = new (std::nothrow) Fp8AttentionCuda();
  if (kernel == nullptr) set_error(error, error_size, "out of memory");
  return kernel;
#else
  set_error(error, error_size,
            "this library was built without cuDNN (node native/cudnn-deps.mjs, then rebuild): the CUDA kernel "
            "runs cuDNN's FP8 attention");
  return nullptr;
#endif
}

void fp8_attention_cuda_destroy(Fp8AttentionCuda* kernel) {
  if (kernel == nullptr) return;
  kernel->plans.clear();
  release_scratch(*kernel);
  delete kernel;
}

bool fp8_attention_cuda_run(Fp8AttentionCuda* kernel, const Fp8AttentionArgs& args, void* stream_ptr, char* error,
                            size_t error_size) {
#ifdef ATELIER_WITH_CUDNN
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  if (args.batch > 0x7fffffff || args.tokens > 0x7fffffff) {
    set_error(error, error_size, "too many tokens (%lld) or batch rows (%lld)", static_cast<long long>(args.tokens),
              static_cast<long long>(args.batch));
    return false;
  }
  std::lock_guard<std::mutex> lock(kernel->mutex);
  Plan* plan = nullptr;
  for (auto& p : kernel->plans)
    if (p->batch == args.batch && p->tokens == args.tokens && p->heads == args.heads &&
        p->head_dim == args.head_dim && p->scale == args.scale)
      plan = p.get();
  if (plan == nullptr) {
    if (capturing(stream)) {
      set_error(error, error_size,
                "q [%lld, %lld, %lld] is a new shape inside a CUDA graph capture: run the shape once before capturing",
                static_cast<long long>(args.batch), static_cast<long long>(args.tokens),
                static_cast<long long>(args.channels()));
      return false;
    }
    bool built = false;
    std::unique_ptr<Plan> fresh = make_plan(args, &built, error, error_size);
    if (!fresh) return false;
    plan = fresh.get();
    kernel->plans.push_back(std::move(fresh));
    if (verbose())
      std::fprintf(stderr,
                   "atelier:Fp8Attention: cuDNN %zu FP8 SDPA, q [%lld, %lld, %lld × %lld]%s, workspace %.1f MiB, "
                   "stream scratch %.1f MiB, %s\n",
                   cudnn_sdpa::backend_version(), static_cast<long long>(args.batch),
                   static_cast<long long>(args.tokens), static_cast<long long>(args.heads),
                   static_cast<long long>(args.head_dim),
                   cudnn_sdpa::uses_padding_mask(plan->sdpa->plan) ? " with a padding mask" : "",
                   static_cast<double>(cudnn_sdpa::workspace_bytes(plan->sdpa->plan)) / (1 << 20),
                   static_cast<double>(plan->bytes) / (1 << 20),
                   built ? "plan built" : "plan shared with another kernel");
  }
  Scratch* scratch = scratch_for(*kernel, stream, plan->bytes, error, error_size);
  if (scratch == nullptr) return false;
  char* base = static_cast<char*>(scratch->base);
  float* partials = reinterpret_cast<float*>(base + plan->partials);
  float* scalars = reinterpret_cast<float*>(base + plan->scalars);
  int32_t* seq_len = reinterpret_cast<int32_t*>(base + plan->seq_len);
  __nv_fp8_storage_t* codes[4];
  for (int i = 0; i < 4; ++i) codes[i] = reinterpret_cast<__nv_fp8_storage_t*>(base + plan->codes[i]);

  const int64_t n = args.elements();
  const Tensors3 in{{static_cast<const __half*>(args.q), static_cast<const __half*>(args.k),
                     static_cast<const __half*>(args.v)}};
  const Codes3 out{{codes[0], codes[1], codes[2]}};
  bool vectorised = n % 8 == 0;
  for (const void* p : {args.q, args.k, args.v, static_cast<const void*>(args.out)})
    vectorised = vectorised && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  const bool padded = cudnn_sdpa::uses_padding_mask(plan->sdpa->plan);

  const dim3 amax_grid(kAmaxBlocks, 3), quantize_grid(kQuantizeBlocks, 3);
  if (vectorised) {
    amax_partials<8><<<amax_grid, kThreads, 0, stream>>>(in, n, partials);
    quantize<8><<<quantize_grid, kThreads, 0, stream>>>(in, out, n, partials, kAmaxBlocks, scalars,
                                                        padded ? seq_len : nullptr, static_cast<int>(args.batch),
                                                        static_cast<int>(args.tokens));
  } else {
    amax_partials<1><<<amax_grid, kThreads, 0, stream>>>(in, n, partials);
    quantize<1><<<quantize_grid, kThreads, 0, stream>>>(in, out, n, partials, kAmaxBlocks, scalars,
                                                        padded ? seq_len : nullptr, static_cast<int>(args.batch),
                                                        static_cast<int>(args.tokens));
  }
  if (!check_launch("the amax and quantize kernels", error, error_size)) return false;

  const cudnn_sdpa::Pointers pointers{codes[0],
                                      codes[1],
                                      codes[2],
                                      codes[3],
                                      scalars + kDescaleQ,
                                      scalars + kDescaleK,
                                      scalars + kDescaleV,
                                      scalars + kDescaleS,
                                      scalars + kScaleS,
                                      scalars + kScaleO,
                                      scalars + kAmaxS,
                                      scalars + kAmaxO,
                                      seq_len,
                                      base + plan->workspace};
  {
    std::lock_guard<std::mutex> sdpa_lock(plan->sdpa->mutex);
    if (!cudnn_sdpa::run(plan->sdpa->plan, stream, pointers, error, error_size)) return false;
  }

  if (vectorised)
    dequantize<8><<<kDequantizeBlocks, kThreads, 0, stream>>>(codes[3], static_cast<__half*>(args.out), n, scalars);
  else
    dequantize<1><<<kDequantizeBlocks, kThreads, 0, stream>>>(codes[3], static_cast<__half*>(args.out), n, scalars);
  return check_launch("the dequantize kernel", error, error_size);
#else
  (void)kernel;
  (void)args;
  (void)stream_ptr;
  set_error(error, error_size, "this library was built without cuDNN");
  return false;
#endif
}

}  // namespace atelier
