// AdaLNModulate's, AdaLNModulateQuant's and AdaLNResidualQuant's glue to ONNX Runtime: kernel
// creation, shape inference, and the compute callback that checks shapes and hands the tensors to a
// kernel (the schema boilerplate is op_glue.h's). They share everything but their inputs and outputs:
// AdaLNModulate writes y in x's type; AdaLNModulateQuant x8 (float8e4m3fn, x's shape) and act_scale
// (float32, [B, T]); AdaLNResidualQuant also reads branch and gate (and optionally branch2 and gate2)
// and writes the residual (x's type and shape) before x8 and act_scale, AdaLNResidual the residual
// before y. The quantizing ops' act_scaling "delayed_tensor" keeps state per kernel instance (its
// amax history), so their compute callback takes the kernel mutable and runs one such call at a time.
// Both quantizing ops take a second modulation as two last optional inputs (shift2, scale2) and two
// optional outputs after act_scale (x8_2, act_scale_2), per token only.
#include <cmath>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "adaln_modulate.h"
#include "fp8_linear.h"
#include "op_glue.h"
#include "ops.h"

namespace atelier {
namespace {

using glue::fail;
using glue::self;

// Which of the four ops (template argument K of the callbacks below).
enum Kind { kModulate = 0, kQuant = 1, kResidualQuant = 2, kResidual = 3 };
constexpr const char* kNames[4] = {"AdaLNModulate", "AdaLNModulateQuant", "AdaLNResidualQuant", "AdaLNResidual"};
// Whether the op reads branch and gate and writes the residual first.
constexpr bool residual_kind(int k) { return k == kResidualQuant || k == kResidual; }
// Whether the op writes codes and scales rather than y.
constexpr bool quant_kind(int k) { return k == kQuant || k == kResidualQuant; }
// The inputs of each: x, shift, scale; the residual ops' x, branch ([B, T, C]), gate ([B, 1, C]),
// shift, scale, and the optional second branch: branch2 ([B, T, C]) and gate2 ([B, 1, C]).
// The quantizing ops' last two optional inputs: the second modulation's shift2 and scale2 ([B, 1, C]).
constexpr const char* kModulateInputs[3] = {"x", "shift", "scale"};
constexpr const char* kQuantInputs[5] = {"x", "shift", "scale", "shift2", "scale2"};
constexpr const char* kResidualInputs[7] = {"x", "branch", "gate", "shift", "scale", "branch2", "gate2"};
constexpr const char* kResidualQuantInputs[9] = {"x",       "branch", "gate",   "shift", "scale",
                                                 "branch2", "gate2",  "shift2", "scale2"};
// kPair: shift2's index (then scale2), or 0 where the op has no second modulation.
template <int K>
struct Inputs {
  static constexpr size_t kCount = 3;
  static constexpr size_t kOptional = 0;
  static constexpr size_t kShift = 1;  // then scale
  static constexpr size_t kPair = 0;
  static constexpr const char* const (&kNames)[kCount] = kModulateInputs;
};
template <>
struct Inputs<kQuant> {
  static constexpr size_t kCount = 5;
  static constexpr size_t kOptional = 2;
  static constexpr size_t kShift = 1;
  static constexpr size_t kPair = 3;
  static constexpr const char* const (&kNames)[kCount] = kQuantInputs;
};
template <>
struct Inputs<kResidual> {
  static constexpr size_t kCount = 7;
  static constexpr size_t kOptional = 2;
  static constexpr size_t kShift = 3;
  static constexpr size_t kBranch2 = 5;  // then gate2
  static constexpr size_t kPair = 0;
  static constexpr const char* const (&kNames)[kCount] = kResidualInputs;
};
template <>
struct Inputs<kResidualQuant> {
  static constexpr size_t kCount = 9;
  static constexpr size_t kOptional = 4;
  static constexpr size_t kShift = 3;
  static constexpr size_t kBranch2 = 5;
  static constexpr size_t kPair = 7;
  static constexpr const char* const (&kNames)[kCount] = kResidualQuantInputs;
};
constexpr float kDefaultEpsilon = 1e-6f;
// Rows per CPU task: about this many elements, so small rows are not one task each.
constexpr int64_t kElementsPerTask = 1 << 15;

struct Kernel {
  const OrtApi* api = nullptr;
  const char* name = nullptr;  // the op's
  Device device = Device::cpu;
  Dtype dtype = Dtype::f32;
  float epsilon = kDefaultEpsilon;
  // act_scaling "delayed_tensor" (else "token"), and its state: the CPU's amax history, or the GPU's
  // device state. The mutex makes calls of one instance take their turns with it.
  bool delayed = false;
  Fp8DelayedConfig delayed_config;
  std::mutex mutex;
  Fp8DelayedHistory history;
#ifdef ATELIER_WITH_CUDA
  AdaLnDelayedCuda cuda;

