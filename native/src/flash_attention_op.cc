// FlashAttention's glue to ONNX Runtime: attention_op.h's, with the float32 reference on the CPU
// (flash_attention_cpu.cc) and FlashAttention-3 on the GPU (flash_attention_cuda.cu).
#include "attention_op.h"
#include "flash_attention.h"

namespace atelier {
namespace {

// Query rows per CPU task: about this many multiply-adds (2 · T · D per row).
constexpr int64_t kMacsPerTask = 1 << 21;

struct FlashAttentionTraits {
  static constexpr const char* kName = "FlashAttention";

  static OrtStatus* run_cpu(const OrtApi* api, OrtKernelContext* context, const AttentionArgs& args) {
    const int64_t rows = args.batch * args.heads * args.tokens;
    const int64_t macs = 2 * args.tokens * args.head_dim;
    return glue::parallel_rows(api, context, rows, kMacsPerTask / (macs > 0 ? macs : 1),
                               [&](int64_t begin, int64_t end) { flash_attention_rows_cpu(args, begin, end); });
  }

#ifdef ATELIER_WITH_CUDA
  using Cuda = FlashAttentionCuda;
  static Cuda* cuda_create(char* error, size_t size) { return flash_attention_cuda_create(error, size); }
  static void cuda_destroy(Cuda* cuda) { flash_attention_cuda_destroy(cuda); }
  static bool cuda_run(Cuda* cuda, const AttentionArgs& args, void* stream, char* error, size_t size) {
    return flash_attention_cuda_run(cuda, args, stream, error, size);
  }
#endif
};

}  // namespace

CustomOp make_flash_attention_op(Device device, const OrtApi* api) {
  return attention_glue::make<FlashAttentionTraits>(device, api);
}

#ifndef ATELIER_WITH_CUDA
bool flash_attention_has_fa3() { return false; }
#endif

}  // namespace atelier
