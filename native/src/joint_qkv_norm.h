// JointQkvNorm (domain "atelier", version 1): what SD3.5 MMDiT's joint attention does between the
// qkv projections of its two streams and the attention itself, in one pass: split_qkv, the qk
// RMSNorm of each head (ln_q, ln_k) and the token concatenation (context first, then image).
//
//   context_qkv [B, Tc, 3C], x_qkv [B, Tx, 3C]                  (the two streams' qkv projections)
//   ctx_ln_q [D], ctx_ln_k [D], x_ln_q [D], x_ln_k [D]          (each stream's RMSNorm weights)
//   all float32 or all float16; attributes heads (int, required: C = heads · D), epsilon (float,
//   default 1e-6)
//   q, k, v [B, Tc + Tx, C]: token t < Tc from context_qkv[:, t], else from x_qkv[:, t − Tc];
//     the last axis of a qkv row is [q | k | v], each C = heads · D wide, heads of D channels;
//     q and k per head: y = x · rsqrt(mean(x²) + epsilon) · w, with w the row's stream's ln_q / ln_k;
//     v copied.
//
// Tc, Tx and B may be 0 (Tc = 0: MMDiT-X's attn2, image tokens alone). The statistics are float32
// and each output is rounded to the element type once, in the order ONNX Runtime 1.29's
// SimplifiedLayerNormalization (the stock graph's RMSNorm) rounds on the same device, so the op
// reproduces Split → Reshape → SimplifiedLayerNormalization → Reshape (q and k of each stream) →
// Concat along the tokens (q, k, v) bit for bit:
//   CPU  (onnxruntime/core/providers/cpu/nn/layer_norm_impl.cc, ComputeJob): s = Σ x² summed in
//        order, each square rounded; r = sqrtf(s / D + epsilon); y = x / r · w.
//   CUDA (onnxruntime/core/providers/cuda/nn/layer_norm_impl.cu, one warp per row for D ≤ 128):
//        lane j sums the squares of its VEC-element chunk [VEC·j, VEC·j + VEC) in order with fused
//        multiply-adds (VEC = 8 for float16, 4 for float32), the lanes' partial sums are added as a
//        butterfly (offsets 16, 8, …, 1); ms = s / D; inv = rsqrtf(ms + epsilon); y = (w · inv) · x.
// Head widths above 128 get ONNX Runtime's multi-warp reduction on its side and a one-warp one here:
// the same math, not necessarily the same last bit.
//
// Why: the stock chain reads the qkv projections and writes q, k and v three times over (Split, the
// two norms, the three Concats: ≈ 640 MB per SD3.5 Large block at 1024² with CFG); this reads each
// projection once and writes q, k and v once. Like JointConcat it needs nothing but its launch
// parameters, so it is CUDA-graph capturable. This header is what the op glue (joint_qkv_norm_op.cc)
// and the kernels (joint_qkv_norm_cpu.cc, joint_qkv_norm_cuda.cu) share.
#pragma once

#include <cstdint>

#include "dtype.h"

namespace atelier {

struct JointQkvNormArgs {
  const void* context_qkv;  // [B, Tc, 3C]
  const void* x_qkv;        // [B, Tx, 3C]
  const void* ctx_ln_q;     // [D] each
  const void* ctx_ln_k;
  const void* x_ln_q;
  const void* x_ln_k;
  void* q;  // [B, Tc + Tx, C] each
  void* k;
  void* v;
  int64_t batch;
  int64_t context_tokens;
  int64_t x_tokens;
  int64_t heads;
  int64_t head_dim;
  float epsilon;

  int64_t channels() const { return heads * head_dim; }      // C
  int64_t tokens() const { return context_tokens + x_tokens; }  // Tc + Tx
  int64_t rows() const { return batch * tokens(); }            // token rows of q, k and v
};

// Token rows [row_begin, row_end) of q, k and v (0 ≤ row_begin ≤ row_end ≤ B · (Tc + Tx)), on the
// calling thread.
void joint_qkv_norm_cpu(const JointQkvNormArgs& args, Dtype dtype, int64_t row_begin, int64_t row_end);

#ifdef ATELIER_WITH_CUDA
// Enqueues one kernel on `stream` (a cudaStream_t): no allocation, no host memory, no
// synchronisation, so it can be captured into a CUDA graph and replayed. Returns null, or a static
// description of the launch error.
const char* joint_qkv_norm_cuda(const JointQkvNormArgs& args, Dtype dtype, void* stream);
#endif

}  // namespace atelier
