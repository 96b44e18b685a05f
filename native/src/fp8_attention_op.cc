// Fp8Attention's glue to ONNX Runtime: attention_op.h's, with the CPU emulation of the quantized math
// (fp8_attention_cpu.cc) and cuDNN's FP8 flash attention on the GPU (fp8_attention_cuda.cu).
#include "attention_op.h"
#include "fp8_attention.h"

namespace atelier {
namespace {

// Query rows per CPU task: about this many multiply-adds (2 · T · D per row), so short rows are not one task each.
constexpr int64_t kMacsPerTask = 1 << 21;

struct Fp8AttentionTraits {
  static constexpr const char* kName = "Fp8Attention";

  static OrtStatus* run_cpu(const OrtApi* api, OrtKernelContext* context, const AttentionArgs& args) {
    Fp8AttentionQuantized quantized;
    fp8_attention_quantize_cpu(args, &quantized);
    const int64_t rows = args.batch * args.heads * args.tokens;
    const int64_t macs = 2 * args.tokens * args.head_dim;
    return glue::parallel_rows(api, context, rows, kMacsPerTask / (macs > 0 ? macs : 1),
                               [&](int64_t begin, int64_t end) { fp8_attention_rows_cpu(args, quantized, begin, end); });
  }

#ifdef ATELIER_WITH_CUDA
  using Cuda = Fp8AttentionCuda;
  static Cuda* cuda_create(char* error, size_t size) { return fp8_attention_cuda_create(error, size); }
  static void cuda_destroy(Cuda* cuda) { fp8_attention_cuda_destroy(cuda); }
  static bool cuda_run(Cuda* cuda, const AttentionArgs& args, void* stream, char* error, size_t size) {
    return fp8_attention_cuda_run(cuda, args, stream, error, size);
  }
#endif
};

}  // namespace

CustomOp make_fp8_attention_op(Device device, const OrtApi* api) {
  return attention_glue::make<Fp8AttentionTraits>(device, api);
}

}  // namespace atelier
