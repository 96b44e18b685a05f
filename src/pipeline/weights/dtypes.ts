/**
 * Element types of safetensors files and the bit-exact conversions the pipeline needs on the CPU
 * (small tensors, scales, quantization at load). Big weights never pass through here: ONNX Runtime
 * reads them from the file through external data.
 */

export type SafetensorsDType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

export const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

export function isSafetensorsDType(value: string): value is SafetensorsDType {
  return Object.hasOwn(DTYPE_BYTES, value);
}

export function isFloatDType(dtype: SafetensorsDType): boolean {
  return dtype === 'F64' || dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' || dtype.startsWith('F8_');
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToFloat(bits: number): number {
  u32[0] = bits << 16;
  return f32[0];
}

/** IEEE half → float, exact (every half is representable as a float). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float → IEEE half, round to nearest even (as torch's .half()). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  let exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  exp = exp - 127 + 15;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    const half = 1 << (shift - 1);
    let r = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (exp << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

/** float → bfloat16, round to nearest even (as torch's .bfloat16()). */
export function floatToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) & 0x8000) | 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float8 e4m3fn (bias 7, no infinities, 0x7f/0xff are NaN) → float. */
export function e4m3ToFloat(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> 3) & 0xf;
  const mant = b & 0x7;
  if (exp === 0xf && mant === 0x7) return Number.NaN;
  if (exp === 0) return sign * mant * 2 ** -9;
  return sign * (1 + mant / 8) * 2 ** (exp - 7);
}

/** float8 e5m2 (bias 15, IEEE-like) → float. */
export function e5m2ToFloat(b: number): number {
  return halfToFloat(b << 8);
}

/** One float64's bits (little-endian words), for floatToE4M3. */
const F64 = new Float64Array(1);
const F64_WORDS = new Uint32Array(F64.buffer);

/**
 * float → float8 e4m3fn, round to nearest with ties to even code, saturating at ±448 (what
 * ComfyUI and torch produce for in-range weights when quantizing). Exact from the float64 value:
 * the code is read off its bits (exponent and the top 3 mantissa bits, rounded by the bits below),
 * a few operations instead of a search — it runs for every weight of a LoRA merge and of fp8
 * quantization at load. The e4m3 codes of one sign are in value order, so rounding up is code + 1.
 */
export function floatToE4M3(value: number): number {
  // Written to stay monomorphic and inlinable in V8 (no Object.is, no Math.min): 6–7 ns a value.
  if (Number.isNaN(value)) return 0x7f;
  let sign = 0;
  let a = value;
  if (value < 0 || (value === 0 && 1 / value < 0)) {
    sign = 0x80;
    a = -value;
  }
  if (a >= 448) return sign | 0x7e;
  F64[0] = a;
  const hi = F64_WORDS[1]!;
  const e8 = ((hi >>> 20) & 0x7ff) - 1023 + 7;
  if (e8 < 1) {
    // Subnormals (and zero): multiples of 2⁻⁹, code = the multiple (8 is the smallest normal).
    const k = a * 512;
    const r = Math.floor(k);
    const d = k - r;
    return sign | (d > 0.5 || (d === 0.5 && (r & 1) === 1) ? r + 1 : r);
  }
  const code = (e8 << 3) | ((hi >>> 17) & 7);
  // Round up when the bits below are over half, or exactly half and the code is odd (ties to even).
  const up = (hi >>> 16) & 1 && ((hi & 0xffff) | F64_WORDS[0]! || code & 1) ? 1 : 0;
  const rounded = code + up;
  // biome-ignore lint/complexity/useMathMinMax: Math.min here measured 4× slower (V8 deoptimised the loop)
  return sign | (rounded > 0x7e ? 0x7e : rounded);
}

/** Decodes raw little-endian bytes of a float tensor into float32 values. */
export function toFloat32(dtype: SafetensorsDType, bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      return out;
    case 'BF16':
      for (let i = 0; i < n; i++) out[i] = bf16ToFloat(view.getUint16(i * 2, true));
      return out;
    case 'F8_E4M3':
      for (let i = 0; i < n; i++) out[i] = e4m3ToFloat(bytes[i]);
      return out;
    case 'F8_E5M2':
      for (let i = 0; i < n; i++) out[i] = e5m2ToFloat(bytes[i]);
      return out;
    default:
      throw new TypeError(`${dtype} is not a floating-point type`);
  }
}
