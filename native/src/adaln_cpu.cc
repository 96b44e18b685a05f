// AdaLNModulate on the CPU: a row at a time, two passes for the statistics (mean, then the squared
// deviations), accumulated in double: on the CPU that costs little and keeps the kernel a tight
// reference for the GPU one.
#include <cmath>
#include <cstdint>

#include "adaln_modulate.h"
#include "half.h"

namespace atelier {
namespace {

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) { return half_to_float(p[i]); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(uint16_t* p, int64_t i, float v) { p[i] = float_to_half(v); }

template <typename T>
void rows(const AdaLnArgs& a, int64_t begin, int64_t end) {
  const int64_t c = a.channels;
  const T* x = static_cast<const T*>(a.x);
  const T* shift = static_cast<const T*>(a.shift);
  const T* scale = static_cast<const T*>(a.scale);
  T* y = static_cast<T*>(a.y);
  for (int64_t row = begin; row < end; ++row) {
    const T* xr = x + row * c;
    const int64_t b = row / a.tokens;
    const T* sh = shift + b * c;
    const T* sc = scale + b * c;
    T* yr = y + row * c;

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
    for (int64_t i = 0; i < c; ++i) {
      const float normed = (load(xr, i) - mean) * rstd;
      store(yr, i, normed * (1.0f + load(sc, i)) + load(sh, i));
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
