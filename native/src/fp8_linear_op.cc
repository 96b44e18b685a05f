// Fp8Linear's and Fp8LinearQ's glue to ONNX Runtime: the ops' mixed input types (float16 x, or
// float8e4m3fn x8 and float32 act_scale; float8e4m3fn weight, float32 scales, optional float16
// bias), their attributes, shape inference, and the compute callback that checks shapes and hands
// the tensors to a kernel (the schema boilerplate is op_glue.h's). The two ops differ only in how
// the activations arrive: `Inputs<prequantized>` says where each input is. The outputs are y
// (float16) or, with output "e4m3_delayed", y8 (float8e4m3fn) and y_scale (float32): three optional
// outputs of fixed types in the schema, a node naming y alone or y8 and y_scale alone.
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "fp8_linear.h"
#include "op_glue.h"
#include "ops.h"

namespace atelier {
namespace {

using glue::fail;
using glue::self;

constexpr size_t kMaxInputs = 5;

// Where each input is: Fp8Linear (x, weight, weight_scale, bias) or Fp8LinearQ (x8, act_scale,
// weight, weight_scale, bias); the bias is optional in both.
template <bool kPrequantized>
struct Inputs;

template <>
struct Inputs<false> {
  static constexpr const char* kName = "Fp8Linear";
  static constexpr size_t kCount = 4;
  static constexpr size_t kWeight = 1;
  static constexpr const char* kNames[kMaxInputs] = {"x", "weight", "weight_scale", "bias", ""};
};

template <>
struct Inputs<true> {
  static constexpr const char* kName = "Fp8LinearQ";
  static constexpr size_t kCount = 5;
  static constexpr size_t kWeight = 2;
  static constexpr const char* kNames[kMaxInputs] = {"x8", "act_scale", "weight", "weight_scale", "bias"};
};
constexpr size_t kMaxRank = 8;
// Multiply-adds per CPU task, so small problems are not split.
constexpr int64_t kMacsPerTask = 1 << 20;

struct Kernel {
  const OrtApi* api;
  const char* name;  // the op's
  Device device;
  Fp8Activation activation;
  Fp8Scaling scaling;
  bool fast_accumulation;
  bool cublaslt_gelu;
  Fp8Output output = Fp8Output::float16;
  Fp8DelayedConfig delayed;
#ifdef ATELIER_WITH_CUDA
  Fp8LinearCuda* cuda = nullptr;
#endif
  // The CPU kernel's delayed-scaling history and its float32 v (output "e4m3_delayed").
  Fp8DelayedHistory history;
  std::vector<float> values;
  // The CPU kernel's weight decoded to floats, made at the first run (the weight is an initializer).
  std::mutex mutex;
  const void* decoded_from = nullptr;
  std::vector<float> decoded;

