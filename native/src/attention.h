// The arguments of the attention kernels (Fp8Attention, FlashAttention): q, k, v and out [B, T, H · D]
// float16, the layout JointQkvNorm and MultiHeadAttention use (token rows, each H heads of D channels).
#pragma once

#include <cstdint>

namespace atelier {

struct AttentionArgs {
  const void* q;  // float16 [B, T, H · D]
  const void* k;
  const void* v;
  void* out;  // float16 [B, T, H · D]
  int64_t batch;
  int64_t tokens;
  int64_t heads;
  int64_t head_dim;
  float scale;

  int64_t channels() const { return heads * head_dim; }
  int64_t elements() const { return batch * tokens * channels(); }
};

}  // namespace atelier
