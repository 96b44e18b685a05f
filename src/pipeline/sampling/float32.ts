/**
 * Float32 arithmetic that JavaScript lacks. `Math.fround(a op b)` already rounds +, −, ×, ÷ and
 * sqrt of two floats exactly as float32 hardware does (a double holds more than twice float's
 * precision); a fused multiply-add needs the help below.
 */

const f32 = Math.fround;
const scratch = new DataView(new ArrayBuffer(4));

/**
 * Fused multiply-add of floats rounded once to float: a·b is exact in a double (24 + 24 bits), the
 * sum's rounding error is recovered exactly (Knuth's two-sum), and it only decides the result when
 * the double sum sits exactly halfway between two floats.
 */
export function fmaf(a: number, b: number, c: number): number {
  const product = a * b;
  const sum = product + c;
  const back = sum - product;
  const error = product - (sum - back) + (c - back);
  const rounded = f32(sum);
  if (error === 0 || rounded === sum) return rounded;
  const other = adjacentFloat(rounded, sum > rounded);
  if (Math.abs(sum - rounded) !== Math.abs(other - sum)) return rounded;
  return error > 0 ? Math.max(rounded, other) : Math.min(rounded, other);
}

/** The float next to `value` (a float, not NaN), upward or downward. */
function adjacentFloat(value: number, upward: boolean): number {
  if (value === 0) return (upward ? 1 : -1) * 2 ** -149;
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  scratch.setUint32(0, upward === value > 0 ? bits + 1 : bits - 1);
  return scratch.getFloat32(0);
}
