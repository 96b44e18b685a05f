// JointConcat's glue to ONNX Runtime: kernel creation, shape inference, and the compute callback
// that checks shapes and hands the tensors to a kernel (the schema boilerplate is op_glue.h's).
#include <new>

#include "joint_concat.h"
#include "op_glue.h"
#include "ops.h"

namespace atelier {
namespace {

using glue::fail;
using glue::self;

constexpr const char* kName = "JointConcat";
constexpr size_t kInputCount = 2;  // a, b
constexpr const char* kInputNames[kInputCount] = {"a", "b"};
// Bytes of y per CPU task, so a large copy spreads over ORT's thread pool and a small one does not.
constexpr int64_t kBytesPerTask = 1 << 20;

struct Kernel {
  const OrtApi* api;
  Device device;
  int64_t element_size;
};

int64_t element_size(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return 2;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return 8;
    default:
      return 4;
  }
}

// ---- shape inference -----------------------------------------------------------------------------

// y [B, Ta + Tb, C] with B and C from whichever input knows them (a value over a name), and
// Ta + Tb as a value when both are known, else as the name "Ta+Tb" (e.g. "tokens+4096"). ORT can
// only be told known or named dimensions, so when one is neither y's shape is left to run time; so
// is it when known values of B or C differ (ORT ignores an error from shape inference: the kernel
// reports it at the first run).
OrtStatus* infer_shape(const OrtCustomOp* op, OrtShapeInferContext* context) {
  const OrtApi* api = self(op).api;
  glue::Shape3 a, b;
  ATELIER_RETURN_IF_ERROR(glue::input_shape3(api, context, 0, &a));
  ATELIER_RETURN_IF_ERROR(glue::input_shape3(api, context, 1, &b));
  if (!a.ranked3 || !b.ranked3) return nullptr;

  glue::Dim y[3];
  for (int axis : {0, 2})
    if (!glue::common_dim(a.dims[axis], b.dims[axis], &y[axis])) return nullptr;
  y[1] = glue::token_sum(a.dims[1], b.dims[1]);
  for (const glue::Dim& d : y)
    if (!d.usable()) return nullptr;
  return glue::set_output_shape3(api, context, 0, a.type, y);
}

// ---- kernel --------------------------------------------------------------------------------------

OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo*, void** out) {
  const CustomOp& me = self(op);
  return glue::created(api, kName, new (std::nothrow) Kernel{api, me.device, element_size(me.type)}, out);
}

// The copy is split by bytes of y, not by rows.
OrtStatus* run_cpu(const Kernel& kernel, OrtKernelContext* context, const JointConcatArgs& args) {
  return glue::parallel_rows(kernel.api, context, args.batch * args.y_row_bytes(), kBytesPerTask,
                             [&](int64_t begin, int64_t end) { joint_concat_cpu(args, begin, end); });
}

OrtStatus* run_cuda(const Kernel& kernel, OrtKernelContext* context, const JointConcatArgs& args) {
#ifdef ATELIER_WITH_CUDA
  return glue::launch_cuda(kernel.api, context, kName, [&](void* stream) { return joint_concat_cuda(args, stream); });
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
  const int64_t(&a)[3] = dims[0];
  const int64_t(&b)[3] = dims[1];
  if (a[0] != b[0] || a[2] != b[2]) {
    const auto n = [](int64_t v) { return static_cast<long long>(v); };
    return fail(api, ORT_INVALID_ARGUMENT,
                "%s: a [B, Ta, C] and b [B, Tb, C] must agree in B and C, got a [%lld, %lld, %lld] and b [%lld, "
                "%lld, %lld]",
                kName, n(a[0]), n(a[1]), n(a[2]), n(b[0]), n(b[1]), n(b[2]));
  }

  const int64_t y_dims[3] = {a[0], a[1] + b[1], a[2]};
  OrtValue* output = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 0, y_dims, 3, &output));
  if (y_dims[0] * y_dims[1] * y_dims[2] == 0) return nullptr;

  void* data[kInputCount + 1];
  ATELIER_RETURN_IF_ERROR(glue::data_pointers(api, inputs, output, data));
  const JointConcatArgs args{data[0], data[1], data[2], a[0], a[1], b[1], a[2], kernel.element_size};
  return kernel.device == Device::cuda ? run_cuda(kernel, context, args) : run_cpu(kernel, context, args);
}

struct JointConcatOp : glue::Callbacks<Kernel, create_kernel, compute, infer_shape> {
  static constexpr const char* kName = atelier::kName;
  static constexpr size_t kInputCount = atelier::kInputCount;
};

}  // namespace

CustomOp make_joint_concat_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  return glue::make_op<JointConcatOp>(device, type, api);
}

}  // namespace atelier
