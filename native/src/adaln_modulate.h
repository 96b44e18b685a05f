// AdaLNModulate (domain "atelier", version 1): SD3.5 MMDiT's modulate(norm(x), shift, scale).
//
//   x [B, T, C], shift [B, 1, C], scale [B, 1, C], all float32 or all float16
//   y[b, t, :] = (x[b, t, :] − mean) / sqrt(var + epsilon) · (1 + scale[b, 0, :]) + shift[b, 0, :]
//
// mean and the biased variance are over the last axis and kept in float32 or wider whatever the
// element type; y is rounded to the element type once, at the end.
//
// AdaLNModulateQuant (domain "atelier", version 1): the same y, handed straight to an FP8 GEMM
// (atelier:Fp8LinearQ, fp8_linear.h) instead of being written:
//
//   x, shift, scale as above (float32 or float16)
//   x8 [B, T, C] float8e4m3fn, act_scale [B, T] float32
//
// Each row of y is rounded to float16 (whatever the element type: Fp8Linear reads float16), then
// quantized per token exactly as Fp8Linear quantizes its x: amax = max |y16|, act_scale = amax/448,
// x8 = e4m3(y16 · 448/amax). So AdaLNModulateQuant → Fp8LinearQ is bit-identical to AdaLNModulate →
// (Cast to float16 →) Fp8Linear on each device, with one pass over x instead of three (write y, read
// y for amax, read y to quantize) and a quarter of the bytes written. Same epsilon attribute.
//
// AdaLNResidualQuant (domain "atelier", version 1): block_mixing's gated residual, x + gate · y
// (mmditx.py's `x = x + gate.unsqueeze(1) * attn`), fused with the modulated norm of the result that
// the next W8A8 layer reads:
//
//   x [B, T, C], branch [B, T, C], gate [B, 1, C], shift [B, 1, C], scale [B, 1, C]: all float32 or
//   all float16
//   residual [B, T, C] (x's type) = x + gate · branch, the product and the sum each rounded to the
//   element type, as ONNX Runtime's CUDA Mul then Add compute them (float16: __hmul, __hadd; the CPU
//   provider has no float16 Mul or Add and runs such chains in float32, adaln_cpu.cc)
//   x8 [B, T, C] float8e4m3fn, act_scale [B, T] float32: AdaLNModulateQuant(residual, shift, scale)
//
// So Mul → Add → AdaLNModulateQuant (two passes that write and re-read the [B, T, C] tensor, three
// kernels) is one pass: x and branch read once, the residual and the codes written once, the same
// bits. Same epsilon attribute.
//
// AdaLNResidual (domain "atelier", version 1): the same residual fused with AdaLNModulate, for graphs
// whose next layer reads the norm in float16 or float32 (the fp16 C-API step):
//
//   x, branch, gate, shift, scale as above;  residual [B, T, C], y [B, T, C] (x's type):
//   y = AdaLNModulate(residual, shift, scale)
//
// This header is what the op glue (adaln_op.cc) and the kernels (adaln_cpu.cc, adaln_cuda.cu) share.
#pragma once

#include <cstdint>

#include "dtype.h"

namespace atelier {

struct AdaLnArgs {
  const void* x;
  const void* shift;
  const void* scale;
  void* y;             // AdaLNModulate's output, or null
  uint8_t* x8;         // AdaLNModulateQuant's outputs (e4m3 [B·T, C], float32 [B·T]), or null
  float* act_scale;
  // AdaLNResidualQuant: the row is first x + gate · branch, written to residual; else null.
  const void* branch;
  const void* gate;
  void* residual;
  int64_t batch;
  int64_t tokens;
  int64_t channels;
  float epsilon;
};

// Rows [row_begin, row_end) of the flattened [B·T, C] view, on the calling thread.
void adaln_modulate_cpu(const AdaLnArgs& args, Dtype dtype, int64_t row_begin, int64_t row_end);

#ifdef ATELIER_WITH_CUDA
// Enqueues the kernel on `stream` (a cudaStream_t): no allocation, no synchronisation, so it can be
// captured into a CUDA graph. Returns null, or a static description of the launch error.
const char* adaln_modulate_cuda(const AdaLnArgs& args, Dtype dtype, void* stream);
#endif

}  // namespace atelier
