/**
 * Our custom-op library's CPU kernels (native/, built here with g++) loaded through the C-API
 * binding: atelier:AdaLNModulate against the stock graph Net.modulatedNorm emits without custom
 * ops (LayerNormalization, Mul, Add, run by onnxruntime-node) and against a float64 reference in
 * this file, on random inputs drawn afresh each run (the seed is in every failure message).
 */
import { randomInt } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BuiltModel, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net } from '../../src/pipeline/onnx/nn.js';
import { Params, type WeightSource } from '../../src/pipeline/onnx/params.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import { floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { relL2 } from '../golden/manifest.js';
import { normals, runStock, runWithOps } from './run-graphs.js';

type Dtype = 'float32' | 'float16';
type Shape = [batch: number, tokens: number, channels: number];

const NO_WEIGHTS: WeightSource = { description: 'no weights', resolve: () => undefined, keys: () => [] };

/** y = modulatedNorm(x, shift, scale) as one graph; `customOps` picks the fused node or stock ops. */
function modulatedNormGraph(dtype: Dtype, [b, t, c]: Shape, eps: number, customOps: boolean): BuiltModel {
  const g = new GraphBuilder('modulated_norm');
  const net = new Net(g, new Params(g, NO_WEIGHTS, dtype), { ...DEFAULT_NET_OPTIONS, customOps });
  const x = g.input('x', dtype, [b, t, c]);
  const shift = g.input('shift', dtype, [b, 1, c]);
  const scale = g.input('scale', dtype, [b, 1, c]);
  g.output(net.modulatedNorm(x, shift, scale, c, eps), 'y', dtype, [b, t, c]);
  return g.build();
}

interface Inputs {
  feeds: Record<string, HostTensor>;
  /** The values the kernels see (float16 already rounded), for the float64 reference. */
  values: Record<'x' | 'shift' | 'scale', Float64Array>;
}

/** x with an offset and spread (so the mean and variance matter), shift and scale around 0. */
function randomInputs(dtype: Dtype, [b, t, c]: Shape, seed: number, xSpread = 2): Inputs {
  const normal = normals(seed);
  const draw = (n: number, mean: number, sd: number) =>
    Float64Array.from({ length: n }, () => normal(mean, sd));
  const raw = { x: draw(b * t * c, 3, xSpread), shift: draw(b * c, 0, 1), scale: draw(b * c, 0, 0.5) };
  const dims = { x: [b, t, c], shift: [b, 1, c], scale: [b, 1, c] };
  const feeds: Record<string, HostTensor> = {};
  const values = {} as Inputs['values'];
  for (const key of ['x', 'shift', 'scale'] as const) {
    if (dtype === 'float32') {
      const data = Float32Array.from(raw[key]);
      feeds[key] = { type: dtype, dims: dims[key], data };
      values[key] = Float64Array.from(data);
    } else {
      const data = Uint16Array.from(raw[key], floatToHalf);
      feeds[key] = { type: dtype, dims: dims[key], data };
      values[key] = Float64Array.from(data, halfToFloat);
    }
  }
  return { feeds, values };
}

/** LayerNorm (biased variance) · (1 + scale) + shift, all in float64. */
function reference({ x, shift, scale }: Inputs['values'], [b, t, c]: Shape, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let row = 0; row < b * t; row++) {
    const at = row * c;
    const batch = Math.floor(row / t) * c;
    let mean = 0;
    for (let i = 0; i < c; i++) mean += x[at + i];
    mean /= c;
    let variance = 0;
    for (let i = 0; i < c; i++) variance += (x[at + i] - mean) ** 2;
    variance /= c;
    const rstd = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < c; i++)
      y[at + i] = (x[at + i] - mean) * rstd * (1 + scale[batch + i]) + shift[batch + i];
  }
  return y;
}

const asFloats = (t: { type: string; data: unknown }): Float64Array =>
  t.type === 'float16'
    ? Float64Array.from(t.data as Uint16Array, halfToFloat)
    : Float64Array.from(t.data as Float32Array);

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

// fp16: the fused kernel rounds once, the stock graph after LayerNorm, Mul and Add (≈ 3 · 2⁻¹¹ / √3).
const TOLERANCE: Record<Dtype, { stock: number; reference: number }> = {
  float32: { stock: 1e-5, reference: 1e-6 },
  float16: { stock: 1e-3, reference: 1e-3 },
};

// Small rows, one row per batch, a width that is no multiple of 4 or 8, and enough rows that the
// CPU kernel splits them over ONNX Runtime's thread pool.
const SHAPES: Shape[] = [
  [2, 7, 64],
  [3, 1, 50],
  [2, 333, 96],
];