  ~Kernel() {
#ifdef ATELIER_WITH_CUDA
    if (cuda != nullptr) fp8_linear_cuda_destroy(cuda);
#endif
  }
};

// ---- schema: each input has its own element type; the bias may be left out -----------------------

template <bool kPrequantized>
ONNXTensorElementDataType input_type(const OrtCustomOp*, size_t index) {
  using In = Inputs<kPrequantized>;
  if (kPrequantized && index == 0) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN;  // x8
  if (kPrequantized && index == 1) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;         // act_scale
  if (index == In::kWeight) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN;
  if (index == In::kWeight + 1) return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;  // weight_scale
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;                              // x, bias
}

// y (float16), y8 (float8e4m3fn), y_scale (float32), each optional: output "float16" writes y alone,
// "e4m3_delayed" y8 and y_scale with y left out (an empty name).
ONNXTensorElementDataType output_type(const OrtCustomOp*, size_t index) {
  return index == 0   ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16
         : index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN
                      : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
size_t output_count(const OrtCustomOp*) { return 3; }
OrtCustomOpInputOutputCharacteristic output_characteristic(const OrtCustomOp*, size_t) { return INPUT_OUTPUT_OPTIONAL; }

// Whether the node's `output` attribute says "e4m3_delayed" (shape inference's view of it).
bool delayed_output(const OrtApi* api, OrtShapeInferContext* context) {
  const OrtOpAttr* attr = nullptr;
  if (OrtStatus* absent = ort::ShapeInferContext_GetAttribute(api)(context, "output", &attr)) {
    ort::ReleaseStatus(api)(absent);
    return false;
  }
  if (attr == nullptr) return false;
  char text[32] = "";
  size_t size = 0;
  if (OrtStatus* status = ort::ReadOpAttr(api)(attr, ORT_OP_ATTR_STRING, text, sizeof text - 1, &size)) {
    ort::ReleaseStatus(api)(status);
    return false;
  }
  text[size < sizeof text ? size : sizeof text - 1] = '\0';
  return std::strcmp(text, "e4m3_delayed") == 0;
}

// ---- shape inference: y is x (x8) with its last axis replaced by the weight's first -------------

template <bool kPrequantized>
OrtStatus* infer_shape(const OrtCustomOp* op, OrtShapeInferContext* context) {
  const OrtApi* api = self(op).api;
  OrtTensorTypeAndShapeInfo* x = nullptr;  // owned by the context
  OrtTensorTypeAndShapeInfo* w = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::ShapeInferContext_GetInputTypeShape(api)(context, 0, &x));
  ATELIER_RETURN_IF_ERROR(
      ort::ShapeInferContext_GetInputTypeShape(api)(context, Inputs<kPrequantized>::kWeight, &w));
  size_t rank = 0, w_rank = 0;
  ATELIER_RETURN_IF_ERROR(ort::GetDimensionsCount(api)(x, &rank));
  ATELIER_RETURN_IF_ERROR(ort::GetDimensionsCount(api)(w, &w_rank));
  if (rank < 1 || rank > kMaxRank || w_rank != 2) return nullptr;
  int64_t dims[kMaxRank], w_dims[2];
  const char* names[kMaxRank] = {};
  const char* w_names[2] = {nullptr, nullptr};
  ATELIER_RETURN_IF_ERROR(ort::GetDimensions(api)(x, dims, rank));
  ATELIER_RETURN_IF_ERROR(ort::GetSymbolicDimensions(api)(x, names, rank));
  ATELIER_RETURN_IF_ERROR(ort::GetDimensions(api)(w, w_dims, 2));
  ATELIER_RETURN_IF_ERROR(ort::GetSymbolicDimensions(api)(w, w_names, 2));
  dims[rank - 1] = w_dims[0];
  names[rank - 1] = w_names[0];
  for (size_t i = 0; i < rank; ++i) {
    if (names[i] == nullptr) names[i] = "";
    if (dims[i] < 0 && names[i][0] == '\0') return nullptr;  // neither known nor named
    if (dims[i] >= 0) names[i] = "";
  }
  const bool delayed = delayed_output(api, context);
  // y, or y8 (x's shape with N last) and y_scale (x's leading axes).
  for (size_t output = delayed ? 1 : 0; output < (delayed ? 3u : 1u); ++output) {
    const size_t out_rank = output == 2 ? rank - 1 : rank;
    OrtTensorTypeAndShapeInfo* info = nullptr;
    ATELIER_RETURN_IF_ERROR(ort::CreateTensorTypeAndShapeInfo(api)(&info));
    const ONNXTensorElementDataType type = output_type(nullptr, output);
    OrtStatus* status = ort::SetTensorElementType(api)(info, type);
    if (status == nullptr) status = ort::SetDimensions(api)(info, dims, out_rank);
    if (status == nullptr) status = ort::SetSymbolicDimensions(api)(info, names, out_rank);
    if (status == nullptr) status = ort::ShapeInferContext_SetOutputTypeShape(api)(context, output, info);
    ort::ReleaseTensorTypeAndShapeInfo(api)(info);
    if (status != nullptr) return status;
  }
  return nullptr;
}

// ---- kernel creation -------------------------------------------------------------------------------

// A 0/1 attribute; `value` keeps its default when the node has none.
OrtStatus* flag_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* kName, const char* name,
                          int64_t* value) {
  int64_t given = 0;
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_int64(api)(info, name, &given)) {
    ort::ReleaseStatus(api)(absent);
    return nullptr;
  }
  if (given != 0 && given != 1)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: %s must be 0 or 1, got %lld", kName, name, static_cast<long long>(given));
  *value = given;
  return nullptr;
}