  ~Kernel() { adaln_delayed_cuda_release(cuda); }
#endif
};

// y (x8) has x's shape, act_scale x's without its last axis. ORT can only be told known or named
// dimensions, so when x has a dimension that is neither (or an unknown rank) they are left to run time.
template <int K>
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
  if (K != kQuant) ATELIER_RETURN_IF_ERROR(ort::ShapeInferContext_SetOutputTypeShape(api)(context, 0, x));
  if (K == kResidual) return ort::ShapeInferContext_SetOutputTypeShape(api)(context, 1, x);
  if (K == kModulate) return nullptr;
  const size_t first = K == kResidualQuant ? 1 : 0;  // x8's index
  for (int i = 0; i < 3; ++i)
    if (dims[i] >= 0 || names[i] == nullptr) names[i] = "";
  // x8, act_scale, and x8_2, act_scale_2 when the node has the pair's inputs (then it has their
  // outputs: Net always adds both). Only outputs the node has may be set: ORT 1.29 does not check the
  // index (graph.cc's InferenceContextImpl::getOutputType), a write past them corrupts its memory.
  size_t inputs = 0;
  ATELIER_RETURN_IF_ERROR(ort::ShapeInferContext_GetInputCount(api)(context, &inputs));
  const size_t outputs = Inputs<K>::kPair != 0 && inputs > Inputs<K>::kPair ? 4 : 2;
  OrtStatus* status = nullptr;
  for (size_t output = 0; output < outputs && status == nullptr; ++output) {
    OrtTensorTypeAndShapeInfo* info = nullptr;
    ATELIER_RETURN_IF_ERROR(ort::CreateTensorTypeAndShapeInfo(api)(&info));
    const size_t rank = output % 2 == 0 ? 3 : 2;
    status = ort::SetTensorElementType(api)(
        info, output % 2 == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    if (status == nullptr) status = ort::SetDimensions(api)(info, dims, rank);
    if (status == nullptr) status = ort::SetSymbolicDimensions(api)(info, names, rank);
    if (status == nullptr)
      status = ort::ShapeInferContext_SetOutputTypeShape(api)(context, first + output, info);
    ort::ReleaseTensorTypeAndShapeInfo(api)(info);
  }
  return status;
}

// The quantizing ops' act_scaling, amax_margin and amax_history (adaln_modulate.h), checked as
// Fp8Linear checks its output, amax_margin and amax_history (fp8_linear_op.cc). The delayed ones are
// checked whatever act_scaling says, as there.
OrtStatus* scaling_attributes(const OrtApi* api, const OrtKernelInfo* info, const char* op, bool* delayed,
                              Fp8DelayedConfig* config) {
  std::string scaling;
  ATELIER_RETURN_IF_ERROR(glue::string_attribute(api, info, "act_scaling", "token", &scaling));
  if (scaling != "token" && scaling != "delayed_tensor")
    return fail(api, ORT_INVALID_ARGUMENT, "%s: act_scaling must be \"token\" or \"delayed_tensor\", got \"%s\"", op,
                scaling.c_str());
  *delayed = scaling == "delayed_tensor";
  return glue::delayed_attributes(api, info, op, &config->margin, &config->history, kMaxAmaxHistory);
}

template <int K>
OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  const char* kName = kNames[K];
  *out = nullptr;
  float epsilon = kDefaultEpsilon;
  ATELIER_RETURN_IF_ERROR(glue::epsilon_attribute(api, info, kName, kDefaultEpsilon, &epsilon));
  bool delayed = false;
  Fp8DelayedConfig config;
  if (quant_kind(K)) ATELIER_RETURN_IF_ERROR(scaling_attributes(api, info, kName, &delayed, &config));
  const CustomOp& me = self(op);
  Kernel* kernel = new (std::nothrow) Kernel;
  if (kernel != nullptr) {
    kernel->api = api;
    kernel->name = kName;
    kernel->device = me.device;
    kernel->dtype = me.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? Dtype::f16 : Dtype::f32;
    kernel->epsilon = epsilon;
    kernel->delayed = delayed;
    kernel->delayed_config = config;
#ifdef ATELIER_WITH_CUDA
    kernel->cuda.config = config;
#endif
  }
  return glue::created(api, kName, kernel, out);
}

OrtStatus* run_cpu(Kernel& kernel, OrtKernelContext* context, const AdaLnArgs& args) {
  const int64_t rows = args.batch * args.tokens;
  const int64_t rows_per_task = kElementsPerTask / args.channels;
  if (!kernel.delayed)
    return glue::parallel_rows(kernel.api, context, rows, rows_per_task, [&](int64_t begin, int64_t end) {
      adaln_modulate_cpu(args, kernel.dtype, begin, end);
    });
  // act_scaling "delayed_tensor": the float16-rounded rows in parallel into one float32 buffer, then
  // Fp8Linear's delayed quantization of the whole tensor with this instance's history.
  std::vector<float> values(static_cast<size_t>(rows * args.channels));
  AdaLnArgs rounded = args;
  rounded.y16 = values.data();
  const auto round_rows = [&](int64_t begin, int64_t end) { adaln_modulate_cpu(rounded, kernel.dtype, begin, end); };
  ATELIER_RETURN_IF_ERROR(glue::parallel_rows(kernel.api, context, rows, rows_per_task, round_rows));
  std::lock_guard<std::mutex> lock(kernel.mutex);
  delayed_quantize_cpu(kernel.history, kernel.delayed_config, values.data(), rows, args.channels, args.x8,
                       args.act_scale);
  return nullptr;
}

OrtStatus* run_cuda(Kernel& kernel, OrtKernelContext* context, const AdaLnArgs& args) {
#ifdef ATELIER_WITH_CUDA
  if (!kernel.delayed)
    return glue::launch_cuda(kernel.api, context, kernel.name,
                             [&](void* stream) { return adaln_modulate_cuda(args, kernel.dtype, stream); });
  void* stream = nullptr;
  ATELIER_RETURN_IF_ERROR(glue::cuda_stream(kernel.api, context, kernel.name, &stream));
  char error[384] = "";
  std::lock_guard<std::mutex> lock(kernel.mutex);
  if (!adaln_modulate_cuda_delayed(args, kernel.dtype, kernel.cuda, stream, error, sizeof error))
    return fail(kernel.api, ORT_FAIL, "%s: %s", kernel.name, error);
  return nullptr;
#else
  (void)context;
  (void)args;
  return glue::without_cuda(kernel.api, kernel.name);
#endif
}

template <int K>
OrtStatus* compute(void* state, OrtKernelContext* context) {
  const char* kName = kNames[K];
  constexpr size_t kCount = Inputs<K>::kCount;
  const auto& input_names = Inputs<K>::kNames;
  Kernel& kernel = *static_cast<Kernel*>(state);
  const OrtApi* api = kernel.api;
  const OrtValue* inputs[kCount];
  int64_t dims[kCount][3];
  ATELIER_RETURN_IF_ERROR(glue::rank3_inputs(api, context, kName, input_names, inputs, dims, Inputs<K>::kOptional));
  if constexpr (residual_kind(K)) {
    constexpr size_t kBranch2 = Inputs<K>::kBranch2;
    if ((inputs[kBranch2] == nullptr) != (inputs[kBranch2 + 1] == nullptr))
      return fail(api, ORT_INVALID_ARGUMENT, "%s: %s and %s come together, got %s without %s", kName,
                  input_names[kBranch2], input_names[kBranch2 + 1],
                  input_names[inputs[kBranch2] == nullptr ? kBranch2 + 1 : kBranch2],
                  input_names[inputs[kBranch2] == nullptr ? kBranch2 : kBranch2 + 1]);
  }
  // The second modulation: shift2 and scale2 together, per token, with both of its outputs.
  constexpr size_t kPair = Inputs<K>::kPair;
  bool pair = false;
  if constexpr (kPair != 0) {
    pair = inputs[kPair] != nullptr;
    if (pair != (inputs[kPair + 1] != nullptr))
      return fail(api, ORT_INVALID_ARGUMENT, "%s: shift2 and scale2 come together, got %s without %s", kName,
                  pair ? "shift2" : "scale2", pair ? "scale2" : "shift2");
    if (pair && kernel.delayed)
      return fail(api, ORT_INVALID_ARGUMENT,
                  "%s: the second modulation (shift2, scale2) is quantized per token: act_scaling must be "
                  "\"token\", got \"delayed_tensor\"",
                  kName);
    size_t outputs = 0;
    ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutputCount(api)(context, &outputs));
    const size_t needed = (residual_kind(K) ? 3 : 2) + 2;
    if (pair && outputs < needed)
      return fail(api, ORT_INVALID_ARGUMENT, "%s: with shift2 and scale2 the node needs the outputs x8_2 and "
                  "act_scale_2 (%zu outputs), got %zu", kName, needed, outputs);
  }
  const int64_t batch = dims[0][0];
  const int64_t tokens = dims[0][1];
  const int64_t channels = dims[0][2];
  for (size_t i = 1; i < kCount; ++i) {
    if (inputs[i] == nullptr) continue;  // an optional one left out
    // The residual ops' branches (inputs 1 and 5) have x's shape, every other input is [B, 1, C].
    const bool rows = residual_kind(K) && (i == 1 || i == 5);
    if (dims[i][0] != batch || dims[i][1] != (rows ? tokens : 1) || dims[i][2] != channels) {
      const auto n = [](int64_t v) { return static_cast<long long>(v); };
      if (rows)
        return fail(api, ORT_INVALID_ARGUMENT, "%s: %s must be x's shape [%lld, %lld, %lld], got [%lld, %lld, %lld]",
                    kName, input_names[i], n(batch), n(tokens), n(channels), n(dims[i][0]), n(dims[i][1]),
                    n(dims[i][2]));
      return fail(api, ORT_INVALID_ARGUMENT,
                  "%s: %s must be [B, 1, C] = [%lld, 1, %lld] for x [%lld, %lld, %lld], got [%lld, %lld, %lld]",
                  kName, input_names[i], n(batch), n(channels), n(batch), n(tokens), n(channels), n(dims[i][0]),
                  n(dims[i][1]), n(dims[i][2]));
    }
  }