describe.each<Dtype>(['float32', 'float16'])('atelier:AdaLNModulate, %s, CPU kernel', (dtype) => {
  it.each(SHAPES)('matches the stock ops and a float64 reference for [%i, %i, %i]', async (...shape) => {
    const seed = randomInt(2 ** 31);
    const eps = 1e-6;
    const { feeds, values } = randomInputs(dtype, shape, seed);
    const fused = await runWithOps(library, modulatedNormGraph(dtype, shape, eps, true), feeds);
    const stock = await runStock(modulatedNormGraph(dtype, shape, eps, false), feeds);
    expect(fused.type).toBe(dtype);
    expect(fused.dims).toEqual(shape);
    const y = asFloats(fused);
    expect(relL2(y, asFloats(stock)), `stock, seed ${seed}`).toBeLessThanOrEqual(TOLERANCE[dtype].stock);
    expect(relL2(y, reference(values, shape, eps)), `reference, seed ${seed}`).toBeLessThanOrEqual(
      TOLERANCE[dtype].reference,
    );
  });

  it('honours the epsilon attribute', async () => {
    const seed = randomInt(2 ** 31);
    const shape: Shape = [2, 5, 64];
    // A spread of 0.2 (variance 0.04) against eps 0.25: epsilon dominates the denominator.
    const { feeds, values } = randomInputs(dtype, shape, seed, 0.2);
    const eps = 0.25;
    const y = asFloats(await runWithOps(library, modulatedNormGraph(dtype, shape, eps, true), feeds));
    const withEps = reference(values, shape, eps);
    expect(relL2(reference(values, shape, 1e-6), withEps)).toBeGreaterThan(0.1);
    expect(relL2(y, withEps), `seed ${seed}`).toBeLessThanOrEqual(TOLERANCE[dtype].reference);
  });
});

describe('atelier:AdaLNModulate shape inference', () => {
  it("tells ONNX Runtime that y has x's shape, named dimensions included", async () => {
    const session = (channelsDeclared: number) => {
      const g = new GraphBuilder('shapes');
      const net = new Net(g, new Params(g, NO_WEIGHTS, 'float32'), {
        ...DEFAULT_NET_OPTIONS,
        customOps: true,
      });
      const x = g.input('x', 'float32', ['batch', 'tokens', 8]);
      const shift = g.input('shift', 'float32', ['batch', 1, 8]);
      const scale = g.input('scale', 'float32', ['batch', 1, 8]);
      const y = g.op('Relu', [net.modulatedNorm(x, shift, scale, 8, 1e-6)]);
      g.output(y, 'y', 'float32', ['batch', 'tokens', channelsDeclared]);
      // Strict inference turns a conflict between the inferred and the declared shape into an error.
      const config = { 'session.strict_shape_type_inference': '1' };
      return CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library], config });
    };
    (await session(8)).release();
    await expect(session(9)).rejects.toThrow(/Inferred=8 Declared=9/);
  });
});

describe('atelier:AdaLNModulate errors', () => {
  it('is refused by ONNX Runtime when the library is not loaded', async () => {
    const model = modulatedNormGraph('float32', [1, 2, 8], 1e-6, true);
    await expect(CapiSession.create(model, { provider: 'cpu' })).rejects.toThrow(
      /atelier:AdaLNModulate.*is not a registered function\/op/,
    );
  });

  it('names the input whose shape is wrong', async () => {
    // A graph whose shift has a token axis: shapes are only checked when the kernel runs.
    const g = new GraphBuilder('bad_shift');
    const net = new Net(g, new Params(g, NO_WEIGHTS, 'float32'), { ...DEFAULT_NET_OPTIONS, customOps: true });
    const x = g.input('x', 'float32', [1, 3, 8]);
    const shift = g.input('shift', 'float32', [1, 3, 8]);
    const scale = g.input('scale', 'float32', [1, 1, 8]);
    g.output(net.modulatedNorm(x, shift, scale, 8, 1e-6), 'y', 'float32', [1, 3, 8]);
    const { feeds } = randomInputs('float32', [1, 3, 8], 1);
    feeds.shift = { type: 'float32', dims: [1, 3, 8], data: new Float32Array(24) };
    await expect(runWithOps(library, g.build(), feeds)).rejects.toThrow(
      /AdaLNModulate: shift must be \[B, 1, C\] = \[1, 1, 8\] for x \[1, 3, 8\], got \[1, 3, 8\]/,
    );
  });
});
