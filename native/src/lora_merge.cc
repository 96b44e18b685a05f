// The LoRA merge's per-row arithmetic (src/pipeline/lora/merge-kernel.ts `mergeRows`) in C++,
// called through koffi from the merge's worker threads. It must give the JS kernel's bits exactly,
// so it repeats its operations in its order: decode through the JS decode tables (passed in),
// products summed over the rank in double, the update over the patches in double, one rounding to
// float, and the JS encoders (weights/dtypes.ts) ported bit for bit. No FMA: a fused multiply-add
// rounds once where JS rounds twice, so contraction is off for this file (and -ffast-math never on).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace atelier {
namespace {

// The codes of merge-kernel.ts's StoredType / OutputType (merge-native.ts sends them).
enum Stored { kF32 = 0, kF16 = 1, kBF16 = 2, kE4M3 = 3, kE5M2 = 4 };
enum Output { kOutF32 = 0, kOutF16 = 1, kOutBF16 = 2, kOutE4M3 = 3, kOutValues = 4 };

// Fields of one patch in `meta` (Float64Array): [upOffset, downOffset, rank, factor, start, count].
constexpr int kMetaFields = 6;

uint32_t bits_of(float v) {
  uint32_t x;
  std::memcpy(&x, &v, sizeof x);
  return x;
}

// dtypes.ts floatToHalf, on the float's bits.
uint16_t float_to_half(float value) {
  const uint32_t x = bits_of(value);
  const uint32_t sign = (x >> 16) & 0x8000u;
  int exp = static_cast<int>((x >> 23) & 0xffu);
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  exp = exp - 127 + 15;
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    const uint32_t half = 1u << (shift - 1);
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
  return static_cast<uint16_t>(sign | r);
}

// dtypes.ts floatToBf16 (the JS sum is taken modulo 2³² by `>>>`, as uint32 wraps here).
uint16_t float_to_bf16(float value) {
  const uint32_t x = bits_of(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((x >> 16) & 0x8000u) | 0x7fc0u);
  return static_cast<uint16_t>(((x + 0x7fffu + ((x >> 16) & 1u)) >> 16) & 0xffffu);
}

// dtypes.ts floatToE4M3 of value = x / s, from the double's bits, without data-dependent branches
// (the sign and the subnormal test mispredicted half the time): every case computed, one selected.
inline uint8_t double_to_e4m3(double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint32_t sign = static_cast<uint32_t>(bits >> 56) & 0x80u;  // JS: value < 0, or -0
  const uint64_t abits = bits & 0x7fffffffffffffffull;
  double a;
  std::memcpy(&a, &abits, sizeof a);
  // Normal: exponent rebiased and the top 3 mantissa bits, + 1 when the bits below are over half,
  // or exactly half and the code is odd (ties to even); capped at 0x7e.
  const int64_t e8 = static_cast<int64_t>(abits >> 52) - 1023 + 7;
  const uint32_t code = static_cast<uint32_t>((abits >> 49) & 0x3fffu) - (1016u << 3);
  const uint32_t half = static_cast<uint32_t>(abits >> 48) & 1u;
  const uint32_t rest = (abits & 0xffffffffffffull) != 0;
  const uint32_t rounded = code + (half & (rest | (code & 1u)));
  const uint32_t normal = rounded > 0x7eu ? 0x7eu : rounded;
  // Below 2⁻⁶: multiples of 2⁻⁹; a · 512 < 8 rounded half to even (JS's floor and compare),
  // by adding and removing 2⁵² (exact in the default rounding mode).
  const double k = (a < 0.015625 ? a : 0.0) * 512.0;  // only the subnormal case is used (no overflow)
  const uint32_t sub = static_cast<uint32_t>((k + 4503599627370496.0) - 4503599627370496.0);
  uint32_t magnitude = e8 < 1 ? sub : normal;
  magnitude = a >= 448.0 ? 0x7eu : magnitude;  // saturate, ±inf too
  const uint32_t result = sign | magnitude;
  return static_cast<uint8_t>(abits > 0x7ff0000000000000ull ? 0x7fu : result);  // NaN, either sign
}

// Four lanes (GCC/clang vector extensions): AVX2 registers in the avx2 clones, SSE2 pairs otherwise.
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

// o[0..3] = double_to_e4m3(x[0..3] / s): the same selects lane by lane, on int64 lanes (the
// magnitude's bits compare as the values do). Always inlined into the clones below.
inline __attribute__((always_inline)) void encode4(const float* x, double s, uint8_t* o) {
  v4f xf;
  std::memcpy(&xf, x, sizeof xf);
  const v4d value = __builtin_convertvector(xf, v4d) / s;
  v4i bits;
  std::memcpy(&bits, &value, sizeof bits);
  const v4i sign = (bits >> 56) & 0x80;
  const v4i abits = bits & 0x7fffffffffffffffll;
  v4d a;
  std::memcpy(&a, &abits, sizeof a);
  const v4i code = ((abits >> 49) & 0x3fff) - (1016 << 3);
  const v4i half = (abits >> 48) & 1;
  const v4i rest = (abits & 0xffffffffffffll) != 0;  // -1 or 0
  const v4i rounded = code + (half & ((rest & 1) | (code & 1)));
  const v4i normal = rounded > 0x7e ? 0x7e : rounded;
  constexpr int64_t kTwoPowMinus6 = 0x3f90000000000000ll, k448 = 0x407c000000000000ll;
  const v4i small = abits < kTwoPowMinus6;
  const v4d zero = {0, 0, 0, 0};
  // a · 512 + 2⁵² holds round-half-even(a · 512) in its low mantissa bits.
  const v4d shifted = (small ? a : zero) * 512.0 + 4503599627370496.0;
  v4i sub;
  std::memcpy(&sub, &shifted, sizeof sub);
  sub -= 0x4330000000000000ll;
  v4i magnitude = small ? sub : normal;
  magnitude = abits >= k448 ? 0x7e : magnitude;
  const v4i codes = abits > 0x7ff0000000000000ll ? 0x7f : (sign | magnitude);
  for (int j = 0; j < 4; j++) o[j] = static_cast<uint8_t>(codes[j]);
}

// The F8_E4M3 output of a row: scale = amax / 448 (1 when 0 or when a NaN makes JS's Math.max
// NaN), codes of x / scale. Cloned for AVX2 where the CPU has it.
__attribute__((target_clones("avx2", "default"))) float encode_e4m3_row(const float* v, uint8_t* o,
                                                                      int64_t n) {
  // |x|'s bits order as the values do, and any NaN's are above infinity's.
  uint32_t max_bits = 0;
  for (int64_t i = 0; i < n; i++) {
    const uint32_t b = bits_of(v[i]) & 0x7fffffffu;
    max_bits = b > max_bits ? b : max_bits;
  }
  float amax;
  std::memcpy(&amax, &max_bits, sizeof amax);
  const bool nan = max_bits > 0x7f800000u;
  const float scale = static_cast<float>(!nan && amax > 0 ? static_cast<double>(amax) / 448.0 : 1.0);
  const double s = scale;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) encode4(v + i, s, o + i);
  for (; i < n; i++) o[i] = double_to_e4m3(static_cast<double>(v[i]) / s);
  return scale;
}

