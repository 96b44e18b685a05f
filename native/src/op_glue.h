// What the glue of every op (adaln_op.cc, joint_concat_op.cc, …) shares: error statuses, reading an
// input's shape (at run time, and at shape inference for token sequences [B, T, C]), and make_op,
// which fills an OrtCustomOp from an op's own callbacks so the schema boilerplate ORT asks of every
// op is written once.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <string>

#include "ops.h"
#include "ort_min.h"

#define ATELIER_RETURN_IF_ERROR(expr)                \
  do {                                               \
    if (OrtStatus* status_ = (expr)) return status_; \
  } while (0)

namespace atelier {
namespace glue {

inline const CustomOp& self(const OrtCustomOp* op) { return *reinterpret_cast<const CustomOp*>(op); }

inline OrtStatus* fail(const OrtApi* api, OrtErrorCode code, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

inline OrtStatus* fail(const OrtApi* api, OrtErrorCode code, const char* format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
  return ort::CreateStatus(api)(code, message);
}

// The dimensions of an input of rank R, or an error naming the op and the input.
template <size_t R>
OrtStatus* dims_of(const OrtApi* api, const char* op, const char* input, const OrtValue* value, int64_t (&dims)[R]) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::GetTensorTypeAndShape(api)(value, &info));
  size_t rank = 0;
  OrtStatus* status = ort::GetDimensionsCount(api)(info, &rank);
  if (status == nullptr && rank != R)
    status = fail(api, ORT_INVALID_ARGUMENT, "%s: input %s must have rank %zu, got rank %zu", op, input, R, rank);
  if (status == nullptr) status = ort::GetDimensions(api)(info, dims, R);
  ort::ReleaseTensorTypeAndShapeInfo(api)(info);
  return status;
}

// Every input of a kernel whose inputs are all rank 3: the values and their dimensions. The last
// `optional` of them (the op's kOptionalInputs) may be left out: their value is then null.
template <size_t N>
OrtStatus* rank3_inputs(const OrtApi* api, OrtKernelContext* context, const char* op,
                        const char* const (&names)[N], const OrtValue* (&inputs)[N], int64_t (&dims)[N][3],
                        size_t optional = 0) {
  size_t count = 0;  // a node may leave trailing optional inputs out altogether
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetInputCount(api)(context, &count));
  for (size_t i = 0; i < N; ++i) {
    inputs[i] = nullptr;
    if (i < count) ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetInput(api)(context, i, &inputs[i]));
    if (inputs[i] == nullptr && i + optional < N)
      return fail(api, ORT_INVALID_ARGUMENT, "%s: input %s is missing", op, names[i]);
    if (inputs[i] != nullptr) ATELIER_RETURN_IF_ERROR(dims_of(api, op, names[i], inputs[i], dims[i]));
  }
  return nullptr;
}

// The data of every input (null for an optional one left out), then of every output, for a kernel's
// argument struct.
template <size_t N, size_t M>
OrtStatus* data_pointers(const OrtApi* api, const OrtValue* const (&inputs)[N], OrtValue* const (&outputs)[M],
                         void* (&data)[N + M]) {
  for (size_t i = 0; i < N; ++i) {
    data[i] = nullptr;
    if (inputs[i] != nullptr)
      ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(const_cast<OrtValue*>(inputs[i]), &data[i]));
  }
  for (size_t i = 0; i < M; ++i)
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(outputs[i], &data[N + i]));
  return nullptr;
}

// The same for a kernel with one output.
template <size_t N>
OrtStatus* data_pointers(const OrtApi* api, const OrtValue* const (&inputs)[N], OrtValue* output,
                         void* (&data)[N + 1]) {
  OrtValue* const outputs[1] = {output};
  return data_pointers(api, inputs, outputs, data);
}

// ---- kernel creation -----------------------------------------------------------------------------

// A kernel made with `new (std::nothrow)` handed to ORT, or the op's error when there was no memory.
inline OrtStatus* created(const OrtApi* api, const char* op, void* kernel, void** out) {
  *out = kernel;
  return kernel == nullptr ? fail(api, ORT_FAIL, "%s: out of memory", op) : nullptr;
}

// The required `heads` attribute of the ops over [B, T, heads · head_dim] (Fp8Attention, JointQkvNorm).
inline OrtStatus* heads_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* op, int64_t* heads) {
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_int64(api)(info, "heads", heads)) {
    ort::ReleaseStatus(api)(absent);
    return fail(api, ORT_INVALID_ARGUMENT, "%s: the attribute heads (an int, C = heads · head_dim) is required", op);
  }
  if (*heads < 1)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: heads must be at least 1, got %lld", op,
                static_cast<long long>(*heads));
  return nullptr;
}

