/**
 * The T5 encoder graph against the golden set (computed by the reference other_impls.T5XXLModel),
 * driven by manifest.json; then what the golden set cannot show: prompts longer than 77 tokens
 * (distances past the relative bias's max_distance), batches, and fp8-stored weights.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { buildT5, relativePositionBucket, type T5Config, t5Config } from '../../src/pipeline/models/t5.js';
import { GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { Net, type NetOptions } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import { e4m3ToFloat, floatToE4M3, floatToHalf } from '../../src/pipeline/weights/dtypes.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type TensorToWrite, writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';
import {
  type GoldenComponent,
  type GoldenE2E,
  type GoldenSet,
  goldenSets,
  manifestPath,
  relL2,
} from '../golden/manifest.js';

interface T5Component extends GoldenComponent {
  config: { d_ff: number; d_model: number; num_heads: number; num_layers: number; vocab_size: number };
  weights: string;
  io: string;
  tolerance_rel_l2: number;
  tensors: Record<string, { shape: number[]; dtype: string }>;
}

function readInt64(file: SafetensorsFile, name: string): BigInt64Array {
  const bytes = file.readBytes(name);
  return new BigInt64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
}

const opened: SafetensorsFile[] = [];

/** The set's T5 component, its weights and its io, closed after the file's tests. */
function load(set: GoldenSet) {
  const t5 = set.component<T5Component>('t5');
  const weights = set.open(t5.weights);
  const io = set.open(t5.io);
  opened.push(weights, io);
  return { t5, weights, io };
}
afterAll(() => {
  for (const f of opened) f.close();
});

async function t5Session(file: SafetensorsFile, options?: Partial<NetOptions>) {
  const g = new GraphBuilder('t5');
  const p = new Params(g, new FileWeightSource(file), 'float32');
  const net = new Net(g, p, { attention: 'mha', fp8Linear: 'dequantize', ...options });
  const cfg = t5Config(p);
  buildT5(net, cfg);
  return { cfg, session: await openSession('t5', g.build(), { provider: 'cpu' }) };
}

async function encode(
  session: ort.InferenceSession,
  ids: BigInt64Array,
  dims: number[],
): Promise<Float32Array> {
  const out = await session.run({ input_ids: new ort.Tensor('int64', ids, dims) });
  return out.hidden.data as Float32Array;
}

describe.each(goldenSets('t5'))('T5 encoder against the $name golden set', (set) => {
  const { t5, weights, io } = load(set);

  it('derives the configuration from the state dict', async () => {
    const { cfg } = await t5Session(weights);
    expect(cfg).toMatchObject({
      dModel: t5.config.d_model,
      dFF: t5.config.d_ff,
      layers: t5.config.num_layers,
      vocab: t5.config.vocab_size,
      heads: t5.config.num_heads,
      relativeBuckets: 32,
    });
  });

  if (set.has('e2e'))
    it("derives the end-to-end model's T5 configuration (another width and head count)", async () => {
      const e2e = set.component<GoldenE2E>('e2e');
      const encoders = set.path(manifestPath(e2e.models), 'text_encoders');
      const name = readdirSync(encoders).find((f) => f.startsWith('t5') && f.endsWith('.safetensors'));
      const file = SafetensorsFile.open(join(encoders, name ?? 'no T5 file in the e2e models'));
      opened.push(file);
      const expected = (e2e.configs as { t5: T5Component['config'] }).t5;
      const { cfg } = await t5Session(file);
      expect(cfg).toMatchObject({
        dModel: expected.d_model,
        dFF: expected.d_ff,
        layers: expected.num_layers,
        vocab: expected.vocab_size,
        heads: expected.num_heads,
      });
    });

  for (const attention of ['mha', 'basic'] as const) {
    it(`reproduces the reference's last hidden state (${attention} attention)`, async () => {
      const { session } = await t5Session(weights, { attention });
      const ids = readInt64(io, 'input_ids');
      const hidden = await encode(session, ids, t5.tensors.input_ids.shape);
      expect(relL2(hidden, io.readFloat32('hidden'))).toBeLessThan(t5.tolerance_rel_l2);
    });
  }
});

