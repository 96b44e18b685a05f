// JointQkvNorm's glue to ONNX Runtime: kernel creation (the heads and epsilon attributes), shape
// inference, and the compute callback that checks shapes and hands the tensors to a kernel (the
// schema boilerplate is op_glue.h's; three outputs, all of the inputs' element type).
#include <new>

#include "joint_qkv_norm.h"
#include "op_glue.h"
#include "ops.h"

namespace atelier {
namespace {

using glue::fail;
using glue::self;

constexpr const char* kName = "JointQkvNorm";
constexpr size_t kInputCount = 6;
constexpr size_t kSequences = 2;  // context_qkv, x_qkv: rank 3; the rest are the weights, rank 1
constexpr const char* kInputNames[kInputCount] = {"context_qkv", "x_qkv",  "ctx_ln_q",
                                                  "ctx_ln_k",    "x_ln_q", "x_ln_k"};
constexpr size_t kOutputCount = 3;  // q, k, v
constexpr float kDefaultEpsilon = 1e-6f;
// Token rows per CPU task: about this many elements of q, k and v, so small rows are not one task each.
constexpr int64_t kElementsPerTask = 1 << 16;

struct Kernel {
  const OrtApi* api;
  Device device;
  Dtype dtype;
  int64_t heads;
  float epsilon;
};

const auto n = [](int64_t v) { return static_cast<long long>(v); };

// ---- shape inference -----------------------------------------------------------------------------

// q, k and v are [B, Tc + Tx, C]: B from whichever stream knows it (a value over a name), Tc + Tx
// as JointConcat sums them (a value, or the name "Tc+Tx"), C = 3C / 3 when the width is known. ORT
// can only be told known or named dimensions, so when one is neither (a named width among them:
// "3C/3" would name a new dimension) the outputs' shape is left to run time, as it is when known
// values disagree (the kernel then reports them).
OrtStatus* infer_shape(const OrtCustomOp* op, OrtShapeInferContext* context) {
  const OrtApi* api = self(op).api;
  glue::Shape3 context_qkv, x_qkv;
  ATELIER_RETURN_IF_ERROR(glue::input_shape3(api, context, 0, &context_qkv));
  ATELIER_RETURN_IF_ERROR(glue::input_shape3(api, context, 1, &x_qkv));
  if (!context_qkv.ranked3 || !x_qkv.ranked3) return nullptr;

  glue::Dim y[3];
  glue::Dim width;
  if (!glue::common_dim(context_qkv.dims[0], x_qkv.dims[0], &y[0])) return nullptr;
  if (!glue::common_dim(context_qkv.dims[2], x_qkv.dims[2], &width)) return nullptr;
  if (!width.known() || width.value % 3 != 0) return nullptr;
  y[1] = glue::token_sum(context_qkv.dims[1], x_qkv.dims[1]);
  y[2] = glue::Dim{width.value / 3, ""};
  for (const glue::Dim& d : y)
    if (!d.usable()) return nullptr;
  for (size_t output = 0; output < kOutputCount; ++output)
    ATELIER_RETURN_IF_ERROR(glue::set_output_shape3(api, context, output, context_qkv.type, y));
  return nullptr;
}

// ---- kernel --------------------------------------------------------------------------------------

OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  *out = nullptr;
  int64_t heads = 0;
  ATELIER_RETURN_IF_ERROR(glue::heads_attribute(api, info, kName, &heads));
  float epsilon = kDefaultEpsilon;
  ATELIER_RETURN_IF_ERROR(glue::epsilon_attribute(api, info, kName, kDefaultEpsilon, &epsilon));
  const CustomOp& me = self(op);
  const Dtype dtype = me.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? Dtype::f16 : Dtype::f32;
  return glue::created(api, kName, new (std::nothrow) Kernel{api, me.device, dtype, heads, epsilon}, out);
}

OrtStatus* run_cpu(const Kernel& kernel, OrtKernelContext* context, const JointQkvNormArgs& args) {
  return glue::parallel_rows(kernel.api, context, args.rows(), kElementsPerTask / (3 * args.channels()),
                             [&](int64_t begin, int64_t end) { joint_qkv_norm_cpu(args, kernel.dtype, begin, end); });
}

OrtStatus* run_cuda(const Kernel& kernel, OrtKernelContext* context, const JointQkvNormArgs& args) {
#ifdef ATELIER_WITH_CUDA
  return glue::launch_cuda(kernel.api, context, kName,
                           [&](void* stream) { return joint_qkv_norm_cuda(args, kernel.dtype, stream); });
#else
  (void)context;
  (void)args;
  return glue::without_cuda(kernel.api, kName);
#endif
}

// The checks of the inputs' shapes against each other and the heads attribute; head_dim on success.
OrtStatus* check_shapes(const Kernel& kernel, const int64_t (&ctx)[3], const int64_t (&x)[3],
                        const int64_t (&weights)[kInputCount - kSequences][1], int64_t* head_dim) {
  const OrtApi* api = kernel.api;
  if (ctx[0] != x[0] || ctx[2] != x[2])
    return fail(api, ORT_INVALID_ARGUMENT,
                "%s: context_qkv [B, Tc, 3C] and x_qkv [B, Tx, 3C] must agree in B and 3C, got context_qkv [%lld, "
                "%lld, %lld] and x_qkv [%lld, %lld, %lld]",
                kName, n(ctx[0]), n(ctx[1]), n(ctx[2]), n(x[0]), n(x[1]), n(x[2]));
  const int64_t width = ctx[2];
  if (width % (3 * kernel.heads) != 0)
    return fail(api, ORT_INVALID_ARGUMENT,
                "%s: the last axis of context_qkv and x_qkv must be 3C = 3 · heads · head_dim with heads = %lld, got "
                "%lld (not a multiple of %lld)",
                kName, n(kernel.heads), n(width), n(3 * kernel.heads));
  const int64_t d = width / (3 * kernel.heads);
  for (size_t i = 0; i < kInputCount - kSequences; ++i)
    if (weights[i][0] != d)
      return fail(api, ORT_INVALID_ARGUMENT,
                  "%s: %s must be [head_dim] = [%lld] (3C = %lld over 3 · %lld heads), got [%lld]", kName,
                  kInputNames[kSequences + i], n(d), n(width), n(kernel.heads), n(weights[i][0]));
  *head_dim = d;
  return nullptr;
}

OrtStatus* compute(void* state, OrtKernelContext* context) {
  const Kernel& kernel = *static_cast<const Kernel*>(state);
  const OrtApi* api = kernel.api;
  const OrtValue* inputs[kInputCount];
  int64_t sequences[kSequences][3];
  int64_t weights[kInputCount - kSequences][1];
  for (size_t i = 0; i < kInputCount; ++i) {
    ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetInput(api)(context, i, &inputs[i]));
    if (inputs[i] == nullptr) return fail(api, ORT_INVALID_ARGUMENT, "%s: input %s is missing", kName, kInputNames[i]);
    if (i < kSequences)
      ATELIER_RETURN_IF_ERROR(glue::dims_of(api, kName, kInputNames[i], inputs[i], sequences[i]));
    else
      ATELIER_RETURN_IF_ERROR(glue::dims_of(api, kName, kInputNames[i], inputs[i], weights[i - kSequences]));
  }
  const int64_t(&ctx)[3] = sequences[0];
  const int64_t(&x)[3] = sequences[1];
  int64_t head_dim = 0;
  ATELIER_RETURN_IF_ERROR(check_shapes(kernel, ctx, x, weights, &head_dim));

