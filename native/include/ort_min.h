// The few pieces of ONNX Runtime's C API (v1.29, API version 29) that our custom-op library uses,
// declared here because no ORT header can be installed on our machines. Everything ORT owns stays
// opaque; OrtApi is only a table of function pointers that we index by slot number.
//
// Why slot numbers are safe: ORT's function table only ever grows at the end, so a slot keeps its
// index in every later release. The indices below are the positions of the fields in
// `struct OrtApi` of the v1.29.0 onnxruntime_c_api.h. Linux only: ORT's calling-convention macro
// is empty there, so plain function pointers match.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

// ---- opaque handles ---------------------------------------------------------------------------
struct OrtApi;
struct OrtStatus;
struct OrtSessionOptions;
struct OrtCustomOpDomain;
struct OrtKernelInfo;
struct OrtKernelContext;
struct OrtValue;
struct OrtTensorTypeAndShapeInfo;
struct OrtShapeInferContext;
struct OrtOpAttr;

// ---- enums (values as ORT defines them; int-sized like C enums, and any value ORT returns fits) ---
enum OrtErrorCode : int {
  ORT_OK = 0,
  ORT_FAIL = 1,
  ORT_INVALID_ARGUMENT = 2,
};

// OrtOpAttrType: what ReadOpAttr reads.
enum OrtOpAttrType : int {
  ORT_OP_ATTR_STRING = 5,
};

// Only the element types this library handles.
enum ONNXTensorElementDataType : int {
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED = 0,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 = 7,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 = 10,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN = 17,
};

enum OrtCustomOpInputOutputCharacteristic : int {
  INPUT_OUTPUT_REQUIRED = 0,
  INPUT_OUTPUT_OPTIONAL = 1,
  INPUT_OUTPUT_VARIADIC = 2,
};

// OrtMemTypeDefault: the input lives where the execution provider keeps its tensors;
// OrtMemTypeCPUInput: in host memory whatever the provider (onnxruntime_c_api.h's values).
enum OrtMemType : int {
  OrtMemTypeCPUInput = -2,
  OrtMemTypeDefault = 0,
};

// ---- entry point table --------------------------------------------------------------------------
struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};

// ---- custom-op description ----------------------------------------------------------------------
// Field order is ORT's (v1.29). ORT reads a field only when `version` is at least the API version
// that introduced it, but reads every field up to that version unconditionally: a field left null
// below the declared version crashes ORT. We fill all of them.
struct OrtCustomOp {
  uint32_t version;

  // Legacy kernel creation (ORT uses CreateKernelV2 from version 16 on when it is set).
  void* (*CreateKernel)(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info);
  const char* (*GetName)(const OrtCustomOp* op);
  // Null means the CPU provider; otherwise e.g. "CUDAExecutionProvider".
  const char* (*GetExecutionProviderType)(const OrtCustomOp* op);
  ONNXTensorElementDataType (*GetInputType)(const OrtCustomOp* op, size_t index);
  size_t (*GetInputTypeCount)(const OrtCustomOp* op);
  ONNXTensorElementDataType (*GetOutputType)(const OrtCustomOp* op, size_t index);
  size_t (*GetOutputTypeCount)(const OrtCustomOp* op);
  void (*KernelCompute)(void* kernel, OrtKernelContext* context);
  void (*KernelDestroy)(void* kernel);

  // Version 8.
  OrtCustomOpInputOutputCharacteristic (*GetInputCharacteristic)(const OrtCustomOp* op, size_t index);
  OrtCustomOpInputOutputCharacteristic (*GetOutputCharacteristic)(const OrtCustomOp* op, size_t index);
  // Version 13.
  OrtMemType (*GetInputMemoryType)(const OrtCustomOp* op, size_t index);
  // Version 14 (variadic inputs/outputs).
  int (*GetVariadicInputMinArity)(const OrtCustomOp* op);
  int (*GetVariadicInputHomogeneity)(const OrtCustomOp* op);
  int (*GetVariadicOutputMinArity)(const OrtCustomOp* op);
  int (*GetVariadicOutputHomogeneity)(const OrtCustomOp* op);
  // Version 16: creation and compute that report errors as a status.
  OrtStatus* (*CreateKernelV2)(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info,
                               void** kernel);
  OrtStatus* (*KernelComputeV2)(void* kernel, OrtKernelContext* context);
  // Version 17: shape inference and the op's version range.
  OrtStatus* (*InferOutputShapeFn)(const OrtCustomOp* op, OrtShapeInferContext* context);
  int (*GetStartVersion)(const OrtCustomOp* op);
  int (*GetEndVersion)(const OrtCustomOp* op);
  // Version 18 and later: in-place and aliasing hints (read only when `version` is that new).
  size_t (*GetMayInplace)(int** input_index, int** output_index);
  void (*ReleaseMayInplace)(int* input_index, int* output_index);
  size_t (*GetAliasMap)(int** input_index, int** output_index);
  void (*ReleaseAliasMap)(int* input_index, int* output_index);
};

}  // extern "C"

