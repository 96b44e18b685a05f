// Fp8Attention on the CPU: the exact emulation of the quantized math in fp8_attention.h, in float32
// with every step rounded where the header says (no contraction into fused multiply-adds: the
// default x86-64 target has none). Products of two e4m3 values are exact in float32, so what
// separates this from cuDNN's kernel is its summation order and its exp.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fp8_attention.h"
#include "fp8_linear.h"
#include "half.h"

namespace atelier {

Fp8TensorScale fp8_tensor_scale(float amax) {
  return {amax, amax > 0.0f ? kE4m3Max / amax : 0.0f, amax / kE4m3Max};
}

namespace {

// X8's values for a float16 tensor of n elements, and its scale.
Fp8TensorScale quantize_tensor(const uint16_t* x, int64_t n, std::vector<float>* out) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(half_to_float(x[i])));
  const Fp8TensorScale scale = fp8_tensor_scale(amax);
  out->resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float product = half_to_float(x[i]) * scale.inv;
    (*out)[i] = e4m3_to_float(float_to_e4m3(product));
  }
  return scale;
}

}  // namespace

void fp8_attention_quantize_cpu(const Fp8AttentionArgs& args, Fp8AttentionQuantized* quantized) {
  const int64_t n = args.elements();
  quantized->q = quantize_tensor(static_cast<const uint16_t*>(args.q), n, &quantized->q8);
  quantized->k = quantize_tensor(static_cast<const uint16_t*>(args.k), n, &quantized->k8);
  quantized->v = quantize_tensor(static_cast<const uint16_t*>(args.v), n, &quantized->v8);
}

void fp8_attention_rows_cpu(const Fp8AttentionArgs& args, const Fp8AttentionQuantized& quantized, int64_t row_begin,
                            int64_t row_end) {
  const int64_t t_count = args.tokens;
  const int64_t heads = args.heads;
  const int64_t d_count = args.head_dim;
  const int64_t c = args.channels();
  const float descale_qk_first = quantized.q.descale;
  const float descale_k = quantized.k.descale;
  const float descale_v = quantized.v.descale;
  const float descale_s = 1.0f / kFp8ProbabilityScale;
  uint16_t* out = static_cast<uint16_t*>(args.out);
  std::vector<float> s(static_cast<size_t>(kFp8AttentionKeyBlock));
  std::vector<float> o(static_cast<size_t>(d_count));
  std::vector<float> acc(static_cast<size_t>(d_count));
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t i = row % t_count;
    const int64_t h = (row / t_count) % heads;
    const int64_t b = row / (t_count * heads);
    const float* q = quantized.q8.data() + (b * t_count + i) * c + h * d_count;
    const float* keys = quantized.k8.data() + b * t_count * c + h * d_count;
    const float* values = quantized.v8.data() + b * t_count * c + h * d_count;
    float m = -std::numeric_limits<float>::infinity();
    float l = 0.0f;
    for (int64_t d = 0; d < d_count; ++d) o[d] = 0.0f;
    for (int64_t j0 = 0; j0 < t_count; j0 += kFp8AttentionKeyBlock) {
      const int64_t width = t_count - j0 < kFp8AttentionKeyBlock ? t_count - j0 : kFp8AttentionKeyBlock;
      float block_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < width; ++j) {
        const float* key = keys + (j0 + j) * c;
        float dot = 0.0f;
        for (int64_t d = 0; d < d_count; ++d) {
          const float product = q[d] * key[d];
          dot += product;
        }
        float score = dot * descale_qk_first;
        score = score * descale_k;
        score = score * args.scale;
        s[j] = score;
        block_max = std::fmax(block_max, score);
      }
      const float m_new = block_max > m ? block_max : m;
      const float correction = std::exp(m - m_new);  // exp(−∞) = 0 on the first block
      for (int64_t d = 0; d < d_count; ++d) o[d] = o[d] * correction;
      l = l * correction;
      for (int64_t d = 0; d < d_count; ++d) acc[d] = 0.0f;
      float block_sum = 0.0f;
      for (int64_t j = 0; j < width; ++j) {
        const float p = std::exp(s[j] - m_new);
        block_sum += p;
        const float p8 = e4m3_to_float(float_to_e4m3(p * kFp8ProbabilityScale));
        const float* value = values + (j0 + j) * c;
        for (int64_t d = 0; d < d_count; ++d) {
          const float product = p8 * value[d];
          acc[d] += product;
        }
      }
      l = l + block_sum;
      for (int64_t d = 0; d < d_count; ++d) {
        float scaled = acc[d] * descale_v;
        scaled = scaled * descale_s;
        o[d] = o[d] + scaled;
      }
      m = m_new;
    }
    uint16_t* y = out + (b * t_count + i) * c + h * d_count;
    for (int64_t d = 0; d < d_count; ++d) {
      const float normalized = o[d] / l;
      const float o8 = e4m3_to_float(float_to_e4m3(normalized * quantized.v.inv));
      y[d] = float_to_half(o8 * descale_v);
    }
  }
}

}  // namespace atelier
