import { describe, expect, it } from 'vitest';
import { fmaf } from '../../src/pipeline/sampling/float32.js';

// Exact check: with every operand a multiple of 2^-SCALE, a·b + c is an exact BigInt in units of
// 2^-2·SCALE, and the float result must be the nearest float to it (ties to an even mantissa).
const SCALE = 200n;
const scratch = new DataView(new ArrayBuffer(4));

function exact(value: number): bigint {
  // value · 2^SCALE is an integer for the floats generated below.
  return BigInt(value * 2 ** Number(SCALE));
}

function isCorrectlyRounded(result: number, a: number, b: number, c: number): boolean {
  const sum = exact(a) * exact(b) + exact(c) * 2n ** SCALE;
  const r = exact(result) * 2n ** SCALE;
  scratch.setFloat32(0, result);
  const bits = scratch.getUint32(0);
  const exponent = ((bits >>> 23) & 0xff) - 127;
  const halfUlp = 2n ** BigInt(exponent - 24 + 2 * Number(SCALE));
  const distance = sum > r ? sum - r : r - sum;
  if (distance < halfUlp) return true;
  return distance === halfUlp && (bits & 1) === 0;
}

/** A float with a random 24-bit mantissa and an exponent in [-20, 20]. */
function randomFloat(next: () => number): number {
  const mantissa = (next() & 0xffffff) | 0x800000;
  const exponent = (next() % 41) - 20;
  return Math.fround((next() & 1 ? -1 : 1) * mantissa * 2 ** (exponent - 23));
}

describe('fmaf (float32 fused multiply-add)', () => {
  it('rounds once where rounding the double sum to float would round twice', () => {
    const a = 1 + 2 ** -23;
    const b = 2 ** -24 * (1 - 2 ** -23);
    const c = 1 + 2 ** -23;
    // a·b + c lies just below the midpoint 1 + 2^-23 + 2^-24; the double sum is that midpoint.
    expect(Math.fround(a * b + c)).toBe(1 + 2 ** -22);
    expect(fmaf(a, b, c)).toBe(1 + 2 ** -23);
  });

  it('is correctly rounded on random operands of mixed magnitude', () => {
    let state = 12345;
    const next = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state >>> 1;
    };
    for (let i = 0; i < 20000; i++) {
      const a = randomFloat(next);
      const b = randomFloat(next);
      // c near −a·b makes cancellations; otherwise unrelated magnitudes.
      const c = i % 3 === 0 ? Math.fround(-a * b * (1 + (next() % 7) * 2 ** -20)) : randomFloat(next);
      const result = fmaf(a, b, c);
      if (result === 0) continue;
      expect(isCorrectlyRounded(result, a, b, c), `fmaf(${a}, ${b}, ${c}) = ${result}`).toBe(true);
    }
  });
});