struct Tables {
  const float* half;
  const float* bf16;
  const float* e4m3;
  const float* e5m2;
};

// merge-kernel.ts decodeRow.
void decode_row(int stored, const uint8_t* base, const float* scales, int n_scales, int rows,
                const Tables& t, int64_t row, int64_t cols, float* into) {
  const int64_t at = row * cols;
  switch (stored) {
    case kF32:
      std::memcpy(into, base + at * 4, static_cast<size_t>(cols) * 4);
      return;
    case kF16:
    case kBF16: {
      const float* table = stored == kF16 ? t.half : t.bf16;
      for (int64_t i = 0; i < cols; i++) {
        uint16_t v;
        std::memcpy(&v, base + (at + i) * 2, 2);
        into[i] = table[v];
      }
      return;
    }
    default: {
      const float* table = stored == kE4M3 ? t.e4m3 : t.e5m2;
      const double s = n_scales == rows ? scales[row] : scales[0];
      const uint8_t* b = base + at;
      // Math.fround(t · s): the double product of two floats is exact, so one rounding as in JS.
      for (int64_t i = 0; i < cols; i++) into[i] = static_cast<float>(static_cast<double>(table[b[i]]) * s);
    }
  }
}


// The same at the alignment of a double: loads and stores of update and down rows anywhere.
typedef double v4du __attribute__((vector_size(32), aligned(8)));