template <bool kPrequantized>
OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  constexpr const char* kName = Inputs<kPrequantized>::kName;
  *out = nullptr;
  std::string activation, scaling;
  ATELIER_RETURN_IF_ERROR(glue::string_attribute(api, info, "activation", "none", &activation));
  ATELIER_RETURN_IF_ERROR(glue::string_attribute(api, info, "scaling", "outer_vector", &scaling));
  if (activation != "none" && activation != "gelu_tanh")
    return fail(api, ORT_INVALID_ARGUMENT, "%s: activation must be \"none\" or \"gelu_tanh\", got \"%s\"", kName,
                activation.c_str());
  if (scaling != "outer_vector" && scaling != "fp32_output" && (scaling != "tensor" || !kPrequantized))
    return fail(api, ORT_INVALID_ARGUMENT, "%s: scaling must be \"outer_vector\"%s or \"fp32_output\", got \"%s\"",
                kName, kPrequantized ? ", \"tensor\"" : "", scaling.c_str());
  int64_t fast_accumulation = 0, cublaslt_gelu = 1;
  ATELIER_RETURN_IF_ERROR(flag_attribute(api, info, kName, "fast_accumulation", &fast_accumulation));
  ATELIER_RETURN_IF_ERROR(flag_attribute(api, info, kName, "cublaslt_gelu", &cublaslt_gelu));
  std::string output;
  ATELIER_RETURN_IF_ERROR(glue::string_attribute(api, info, "output", "float16", &output));
  if (output != "float16" && output != "e4m3_delayed")
    return fail(api, ORT_INVALID_ARGUMENT, "%s: output must be \"float16\" or \"e4m3_delayed\", got \"%s\"", kName,
                output.c_str());
  Fp8DelayedConfig delayed;
  ATELIER_RETURN_IF_ERROR(
      glue::delayed_attributes(api, info, kName, &delayed.margin, &delayed.history, kMaxAmaxHistory));
  Kernel* kernel = new (std::nothrow) Kernel{};
  if (kernel == nullptr) return fail(api, ORT_FAIL, "%s: out of memory", kName);
  kernel->api = api;
  kernel->name = kName;
  kernel->device = self(op).device;
  kernel->activation = activation == "gelu_tanh" ? Fp8Activation::gelu_tanh : Fp8Activation::none;
  kernel->scaling = scaling == "fp32_output" ? Fp8Scaling::fp32_output
                    : scaling == "tensor"    ? Fp8Scaling::tensor
                                             : Fp8Scaling::outer_vector;
  kernel->fast_accumulation = fast_accumulation == 1;
  kernel->cublaslt_gelu = cublaslt_gelu == 1;
  kernel->output = output == "e4m3_delayed" ? Fp8Output::e4m3_delayed : Fp8Output::float16;
  kernel->delayed = delayed;
#ifdef ATELIER_WITH_CUDA
  if (kernel->device == Device::cuda) {
    char error[384] = "";
    kernel->cuda = fp8_linear_cuda_create(kernel->scaling, kernel->fast_accumulation, kernel->cublaslt_gelu,
                                          kernel->output, kernel->delayed, error, sizeof error);
    if (kernel->cuda == nullptr) {
      delete kernel;
      return fail(api, ORT_FAIL, "%s: %s", kName, error);
    }
  }
#endif
  *out = kernel;
  return nullptr;
}

// ---- compute ---------------------------------------------------------------------------------------

struct Shape {
  size_t rank = 0;
  int64_t dims[kMaxRank] = {};
};

OrtStatus* shape_of(const OrtApi* api, const char* kName, const char* input, const OrtValue* value, Shape* shape) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::GetTensorTypeAndShape(api)(value, &info));
  OrtStatus* status = ort::GetDimensionsCount(api)(info, &shape->rank);
  if (status == nullptr && (shape->rank < 1 || shape->rank > kMaxRank))
    status = fail(api, ORT_INVALID_ARGUMENT, "%s: input %s must have rank 1 to %zu, got rank %zu", kName, input,
                  kMaxRank, shape->rank);
  if (status == nullptr) status = ort::GetDimensions(api)(info, shape->dims, shape->rank);
  ort::ReleaseTensorTypeAndShapeInfo(api)(info);
  return status;
}

std::string text_of(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.rank; ++i) out += (i ? ", " : "") + std::to_string(s.dims[i]);
  return out + "]";
}

// Scaling "tensor" reads one scale per operand; here the promise behind it is checked (the GPU cannot
// check it without a synchronisation), so a graph that broke it fails on the CPU first.
OrtStatus* check_uniform_scales(const Kernel& kernel, const Fp8LinearArgs& args) {
  const auto uniform = [](const float* v, int64_t count) {
    for (int64_t i = 1; i < count; ++i)
      if (!(v[i] == v[0])) return false;
    return true;
  };
  if (!uniform(args.weight_scale, args.out_features))
    return fail(kernel.api, ORT_INVALID_ARGUMENT,
                "%s: scaling \"tensor\" needs one weight scale for the whole tensor (every weight_scale equal); "
                "use \"outer_vector\" for per-channel scales",
                kernel.name);
  if (!uniform(args.act_scale, args.rows))
    return fail(kernel.api, ORT_INVALID_ARGUMENT,
                "%s: scaling \"tensor\" needs activations quantized per tensor (every act_scale equal); use "
                "\"outer_vector\" for per-token scales",
                kernel.name);
  return nullptr;
}

