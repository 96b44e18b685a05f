/**
 * atelier:FlashAttention (issue 10: FlashAttention-3 on Hopper in the C-API step) with its CPU kernel,
 * the float32 reference the GPU check compares FA3 with (native/, built here with g++), through the
 * C-API binding: against float64 attention at shapes with one token, a batch, SD3.5's 64-wide heads
 * and narrower ones, heads of very different scales; the scale attribute; as Net.attention builds it
 * (float16, a float32 graph casting around it, and MultiHeadAttention kept where attention has a
 * bias); the same numbers as ONNX Runtime's MultiHeadAttention on the same inputs; and what the
 * library says it was built with. Its errors: attention-ops-errors.test.ts. Inputs are drawn afresh
 * each run (the seed is in every failure message).
 */
import { randomInt } from 'node:crypto';
import onnxProto from 'onnx-proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BuiltModel, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net } from '../../src/pipeline/onnx/nn.js';
import { Params, type WeightSource } from '../../src/pipeline/onnx/params.js';
import {
  buildCustomOpsLibrary,
  customOpsFeatures,
  libraryFeatures,
} from '../../src/pipeline/ort/custom-ops.js';
import type { HostTensor } from '../../src/pipeline/ort/index.js';
import { floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { relL2 } from '../golden/manifest.js';
import { normals, runWithOps } from './run-graphs.js';

type Shape = [batch: number, tokens: number, heads: number, headDim: number];
type Inputs = Record<'q' | 'k' | 'v', Uint16Array>;

const NO_WEIGHTS: WeightSource = { description: 'no weights', resolve: () => undefined, keys: () => [] };

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

/** q, k, v as float16 bits; each head its own spread 10^N(0, spreadSd), so heads differ in scale. */
function randomInputs(shape: Shape, seed: number, spreadSd = 0.3): Inputs {
  const [b, t, heads, d] = shape;
  const normal = normals(seed);
  const spreads = Array.from({ length: heads }, () => 10 ** normal(0, spreadSd));
  const draw = () =>
    Uint16Array.from({ length: b * t * heads * d }, (_, i) => {
      const h = Math.floor(i / d) % heads;
      return floatToHalf(normal(0, spreads[h]));
    });
  return { q: draw(), k: draw(), v: draw() };
}

/**
 * softmax(scale · q·kᵀ) · v per (batch, head), in float64 from the float16 inputs; and per output
 * element how far float32 may stray: each probability inherits float32's relative error of its score
 * (|s_j| + |max|) and of the dot products' sums, so the bound is Σ_j p_j·|v_j|·(2 + |s_j| + |max|) / Σ p.
 */
function reference(
  shape: Shape,
  inputs: Inputs,
  scale: number,
): { out: Float64Array; sensitivity: Float64Array } {
  const [b, t, heads, d] = shape;
  const c = heads * d;
  const [q, k, v] = [inputs.q, inputs.k, inputs.v].map((x) => Float64Array.from(x, halfToFloat));
  const out = new Float64Array(b * t * c);
  const sensitivity = new Float64Array(b * t * c);
  const s = new Float64Array(t);
  const p = new Float64Array(t);
  for (let n = 0; n < b; n++)
    for (let h = 0; h < heads; h++) {
      const at = (token: number, i: number) => (n * t + token) * c + h * d + i;
      for (let row = 0; row < t; row++) {
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < t; j++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[at(row, i)] * k[at(j, i)];
          s[j] = dot * scale;
          max = Math.max(max, s[j]);
        }
        let sum = 0;
        for (let j = 0; j < t; j++) {
          p[j] = Math.exp(s[j] - max);
          sum += p[j];
        }
        for (let i = 0; i < d; i++) {
          let acc = 0;
          let moved = 0;
          for (let j = 0; j < t; j++) {
            acc += p[j] * v[at(j, i)];
            moved += p[j] * Math.abs(v[at(j, i)]) * (2 + Math.abs(s[j]) + Math.abs(max));
          }
          out[at(row, i)] = acc / sum;
          sensitivity[at(row, i)] = moved / sum;
        }
      }
    }
  return { out, sensitivity };
}

