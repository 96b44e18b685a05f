// fa3-bench: FlashAttention-3's Hopper forward kernel (head dim 64, fp16, non-causal) against cuDNN's
// fp16 flash SDPA (the path ONNX Runtime's CUDA provider takes today), on SD3.5's attention shapes,
// in one binary. Built by bench/gpu/fa3-build.sh, run on the GPU machine by bench/gpu/gpu-fa3.sh.
//
// Tensors are ours: q, k, v and o each [B, T, H·64] fp16, contiguous (bshd: row stride H·64, head
// stride 64). Softmax scale 1/sqrt(64). q/k/v are standard normal (deterministic hash of the seed and
// the element index, generated on the GPU). Per shape: one checked call of each engine, a warm-up,
// then `--rounds` rounds of `--iters` back-to-back calls of FA3 and then cuDNN, each timed with CUDA
// events; the reported ms/call is the median over rounds (min and every round are in the JSON).
// TFLOP/s counts 4·B·H·T²·64 (the two matmuls). Accuracy: a float64 reference (slow, simple GPU
// kernel, same fp16 inputs) on 64 query rows of each of 4 (b, h) pairs, including the first and last
// rows (T is not a multiple of FA3's 192-row tile); and cuDNN against FA3 over the whole output.
//
// Two translation units (nothing of FA3, CUTLASS or cuDNN is committed; native/fa3-deps.sh exports
// them into .gpu/): native/fa3/fa3_forward.cu, the op library's own FA3 object (the instantiation
// run_mha_fwd_<90, half_t, 64, 64, Split=false, PagedKVNonTMA=false, Has_softcap=false, PackGQA=false>
// and the parameters hopper/flash_api.cpp's mha_fwd fills, built with hopper/setup.py's flags), and
// this file: the cuDNN frontend graph, the reference, timing and output. Two units also keep CuTe's
// global `using namespace cute` away from the cuDNN frontend.

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fa3_forward.h"  // atelier::fa3_forward_fp16_hdim64 (native/src)
#include "tile_size.h"     // tile_size_fwd_sm90, to report the tile FA3 picks

#include <cudnn_frontend.h>

namespace cudnn_frontend {
// The frontend's dynamic loading (NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING) reads cuDNN's functions
// from this handle; we dlopen libcudnn.so.9 ourselves.
void* cudnn_dlhandle = nullptr;
}  // namespace cudnn_frontend
namespace fe = cudnn_frontend;

#ifndef FA3_BENCH_FA3_COMMIT
#define FA3_BENCH_FA3_COMMIT "unknown"
#endif
#ifndef FA3_BENCH_CUTLASS_COMMIT
#define FA3_BENCH_CUTLASS_COMMIT "unknown"
#endif