// A string attribute, or `fallback` when the node has none.
inline OrtStatus* string_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* name,
                                   const char* fallback, std::string* out) {
  size_t size = 0;  // the text's bytes with its terminating NUL
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_string(api)(info, name, nullptr, &size)) {
    ort::ReleaseStatus(api)(absent);
    *out = fallback;
    return nullptr;
  }
  std::string text(size, '\0');
  ATELIER_RETURN_IF_ERROR(ort::KernelInfoGetAttribute_string(api)(info, name, text.data(), &size));
  *out = text.c_str();  // up to the NUL
  return nullptr;
}

// Delayed FP8 scaling's amax_margin (finite, > 0) and amax_history (1 to max_history), where given;
// `margin` and `history` hold the defaults on entry. Shared by Fp8Linear's output "e4m3_delayed" and
// AdaLN*Quant's act_scaling "delayed_tensor", so both refuse the same values the same way.
inline OrtStatus* delayed_attributes(const OrtApi* api, const OrtKernelInfo* info, const char* op, float* margin,
                                     int64_t* history, int64_t max_history) {
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_float(api)(info, "amax_margin", margin))
    ort::ReleaseStatus(api)(absent);
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_int64(api)(info, "amax_history", history))
    ort::ReleaseStatus(api)(absent);
  if (!(*margin > 0.0f) || !std::isfinite(*margin))
    return fail(api, ORT_INVALID_ARGUMENT, "%s: amax_margin must be a finite number > 0, got %g", op,
                static_cast<double>(*margin));
  if (*history < 1 || *history > max_history)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: amax_history must be 1 to %lld, got %lld", op,
                static_cast<long long>(max_history), static_cast<long long>(*history));
  return nullptr;
}

// The optional `epsilon` attribute of the norms (AdaLN*, JointQkvNorm): `fallback` when absent.
inline OrtStatus* epsilon_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* op, float fallback,
                                    float* epsilon) {
  *epsilon = fallback;
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_float(api)(info, "epsilon", epsilon)) {
    ort::ReleaseStatus(api)(absent);
    *epsilon = fallback;
  }
  if (!std::isfinite(*epsilon) || *epsilon < 0)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: epsilon must be a finite number >= 0, got %g", op,
                static_cast<double>(*epsilon));
  return nullptr;
}

// ---- running a kernel ----------------------------------------------------------------------------

// The CPU kernels' one way to spread rows [0, rows) over ORT's thread pool: `run(begin, end)` on
// `rows_per_task` rows (at least 1) a task, called directly when one task covers them all.
template <class Run>
OrtStatus* parallel_rows(const OrtApi* api, OrtKernelContext* context, int64_t rows, int64_t rows_per_task,
                         const Run& run) {
  if (rows_per_task < 1) rows_per_task = 1;
  const int64_t tasks = (rows + rows_per_task - 1) / rows_per_task;
  if (tasks == 1) {
    run(int64_t{0}, rows);
    return nullptr;
  }
  struct Task {
    const Run* run;
    int64_t rows;
    int64_t rows_per_task;
  };
  Task task{&run, rows, rows_per_task};
  const auto run_task = [](void* data, size_t index) {
    const Task& t = *static_cast<const Task*>(data);
    const int64_t begin = static_cast<int64_t>(index) * t.rows_per_task;
    const int64_t end = begin + t.rows_per_task < t.rows ? begin + t.rows_per_task : t.rows;
    (*t.run)(begin, end);
  };
  return ort::KernelContext_ParallelFor(api)(context, run_task, static_cast<size_t>(tasks), 0, &task);
}

// The CUDA provider's stream for this run: launching on it is what makes a kernel part of ONNX
// Runtime's ordering and of a captured graph (the legacy default stream would be neither).
inline OrtStatus* cuda_stream(const OrtApi* api, OrtKernelContext* context, const char* op, void** stream) {
  *stream = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetGPUComputeStream(api)(context, stream));
  if (*stream == nullptr) return fail(api, ORT_FAIL, "%s: ONNX Runtime gave the CUDA kernel no stream", op);
  return nullptr;
}

// `launch(stream)` on this run's stream, for the kernels whose launcher returns an error text or null.
template <class Launch>
OrtStatus* launch_cuda(const OrtApi* api, OrtKernelContext* context, const char* op, const Launch& launch) {
  void* stream = nullptr;
  ATELIER_RETURN_IF_ERROR(cuda_stream(api, context, op, &stream));
  if (const char* error = launch(stream)) return fail(api, ORT_FAIL, "%s: CUDA kernel launch failed: %s", op, error);
  return nullptr;
}