OrtStatus* run_cpu(Kernel& kernel, OrtKernelContext* context, const Fp8LinearArgs& args) {
  if (kernel.scaling == Fp8Scaling::tensor) ATELIER_RETURN_IF_ERROR(check_uniform_scales(kernel, args));
  const int64_t weights = args.out_features * args.in_features;
  const float* weight;
  {
    std::lock_guard<std::mutex> lock(kernel.mutex);
    if (kernel.decoded_from != args.weight || kernel.decoded.size() != static_cast<size_t>(weights)) {
      kernel.decoded.resize(static_cast<size_t>(weights));
      for (int64_t i = 0; i < weights; ++i) kernel.decoded[i] = e4m3_to_float(args.weight[i]);
      kernel.decoded_from = args.weight;
    }
    weight = kernel.decoded.data();
  }
  if (kernel.output == Fp8Output::float16)
    return glue::parallel_rows(kernel.api, context, args.rows, kMacsPerTask / (weights > 0 ? weights : 1),
                               [&](int64_t begin, int64_t end) { fp8_linear_cpu(args, weight, begin, end); });
  // e4m3_delayed: v in float32 for all rows, then the per-tensor quantization (the history is the
  // kernel's: one call at a time).
  std::lock_guard<std::mutex> lock(kernel.mutex);
  kernel.values.resize(static_cast<size_t>(args.rows * args.out_features));
  Fp8LinearArgs f32 = args;
  f32.y_f32 = kernel.values.data();
  ATELIER_RETURN_IF_ERROR(
      glue::parallel_rows(kernel.api, context, args.rows, kMacsPerTask / (weights > 0 ? weights : 1),
                          [&](int64_t begin, int64_t end) { fp8_linear_cpu(f32, weight, begin, end); }));
  delayed_quantize_cpu(kernel.history, kernel.delayed, kernel.values.data(), args.rows, args.out_features, args.y8,
                       args.y_scale);
  return nullptr;
}

OrtStatus* run_cuda(Kernel& kernel, OrtKernelContext* context, const Fp8LinearArgs& args) {
#ifdef ATELIER_WITH_CUDA
  void* stream = nullptr;
  ATELIER_RETURN_IF_ERROR(glue::cuda_stream(kernel.api, context, kernel.name, &stream));
  char error[384] = "";
  if (!fp8_linear_cuda_run(kernel.cuda, args, stream, error, sizeof error))
    return fail(kernel.api, ORT_FAIL, "%s: %s", kernel.name, error);
  return nullptr;
#else
  (void)kernel;
  (void)context;
  (void)args;
  return glue::without_cuda(kernel.api, kernel.name);
#endif
}

