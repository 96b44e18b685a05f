// The one entry of the FlashAttention-3 object (native/fa3/fa3_forward.cu), which library.mjs compiles
// with FA3's own flags and links into the CUDA library when the sources are there (-DATELIER_WITH_FA3).
// Plain types only: FA3's and CUTLASS's headers stay inside that object.
#pragma once

namespace atelier {

struct Fa3Forward {
  const void* q;  // float16 [batch, tokens, heads · 64], row stride heads · 64, head stride 64
  const void* k;
  const void* v;
  void* out;
  float* lse;  // [batch, heads, tokens]: FA3's epilogue always writes the softmax statistics
  int batch;
  int tokens;
  int heads;
  int num_sm;  // the GPU's multiprocessors: the persistent scheduler launches one CTA per SM
  float scale;
};

// FA3's forward kernel (run_mha_fwd_<90, half_t, 64, 64, no split, no paged KV, no softcap, no
// PackGQA>), non-causal, enqueued on `stream` (a cudaStream_t). FA3 exits the process on a CUDA error
// (its CHECK_CUDA), so callers check everything they can first.
void fa3_forward_fp16_hdim64(const Fa3Forward& call, void* stream);

}  // namespace atelier