// What a CUDA entry answers in a library built without CUDA.
inline OrtStatus* without_cuda(const OrtApi* api, const char* op) {
  return fail(api, ORT_FAIL, "%s: this library was built without CUDA", op);
}

// ---- shape inference of token sequences [B, T, C] (JointConcat, JointQkvNorm) --------------------

// One dimension as shape inference sees it: a value (≥ 0), a name, or neither (unknown).
struct Dim {
  int64_t value = -1;
  std::string name = "";

  bool known() const { return value >= 0; }
  bool named() const { return !known() && !name.empty(); }
  // Known or named: what ORT can be told.
  bool usable() const { return known() || named(); }
  // How the dimension reads in a named sum (only of known or named ones).
  std::string text() const { return known() ? std::to_string(value) : name; }
};

// An input's element type and, when it has rank 3, its dimensions.
struct Shape3 {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  bool ranked3 = false;
  Dim dims[3];
};

inline OrtStatus* input_shape3(const OrtApi* api, OrtShapeInferContext* context, size_t index, Shape3* shape) {
  OrtTensorTypeAndShapeInfo* info = nullptr;  // owned by the context
  ATELIER_RETURN_IF_ERROR(ort::ShapeInferContext_GetInputTypeShape(api)(context, index, &info));
  ATELIER_RETURN_IF_ERROR(ort::GetTensorElementType(api)(info, &shape->type));
  size_t rank = 0;
  ATELIER_RETURN_IF_ERROR(ort::GetDimensionsCount(api)(info, &rank));
  shape->ranked3 = rank == 3;
  if (rank != 3) return nullptr;
  int64_t values[3];
  const char* names[3] = {nullptr, nullptr, nullptr};
  ATELIER_RETURN_IF_ERROR(ort::GetDimensions(api)(info, values, 3));
  ATELIER_RETURN_IF_ERROR(ort::GetSymbolicDimensions(api)(info, names, 3));
  for (int i = 0; i < 3; ++i) shape->dims[i] = Dim{values[i], names[i] ? names[i] : ""};
  return nullptr;
}

// B (axis 0) or the width (axis 2) of two token sequences that must agree: a value over a name.
// False when known values differ (the kernel reports that at run time).
inline bool common_dim(const Dim& a, const Dim& b, Dim* out) {
  if (a.known() && b.known() && a.value != b.value) return false;
  *out = a.known() || (a.named() && !b.known()) ? a : b;
  return true;
}

// Ta + Tb: a value when both are known, else the name "Ta+Tb" (e.g. "tokens+4096"), else unknown.
inline Dim token_sum(const Dim& a, const Dim& b) {
  if (a.known() && b.known()) return Dim{a.value + b.value, ""};
  if (a.usable() && b.usable()) return Dim{-1, a.text() + "+" + b.text()};
  return Dim{};
}

// Tells ORT output `index` is `type` [dims], every dimension known or named.
inline OrtStatus* set_output_shape3(const OrtApi* api, OrtShapeInferContext* context, size_t index,
                                    ONNXTensorElementDataType type, const Dim (&dims)[3]) {
  int64_t values[3];
  const char* names[3];
  for (int i = 0; i < 3; ++i) {
    values[i] = dims[i].known() ? dims[i].value : -1;
    names[i] = dims[i].known() ? "" : dims[i].name.c_str();
  }
  OrtTensorTypeAndShapeInfo* info = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::CreateTensorTypeAndShapeInfo(api)(&info));
  OrtStatus* status = ort::SetTensorElementType(api)(info, type);
  if (status == nullptr) status = ort::SetDimensions(api)(info, values, 3);
  if (status == nullptr) status = ort::SetSymbolicDimensions(api)(info, names, 3);
  if (status == nullptr) status = ort::ShapeInferContext_SetOutputTypeShape(api)(context, index, info);
  ort::ReleaseTensorTypeAndShapeInfo(api)(info);
  return status;
}

// ---- the schema callbacks every op answers alike -------------------------------------------------

