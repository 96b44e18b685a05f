// The library's entry point: ORT's RegisterCustomOpsLibrary_V2 loads this .so and calls
// RegisterCustomOps with the session options being built.
#include <cstdio>

#include "adaln_op.h"
#include "ort_min.h"

namespace atelier {
namespace {

constexpr const char* kDomain = "atelier";

#ifdef ATELIER_WITH_CUDA
constexpr int kOpCount = 4;
#else
constexpr int kOpCount = 2;
#endif

struct OpTable {
  AdaLnOp ops[kOpCount];
};

// The entries ORT keeps pointers to; built once, on first registration (thread-safe static).
const OpTable& op_table(const OrtApi* api) {
  static const OpTable table = {{
      make_adaln_op(Device::cpu, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, api),
      make_adaln_op(Device::cpu, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api),
#ifdef ATELIER_WITH_CUDA
      make_adaln_op(Device::cuda, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, api),
      make_adaln_op(Device::cuda, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, api),
#endif
  }};
  return table;
}

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
  for (const atelier::AdaLnOp& op : atelier::op_table(api).ops)
    if (status == nullptr) status = ort::CustomOpDomain_Add(api)(domain, &op.base);
  if (status == nullptr) status = ort::AddCustomOpDomain(api)(options, domain);
  // Once added, the domain must outlive every session made from these options, which ORT does not
  // track, so it is never released: one small allocation per registration.
  if (status != nullptr) ort::ReleaseCustomOpDomain(api)(domain);
  return status;
}
