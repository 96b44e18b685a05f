// JointSplitQuant (domain "atelier", version 1): block_mixing's split of the joint attention's
// output into the context's and the image's tokens, handed straight to each stream's output
// projection (atelier:Fp8LinearQ) quantized per token, instead of two Slice copies each read again
// by Fp8Linear's own quantize pass:
//
//   joint [B, T, C] float16, context_tokens [1] int64 (Tc, in host memory: the graph's Shape of the
//   context input)
//   context_x8 [B, Tc, C] float8e4m3fn, context_scale [B, Tc] float32,
//   x_x8 [B, T − Tc, C] float8e4m3fn, x_scale [B, T − Tc] float32
//
// Row (b, t) of joint goes to the context's row (b, t) when t < Tc, else to the image's row
// (b, t − Tc), quantized exactly as Fp8Linear quantizes a row of its x (fp8_linear.h): amax,
// act_scale = amax / 448, codes e4m3(x · 448/amax). So Slice → Fp8Linear and JointSplitQuant →
// Fp8LinearQ are bit-identical on each device, with one pass over the joint tensor (read once,
// codes written once) instead of three (copy out, read for amax, read to quantize).
#pragma once

#include <cstdint>

namespace atelier {

struct JointSplitQuantArgs {
  const uint16_t* joint;  // float16 bits [B, T, C]
  uint8_t* context_x8;    // [B, Tc, C]
  float* context_scale;   // [B, Tc]
  uint8_t* x_x8;          // [B, T − Tc, C]
  float* x_scale;         // [B, T − Tc]
  int64_t batch;
  int64_t tokens;          // T
  int64_t context_tokens;  // Tc
  int64_t channels;        // C
};

// Joint rows [row_begin, row_end) of the flattened [B·T, C] view, on the calling thread.
void joint_split_quant_cpu(const JointSplitQuantArgs& args, int64_t row_begin, int64_t row_end);

#ifdef ATELIER_WITH_CUDA
// Enqueues the kernel on `stream` (a cudaStream_t): no allocation, no synchronisation (capturable).
// Returns null, or a static description of the launch error.
const char* joint_split_quant_cuda(const JointSplitQuantArgs& args, void* stream);
#endif

}  // namespace atelier
