// Issue 10: what the MMDiT step's W8A8 GEMMs cost at the kernel level, measured with CUDA events
// through our own Fp8LinearQ kernel code (native/src/fp8_linear_cuda.cu, compiled in), per joint
// block of SD3.5 Large at 1024² with CFG: the image stream's [8192, K] GEMM and the context
// stream's [666, K] GEMM of qkv, proj, fc1 (+ GELU) and fc2, each
//   - alone (image, context), and both one after the other on one stream (what the step does now);
//   - both at once, the context GEMM on a second stream forked and joined with events (what an op
//     running the two streams' layers together would do: does the context GEMM fill the image
//     GEMM's last, partial wave?);
//   - with and without cuBLASLt's fast accumulation (ATELIER_FP8_FAST_ACCUM's effect on the kernels
//     alone, without the checks' host overhead).
// Prints a table and a JSON line (`@@gemm-overlap {…}`) with the per-step sums (× 38 blocks).
//
// Built here by `node bench/gpu/bundle.mjs` (nvcc, the same flags as the op library, into
// .gpu/bundle/gemm-overlap); on the GPU machine: .gpu/bundle/gemm-overlap [reps]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../native/src/fp8_linear.h"

using atelier::Fp8Activation;
using atelier::Fp8LinearArgs;
using atelier::Fp8LinearCuda;
using atelier::Fp8Scaling;

namespace {

constexpr int kBlocks = 38;        // SD3.5 Large's joint blocks
constexpr int64_t kImage = 8192;   // 4096 image tokens × 2 (CFG)
constexpr int64_t kContext = 666;  // 333 context tokens × 2
constexpr int64_t kWidth = 2432;

struct Layer {
  const char* name;
  int64_t k, n;
  Fp8Activation activation;
};

const Layer kLayers[] = {
    {"qkv", kWidth, 3 * kWidth, Fp8Activation::none},
    {"proj", kWidth, kWidth, Fp8Activation::none},
    {"fc1", kWidth, 4 * kWidth, Fp8Activation::gelu_tanh},
    {"fc2", 4 * kWidth, kWidth, Fp8Activation::none},
};

void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  std::fprintf(stderr, "gemm-overlap: %s: %s\n", what, cudaGetErrorString(status));
  std::exit(1);
}

// Bytes that are finite e4m3 codes of moderate size (exponent field 4..10: |v| in [1/8, 16)).
__global__ void fill_e4m3(uint8_t* out, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const uint32_t sign = (h >> 31) << 7, exponent = 4 + (h >> 8) % 7, mantissa = h & 7;
    out[i] = static_cast<uint8_t>(sign | exponent << 3 | mantissa);
  }
}

__global__ void fill_float(float* out, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    out[i] = value;
}

template <class T>
T* device(int64_t count) {
  T* p = nullptr;
  check(cudaMalloc(&p, static_cast<size_t>(count) * sizeof(T)), "cudaMalloc");
  return p;
}

struct Operands {
  uint8_t* x8;
  float* act_scale;
  uint8_t* weight;
  float* weight_scale;
  void* bias;
  void* y;
};

Operands operands(const Layer& layer, int64_t rows, uint32_t seed) {
  Operands o{};
  o.x8 = device<uint8_t>(rows * layer.k);
  o.act_scale = device<float>(rows);
  o.weight = device<uint8_t>(layer.n * layer.k);
  o.weight_scale = device<float>(layer.n);
  o.bias = device<uint16_t>(layer.n);
  o.y = device<uint16_t>(rows * layer.n);
  fill_e4m3<<<1024, 256>>>(o.x8, rows * layer.k, seed);
  fill_e4m3<<<1024, 256>>>(o.weight, layer.n * layer.k, seed + 1);
  fill_float<<<64, 256>>>(o.act_scale, rows, 1.0f / 64);
  fill_float<<<64, 256>>>(o.weight_scale, layer.n, 1.0f / 64);
  check(cudaMemset(o.bias, 0, static_cast<size_t>(layer.n) * 2), "cudaMemset");
  check(cudaGetLastError(), "fill");
  return o;
}

void release(Operands& o) {
  for (void* p : {static_cast<void*>(o.x8), static_cast<void*>(o.act_scale), static_cast<void*>(o.weight),
                  static_cast<void*>(o.weight_scale), o.bias, o.y})
    cudaFree(p);
}

Fp8LinearArgs args_of(const Layer& layer, const Operands& o, int64_t rows) {
  return Fp8LinearArgs{nullptr, o.x8, o.act_scale, o.weight, o.weight_scale, o.bias, o.y,
                       rows,    layer.k, layer.n, layer.activation};
}