namespace ort {

// The OrtCustomOp version this library declares and the OrtApi version it asks for: 17 gives
// status-returning kernels (16) and shape inference (17), and everything we call existed by then.
constexpr uint32_t kApiVersion = 17;

// Each OrtApi slot we call, named once: ORT_SLOT(index, name, return type, parameters).
#define ATELIER_ORT_SLOTS(ORT_SLOT)                                                                     \
  ORT_SLOT(0, CreateStatus, OrtStatus*, (OrtErrorCode code, const char* message))                      \
  ORT_SLOT(26, CreateCustomOpDomain, OrtStatus*, (const char* domain, OrtCustomOpDomain** out))         \
  ORT_SLOT(27, CustomOpDomain_Add, OrtStatus*, (OrtCustomOpDomain * domain, const OrtCustomOp* op))    \
  ORT_SLOT(28, AddCustomOpDomain, OrtStatus*, (OrtSessionOptions * options, OrtCustomOpDomain* domain)) \
  ORT_SLOT(51, GetTensorMutableData, OrtStatus*, (OrtValue * value, void** out))                       \
  ORT_SLOT(57, CreateTensorTypeAndShapeInfo, OrtStatus*, (OrtTensorTypeAndShapeInfo** out))             \
  ORT_SLOT(58, SetTensorElementType, OrtStatus*,                                                       \
           (OrtTensorTypeAndShapeInfo * info, ONNXTensorElementDataType type))                         \
  ORT_SLOT(59, SetDimensions, OrtStatus*,                                                              \
           (OrtTensorTypeAndShapeInfo * info, const int64_t* dims, size_t count))                      \
  ORT_SLOT(60, GetTensorElementType, OrtStatus*,                                                       \
           (const OrtTensorTypeAndShapeInfo* info, ONNXTensorElementDataType* out))                    \
  ORT_SLOT(61, GetDimensionsCount, OrtStatus*, (const OrtTensorTypeAndShapeInfo* info, size_t* out))    \
  ORT_SLOT(62, GetDimensions, OrtStatus*,                                                              \
           (const OrtTensorTypeAndShapeInfo* info, int64_t* dims, size_t count))                       \
  ORT_SLOT(63, GetSymbolicDimensions, OrtStatus*,                                                      \
           (const OrtTensorTypeAndShapeInfo* info, const char** names, size_t count))                  \
  ORT_SLOT(65, GetTensorTypeAndShape, OrtStatus*, (const OrtValue* value, OrtTensorTypeAndShapeInfo** out)) \
  ORT_SLOT(85, KernelInfoGetAttribute_float, OrtStatus*,                                               \
           (const OrtKernelInfo* info, const char* name, float* out))                                  \
  ORT_SLOT(86, KernelInfoGetAttribute_int64, OrtStatus*,                                               \
           (const OrtKernelInfo* info, const char* name, int64_t* out))                                \
  ORT_SLOT(87, KernelInfoGetAttribute_string, OrtStatus*,                                              \
           (const OrtKernelInfo* info, const char* name, char* out, size_t* size))                     \
  ORT_SLOT(88, KernelContext_GetInputCount, OrtStatus*, (const OrtKernelContext* context, size_t* out)) \
  ORT_SLOT(89, KernelContext_GetOutputCount, OrtStatus*, (const OrtKernelContext* context, size_t* out)) \
  ORT_SLOT(90, KernelContext_GetInput, OrtStatus*,                                                     \
           (const OrtKernelContext* context, size_t index, const OrtValue** out))                      \
  ORT_SLOT(91, KernelContext_GetOutput, OrtStatus*,                                                    \
           (OrtKernelContext * context, size_t index, const int64_t* dims, size_t count, OrtValue** out)) \
  ORT_SLOT(93, ReleaseStatus, void, (OrtStatus * status))                                              \
  ORT_SLOT(99, ReleaseTensorTypeAndShapeInfo, void, (OrtTensorTypeAndShapeInfo * info))               \
  ORT_SLOT(101, ReleaseCustomOpDomain, void, (OrtCustomOpDomain * domain))                            \
  ORT_SLOT(193, KernelContext_GetGPUComputeStream, OrtStatus*, (const OrtKernelContext* context, void** out)) \
  ORT_SLOT(267, ShapeInferContext_GetInputCount, OrtStatus*, (const OrtShapeInferContext* context, size_t* out)) \
  ORT_SLOT(268, ShapeInferContext_GetInputTypeShape, OrtStatus*,                                       \
           (const OrtShapeInferContext* context, size_t index, OrtTensorTypeAndShapeInfo** out))       \
  ORT_SLOT(269, ShapeInferContext_GetAttribute, OrtStatus*,                                            \
           (const OrtShapeInferContext* context, const char* name, const OrtOpAttr** attr))            \
  ORT_SLOT(270, ShapeInferContext_SetOutputTypeShape, OrtStatus*,                                      \
           (const OrtShapeInferContext* context, size_t index, const OrtTensorTypeAndShapeInfo* info)) \
  ORT_SLOT(271, SetSymbolicDimensions, OrtStatus*,                                                     \
           (OrtTensorTypeAndShapeInfo * info, const char** names, size_t count))                       \
  ORT_SLOT(272, ReadOpAttr, OrtStatus*,                                                                \
           (const OrtOpAttr* attr, OrtOpAttrType type, void* data, size_t length, size_t* out))        \
  ORT_SLOT(274, KernelContext_ParallelFor, OrtStatus*,                                                 \
           (const OrtKernelContext* context, void (*fn)(void*, size_t), size_t total, size_t batches,  \
            void* user_data))

// For each slot: a function-pointer type `<name>_fn` and an accessor `<name>(api)` that reads the
// table entry, so a call reads `ort::CreateStatus(api)(ORT_FAIL, "…")`.
#define ATELIER_ORT_ACCESSOR(index, name, ret, params)                 \
  using name##_fn = ret(*) params;                                     \
  inline name##_fn name(const OrtApi* api) {                           \
    return reinterpret_cast<const name##_fn*>(api)[index];             \
  }
ATELIER_ORT_SLOTS(ATELIER_ORT_ACCESSOR)
#undef ATELIER_ORT_ACCESSOR

}  // namespace ort