describe('T5 relative position buckets', () => {
  it('buckets distances as T5 does: exact below 8, logarithmic to 128, then the last bucket', () => {
    // Bidirectional, 32 buckets, max distance 128 (T5's table): [first distance, bucket] per step.
    const steps: [number, number][] = [
      [8, 8],
      [12, 9],
      [16, 10],
      [23, 11],
      [32, 12],
      [46, 13],
      [64, 14],
      [91, 15],
    ];
    const expected = (d: number) => (d < 8 ? d : steps.filter(([from]) => from <= d).at(-1)![1]);
    for (let d = 0; d <= 600; d++) {
      // Keys before the query (j < i) use the first half, keys after it the second.
      expect(relativePositionBucket(-d, true, 32, 128)).toBe(expected(d));
      if (d > 0) expect(relativePositionBucket(d, true, 32, 128)).toBe(16 + expected(d));
    }
  });
});

describe.each(goldenSets('t5'))('T5 encoder beyond the shapes of the $name golden set', (set) => {
  const { t5, weights, io } = load(set);

  it('encodes prompts longer than the relative bias reaches, each batch row as if alone', async () => {
    const { cfg, session } = await t5Session(weights);
    const golden = readInt64(io, 'input_ids');
    const tokens = 300; // > 2 × max_distance: distances saturate in the last buckets
    const ids = new BigInt64Array(2 * tokens);
    for (let i = 0; i < ids.length; i++) ids[i] = golden[(i * 7 + (i >= tokens ? 3 : 0)) % golden.length];
    const batch = await encode(session, ids, [2, tokens]);
    const expected = referenceT5(weights, cfg, ids.subarray(tokens), tokens);
    const second = batch.subarray(tokens * cfg.dModel);
    expect(relL2(second, expected)).toBeLessThan(t5.tolerance_rel_l2);
    const alone = await encode(session, ids.slice(0, tokens), [1, tokens]);
    expect(relL2(batch.subarray(0, tokens * cfg.dModel), alone)).toBeLessThan(1e-6);
  });

  it('the independent reference used above agrees with the golden output', () => {
    const cfg = t5Shape(t5);
    const ids = readInt64(io, 'input_ids');
    const tokens = t5.tensors.input_ids.shape[1];
    const hidden = referenceT5(weights, cfg, ids, tokens);
    expect(relL2(hidden, io.readFloat32('hidden'))).toBeLessThan(t5.tolerance_rel_l2);
  });

  it('runs fp8-stored weights (t5xxl_fp8_e4m3fn) as their exact dequantized values', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atelier-t5-'));
    const fp8: TensorToWrite[] = [];
    const dequantized: TensorToWrite[] = [];
    for (const [name, info] of weights.tensors) {
      const values = weights.readFloat32(name);
      // As t5xxl_fp8_e4m3fn stores them: every matrix (the embedding too) in e4m3, norms in fp16.
      if (info.shape.length === 2 && !name.includes('relative_attention_bias')) {
        // Linear layers as ComfyUI "scaled fp8" (w8 · scale_weight), the embedding as plain e4m3.
        const scale = name === 'encoder.embed_tokens.weight' ? 1 : 1 / 8;
        const bytes = Uint8Array.from(values, (v) => floatToE4M3(v / scale));
        fp8.push({ name, dtype: 'F8_E4M3', shape: info.shape, data: bytes });
        if (scale !== 1) {
          const scaleName = name.replace(/\.weight$/, '.scale_weight');
          fp8.push({ name: scaleName, dtype: 'F32', shape: [], data: new Float32Array([scale]) });
        }
        const exact = Float32Array.from(bytes, (b) => e4m3ToFloat(b) * scale);
        dequantized.push({ name, dtype: 'F32', shape: info.shape, data: exact });
      } else {
        const half = {
          name,
          dtype: 'F16' as const,
          shape: info.shape,
          data: Uint16Array.from(values, floatToHalf),
        };
        fp8.push(half);
        dequantized.push(half);
      }
    }
    writeSafetensors(join(dir, 'fp8.safetensors'), fp8);
    writeSafetensors(join(dir, 'exact.safetensors'), dequantized);
    const fp8File = SafetensorsFile.open(join(dir, 'fp8.safetensors'));
    const exactFile = SafetensorsFile.open(join(dir, 'exact.safetensors'));
    opened.push(fp8File, exactFile);
    const ids = readInt64(io, 'input_ids');
    const dims = t5.tensors.input_ids.shape;
    const fromFp8 = await encode((await t5Session(fp8File)).session, ids, dims);
    const fromExact = await encode((await t5Session(exactFile)).session, ids, dims);
    expect(relL2(fromFp8, fromExact)).toBeLessThan(1e-5);
  });
});

