// AdaLNModulate's glue to ONNX Runtime: kernel creation, shape inference, and the compute callback
// that checks shapes and hands the tensors to a kernel (the schema boilerplate is op_glue.h's).
#include <cmath>
#include <new>

#include "adaln_modulate.h"
#include "op_glue.h"
#include "ops.h"

namespace atelier {
namespace {

using glue::fail;
using glue::self;

constexpr const char* kName = "AdaLNModulate";
constexpr size_t kInputCount = 3;  // x, shift, scale
constexpr const char* kInputNames[kInputCount] = {"x", "shift", "scale"};
constexpr float kDefaultEpsilon = 1e-6f;
// Rows per CPU task: about this many elements, so small rows are not one task each.
constexpr int64_t kElementsPerTask = 1 << 15;

struct Kernel {
  const OrtApi* api;
  Device device;
  Dtype dtype;
  float epsilon;
};

// y has x's shape. ORT can only be told known or named dimensions, so when x has a dimension that
// is neither (or an unknown rank) y's shape is left to run time.
OrtStatus* infer_shape(const OrtCustomOp* op, OrtShapeInferContext* context) {
  const OrtApi* api = self(op).api;
  OrtTensorTypeAndShapeInfo* x = nullptr;  // owned by the context
  ATELIER_RETURN_IF_ERROR(ort::ShapeInferContext_GetInputTypeShape(api)(context, 0, &x));
  size_t rank = 0;
  ATELIER_RETURN_IF_ERROR(ort::GetDimensionsCount(api)(x, &rank));
  if (rank != 3) return nullptr;
  int64_t dims[3];
  const char* names[3] = {nullptr, nullptr, nullptr};
  ATELIER_RETURN_IF_ERROR(ort::GetDimensions(api)(x, dims, 3));
  ATELIER_RETURN_IF_ERROR(ort::GetSymbolicDimensions(api)(x, names, 3));
  for (int i = 0; i < 3; ++i)
    if (dims[i] < 0 && (names[i] == nullptr || names[i][0] == '\0')) return nullptr;
  return ort::ShapeInferContext_SetOutputTypeShape(api)(context, 0, x);
}

OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  *out = nullptr;
  float epsilon = kDefaultEpsilon;
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_float(api)(info, "epsilon", &epsilon)) {
    ort::ReleaseStatus(api)(absent);
    epsilon = kDefaultEpsilon;
  }
  if (!std::isfinite(epsilon) || epsilon < 0)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: epsilon must be a finite number >= 0, got %g", kName,
                static_cast<double>(epsilon));
  const CustomOp& me = self(op);
  const Dtype dtype = me.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? Dtype::f16 : Dtype::f32;
  Kernel* kernel = new (std::nothrow) Kernel{api, me.device, dtype, epsilon};
  if (kernel == nullptr) return fail(api, ORT_FAIL, "%s: out of memory", kName);
  *out = kernel;
  return nullptr;
}

struct CpuTask {
  const AdaLnArgs* args;
  Dtype dtype;
  int64_t rows;
  int64_t rows_per_task;
};

void run_cpu_task(void* data, size_t index) {
  const CpuTask& task = *static_cast<const CpuTask*>(data);
  const int64_t begin = static_cast<int64_t>(index) * task.rows_per_task;
  const int64_t end = begin + task.rows_per_task < task.rows ? begin + task.rows_per_task : task.rows;
  adaln_modulate_cpu(*task.args, task.dtype, begin, end);
}

OrtStatus* run_cpu(const Kernel& kernel, OrtKernelContext* context, const AdaLnArgs& args) {
  const int64_t rows = args.batch * args.tokens;
  int64_t per_task = kElementsPerTask / args.channels;
  if (per_task < 1) per_task = 1;
  const int64_t tasks = (rows + per_task - 1) / per_task;
  if (tasks == 1) {
    adaln_modulate_cpu(args, kernel.dtype, 0, rows);
    return nullptr;
  }
  CpuTask task{&args, kernel.dtype, rows, per_task};
  const size_t count = static_cast<size_t>(tasks);
  return ort::KernelContext_ParallelFor(kernel.api)(context, run_cpu_task, count, 0, &task);
}

OrtStatus* run_cuda(const Kernel& kernel, OrtKernelContext* context, const AdaLnArgs& args) {
#ifdef ATELIER_WITH_CUDA
  void* stream = nullptr;
  ATELIER_RETURN_IF_ERROR(glue::cuda_stream(kernel.api, context, kName, &stream));
  if (const char* error = adaln_modulate_cuda(args, kernel.dtype, stream))
    return fail(kernel.api, ORT_FAIL, "%s: CUDA kernel launch failed: %s", kName, error);
  return nullptr;
#else
  (void)context;
  (void)args;
  return fail(kernel.api, ORT_FAIL, "%s: this library was built without CUDA", kName);
#endif
}

OrtStatus* compute(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<const Kernel*>(state);
  const OrtApi* api = kernel.api;
  const OrtValue* inputs[kInputCount];
  int64_t dims[kInputCount][3];
  ATELIER_RETURN_IF_ERROR(glue::rank3_inputs(api, context, kName, kInputNames, inputs, dims));
  const int64_t batch = dims[0][0];
  const int64_t tokens = dims[0][1];
  const int64_t channels = dims[0][2];
  for (size_t i = 1; i < kInputCount; ++i) {
    if (dims[i][0] != batch || dims[i][1] != 1 || dims[i][2] != channels) {
      const auto n = [](int64_t v) { return static_cast<long long>(v); };
      return fail(api, ORT_INVALID_ARGUMENT,
                  "%s: %s must be [B, 1, C] = [%lld, 1, %lld] for x [%lld, %lld, %lld], got [%lld, %lld, %lld]",
                  kName, kInputNames[i], n(batch), n(channels), n(batch), n(tokens), n(channels), n(dims[i][0]),
                  n(dims[i][1]), n(dims[i][2]));
    }
  }

  OrtValue* output = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 0, dims[0], 3, &output));
  if (batch * tokens == 0 || channels == 0) return nullptr;

  void* data[kInputCount + 1];
  ATELIER_RETURN_IF_ERROR(glue::data_pointers(api, inputs, output, data));
  const AdaLnArgs args{data[0], data[1], data[2], data[3], batch, tokens, channels, kernel.epsilon};
  return kernel.device == Device::cuda ? run_cuda(kernel, context, args) : run_cpu(kernel, context, args);
}

struct AdaLnOp {
  using Kernel = atelier::Kernel;
  static constexpr const char* kName = atelier::kName;
  static constexpr size_t kInputCount = atelier::kInputCount;
  static constexpr auto create = create_kernel;
  static constexpr auto compute = atelier::compute;
  static constexpr auto infer_shape = atelier::infer_shape;
};

}  // namespace

CustomOp make_adaln_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  return glue::make_op<AdaLnOp>(device, type, api);
}

}  // namespace atelier