// update[i] += factor · Σₖ us[k] · rows_k[k][i]: JS's rowProduct + update loop, with the sum over k
// held in registers 16 columns at a time (each element's operations in the same order, unfused).
// Cloned for AVX2 where the CPU has it: wider vectors, the same operations.
__attribute__((target_clones("avx2", "default"))) void add_patch(double* update, const double* const* rows_k,
                                                               const double* us, int nk, double factor,
                                                               int64_t n) {
  const v4d f = {factor, factor, factor, factor};
  int64_t i0 = 0;
  for (; i0 + 16 <= n; i0 += 16) {
    v4d a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
    for (int k = 0; k < nk; k++) {
      const v4d u = {us[k], us[k], us[k], us[k]};
      const v4du* dv = reinterpret_cast<const v4du*>(rows_k[k] + i0);
      a0 += u * dv[0];
      a1 += u * dv[1];
      a2 += u * dv[2];
      a3 += u * dv[3];
    }
    v4du* w = reinterpret_cast<v4du*>(update + i0);
    w[0] += f * a0;
    w[1] += f * a1;
    w[2] += f * a2;
    w[3] += f * a3;
  }
  for (int64_t i = i0; i < n; i++) {
    double acc = 0;
    for (int k = 0; k < nk; k++) acc += us[k] * rows_k[k][i];
    update[i] += factor * acc;
  }
}

}  // namespace
}  // namespace atelier

// Merges rows [r0, r1) of one weight exactly as merge-kernel.ts mergeRows. Patch j's up rows are
// `up + meta[6j]` ([count, rank] float32), its down `down + meta[6j+1]` ([rank, cols] double).
// Returns 0, or -1 for codes or ranges it does not know (the caller then runs the JS kernel).
extern "C" __attribute__((visibility("default"))) int atelier_lora_merge_rows(
    int rows, int cols, int stored, const uint8_t* base, const float* base_scales, int n_base_scales,
    int out, uint8_t* output, float* output_scales, const float* half_table, const float* bf16_table,
    const float* e4m3_table, const float* e5m2_table, const float* up, const double* down,
    const double* meta, int n_patches, int r0, int r1) {
  using namespace atelier;
  if (stored < kF32 || stored > kE5M2 || out < kOutF32 || out > kOutValues) return -1;
  if (rows < 0 || cols < 0 || r0 < 0 || r1 > rows || r0 > r1 || n_patches < 0) return -1;
  if ((stored == kE4M3 || stored == kE5M2) && n_base_scales < 1) return -1;
  const Tables tables{half_table, bf16_table, e4m3_table, e5m2_table};
  const int64_t n = cols;
  std::vector<float> row32(static_cast<size_t>(n));
  std::vector<double> update(static_cast<size_t>(n));
  int64_t max_rank = 0;
  for (int j = 0; j < n_patches; j++) max_rank = std::max(max_rank, static_cast<int64_t>(meta[j * kMetaFields + 2]));
  std::vector<const double*> rows_k(static_cast<size_t>(max_rank));
  std::vector<double> us(static_cast<size_t>(max_rank));
  for (int64_t r = r0; r < r1; r++) {
    decode_row(stored, base, base_scales, n_base_scales, rows, tables, r, n, row32.data());
    bool touched = false;
    std::fill(update.begin(), update.end(), 0.0);
    for (int j = 0; j < n_patches; j++) {
      const double* m = meta + static_cast<int64_t>(j) * kMetaFields;
      const int64_t rank = static_cast<int64_t>(m[2]);
      const int64_t local = r - static_cast<int64_t>(m[4]);
      if (local < 0 || local >= static_cast<int64_t>(m[5])) continue;
      touched = true;
      const float* u_row = up + static_cast<int64_t>(m[0]) + local * rank;
      const double* d = down + static_cast<int64_t>(m[1]);
      // As JS: zero up values (either sign) add nothing and are skipped; NaN ones still count.
      int nk = 0;
      for (int64_t k = 0; k < rank; k++) {
        if (u_row[k] == 0.0f) continue;
        rows_k[nk] = d + k * n;
        us[nk] = u_row[k];
        nk++;
      }
      add_patch(update.data(), rows_k.data(), us.data(), nk, m[3], n);
    }
    float* v = row32.data();
    if (touched)
      for (int64_t i = 0; i < n; i++) v[i] = static_cast<float>(static_cast<double>(v[i]) + update[i]);
    const int64_t at = r * n;
    switch (out) {
      case kOutF32:
      case kOutValues:
        std::memcpy(output + at * 4, v, static_cast<size_t>(n) * 4);
        break;
      case kOutF16:
      case kOutBF16: {
        uint8_t* o = output + at * 2;
        for (int64_t i = 0; i < n; i++) {
          const uint16_t bits = out == kOutF16 ? float_to_half(v[i]) : float_to_bf16(v[i]);
          std::memcpy(o + i * 2, &bits, 2);
        }
        break;
      }
      case kOutE4M3:
        output_scales[r] = encode_e4m3_row(v, output + at, n);
        break;
    }
  }
  return 0;
}