/** The shape half of T5Config from the manifest (what the reference's config dict says). */
function t5Shape(t5: T5Component): T5Config {
  const c = t5.config;
  return {
    layers: c.num_layers,
    dModel: c.d_model,
    dFF: c.d_ff,
    vocab: c.vocab_size,
    heads: c.num_heads,
    innerDim: c.d_model,
    relativeBuckets: 32,
    relativeMaxDistance: 128,
  };
}

/**
 * A plain float64 transcription of other_impls.T5 for one sequence, to check what the golden set
 * does not cover (any token count). Deliberately naive: loops, no ONNX.
 */
function referenceT5(file: SafetensorsFile, cfg: T5Config, ids: BigInt64Array, tokens: number): Float64Array {
  const w = (k: string) => file.readFloat32(k);
  const d = cfg.dModel;
  const embed = w('encoder.embed_tokens.weight');
  let x = new Float64Array(tokens * d);
  for (let t = 0; t < tokens; t++) for (let c = 0; c < d; c++) x[t * d + c] = embed[Number(ids[t]) * d + c];
  const rms = (v: Float64Array, weight: Float32Array) => {
    const out = new Float64Array(v.length);
    for (let t = 0; t < tokens; t++) {
      let ms = 0;
      for (let c = 0; c < d; c++) ms += v[t * d + c] ** 2;
      const inv = 1 / Math.sqrt(ms / d + 1e-6);
      for (let c = 0; c < d; c++) out[t * d + c] = v[t * d + c] * inv * weight[c];
    }
    return out;
  };
  const linear = (v: Float64Array, weight: Float32Array, inF: number, outF: number) => {
    const out = new Float64Array(tokens * outF);
    for (let t = 0; t < tokens; t++)
      for (let o = 0; o < outF; o++) {
        let s = 0;
        for (let i = 0; i < inF; i++) s += v[t * inF + i] * weight[o * inF + i];
        out[t * outF + o] = s;
      }
    return out;
  };
  const relBias = w('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight');
  const heads = cfg.heads;
  const hd = cfg.innerDim / heads;
  for (let b = 0; b < cfg.layers; b++) {
    const pre = `encoder.block.${b}.layer`;
    const h = rms(x, w(`${pre}.0.layer_norm.weight`));
    const q = linear(h, w(`${pre}.0.SelfAttention.q.weight`), d, cfg.innerDim);
    const k = linear(h, w(`${pre}.0.SelfAttention.k.weight`), d, cfg.innerDim);
    const v = linear(h, w(`${pre}.0.SelfAttention.v.weight`), d, cfg.innerDim);
    const attn = new Float64Array(tokens * cfg.innerDim);
    const scores = new Float64Array(tokens);
    for (let head = 0; head < heads; head++)
      for (let i = 0; i < tokens; i++) {
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < tokens; j++) {
          let s = relBias[relativePositionBucket(j - i, true, 32, 128) * heads + head];
          for (let e = 0; e < hd; e++)
            s += q[i * cfg.innerDim + head * hd + e] * k[j * cfg.innerDim + head * hd + e];
          scores[j] = s;
          max = Math.max(max, s);
        }
        let sum = 0;
        for (let j = 0; j < tokens; j++) {
          scores[j] = Math.exp(scores[j] - max);
          sum += scores[j];
        }
        for (let j = 0; j < tokens; j++)
          for (let e = 0; e < hd; e++)
            attn[i * cfg.innerDim + head * hd + e] += (scores[j] / sum) * v[j * cfg.innerDim + head * hd + e];
      }
    const o = linear(attn, w(`${pre}.0.SelfAttention.o.weight`), cfg.innerDim, d);
    x = x.map((value, i) => value + o[i]);
    const f = rms(x, w(`${pre}.1.layer_norm.weight`));
    const gate = linear(f, w(`${pre}.1.DenseReluDense.wi_0.weight`), d, cfg.dFF);
    const lin = linear(f, w(`${pre}.1.DenseReluDense.wi_1.weight`), d, cfg.dFF);
    const gelu = (z: number) => 0.5 * z * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (z + 0.044715 * z ** 3)));
    const ff = linear(
      gate.map((z, i) => gelu(z) * lin[i]),
      w(`${pre}.1.DenseReluDense.wo.weight`),
      cfg.dFF,
      d,
    );
    x = x.map((value, i) => value + ff[i]);
  }
  return rms(x, w('encoder.final_layer_norm.weight'));
}
