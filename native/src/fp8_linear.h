// Fp8Linear (domain "atelier", version 1): a linear layer on FP8 tensor cores, W8A8 with
// per-token dynamic activation scales and per-output-channel weight scales.
//
//   x [..., K] float16, weight [N, K] float8e4m3fn, weight_scale [N] float32, bias [N] float16 (optional)
//   y [..., N] float16
//
// Every row r of x (the tokens, all leading axes flattened to M rows) is quantized on its own:
//   amax[r] = max |x[r, :]|,  act_scale[r] = amax[r] / 448,  inv[r] = amax[r] > 0 ? 448 / amax[r] : 0
//   x8[r, k] = e4m3(x[r, k] · inv[r])          (float32 product, round to nearest even, saturating)
// then
//   acc[r, n] = Σ_k x8[r, k] · w8[n, k]        (float32 accumulation)
//   y[r, n]   = f(acc[r, n] · act_scale[r] · weight_scale[n] + bias[n]),  f = identity or GELU(tanh)
// rounded to float16 once. The weight is [N, K] as checkpoints store linear weights ([out, in]),
// which is also the one FP8 layout cuBLASLt takes on Hopper (both operands K-major, "TN").
//
// Fp8LinearQ (domain "atelier", version 1): the same layer on activations its producer already
// quantized (AdaLNModulateQuant, adaln_modulate.h), so no pass over x of its own:
//
//   x8 [..., K] float8e4m3fn, act_scale [...] float32 (x8's leading axes), weight, weight_scale,
//   bias (optional) as above;  y [..., N] float16
//
// with acc and y as above from the given x8 and act_scale. Same attributes, same scratch and
// capture rules (the scratch then holds no x8 or act_scale). Fp8Linear(x) and Fp8LinearQ(q(x))
// with q the quantization above are bit-identical on each device.
//
// Attributes: activation = "none" (default) | "gelu_tanh"; scaling = "outer_vector" (default:
// cuBLASLt applies both scale vectors, bias and GELU in its epilogue) | "fp32_output" (an unscaled
// FP8 GEMM into a float32 scratch, then our kernel applies scales, bias and GELU: the fallback for
// a cuBLASLt without outer-vector scaling, kept selectable to measure both) | "tensor" (Fp8LinearQ
// only: every weight_scale is the same number, and so is every act_scale — a checkpoint's one scale
// per tensor, broadcast, and a producer that quantized per tensor (Fp8Linear's "e4m3_delayed",
// AdaLN*Quant's act_scaling "delayed_tensor"). cuBLASLt then takes their first elements as its
// scalar A and B scales, the one mode in which it can write e4m3 D itself (output "e4m3_delayed"
// below). The CPU kernel refuses scales that are not uniform; the GPU cannot check without a
// synchronisation, so there the graph builder is trusted); fast_accumulation =
// 0 (default) | 1 (CUBLASLT_MATMUL_DESC_FAST_ACCUM: Hopper accumulates the FP8 products without
// cuBLASLt's periodic promotion to float32: faster, slightly less exact over long K);
// cublaslt_gelu = 1 (default) | 0 (GELU by our kernel after the GEMM even when cuBLASLt's epilogue
// could apply it: in case its GELU is not the tanh form). The CPU kernel computes the same math
// whatever `scaling`, `fast_accumulation` and `cublaslt_gelu` say.
//
// output = "float16" (default: y as above) | "e4m3_delayed": the node writes, instead of y, two
// outputs y8 [..., N] float8e4m3fn and y_scale [...] float32 (y's leading axes, one per row, all the
// same per-tensor scale s) with y ≈ e4m3_to_float(y8) · s. (The ops' outputs are y, y8, y_scale,
// each optional with its own type: a node names y alone, or y8 and y_scale with y left empty.)
// The next layer reads them as
// Fp8LinearQ (x8, act_scale) with no quantize pass of its own (the MLP hand-off: fc1 → fc2).
// Delayed per-tensor scaling as NVIDIA Transformer Engine does it, with attributes amax_margin
// (float, default 2.0) and amax_history (int ≥ 1, default 16). Each kernel instance keeps the amaxes
// of its last `amax_history` calls; with v[r, n] the float32 value y would have been rounded from
// (after scales, bias and GELU) and amax = max |v| over the call (NaN if any v is NaN):
//   the instance's first call:  ref = amax,          s = ref / 448           ("current" scaling)
//   later calls:                ref = max(history),  s = amax_margin · ref / 448
//   (float32 arithmetic; d = 1 / s. If ref is 0 or not finite, or s or d is not finite or 0:
//   s = d = 1 — an all-zero output, or a history of zeros or of nothing because the first call's
//   amax was not finite; codes up to ±448 then stay exact or saturate.)
//   y8[r, n] = e4m3(v[r, n] · d)   (round to nearest even, saturating to ±448: values beyond
//                                   ±448·s, an amax that outgrew margin × history, clip)
//   y_scale[r] = s;  then amax is pushed into the history (oldest out) if it is finite.
// The history is per kernel instance, whatever the shapes it sees. On the GPU the codes come from
// the float16 rounding of v when cuBLASLt cannot write e4m3 itself (fp8_linear_cuda.cu says when):
// e4m3(float16(v) · d), and amax of the float16 values; a code differs from the CPU's only where
// that rounding crosses an e4m3 rounding boundary.
// This header is what the op glue (fp8_linear_op.cc) and the kernels (fp8_linear_cpu.cc,
// fp8_linear_cuda.cu) share.
#pragma once

