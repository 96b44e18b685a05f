// FlashAttention on the GPU (flash_attention.h): FA3's forward kernel on ONNX Runtime's stream, after
// the checks FA3 itself would answer by exiting the process (its CHECK_CUDA): a Hopper GPU, head size
// 64, 16-byte aligned tensors (its TMA loads), sizes that fit its int parameters. The softmax
// statistics FA3 always writes go to a per-stream scratch buffer (stream_scratch.cuh).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <new>

#include "flash_attention.h"
#include "stream_scratch.cuh"
#ifdef ATELIER_WITH_FA3
#include "fa3_forward.h"
#endif

namespace atelier {

bool flash_attention_has_fa3() {
#ifdef ATELIER_WITH_FA3
  return true;
#else
  return false;
#endif
}

struct FlashAttentionCuda {
  int checked_device = -1;  // the device whose capability was last checked
  int num_sm = 0;
  std::mutex mutex;
};

namespace {

// Never destroyed: kernels may be released after static destructors ran.
StreamScratch& statistics_scratch() {
  static StreamScratch* scratch = new StreamScratch;
  return *scratch;
}

template <class... Args>
bool failed(char* error, size_t error_size, const char* format, Args... args) {
  std::snprintf(error, error_size, format, args...);
  return false;
}

}  // namespace

FlashAttentionCuda* flash_attention_cuda_create(char* error, size_t error_size) {
#ifdef ATELIER_WITH_FA3
  FlashAttentionCuda* kernel = new (std::nothrow) FlashAttentionCuda;
  if (kernel == nullptr) std::snprintf(error, error_size, "out of memory");
  return kernel;
#else
  std::snprintf(error, error_size,
                "this library was built without FlashAttention-3 (bash native/fa3-deps.sh, then npm run build:native)");
  return nullptr;
#endif
}

void flash_attention_cuda_destroy(FlashAttentionCuda* kernel) {
  statistics_scratch().release(kernel);
  delete kernel;
}

bool flash_attention_cuda_run(FlashAttentionCuda* kernel, const FlashAttentionArgs& args, void* stream_ptr,
                              char* error, size_t error_size) {
#ifdef ATELIER_WITH_FA3
  const auto n = [](int64_t v) { return static_cast<long long>(v); };
  if (args.head_dim != kFlashAttentionHeadDim)
    return failed(error, error_size, "FlashAttention-3 is built for head size %lld here, got %lld",
                  n(kFlashAttentionHeadDim), n(args.head_dim));
  if (args.batch * args.heads * args.tokens > INT32_MAX || args.tokens > INT32_MAX / 2)
    return failed(error, error_size, "q [%lld, %lld, %lld] is too large for FlashAttention-3's int sizes", n(args.batch),
                  n(args.tokens), n(args.channels()));
  for (const void* p : {args.q, args.k, args.v, static_cast<const void*>(args.out)})
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
      return failed(error, error_size, "FlashAttention-3 needs 16-byte aligned tensors, got one at %p", p);
  int device = 0;
  cudaGetDevice(&device);
  int num_sm = 0;
  {
    std::lock_guard<std::mutex> lock(kernel->mutex);
    if (kernel->checked_device != device) {
      int major = 0, minor = 0, sms = 0;
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
      if (major != 9)
        return failed(error, error_size, "FlashAttention-3's kernel runs on Hopper (sm_90) only, GPU %d is sm_%d%d", device,
                      major, minor);
      kernel->checked_device = device;
      kernel->num_sm = sms;
    }
    num_sm = kernel->num_sm;
  }
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const size_t statistics = static_cast<size_t>(args.batch * args.heads * args.tokens) * sizeof(float);
  StreamScratch::Buffer* lse = statistics_scratch().get(kernel, stream, statistics, error, error_size);
  if (lse == nullptr) return false;
  const Fa3Forward call{args.q,
                        args.k,
                        args.v,
                        args.out,
                        static_cast<float*>(lse->base),
                        static_cast<int>(args.batch),
                        static_cast<int>(args.tokens),
                        static_cast<int>(args.heads),
                        num_sm,
                        args.scale};
  fa3_forward_fp16_hdim64(call, stream);
  return true;
#else
  (void)kernel;
  (void)args;
  (void)stream_ptr;
  return failed(error, error_size, "this library was built without FlashAttention-3");
#endif
}

}  // namespace atelier