template <bool kPrequantized>
OrtStatus* compute(void* state, OrtKernelContext* context) {
  using In = Inputs<kPrequantized>;
  constexpr const char* kName = In::kName;
  constexpr size_t kW = In::kWeight;  // weight; weight_scale and bias follow it
  Kernel& kernel = *static_cast<Kernel*>(state);
  const OrtApi* api = kernel.api;
  size_t count = 0;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetInputCount(api)(context, &count));
  const OrtValue* inputs[kMaxInputs] = {};
  Shape shapes[kMaxInputs];
  for (size_t i = 0; i < In::kCount && i < count; ++i) {
    ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetInput(api)(context, i, &inputs[i]));
    if (inputs[i] != nullptr) ATELIER_RETURN_IF_ERROR(shape_of(api, kName, In::kNames[i], inputs[i], &shapes[i]));
  }
  for (size_t i = 0; i + 1 < In::kCount; ++i)
    if (inputs[i] == nullptr) return fail(api, ORT_INVALID_ARGUMENT, "%s: input %s is missing", kName, In::kNames[i]);

  const Shape& x = shapes[0];
  const Shape& w = shapes[kW];
  const int64_t k = x.dims[x.rank - 1];
  if (kPrequantized) {
    // act_scale: one per row of x8, i.e. x8's shape without its last axis.
    const Shape& s = shapes[1];
    bool same = x.rank >= 2 && s.rank == x.rank - 1;
    for (size_t i = 0; same && i < s.rank; ++i) same = s.dims[i] == x.dims[i];
    if (!same) {
      Shape want = x;
      want.rank = x.rank > 1 ? x.rank - 1 : 0;
      return fail(api, ORT_INVALID_ARGUMENT,
                  "%s: act_scale must be x8's shape without its last axis, %s for x8 %s (one scale per token), got %s%s",
                  kName, text_of(want).c_str(), text_of(x).c_str(), text_of(s).c_str(),
                  x.rank < 2 ? " (x8 needs rank 2 or more)" : "");
    }
  }
  const char* x_name = In::kNames[0];
  if (w.rank != 2 || w.dims[1] != k)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: weight must be [N, K] with K = %lld (%s's last axis, %s %s), got %s",
                kName, static_cast<long long>(k), x_name, x_name, text_of(x).c_str(), text_of(w).c_str());
  const int64_t n = w.dims[0];
  if (shapes[kW + 1].rank != 1 || shapes[kW + 1].dims[0] != n)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: weight_scale must be [N] = [%lld] (one per output channel), got %s",
                kName, static_cast<long long>(n), text_of(shapes[kW + 1]).c_str());
  const bool has_bias = inputs[kW + 2] != nullptr;
  if (has_bias && (shapes[kW + 2].rank != 1 || shapes[kW + 2].dims[0] != n))
    return fail(api, ORT_INVALID_ARGUMENT, "%s: bias must be [N] = [%lld], got %s", kName, static_cast<long long>(n),
                text_of(shapes[kW + 2]).c_str());

  Shape y = x;
  y.dims[y.rank - 1] = n;
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < x.rank; ++i) rows *= x.dims[i];
  const bool delayed = kernel.output == Fp8Output::e4m3_delayed;
  OrtValue* output = nullptr;
  OrtValue* scale_output = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, delayed ? 1 : 0, y.dims, y.rank, &output));
  if (delayed)
    ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 2, y.dims, y.rank - 1, &scale_output));
  if (output == nullptr || (delayed && scale_output == nullptr))
    return fail(api, ORT_INVALID_ARGUMENT, "%s: output \"%s\" writes %s: the node must name %s", kName,
                delayed ? "e4m3_delayed" : "float16", delayed ? "y8 and y_scale" : "y",
                delayed ? "its second and third outputs (the first left empty)" : "its first output");
  if (rows == 0 || n == 0) return nullptr;

  void* data[kMaxInputs] = {};
  for (size_t i = 0; i < In::kCount; ++i)
    if (inputs[i] != nullptr)
      ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(const_cast<OrtValue*>(inputs[i]), &data[i]));
  void* y_data = nullptr;
  void* scale_data = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(output, &y_data));
  if (delayed) ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(scale_output, &scale_data));
  Fp8LinearArgs args{};
  if (kPrequantized) {
    args.x8 = static_cast<const uint8_t*>(data[0]);
    args.act_scale = static_cast<const float*>(data[1]);
  } else {
    args.x = data[0];
  }
  args.weight = static_cast<const uint8_t*>(data[kW]);
  args.weight_scale = static_cast<const float*>(data[kW + 1]);
  args.bias = data[kW + 2];
  if (delayed) {
    args.y8 = static_cast<uint8_t*>(y_data);
    args.y_scale = static_cast<float*>(scale_data);
  } else {
    args.y = y_data;
  }
  args.rows = rows;
  args.in_features = k;
  args.out_features = n;
  args.activation = kernel.activation;
  if (k == 0) {
    // An empty sum: y = f(bias) or f(0); cheap enough to leave to the CPU kernel's formula on CPU,
    // and unheard of for a linear layer on the GPU.
    if (kernel.device == Device::cuda)
      return fail(api, ORT_INVALID_ARGUMENT, "%s: %s's last axis (K) is 0", kName, x_name);
  }
  return kernel.device == Device::cuda ? run_cuda(kernel, context, args) : run_cpu(kernel, context, args);
}

template <bool kPrequantized>
struct Fp8LinearOp : glue::Callbacks<Kernel, create_kernel<kPrequantized>, compute<kPrequantized>,
                                     infer_shape<kPrequantized>> {
  static constexpr const char* kName = Inputs<kPrequantized>::kName;
  static constexpr size_t kInputCount = Inputs<kPrequantized>::kCount;
  static constexpr size_t kOptionalInputs = 1;  // bias
};

template <bool kPrequantized>
CustomOp make_op(Device device, const OrtApi* api) {
  CustomOp op = glue::make_op<Fp8LinearOp<kPrequantized>>(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api);
  op.base.GetInputType = input_type<kPrequantized>;
  op.base.GetOutputType = output_type;
  op.base.GetOutputTypeCount = output_count;
  op.base.GetOutputCharacteristic = output_characteristic;
  return op;
}

}  // namespace

CustomOp make_fp8_linear_op(Device device, const OrtApi* api) { return make_op<false>(device, api); }

CustomOp make_fp8_linear_q_op(Device device, const OrtApi* api) { return make_op<true>(device, api); }

}  // namespace atelier
