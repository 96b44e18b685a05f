// Fp8Linear on the GPU (fp8_linear.h): a quantize kernel, then one cuBLASLt FP8 GEMM on Hopper's
// tensor cores, all on ONNX Runtime's stream.
//
// 1. quantize: one block per row of x reads the row (16-byte vectors), reduces |x| to amax, writes
//    act_scale[row] = amax / 448 and the row as e4m3 (x · 448/amax, cvt.rn.satfinite). Fp8LinearQ
//    (args.x8 given: its producer quantized) skips this step and the GEMM reads x8 and act_scale.
// 2. GEMM, cuBLASLt's "TN" form in column-major terms: D [N, M] = op(A) · B with A = weight
//    ([N, K] row-major = K×N column-major, transposed), B = x8 ([M, K] row-major = K×M
//    column-major); D column-major [N, M] is y row-major [M, N]. Both operands K-major, the one
//    layout FP8 takes on Hopper.
//    scaling "outer_vector": A and B scales are vectors (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F,
//      cuBLAS 12.9+): weight_scale [N] for A's rows, act_scale [M] for B's columns; bias and GELU in
//      cuBLASLt's epilogue when it offers an algorithm for that (GELU only with cublaslt_gelu = 1),
//      else what it leaves out by our epilogue kernel, in place; if it has no float16-output
//      algorithm at all, a bfloat16 D in scratch that our epilogue kernel converts (make_plan).
//    scaling "fp32_output": unscaled GEMM to a float32 scratch [M, N], then our epilogue kernel
//      applies act_scale · weight_scale, bias and GELU and writes float16.
//    scaling "tensor" (Fp8LinearQ): the scales are uniform (fp8_linear.h), so cuBLASLt takes
//      weight_scale[0] and act_scale[0] as its scalar A and B scales (tensor-wide scaling, its
//      default mode) with the same epilogues as outer-vector, and can write e4m3 D (3. below).
//
// 3. output "e4m3_delayed" (fp8_linear.h: the MLP hand-off): y8 and y_scale with a delayed
//    per-tensor scale. The kernel instance's state lives on the device (allocated with its first
//    plan, outside any capture): the amax ring, this call's amax, s, d = 1/s, the ring position and
//    a block counter. No host sync anywhere, so a known shape captures. The instance's first call (a
//    host flag; run before any capture, as every first shape is) scales by its own amax: the amax
//    first, then the codes, then the push (separate kernels). Two ways to get the codes, chosen at
//    plan time:
//    - cuBLASLt writes e4m3 D itself, scaled by D_SCALE_POINTER = d and reporting AMAX_D: before the
//      GEMM `delayed_begin` (one block) computes s and d from the ring and fills y_scale, after it
//      `delayed_push` pushes the amax. Asked for first (and tried once when the plan is made), but
//      NVIDIA's documentation says it cannot be had with our scaling (below);
//    - the fallback: the GEMM writes float16 h into scratch as for output "float16", then one
//      kernel, `quantize_tensor_delayed`, takes s and d from the ring, fills y_scale, writes
//      e4m3(h · d) (cvt.rn.satfinite), reduces the amax and (its last block) pushes it. It replaces
//      fc2's per-row quantize pass, but moves as many bytes (h written, h read, y8 written): what it
//      can save is that pass's per-row structure, not its traffic. Only a GEMM that writes e4m3
//      itself saves fc1's float16 write and the h read.
//    ATELIER_OPS_VERBOSE=1 says which one a plan got.
//
//    What cuBLASLt offers, from NVIDIA's cuBLAS documentation (docs.nvidia.com/cuda/cublas,
//    "Narrow Precision Data Types Usage", §3.1.4.1 tensor-wide scaling and §3.1.4.3 "Outer Vector
//    Scaling for FP8 Data Types"; read 2026-12-02 in a translation of that page, the English
//    original not being in our search index):
//    - With tensor-wide (scalar) scaling, D = scale_D · epilogue(α·scale_A·scale_B·op(A)op(B) +
//      β·scale_C·C + bias), and amax_D = absmax(D_temp) where D_temp = epilogue(...) is the value
//      BEFORE scale_D is applied (after bias and GELU): the unscaled amax our ring wants.
//      (The bias is added before the epilogue's activation, so GELU_BIAS fits.)
//    - With outer-vector scaling (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F on A and B, what we
//      use for per-channel × per-token scales; scaling "tensor" avoids it for exactly this reason), "scale_D is not supported, since the only supported
//      precisions for D are CUDA_R_16F, CUDA_R_16BF and CUDA_R_32F". So e4m3 D with D_SCALE and
//      AMAX_D is documented NOT to combine with our A/B scale modes on sm90; the 128-element block
//      modes (VEC128_32F / BLK128x128_32F) say the same. PyTorch's scaled_gemm
//      (aten/src/ATen/cuda/CUDABlas.cpp) sets D_SCALE_POINTER only when given a result scale (older
//      versions AMAX_D only for an FP8 result), with C typed as the 16-bit bias and D as the result:
//      the layouts we give an e4m3 D. We still ask (a later cuBLASLt may add it) and take the
//      fallback when refused, which is the expected case.
//    - The header's attribute notes (cublasLt.h, as copied into language bindings' docs): AMAX_D
//      "will be set to the maximum of absolute values in the output matrix", and for D_SCALE and
//      AMAX_D an unsupported combination makes "cublasLtMatmul() return CUBLAS_INVALID_VALUE" —
//      at the GEMM, not in the heuristic: hence one trial GEMM when an e4m3-D plan is made.
//    - Whether cuBLASLt's FP8 D conversion saturates is not stated there; our fallback saturates
//      (satfinite) as float_to_e4m3 does; were the e4m3-D path ever taken, the capi-check
//      `mlp-handoff` judges it against float64 of this math (a clip-or-NaN difference would show).
//
// Resources. cuBLASLt is opened with dlopen (no header, no link: cublaslt_min.h) once per process,
// with one handle per device shared by every kernel instance (cuBLASLt's calls are thread-safe with
// one handle; the handle holds no stream or workspace of its own). A problem shape (M, N,
// K, bias) gets its plan — matmul descriptor, layouts, algorithm from the heuristic — the first time
// it is seen and keeps it. The per-call intermediates (x8 [M, K], act_scale [M], a float32 or
// bfloat16 D when the plan needs one, and cuBLASLt's workspace: as much as the plan's candidate
// algorithms ask for, often nothing) live in one scratch buffer per CUDA stream, shared by every Fp8Linear
// kernel that runs on that stream (they run one after another on it): a session's layers need one
// buffer, not one each. It is allocated, or grown, only with a new plan, never while the stream is
// being captured; a grown buffer's predecessor stays allocated (a captured graph may still use it)
// until the last kernel using the stream is destroyed. So a call on a known shape allocates nothing
// and never synchronises: it captures into CUDA graphs and replays.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <tuple>
#include <vector>

#include "cublaslt_min.h"
#include "cuda_reduce.h"
#include "delayed_scaling_cuda.cuh"
#include "fp8_linear.h"
#include "stream_scratch.cuh"

