// Fp8Attention (domain "atelier", version 1): scaled dot-product attention on FP8 tensor cores, as
// cuDNN's FP8 flash attention computes it on Hopper (issue 10): SD3.5's joint attention with q, k and
// v quantized per tensor to e4m3 on the device, the probabilities quantized with a static scale, and
// the output, which Hopper's FP8 kernel writes as e4m3, dequantized to float16.
//
//   q, k, v [B, T, H · D] float16 (the layout JointQkvNorm and MultiHeadAttention use: token rows,
//   each H heads of D channels); attributes heads (int, required: H), scale (float, default 1/√D)
//   out [B, T, H · D] float16
//
// The math, per tensor X in {q, k, v} and then per (batch, head, query row i), all float32 unless
// said (this is what the CPU kernel computes, bit for bit, and what cuDNN's FP8 forward computes up
// to its summation order; cudnn-frontend test/python/sdpa/fp8_ref.py, with rescale_threshold 0):
//   amax_X = max |X|,  inv_X = amax_X > 0 ? 448 / amax_X : 0,  descale_X = amax_X / 448
//   X8 = e4m3(X · inv_X)                                (round to nearest even, saturating)
//   over key blocks of 128 (j0 = 0, 128, …), with m = −∞, l = 0, o[D] = 0 to start:
//     s_j  = (Σ_d q8[i, d] · k8[j, d]) · descale_q · descale_k · scale        (each product rounded)
//     m'   = max(m, max_j s_j);  c = exp(m − m') (0 on the first block);  o ·= c;  l ·= c
//     p_j  = exp(s_j − m');  l += Σ_j p_j;  p8_j = e4m3(p_j · 448)
//     o[d] += (Σ_j p8_j · v8[j, d]) · descale_v · (1 / 448);  m = m'
//   o /= l
//   out = float16(e4m3(o · inv_v) · descale_v)
// (Hopper's FP8 attention has no float16 output: it writes O as e4m3 with scale_O = inv_v, which
// cannot saturate since |o| ≤ amax_v, and our kernel multiplies by descale_v.)
//
// Why: attention is ≈ 37 ms of SD3.5 Large's 122.6 ms W8A8 step at 1024² (cuDNN's fp16 flash
// kernel at 391 TFLOP/s); FP8 doubles the tensor cores' rate. On the GPU: an amax pass over q, k, v
// (one partial maximum per thread block), a quantize pass (each block folds the partials first, so no
// atomics and no memset), cuDNN's FP8 SDPA through its frontend's graph API (graph and plan built once
// per shape), a dequantize pass; intermediates in one scratch buffer per CUDA stream. A known shape
// allocates nothing and never synchronises, so it captures into CUDA graphs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "attention.h"

namespace atelier {

using Fp8AttentionArgs = AttentionArgs;

// The probabilities' static FP8 scale (cuDNN's scale_S; descale_S = 1 / 448) and the key block of
// the online softmax whose running maximum p is taken against.
constexpr float kFp8ProbabilityScale = 448.0f;
constexpr int64_t kFp8AttentionKeyBlock = 128;

// One tensor's per-tensor scaling, from its amax (float32 divisions, rounded once each).
struct Fp8TensorScale {
  float amax;
  float inv;      // 448 / amax, 0 for an all-zero tensor
  float descale;  // amax / 448
};
Fp8TensorScale fp8_tensor_scale(float amax);

// The CPU kernel in two steps: q, k and v quantized (their e4m3 values kept as the floats they
// represent, with each tensor's scale), then any range of query rows — row r is (b, h, i) with
// r = (b · H + h) · T + i, so one head's rows are consecutive — on the calling thread.
struct Fp8AttentionQuantized {
  std::vector<float> q8, k8, v8;  // [B, T, H · D] each
  Fp8TensorScale q, k, v;
};
void fp8_attention_quantize_cpu(const Fp8AttentionArgs& args, Fp8AttentionQuantized* quantized);
void fp8_attention_rows_cpu(const Fp8AttentionArgs& args, const Fp8AttentionQuantized& quantized, int64_t row_begin,
                            int64_t row_end);

#ifdef ATELIER_WITH_CUDA
// One CUDA kernel instance's state: per shape the cuDNN graph and plan. Opaque to the op glue.
struct Fp8AttentionCuda;

// Null with a message in `error` when this build or machine cannot run it (built without cuDNN,
// libcudnn.so.9 not found). cuDNN itself is opened at the first run, on the device ONNX Runtime runs
// the kernel on.
Fp8AttentionCuda* fp8_attention_cuda_create(char* error, size_t error_size);
void fp8_attention_cuda_destroy(Fp8AttentionCuda* kernel);

// Enqueues the amax, quantize, cuDNN SDPA and dequantize steps on `stream`. A shape seen for the
// first time gets its cuDNN graph and plan and, if the stream's scratch is too small, a larger one;
// both are refused while the stream is being captured. False with a message in `error`.
bool fp8_attention_cuda_run(Fp8AttentionCuda* kernel, const Fp8AttentionArgs& args, void* stream, char* error,
                            size_t error_size);
#endif

}  // namespace atelier
