// What the attention ops' glue to ONNX Runtime shares (Fp8Attention, FlashAttention): the heads and
// scale attributes, shape inference, the shape checks, and the dispatch to a CPU or CUDA kernel. Each
// op is a Traits struct (below) and one make<Traits> call.
//
//   q, k, v [B, T, H · D] float16; attributes heads (int, required: H), scale (float, default 1/√D)
//   out [B, T, H · D] float16
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <new>

#include "attention.h"
#include "op_glue.h"
#include "ops.h"

namespace atelier {
namespace attention_glue {

// Traits, for one attention op:
//   static constexpr const char* kName;
//   static OrtStatus* run_cpu(const OrtApi*, OrtKernelContext*, const AttentionArgs&);
//   with CUDA: struct Cuda (opaque); static Cuda* cuda_create(char* error, size_t size) (null with a
//   message: this build or machine cannot run it); static void cuda_destroy(Cuda*);
//   static bool cuda_run(Cuda*, const AttentionArgs&, void* stream, char* error, size_t size).
template <class Traits>
struct Kernel {
  const OrtApi* api;
  Device device;
  int64_t heads;
  float scale;  // NaN: 1/√D, known once D is
#ifdef ATELIER_WITH_CUDA
  typename Traits::Cuda* cuda = nullptr;
#endif

  ~Kernel() {
#ifdef ATELIER_WITH_CUDA
    if (cuda != nullptr) Traits::cuda_destroy(cuda);
#endif
  }
};

constexpr size_t kInputCount = 3;
constexpr const char* kInputNames[kInputCount] = {"q", "k", "v"};

inline long long n(int64_t v) { return static_cast<long long>(v); }

// out is q's shape and type.
inline OrtStatus* infer_shape(const OrtCustomOp* op, OrtShapeInferContext* context) {
  const OrtApi* api = glue::self(op).api;
  glue::Shape3 q;
  ATELIER_RETURN_IF_ERROR(glue::input_shape3(api, context, 0, &q));
  if (!q.ranked3) return nullptr;
  for (const glue::Dim& d : q.dims)
    if (!d.usable()) return nullptr;
  return glue::set_output_shape3(api, context, 0, q.type, q.dims);
}

template <class Traits>
OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
  using glue::fail;
  *out = nullptr;
  int64_t heads = 0;
  ATELIER_RETURN_IF_ERROR(glue::heads_attribute(api, info, Traits::kName, &heads));
  float scale = std::nanf("");
  if (OrtStatus* absent = ort::KernelInfoGetAttribute_float(api)(info, "scale", &scale)) {
    ort::ReleaseStatus(api)(absent);
    scale = std::nanf("");
  } else if (!std::isfinite(scale) || scale <= 0) {
    return fail(api, ORT_INVALID_ARGUMENT, "%s: scale must be a finite number > 0, got %g", Traits::kName,
                static_cast<double>(scale));
  }
  auto* kernel = new (std::nothrow) Kernel<Traits>{};
  if (kernel == nullptr) return fail(api, ORT_FAIL, "%s: out of memory", Traits::kName);
  kernel->api = api;
  kernel->device = glue::self(op).device;
  kernel->heads = heads;
  kernel->scale = scale;
#ifdef ATELIER_WITH_CUDA
  if (kernel->device == Device::cuda) {
    char error[384] = "";
    kernel->cuda = Traits::cuda_create(error, sizeof error);
    if (kernel->cuda == nullptr) {
      delete kernel;
      return fail(api, ORT_FAIL, "%s: %s", Traits::kName, error);
    }
  }
#endif
  *out = kernel;
  return nullptr;
}

template <class Traits>
OrtStatus* run_cuda(const Kernel<Traits>& kernel, OrtKernelContext* context, const AttentionArgs& args) {
#ifdef ATELIER_WITH_CUDA
  void* stream = nullptr;
  ATELIER_RETURN_IF_ERROR(glue::cuda_stream(kernel.api, context, Traits::kName, &stream));
  char error[512] = "";
  if (!Traits::cuda_run(kernel.cuda, args, stream, error, sizeof error))
    return glue::fail(kernel.api, ORT_FAIL, "%s: %s", Traits::kName, error);
  return nullptr;
#else
  (void)context;
  (void)args;
  return glue::without_cuda(kernel.api, Traits::kName);
#endif
}

template <class Traits>
OrtStatus* compute(void* state, OrtKernelContext* context) {
  using glue::fail;
  const auto& kernel = *static_cast<const Kernel<Traits>*>(state);
  const OrtApi* api = kernel.api;
  const char* name = Traits::kName;
  const OrtValue* inputs[kInputCount];
  int64_t dims[kInputCount][3];
  ATELIER_RETURN_IF_ERROR(glue::rank3_inputs(api, context, name, kInputNames, inputs, dims));
  for (size_t i = 1; i < kInputCount; ++i)
    if (dims[i][0] != dims[0][0] || dims[i][1] != dims[0][1] || dims[i][2] != dims[0][2])
      return fail(api, ORT_INVALID_ARGUMENT,
                  "%s: q, k and v must have the same shape [B, T, heads · head_dim], got q [%lld, %lld, %lld] and %s "
                  "[%lld, %lld, %lld]",
                  name, n(dims[0][0]), n(dims[0][1]), n(dims[0][2]), kInputNames[i], n(dims[i][0]), n(dims[i][1]),
                  n(dims[i][2]));
  const int64_t width = dims[0][2];
  if (width % kernel.heads != 0)
    return fail(api, ORT_INVALID_ARGUMENT,
                "%s: the last axis of q, k and v must be heads · head_dim with heads = %lld, got %lld", name,
                n(kernel.heads), n(width));
  const int64_t head_dim = width / kernel.heads;
  OrtValue* output = nullptr;
  ATELIER_RETURN_IF_ERROR(ort::KernelContext_GetOutput(api)(context, 0, dims[0], 3, &output));
  if (dims[0][0] * dims[0][1] * width == 0) return nullptr;

  void* data[kInputCount + 1];
  ATELIER_RETURN_IF_ERROR(glue::data_pointers(api, inputs, output, data));
  const float scale = std::isnan(kernel.scale) ? 1.0f / std::sqrt(static_cast<float>(head_dim)) : kernel.scale;
  const AttentionArgs args{data[0], data[1], data[2], data[3], dims[0][0], dims[0][1], kernel.heads, head_dim, scale};
  return kernel.device == Device::cuda ? run_cuda<Traits>(kernel, context, args)
                                       : Traits::run_cpu(api, context, args);
}

template <class Traits>
struct Op : glue::Callbacks<Kernel<Traits>, create_kernel<Traits>, compute<Traits>, infer_shape> {
  static constexpr const char* kName = Traits::kName;
  static constexpr size_t kInputCount = attention_glue::kInputCount;
};

// The op's entry: three float16 inputs, one float16 output.
template <class Traits>
CustomOp make(Device device, const OrtApi* api) {
  return glue::make_op<Op<Traits>>(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api);
}

}  // namespace attention_glue
}  // namespace atelier