#define CK(call)                                                                                       \
  do {                                                                                                 \
    cudaError_t e_ = (call);                                                                           \
    if (e_ != cudaSuccess) {                                                                           \
      fprintf(stderr, "fa3-bench: CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, \
              cudaGetErrorString(e_));                                                                 \
      exit(1);                                                                                         \
    }                                                                                                  \
  } while (0)

namespace {

constexpr int kD = 64;
constexpr int kB = 2;  // CFG: conditional and unconditional in one batch
constexpr int kPairs = 4;
constexpr int kRowsPerPair = 64;

struct Shape {
  const char* name;
  int t;
  int h;
};
const Shape kShapes[] = {
    {"medium-joint", 4429, 24},
    {"medium-attn2", 4096, 24},
    {"large-joint", 4429, 38},
};

// ---- data ---------------------------------------------------------------------------------------

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Standard normal (Box–Muller on one 64-bit hash of seed and index), times `scale`.
__global__ void fill_normal(__half* out, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint64_t r = splitmix64(seed * 0xD1B54A32D192ED03ull ^ i);
    const float u1 = (float(uint32_t(r >> 32)) + 1.0f) * (1.0f / 4294967296.0f);  // (0, 1]
    const float u2 = float(uint32_t(r)) * (1.0f / 4294967296.0f);
    const float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    out[i] = __float2half_rn(z * scale);
  }
}

// ---- reference ----------------------------------------------------------------------------------

struct Pick {
  int b, h;
};

__device__ __forceinline__ double load(const __half* p) { return double(__half2float(*p)); }

// One block per (pair, row): out[(pair·rows + r)·64 + d] = softmax(scale · q·Kᵀ) · V in float64, for
// batch pairs[pair].b, head pairs[pair].h, query row rows[r]. Dynamic shared memory: T doubles.
__global__ void reference_rows(const __half* q, const __half* k, const __half* v, int t, int h, double scale,
                               const Pick* pairs, const int* rows, int n_rows, float* out) {
  extern __shared__ double s[];
  __shared__ double qs[kD];
  __shared__ double red[256];
  const int pair = blockIdx.x / n_rows;
  const int r = blockIdx.x % n_rows;
  const int b = pairs[pair].b, head = pairs[pair].h, row = rows[r];
  const size_t ld = size_t(h) * kD;
  const __half* base_q = q + (size_t(b) * t + row) * ld + size_t(head) * kD;
  const __half* base_k = k + size_t(b) * t * ld + size_t(head) * kD;
  const __half* base_v = v + size_t(b) * t * ld + size_t(head) * kD;
  const int tid = threadIdx.x;
  if (tid < kD) qs[tid] = load(base_q + tid);
  __syncthreads();

  double m = -INFINITY;
  for (int j = tid; j < t; j += blockDim.x) {
    const __half* kj = base_k + size_t(j) * ld;
    double acc = 0;
    for (int d = 0; d < kD; ++d) acc += qs[d] * load(kj + d);
    acc *= scale;
    s[j] = acc;
    m = fmax(m, acc);
  }
  red[tid] = m;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (tid < w) red[tid] = fmax(red[tid], red[tid + w]);
    __syncthreads();
  }
  m = red[0];
  __syncthreads();

  double sum = 0;
  for (int j = tid; j < t; j += blockDim.x) {
    const double p = exp(s[j] - m);
    s[j] = p;
    sum += p;
  }
  red[tid] = sum;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (tid < w) red[tid] += red[tid + w];
    __syncthreads();
  }
  sum = red[0];
  __syncthreads();

  // 256 threads: 64 output dims × 4 interleaved slices of the keys.
  const int d = tid % kD, slice = tid / kD, slices = blockDim.x / kD;
  double acc = 0;
  for (int j = slice; j < t; j += slices) acc += s[j] * load(base_v + size_t(j) * ld + d);
  red[tid] = acc;
  __syncthreads();
  if (tid < kD) {
    double o = 0;
    for (int i = 0; i < slices; ++i) o += red[i * kD + tid];
    out[(size_t(pair) * n_rows + r) * kD + tid] = float(o / sum);
  }
}

// The same rows of an output tensor, as float, in reference_rows' layout.
__global__ void gather_rows(const __half* o, int t, int h, const Pick* pairs, const int* rows, int n_rows,
                            float* out) {
  const int pair = blockIdx.x / n_rows, r = blockIdx.x % n_rows, d = threadIdx.x;
  const size_t at = (size_t(pairs[pair].b) * t + rows[r]) * size_t(h) * kD + size_t(pairs[pair].h) * kD + d;
  out[(size_t(pair) * n_rows + r) * kD + d] = __half2float(o[at]);
}

// Whole-tensor comparison: sums of (a-b)² and b², max |a-b|, count of non-finite values in a.
struct Diff {
  double sq_err;
  double sq_ref;
  unsigned int max_abs_bits;  // a non-negative float's bits order like the float
  unsigned int nonfinite;
};

__global__ void diff_tensors(const __half* a, const __half* b, size_t n, Diff* out) {
  double se = 0, sr = 0;
  float mx = 0;
  unsigned int bad = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float x = __half2float(a[i]), y = __half2float(b[i]);
    if (!isfinite(x)) {
      ++bad;
      continue;
    }
    const double e = double(x) - double(y);
    se += e * e;
    sr += double(y) * double(y);
    mx = fmaxf(mx, fabsf(x - y));
  }
  __shared__ double s1[256], s2[256];
  __shared__ float s3[256];
  __shared__ unsigned int s4[256];
  const int tid = threadIdx.x;
  s1[tid] = se;
  s2[tid] = sr;
  s3[tid] = mx;
  s4[tid] = bad;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (tid < w) {
      s1[tid] += s1[tid + w];
      s2[tid] += s2[tid + w];
      s3[tid] = fmaxf(s3[tid], s3[tid + w]);
      s4[tid] += s4[tid + w];
    }
    __syncthreads();
  }
  if (tid == 0) {
    atomicAdd(&out->sq_err, s1[0]);
    atomicAdd(&out->sq_ref, s2[0]);
    atomicMax(&out->max_abs_bits, __float_as_uint(s3[0]));
    atomicAdd(&out->nonfinite, s4[0]);
  }
}