  // Outputs: y | x8, act_scale | residual, x8, act_scale | residual, y; then x8_2, act_scale_2 (pair).
  constexpr size_t kX8 = residual_kind(K) ? 1 : 0;  // x8's or y's index
  OrtValue* first = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 0, dims[0], 3, &first));
  OrtValue* codes = first;  // x8, or y
  if (residual_kind(K)) ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, kX8, dims[0], 3, &codes));
  OrtValue* scales = nullptr;  // act_scale [B, T]
  if (quant_kind(K)) ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, kX8 + 1, dims[0], 2, &scales));
  OrtValue* codes2 = nullptr;
  OrtValue* scales2 = nullptr;
  if (pair) {
    ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, kX8 + 2, dims[0], 3, &codes2));
    ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, kX8 + 3, dims[0], 2, &scales2));
  }
  if (batch * tokens == 0 || channels == 0) return nullptr;

  void* data[kCount + 1];
  ATELIER_RETURN_IF_ERROR(glue::data_pointers(api, inputs, first, data));
  AdaLnArgs args{};
  args.x = data[0];
  args.shift = data[Inputs<K>::kShift];
  args.scale = data[Inputs<K>::kShift + 1];
  args.batch = batch;
  args.tokens = tokens;
  args.channels = channels;
  args.epsilon = kernel.epsilon;
  if (K == kModulate) {
    args.y = data[kCount];
  } else if (K == kResidual) {
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(codes, &args.y));
  } else {
    void* x8 = nullptr;
    void* act_scale = nullptr;
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(codes, &x8));
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(scales, &act_scale));
    args.x8 = static_cast<uint8_t*>(x8);
    args.act_scale = static_cast<float*>(act_scale);
  }
  if (pair) {
    void* x8 = nullptr;
    void* act_scale = nullptr;
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(codes2, &x8));
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(scales2, &act_scale));
    args.shift2 = data[kPair];
    args.scale2 = data[kPair + 1];
    args.x8_2 = static_cast<uint8_t*>(x8);
    args.act_scale_2 = static_cast<float*>(act_scale);
  }
  if constexpr (residual_kind(K)) {
    args.branch = data[1];
    args.gate = data[2];
    args.residual = data[kCount];
    args.branch2 = data[Inputs<K>::kBranch2];  // null without the second branch
    args.gate2 = data[Inputs<K>::kBranch2 + 1];
  }
  return kernel.device == Device::cuda ? run_cuda(kernel, context, args) : run_cpu(kernel, context, args);
}

