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
// Both residual ops (this one and AdaLNResidual below) take two optional inputs after scale, given
// together or not at all: branch2 [B, T, C] and gate2 [B, 1, C] (the element type). With them the
// residual is MMDiT-X's two gated residuals in a row (mmditx.py's post_attention_x: x + gate · attn,
// then + gate2 · attn2): r1 = x + gate · branch as above, residual = r1 + gate2 · branch2, the product
// and the sum again each rounded to the element type. So the op equals Mul → Add → Mul → Add → the
// norm (on the GPU; on the CPU in float32), r1 never written. Without them nothing changes.
//
// Attributes of both quantizing ops, besides epsilon: act_scaling = "token" (default: one scale per
// row, as above) | "delayed_tensor": one scale s for the whole [B, T, C] output, chosen by delayed
// per-tensor scaling exactly as Fp8Linear's output "e4m3_delayed" chooses it (fp8_linear.h), with
// amax_margin (float > 0, default 2.0) and amax_history (int, 1 to kMaxAmaxHistory, default 16)
// meaning what they mean there (both checked whatever act_scaling says). With y16 the float16-rounded
// values that "token" quantizes and amax = max |y16| over the call (NaN if any is NaN), each kernel
// instance keeps the finite amaxes of its last amax_history calls:
//   its first call:  s = amax / 448                          (margin 1: "current" scaling)
//   later calls:     s = amax_margin · max(history) / 448
//   (float32; s = d = 1 where delayed_scale() falls back: a zero or non-finite reference)
//   x8 = e4m3(y16 · d), d = 1/s (round to nearest even, saturating to ±448);  every act_scale = s;
//   then amax joins the history if finite.
// The outputs keep their shapes and types (act_scale [B, T] holds s B·T times), so the next layer
// (the MLP's fc1) can be Fp8LinearQ with scaling "tensor" (cuBLASLt's scalar scales) and write e4m3
// for fc2 itself, which per-token scales forbid. The residual output is the same either way. Each
// device quantizes its own "token" mode's y16, for the amax and the codes alike. On the GPU an
// instance's first call may not be captured into a CUDA graph (it allocates its state and measures
// the amax before it quantizes); later calls can be.
//
// A second modulation of the same norm (both quantizing ops, act_scaling "token" only): two more
// optional inputs after all the others, shift2 [B, 1, C] and scale2 [B, 1, C] (given together), and
// two more outputs after act_scale, x8_2 and act_scale_2, which are AdaLNModulateQuant(residual or x,
// shift2, scale2): MMDiT-X's attn and attn2 read norm1(x) with their own shift and scale
// (mmditx.py's pre_attention_x), so the row is read, summed and normalised once for both. The first
// outputs are the same bits with or without the pair.
//
// AdaLNResidual (domain "atelier", version 1): the same residual fused with AdaLNModulate, for graphs
// whose next layer reads the norm in float16 or float32 (the fp16 C-API step):
//
//   x, branch, gate, shift, scale as above;  residual [B, T, C], y [B, T, C] (x's type):
//   y = AdaLNModulate(residual, shift, scale)
//
// This header is what the op glue (adaln_op.cc) and the kernels (adaln_cpu.cc, adaln_cuda.cu) share.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtype.h"
#include "fp8_linear.h"

namespace atelier {

struct AdaLnArgs {
  const void* x;
  const void* shift;
  const void* scale;
  void* y;             // AdaLNModulate's output, or null
  uint8_t* x8;         // AdaLNModulateQuant's outputs (e4m3 [B·T, C], float32 [B·T]), or null
  float* act_scale;
  // AdaLNResidual(Quant): the row is first x + gate · branch, written to residual; else null.
  const void* branch;
  const void* gate;
  void* residual;
  // Their optional second branch: the row is then x + gate · branch + gate2 · branch2; else null.
  const void* branch2;
  const void* gate2;
  // The second modulation (act_scaling "token"): codes and scales of (row − mean) · rstd · (1 + scale2)
  // + shift2, written like x8 and act_scale; all null without it.
  const void* shift2 = nullptr;
  const void* scale2 = nullptr;
  uint8_t* x8_2 = nullptr;
  float* act_scale_2 = nullptr;
  int64_t batch;
  int64_t tokens;
  int64_t channels;
  float epsilon;
  // CPU, act_scaling "delayed_tensor": the rows' y16 go here (float32 [B·T, C]) instead of being
  // quantized per row; the caller quantizes the whole tensor (delayed_quantize_cpu). Else null.
  float* y16 = nullptr;
};

// Rows [row_begin, row_end) of the flattened [B·T, C] view, on the calling thread.
void adaln_modulate_cpu(const AdaLnArgs& args, Dtype dtype, int64_t row_begin, int64_t row_end);

#ifdef ATELIER_WITH_CUDA
// Enqueues the kernel on `stream` (a cudaStream_t): no allocation, no synchronisation, so it can be
// captured into a CUDA graph. Returns null, or a static description of the launch error.
// (act_scaling "token", and the ops that do not quantize.)
const char* adaln_modulate_cuda(const AdaLnArgs& args, Dtype dtype, void* stream);

// act_scaling "delayed_tensor" on the GPU: one kernel instance's state.
struct AdaLnDelayedCuda {
  Fp8DelayedConfig config;
  float* state = nullptr;  // device: the amax ring and slots (delayed_scaling_cuda.cuh), made at the first call
  int device = -1;         // where state lives
  bool seeded = false;     // the first call was enqueued
};
// The quantizing ops with the delayed per-tensor scale. The instance's first call allocates its state
// (once) and runs four launches; it is refused while `stream` is being captured. Later calls are one
// launch on the same state: no allocation, no synchronisation (graph-capturable). Returns false
// with a message in `error`.
bool adaln_modulate_cuda_delayed(const AdaLnArgs& args, Dtype dtype, AdaLnDelayedCuda& delayed, void* stream,
                                 char* error, size_t error_size);
// Frees the state (on its device); the instance may start again with a first call.
void adaln_delayed_cuda_release(AdaLnDelayedCuda& delayed);
#endif

}  // namespace atelier