// ---- small host helpers -------------------------------------------------------------------------

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string num(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[64];
  snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Accuracy {
  double max_abs = NAN;
  double rel_l2 = NAN;
  bool finite = true;
};

// Subset rows of `o` against the float64 reference rows (host copies).
Accuracy compare_rows(const std::vector<float>& got, const std::vector<float>& ref) {
  Accuracy a;
  double se = 0, sr = 0, mx = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) a.finite = false;
    const double e = double(got[i]) - double(ref[i]);
    se += e * e;
    sr += double(ref[i]) * ref[i];
    mx = std::max(mx, std::fabs(e));
  }
  a.max_abs = a.finite ? mx : NAN;
  a.rel_l2 = a.finite ? std::sqrt(se / sr) : NAN;
  return a;
}

// ---- FA3 ----------------------------------------------------------------------------------------

// FA3's call is atelier:FlashAttention's own (native/fa3/fa3_forward.cu, linked in by fa3-build.sh):
// the bench times exactly what the op library runs.
atelier::Fa3Forward fa3_call_of(void* q, void* k, void* v, void* o, float* lse, int b, int t, int h, int num_sm) {
  return {q, k, v, o, lse, b, t, h, num_sm, 1.0f / std::sqrt(float(kD))};
}

// ---- cuDNN --------------------------------------------------------------------------------------

enum Uid : int64_t { kQ = 1, kK, kV, kO };

struct Cudnn {
  std::string error;  // why cuDNN is unavailable, for every shape
  size_t version = 0;
  cudnnHandle_t handle = nullptr;

  bool open() {
    void* lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = dlerror();
      error = std::string("cannot open libcudnn.so.9: ") + (why ? why : "unknown error");
      return false;
    }
    fe::cudnn_dlhandle = lib;
    try {
      version = fe::detail::get_backend_version();
      const cudnnStatus_t s = fe::detail::create_handle(&handle);
      if (s != CUDNN_STATUS_SUCCESS) {
        error = "cudnnCreate failed (status " + std::to_string(int(s)) + ")";
        handle = nullptr;
        return false;
      }
    } catch (const std::exception& e) {
      error = std::string("cuDNN: ") + e.what();
      return false;
    }
    return true;
  }
};

struct CudnnPlan {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
  std::string name;
};

