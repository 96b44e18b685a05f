// JointQkvNorm on the CPU: a token row at a time. Each head of q and k is normalised as ONNX
// Runtime's CPU SimplifiedLayerNormalization does it (layer_norm_impl.cc, ComputeJob): the squares
// summed in float32 in order, r = sqrt(Σ / D + epsilon), y = x / r · w, each step rounded on its
// own; float16 is widened to float32 first (the head once, the weights once per call) and the
// result rounded back once. v is a memcpy.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "half.h"
#include "joint_qkv_norm.h"

namespace atelier {
namespace {

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) { return half_to_float(p[i]); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(uint16_t* p, int64_t i, float v) { p[i] = float_to_half(v); }

// One head: y[0, d) = x[0, d) / sqrt(mean(x²) + epsilon) · w, with x and w already floats.
template <typename T>
void normalize_head(const float* x, const float* w, T* y, int64_t d, float epsilon) {
  float squares = 0.0f;
  for (int64_t i = 0; i < d; ++i) {
    const float square = x[i] * x[i];  // rounded before the sum, as ORT's float loop (no contraction)
    squares += square;
  }
  const float rms = std::sqrt(squares / static_cast<float>(d) + epsilon);
  for (int64_t i = 0; i < d; ++i) {
    const float scaled = x[i] / rms;
    store(y, i, scaled * w[i]);
  }
}

template <typename T>
void rows(const JointQkvNormArgs& a, int64_t begin, int64_t end) {
  const int64_t c = a.channels();
  const int64_t d = a.head_dim;
  const int64_t tokens = a.tokens();
  const T* context = static_cast<const T*>(a.context_qkv);
  const T* x = static_cast<const T*>(a.x_qkv);
  T* const outputs[2] = {static_cast<T*>(a.q), static_cast<T*>(a.k)};
  T* v = static_cast<T*>(a.v);
  // The four weights (ctx ln_q, ln_k, x ln_q, ln_k) and one head of the source as floats.
  std::vector<float> weights(static_cast<size_t>(4 * d));
  const void* const stored[4] = {a.ctx_ln_q, a.ctx_ln_k, a.x_ln_q, a.x_ln_k};
  for (int w = 0; w < 4; ++w)
    for (int64_t i = 0; i < d; ++i) weights[w * d + i] = load(static_cast<const T*>(stored[w]), i);
  std::vector<float> head(static_cast<size_t>(d));
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / tokens;
    const int64_t t = row - b * tokens;
    const bool from_context = t < a.context_tokens;
    const T* source = from_context ? context + (b * a.context_tokens + t) * 3 * c
                                   : x + (b * a.x_tokens + (t - a.context_tokens)) * 3 * c;
    for (int part = 0; part < 2; ++part) {
      const float* w = weights.data() + ((from_context ? 0 : 2) + part) * d;
      for (int64_t h = 0; h < a.heads; ++h) {
        const T* in = source + part * c + h * d;
        for (int64_t i = 0; i < d; ++i) head[i] = load(in, i);
        normalize_head(head.data(), w, outputs[part] + row * c + h * d, d, a.epsilon);
      }
    }
    std::memcpy(v + row * c, source + 2 * c, static_cast<size_t>(c) * sizeof(T));
  }
}

}  // namespace

void joint_qkv_norm_cpu(const JointQkvNormArgs& args, Dtype dtype, int64_t row_begin, int64_t row_end) {
  if (dtype == Dtype::f32)
    rows<float>(args, row_begin, row_end);
  else
    rows<uint16_t>(args, row_begin, row_end);
}

}  // namespace atelier
