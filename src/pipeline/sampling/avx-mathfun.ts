/**
 * The float32 log and sincos that torch's AVX2 `normal_fill_16_AVX2` calls: log256_ps and
 * sincos256_ps of pytorch/pytorch aten/src/ATen/native/cpu/avx_mathfun.h (Giovanni Garberoglio's
 * AVX version of Julien Pommier's sse_mathfun, zlib licence; the Cephes `logf`/`sinf`
 * polynomials). Reproduced one lane at a time with every operation rounded to float as the vector
 * instructions round it. GCC contracts each `mul` feeding an `add` into one fused multiply-add
 * (torch's AVX2 kernels are built with -mfma), so those steps are FMAs here too: with them the
 * noise matches torch bit for bit (checked on the golden set and against torch's own output).
 */

import { fmaf } from './float32.js';

const f32 = Math.fround;

// biome-ignore lint/correctness/noPrecisionLoss: the C source's literal; rounded to float as there
const SQRT_HALF = f32(0.707106781186547524);
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(f32);
// ln 2 split in two (Cephes C1/C2): e·ln2 added in two parts to keep precision.
const LN2_LO = f32(-2.1219444e-4);
const LN2_HI = f32(0.693359375);
const MIN_NORMAL = 2 ** -126;

const FOUR_OVER_PI = f32(1.27323954473516);
// −π/4 split in three parts so that x − j·π/4 keeps extra precision (Cephes DP1..DP3).
// biome-ignore lint/correctness/noPrecisionLoss: the C source's literals; rounded to float as there
const MINUS_PI_4 = [-0.78515625, -2.4187564849853515625e-4, -3.77489497744594108e-8].map(f32);
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f32);
const COS_P = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f32);

const scratch = new DataView(new ArrayBuffer(4));

/** log256_ps for one lane, for x > 0 (the Box-Muller argument 1 − u is in (0, 1]). */
export function logf(value: number): number {
  scratch.setFloat32(0, Math.max(f32(value), MIN_NORMAL));
  const bits = scratch.getUint32(0);
  // x = m · 2^e with m in [0.5, 1): keep the mantissa bits under the exponent of 0.5.
  scratch.setUint32(0, (bits & ~0x7f800000) | 0x3f000000);
  let x = scratch.getFloat32(0);
  let e = f32((bits >>> 23) - 0x7f + 1);
  if (x < SQRT_HALF) {
    e = f32(e - 1);
    x = f32(f32(x - 1) + x);
  } else {
    x = f32(x - 1);
  }
  const z = f32(x * x);
  let y = LOG_P[0];
  for (let i = 1; i < LOG_P.length; i++) y = fmaf(y, x, LOG_P[i]);
  y = f32(y * x);
  y = fmaf(y, z, f32(e * LN2_LO));
  y = fmaf(-z, 0.5, y);
  x = f32(x + y);
  return fmaf(e, LN2_HI, x);
}

/** sincos256_ps for one lane: [sin x, cos x] in float32. */
export function sincosf(value: number): [sin: number, cos: number] {
  let x = Math.abs(f32(value));
  // Octant j of |x| (rounded up to even) and the reduced argument x − j·π/4.
  let j = Math.trunc(f32(x * FOUR_OVER_PI));
  j = (j + 1) & ~1;
  const sinNegative = ((j & 4) !== 0) !== value < 0;
  const cosNegative = (~(j - 2) & 4) !== 0;
  const sinFromSinPoly = (j & 2) === 0;
  for (const part of MINUS_PI_4) x = fmaf(j, part, x);

  const z = f32(x * x);
  let c = fmaf(COS_P[0], z, COS_P[1]);
  c = fmaf(c, z, COS_P[2]);
  c = f32(c * z);
  c = fmaf(c, z, -f32(z * 0.5));
  c = f32(c + 1);

  let s = fmaf(SIN_P[0], z, SIN_P[1]);
  s = fmaf(s, z, SIN_P[2]);
  s = f32(s * z);
  s = fmaf(s, x, x);

  const sin = sinFromSinPoly ? s : c;
  const cos = sinFromSinPoly ? c : s;
  return [sinNegative ? -sin : sin, cosNegative ? -cos : cos];
}