inline const char* get_provider(const OrtCustomOp* op) {
  return self(op).device == Device::cuda ? "CUDAExecutionProvider" : "CPUExecutionProvider";
}
// Every input and the output have the entry's one element type.
inline ONNXTensorElementDataType get_type(const OrtCustomOp* op, size_t) { return self(op).type; }
inline size_t get_output_count(const OrtCustomOp*) { return 1; }
inline OrtCustomOpInputOutputCharacteristic get_characteristic(const OrtCustomOp*, size_t) {
  return INPUT_OUTPUT_REQUIRED;
}
inline OrtMemType get_input_memory_type(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
// Not variadic: ORT asks these only of variadic inputs/outputs.
inline int get_variadic_min_arity(const OrtCustomOp*) { return 1; }
inline int get_variadic_homogeneity(const OrtCustomOp*) { return 1; }
inline int get_start_version(const OrtCustomOp*) { return 1; }
inline int get_end_version(const OrtCustomOp*) { return 1; }
// The output never reuses or aliases an input.
inline size_t no_index_map(int** input_index, int** output_index) {
  *input_index = nullptr;
  *output_index = nullptr;
  return 0;
}
inline void release_index_map(int*, int*) {}

// ---- per-op callbacks ----------------------------------------------------------------------------

// `Op` describes one op with static members:
//   kName, kInputCount, kOptionalInputs (how many of the last inputs a node may leave out);
//   Kernel, a type with a member `const OrtApi* api` (what create returns through `void**`);
//   create(op, api, info, void** kernel), compute(void* kernel, context), infer_shape(op, context).
// Callbacks gives an Op its Kernel, create, compute and infer_shape, and no optional inputs; the op's
// own struct derives from it and adds kName and kInputCount (and its own kOptionalInputs, if any).
template <class KernelType, auto kCreate, auto kCompute, auto kInferShape>
struct Callbacks {
  using Kernel = KernelType;
  static constexpr auto create = kCreate;
  static constexpr auto compute = kCompute;
  static constexpr auto infer_shape = kInferShape;
  static constexpr size_t kOptionalInputs = 0;
};

template <class Op>
const char* get_name(const OrtCustomOp*) {
  return Op::kName;
}

template <class Op>
size_t get_input_count(const OrtCustomOp*) {
  return Op::kInputCount;
}

// The last Op::kOptionalInputs inputs are optional: ORT accepts nodes without them (or with an empty
// name in their place) and hands the kernel a null value for them.
template <class Op>
OrtCustomOpInputOutputCharacteristic get_input_characteristic(const OrtCustomOp*, size_t index) {
  return index + Op::kOptionalInputs >= Op::kInputCount ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}

template <class Op>
void destroy_kernel(void* kernel) {
  delete static_cast<typename Op::Kernel*>(kernel);
}

// The pre-version-16 callbacks. ORT calls the V2 ones for this op's version; these exist because
// ORT expects every field of the struct to be set.
template <class Op>
void* create_kernel_legacy(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info) {
  void* kernel = nullptr;
  if (OrtStatus* status = Op::create(op, api, info, &kernel)) ort::ReleaseStatus(api)(status);
  return kernel;
}

template <class Op>
void compute_legacy(void* kernel, OrtKernelContext* context) {
  if (OrtStatus* status = Op::compute(kernel, context))
    ort::ReleaseStatus(static_cast<typename Op::Kernel*>(kernel)->api)(status);
}

// ORT (1.29) calls InferOutputShapeFn and drops the status it returns without releasing it, so an
// error there would neither stop the session nor be freed: release it here. Inference only ever
// leaves a shape to run time; every check that can fail is the kernel's.
template <class Op>
OrtStatus* infer_shape(const OrtCustomOp* op, OrtShapeInferContext* context) {
  if (OrtStatus* status = Op::infer_shape(op, context)) ort::ReleaseStatus(self(op).api)(status);
  return nullptr;
}

template <class Op>
CustomOp make_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  CustomOp op{};
  OrtCustomOp& o = op.base;
  o.version = ort::kApiVersion;
  o.CreateKernel = create_kernel_legacy<Op>;
  o.GetName = get_name<Op>;
  o.GetExecutionProviderType = get_provider;
  o.GetInputType = get_type;
  o.GetInputTypeCount = get_input_count<Op>;
  o.GetOutputType = get_type;
  o.GetOutputTypeCount = get_output_count;
  o.KernelCompute = compute_legacy<Op>;
  o.KernelDestroy = destroy_kernel<Op>;
  o.GetInputCharacteristic = get_input_characteristic<Op>;
  o.GetOutputCharacteristic = get_characteristic;
  o.GetInputMemoryType = get_input_memory_type;
  o.GetVariadicInputMinArity = get_variadic_min_arity;
  o.GetVariadicInputHomogeneity = get_variadic_homogeneity;
  o.GetVariadicOutputMinArity = get_variadic_min_arity;
  o.GetVariadicOutputHomogeneity = get_variadic_homogeneity;
  o.CreateKernelV2 = Op::create;
  o.KernelComputeV2 = Op::compute;
  o.InferOutputShapeFn = infer_shape<Op>;
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

}  // namespace glue
}  // namespace atelier
