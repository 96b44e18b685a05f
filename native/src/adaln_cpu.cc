// AdaLNModulate on the CPU: a row at a time, two passes for the statistics (mean, then the squared
// deviations), accumulated in double: on the CPU that costs little and keeps the kernel a tight
// reference for the GPU one. AdaLNModulateQuant rounds each row to float16 and quantizes it with
// Fp8Linear's own CPU quantizer (quantize_row_e4m3), so the pair agrees with the unfused ops bit for bit;
// with act_scaling "delayed_tensor" it leaves the float16-rounded rows in args.y16 for the glue to
// quantize as one tensor (adaln_op.cc).
// AdaLNResidualQuant first makes the row x + gate · branch and writes it, the product and the sum each
// rounded to the element type, as the CUDA kernel and ONNX Runtime's CUDA Mul and Add round them (this
// library builds without FMA contraction on x86-64). ORT's CPU provider has no float16 Mul or Add: its
// cast insertion runs float16 chains of them in float32 without rounding between the ops, so on the
// CPU the fused op equals the stock chain bit for bit in float32 only (test/native/adaln-residual.test.ts).
// A second branch (branch2, gate2) is added to that rounded sum the same way: a second Mul and Add.
// A second modulation (shift2, scale2) reuses the row's mean and rstd for its own codes and scales.
#include <cmath>
#include <cstdint>
#include <vector>

#include "adaln_modulate.h"
#include "fp8_linear.h"
#include "half.h"

namespace atelier {
namespace {

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) { return half_to_float(p[i]); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(uint16_t* p, int64_t i, float v) { p[i] = float_to_half(v); }
// v rounded to the element type (of the pointer's pointee).
inline float round_to(const float*, float v) { return v; }
inline float round_to(const uint16_t*, float v) { return half_to_float(float_to_half(v)); }

template <typename T>
void rows(const AdaLnArgs& a, int64_t begin, int64_t end) {
  const int64_t c = a.channels;
  const T* x = static_cast<const T*>(a.x);
  const T* shift = static_cast<const T*>(a.shift);
  const T* scale = static_cast<const T*>(a.scale);
  T* y = static_cast<T*>(a.y);
  const bool quantize = a.x8 != nullptr;
  const bool whole_tensor = a.y16 != nullptr;  // rows kept for one per-tensor quantization
  std::vector<float> y16(quantize && !whole_tensor ? static_cast<size_t>(c) : 0);  // the row rounded to float16
  const bool residual = a.branch != nullptr;
  for (int64_t row = begin; row < end; ++row) {
    const T* xr = x + row * c;
    const int64_t b = row / a.tokens;
    const T* sh = shift + b * c;
    const T* sc = scale + b * c;
    if (residual) {
      const T* br = static_cast<const T*>(a.branch) + row * c;
      const T* g = static_cast<const T*>(a.gate) + b * c;
      T* out = static_cast<T*>(a.residual) + row * c;
      if (a.branch2 == nullptr) {
        for (int64_t i = 0; i < c; ++i) {
          const float gated = round_to(xr, load(g, i) * load(br, i));
          store(out, i, load(xr, i) + gated);
        }
      } else {
        const T* br2 = static_cast<const T*>(a.branch2) + row * c;
        const T* g2 = static_cast<const T*>(a.gate2) + b * c;
        for (int64_t i = 0; i < c; ++i) {
          const float first = round_to(xr, load(xr, i) + round_to(xr, load(g, i) * load(br, i)));
          store(out, i, first + round_to(xr, load(g2, i) * load(br2, i)));
        }
      }
      xr = out;
    }

    double sum = 0;
    for (int64_t i = 0; i < c; ++i) sum += load(xr, i);
    const float mean = static_cast<float>(sum / static_cast<double>(c));
    double squares = 0;
    for (int64_t i = 0; i < c; ++i) {
      const double d = static_cast<double>(load(xr, i)) - mean;
      squares += d * d;
    }
    const float variance = static_cast<float>(squares / static_cast<double>(c));
    const float rstd = 1.0f / std::sqrt(variance + a.epsilon);
    float* yr16 = whole_tensor ? a.y16 + row * c : y16.data();
    for (int64_t i = 0; i < c; ++i) {
      const float normed = (load(xr, i) - mean) * rstd;
      const float v = normed * (1.0f + load(sc, i)) + load(sh, i);
      if (quantize)
        yr16[i] = half_to_float(float_to_half(v));
      else
        store(y + row * c, i, v);
    }
    if (quantize && !whole_tensor) a.act_scale[row] = quantize_row_e4m3(yr16, c, a.x8 + row * c);
    if (a.x8_2 != nullptr) {
      // The second modulation of the same normalised row (per token; the glue refuses it delayed).
      const T* sh2 = static_cast<const T*>(a.shift2) + b * c;
      const T* sc2 = static_cast<const T*>(a.scale2) + b * c;
      for (int64_t i = 0; i < c; ++i) {
        const float normed = (load(xr, i) - mean) * rstd;
        y16[i] = half_to_float(float_to_half(normed * (1.0f + load(sc2, i)) + load(sh2, i)));
      }
      a.act_scale_2[row] = quantize_row_e4m3(y16.data(), c, a.x8_2 + row * c);
    }
  }
}

}  // namespace

void adaln_modulate_cpu(const AdaLnArgs& args, Dtype dtype, int64_t row_begin, int64_t row_end) {
  if (dtype == Dtype::f32)
    rows<float>(args, row_begin, row_end);
  else
    rows<uint16_t>(args, row_begin, row_end);
}

}  // namespace atelier