/** out = Net.attention(q, k, v) with `attention: 'flash'` (or `mha`), float16 or a float32 graph. */
function attentionGraph(
  shape: Shape,
  opts: { compute?: 'float16' | 'float32'; scale?: number; kernel?: 'flash' | 'mha'; bias?: boolean } = {},
): BuiltModel {
  const [b, t, heads, d] = shape;
  const compute = opts.compute ?? 'float16';
  const g = new GraphBuilder('flash_attention');
  const net = new Net(g, new Params(g, NO_WEIGHTS, compute), {
    ...DEFAULT_NET_OPTIONS,
    attention: opts.kernel ?? 'flash',
    customOps: true,
  });
  const dims = [b, t, heads * d];
  const [q, k, v] = ['q', 'k', 'v'].map((name) => g.input(name, compute, dims));
  const bias = opts.bias ? { bias: g.input('bias', compute, [1, heads, t, t]) } : {};
  const scale = opts.scale === undefined ? {} : { scale: opts.scale };
  g.output(net.attention(q, k, v, heads, d, { ...scale, ...bias }), 'y', compute, dims);
  return g.build();
}

const feeds = (shape: Shape, inputs: Inputs, f32 = false): Record<string, HostTensor> => {
  const [b, t, heads, d] = shape;
  const dims = [b, t, heads * d];
  const tensor = (data: Uint16Array): HostTensor =>
    f32
      ? { type: 'float32', dims, data: Float32Array.from(data, halfToFloat) }
      : { type: 'float16', dims, data };
  return { q: tensor(inputs.q), k: tensor(inputs.k), v: tensor(inputs.v) };
};

/** The float16 spacing at |x| (subnormals: 2⁻²⁴). */
function halfUlp(x: number): number {
  const a = Math.abs(x);
  return a < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(a)) - 10);
}

const asFloats = (out: HostTensor) =>
  out.type === 'float16'
    ? Float64Array.from(out.data as Uint16Array, halfToFloat)
    : Float64Array.from(out.data as Float32Array);

const count = (model: BuiltModel, opType: string) =>
  onnxProto.onnx.ModelProto.decode(model.bytes).graph!.node!.filter((n) => n.opType === opType).length;

// One token (the softmax of one score); a batch with a short sequence; SD3.5's 64-wide heads over
// more than one of FA3's 128-key tiles; narrow heads.
const SHAPES: Shape[] = [
  [1, 1, 2, 64],
  [2, 37, 3, 16],
  [1, 300, 2, 64],
  [3, 20, 4, 8],
];

