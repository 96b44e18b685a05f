// The cuDNN half of Fp8Attention's CUDA kernel (fp8_attention_cudnn.cc, compiled only with
// ATELIER_WITH_CUDNN): cuDNN's FP8 flash attention through its frontend's graph API, one graph and
// plan per shape. fp8_attention_cuda.cu quantizes q, k and v into scratch, computes the scales on the
// device, runs this and dequantizes the e4m3 output.
#pragma once

#include <cstddef>
#include <cstdint>

namespace atelier {
namespace cudnn_sdpa {

// The device buffers one call reads and writes: the e4m3 tensors [B, T, H · D] (cuDNN's "BSHD"
// strides), the float32 scalars cuDNN takes by pointer, int32 sequence lengths [B] (the padding-
// mask form only), and the plan's workspace.
struct Pointers {
  const void* q8;
  const void* k8;
  const void* v8;
  void* o8;
  const float* descale_q;
  const float* descale_k;
  const float* descale_v;
  const float* descale_s;
  const float* scale_s;
  const float* scale_o;
  float* amax_s;
  float* amax_o;
  const int32_t* seq_len;
  void* workspace;
};

struct Plan;

// Opens libcudnn.so.9 (once per process) and checks its version: null, or why not.
const char* open_library();
// cuDNN's version (e.g. 91900), once open_library() succeeded.
size_t backend_version();

// Builds the graph and plan for q, k, v [batch, tokens, heads · head_dim] on the current device
// (sm: its compute capability, e.g. 90). Tries the plain form first, then one with a padding mask
// whose sequence lengths are all `tokens` (for a cuDNN that wants that for lengths not a multiple of
// its tile). Null with a message on failure (every refusal's reason).
Plan* make_plan(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim, float scale, int sm, char* error,
                size_t error_size);
void destroy_plan(Plan* plan);
int64_t workspace_bytes(const Plan* plan);
bool uses_padding_mask(const Plan* plan);
// Enqueues the attention on `stream`: no allocation, no synchronisation.
bool run(Plan* plan, void* stream, const Pointers& pointers, char* error, size_t error_size);

}  // namespace cudnn_sdpa
}  // namespace atelier