// fp16 flash SDPA forward: Q, K, V, O half [b, h, t, 64] with our [b, t, h·64] strides, float32
// intermediates and compute, attn_scale a constant, no mask, no stats (inference). Empty on success.
std::string cudnn_build(Cudnn& c, CudnnPlan& plan, int64_t b, int64_t t, int64_t h, int sm) {
  try {
    auto graph = std::make_shared<fe::graph::Graph>();
    graph->set_io_data_type(fe::DataType_t::HALF)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    graph->set_sm_version(sm);
    const std::vector<int64_t> dims = {b, h, t, kD};
    const std::vector<int64_t> strides = {t * h * kD, kD, h * kD, 1};
    auto tensor = [&](const char* name, int64_t uid) {
      return graph->tensor(
          fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim(dims).set_stride(strides));
    };
    auto q = tensor("Q", kQ);
    auto k = tensor("K", kK);
    auto v = tensor("V", kV);
    auto options = fe::graph::SDPA_attributes()
                       .set_name("fa3_bench_sdpa")
                       .set_generate_stats(false)
                       .set_attn_scale(1.0f / std::sqrt(float(kD)));
    auto [o, stats] = graph->sdpa(q, k, v, options);
    (void)stats;
    o->set_output(true).set_uid(kO).set_dim(dims).set_stride(strides).set_data_type(fe::DataType_t::HALF);
    auto why = [](const char* step, fe::error_t e) {
      return std::string(step) + ": " + (e.get_message().empty() ? std::string("(no message)") : e.get_message());
    };
    // The steps of the project's FP8 graph (native/src/fp8_attention_cudnn.cc): heuristics A, then fallback.
    if (fe::error_t e = graph->validate(); !e.is_good()) return why("validate", e);
    if (fe::error_t e = graph->build_operation_graph(c.handle); !e.is_good()) return why("build_operation_graph", e);
    if (fe::error_t e = graph->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}); !e.is_good())
      return why("create_execution_plans", e);
    if (fe::error_t e = graph->check_support(c.handle); !e.is_good()) return why("check_support", e);
    if (fe::error_t e = graph->build_plans(c.handle); !e.is_good()) return why("build_plans", e);
    if (fe::error_t e = graph->get_workspace_size(plan.workspace); !e.is_good()) return why("get_workspace_size", e);
    std::string name;
    if (graph->get_plan_name(name).is_good()) plan.name = name;
    plan.graph = std::move(graph);
  } catch (const std::exception& e) {
    return std::string("cuDNN frontend: ") + e.what();
  }
  return "";
}

std::string cudnn_run(Cudnn& c, CudnnPlan& plan, void* q, void* k, void* v, void* o, void* ws, cudaStream_t stream) {
  if (fe::detail::set_stream(c.handle, stream) != CUDNN_STATUS_SUCCESS) return "cudnnSetStream failed";
  std::unordered_map<int64_t, void*> pack = {{kQ, q}, {kK, k}, {kV, v}, {kO, o}};
  fe::error_t st = plan.graph->execute(c.handle, pack, ws);
  return st.is_good() ? "" : "execute: " + st.get_message();
}

// ---- timing -------------------------------------------------------------------------------------

template <typename F>
double time_ms(F&& call, int iters, cudaStream_t stream, cudaEvent_t start, cudaEvent_t stop) {
  CK(cudaEventRecord(start, stream));
  for (int i = 0; i < iters; ++i) call();
  CK(cudaEventRecord(stop, stream));
  CK(cudaEventSynchronize(stop));
  CK(cudaGetLastError());
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, start, stop));
  return double(ms) / iters;
}

struct Options {
  int iters = 50;
  int warmup = 10;
  int rounds = 3;
  bool cudnn = true;
  std::string out;
  std::vector<std::string> only;
};

