// JointSplitQuant on the CPU: each row converted to floats and quantized with Fp8Linear's own CPU
// quantizer (quantize_row_e4m3), into its stream's codes and scales.
#include <vector>

#include "fp8_linear.h"
#include "half.h"
#include "joint_split_quant.h"

namespace atelier {

void joint_split_quant_cpu(const JointSplitQuantArgs& a, int64_t row_begin, int64_t row_end) {
  const int64_t c = a.channels;
  const int64_t image_tokens = a.tokens - a.context_tokens;
  std::vector<float> values(static_cast<size_t>(c));
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / a.tokens;
    const int64_t t = row % a.tokens;
    const uint16_t* in = a.joint + row * c;
    for (int64_t i = 0; i < c; ++i) values[i] = half_to_float(in[i]);
    const bool context = t < a.context_tokens;
    const int64_t out = context ? b * a.context_tokens + t : b * image_tokens + (t - a.context_tokens);
    uint8_t* codes = (context ? a.context_x8 : a.x_x8) + out * c;
    const float scale = quantize_row_e4m3(values.data(), c, codes);
    (context ? a.context_scale : a.x_scale)[out] = scale;
  }
}

}  // namespace atelier
