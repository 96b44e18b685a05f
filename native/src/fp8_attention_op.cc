// Fp8Attention's glue to ONNX Runtime: kernel creation (the heads and scale attributes), shape
// inference, and the compute callback that checks shapes and hands the tensors to a kernel (the
// schema boilerplate is op_glue.h's; three float16 inputs, one float16 output).
#include <cmath>
#include <new>

#include "fp8_attention.h"
#include "op_glue.h"
#include "ops.h"

namespace atelier {
namespace {

using glue::fail;
using glue::self;

constexpr const char* kName = "Fp8Attention";
constexpr size_t kInputCount = 3;
constexpr const char* kInputNames[kInputCount] = {"q", "k", "v"};
// Query rows per CPU task: about this many multiply-adds (2 · T · D per row), so short rows are not one task each.
constexpr int64_t kMacsPerTask = 1 << 21;

struct Kernel {
  const OrtApi* api;
  Device device;
  int64_t heads;
  float scale;  // NaN: 1/√D, known once D is
#ifdef ATELIER_WITH_CUDA
  Fp8AttentionCuda* cuda = nullptr;
#endif

  ~Kernel() {
#ifdef ATELIER_WITH_CUDA
    if (cuda != nullptr) fp8_attention_cuda_destroy(cuda);
#endif
  }
};

const auto n = [](int64_t v) { return static_cast<long long>(v); };

// out is q's shape and type.
OrtStatus* infer_shape(const OrtCustomOp* op, OrtShapeInferContext* context) {
  const OrtApi* api = self(op).api;
  glue::Shape3 q;
  ATELIER_RETURN_IF_ERROR(glue::input_shape3(api, context, 0, &q));
  if (!q.ranked3) return nullptr;
  for (const glue::Dim& d : q.dims)
    if (!d.usable()) return nullptr;
  return glue::set_output_shape3(api, context, 0, q.type, q.dims);
}

OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  *out = nullptr;
  int64_t heads = 0;
  ATELIER_RETURN_IF_ERROR(glue::heads_attribute(api, info, kName, &heads));
  float scale = std::nanf("");
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_float(api)(info, "scale", &scale)) {
    ort::ReleaseStatus(api)(absent);
    scale = std::nanf("");
  } else if (!std::isfinite(scale) || scale <= 0) {
    return fail(api, ORT_INVALID_ARGUMENT, "%s: scale must be a finite number > 0, got %g", kName,
                static_cast<double>(scale));
  }
  Kernel* kernel = new (std::nothrow) Kernel{};
  if (kernel == nullptr) return fail(api, ORT_FAIL, "%s: out of memory", kName);
  kernel->api = api;
  kernel->device = self(op).device;
  kernel->heads = heads;
  kernel->scale = scale;
#ifdef ATELIER_WITH_CUDA
  if (kernel->device == Device::cuda) {
    char error[384] = "";
    kernel->cuda = fp8_attention_cuda_create(error, sizeof error);
    if (kernel->cuda == nullptr) {
      delete kernel;
      return fail(api, ORT_FAIL, "%s: %s", kName, error);
    }
  }
#endif
  *out = kernel;
  return nullptr;
}

OrtStatus* run_cpu(const Kernel& kernel, OrtKernelContext* context, const Fp8AttentionArgs& args) {
  Fp8AttentionQuantized quantized;
  fp8_attention_quantize_cpu(args, &quantized);
  const int64_t rows = args.batch * args.heads * args.tokens;
  const int64_t per_task = kMacsPerTask / (2 * args.tokens * args.head_dim > 0 ? 2 * args.tokens * args.head_dim : 1);
  return glue::parallel_rows(kernel.api, context, rows, per_task,
                             [&](int64_t begin, int64_t end) { fp8_attention_rows_cpu(args, quantized, begin, end); });
}

OrtStatus* run_cuda(const Kernel& kernel, OrtKernelContext* context, const Fp8AttentionArgs& args) {
#ifdef ATELIER_WITH_CUDA
  void* stream = nullptr;
  ATELIER_RETURN_IF_ERROR(glue::cuda_stream(kernel.api, context, kName, &stream));
  char error[512] = "";
  if (!fp8_attention_cuda_run(kernel.cuda, args, stream, error, sizeof error))
    return fail(kernel.api, ORT_FAIL, "%s: %s", kName, error);
  return nullptr;
#else
  (void)context;
  (void)args;
  return glue::without_cuda(kernel.api, kName);
#endif
}

OrtStatus* compute(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<const Kernel*>(state);
  const OrtApi* api = kernel.api;
  const OrtValue* inputs[kInputCount];
  int64_t dims[kInputCount][3];
  ATELIER_RETURN_IF_ERROR(glue::rank3_inputs(api, context, kName, kInputNames, inputs, dims));
  for (size_t i = 1; i < kInputCount; ++i)
    if (dims[i][0] != dims[0][0] || dims[i][1] != dims[0][1] || dims[i][2] != dims[0][2])
      return fail(api, ORT_INVALID_ARGUMENT,
                  "%s: q, k and v must have the same shape [B, T, heads · head_dim], got q [%lld, %lld, %lld] and %s "
                  "[%lld, %lld, %lld]",
                  kName, n(dims[0][0]), n(dims[0][1]), n(dims[0][2]), kInputNames[i], n(dims[i][0]), n(dims[i][1]),
                  n(dims[i][2]));
  const int64_t width = dims[0][2];
  if (width % kernel.heads != 0)
    return fail(api, ORT_INVALID_ARGUMENT,
                "%s: the last axis of q, k and v must be heads · head_dim with heads = %lld, got %lld", kName,
                n(kernel.heads), n(width));
  const int64_t head_dim = width / kernel.heads;
  OrtValue* output = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 0, dims[0], 3, &output));
  if (dims[0][0] * dims[0][1] * width == 0) return nullptr;

  void* data[kInputCount + 1];
  ATELIER_RETURN_IF_ERROR(glue::data_pointers(api, inputs, output, data));
  const float scale = std::isnan(kernel.scale) ? 1.0f / std::sqrt(static_cast<float>(head_dim)) : kernel.scale;
  const Fp8AttentionArgs args{data[0],     data[1],     data[2],      data[3], dims[0][0],
                              dims[0][1],  kernel.heads, head_dim,    scale};
  return kernel.device == Device::cuda ? run_cuda(kernel, context, args) : run_cpu(kernel, context, args);
}

struct Fp8AttentionOp : glue::Callbacks<Kernel, create_kernel, compute, infer_shape> {
  static constexpr const char* kName = atelier::kName;
  static constexpr size_t kInputCount = atelier::kInputCount;
};

}  // namespace

CustomOp make_fp8_attention_op(Device device, const OrtApi* api) {
  return glue::make_op<Fp8AttentionOp>(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api);
}

}  // namespace atelier
