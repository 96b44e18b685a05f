/**
 * Host-side math for capi-check: seeded random inputs in the tensor's own type (float16 as bits),
 * float64 references of the ops checked on the GPU, and the error measures they are judged by.
 * Inputs are decoded from the exact bits written, so the reference sees what the device sees.
 */
import { e4m3ToFloat, floatToE4M3, floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { rng } from '../../test/fixtures/random.js';

export type FloatType = 'float16' | 'float32';
export type FloatData = Uint16Array | Float32Array;

/** A seeded generator, uniform in [0, 1): the fixtures' mulberry32 (test/fixtures/random.ts). */
export const uniform = rng;

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

// ---- Fp8Linear (atelier:Fp8Linear, fp8_linear.h) ---------------------------------------------------

/** xorshift32 words from a seed (fast enough for tens of millions of draws). */
function words(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/**
 * `n` values drawn from `table` (65,536 precomputed samples of the wanted distribution, in the
 * tensor's own encoding): tens of millions of draws in well under a second.
 */
export function drawFromTable<T extends Uint8Array | Uint16Array>(out: T, table: T, seed: number): T {
  const next = words(seed);
  for (let i = 0; i < out.length; i += 2) {
    const w = next();
    out[i] = table[w & 0xffff];
    if (i + 1 < out.length) out[i + 1] = table[w >>> 16];
  }
  return out;
}

/** 65,536 samples of normal(0, std) as float16 bits. */
export function halfNormalTable(rnd: () => number, std: number): Uint16Array {
  return Uint16Array.from(normals('float32', 65536, rnd, 0, std) as Float32Array, floatToHalf);
}

/** 65,536 samples of normal(0, std) as e4m3 codes (rounded to nearest even, saturated at ±448). */
export function e4m3NormalTable(rnd: () => number, std: number): Uint8Array {
  return Uint8Array.from(normals('float32', 65536, rnd, 0, std) as Float32Array, floatToE4M3);
}

/** The 256 e4m3fn codes as floats (NaN codes included, as NaN). */
export const E4M3_VALUES = Float32Array.from({ length: 256 }, (_, code) => e4m3ToFloat(code));

export interface Fp8LinearProblem {
  /** float16 bits [M, K] */
  x: Uint16Array;
  /** e4m3 codes [N, K] */
  w8: Uint8Array;
  wScale: Float32Array;
  /** float16 bits [N] */
  bias: Uint16Array;
  k: number;
  n: number;
  gelu: boolean;
}

const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/**
 * Rows `rows` of Fp8Linear's output in float64: `quantized` is the op's own math (per-token e4m3
 * activations, fp8_linear.h), `exact` the same layer on the unquantized activations (what FP8
 * activations cost is the distance between them).
 */
export function fp8LinearRows(
  p: Fp8LinearProblem,
  rows: number[],
): { quantized: Float64Array; exact: Float64Array } {
  const { k, n } = p;
  const w = new Float32Array(n * k);
  for (let i = 0; i < w.length; i++) w[i] = E4M3_VALUES[p.w8[i]];
  const quantized = new Float64Array(rows.length * n);
  const exact = new Float64Array(rows.length * n);
  const x = new Float64Array(k);
  const x8 = new Float64Array(k);
  rows.forEach((r, j) => {
    let amax = 0;
    for (let i = 0; i < k; i++) {
      x[i] = halfToFloat(p.x[r * k + i]);
      amax = Math.max(amax, Math.abs(x[i]));
    }
    const actScale = Math.fround(amax / 448);
    const inv = amax > 0 ? Math.fround(448 / amax) : 0;
    for (let i = 0; i < k; i++) x8[i] = e4m3ToFloat(floatToE4M3(Math.fround(x[i] * inv)));
    for (let c = 0; c < n; c++) {
      let q = 0;
      let e = 0;
      const base = c * k;
      for (let i = 0; i < k; i++) {
        q += x8[i] * w[base + i];
        e += x[i] * w[base + i];
      }
      const b = halfToFloat(p.bias[c]);
      const vq = q * actScale * p.wScale[c] + b;
      const ve = e * p.wScale[c] + b;
      quantized[j * n + c] = p.gelu ? geluTanh(vq) : vq;
      exact[j * n + c] = p.gelu ? geluTanh(ve) : ve;
    }
  });
  return { quantized, exact };
}

/** Rows `rows` of a float16 [M, N] output, as float64. */
export function pickRows(y: FloatData, n: number, rows: number[]): Float64Array {
  const out = new Float64Array(rows.length * n);
  rows.forEach((r, j) => {
    for (let c = 0; c < n; c++) out[j * n + c] = at(y, r * n + c);
  });
  return out;
}

/** ‖a − b‖₂ / ‖b‖₂ of two float64 arrays. */
export function relL2f64(a: Float64Array, b: Float64Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < b.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

// ---- Fp8Attention (atelier:Fp8Attention, fp8_attention.h) ------------------------------------------

/** One tensor's per-tensor e4m3 scale as the op computes it (float32 divisions). */
export interface Fp8TensorScale {
  inv: number;
  descale: number;
}

/** amax of a float16 tensor (no NaNs): |x| orders as its bits without the sign. */
export function fp8TensorScale(x: Uint16Array): Fp8TensorScale {
  let top = 0;
  for (let i = 0; i < x.length; i++) top = Math.max(top, x[i] & 0x7fff);
  const amax = halfToFloat(top);
  return { inv: amax > 0 ? Math.fround(448 / amax) : 0, descale: Math.fround(amax / 448) };
}

/**
 * Output rows (b, t, h) of atelier:Fp8Attention in float64, D values each: `fp8` the op's quantized
 * math (per-tensor e4m3 q, k, v; online softmax over key blocks of 128 with the probabilities
 * quantized at scale 448; the output quantized with v's inverse scale and dequantized), `exact` the
 * unquantized attention of the same float16 inputs. q, k, v are float16 bits [B, T, H · D].
 */
export function fp8AttentionRows(
  q: Uint16Array,
  k: Uint16Array,
  v: Uint16Array,
  d: AttentionDims,
  samples: { b: number; t: number; h: number }[],
): { fp8: Float64Array; exact: Float64Array } {
  const width = d.heads * d.headDim;
  const scale = Math.fround(1 / Math.sqrt(d.headDim));
  const [sq, sk, sv] = [q, k, v].map(fp8TensorScale);
  const value8 = (x: Uint16Array, s: Fp8TensorScale, i: number) =>
    e4m3ToFloat(floatToE4M3(Math.fround(halfToFloat(x[i]) * s.inv)));
  const descaleS = Math.fround(1 / 448);
  const fp8 = new Float64Array(samples.length * d.headDim);
  const exact = new Float64Array(samples.length * d.headDim);
  const scores = new Float64Array(d.tokens);
  const exactScores = new Float64Array(d.tokens);
  samples.forEach(({ b, t, h }, row) => {
    const offset = (token: number) => (b * d.tokens + token) * width + h * d.headDim;
    const k8 = new Float64Array(d.tokens * d.headDim);
    const v8 = new Float64Array(d.tokens * d.headDim);
    for (let j = 0; j < d.tokens; j++)
      for (let i = 0; i < d.headDim; i++) {
        k8[j * d.headDim + i] = value8(k, sk, offset(j) + i);
        v8[j * d.headDim + i] = value8(v, sv, offset(j) + i);
      }
    const q8 = Float64Array.from({ length: d.headDim }, (_, i) => value8(q, sq, offset(t) + i));
    const qx = Float64Array.from({ length: d.headDim }, (_, i) => halfToFloat(q[offset(t) + i]));
    let m = Number.NEGATIVE_INFINITY;
    let l = 0;
    const o = new Float64Array(d.headDim);
    for (let j0 = 0; j0 < d.tokens; j0 += 128) {
      const end = Math.min(j0 + 128, d.tokens);
      let blockMax = Number.NEGATIVE_INFINITY;
      for (let j = j0; j < end; j++) {
        let dot = 0;
        for (let i = 0; i < d.headDim; i++) dot += q8[i] * k8[j * d.headDim + i];
        scores[j] = dot * sq.descale * sk.descale * scale;
        blockMax = Math.max(blockMax, scores[j]);
      }
      const mNew = Math.max(m, blockMax);
      const correction = Math.exp(m - mNew);
      for (let i = 0; i < d.headDim; i++) o[i] *= correction;
      l *= correction;
      const acc = new Float64Array(d.headDim);
      for (let j = j0; j < end; j++) {
        const p = Math.exp(scores[j] - mNew);
        l += p;
        const p8 = e4m3ToFloat(floatToE4M3(p * 448));
        for (let i = 0; i < d.headDim; i++) acc[i] += p8 * v8[j * d.headDim + i];
      }
      for (let i = 0; i < d.headDim; i++) o[i] += acc[i] * sv.descale * descaleS;
      m = mNew;
    }
    for (let i = 0; i < d.headDim; i++)
      fp8[row * d.headDim + i] = e4m3ToFloat(floatToE4M3((o[i] / l) * sv.inv)) * sv.descale;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < d.tokens; j++) {
      let dot = 0;
      for (let i = 0; i < d.headDim; i++) dot += qx[i] * halfToFloat(k[offset(j) + i]);
      exactScores[j] = dot / Math.sqrt(d.headDim);
      max = Math.max(max, exactScores[j]);
    }
    let sum = 0;
    const weighted = new Float64Array(d.headDim);
    for (let j = 0; j < d.tokens; j++) {
      const p = Math.exp(exactScores[j] - max);
      sum += p;
      for (let i = 0; i < d.headDim; i++) weighted[i] += p * halfToFloat(v[offset(j) + i]);
    }
    for (let i = 0; i < d.headDim; i++) exact[row * d.headDim + i] = weighted[i] / sum;
  });
  return { fp8, exact };
}

/** The sampled rows (b, t, h) of an [B, T, H · D] output, D values each, as float64. */
export function pickHeadRows(
  out: FloatData,
  d: AttentionDims,
  samples: { b: number; t: number; h: number }[],
): Float64Array {
  const got = new Float64Array(samples.length * d.headDim);
  samples.forEach(({ b, t, h }, row) => {
    const base = (b * d.tokens + t) * d.heads * d.headDim + h * d.headDim;
    for (let i = 0; i < d.headDim; i++) got[row * d.headDim + i] = at(out, base + i);
  });
  return got;
}

/** The largest |a − b| of two float64 arrays. */
export function maxAbs(a: Float64Array, b: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}
