/**
 * Host-side math for capi-check: seeded random inputs in the tensor's own type (float16 as bits),
 * float64 references of the ops checked on the GPU, and the error measures they are judged by.
 * Inputs are decoded from the exact bits written, so the reference sees what the device sees.
 */
import { floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';

export type FloatType = 'float16' | 'float32';
export type FloatData = Uint16Array | Float32Array;

/** mulberry32: a small seeded generator, uniform in [0, 1). */
export function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` samples of normal(mean, std) (Box–Muller), stored as `type` (float16: the bits). */
export function normals(type: FloatType, n: number, rnd: () => number, mean = 0, std = 1): FloatData {
  const out = type === 'float16' ? new Uint16Array(n) : new Float32Array(n);
  const put =
    type === 'float16'
      ? (i: number, v: number) => (out[i] = floatToHalf(v))
      : (i: number, v: number) => (out[i] = v);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rnd()));
    const t = 2 * Math.PI * rnd();
    put(i, mean + std * r * Math.cos(t));
    if (i + 1 < n) put(i + 1, mean + std * r * Math.sin(t));
  }
  return out;
}

/** Element `i` of a float tensor as a number (float16 bits decoded exactly). */
export function at(data: FloatData, i: number): number {
  return data instanceof Uint16Array ? halfToFloat(data[i]) : data[i];
}

/**
 * ‖a − b‖₂ / ‖b‖₂ of each output against the float64 AdaLNModulate of the inputs:
 * y[b, t, :] = (x − mean) / √(var + eps) · (1 + scale[b, :]) + shift[b, :], biased variance.
 */
export function adalnRelL2(
  x: FloatData,
  shift: FloatData,
  scale: FloatData,
  dims: readonly [number, number, number],
  epsilon: number,
  outputs: FloatData[],
): number[] {
  const [batch, tokens, channels] = dims;
  const diff = new Float64Array(outputs.length);
  let norm = 0;
  const row = new Float64Array(channels);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < tokens; t++) {
      const base = (b * tokens + t) * channels;
      let mean = 0;
      for (let c = 0; c < channels; c++) {
        row[c] = at(x, base + c);
        mean += row[c];
      }
      mean /= channels;
      let variance = 0;
      for (let c = 0; c < channels; c++) variance += (row[c] - mean) ** 2;
      const rstd = 1 / Math.sqrt(variance / channels + epsilon);
      for (let c = 0; c < channels; c++) {
        const y = (row[c] - mean) * rstd * (1 + at(scale, b * channels + c)) + at(shift, b * channels + c);
        norm += y * y;
        outputs.forEach((o, k) => {
          diff[k] += (at(o, base + c) - y) ** 2;
        });
      }
    }
  }
  return Array.from(diff, (d) => Math.sqrt(d / norm));
}

/** ‖a − b‖₂ / ‖b‖₂ of two tensors of the same size. */
export function relL2(a: FloatData, b: FloatData): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < b.length; i++) {
    const y = at(b, i);
    diff += (at(a, i) - y) ** 2;
    norm += y * y;
  }
  return Math.sqrt(diff / norm);
}

export interface AttentionDims {
  batch: number;
  tokens: number;
  heads: number;
  headDim: number;
}

/**
 * One output row of MultiHeadAttention (q, k, v, out [batch, tokens, heads·headDim]) in float64:
 * softmax(q·Kᵀ·scale)·V for token `t` of head `h` in sample `b`.
 */
export function attentionRow(
  q: FloatData,
  k: FloatData,
  v: FloatData,
  d: AttentionDims,
  b: number,
  t: number,
  h: number,
): Float64Array {
  const width = d.heads * d.headDim;
  const offset = (token: number) => (b * d.tokens + token) * width + h * d.headDim;
  const scale = 1 / Math.sqrt(d.headDim);
  const query = Float64Array.from({ length: d.headDim }, (_, i) => at(q, offset(t) + i));
  const scores = new Float64Array(d.tokens);
  let max = -Infinity;
  for (let j = 0; j < d.tokens; j++) {
    let s = 0;
    for (let i = 0; i < d.headDim; i++) s += query[i] * at(k, offset(j) + i);
    scores[j] = s * scale;
    max = Math.max(max, scores[j]);
  }
  const out = new Float64Array(d.headDim);
  let sum = 0;
  for (let j = 0; j < d.tokens; j++) {
    const w = Math.exp(scores[j] - max);
    sum += w;
    for (let i = 0; i < d.headDim; i++) out[i] += w * at(v, offset(j) + i);
  }
  return out.map((o) => o / sum);
}

/** Largest |out − ref| over sampled rows, relative to the largest |ref|. */
export function attentionError(
  q: FloatData,
  k: FloatData,
  v: FloatData,
  out: FloatData,
  d: AttentionDims,
  samples: { b: number; t: number; h: number }[],
): number {
  let err = 0;
  let peak = 0;
  for (const { b, t, h } of samples) {
    const ref = attentionRow(q, k, v, d, b, t, h);
    const base = (b * d.tokens + t) * d.heads * d.headDim + h * d.headDim;
    ref.forEach((r, i) => {
      err = Math.max(err, Math.abs(at(out, base + i) - r));
      peak = Math.max(peak, Math.abs(r));
    });
  }
  return err / peak;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