void usage() {
  fprintf(stderr,
          "usage: fa3-bench [--out FILE] [--iters N (50)] [--warmup N (10)] [--rounds N (3)] [--no-cudnn]\n"
          "                 [--shape NAME]...   (shapes: medium-joint, medium-attn2, large-joint)\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--out") opt.out = value();
    else if (a == "--iters") opt.iters = std::max(1, atoi(value().c_str()));
    else if (a == "--warmup") opt.warmup = std::max(0, atoi(value().c_str()));
    else if (a == "--rounds") opt.rounds = std::max(1, atoi(value().c_str()));
    else if (a == "--no-cudnn") opt.cudnn = false;
    else if (a == "--shape") opt.only.push_back(value());
    else {
      usage();
      return 2;
    }
  }

  int dev = 0;
  CK(cudaSetDevice(dev));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  const int sm = prop.major * 10 + prop.minor;
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  printf("fa3-bench: %s (sm_%d, %d SMs), driver %d, runtime %d\n", prop.name, sm, prop.multiProcessorCount, driver,
         runtime);
  printf("fa3-bench: FlashAttention %s, CUTLASS %s\n", FA3_BENCH_FA3_COMMIT, FA3_BENCH_CUTLASS_COMMIT);
  if (sm != 90) {
    fprintf(stderr, "fa3-bench: FA3's kernel here is built for sm_90a only; this GPU is sm_%d\n", sm);
    return 1;
  }
  constexpr auto tile = tile_size_fwd_sm90(kD, kD, false, false, 2, false, false, false);
  printf("fa3-bench: FA3 tile for hdim 64 fp16 non-causal: kBlockM %d, kBlockN %d, MmaPV_is_RS %d, "
         "IntraWGOverlap %d, 2 stages, no cluster, StaticPersistentTileScheduler\n",
         std::get<0>(tile), std::get<1>(tile), int(std::get<2>(tile)), int(std::get<3>(tile)));

  Cudnn cudnn;
  if (!opt.cudnn) cudnn.error = "disabled (--no-cudnn)";
  else if (cudnn.open()) printf("fa3-bench: cuDNN %zu (frontend %d)\n", cudnn.version, CUDNN_FRONTEND_VERSION);
  else printf("fa3-bench: cuDNN unavailable: %s\n", cudnn.error.c_str());

  FILE* out = nullptr;
  if (!opt.out.empty()) {
    out = fopen(opt.out.c_str(), "w");
    if (out == nullptr) {
      fprintf(stderr, "fa3-bench: cannot write %s\n", opt.out.c_str());
      return 1;
    }
  }

  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t ev0, ev1;
  CK(cudaEventCreate(&ev0));
  CK(cudaEventCreate(&ev1));

  struct Row {
    std::string shape, engine;
    int t, h;
    double ms, tflops, max_abs, rel_l2, vs_fa3;
    bool ok;
    std::string note;
  };
  std::vector<Row> table;
  bool all_ok = true;

  for (const Shape& shape : kShapes) {
    if (!opt.only.empty() && std::find(opt.only.begin(), opt.only.end(), shape.name) == opt.only.end()) continue;
    const int t = shape.t, h = shape.h;
    const size_t n = size_t(kB) * t * h * kD;
    const double flop = 4.0 * kB * h * double(t) * t * kD;
    printf("\n== %s: B=%d T=%d H=%d D=%d fp16, %.1f GFLOP per call\n", shape.name, kB, t, h, kD, flop * 1e-9);

    __half *q, *k, *v, *o_fa3, *o_cudnn;
    float* lse;
    CK(cudaMalloc(&q, n * sizeof(__half)));
    CK(cudaMalloc(&k, n * sizeof(__half)));
    CK(cudaMalloc(&v, n * sizeof(__half)));
    CK(cudaMalloc(&o_fa3, n * sizeof(__half)));
    CK(cudaMalloc(&o_cudnn, n * sizeof(__half)));
    CK(cudaMalloc(&lse, size_t(kB) * h * t * sizeof(float)));
    const uint64_t seed = 0xA7E11E5ull + uint64_t(t) * 131 + h;
    fill_normal<<<1024, 256, 0, stream>>>(q, n, seed * 3 + 0, 1.0f);
    fill_normal<<<1024, 256, 0, stream>>>(k, n, seed * 3 + 1, 1.0f);
    fill_normal<<<1024, 256, 0, stream>>>(v, n, seed * 3 + 2, 1.0f);
    CK(cudaMemsetAsync(o_fa3, 0, n * sizeof(__half), stream));
    CK(cudaMemsetAsync(o_cudnn, 0, n * sizeof(__half), stream));
    CK(cudaGetLastError());

    // Reference rows: pairs (b, h) and 64 rows each (first 16, last 16, 32 spread between).
    const Pick picks[kPairs] = {{0, 0}, {1, h - 1}, {0, h / 2}, {1, 7 % h}};
    std::vector<int> rows;
    for (int i = 0; i < 16; ++i) rows.push_back(i);
    for (int i = 0; i < 32; ++i) rows.push_back(16 + int((int64_t(i) * 7919 + 13) % (t - 32)));
    for (int i = 0; i < 16; ++i) rows.push_back(t - 16 + i);
    Pick* d_picks;
    int* d_rows;
    float *d_ref, *d_got;
    const size_t n_sub = size_t(kPairs) * kRowsPerPair * kD;
    CK(cudaMalloc(&d_picks, sizeof picks));
    CK(cudaMalloc(&d_rows, rows.size() * sizeof(int)));
    CK(cudaMalloc(&d_ref, n_sub * sizeof(float)));
    CK(cudaMalloc(&d_got, n_sub * sizeof(float)));
    CK(cudaMemcpyAsync(d_picks, picks, sizeof picks, cudaMemcpyHostToDevice, stream));
    CK(cudaMemcpyAsync(d_rows, rows.data(), rows.size() * sizeof(int), cudaMemcpyHostToDevice, stream));
    const size_t ref_smem = size_t(t) * sizeof(double);
    CK(cudaFuncSetAttribute(reference_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, int(ref_smem)));
    reference_rows<<<kPairs * kRowsPerPair, 256, ref_smem, stream>>>(q, k, v, t, h, 1.0 / std::sqrt(double(kD)),
                                                                     d_picks, d_rows, kRowsPerPair, d_ref);
    CK(cudaGetLastError());
    std::vector<float> ref(n_sub), got(n_sub);
    CK(cudaMemcpyAsync(ref.data(), d_ref, n_sub * sizeof(float), cudaMemcpyDeviceToHost, stream));
    CK(cudaStreamSynchronize(stream));
    auto check_rows = [&](const __half* o) {
      gather_rows<<<kPairs * kRowsPerPair, kD, 0, stream>>>(o, t, h, d_picks, d_rows, kRowsPerPair, d_got);
      CK(cudaGetLastError());
      CK(cudaMemcpyAsync(got.data(), d_got, n_sub * sizeof(float), cudaMemcpyDeviceToHost, stream));
      CK(cudaStreamSynchronize(stream));
      return compare_rows(got, ref);
    };

    // FA3: one call, checked.
    const atelier::Fa3Forward call = fa3_call_of(q, k, v, o_fa3, lse, kB, t, h, prop.multiProcessorCount);
    atelier::fa3_forward_fp16_hdim64(call, stream);
    CK(cudaStreamSynchronize(stream));
    CK(cudaGetLastError());
    const Accuracy fa3_acc = check_rows(o_fa3);
    const bool fa3_ok = fa3_acc.finite && fa3_acc.rel_l2 < 1e-2;
    all_ok = all_ok && fa3_ok;
    printf("FA3   vs float64 reference (%d rows): max abs err %.3g, rel L2 %.3g%s\n", kPairs * kRowsPerPair,
           fa3_acc.max_abs, fa3_acc.rel_l2, fa3_ok ? "" : "  ** CHECK FAILED **");

    // cuDNN: plan, one call, checked.
    CudnnPlan plan;
    std::string cudnn_error = cudnn.error;
    void* workspace = nullptr;
    Accuracy cd_acc;
    double vs_fa3 = NAN, vs_fa3_max = NAN;
    bool cd_ok = false;
    if (cudnn_error.empty()) cudnn_error = cudnn_build(cudnn, plan, kB, t, h, sm);
    if (cudnn_error.empty()) {
      if (plan.workspace > 0) CK(cudaMalloc(&workspace, size_t(plan.workspace)));
      cudnn_error = cudnn_run(cudnn, plan, q, k, v, o_cudnn, workspace, stream);
    }
    if (cudnn_error.empty()) {
      CK(cudaStreamSynchronize(stream));
      CK(cudaGetLastError());
      cd_acc = check_rows(o_cudnn);
      Diff* d_diff;
      CK(cudaMalloc(&d_diff, sizeof(Diff)));
      CK(cudaMemsetAsync(d_diff, 0, sizeof(Diff), stream));
      diff_tensors<<<1024, 256, 0, stream>>>(o_cudnn, o_fa3, n, d_diff);
      CK(cudaGetLastError());
      Diff diff;
      CK(cudaMemcpyAsync(&diff, d_diff, sizeof diff, cudaMemcpyDeviceToHost, stream));
      CK(cudaStreamSynchronize(stream));
      CK(cudaFree(d_diff));
      float mx;
      memcpy(&mx, &diff.max_abs_bits, sizeof mx);
      vs_fa3 = diff.nonfinite ? NAN : std::sqrt(diff.sq_err / diff.sq_ref);
      vs_fa3_max = diff.nonfinite ? NAN : mx;
      cd_ok = cd_acc.finite && cd_acc.rel_l2 < 1e-2 && diff.nonfinite == 0;
      printf("cuDNN vs float64 reference (%d rows): max abs err %.3g, rel L2 %.3g; vs FA3 (whole output): max abs "
             "%.3g, rel L2 %.3g%s\n",
             kPairs * kRowsPerPair, cd_acc.max_abs, cd_acc.rel_l2, vs_fa3_max, vs_fa3, cd_ok ? "" : "  ** CHECK FAILED **");
      printf("cuDNN plan: %s, workspace %lld bytes\n", plan.name.c_str(), (long long)plan.workspace);
    } else {
      printf("cuDNN: not run: %s\n", cudnn_error.c_str());
    }
    const bool run_cudnn = cudnn_error.empty();

    // Warm up, then alternate timed rounds.
    auto fa3_call = [&] { atelier::fa3_forward_fp16_hdim64(call, stream); };
    std::string cudnn_late_error;
    auto cudnn_call = [&] {
      const std::string e = cudnn_run(cudnn, plan, q, k, v, o_cudnn, workspace, stream);
      if (!e.empty() && cudnn_late_error.empty()) cudnn_late_error = e;
    };
    for (int i = 0; i < opt.warmup; ++i) fa3_call();
    if (run_cudnn)
      for (int i = 0; i < opt.warmup; ++i) cudnn_call();
    CK(cudaStreamSynchronize(stream));
    std::vector<double> fa3_rounds, cudnn_rounds;
    for (int r = 0; r < opt.rounds; ++r) {
      fa3_rounds.push_back(time_ms(fa3_call, opt.iters, stream, ev0, ev1));
      if (run_cudnn) cudnn_rounds.push_back(time_ms(cudnn_call, opt.iters, stream, ev0, ev1));
    }
    if (!cudnn_late_error.empty()) {
      printf("cuDNN: failed while timing: %s\n", cudnn_late_error.c_str());
      cd_ok = false;
    }
    // The timed FA3 output must still match (same inputs, so bit-identical to the checked call).
    const Accuracy fa3_again = check_rows(o_fa3);
    if (!(fa3_again.rel_l2 == fa3_acc.rel_l2)) {
      printf("FA3: output changed across calls (rel L2 %.3g then %.3g)\n", fa3_acc.rel_l2, fa3_again.rel_l2);
    }

    auto emit = [&](const char* engine, const std::vector<double>& rounds_ms, const Accuracy& acc, bool ok,
                    const std::string& extra, const std::string& error) {
      std::string line = "{\"bench\":\"fa3-attention\",\"shape\":" + json_string(shape.name) +
                         ",\"engine\":" + json_string(engine) + ",\"B\":" + std::to_string(kB) +
                         ",\"T\":" + std::to_string(t) + ",\"H\":" + std::to_string(h) + ",\"D\":64,\"dtype\":\"fp16\"" +
                         ",\"causal\":false,\"gflop\":" + num(flop * 1e-9);
      double ms = NAN, tflops = NAN;
      if (!rounds_ms.empty()) {
        ms = median(rounds_ms);
        tflops = flop / (ms * 1e-3) * 1e-12;
        std::string rs = "[";
        for (size_t i = 0; i < rounds_ms.size(); ++i) rs += (i ? "," : "") + num(rounds_ms[i]);
        rs += "]";
        line += ",\"ms\":" + num(ms) + ",\"ms_min\":" + num(*std::min_element(rounds_ms.begin(), rounds_ms.end())) +
                ",\"ms_rounds\":" + rs + ",\"tflops\":" + num(tflops) + ",\"iters\":" + std::to_string(opt.iters) +
                ",\"warmup\":" + std::to_string(opt.warmup);
      }
      line += ",\"ref_rows\":" + std::to_string(kPairs * kRowsPerPair) + ",\"max_abs_err\":" + num(acc.max_abs) +
              ",\"rel_l2\":" + num(acc.rel_l2) + extra + ",\"ok\":" + (ok ? "true" : "false");
      if (!error.empty()) line += ",\"error\":" + json_string(error);
      line += ",\"device\":" + json_string(prop.name) + ",\"sms\":" + std::to_string(prop.multiProcessorCount) +
              ",\"fa3_commit\":" + json_string(FA3_BENCH_FA3_COMMIT) +
              ",\"cutlass_commit\":" + json_string(FA3_BENCH_CUTLASS_COMMIT) +
              ",\"cudnn_version\":" + std::to_string(cudnn.version) + "}";
      printf("%s\n", line.c_str());
      if (out) fprintf(out, "%s\n", line.c_str());
      table.push_back({shape.name, engine, t, h, ms, tflops, acc.max_abs, acc.rel_l2, NAN, ok, error});
    };
    char tile_extra[160];
    snprintf(tile_extra, sizeof tile_extra, ",\"tile\":{\"block_m\":%d,\"block_n\":%d,\"mma_pv_rs\":%s,\"intra_wg_overlap\":%s}",
             std::get<0>(tile), std::get<1>(tile), std::get<2>(tile) ? "true" : "false",
             std::get<3>(tile) ? "true" : "false");
    emit("fa3", fa3_rounds, fa3_acc, fa3_ok, tile_extra, "");
    if (run_cudnn) {
      const std::string extra = ",\"rel_l2_vs_fa3\":" + num(vs_fa3) + ",\"max_abs_vs_fa3\":" + num(vs_fa3_max) +
                                ",\"plan\":" + json_string(plan.name) +
                                ",\"workspace_bytes\":" + std::to_string(plan.workspace);
      emit("cudnn", cudnn_rounds, cd_acc, cd_ok, extra, cudnn_late_error);
      table.back().vs_fa3 = vs_fa3;
      all_ok = all_ok && cd_ok;
    } else {
      emit("cudnn", {}, Accuracy{}, false, "", cudnn_error);
    }

    if (workspace) CK(cudaFree(workspace));
    plan.graph.reset();
    for (void* p : {(void*)q, (void*)k, (void*)v, (void*)o_fa3, (void*)o_cudnn, (void*)lse, (void*)d_picks,
                    (void*)d_rows, (void*)d_ref, (void*)d_got})
      CK(cudaFree(p));
  }

  printf("\n%-13s %-6s %6s %4s %10s %9s %11s %10s %10s %s\n", "shape", "engine", "T", "H", "ms/call", "TFLOP/s",
         "max_abs_err", "rel_l2", "vs_fa3", "");
  for (const Row& r : table) {
    printf("%-13s %-6s %6d %4d %10s %9s %11s %10s %10s %s\n", r.shape.c_str(), r.engine.c_str(), r.t, r.h,
           std::isfinite(r.ms) ? num(r.ms).c_str() : "-", std::isfinite(r.tflops) ? num(r.tflops).c_str() : "-",
           std::isfinite(r.max_abs) ? num(r.max_abs).c_str() : "-", std::isfinite(r.rel_l2) ? num(r.rel_l2).c_str() : "-",
           std::isfinite(r.vs_fa3) ? num(r.vs_fa3).c_str() : "-", r.ok ? "" : (r.note.empty() ? "CHECK FAILED" : "not run"));
  }
  // FA3 / cuDNN speed ratio per shape.
  for (size_t i = 0; i + 1 < table.size(); ++i) {
    const Row &a = table[i], &b = table[i + 1];
    if (a.engine == "fa3" && b.engine == "cudnn" && a.shape == b.shape && std::isfinite(a.ms) && std::isfinite(b.ms))
      printf("%-13s cuDNN ms / FA3 ms = %.3f (FA3 %s)\n", a.shape.c_str(), b.ms / a.ms,
             b.ms > a.ms ? "faster" : "slower");
  }
  if (out) fclose(out);
  if (cudnn.handle != nullptr) fe::detail::destroy_handle(cudnn.handle);
  return all_ok ? 0 : 3;
}

