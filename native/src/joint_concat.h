// JointConcat (domain "atelier", version 1): the token concatenation of SD3.5 MMDiT's joint
// attention (context tokens, then image tokens), as a copy that needs nothing but its arguments.
//
//   a [B, Ta, C], b [B, Tb, C], same element type (float32, float16 or int64)
//   y [B, Ta + Tb, C]:  y[:, 0:Ta, :] = a,  y[:, Ta:Ta+Tb, :] = b   (Concat along axis 1)
//
// B and C must agree; Ta, Tb and B may be 0. Why not ONNX's Concat: ONNX Runtime's CUDA Concat of
// inputs of unequal size along the axis uploads per-run metadata from pinned host memory into fresh
// GPU buffers, which fails inside CUDA-graph capture and is unsafe to replay. Here every size is a
// kernel parameter. The kernels copy bytes, so the element type only sets the element size. This
// header is what the op glue (joint_concat_op.cc) and the kernels (joint_concat_cpu.cc,
// joint_concat_cuda.cu) share.
#pragma once

#include <cstdint>

namespace atelier {

struct JointConcatArgs {
  const void* a;
  const void* b;
  void* y;
  int64_t batch;
  int64_t a_tokens;
  int64_t b_tokens;
  int64_t channels;
  int64_t element_size;  // bytes: 2, 4 or 8

  // Bytes of one batch entry of a, of b, of y.
  int64_t a_row_bytes() const { return a_tokens * channels * element_size; }
  int64_t b_row_bytes() const { return b_tokens * channels * element_size; }
  int64_t y_row_bytes() const { return a_row_bytes() + b_row_bytes(); }
};

// Bytes [begin, end) of y (0 ≤ begin ≤ end ≤ B · y_row_bytes()), on the calling thread.
void joint_concat_cpu(const JointConcatArgs& args, int64_t begin, int64_t end);

#ifdef ATELIER_WITH_CUDA
// Enqueues the copy on `stream` (a cudaStream_t): one kernel, no allocation, no host memory, no
// synchronisation, so it can be captured into a CUDA graph and replayed. Returns null, or a static
// description of the launch error.
const char* joint_concat_cuda(const JointConcatArgs& args, void* stream);
#endif

}  // namespace atelier
