// The few pieces of cuBLASLt (CUDA 13, libcublasLt.so.13) that atelier:Fp8Linear uses, declared
// here because no cuBLAS header is installed on our machines; the library itself is opened with
// dlopen when the first CUDA kernel is created (ONNX Runtime's CUDA provider has it loaded already).
//
// Values are those of NVIDIA's public cuBLASLt documentation (docs.nvidia.com/cuda/cublas, the
// cublasLt API reference: the cublasLtMatmulDescAttributes_t, cublasLtEpilogue_t,
// cublasLtMatmulMatrixScale_t, cublasLtMatmulPreferenceAttributes_t tables) and cudaDataType_t /
// cublasComputeType_t of library_types.h and cublas_api.h. Handles stay opaque; only the two
// structs whose size the caller must know (the algorithm and a heuristic result) are spelled out.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>  // cudaStream_t
#include <library_types.h>  // cudaDataType_t (CUDA_R_16F, CUDA_R_32F, CUDA_R_8F_E4M3)

namespace cublaslt {

using Status = int;  // cublasStatus_t; 0 is CUBLAS_STATUS_SUCCESS
constexpr Status kSuccess = 0;

struct Context;  // cublasLtContext
struct MatmulDescOpaque;
struct MatrixLayoutOpaque;
struct MatmulPreferenceOpaque;
using Handle = Context*;
using MatmulDesc = MatmulDescOpaque*;
using MatrixLayout = MatrixLayoutOpaque*;
using MatmulPreference = MatmulPreferenceOpaque*;

// cublasLtMatmulAlgo_t: 8 × uint64, filled by the heuristic and passed back as is.
struct MatmulAlgo {
  uint64_t data[8];
};

// cublasLtMatmulHeuristicResult_t.
struct HeuristicResult {
  MatmulAlgo algo;
  size_t workspace_size;
  Status state;
  float waves_count;
  int reserved[4];
};

// cublasComputeType_t
constexpr int kCompute32F = 68;  // CUBLAS_COMPUTE_32F
// cublasOperation_t
constexpr int kOpN = 0;  // CUBLAS_OP_N
constexpr int kOpT = 1;  // CUBLAS_OP_T

// cublasLtMatmulDescAttributes_t
enum DescAttribute : int {
  kDescTransA = 3,            // CUBLASLT_MATMUL_DESC_TRANSA (int32 cublasOperation_t)
  kDescTransB = 4,            // CUBLASLT_MATMUL_DESC_TRANSB
  kDescEpilogue = 7,          // CUBLASLT_MATMUL_DESC_EPILOGUE (uint32 cublasLtEpilogue_t)
  kDescBiasPointer = 8,       // CUBLASLT_MATMUL_DESC_BIAS_POINTER (const void*, device)
  kDescAScalePointer = 17,    // CUBLASLT_MATMUL_DESC_A_SCALE_POINTER (const void*, device)
  kDescBScalePointer = 18,    // CUBLASLT_MATMUL_DESC_B_SCALE_POINTER
  kDescDScalePointer = 20,    // CUBLASLT_MATMUL_DESC_D_SCALE_POINTER (const void*, device float)
  kDescAmaxDPointer = 21,     // CUBLASLT_MATMUL_DESC_AMAX_D_POINTER (void*, device float)
  kDescFastAccum = 25,        // CUBLASLT_MATMUL_DESC_FAST_ACCUM (int8)
  kDescBiasDataType = 26,     // CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE (int32 cudaDataType_t)
  kDescAScaleMode = 31,       // CUBLASLT_MATMUL_DESC_A_SCALE_MODE (int32 cublasLtMatmulMatrixScale_t)
  kDescBScaleMode = 32,       // CUBLASLT_MATMUL_DESC_B_SCALE_MODE
};

// cublasLtEpilogue_t
enum Epilogue : uint32_t {
  kEpilogueDefault = 1,   // CUBLASLT_EPILOGUE_DEFAULT
  kEpilogueBias = 4,      // CUBLASLT_EPILOGUE_BIAS
  kEpilogueGelu = 32,     // CUBLASLT_EPILOGUE_GELU
  kEpilogueGeluBias = 36, // CUBLASLT_EPILOGUE_GELU_BIAS (GELU | BIAS)
};

// cublasLtMatmulMatrixScale_t
enum MatrixScale : int32_t {
  kScaleScalar32F = 0,    // CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F (the default)
  kScaleOuterVec32F = 3,  // CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F (cuBLAS 12.9+)
};

// cublasLtMatmulPreferenceAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64)

// The entry points, as function-pointer types (all return cublasStatus_t).
using CreateFn = Status (*)(Handle* handle);
using DestroyFn = Status (*)(Handle handle);
using GetVersionFn = size_t (*)();
using MatmulDescCreateFn = Status (*)(MatmulDesc* desc, int compute_type, cudaDataType_t scale_type);
using MatmulDescDestroyFn = Status (*)(MatmulDesc desc);
using MatmulDescSetAttributeFn = Status (*)(MatmulDesc desc, int attribute, const void* buf, size_t size);
using MatrixLayoutCreateFn = Status (*)(MatrixLayout* layout, cudaDataType_t type, uint64_t rows, uint64_t cols,
                                        int64_t ld);
using MatrixLayoutDestroyFn = Status (*)(MatrixLayout layout);
using MatmulPreferenceCreateFn = Status (*)(MatmulPreference* pref);
using MatmulPreferenceDestroyFn = Status (*)(MatmulPreference pref);
using MatmulPreferenceSetAttributeFn = Status (*)(MatmulPreference pref, int attribute, const void* buf,
                                                  size_t size);
using MatmulAlgoGetHeuristicFn = Status (*)(Handle handle, MatmulDesc desc, MatrixLayout a, MatrixLayout b,
                                            MatrixLayout c, MatrixLayout d, MatmulPreference pref,
                                            int requested, HeuristicResult* results, int* returned);
using MatmulFn = Status (*)(Handle handle, MatmulDesc desc, const void* alpha, const void* a, MatrixLayout a_desc,
                            const void* b, MatrixLayout b_desc, const void* beta, const void* c,
                            MatrixLayout c_desc, void* d, MatrixLayout d_desc, const MatmulAlgo* algo,
                            void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Each symbol we look up, named once: CUBLASLT_SYMBOL(field, exported name, type).
#define ATELIER_CUBLASLT_SYMBOLS(CUBLASLT_SYMBOL)                                                   \
  CUBLASLT_SYMBOL(create, cublasLtCreate, CreateFn)                                                 \
  CUBLASLT_SYMBOL(destroy, cublasLtDestroy, DestroyFn)                                              \
  CUBLASLT_SYMBOL(get_version, cublasLtGetVersion, GetVersionFn)                                    \
  CUBLASLT_SYMBOL(desc_create, cublasLtMatmulDescCreate, MatmulDescCreateFn)                        \
  CUBLASLT_SYMBOL(desc_destroy, cublasLtMatmulDescDestroy, MatmulDescDestroyFn)                     \
  CUBLASLT_SYMBOL(desc_set, cublasLtMatmulDescSetAttribute, MatmulDescSetAttributeFn)               \
  CUBLASLT_SYMBOL(layout_create, cublasLtMatrixLayoutCreate, MatrixLayoutCreateFn)                  \
  CUBLASLT_SYMBOL(layout_destroy, cublasLtMatrixLayoutDestroy, MatrixLayoutDestroyFn)               \
  CUBLASLT_SYMBOL(pref_create, cublasLtMatmulPreferenceCreate, MatmulPreferenceCreateFn)            \
  CUBLASLT_SYMBOL(pref_destroy, cublasLtMatmulPreferenceDestroy, MatmulPreferenceDestroyFn)         \
  CUBLASLT_SYMBOL(pref_set, cublasLtMatmulPreferenceSetAttribute, MatmulPreferenceSetAttributeFn)   \
  CUBLASLT_SYMBOL(heuristic, cublasLtMatmulAlgoGetHeuristic, MatmulAlgoGetHeuristicFn)              \
  CUBLASLT_SYMBOL(matmul, cublasLtMatmul, MatmulFn)

struct Api {
#define ATELIER_CUBLASLT_FIELD(field, symbol, type) type field;
  ATELIER_CUBLASLT_SYMBOLS(ATELIER_CUBLASLT_FIELD)
#undef ATELIER_CUBLASLT_FIELD
};

}  // namespace cublaslt
