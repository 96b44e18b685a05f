// AdaLNModulate's glue to ONNX Runtime: the OrtCustomOp callbacks (schema, kernel creation, shape
// inference) and the compute callback that checks shapes and hands the tensors to a kernel.
#include "adaln_op.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <new>

#include "adaln_modulate.h"

#define ATELIER_RETURN_IF_ERROR(expr)           \
  do {                                          \
    if (OrtStatus* status_ = (expr)) return status_; \
  } while (0)

namespace atelier {
namespace {

constexpr const char* kName = "AdaLNModulate";
constexpr size_t kInputCount = 3;  // x, shift, scale
constexpr const char* kInputNames[kInputCount] = {"x", "shift", "scale"};
constexpr float kDefaultEpsilon = 1e-6f;
// Rows per CPU task: about this many elements, so small rows are not one task each.
constexpr int64_t kElementsPerTask = 1 << 15;

const AdaLnOp& self(const OrtCustomOp* op) { return *reinterpret_cast<const AdaLnOp*>(op); }

OrtStatus* fail(const OrtApi* api, OrtErrorCode code, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

OrtStatus* fail(const OrtApi* api, OrtErrorCode code, const char* format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
  return ort::CreateStatus(api)(code, message);
}

struct Kernel {
  const OrtApi* api;
  Device device;
  Dtype dtype;
  float epsilon;
};

// ---- schema --------------------------------------------------------------------------------------

const char* get_name(const OrtCustomOp*) { return kName; }

const char* get_provider(const OrtCustomOp* op) {
  return self(op).device == Device::cuda ? "CUDAExecutionProvider" : "CPUExecutionProvider";
}

ONNXTensorElementDataType get_type(const OrtCustomOp* op, size_t) { return self(op).type; }
size_t get_input_count(const OrtCustomOp*) { return kInputCount; }
size_t get_output_count(const OrtCustomOp*) { return 1; }
OrtCustomOpInputOutputCharacteristic get_characteristic(const OrtCustomOp*, size_t) {
  return INPUT_OUTPUT_REQUIRED;
}
OrtMemType get_input_memory_type(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
// Not variadic: ORT asks these only of variadic inputs/outputs.
int get_variadic_min_arity(const OrtCustomOp*) { return 1; }
int get_variadic_homogeneity(const OrtCustomOp*) { return 1; }
int get_start_version(const OrtCustomOp*) { return 1; }
int get_end_version(const OrtCustomOp*) { return 1; }
// y never reuses or aliases an input.
size_t no_index_map(int** input_index, int** output_index) {
  *input_index = nullptr;
  *output_index = nullptr;
  return 0;
}
void release_index_map(int*, int*) {}

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

// ---- kernel --------------------------------------------------------------------------------------

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
  const AdaLnOp& me = self(op);
  const Dtype dtype = me.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? Dtype::f16 : Dtype::f32;
  Kernel* kernel = new (std::nothrow) Kernel{api, me.device, dtype, epsilon};
  if (kernel == nullptr) return fail(api, ORT_FAIL, "%s: out of memory", kName);
  *out = kernel;
  return nullptr;
}

void destroy_kernel(void* kernel) { delete static_cast<Kernel*>(kernel); }

// The dimensions of a rank-3 input, or an error naming it.
OrtStatus* dims_of(const OrtApi* api, const OrtValue* value, size_t input, int64_t (&dims)[3]) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::GetTensorTypeAndShape(api)(value, &info));
  size_t rank = 0;
  OrtStatus* status = ort::GetDimensionsCount(api)(info, &rank);
  if (status == nullptr && rank != 3)
    status = fail(api, ORT_INVALID_ARGUMENT, "%s: input %s must have rank 3, got rank %zu", kName,
                  kInputNames[input], rank);
  if (status == nullptr) status = ort::GetDimensions(api)(info, dims, 3);
  ort::ReleaseTensorTypeAndShapeInfo(api)(info);
  return status;
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
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetGPUComputeStream(kernel.api)(context, &stream));
  // The provider's stream is what makes the kernel part of ORT's ordering and of a captured graph;
  // the legacy default stream would be neither.
  if (stream == nullptr)
    return fail(kernel.api, ORT_FAIL, "%s: ONNX Runtime gave the CUDA kernel no stream", kName);
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
  for (size_t i = 0; i < kInputCount; ++i) {
    ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetInput(api)(context, i, &inputs[i]));
    if (inputs[i] == nullptr)
      return fail(api, ORT_INVALID_ARGUMENT, "%s: input %s is missing", kName, kInputNames[i]);
    ATELIER_RETURN_IF_ERROR(dims_of(api, inputs[i], i, dims[i]));
  }
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
  for (size_t i = 0; i < kInputCount; ++i)
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(const_cast<OrtValue*>(inputs[i]), &data[i]));
  ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(output, &data[kInputCount]));
  const AdaLnArgs args{data[0], data[1], data[2], data[3], batch, tokens, channels, kernel.epsilon};
  return kernel.device == Device::cuda ? run_cuda(kernel, context, args) : run_cpu(kernel, context, args);
}

// The pre-version-16 callbacks. ORT calls the V2 ones for this op's version; these exist because
// ORT expects every field of the struct to be set.
void* create_kernel_legacy(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info) {
  void* kernel = nullptr;
  if (OrtStatus* status = create_kernel(op, api, info, &kernel)) ort::ReleaseStatus(api)(status);
  return kernel;
}

void compute_legacy(void* state, OrtKernelContext* context) {
  if (OrtStatus* status = compute(state, context)) ort::ReleaseStatus(static_cast<Kernel*>(state)->api)(status);
}

}  // namespace

AdaLnOp make_adaln_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  AdaLnOp op{};
  OrtCustomOp& o = op.base;
  o.version = ort::kApiVersion;
  o.CreateKernel = create_kernel_legacy;
  o.GetName = get_name;
  o.GetExecutionProviderType = get_provider;
  o.GetInputType = get_type;
  o.GetInputTypeCount = get_input_count;
  o.GetOutputType = get_type;
  o.GetOutputTypeCount = get_output_count;
  o.KernelCompute = compute_legacy;
  o.KernelDestroy = destroy_kernel;
  o.GetInputCharacteristic = get_characteristic;
  o.GetOutputCharacteristic = get_characteristic;
  o.GetInputMemoryType = get_input_memory_type;
  o.GetVariadicInputMinArity = get_variadic_min_arity;
  o.GetVariadicInputHomogeneity = get_variadic_homogeneity;
  o.GetVariadicOutputMinArity = get_variadic_min_arity;
  o.GetVariadicOutputHomogeneity = get_variadic_homogeneity;
  o.CreateKernelV2 = create_kernel;
  o.KernelComputeV2 = compute;
  o.InferOutputShapeFn = infer_shape;
  o.GetStartVersion = get_start_version;
  o.GetEndVersion = get_end_version;
  o.GetMayInplace = no_index_map;
  o.ReleaseMayInplace = release_index_map;
  o.GetAliasMap = no_index_map;
  o.ReleaseAliasMap = release_index_map;
  op.device = device;
  op.type = type;
  op.api = api;
  return op;
}

}  // namespace atelier
