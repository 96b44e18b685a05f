// FlashAttention on the CPU: the reference of flash_attention.h, exact softmax per query row in float32.
#include <cmath>
#include <cstdint>
#include <vector>

#include "flash_attention.h"
#include "half.h"

namespace atelier {

void flash_attention_rows_cpu(const FlashAttentionArgs& args, int64_t row_begin, int64_t row_end) {
  const int64_t t_count = args.tokens;
  const int64_t heads = args.heads;
  const int64_t d_count = args.head_dim;
  const int64_t c = args.channels();
  const uint16_t* q_all = static_cast<const uint16_t*>(args.q);
  const uint16_t* k_all = static_cast<const uint16_t*>(args.k);
  const uint16_t* v_all = static_cast<const uint16_t*>(args.v);
  uint16_t* out = static_cast<uint16_t*>(args.out);
  std::vector<float> q(static_cast<size_t>(d_count));
  std::vector<float> s(static_cast<size_t>(t_count));
  std::vector<float> o(static_cast<size_t>(d_count));
  // One head's keys and values as float32, converted once per head rather than once per row.
  std::vector<float> keys, values;
  int64_t converted = -1;  // the (b, h) whose keys and values are in `keys`, `values`
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t i = row % t_count;
    const int64_t bh = row / t_count;
    const int64_t h = bh % heads;
    const int64_t b = bh / heads;
    if (bh != converted) {
      keys.resize(static_cast<size_t>(t_count * d_count));
      values.resize(keys.size());
      for (int64_t j = 0; j < t_count; ++j)
        for (int64_t d = 0; d < d_count; ++d) {
          const int64_t at = (b * t_count + j) * c + h * d_count + d;
          keys[j * d_count + d] = half_to_float(k_all[at]);
          values[j * d_count + d] = half_to_float(v_all[at]);
        }
      converted = bh;
    }
    for (int64_t d = 0; d < d_count; ++d) q[d] = half_to_float(q_all[(b * t_count + i) * c + h * d_count + d]);
    float m = -INFINITY;
    for (int64_t j = 0; j < t_count; ++j) {
      const float* key = keys.data() + j * d_count;
      float dot = 0.0f;
      for (int64_t d = 0; d < d_count; ++d) dot += q[d] * key[d];
      s[j] = dot * args.scale;
      m = std::fmax(m, s[j]);
    }
    float l = 0.0f;
    for (int64_t d = 0; d < d_count; ++d) o[d] = 0.0f;
    for (int64_t j = 0; j < t_count; ++j) {
      const float p = std::exp(s[j] - m);
      l += p;
      const float* value = values.data() + j * d_count;
      for (int64_t d = 0; d < d_count; ++d) o[d] += p * value[d];
    }
    uint16_t* y = out + (b * t_count + i) * c + h * d_count;
    for (int64_t d = 0; d < d_count; ++d) y[d] = float_to_half(o[d] / l);
  }
}

}  // namespace atelier