namespace atelier {
namespace {

constexpr const char* kCublasLtLibrary = "libcublasLt.so.13";
// The most workspace offered to cuBLASLt's heuristic: what NVIDIA recommends for Hopper. A plan's
// scratch holds only what its candidates ask for (Plan::workspace): issue 10's memory target, W8A8
// no larger than weight-only FP8, counts these bytes.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// The workspace offered to the heuristic: none. cuBLASLt zeroes the workspace of an algorithm that
// takes one (under 0.05 MiB: the plans print 0.0) with a 4-byte memset node before each GEMM, 122 per
// Medium step, each a 3–5 µs gap; without, the GPU idled 0.55 instead of 0.91 ms a Medium step and
// Medium W8A8 ran 0.982–0.998 s against 0.997–1.002, Large 2.160–2.168 against 2.172 (H200, the
// fourteenth session's run of record). ATELIER_GEMM_WORKSPACE_MIB=N offers N MiB (at most
// kWorkspaceBytes) for A/B rows. Read once per process.
size_t offered_workspace() {
  static const size_t bytes = [] {
    const char* v = std::getenv("ATELIER_GEMM_WORKSPACE_MIB");
    if (v == nullptr || v[0] == '\0') return size_t{0};
    const long mib = std::strtol(v, nullptr, 10);
    return mib <= 0 ? size_t{0} : std::min(kWorkspaceBytes, static_cast<size_t>(mib) << 20);
  }();
  return bytes;
}

constexpr size_t kAlign = 256;
constexpr int kQuantizeThreads = 256;
constexpr int kEpilogueThreads = 256;
using cuda_reduce::kWarp;

bool verbose() {
  static const bool on = [] {
    const char* v = std::getenv("ATELIER_OPS_VERBOSE");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

// Time the heuristic's candidate algorithms on a shape's first call and keep the fastest, instead of
// the heuristic's first (issue 10): no gain for the outer-vector plans (cuBLASLt offers them one);
// for the per-tensor MLP's plans it offers 8, and its first choice for fc1's e4m3 D ran 0.2975 ms
// against the fastest's 0.2907 (Large, H200). On unless ATELIER_GEMM_AUTOTUNE=0 (measurements).
// The choice is timed per process, so two processes may run different kernels (another float32
// summation order: ~1e-3 relative on a GEMM's output).
bool autotune() {
  static const bool on = [] {
    const char* v = std::getenv("ATELIER_GEMM_AUTOTUNE");
    return v == nullptr || v[0] != '0';
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

// ---- kernels -------------------------------------------------------------------------------------

// One block per row. VEC halves per access (8: 16 bytes, when K and the pointers allow; else 1).
// The second pass re-reads the row, which is in L1/L2 by then (a row is at most tens of KB).
template <int VEC>
__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_rows(const __half* __restrict__ x, __nv_fp8_storage_t* __restrict__ x8, float* __restrict__ act_scale,
                  int64_t k) {
  const int64_t row = blockIdx.x;
  const __half* xr = x + row * k;
  __nv_fp8_storage_t* qr = x8 + row * k;
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
  __shared__ float partials[kQuantizeThreads / kWarp];
  amax = cuda_reduce::block_max(amax, partials);

  const float inv = amax > 0.0f ? __fdiv_rn(kE4m3Max, amax) : 0.0f;
  if (threadIdx.x == 0) act_scale[row] = __fdiv_rn(amax, kE4m3Max);

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
      uint2 out;
      out.x = static_cast<uint32_t>(pairs[0]) | (static_cast<uint32_t>(pairs[1]) << 16);
      out.y = static_cast<uint32_t>(pairs[2]) | (static_cast<uint32_t>(pairs[3]) << 16);
      reinterpret_cast<uint2*>(qr)[v] = out;
    } else {
      qr[v] = __nv_cvt_float_to_fp8(__fmul_rn(__half2float(xr[v]), inv), __NV_SATFINITE, __NV_E4M3);
    }
  }
}

__device__ __forceinline__ float gelu_tanh(float v) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// y[r, c] = f(d[r, c] · act_scale[r] · weight_scale[c] + bias[c]) when SCALE (an unscaled float32
// GEMM), else f(d[r, c] + bias[c]) (cuBLASLt applied the scales: a bfloat16 D in scratch, or y
// itself in place, so d and y may alias: no __restrict__ on them). Rows along blockIdx.y, columns
// along x, both grid-stride (no division per element). `bias` may be null.
template <typename In, bool SCALE>
__global__ void __launch_bounds__(kEpilogueThreads)
    epilogue(const In* d, const float* __restrict__ act_scale, const float* __restrict__ weight_scale,
             const __half* __restrict__ bias, __half* y, int64_t rows, int64_t n, bool gelu) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float row_scale = SCALE ? act_scale[r] : 1.0f;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t i = r * n + c;
      float v = to_float(d[i]);
      if (SCALE) v = v * row_scale * weight_scale[c];
      if (bias != nullptr) v += __half2float(bias[c]);
      if (gelu) v = gelu_tanh(v);
      y[i] = __float2half_rn(v);
    }
  }
}

// ---- delayed per-tensor scaling (output "e4m3_delayed") -------------------------------------------

// DelayedSlots, delayed_scale_of, push_amax, BitsMax, delayed_begin, delayed_push: delayed_scaling_cuda.cuh.

// One vector of VEC float16 values (8: one 16-byte load) folded into `amax` and, when QUANTIZE,
// written as e4m3(h · d): the loop body both tensor-wide quantize kernels share.
template <int VEC, bool QUANTIZE>
__device__ __forceinline__ float quantize_vector(const __half* __restrict__ h, __nv_fp8_storage_t* __restrict__ y8,
                                                 int64_t v, float d, float amax) {
  if constexpr (VEC == 8) {
    const uint4 packed = reinterpret_cast<const uint4*>(h)[v];
    const __half2* p = reinterpret_cast<const __half2*>(&packed);
    uint16_t pairs[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(p[i]);
      amax = BitsMax{}(amax, BitsMax{}(fabsf(f.x), fabsf(f.y)));
      if (QUANTIZE)
        pairs[i] =
            __nv_cvt_float2_to_fp8x2(make_float2(__fmul_rn(f.x, d), __fmul_rn(f.y, d)), __NV_SATFINITE, __NV_E4M3);
    }
    if (QUANTIZE) {
      uint2 out;
      out.x = static_cast<uint32_t>(pairs[0]) | (static_cast<uint32_t>(pairs[1]) << 16);
      out.y = static_cast<uint32_t>(pairs[2]) | (static_cast<uint32_t>(pairs[3]) << 16);
      reinterpret_cast<uint2*>(y8)[v] = out;
    }
  } else {
    const float f = __half2float(h[v]);
    amax = BitsMax{}(amax, fabsf(f));
    if (QUANTIZE) y8[v] = __nv_cvt_float_to_fp8(__fmul_rn(f, d), __NV_SATFINITE, __NV_E4M3);
  }
  return amax;
}

// Over h (float16, `count` values, VEC per access): the amax into state's slot (atomic, by bits)
// and, when QUANTIZE, y8 = e4m3(h · d) with d read from the state.
template <int VEC, bool QUANTIZE>
__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_tensor(const __half* __restrict__ h, __nv_fp8_storage_t* __restrict__ y8, float* __restrict__ state,
                    DelayedSlots slots, int64_t count) {
  const float d = QUANTIZE ? state[slots.d()] : 0.0f;
  float amax = 0.0f;
  const int64_t vectors = count / VEC;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < vectors; v += stride)
    amax = quantize_vector<VEC, QUANTIZE>(h, y8, v, d, amax);
  __shared__ float partials[kQuantizeThreads / kWarp];
  amax = cuda_reduce::block_reduce(amax, partials, BitsMax{});
  if (threadIdx.x == 0) atomicMax(reinterpret_cast<unsigned int*>(state + slots.amax()), __float_as_uint(amax));
}