  const int64_t out_dims[3] = {ctx[0], ctx[1] + x[1], ctx[2] / 3};
  OrtValue* outputs[kOutputCount];
  for (size_t i = 0; i < kOutputCount; ++i)
    ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, i, out_dims, 3, &outputs[i]));
  if (out_dims[0] * out_dims[1] * out_dims[2] == 0) return nullptr;

  void* data[kInputCount + kOutputCount];
  ATELIER_RETURN_IF_ERROR(glue::data_pointers(api, inputs, outputs, data));
  const JointQkvNormArgs args{data[0], data[1], data[2], data[3], data[4],    data[5],      data[6],
                              data[7], data[8], ctx[0],  ctx[1],  x[1],       kernel.heads, head_dim,
                              kernel.epsilon};
  return kernel.device == Device::cuda ? run_cuda(kernel, context, args) : run_cpu(kernel, context, args);
}

struct JointQkvNormOp : glue::Callbacks<Kernel, create_kernel, compute, infer_shape> {
  static constexpr const char* kName = atelier::kName;
  static constexpr size_t kInputCount = atelier::kInputCount;
};

size_t output_count(const OrtCustomOp*) { return kOutputCount; }

}  // namespace

CustomOp make_joint_qkv_norm_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  CustomOp op = glue::make_op<JointQkvNormOp>(device, type, api);
  op.base.GetOutputTypeCount = output_count;
  return op;
}

}  // namespace atelier
