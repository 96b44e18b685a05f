// JointSplitQuant's glue to ONNX Runtime: its mixed types (float16 joint, int64 context_tokens in
// host memory; e4m3 codes and float32 scales out), kernel creation, and the compute callback that
// checks shapes and hands the tensors to a kernel (the schema boilerplate is op_glue.h's). The
// outputs' token counts depend on context_tokens' value, so shape inference leaves them to run time.
#include <new>

#include "joint_split_quant.h"
#include "op_glue.h"
#include "ops.h"

namespace atelier {
namespace {

using glue::fail;
using glue::self;

constexpr const char* kName = "JointSplitQuant";
// Elements per CPU task, so small problems are not split.
constexpr int64_t kElementsPerTask = 1 << 16;

struct Kernel {
  const OrtApi* api;
  Device device;
};

ONNXTensorElementDataType input_type(const OrtCustomOp*, size_t index) {
  return index == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
}
// context_x8, context_scale, x_x8, x_scale
ONNXTensorElementDataType output_type(const OrtCustomOp*, size_t index) {
  return index % 2 == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
size_t output_count(const OrtCustomOp*) { return 4; }
// The token count is read on the host (the graph's Shape output lives there): no copy, no sync.
OrtMemType input_memory_type(const OrtCustomOp*, size_t index) {
  return index == 1 ? OrtMemTypeCPUInput : OrtMemTypeDefault;
}

OrtStatus* infer_shape(const OrtCustomOp*, OrtShapeInferContext*) { return nullptr; }

OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo*, void** out) {
  return glue::created(api, kName, new (std::nothrow) Kernel{api, self(op).device}, out);
}

OrtStatus* compute(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<const Kernel*>(state);
  const OrtApi* api = kernel.api;
  const OrtValue* joint = nullptr;
  const OrtValue* count = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetInput(api)(context, 0, &joint));
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetInput(api)(context, 1, &count));
  if (joint == nullptr || count == nullptr)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: inputs joint and context_tokens are required", kName);
  int64_t dims[3];
  ATELIER_RETURN_IF_ERROR(glue::dims_of(api, kName, "joint", joint, dims));
  int64_t count_dims[1];
  ATELIER_RETURN_IF_ERROR(glue::dims_of(api, kName, "context_tokens", count, count_dims));
  if (count_dims[0] != 1)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: context_tokens must hold one value, got %lld", kName,
                static_cast<long long>(count_dims[0]));
  void* count_data = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(const_cast<OrtValue*>(count), &count_data));
  const int64_t batch = dims[0], tokens = dims[1], channels = dims[2];
  const int64_t tc = *static_cast<const int64_t*>(count_data);
  if (tc < 0 || tc > tokens)
    return fail(api, ORT_INVALID_ARGUMENT, "%s: context_tokens must be in [0, %lld] for joint [%lld, %lld, %lld], got %lld",
                kName, static_cast<long long>(tokens), static_cast<long long>(batch), static_cast<long long>(tokens),
                static_cast<long long>(channels), static_cast<long long>(tc));

  const int64_t context_dims[3] = {batch, tc, channels};
  const int64_t x_dims[3] = {batch, tokens - tc, channels};
  OrtValue* outputs[4] = {};
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 0, context_dims, 3, &outputs[0]));
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 1, context_dims, 2, &outputs[1]));
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 2, x_dims, 3, &outputs[2]));
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 3, x_dims, 2, &outputs[3]));
  if (batch * tokens == 0 || channels == 0) return nullptr;

  const OrtValue* const sources[1] = {joint};
  void* data[5] = {};
  ATELIER_RETURN_IF_ERROR(glue::data_pointers(api, sources, outputs, data));
  JointSplitQuantArgs args{static_cast<const uint16_t*>(data[0]),
                           static_cast<uint8_t*>(data[1]),
                           static_cast<float*>(data[2]),
                           static_cast<uint8_t*>(data[3]),
                           static_cast<float*>(data[4]),
                           batch,
                           tokens,
                           tc,
                           channels};

  if (kernel.device == Device::cuda) {
#ifdef ATELIER_WITH_CUDA
    return glue::launch_cuda(api, context, kName,
                             [&](void* stream) { return joint_split_quant_cuda(args, stream); });
#else
    return glue::without_cuda(api, kName);
#endif
  }
  return glue::parallel_rows(api, context, batch * tokens, kElementsPerTask / channels,
                             [&](int64_t begin, int64_t end) { joint_split_quant_cpu(args, begin, end); });
}

struct JointSplitQuantOp : glue::Callbacks<Kernel, create_kernel, compute, infer_shape> {
  static constexpr const char* kName = atelier::kName;
  static constexpr size_t kInputCount = 2;
};

}  // namespace

CustomOp make_joint_split_quant_op(Device device, const OrtApi* api) {
  CustomOp op = glue::make_op<JointSplitQuantOp>(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api);
  op.base.GetInputType = input_type;
  op.base.GetOutputType = output_type;
  op.base.GetOutputTypeCount = output_count;
  op.base.GetInputMemoryType = input_memory_type;
  return op;
}

}  // namespace atelier