// A later call's whole hand-off in one kernel (the fallback's; captured into CUDA graphs): every
// block computes s and d from the ring (the same loads and arithmetic, so the same values), the grid
// fills y_scale and writes y8 = e4m3(h · d) while reducing the amax, and the last block to finish
// (a counter, after the others' atomics are visible) pushes the amax and zeroes the amax slot and
// the counter for the next call. The ring is only written after every block has read it.
template <int VEC>
__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_tensor_delayed(const __half* __restrict__ h, __nv_fp8_storage_t* __restrict__ y8, float* state,
                            DelayedSlots slots, float margin, float* __restrict__ y_scale, int64_t rows,
                            int64_t count) {
  __shared__ float partials[kQuantizeThreads / kWarp];
  __shared__ float2 shared_sd;
  __shared__ bool last;
  float ref = 0.0f;
  for (int i = threadIdx.x; i < slots.history; i += blockDim.x) ref = fmaxf(ref, state[i]);
  ref = cuda_reduce::block_max(ref, partials);
  if (threadIdx.x == 0) shared_sd = delayed_scale_of(ref, margin);
  __syncthreads();
  const float s = shared_sd.x, d = shared_sd.y;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first_thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t r = first_thread; r < rows; r += stride) y_scale[r] = s;
  float amax = 0.0f;
  const int64_t vectors = count / VEC;
  for (int64_t v = first_thread; v < vectors; v += stride) amax = quantize_vector<VEC, true>(h, y8, v, d, amax);
  __syncthreads();  // partials is reused
  amax = cuda_reduce::block_reduce(amax, partials, BitsMax{});
  if (threadIdx.x == 0) {
    atomicMax(reinterpret_cast<unsigned int*>(state + slots.amax()), __float_as_uint(amax));
    __threadfence();
    const unsigned int finished = atomicAdd(reinterpret_cast<unsigned int*>(state + slots.done()), 1u);
    last = finished == gridDim.x - 1;
  }
  __syncthreads();
  if (last && threadIdx.x == 0) {
    __threadfence();
    // Every block's atomicMax happened before its counter increment: read the slot coherently.
    const unsigned int bits = atomicOr(reinterpret_cast<unsigned int*>(state + slots.amax()), 0u);
    push_amax(state, slots, __uint_as_float(bits));
    *reinterpret_cast<unsigned int*>(state + slots.done()) = 0u;
  }
}

// ---- cuBLASLt, opened once per process -----------------------------------------------------------

struct Library {
  cublaslt::Api api{};
  char error[256] = "";
  size_t version = 0;
};