describe('atelier:FlashAttention, CPU kernel', () => {
  it.each(SHAPES)(
    'equals float64 attention to float16 rounding (B %i, T %i, heads %i × %i)',
    async (...shape) => {
      const seed = randomInt(2 ** 31);
      const inputs = randomInputs(shape, seed);
      const [b, t, heads, d] = shape;
      const out = await runWithOps(library, attentionGraph(shape), feeds(shape, inputs));
      expect(out.type).toBe('float16');
      expect(out.dims).toEqual([b, t, heads * d]);
      const got = asFloats(out);
      const want = reference(shape, inputs, 1 / Math.sqrt(d));
      // The float16 rounding (half a step, and a step more where float32 lands near a boundary)
      // plus float32's own error: 8 units of float32 roundoff (2⁻²⁴) times the sensitivity.
      for (let i = 0; i < got.length; i++)
        expect(
          Math.abs(got[i] - want.out[i]),
          `seed ${seed}: out[${i}] = ${got[i]}, float64 ${want.out[i]}`,
        ).toBeLessThanOrEqual(1.5 * halfUlp(want.out[i]) + 2 ** -21 * want.sensitivity[i]);
    },
  );

  it('takes the scale attribute', async () => {
    const shape: Shape = [1, 40, 2, 16];
    const seed = randomInt(2 ** 31);
    const inputs = randomInputs(shape, seed);
    const got = asFloats(
      await runWithOps(library, attentionGraph(shape, { scale: 0.7 }), feeds(shape, inputs)),
    );
    const match = relL2(got, reference(shape, inputs, Math.fround(0.7)).out);
    const other = relL2(got, reference(shape, inputs, 0.25).out);
    expect(match, `seed ${seed}`).toBeLessThan(1e-3);
    expect(other, `seed ${seed}: against the default scale 1/√16`).toBeGreaterThan(10 * match);
  });

  it('runs in a float32 graph through Casts, with the same result', async () => {
    const shape: Shape = [2, 50, 2, 32];
    const seed = randomInt(2 ** 31);
    const inputs = randomInputs(shape, seed);
    const half = await runWithOps(library, attentionGraph(shape), feeds(shape, inputs));
    const f32 = await runWithOps(
      library,
      attentionGraph(shape, { compute: 'float32' }),
      feeds(shape, inputs, true),
    );
    expect(f32.type).toBe('float32');
    expect(Array.from(f32.data as Float32Array)).toEqual(Array.from(half.data as Uint16Array, halfToFloat));
  });

  it('gives what ONNX Runtime’s MultiHeadAttention gives on the same inputs', async () => {
    const shape: Shape = [2, 90, 3, 64];
    const seed = randomInt(2 ** 31);
    const inputs = randomInputs(shape, seed);
    // The CPU provider's MultiHeadAttention is float32 only: both graphs compute in float32.
    const flash = asFloats(
      await runWithOps(library, attentionGraph(shape, { compute: 'float32' }), feeds(shape, inputs, true)),
    );
    const mha = asFloats(
      await runWithOps(
        library,
        attentionGraph(shape, { compute: 'float32', kernel: 'mha' }),
        feeds(shape, inputs, true),
      ),
    );
    // Ours rounds to float16 once; MultiHeadAttention stays float32: the float16 rounding apart.
    expect(relL2(flash, mha), `seed ${seed}`).toBeLessThan(1e-3);
  });

  it('is built into the graph only where it applies: unbiased attention with our ops', () => {
    const shape: Shape = [1, 8, 2, 16];
    expect(count(attentionGraph(shape), 'FlashAttention')).toBe(1);
    expect(count(attentionGraph(shape), 'MultiHeadAttention')).toBe(0);
    // A bias (CLIP's causal mask, T5's positions) keeps MultiHeadAttention.
    const biased = attentionGraph(shape, { bias: true });
    expect(count(biased, 'FlashAttention')).toBe(0);
    expect(count(biased, 'MultiHeadAttention')).toBe(1);
    // Without our library in the session (customOps off) the option means MultiHeadAttention.
    const g = new GraphBuilder('no_ops');
    const net = new Net(g, new Params(g, NO_WEIGHTS, 'float16'), {
      ...DEFAULT_NET_OPTIONS,
      attention: 'flash',
    });
    const [q, k, v] = ['q', 'k', 'v'].map((name) => g.input(name, 'float16', [1, 8, 32]));
    g.output(net.attention(q, k, v, 2, 16), 'y', 'float16', [1, 8, 32]);
    const model = g.build();
    expect(count(model, 'FlashAttention')).toBe(0);
    expect(count(model, 'MultiHeadAttention')).toBe(1);
  });
});

describe('the op library says what it was built with', () => {
  it('the CPU build: no CUDA kernels, no FlashAttention-3', () => {
    expect(customOpsFeatures(library)).toEqual(new Set());
  });

  it('a library that cannot be loaded: no answer; for load-time choices, built without any feature', () => {
    expect(customOpsFeatures('/nonexistent/libatelier_ops_cuda.so')).toBeUndefined();
    expect(libraryFeatures('/nonexistent/libatelier_ops_cuda.so')).toEqual(new Set());
    expect(libraryFeatures(undefined)).toBeUndefined();
  });
});