template <int K>
struct AdaLnOp : glue::Callbacks<Kernel, create_kernel<K>, compute<K>, infer_shape<K>> {
  static constexpr const char* kName = kNames[K];
  static constexpr size_t kInputCount = Inputs<K>::kCount;
  static constexpr size_t kOptionalInputs = Inputs<K>::kOptional;
};

// AdaLNModulateQuant: x8, act_scale, and the second modulation's x8_2, act_scale_2 (optional).
ONNXTensorElementDataType quant_output_type(const OrtCustomOp*, size_t index) {
  return index % 2 == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
size_t quant_output_count(const OrtCustomOp*) { return 4; }
OrtCustomOpInputOutputCharacteristic quant_output_characteristic(const OrtCustomOp*, size_t index) {
  return index >= 2 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}

// AdaLNResidualQuant: the residual in the entry's type, then x8 and act_scale (and x8_2, act_scale_2).
ONNXTensorElementDataType residual_output_type(const OrtCustomOp* op, size_t index) {
  return index == 0 ? glue::self(op).type : quant_output_type(op, index - 1);
}
size_t residual_output_count(const OrtCustomOp*) { return 5; }
OrtCustomOpInputOutputCharacteristic residual_output_characteristic(const OrtCustomOp* op, size_t index) {
  return index == 0 ? INPUT_OUTPUT_REQUIRED : quant_output_characteristic(op, index - 1);
}
// AdaLNResidual: the residual and y, both in the entry's type.
size_t two_outputs(const OrtCustomOp*) { return 2; }

}  // namespace

CustomOp make_adaln_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  return glue::make_op<AdaLnOp<kModulate>>(device, type, api);
}

CustomOp make_adaln_quant_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  CustomOp op = glue::make_op<AdaLnOp<kQuant>>(device, type, api);
  op.base.GetOutputType = quant_output_type;
  op.base.GetOutputTypeCount = quant_output_count;
  op.base.GetOutputCharacteristic = quant_output_characteristic;
  return op;
}

CustomOp make_adaln_residual_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  CustomOp op = glue::make_op<AdaLnOp<kResidual>>(device, type, api);
  op.base.GetOutputTypeCount = two_outputs;
  return op;
}

CustomOp make_adaln_residual_quant_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  CustomOp op = glue::make_op<AdaLnOp<kResidualQuant>>(device, type, api);
  op.base.GetOutputType = residual_output_type;
  op.base.GetOutputTypeCount = residual_output_count;
  op.base.GetOutputCharacteristic = residual_output_characteristic;
  return op;
}

}  // namespace atelier
