/**
 * floatToE4M3 reads the code off the float64's bits; it must give exactly what the definition
 * says: the nearest e4m3fn value, ties to the even code, saturating at ±448 (here: a search over
 * the 127 values, the way the encoder used to work).
 */
import { describe, expect, it } from 'vitest';
import { e4m3ToFloat, floatToE4M3 } from '../../src/pipeline/weights/dtypes.js';

const VALUES = Float64Array.from({ length: 0x7f }, (_, code) => e4m3ToFloat(code));

/** The definition: nearest value by search, ties to the even code. */
function reference(value: number): number {
  if (Number.isNaN(value)) return 0x7f;
  const sign = value < 0 || Object.is(value, -0) ? 0x80 : 0;
  const a = Math.abs(value);
  let lo = 0;
  let hi = VALUES.length - 1;
  if (a >= VALUES[hi]!) return sign | hi;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (VALUES[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - VALUES[lo]!;
  const dHi = VALUES[hi]! - a;
  return sign | (dLo < dHi || (dLo === dHi && lo % 2 === 0) ? lo : hi);
}

/** The float64 just above / below x (x > 0). */
function next(x: number, dir: 1 | -1): number {
  const f = new Float64Array([x]);
  const b = new BigUint64Array(f.buffer);
  b[0] = b[0]! + BigInt(dir);
  return f[0]!;
}

describe('floatToE4M3', () => {
  it('agrees with the nearest-value definition on every code, midpoint and their neighbours', () => {
    const cases: number[] = [
      0,
      -0,
      Number.NaN,
      448,
      449,
      463.99,
      464,
      465,
      480,
      1e9,
      Number.POSITIVE_INFINITY,
      2 ** -10,
    ];
    for (let c = 0; c < 0x7f; c++) {
      const v = VALUES[c]!;
      cases.push(v);
      if (c + 1 < 0x7f) {
        const mid = (v + VALUES[c + 1]!) / 2;
        cases.push(mid, next(mid, 1), next(mid, -1));
      }
      if (v > 0) cases.push(next(v, 1), next(v, -1));
    }
    for (const x of cases) {
      for (const s of [1, -1]) expect(floatToE4M3(s * x), `${s * x}`).toBe(reference(s * x));
    }
  });

  it('agrees with it on a million random values over e4m3’s whole range and beyond', () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let i = 0; i < 1_000_000; i++) {
      const x = (random() - 0.5) * 2 ** (random() * 24 - 14);
      const got = floatToE4M3(x);
      if (got !== reference(x)) expect(got, `${x}`).toBe(reference(x));
    }
  });
});
