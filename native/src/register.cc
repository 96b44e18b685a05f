// The library's entry point: ORT's RegisterCustomOpsLibrary_V2 loads this .so and calls
// RegisterCustomOps with the session options being built.
#include <cstdio>
#include <string>

#include "flash_attention.h"
#include "ops.h"
#include "ort_min.h"

namespace atelier {
namespace {

constexpr const char* kDomain = "atelier";

// The entries for one execution provider: AdaLNModulate, AdaLNModulateQuant, AdaLNResidual and
// AdaLNResidualQuant float32 and float16, JointConcat float32, float16 and int64, JointQkvNorm float32 and float16,
// Fp8Linear, Fp8LinearQ, JointSplitQuant, Fp8Attention, FlashAttention.
constexpr int kOpsPerDevice = 18;
#ifdef ATELIER_WITH_CUDA
constexpr int kOpCount = 2 * kOpsPerDevice;
#else
constexpr int kOpCount = kOpsPerDevice;
#endif

#define ATELIER_DEVICE_OPS(device)                                           \
  make_adaln_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, api),           \
      make_adaln_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api),     \
      make_adaln_quant_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, api), \
      make_adaln_quant_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api), \
      make_adaln_residual_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, api),  \
      make_adaln_residual_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api), \
      make_adaln_residual_quant_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, api), \
      make_adaln_residual_quant_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api), \
      make_joint_concat_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, api), \
      make_joint_concat_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api), \
      make_joint_concat_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, api), \
      make_joint_qkv_norm_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, api), \
      make_joint_qkv_norm_op(device, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api), \
      make_fp8_linear_op(device, api), make_fp8_linear_q_op(device, api),                            \
      make_joint_split_quant_op(device, api), make_fp8_attention_op(device, api), \
      make_flash_attention_op(device, api)

struct OpTable {
  CustomOp ops[kOpCount];
};

// The entries ORT keeps pointers to; built once, on first registration (thread-safe static).
const OpTable& op_table(const OrtApi* api) {
  static const OpTable table = {{
      ATELIER_DEVICE_OPS(Device::cpu),
#ifdef ATELIER_WITH_CUDA
      ATELIER_DEVICE_OPS(Device::cuda),
#endif
  }};
  return table;
}

#undef ATELIER_DEVICE_OPS

}  // namespace
}  // namespace atelier

extern "C" __attribute__((visibility("default"))) OrtStatus* RegisterCustomOps(OrtSessionOptions* options,
                                                                              const OrtApiBase* base) {
  const OrtApi* api = base->GetApi(ort::kApiVersion);
  if (api == nullptr) {
    // Every ORT has API 1, enough to say why we stop.
    char message[160];
    std::snprintf(message, sizeof message,
                  "the atelier custom-op library needs ONNX Runtime 1.%u or newer, this is %s",
                  ort::kApiVersion, base->GetVersionString());
    return ort::CreateStatus(base->GetApi(1))(ORT_FAIL, message);
  }
  OrtCustomOpDomain* domain = nullptr;
  if (OrtStatus* status = ort::CreateCustomOpDomain(api)(atelier::kDomain, &domain)) return status;
  OrtStatus* status = nullptr;
  for (const atelier::CustomOp& op : atelier::op_table(api).ops)
    if (status == nullptr) status = ort::CustomOpDomain_Add(api)(domain, &op.base);
  if (status == nullptr) status = ort::AddCustomOpDomain(api)(options, domain);
  // Once added, the domain must outlive every session made from these options, which ORT does not
  // track, so it is never released: one small allocation per registration.
  if (status != nullptr) ort::ReleaseCustomOpDomain(api)(domain);
  return status;
}

// What this build can run beyond the ops themselves, space-separated, for the pipeline to choose by
// (src/pipeline/ort/custom-ops.ts): "cuda" (CUDA kernels), "cudnn" (Fp8Attention's cuDNN path),
// "fa3" (FlashAttention's FlashAttention-3 kernel). Static text, never freed.
extern "C" __attribute__((visibility("default"))) const char* atelier_ops_features() {
  static const std::string text = [] {
    std::string t;
    const auto add = [&t](const char* feature) { t += (t.empty() ? "" : " ") + std::string(feature); };
#ifdef ATELIER_WITH_CUDA
    add("cuda");
#endif
#ifdef ATELIER_WITH_CUDNN
    add("cudnn");
#endif
    if (atelier::flash_attention_has_fa3()) add("fa3");
    return t;
  }();
  return text.c_str();
}