void run(Fp8LinearCuda* kernel, const Fp8LinearArgs& args, cudaStream_t stream) {
  char error[512] = "";
  if (!atelier::fp8_linear_cuda_run(kernel, args, stream, error, sizeof error)) {
    std::fprintf(stderr, "gemm-overlap: %s\n", error);
    std::exit(1);
  }
}

// Milliseconds per repetition of `body` (enqueued `reps` times on s1 between two events).
template <class Body>
double timed(cudaStream_t s1, int reps, const Body& body) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  for (int i = 0; i < 3; ++i) body();  // warm: plans, scratch, clocks
  check(cudaEventRecord(start, s1), "record");
  for (int i = 0; i < reps; ++i) body();
  check(cudaEventRecord(stop, s1), "record");
  check(cudaEventSynchronize(stop), "sync");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / reps;
}

struct Row {
  std::string layer;
  bool fast;
  double image, context, serial, concurrent;
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 50;
  cudaStream_t s1, s2;
  check(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking), "stream");
  check(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking), "stream");
  cudaEvent_t fork, join;
  check(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), "event");
  check(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), "event");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");

  std::vector<Row> rows;
  for (const bool fast : {false, true}) {
    char error[512] = "";
    Fp8LinearCuda* kernel = atelier::fp8_linear_cuda_create(Fp8Scaling::outer_vector, fast, true, error, sizeof error);
    if (kernel == nullptr) {
      std::fprintf(stderr, "gemm-overlap: %s\n", error);
      return 1;
    }
    for (const Layer& layer : kLayers) {
      Operands image = operands(layer, kImage, 11), context = operands(layer, kContext, 23);
      const Fp8LinearArgs a = args_of(layer, image, kImage), b = args_of(layer, context, kContext);
      Row row{layer.name, fast, 0, 0, 0, 0};
      row.image = timed(s1, reps, [&] { run(kernel, a, s1); });
      row.context = timed(s1, reps, [&] { run(kernel, b, s1); });
      row.serial = timed(s1, reps, [&] {
        run(kernel, a, s1);
        run(kernel, b, s1);
      });
      run(kernel, b, s2);  // the second stream's plan and scratch, outside the timing
      check(cudaStreamSynchronize(s2), "sync");
      row.concurrent = timed(s1, reps, [&] {
        check(cudaEventRecord(fork, s1), "fork");
        check(cudaStreamWaitEvent(s2, fork, 0), "wait");
        run(kernel, b, s2);
        run(kernel, a, s1);
        check(cudaEventRecord(join, s2), "join");
        check(cudaStreamWaitEvent(s1, join, 0), "wait");
      });
      check(cudaDeviceSynchronize(), "sync");
      release(image);
      release(context);
      rows.push_back(row);
    }
    atelier::fp8_linear_cuda_destroy(kernel);
  }

  std::printf("gemm-overlap on %s, %d reps, ms per GEMM (CUDA events)\n", prop.name, reps);
  std::printf("%-5s %-5s %9s %9s %9s %11s %9s\n", "layer", "fast", "image", "context", "serial", "concurrent",
              "saved");
  double serial[2] = {0, 0}, concurrent[2] = {0, 0}, image[2] = {0, 0};
  for (const Row& r : rows) {
    std::printf("%-5s %-5s %9.4f %9.4f %9.4f %11.4f %9.4f\n", r.layer.c_str(), r.fast ? "yes" : "no", r.image,
                r.context, r.serial, r.concurrent, r.serial - r.concurrent);
    serial[r.fast] += r.serial;
    concurrent[r.fast] += r.concurrent;
    image[r.fast] += r.image;
  }
  for (int f = 0; f < 2; ++f)
    std::printf("per step (x%d blocks), fast %s: serial %.2f ms, concurrent %.2f ms, image alone %.2f ms\n", kBlocks,
                f ? "yes" : "no", kBlocks * serial[f], kBlocks * concurrent[f], kBlocks * image[f]);
  std::printf("@@gemm-overlap {\"device\":\"%s\",\"reps\":%d,\"blocks\":%d,\"rows\":[", prop.name, reps, kBlocks);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::printf("%s{\"layer\":\"%s\",\"fast_accumulation\":%s,\"image_ms\":%.5f,\"context_ms\":%.5f,"
                "\"serial_ms\":%.5f,\"concurrent_ms\":%.5f}",
                i ? "," : "", r.layer.c_str(), r.fast ? "true" : "false", r.image, r.context, r.serial, r.concurrent);
  }
  std::printf("],\"per_step_ms\":{\"serial\":%.3f,\"concurrent\":%.3f,\"serial_fast\":%.3f,\"concurrent_fast\":%.3f}}\n",
              kBlocks * serial[0], kBlocks * concurrent[0], kBlocks * serial[1], kBlocks * concurrent[1]);
  return 0;
}