#include <cstddef>
#include <cstdint>

namespace atelier {

enum class Fp8Activation { none, gelu_tanh };
enum class Fp8Scaling { outer_vector, fp32_output, tensor };
enum class Fp8Output { float16, e4m3_delayed };

// The largest finite float8 e4m3fn value: amax maps onto it.
constexpr float kE4m3Max = 448.0f;

struct Fp8LinearArgs {
  const void* x;             // float16 [rows, in_features] (Fp8Linear), or null (Fp8LinearQ)
  const uint8_t* x8;         // e4m3fn [rows, in_features], pre-quantized (Fp8LinearQ), or null
  const float* act_scale;    // [rows], with x8
  const uint8_t* weight;     // e4m3fn [out_features, in_features]
  const float* weight_scale; // [out_features]
  const void* bias;          // float16 [out_features], or null
  void* y;                   // float16 [rows, out_features] (output "float16"), else null
  int64_t rows;
  int64_t in_features;
  int64_t out_features;
  Fp8Activation activation;
  // Last, so that initializers written before they existed still mean what they meant.
  uint8_t* y8 = nullptr;       // e4m3fn [rows, out_features] (output "e4m3_delayed"), else null
  float* y_scale = nullptr;    // [rows], with y8
  float* y_f32 = nullptr;      // CPU only: float32 [rows, out_features] written instead of y (v above)
};

// float → e4m3fn bits: round to nearest even, saturating to ±448 (infinities too), NaN → 0x7f.
uint8_t float_to_e4m3(float value);
float e4m3_to_float(uint8_t bits);

// One row's per-token quantization as above, of values that are float16 numbers held as floats:
// writes the k codes and returns act_scale (amax / 448). Shared by Fp8Linear's CPU kernel and
// AdaLNModulateQuant's, so the two agree bit for bit.
float quantize_row_e4m3(const float* values, int64_t k, uint8_t* codes);

// Delayed per-tensor scaling's state and arithmetic (output "e4m3_delayed"), shared by the CPU
// kernel and, for its host-side bookkeeping, the GPU's.
struct Fp8DelayedConfig {
  float margin = 2.0f;
  int64_t history = 16;
};

// s and d = 1/s from the reference amax (first call: margin 1), with the fallbacks above.
void delayed_scale(float ref, float margin, float* s, float* d);

// The CPU's history: the last `history` finite amaxes, oldest overwritten.
constexpr int64_t kMaxAmaxHistory = 64;
struct Fp8DelayedHistory {
  float ring[kMaxAmaxHistory] = {};  // zeros: an amax is ≥ 0, so unused entries never win the max
  int64_t position = 0;
  bool seeded = false;  // the first call ran
};

// One call's quantization of `values` (rows × n, the float32 v), in place of a float16 y.
void delayed_quantize_cpu(Fp8DelayedHistory& history, const Fp8DelayedConfig& config, const float* values,
                          int64_t rows, int64_t n, uint8_t* y8, float* y_scale);

// Rows [row_begin, row_end) on the calling thread; `weight` decoded to floats ([N, K]).
void fp8_linear_cpu(const Fp8LinearArgs& args, const float* weight, int64_t row_begin, int64_t row_end);

#ifdef ATELIER_WITH_CUDA
// One CUDA kernel instance's state: its cuBLASLt handle and, per problem shape, the matmul
// descriptor, layouts and algorithm chosen once. Opaque to the op glue.
struct Fp8LinearCuda;

// Made when ONNX Runtime creates the kernel (cuBLASLt opened and its handle made here). Returns
// null, or writes why not into `error` and returns the message.
Fp8LinearCuda* fp8_linear_cuda_create(Fp8Scaling scaling, bool fast_accumulation, bool cublaslt_gelu,
                                      Fp8Output output, const Fp8DelayedConfig& delayed, char* error,
                                      size_t error_size);
// Output "float16" (what the GEMM microbenchmark, bench/gpu/gemm-overlap.cu, makes).
inline Fp8LinearCuda* fp8_linear_cuda_create(Fp8Scaling scaling, bool fast_accumulation, bool cublaslt_gelu,
                                             char* error, size_t error_size) {
  return fp8_linear_cuda_create(scaling, fast_accumulation, cublaslt_gelu, Fp8Output::float16, Fp8DelayedConfig{},
                                error, error_size);
}
void fp8_linear_cuda_destroy(Fp8LinearCuda* kernel);

// Enqueues quantization (unless args.x8 is given), GEMM and (if needed) the epilogue on `stream`. A shape seen for the first
// time gets its plan (descriptors, algorithm) and, if the stream's scratch is too small, a larger
// one; both are refused while the stream is being captured. Later calls allocate nothing and never
// synchronise, so they capture into CUDA graphs. Returns false with a message in `error`.
bool fp8_linear_cuda_run(Fp8LinearCuda* kernel, const Fp8LinearArgs& args, void* stream, char* error,
                         size_t error_size);
#endif

}  // namespace atelier