const Library& cublaslt_library() {
  static const Library library = [] {
    Library l;
    void* handle = dlopen(kCublasLtLibrary, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      set_error(l.error, sizeof l.error, "cannot open %s (%s)", kCublasLtLibrary, dlerror());
      return l;
    }
#define ATELIER_CUBLASLT_LOAD(field, symbol, type)                                                      \
  l.api.field = reinterpret_cast<cublaslt::type>(dlsym(handle, #symbol));                            \
  if (l.api.field == nullptr && l.error[0] == '\0')                                                  \
    set_error(l.error, sizeof l.error, "%s has no %s", kCublasLtLibrary, #symbol);
    ATELIER_CUBLASLT_SYMBOLS(ATELIER_CUBLASLT_LOAD)
#undef ATELIER_CUBLASLT_LOAD
    if (l.error[0] == '\0') l.version = l.api.get_version();
    return l;  // the library stays open for the life of the process
  }();
  return library;
}

// ---- per-stream scratch --------------------------------------------------------------------------

using Scratch = StreamScratch::Buffer;

// Never destroyed: kernels may be released after static destructors ran.
StreamScratch& linear_scratch() {
  static StreamScratch* scratch = new StreamScratch;
  return *scratch;
}

// ---- one cuBLASLt handle per device ------------------------------------------------------------------

struct SharedHandle {
  cublaslt::Handle handle = nullptr;
  int users = 0;
};

std::mutex& handle_mutex() {
  static std::mutex m;
  return m;
}
std::map<int, SharedHandle>& shared_handles() {
  static std::map<int, SharedHandle> h;
  return h;
}

// The current device's handle, made by its first user; kSuccess or cublasLtCreate's status.
cublaslt::Status acquire_handle(const cublaslt::Api& api, int device, cublaslt::Handle* out) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  SharedHandle& shared = shared_handles()[device];
  if (shared.handle == nullptr) {
    const cublaslt::Status s = api.create(&shared.handle);
    if (s != cublaslt::kSuccess) {
      shared_handles().erase(device);
      return s;
    }
  }
  ++shared.users;
  *out = shared.handle;
  return cublaslt::kSuccess;
}

// Destroyed with its last user (ONNX Runtime destroys kernels with their session).
void release_handle(const cublaslt::Api& api, int device) {
  std::lock_guard<std::mutex> lock(handle_mutex());
  auto it = shared_handles().find(device);
  if (it == shared_handles().end() || --it->second.users > 0) return;
  api.destroy(it->second.handle);
  shared_handles().erase(it);
}

// ---- one kernel instance ---------------------------------------------------------------------------

struct Plan {
  int64_t m = 0, n = 0, k = 0;
  bool bias = false;
  bool prequantized = false;  // x8 and act_scale are inputs (Fp8LinearQ), not scratch
  cublaslt::MatmulDesc desc = nullptr;
  cublaslt::MatrixLayout a = nullptr, b = nullptr, c = nullptr;
  cublaslt::MatrixLayout d = nullptr;  // D's own layout when it differs from C's (e4m3 D), else null
  cublaslt::MatmulAlgo algo{};
  // The heuristic's answers, best guess first (algo is one of them); timed once when autotuning.
  std::vector<cublaslt::MatmulAlgo> candidates;
  bool tuned = false;
  // cuBLASLt's workspace for this plan: the most any candidate asks for (it leads the plan's scratch).
  size_t workspace = 0;
  // D's type: float16 straight into y; bfloat16 (a cuBLASLt without float16 D for outer-vector
  // scaling) or float32 (scaling "fp32_output") into scratch, then our epilogue writes y.
  cudaDataType_t d_type = CUDA_R_16F;
  bool fused_bias = false;  // applied by cuBLASLt's epilogue (else by ours)
  bool fused_gelu = false;
  // Output "e4m3_delayed": cuBLASLt writes y8 itself (D e4m3, D_SCALE, AMAX_D); else float16 h in
  // scratch (at h_offset) that quantize_tensor reads.
  bool e4m3_d = false;
  // Offsets in the stream's scratch and the bytes it must hold.
  size_t act_scale_offset = 0, x8_offset = 0, acc_offset = 0, h_offset = 0, bytes = 0;

  void release(const cublaslt::Api& api) {
    if (desc) api.desc_destroy(desc);
    if (a) api.layout_destroy(a);
    if (b) api.layout_destroy(b);
    if (c) api.layout_destroy(c);
    if (d) api.layout_destroy(d);
  }
};

}  // namespace

struct Fp8LinearCuda {
  Fp8Scaling scaling;
  bool fast_accumulation;
  bool cublaslt_gelu;  // let cuBLASLt's epilogue apply GELU (else our kernel does)
  Fp8Output output = Fp8Output::float16;
  Fp8DelayedConfig delayed;
  float* state = nullptr;  // device: the delayed scaling's ring and slots (DelayedSlots)
  int state_device = -1;
  bool seeded = false;     // the first call ran: the ring holds its amax
  // The s and d slots hold the next call's scale (an e4m3 D call's end put them there); a fallback
  // call's quantize kernel pushes without doing so, and the next e4m3 D call then begins from the ring.
  bool slots_current = false;
  const cublaslt::Api* api;
  cublaslt::Handle handle = nullptr;  // the device's shared handle (acquire_handle)
  int handle_device = -1;
  std::mutex mutex;
  std::vector<std::unique_ptr<Plan>> plans;
};

namespace {

const char* scaling_name(Fp8Scaling s) {
  return s == Fp8Scaling::outer_vector ? "outer_vector" : s == Fp8Scaling::tensor ? "tensor" : "fp32_output";
}

// Whether cuBLASLt applies our scales (as vectors, or as scalars for scaling "tensor"), so its D is
// the layer's output; else ("fp32_output") an unscaled GEMM that our epilogue scales.
bool cublaslt_scales(Fp8Scaling s) { return s != Fp8Scaling::fp32_output; }

// Sets one descriptor attribute; false with a message on failure.
template <typename T>
bool set_attr(const cublaslt::Api& api, cublaslt::MatmulDesc desc, int attribute, const T& value, const char* what,
              char* error, size_t error_size) {
  const cublaslt::Status s = api.desc_set(desc, attribute, &value, sizeof value);
  if (s != cublaslt::kSuccess) set_error(error, error_size, "cuBLASLt refused %s (status %d)", what, s);
  return s == cublaslt::kSuccess;
}

// Builds descriptor and layouts for `plan` and asks the heuristic for an algorithm with the given
// epilogue. False (no message) when cuBLASLt has none; false with a message on an API error.
bool choose_algorithm(const Fp8LinearCuda& kernel, Plan& plan, const Fp8LinearArgs& args, cudaDataType_t d_type,
                      uint32_t epilogue, const void* scale_a, const void* scale_b, char* error, size_t error_size) {
  const cublaslt::Api& api = *kernel.api;
  plan.release(api);
  plan.desc = nullptr;
  plan.a = plan.b = plan.c = plan.d = nullptr;
  const bool e4m3 = d_type == CUDA_R_8F_E4M3;
  const bool outer = kernel.scaling == Fp8Scaling::outer_vector;
  cublaslt::Status s = api.desc_create(&plan.desc, cublaslt::kCompute32F, CUDA_R_32F);
  if (s == cublaslt::kSuccess) s = api.layout_create(&plan.a, CUDA_R_8F_E4M3, plan.k, plan.n, plan.k);
  if (s == cublaslt::kSuccess) s = api.layout_create(&plan.b, CUDA_R_8F_E4M3, plan.k, plan.m, plan.k);
  // An e4m3 D takes a 16-bit C (unused: β = 0), as cuBLASLt's FP8 type table has it.
  if (s == cublaslt::kSuccess) s = api.layout_create(&plan.c, e4m3 ? CUDA_R_16F : d_type, plan.n, plan.m, plan.n);
  if (s == cublaslt::kSuccess && e4m3) s = api.layout_create(&plan.d, d_type, plan.n, plan.m, plan.n);
  if (s != cublaslt::kSuccess) {
    set_error(error, error_size, "cuBLASLt could not make a descriptor (status %d)", s);
    return false;
  }
  const int32_t trans_a = cublaslt::kOpT, trans_b = cublaslt::kOpN;
  if (!set_attr(api, plan.desc, cublaslt::kDescTransA, trans_a, "TRANSA", error, error_size)) return false;
  if (!set_attr(api, plan.desc, cublaslt::kDescTransB, trans_b, "TRANSB", error, error_size)) return false;
  if (kernel.scaling == Fp8Scaling::tensor) {
    // Tensor-wide scaling is cuBLASLt's default mode: only the two scalars' device pointers.
    if (!set_attr(api, plan.desc, cublaslt::kDescAScalePointer, scale_a, "A_SCALE_POINTER", error, error_size))
      return false;
    if (!set_attr(api, plan.desc, cublaslt::kDescBScalePointer, scale_b, "B_SCALE_POINTER", error, error_size))
      return false;
  }
  if (outer) {
    const int32_t mode = cublaslt::kScaleOuterVec32F;
    if (!set_attr(api, plan.desc, cublaslt::kDescAScaleMode, mode, "outer-vector scaling of A", error, error_size))
      return false;
    if (!set_attr(api, plan.desc, cublaslt::kDescBScaleMode, mode, "outer-vector scaling of B", error, error_size))
      return false;
    if (!set_attr(api, plan.desc, cublaslt::kDescAScalePointer, scale_a, "A_SCALE_POINTER", error, error_size))
      return false;
    if (!set_attr(api, plan.desc, cublaslt::kDescBScalePointer, scale_b, "B_SCALE_POINTER", error, error_size))
      return false;
  }
  if (!set_attr(api, plan.desc, cublaslt::kDescEpilogue, epilogue, "the epilogue", error, error_size)) return false;
  const int8_t fast = kernel.fast_accumulation ? 1 : 0;
  if (!set_attr(api, plan.desc, cublaslt::kDescFastAccum, fast, "FAST_ACCUM", error, error_size)) return false;
  if (e4m3) {
    const float* d_scale = kernel.state + DelayedSlots{static_cast<int>(kernel.delayed.history)}.d();
    float* amax = kernel.state + DelayedSlots{static_cast<int>(kernel.delayed.history)}.amax();
    if (!set_attr(api, plan.desc, cublaslt::kDescDScalePointer, d_scale, "D_SCALE_POINTER", error, error_size))
      return false;
    if (!set_attr(api, plan.desc, cublaslt::kDescAmaxDPointer, amax, "AMAX_D_POINTER", error, error_size))
      return false;
  }
  if (epilogue == cublaslt::kEpilogueBias || epilogue == cublaslt::kEpilogueGeluBias) {
    const int32_t bias_type = CUDA_R_16F;
    if (!set_attr(api, plan.desc, cublaslt::kDescBiasDataType, bias_type, "a float16 bias", error, error_size))
      return false;
    if (!set_attr(api, plan.desc, cublaslt::kDescBiasPointer, args.bias, "BIAS_POINTER", error, error_size))
      return false;
  }

  cublaslt::HeuristicResult results[8] = {};
  int returned = 0;
  uint64_t workspace = offered_workspace();
  const auto ask = [&] {
    cublaslt::MatmulPreference pref = nullptr;
    cublaslt::Status status = api.pref_create(&pref);
    if (status == cublaslt::kSuccess)
      status = api.pref_set(pref, cublaslt::kPrefMaxWorkspaceBytes, &workspace, sizeof workspace);
    if (status == cublaslt::kSuccess)
      status = api.heuristic(kernel.handle, plan.desc, plan.a, plan.b, plan.c, plan.d ? plan.d : plan.c, pref, 8,
                             results, &returned);
    if (pref) api.pref_destroy(pref);
    return status;
  };
  s = ask();
  // A shape with no algorithm within the offered workspace is offered the most.
  if ((s != cublaslt::kSuccess || returned == 0) && workspace < kWorkspaceBytes) {
    workspace = kWorkspaceBytes;
    s = ask();
  }
  // An unsupported combination comes back as an error status or as no algorithm: both mean "none".
  if (s != cublaslt::kSuccess || returned == 0) return false;
  plan.algo = results[0].algo;
  plan.workspace = results[0].workspace_size;
  plan.candidates.clear();
  for (int i = 0; i < returned; ++i)
    if (results[i].state == cublaslt::kSuccess && results[i].workspace_size <= workspace) {
      plan.candidates.push_back(results[i].algo);
      if (results[i].workspace_size > plan.workspace) plan.workspace = results[i].workspace_size;
    }
  return true;
}

// Chooses D's type, the epilogue and the algorithm: the most fused combination cuBLASLt offers.
// The scale pointers only need to be valid device pointers here; each call sets the real ones.
bool make_plan(Fp8LinearCuda& kernel, Plan& plan, const Fp8LinearArgs& args, char* error, size_t error_size,
               bool allow_e4m3 = true) {
  const bool gelu = args.activation == Fp8Activation::gelu_tanh;
  struct Candidate {
    cudaDataType_t d_type;
    uint32_t epilogue;
  };
  std::vector<Candidate> candidates;
  if (allow_e4m3 && kernel.output == Fp8Output::e4m3_delayed && cublaslt_scales(kernel.scaling)) {
    // e4m3 D only with everything in cuBLASLt's epilogue (nothing of ours may run between the GEMM
    // and the codes); documented as unsupported with outer-vector scaling, supported with tensor-wide
    // scaling (top of file).
    if (!gelu || kernel.cublaslt_gelu)
      candidates.push_back({CUDA_R_8F_E4M3, gelu ? (plan.bias ? cublaslt::kEpilogueGeluBias : cublaslt::kEpilogueGelu)
                                                 : (plan.bias ? cublaslt::kEpilogueBias : cublaslt::kEpilogueDefault)});
  }
  if (cublaslt_scales(kernel.scaling)) {
    // What cuBLASLt leaves out, our epilogue kernel does after the GEMM. A float16 bias is only
    // fused with a float16 D.
    if (gelu && kernel.cublaslt_gelu)
      candidates.push_back({CUDA_R_16F, plan.bias ? cublaslt::kEpilogueGeluBias : cublaslt::kEpilogueGelu});
    if (plan.bias) candidates.push_back({CUDA_R_16F, cublaslt::kEpilogueBias});
    candidates.push_back({CUDA_R_16F, cublaslt::kEpilogueDefault});
    candidates.push_back({CUDA_R_16BF, cublaslt::kEpilogueDefault});
  } else {
    candidates.push_back({CUDA_R_32F, cublaslt::kEpilogueDefault});
  }
  char last_error[256] = "";
  for (const Candidate& c : candidates) {
    error[0] = '\0';
    if (choose_algorithm(kernel, plan, args, c.d_type, c.epilogue, args.weight_scale, args.weight_scale, error,
                         error_size)) {
      plan.d_type = c.d_type;
      plan.e4m3_d = c.d_type == CUDA_R_8F_E4M3;
      plan.fused_bias = c.epilogue == cublaslt::kEpilogueBias || c.epilogue == cublaslt::kEpilogueGeluBias;
      plan.fused_gelu = c.epilogue == cublaslt::kEpilogueGelu || c.epilogue == cublaslt::kEpilogueGeluBias;
      return true;
    }
    // Refused (an attribute, or no algorithm): try the next, less fused combination.
    if (error[0] != '\0') std::snprintf(last_error, sizeof last_error, "%s", error);
    if (verbose())
      std::fprintf(stderr, "atelier:Fp8Linear: D type %d with epilogue %u refused%s%s\n", static_cast<int>(c.d_type),
                   static_cast<unsigned>(c.epilogue), error[0] ? ": " : " (no algorithm)", error);
  }
  set_error(error, error_size,
            "cuBLASLt %zu has no FP8 algorithm for x [%lld, %lld] · weight [%lld, %lld]ᵀ with scaling %s on this GPU%s",
            cublaslt_library().version, static_cast<long long>(plan.m), static_cast<long long>(plan.k),
            static_cast<long long>(plan.n), static_cast<long long>(plan.k), scaling_name(kernel.scaling),
            kernel.scaling == Fp8Scaling::outer_vector ? " (try scaling \"fp32_output\")" : "");
  if (last_error[0] != '\0') {
    const size_t used = std::strlen(error);
    std::snprintf(error + used, error_size > used ? error_size - used : 0, "; last refusal: %s", last_error);
  }
  return false;
}

// The stream's scratch, grown to `bytes` if needed (never while capturing). Null with a message on failure.
Scratch* scratch_for(Fp8LinearCuda& kernel, cudaStream_t stream, size_t bytes, char* error, size_t error_size) {
  return linear_scratch().get(&kernel, stream, bytes, error, error_size);
}

void release_scratch(Fp8LinearCuda& kernel) { linear_scratch().release(&kernel); }

// For the verbose line: who applies the bias and the activation.
const char* describe_epilogue(const Plan& plan, bool bias, bool gelu) {
  if (!bias && !gelu) return "no bias or activation";
  if ((!bias || plan.fused_bias) && (!gelu || plan.fused_gelu)) return "bias/GELU in cuBLASLt's epilogue";
  if (plan.fused_bias) return "bias in cuBLASLt's epilogue, GELU by our kernel";
  return "bias/GELU by our epilogue kernel";
}

bool check_launch(const char* what, char* error, size_t error_size) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return true;
  set_error(error, error_size, "%s failed: %s", what, cudaGetErrorString(e));
  return false;
}

// The fastest algorithm found per problem (m, n, k, D type, fused bias, fused GELU, and the kernel's
// scaling and accumulation, which shape the descriptor), for the process: every layer of one shape
// shares it, so a shape is timed once, not once per layer.
struct TunedKey {
  int64_t m, n, k;
  int d_type;
  bool bias, gelu;
  int scaling;
  bool fast;
  bool operator<(const TunedKey& o) const {
    return std::tie(m, n, k, d_type, bias, gelu, scaling, fast) <
           std::tie(o.m, o.n, o.k, o.d_type, o.bias, o.gelu, o.scaling, o.fast);
  }
};

// Times each of the plan's candidate algorithms on this call's operands (3 runs after one warm-up,
// CUDA events on the stream) and keeps the fastest: once per problem shape and process, never while
// the stream is being captured (it synchronises on its events). The GEMM's output is overwritten by
// the call's own GEMM afterwards. Algorithms cuBLASLt refuses at run time are skipped.
void tune_algorithm(const Fp8LinearCuda& kernel, Plan& plan, const void* weight, const void* x8, void* d,
                    void* workspace, cudaStream_t stream) {
  static std::mutex mutex;
  static std::map<TunedKey, cublaslt::MatmulAlgo> tuned;
  const TunedKey key{plan.m,           plan.n,          plan.k, static_cast<int>(plan.d_type), plan.fused_bias,
                     plan.fused_gelu, static_cast<int>(kernel.scaling), kernel.fast_accumulation};
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = tuned.find(key);
    if (it != tuned.end()) {
      plan.algo = it->second;
      plan.tuned = true;
      return;
    }
  }
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(stream, &capturing);
  if (capturing != cudaStreamCaptureStatusNone || plan.candidates.size() < 2) {
    plan.tuned = capturing == cudaStreamCaptureStatusNone;
    return;
  }
  const cublaslt::Api& api = *kernel.api;
  const float alpha = 1.0f, beta = 0.0f;
  cudaEvent_t start = nullptr, stop = nullptr;
  if (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess) {
    if (start) cudaEventDestroy(start);
    cudaGetLastError();
    return;
  }
  float best_ms = 0.0f;
  size_t best = 0;
  bool found = false;
  for (size_t i = 0; i < plan.candidates.size(); ++i) {
    const cublaslt::MatmulAlgo* algo = &plan.candidates[i];
    // An e4m3 D (its own layout) with a null C, as the call's own GEMM.
    auto run = [&] {
      return api.matmul(kernel.handle, plan.desc, &alpha, weight, plan.a, x8, plan.b, &beta, plan.d ? nullptr : d,
                        plan.c, d, plan.d ? plan.d : plan.c, algo, workspace, plan.workspace, stream);
    };
    if (run() != cublaslt::kSuccess) continue;  // warm-up; refused at run time: skip it
    constexpr int kRuns = 3;
    cudaEventRecord(start, stream);
    bool ok = true;
    for (int r = 0; r < kRuns && ok; ++r) ok = run() == cublaslt::kSuccess;
    cudaEventRecord(stop, stream);
    float ms = 0.0f;
    if (!ok || cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    if (verbose())
      std::fprintf(stderr, "atelier:Fp8Linear: autotune [%lld, %lld, %lld] candidate %zu: %.4f ms\n",
                   static_cast<long long>(plan.m), static_cast<long long>(plan.n), static_cast<long long>(plan.k), i,
                   ms / kRuns);
    if (!found || ms < best_ms) {
      best_ms = ms;
      best = i;
      found = true;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (found) plan.algo = plan.candidates[best];
  plan.tuned = true;
  std::lock_guard<std::mutex> lock(mutex);
  tuned.emplace(key, plan.algo);
}

}  // namespace

Fp8LinearCuda* fp8_linear_cuda_create(Fp8Scaling scaling, bool fast_accumulation, bool cublaslt_gelu,
                                      Fp8Output output, const Fp8DelayedConfig& delayed, char* error,
                                      size_t error_size) {
  const Library& library = cublaslt_library();
  if (library.error[0] != '\0') {
    set_error(error, error_size, "%s", library.error);
    return nullptr;
  }
  auto* kernel = new (std::nothrow) Fp8LinearCuda();
  if (kernel == nullptr) {
    set_error(error, error_size, "out of memory");
    return nullptr;
  }
  kernel->scaling = scaling;
  kernel->fast_accumulation = fast_accumulation;
  kernel->cublaslt_gelu = cublaslt_gelu;
  kernel->output = output;
  kernel->delayed = delayed;
  kernel->api = &library.api;
  cudaGetDevice(&kernel->handle_device);
  const cublaslt::Status s = acquire_handle(library.api, kernel->handle_device, &kernel->handle);
  if (s != cublaslt::kSuccess) {
    set_error(error, error_size, "cublasLtCreate failed (status %d)", s);
    delete kernel;
    return nullptr;
  }
  return kernel;
}

void fp8_linear_cuda_destroy(Fp8LinearCuda* kernel) {
  if (kernel == nullptr) return;
  for (auto& plan : kernel->plans) plan->release(*kernel->api);
  release_scratch(*kernel);
  if (kernel->state != nullptr) {
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(kernel->state_device);
    cudaFree(kernel->state);
    cudaSetDevice(previous);
  }
  if (kernel->handle) release_handle(*kernel->api, kernel->handle_device);
  delete kernel;
}

bool fp8_linear_cuda_run(Fp8LinearCuda* kernel, const Fp8LinearArgs& args, void* stream_ptr, char* error,
                         size_t error_size) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const int64_t m = args.rows, n = args.out_features, k = args.in_features;
  // cuBLASLt's FP8 GEMMs want 16-byte aligned leading dimensions.
  if (k % 16 != 0 || n % 16 != 0) {
    set_error(error, error_size,
              "the CUDA kernel needs K and N to be multiples of 16 (FP8 tensor-core layouts), got K = %lld, N = %lld",
              static_cast<long long>(k), static_cast<long long>(n));
    return false;
  }
  const bool prequantized = args.x8 != nullptr;
  // cuBLASLt's plans assume 16-byte aligned operands (ONNX Runtime's allocations are 256-aligned).
  if (prequantized && (reinterpret_cast<uintptr_t>(args.x8) % 16 != 0 ||
                       reinterpret_cast<uintptr_t>(args.act_scale) % 16 != 0)) {
    set_error(error, error_size, "x8 and act_scale must be 16-byte aligned on the GPU (a tensor of its own, not a view)");
    return false;
  }
  const bool delayed = kernel->output == Fp8Output::e4m3_delayed;
  if (delayed && (args.y8 == nullptr || args.y_scale == nullptr)) {
    set_error(error, error_size, "output \"e4m3_delayed\" needs y8 and y_scale");
    return false;
  }
  std::lock_guard<std::mutex> lock(kernel->mutex);
  const bool has_bias = args.bias != nullptr;
  const DelayedSlots slots{static_cast<int>(kernel->delayed.history)};
  Plan* plan = nullptr;
  for (auto& p : kernel->plans)
    if (p->m == m && p->n == n && p->k == k && p->bias == has_bias && p->prequantized == prequantized) plan = p.get();

  Scratch* scratch = nullptr;
  if (plan == nullptr) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(stream, &capturing);
    if (capturing != cudaStreamCaptureStatusNone) {
      set_error(error, error_size,
                "x [%lld, %lld] is a new shape inside a CUDA graph capture: run the shape once before capturing",
                static_cast<long long>(m), static_cast<long long>(k));
      return false;
    }
    if (delayed && kernel->state == nullptr) {
      // The ring and slots, zeroed (an empty ring; position 0), made once per kernel instance.
      const size_t state_bytes = static_cast<size_t>(slots.count()) * sizeof(float);
      cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&kernel->state), state_bytes);
      if (e == cudaSuccess) e = cudaMemsetAsync(kernel->state, 0, state_bytes, stream);
      if (e != cudaSuccess) {
        set_error(error, error_size, "cannot allocate the delayed-scaling state: %s", cudaGetErrorString(e));
        return false;
      }
      cudaGetDevice(&kernel->state_device);
    }
    auto fresh = std::make_unique<Plan>();
    fresh->m = m;
    fresh->n = n;
    fresh->k = k;
    fresh->bias = has_bias;
    fresh->prequantized = prequantized;
    if (!make_plan(*kernel, *fresh, args, error, error_size)) {
      fresh->release(*kernel->api);
      return false;
    }
    // Offsets in the stream's scratch and the bytes it must hold, for the plan as it is now.
    const auto lay_out = [&](Plan& p) {
      const size_t d_bytes = p.d_type == CUDA_R_32F ? 4 : p.d_type == CUDA_R_16BF ? 2 : 0;
      // Pre-quantized input: no x8 or act_scale in scratch (both offsets stay at the end of the workspace).
      const size_t own = prequantized ? 0 : 1;
      p.act_scale_offset = align_up(p.workspace);
      p.x8_offset = p.act_scale_offset + own * align_up(static_cast<size_t>(m) * sizeof(float));
      p.acc_offset = p.x8_offset + own * align_up(static_cast<size_t>(m * k));
      // e4m3_delayed's fallback: float16 h [M, N] in scratch for quantize_tensor (D itself when float16).
      const size_t h_bytes = delayed && !p.e4m3_d ? static_cast<size_t>(m * n) * 2 : 0;
      p.h_offset = p.acc_offset + align_up(static_cast<size_t>(m * n) * d_bytes);
      p.bytes = p.h_offset + h_bytes;
    };
    lay_out(*fresh);
    scratch = scratch_for(*kernel, stream, fresh->bytes, error, error_size);
    if (scratch == nullptr) {
      fresh->release(*kernel->api);
      return false;
    }
    if (fresh->e4m3_d) {
      // cuBLASLt may refuse D_SCALE / AMAX_D only when the GEMM runs (its documentation: "calling
      // cublasLtMatmul() will return CUBLAS_INVALID_VALUE"), not in the heuristic: one trial GEMM on
      // this call's operands (x8 not yet written: its values do not matter), and the fallback plan
      // if refused. Nothing of the call is in the scratch yet, so it may grow here.
      char* trial_base = static_cast<char*>(scratch->base);
      const void* trial_x8 = prequantized ? static_cast<const void*>(args.x8) : trial_base + fresh->x8_offset;
      const void* trial_scale = prequantized ? static_cast<const void*>(args.act_scale)
                                             : trial_base + fresh->act_scale_offset;
      const float one = 1.0f, zero = 0.0f;
      const cublaslt::Api& api = *kernel->api;
      bool ok = set_attr(api, fresh->desc, cublaslt::kDescAScalePointer, static_cast<const void*>(args.weight_scale),
                         "A_SCALE_POINTER", error, error_size) &&
                set_attr(api, fresh->desc, cublaslt::kDescBScalePointer, trial_scale, "B_SCALE_POINTER", error,
                         error_size) &&
                (!fresh->fused_bias || set_attr(api, fresh->desc, cublaslt::kDescBiasPointer, args.bias,
                                                "BIAS_POINTER", error, error_size));
      // C is null (β = 0): C == D with C's 16-bit layout and D's e4m3 one is what cuBLASLt refuses at
      // run time (measured 2026-12-03); PyTorch's scaled_gemm passes a null C for the same reason.
      const cublaslt::Status trial =
          ok ? api.matmul(kernel->handle, fresh->desc, &one, args.weight, fresh->a, trial_x8, fresh->b, &zero, nullptr,
                          fresh->c, args.y8, fresh->d, &fresh->algo, trial_base, fresh->workspace, stream)
             : cublaslt::kSuccess;
      if (trial != cublaslt::kSuccess) {
        set_error(error, error_size, "status %d", trial);
        ok = false;
      }
      cudaGetLastError();
      // The trial's AMAX_D is no call's amax.
      cudaMemsetAsync(kernel->state + slots.amax(), 0, sizeof(float), stream);
      if (!ok) {
        if (verbose())
          std::fprintf(stderr, "atelier:Fp8Linear: cuBLASLt accepted e4m3 D in its heuristic but refused the GEMM%s%s\n",
                       error[0] ? ": " : "", error);
        error[0] = '\0';
        if (!make_plan(*kernel, *fresh, args, error, error_size, false)) {
          fresh->release(*kernel->api);
          return false;
        }
        lay_out(*fresh);
        scratch = scratch_for(*kernel, stream, fresh->bytes, error, error_size);
        if (scratch == nullptr) {
          fresh->release(*kernel->api);
          return false;
        }
      }
    }
    plan = fresh.get();
    kernel->plans.push_back(std::move(fresh));
    if (verbose())
      std::fprintf(stderr,
                   "atelier:Fp8Linear: cuBLASLt %zu, x [%lld, %lld] · weight [%lld, %lld]ᵀ, scaling %s%s, %s%s, "
                   "cuBLASLt workspace %.1f MiB, stream scratch %.1f MiB\n",
                   cublaslt_library().version, static_cast<long long>(m), static_cast<long long>(k),
                   static_cast<long long>(n), static_cast<long long>(k), scaling_name(kernel->scaling),
                   kernel->fast_accumulation ? " with fast accumulation" : "",
                   describe_epilogue(*plan, has_bias, args.activation == Fp8Activation::gelu_tanh),
                   plan->d_type == CUDA_R_16F  ? ""
                   : plan->d_type == CUDA_R_16BF ? " (bfloat16 D, converted by our kernel)"
                                                 : " (float32 D, scales by our kernel)",
                   static_cast<double>(plan->workspace) / (1 << 20), static_cast<double>(scratch->bytes) / (1 << 20));
    if (verbose() && delayed)
      std::fprintf(stderr, "atelier:Fp8Linear: output e4m3_delayed (margin %g, history %lld): %s\n",
                   static_cast<double>(kernel->delayed.margin), static_cast<long long>(kernel->delayed.history),
                   plan->e4m3_d ? "cuBLASLt writes e4m3 D (D_SCALE, AMAX_D)"
                                : "cuBLASLt refused e4m3 D with this scaling: float16 h in scratch, then "
                                  "our quantize_tensor (fallback)");
  } else {
    scratch = scratch_for(*kernel, stream, plan->bytes, error, error_size);
    if (scratch == nullptr) return false;
  }

  char* base = static_cast<char*>(scratch->base);
  void* workspace = base;
  const float* act_scale =
      prequantized ? args.act_scale : reinterpret_cast<const float*>(base + plan->act_scale_offset);
  const auto* x8 = prequantized ? reinterpret_cast<const __nv_fp8_storage_t*>(args.x8)
                                : reinterpret_cast<const __nv_fp8_storage_t*>(base + plan->x8_offset);
  void* acc = base + plan->acc_offset;

  // 1. quantize (Fp8LinearQ: done by the producer)
  const bool vectorised = !prequantized && (reinterpret_cast<uintptr_t>(args.x) % 16) == 0 && k % 8 == 0;
  if (m > 0x7fffffff) {
    set_error(error, error_size, "too many rows (%lld)", static_cast<long long>(m));
    return false;
  }
  if (!prequantized) {
    float* own_scale = reinterpret_cast<float*>(base + plan->act_scale_offset);
    auto* own_x8 = reinterpret_cast<__nv_fp8_storage_t*>(base + plan->x8_offset);
    const auto* x = static_cast<const __half*>(args.x);
    if (vectorised)
      quantize_rows<8><<<static_cast<unsigned>(m), kQuantizeThreads, 0, stream>>>(x, own_x8, own_scale, k);
    else
      quantize_rows<1><<<static_cast<unsigned>(m), kQuantizeThreads, 0, stream>>>(x, own_x8, own_scale, k);
    if (!check_launch("the quantize kernel", error, error_size)) return false;
  }

  // 2. GEMM. The pointers a plan depends on are set on every call (a host-side write into the
  // descriptor): the scratch may have grown since the plan was made, and a bias/scale tensor may move.
  const cublaslt::Api& api = *kernel->api;
  if (cublaslt_scales(kernel->scaling)) {
    const void* a_scale = args.weight_scale;
    const void* b_scale = act_scale;
    if (!set_attr(api, plan->desc, cublaslt::kDescAScalePointer, a_scale, "A_SCALE_POINTER", error, error_size) ||
        !set_attr(api, plan->desc, cublaslt::kDescBScalePointer, b_scale, "B_SCALE_POINTER", error, error_size))
      return false;
  }
  if (plan->fused_bias &&
      !set_attr(api, plan->desc, cublaslt::kDescBiasPointer, args.bias, "BIAS_POINTER", error, error_size))
    return false;
  const float alpha = 1.0f, beta = 0.0f;
  // Where the GEMM's float16 result goes: y, or with e4m3_delayed's fallback h in scratch.
  __half* y16 = delayed ? reinterpret_cast<__half*>(base + plan->h_offset) : static_cast<__half*>(args.y);
  void* d = plan->e4m3_d ? static_cast<void*>(args.y8) : plan->d_type == CUDA_R_16F ? static_cast<void*>(y16) : acc;
  const bool first = delayed && !kernel->seeded;
  if (first) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(stream, &capturing);
    if (capturing != cudaStreamCaptureStatusNone) {
      set_error(error, error_size, "the first e4m3_delayed call of a kernel may not be captured: run it once before");
      return false;
    }
  }
  auto begin = [&](bool own_amax) {
    delayed_begin<kQuantizeThreads><<<1, kQuantizeThreads, 0, stream>>>(kernel->state, slots, kernel->delayed.margin,
                                                                         own_amax, args.y_scale, m);
    return check_launch("the delayed-scale kernel", error, error_size);
  };
  auto gemm = [&] {
    const cublaslt::MatrixLayout d_layout = plan->d ? plan->d : plan->c;
    // An e4m3 D has its own layout: C must then be null (β = 0), not D (see the trial GEMM).
    void* c = plan->d ? nullptr : d;
    const cublaslt::Status s = api.matmul(kernel->handle, plan->desc, &alpha, args.weight, plan->a, x8, plan->b,
                                          &beta, c, plan->c, d, d_layout, &plan->algo, workspace, plan->workspace,
                                          stream);
    if (s != cublaslt::kSuccess)
      set_error(error, error_size, "cublasLtMatmul failed (status %d) for x [%lld, %lld] · weight [%lld, %lld]ᵀ", s,
                static_cast<long long>(m), static_cast<long long>(k), static_cast<long long>(n),
                static_cast<long long>(k));
    return s == cublaslt::kSuccess;
  };
  if (autotune() && !plan->tuned) {
    tune_algorithm(*kernel, *plan, args.weight, x8, d, workspace, stream);
    // The timed GEMMs of an e4m3 D wrote AMAX_D (tuning never runs under capture, so neither does this).
    if (plan->e4m3_d && plan->tuned) cudaMemsetAsync(kernel->state + slots.amax(), 0, sizeof(float), stream);
  }
  if (plan->e4m3_d) {
    // The first call measures its amax with a throw-away GEMM (d = 1: the zeroed amax gives s = 1),
    // then scales by it; every call ends by pushing its amax and putting the next call's s and d in
    // their slots, so a later call is its GEMM (D_SCALE = d from the slot) and one kernel that fills
    // y_scale with s and does that push: one launch fewer than delayed_begin before the GEMM and
    // delayed_push after it, the same s and d. AMAX_D is written by every GEMM.
    if (first) {
      if (!begin(true) || !gemm() || !begin(true) || !gemm()) return false;
      delayed_push_next<<<1, 1, 0, stream>>>(kernel->state, slots, kernel->delayed.margin);
      kernel->seeded = kernel->slots_current = true;
      return check_launch("the delayed-scale push", error, error_size);
    }
    if ((!kernel->slots_current && !begin(false)) || !gemm()) return false;
    delayed_fill_push_next<kQuantizeThreads>
        <<<1, kQuantizeThreads, 0, stream>>>(kernel->state, slots, kernel->delayed.margin, args.y_scale, m);
    kernel->slots_current = true;
    return check_launch("the delayed-scale fill and push", error, error_size);
  }
  if (!gemm()) return false;

  // 3. our epilogue, when cuBLASLt did not do it all
  const bool gelu = args.activation == Fp8Activation::gelu_tanh;
  const bool own_bias = has_bias && !plan->fused_bias;
  const bool own_gelu = gelu && !plan->fused_gelu;
  const bool needs_epilogue = plan->d_type != CUDA_R_16F || own_bias || own_gelu;
  if (needs_epilogue) {
    const int64_t columns = (n + kEpilogueThreads - 1) / kEpilogueThreads;
    const dim3 blocks(static_cast<unsigned>(columns < 64 ? columns : 64), static_cast<unsigned>(m < 65535 ? m : 65535));
    const __half* bias = own_bias ? static_cast<const __half*>(args.bias) : nullptr;
    __half* y = y16;
    if (plan->d_type == CUDA_R_32F)
      epilogue<float, true><<<blocks, kEpilogueThreads, 0, stream>>>(static_cast<const float*>(acc), act_scale,
                                                                     args.weight_scale, bias, y, m, n, own_gelu);
    else if (plan->d_type == CUDA_R_16BF)
      epilogue<__nv_bfloat16, false><<<blocks, kEpilogueThreads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(acc), nullptr, nullptr, bias, y, m, n, own_gelu);
    else
      epilogue<__half, false><<<blocks, kEpilogueThreads, 0, stream>>>(y, nullptr, nullptr, bias, y, m, n, own_gelu);
    if (!check_launch("the epilogue kernel", error, error_size)) return false;
  }

  // 4. e4m3_delayed's fallback: h → y8 with the delayed scale (the first call: its own amax first).
  if (delayed) {
    const int64_t count = m * n;  // a multiple of 16 (n is)
    const bool vec = reinterpret_cast<uintptr_t>(args.y8) % 8 == 0;
    const int64_t vectors = vec ? count / 8 : count;
    const int64_t wanted = (vectors + kQuantizeThreads - 1) / kQuantizeThreads;
    const unsigned blocks = static_cast<unsigned>(wanted < 2048 ? (wanted > 0 ? wanted : 1) : 2048);
    auto* y8 = reinterpret_cast<__nv_fp8_storage_t*>(args.y8);
    auto quantize = [&](bool codes) {
      if (vec && codes)
        quantize_tensor<8, true><<<blocks, kQuantizeThreads, 0, stream>>>(y16, y8, kernel->state, slots, count);
      else if (vec)
        quantize_tensor<8, false><<<blocks, kQuantizeThreads, 0, stream>>>(y16, y8, kernel->state, slots, count);
      else if (codes)
        quantize_tensor<1, true><<<blocks, kQuantizeThreads, 0, stream>>>(y16, y8, kernel->state, slots, count);
      else
        quantize_tensor<1, false><<<blocks, kQuantizeThreads, 0, stream>>>(y16, y8, kernel->state, slots, count);
      return check_launch("the e4m3 quantize kernel", error, error_size);
    };
    if (first) {
      // Not captured (checked above): the amax first, then the codes with it, then the push.
      if (cudaMemsetAsync(kernel->state + slots.amax(), 0, sizeof(float), stream) != cudaSuccess) {
        set_error(error, error_size, "cannot reset the delayed-scaling amax");
        return false;
      }
      if (!quantize(false) || !begin(true) || !quantize(true)) return false;
      delayed_push<<<1, 1, 0, stream>>>(kernel->state, slots);
      kernel->seeded = true;
      kernel->slots_current = false;
      return check_launch("the delayed-scale push", error, error_size);
    }
    // Later calls: one kernel (scale from the ring, y_scale, codes, amax, push).
    const float margin = kernel->delayed.margin;
    if (vec)
      quantize_tensor_delayed<8><<<blocks, kQuantizeThreads, 0, stream>>>(y16, y8, kernel->state, slots, margin,
                                                                          args.y_scale, m, count);
    else
      quantize_tensor_delayed<1><<<blocks, kQuantizeThreads, 0, stream>>>(y16, y8, kernel->state, slots, margin,
                                                                          args.y_scale, m, count);
    if (!check_launch("the delayed e4m3 quantize kernel", error, error_size)) return false;
    kernel->slots_current = false;
  }
  return true;
}

}  // namespace atelier
