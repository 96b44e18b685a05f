// FlashAttention (domain "atelier", version 1): scaled dot-product attention in float16, on Hopper by
// FlashAttention-3's forward kernel (issue 10: 1.17–1.34× faster than the cuDNN flash kernel ONNX
// Runtime's MultiHeadAttention runs, on SD3.5's shapes at head size 64; bench/NOTES.md).
//
//   q, k, v [B, T, H · D] float16; attributes heads (int, required: H), scale (float, default 1/√D)
//   out[b, i, h·D + d] = Σ_j softmax_j(scale · q[b, i, h]·k[b, j, h]) · v[b, j, h·D + d]   float16
//
// The CPU kernel is the reference: per query row, scores in float32 (products and sums as written),
// their maximum, exp, the sum, then Σ p·v / sum rounded once to float16. FA3 computes the same up to
// its float32 summation order, its exp2-based softmax and the float16 rounding of the probabilities
// before the P·V product (its tensor cores take float16 operands).
//
// The CUDA kernel is FA3's, compiled from FlashAttention's hopper/ sources into this library when
// `native/fa3-deps.sh` has exported them into .gpu/fa3/ (native/library.mjs; nothing of FA3 or CUTLASS
// is committed): head size 64 only (the one instantiation built; every SD3.5 model's), Hopper (sm_90)
// only. Its softmax statistics (one float per query row and head) live in one scratch buffer per
// CUDA stream shared by every FlashAttention kernel; a known shape allocates nothing and never
// synchronises, so it captures into CUDA graphs. Without the sources the library builds as before and
// the CUDA kernel says it was built without FA3 (custom-ops.ts asks the library before choosing it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "attention.h"

namespace atelier {

using FlashAttentionArgs = AttentionArgs;

// The one head size FA3 is instantiated for here.
constexpr int64_t kFlashAttentionHeadDim = 64;

// The CPU kernel on query rows [row_begin, row_end): row r is (b, h, i) with r = (b · H + h) · T + i.
void flash_attention_rows_cpu(const FlashAttentionArgs& args, int64_t row_begin, int64_t row_end);

#ifdef ATELIER_WITH_CUDA
struct FlashAttentionCuda;

// Null with a message in `error` when this build cannot run it (built without FA3).
FlashAttentionCuda* flash_attention_cuda_create(char* error, size_t error_size);
void flash_attention_cuda_destroy(FlashAttentionCuda* kernel);

// Enqueues FA3 on `stream`. False with a message in `error`: not a Hopper GPU, a head size other than
// 64, misaligned tensors, or the stream's scratch would have to grow inside a CUDA graph capture.
bool flash_attention_cuda_run(FlashAttentionCuda* kernel, const FlashAttentionArgs& args, void* stream, char* error,
                              size_t error_size);
#endif

// The features this library was built with, for atelier_ops_features (register.cc).
bool flash_attention_has_fa3();

}  // namespace atelier
