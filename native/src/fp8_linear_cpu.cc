// Fp8Linear on the CPU: the exact reference of the GPU op's math (fp8_linear.h), a row at a time.
// The row is quantized to e4m3 values (kept as the floats they represent), then each output is a
// float32 sum over k, scaled, biased, activated and rounded to float16 once. Products of two e4m3
// values are exact in float32, so only the summation order separates this from the GPU; the sum
// runs in 8 interleaved partial sums (a fixed order, so every run gives the same bits) because one
// running sum is bound by the adder's latency: the compiler may not reorder float additions itself.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fp8_linear.h"
#include "half.h"

namespace atelier {

uint8_t float_to_e4m3(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const float a = std::fabs(value);
  if (std::isnan(value)) return sign | 0x7f;
  if (a >= kE4m3Max) return sign | 0x7e;  // saturate (±inf too)
  if (a == 0.0f) return sign;
  // e4m3fn: bias 7, 3 mantissa bits; below 2⁻⁶ the step is 2⁻⁹ (subnormals), above it 2^(e−3).
  int exponent;
  std::frexp(a, &exponent);  // a = f · 2^exponent, f in [0.5, 1)
  const int e = exponent - 1 < -6 ? -6 : exponent - 1;  // a in [2^e, 2^(e+1)), or subnormal
  const float step = std::ldexp(1.0f, e - 3);
  // a / step is exact (a power of two); nearbyint rounds half to even in the default mode.
  const float units = std::nearbyint(a / step);  // in [0, 16]: 8 + mantissa for normals
  uint32_t code;
  if (e == -6 && units < 8)
    code = static_cast<uint32_t>(units);  // subnormal (or zero)
  else if (units >= 16)
    code = static_cast<uint32_t>((e + 1 + 7) << 3);  // rounded up to the next power of two
  else
    code = static_cast<uint32_t>(((e + 7) << 3) | (static_cast<uint32_t>(units) - 8));
  // 448 rounds to itself; anything that rounded above it was caught by the saturation above.
  return sign | static_cast<uint8_t>(code);
}

float e4m3_to_float(uint8_t bits) {
  const float sign = (bits & 0x80u) ? -1.0f : 1.0f;
  const int exponent = (bits >> 3) & 0xf;
  const int mantissa = bits & 0x7;
  if (exponent == 0xf && mantissa == 0x7) return std::nanf("");
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);
  return sign * std::ldexp(static_cast<float>(8 + mantissa), exponent - 7 - 3);
}

namespace {

// Σ a[k]·b[k] in float32: lane j sums k ≡ j (mod 8), the lanes are added pairwise, then the tail.
inline float dot(const float* a, const float* b, int64_t count) {
  constexpr int kLanes = 8;
  float lane[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= count; k += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] += a[k + j] * b[k + j];
  float acc = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  for (; k < count; ++k) acc += a[k] * b[k];
  return acc;
}

inline float gelu_tanh(float v) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
}

}  // namespace

float quantize_row_e4m3(const float* values, int64_t k, uint8_t* codes) {
  float amax = 0.0f;
  for (int64_t i = 0; i < k; ++i) amax = std::fmax(amax, std::fabs(values[i]));
  const float inv = amax > 0.0f ? kE4m3Max / amax : 0.0f;
  for (int64_t i = 0; i < k; ++i) codes[i] = float_to_e4m3(values[i] * inv);
  return amax / kE4m3Max;
}

void fp8_linear_cpu(const Fp8LinearArgs& args, const float* weight, int64_t row_begin, int64_t row_end) {
  const int64_t k_count = args.in_features;
  const int64_t n_count = args.out_features;
  const uint16_t* x = static_cast<const uint16_t*>(args.x);
  const uint16_t* bias = static_cast<const uint16_t*>(args.bias);
  uint16_t* y = static_cast<uint16_t*>(args.y);  // or args.y_f32
  const bool prequantized = args.x8 != nullptr;
  std::vector<float> row(static_cast<size_t>(k_count));
  std::vector<uint8_t> codes(prequantized ? 0 : static_cast<size_t>(k_count));
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* qr;
    float act_scale;
    if (prequantized) {
      qr = args.x8 + r * k_count;
      act_scale = args.act_scale[r];
    } else {
      const uint16_t* xr = x + r * k_count;
      for (int64_t k = 0; k < k_count; ++k) row[k] = half_to_float(xr[k]);
      act_scale = quantize_row_e4m3(row.data(), k_count, codes.data());
      qr = codes.data();
    }
    for (int64_t k = 0; k < k_count; ++k) row[k] = e4m3_to_float(qr[k]);
    for (int64_t n = 0; n < n_count; ++n) {
      const float acc = dot(row.data(), weight + n * k_count, k_count);
      float v = acc * act_scale * args.weight_scale[n];
      if (bias != nullptr) v += half_to_float(bias[n]);
      if (args.activation == Fp8Activation::gelu_tanh) v = gelu_tanh(v);
      if (args.y_f32 != nullptr)
        args.y_f32[r * n_count + n] = v;
      else
        y[r * n_count + n] = float_to_half(v);
    }
  }
}

void delayed_scale(float ref, float margin, float* s, float* d) {
  // Written as the GPU kernel computes it (fp8_linear_cuda.cu: delayed_begin), so both agree.
  float scale = (margin * ref) / kE4m3Max;
  float inverse = 1.0f / scale;
  if (!(ref > 0.0f) || !std::isfinite(ref) || !(scale > 0.0f) || !std::isfinite(scale) || !(inverse > 0.0f) ||
      !std::isfinite(inverse)) {
    scale = 1.0f;
    inverse = 1.0f;
  }
  *s = scale;
  *d = inverse;
}

void delayed_quantize_cpu(Fp8DelayedHistory& history, const Fp8DelayedConfig& config, const float* values,
                          int64_t rows, int64_t n, uint8_t* y8, float* y_scale) {
  const int64_t count = rows * n;
  float amax = 0.0f;
  bool nan = false;
  for (int64_t i = 0; i < count; ++i) {
    nan = nan || std::isnan(values[i]);
    amax = std::fmax(amax, std::fabs(values[i]));
  }
  if (nan) amax = std::nanf("");
  // As on the GPU: the ring starts as zeros and the first call is the instance's first, whatever its amax.
  float ref = 0.0f;
  const bool first = !history.seeded;
  for (int64_t i = 0; i < config.history; ++i) ref = std::fmax(ref, history.ring[i]);
  history.seeded = true;
  float s, d;
  delayed_scale(first ? amax : ref, first ? 1.0f : config.margin, &s, &d);
  for (int64_t i = 0; i < count; ++i) y8[i] = float_to_e4m3(values[i] * d);
  for (int64_t r = 0; r < rows; ++r) y_scale[r] = s;
  if (std::isfinite(amax)) {
    history.ring[history.position] = amax;
    history.position = (history.position + 1) % config.history;
  }
}

}  // namespace atelier
