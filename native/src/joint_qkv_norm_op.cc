// JointQkvNorm's glue to ONNX Runtime: kernel creation (the heads and epsilon attributes), shape
// inference, and the compute callback that checks shapes and hands the tensors to a kernel (the
// schema boilerplate is op_glue.h's; three outputs, all of the inputs' element type).
#include <cmath>
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
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_int64(api)(info, "heads", &heads)) {
    ort::ReleaseStatus(api)(absent);
    return fail(api, ORT_INVALID_ARGUMENT, "%s: the attribute heads (an int, C = heads · head_dim) is required",
                kName);
  }
  if (heads < 1) return fail(api, ORT_INVALID_ARGUMENT, "%s: heads must be at least 1, got %lld", kName, n(heads));
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
  Kernel* kernel = new (std::nothrow) Kernel{api, me.device, dtype, heads, epsilon};
  if (kernel == nullptr) return fail(api, ORT_FAIL, "%s: out of memory", kName);
  *out = kernel;
  return nullptr;
}

struct CpuTask {
  const JointQkvNormArgs* args;
  Dtype dtype;
  int64_t rows;
  int64_t rows_per_task;
};

void run_cpu_task(void* data, size_t index) {
  const CpuTask& task = *static_cast<const CpuTask*>(data);
  const int64_t begin = static_cast<int64_t>(index) * task.rows_per_task;
  const int64_t end = begin + task.rows_per_task < task.rows ? begin + task.rows_per_task : task.rows;
  joint_qkv_norm_cpu(*task.args, task.dtype, begin, end);
}

OrtStatus* run_cpu(const Kernel& kernel, OrtKernelContext* context, const JointQkvNormArgs& args) {
  const int64_t rows = args.rows();
  int64_t per_task = kElementsPerTask / (3 * args.channels());
  if (per_task < 1) per_task = 1;
  const int64_t tasks = (rows + per_task - 1) / per_task;
  if (tasks == 1) {
    joint_qkv_norm_cpu(args, kernel.dtype, 0, rows);
    return nullptr;
  }
  CpuTask task{&args, kernel.dtype, rows, per_task};
  return ort::KernelContext_ParallelFor(kernel.api)(context, run_cpu_task, static_cast<size_t>(tasks), 0, &task);
}

OrtStatus* run_cuda(const Kernel& kernel, OrtKernelContext* context, const JointQkvNormArgs& args) {
#ifdef ATELIER_WITH_CUDA
  void* stream = nullptr;
  ATELIER_RETURN_IF_ERROR(glue::cuda_stream(kernel.api, context, kName, &stream));
  if (const char* error = joint_qkv_norm_cuda(args, kernel.dtype, stream))
    return fail(kernel.api, ORT_FAIL, "%s: CUDA kernel launch failed: %s", kName, error);
  return nullptr;
#else
  (void)context;
  (void)args;
  return fail(kernel.api, ORT_FAIL, "%s: this library was built without CUDA", kName);
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
  for (size_t i = 0; i < kInputCount; ++i)
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(const_cast<OrtValue*>(inputs[i]), &data[i]));
  for (size_t i = 0; i < kOutputCount; ++i)
    ATELIER_RETURN_IF_ERROR(ort::GetTensorMutableData(api)(outputs[i], &data[kInputCount + i]));
  const JointQkvNormArgs args{data[0], data[1], data[2], data[3], data[4],    data[5],      data[6],
                              data[7], data[8], ctx[0],  ctx[1],  x[1],       kernel.heads, head_dim,
                              kernel.epsilon};
  return kernel.device == Device::cuda ? run_cuda(kernel, context, args) : run_cpu(kernel, context, args);
}

struct JointQkvNormOp {
  using Kernel = atelier::Kernel;
  static constexpr const char* kName = atelier::kName;
  static constexpr size_t kInputCount = atelier::kInputCount;
  static constexpr auto create = create_kernel;
  static constexpr auto compute = atelier::compute;
  static constexpr auto infer_shape = atelier::infer_shape;
};

size_t output_count(const OrtCustomOp*) { return kOutputCount; }

}  // namespace

CustomOp make_joint_qkv_norm_op(Device device, ONNXTensorElementDataType type, const OrtApi* api) {
  CustomOp op = glue::make_op<JointQkvNormOp>(device, type, api);
  op.base.GetOutputTypeCount = output_count;
  return op;
}

}  // namespace atelier
