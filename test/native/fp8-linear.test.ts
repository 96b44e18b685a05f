/**
 * atelier:Fp8Linear's CPU kernel (native/, built here with g++) through the C-API binding: W8A8
 * with per-token dynamic activation scales. Judged against a float64 reference of the quantized
 * math in this file (tight: only float32 summation and the float16 output separate them), the
 * quantizer bit for bit through an identity weight, and a float32 MatMul of the unquantized
 * activations run by onnxruntime-node (loose: that difference is what FP8 activations cost, printed).
 * Random inputs are drawn afresh each run (the seed is in every failure message).
 */
import { randomInt } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { ATELIER_DOMAIN, type BuiltModel, GraphBuilder, MS_DOMAIN } from '../../src/pipeline/onnx/graph.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import { e4m3ToFloat, floatToE4M3, floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { relL2 } from '../golden/manifest.js';
import { normals, runStock, runWithOps } from './run-graphs.js';

type Activation = 'none' | 'gelu_tanh';

interface Problem {
  /** x's leading axes (their product is the number of rows M). */
  lead: number[];
  k: number;
  n: number;
  /** e4m3 bits [N, K]. */
  w8: Uint8Array;
  wScale: Float32Array;
  /** float16 bits [N], or none. */
  bias?: Uint16Array;
  /** float16 bits [..., K]. */
  x: Uint16Array;
}

/**
 * A linear layer as ComfyUI's scaled fp8 stores it (weights spread over e4m3's range, a scale per
 * output channel) and activations whose rows differ in scale by orders of magnitude, some with an
 * outlier channel, so per-token scaling matters.
 */
function randomProblem(lead: number[], k: number, n: number, seed: number, withBias = true): Problem {
  const normal = normals(seed);
  const rows = lead.reduce((a, b) => a * b, 1);
  const w8 = Uint8Array.from({ length: n * k }, () => floatToE4M3(normal(0, 120)));
  const wScale = Float32Array.from({ length: n }, () => Math.abs(normal(0.02, 0.01)) / 448 + 1e-6);
  const bias = withBias ? Uint16Array.from({ length: n }, () => floatToHalf(normal(0, 0.5))) : undefined;
  const x = new Uint16Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const spread = 10 ** Math.max(-2, Math.min(2, normal(0, 1))); // 0.01 … 100, far inside float16
    for (let i = 0; i < k; i++) x[r * k + i] = floatToHalf(normal(0.1 * spread, spread));
    if (r % 3 === 1) x[r * k + ((r * 7) % k)] = floatToHalf(20 * spread); // an outlier channel
  }
  return { lead, k, n, w8, wScale, bias, x };
}

function fp8LinearGraph(
  p: Problem,
  activation: Activation = 'none',
  attrs: Record<string, string | number> = {},
): BuiltModel {
  const g = new GraphBuilder('fp8_linear');
  const x = g.input('x', 'float16', [...p.lead, p.k]);
  const w = g.constant('weight', 'float8e4m3fn', [p.n, p.k], p.w8);
  const s = g.constant('weight_scale', 'float32', [p.n], p.wScale);
  const inputs = [x, w, s];
  if (p.bias) inputs.push(g.constant('bias', 'float16', [p.n], p.bias));
  const y = g.op(
    'Fp8Linear',
    inputs,
    { ...(activation === 'none' ? {} : { activation }), ...attrs },
    ATELIER_DOMAIN,
  );
  g.output(y, 'y', 'float16', [...p.lead, p.n]);
  return g.build();
}

const feeds = (p: Problem): Record<string, HostTensor> => ({
  x: { type: 'float16', dims: [...p.lead, p.k], data: p.x },
});

const rowsOf = (p: Problem) => p.lead.reduce((a, b) => a * b, 1);

/** The op's quantization of one row, as fp8_linear.h defines it (float32 arithmetic where it says so). */
function quantizeRow(p: Problem, r: number): { x8: Float64Array; actScale: number } {
  const row = Float64Array.from(p.x.subarray(r * p.k, (r + 1) * p.k), halfToFloat);
  const amax = row.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const actScale = Math.fround(amax / 448);
  const inv = amax > 0 ? Math.fround(448 / amax) : 0;
  return { x8: row.map((v) => e4m3ToFloat(floatToE4M3(Math.fround(v * inv)))), actScale };
}

const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** float64 y of the quantized math, and per element the size of the float32 sum it comes from. */
function reference(p: Problem, activation: Activation): { y: Float64Array; magnitude: Float64Array } {
  const rows = rowsOf(p);
  const w = Float64Array.from(p.w8, e4m3ToFloat);
  const y = new Float64Array(rows * p.n);
  const magnitude = new Float64Array(rows * p.n);
  for (let r = 0; r < rows; r++) {
    const { x8, actScale } = quantizeRow(p, r);
    for (let n = 0; n < p.n; n++) {
      let acc = 0;
      let abs = 0;
      for (let k = 0; k < p.k; k++) {
        const product = x8[k] * w[n * p.k + k];
        acc += product;
        abs += Math.abs(product);
      }
      let v = acc * actScale * p.wScale[n] + (p.bias ? halfToFloat(p.bias[n]) : 0);
      if (activation === 'gelu_tanh') v = geluTanh(v);
      y[r * p.n + n] = v;
      magnitude[r * p.n + n] = abs * actScale * p.wScale[n];
    }
  }
  return { y, magnitude };
}

/** The spacing of float16 values around |v| (subnormal spacing below 2⁻¹⁴). */
const halfUlp = (v: number) => 2 ** (Math.max(Math.floor(Math.log2(Math.abs(v) || 2 ** -24)), -14) - 10);

/** Elements further from the reference than one float16 step plus the float32 summation's error. */
function farElements(out: Uint16Array, ref: ReturnType<typeof reference>): number[] {
  const far: number[] = [];
  for (let i = 0; i < out.length; i++) {
    const err = Math.abs(halfToFloat(out[i]) - ref.y[i]);
    if (err > halfUlp(ref.y[i]) + 2 ** -20 * ref.magnitude[i]) far.push(i);
  }
  return far;
}

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

describe('atelier:Fp8Linear, CPU kernel', () => {
  it.each<[string, number[], number, number, Activation, boolean]>([
    ['one token', [1], 32, 16, 'none', true],
    ['rows of a batch, bias and GELU', [2, 5], 48, 24, 'gelu_tanh', true],
    ['no bias, K not a multiple of 16', [7], 50, 12, 'none', false],
    ['GELU without bias', [3, 4], 64, 32, 'gelu_tanh', false],
    ['enough work to split over the thread pool', [2, 150], 96, 64, 'none', true],
  ])('%s: matches the float64 quantized math to a float16 step', async (_, lead, k, n, activation, bias) => {
    const seed = randomInt(2 ** 31);
    const p = randomProblem(lead, k, n, seed, bias);
    const y = await runWithOps(library, fp8LinearGraph(p, activation), feeds(p));
    expect(y.type).toBe('float16');
    expect(y.dims).toEqual([...lead, n]);
    const ref = reference(p, activation);
    const out = y.data as Uint16Array;
    const far = farElements(out, ref);
    expect(far.length, `seed ${seed}: first far element ${far[0]}`).toBe(0);
    expect(relL2(Float64Array.from(out, halfToFloat), ref.y), `seed ${seed}`).toBeLessThan(5e-4);
  });

  it('quantizes each token exactly: round to nearest even e4m3 of x · 448/amax, saturated, zeros kept', async () => {
    const k = 64;
    // Identity weight: y[r, j] = float16(x8[r, j] · act_scale[r]), so y shows the quantizer itself.
    const w8 = new Uint8Array(k * k);
    for (let i = 0; i < k; i++) w8[i * k + i] = floatToE4M3(1);
    const seed = randomInt(2 ** 31);
    const normal = normals(seed);
    const rows: number[][] = [
      Array.from({ length: k }, () => normal(0, 1)),
      Array.from({ length: k }, () => normal(0, 3e-3)), // small values: subnormal e4m3 codes
      Array.from({ length: k }, (_, i) => (i === 0 ? 448 : i / 7 - 4)), // amax 448: x · 1, ties
      Array.from({ length: k }, (_, i) => (i === 3 ? -2000 : normal(0, 0.01))), // one outlier, most to 0
      new Array(k).fill(0), // amax 0: zeros out, no NaN
      Array.from({ length: k }, (_, i) => (i % 2 ? 65504 : -65504)), // float16's largest values
    ];
    const p: Problem = {
      lead: [rows.length],
      k,
      n: k,
      w8,
      wScale: new Float32Array(k).fill(1),
      x: Uint16Array.from(rows.flat(), floatToHalf),
    };
    const y = (await runWithOps(library, fp8LinearGraph(p), feeds(p))).data as Uint16Array;
    const expected = new Uint16Array(y.length);
    for (let r = 0; r < rows.length; r++) {
      const { x8, actScale } = quantizeRow(p, r);
      x8.forEach((v, j) => {
        expected[r * k + j] = floatToHalf(Math.fround(v * actScale));
      });
    }
    // ±0 are one value (a sum starting at +0 turns −0 products into +0).
    const same = (a: number, b: number) => a === b || ((a | b) & 0x7fff) === 0;
    const mismatch = y.findIndex((bits, i) => !same(bits, expected[i]));
    expect(
      mismatch,
      `seed ${seed}: element ${mismatch} is ${halfToFloat(y[mismatch])}, want ${halfToFloat(expected[mismatch])}`,
    ).toBe(-1);
    // Subnormal codes were exercised (row 1) and the all-zero row stayed zero.
    expect(y.subarray(4 * k, 5 * k).every((b) => (b & 0x7fff) === 0)).toBe(true);
  });

  it.each<Activation>(['none', 'gelu_tanh'])(
    'activation %s: within FP8 activation error of a float32 MatMul of the unquantized x (printed)',
    async (activation) => {
      const seed = randomInt(2 ** 31);
      const p = randomProblem([3, 40], 128, 96, seed);
      const y = Float64Array.from(
        (await runWithOps(library, fp8LinearGraph(p, activation), feeds(p))).data as Uint16Array,
        halfToFloat,
      );
      // Stock ops: Cast x to float32, MatMul with the dequantized weight, bias (+ GELU tanh: FastGelu).
      const g = new GraphBuilder('matmul_f32');
      const x = g.input('x', 'float16', [...p.lead, p.k]);
      const wt = new Float32Array(p.k * p.n);
      for (let n = 0; n < p.n; n++)
        for (let k = 0; k < p.k; k++) wt[k * p.n + n] = e4m3ToFloat(p.w8[n * p.k + k]) * p.wScale[n];
      const product = g.op('MatMul', [
        g.op('Cast', [x], { to: 1 }),
        g.constant('wt', 'float32', [p.k, p.n], wt),
      ]);
      const bias = g.constant('bias', 'float32', [p.n], Float32Array.from(p.bias!, halfToFloat));
      const out =
        activation === 'gelu_tanh'
          ? g.op('FastGelu', [product, bias], {}, MS_DOMAIN)
          : g.op('Add', [product, bias]);
      g.output(out, 'y', 'float32', [...p.lead, p.n]);
      const stock = await runStock(g.build(), feeds(p));
      const error = relL2(y, Float64Array.from(stock.data as Float32Array));
      console.info(
        `Fp8Linear (${activation}) vs float32 MatMul of unquantized x: rel L2 ${error.toExponential(2)}`,
      );
      // e4m3 keeps 3 mantissa bits: ~2-4 % per layer is the expected price; a wrong scale gives O(1).
      expect(error, `seed ${seed}`).toBeLessThan(6e-2);
      expect(error, `seed ${seed}`).toBeGreaterThan(1e-3);
    },
  );

  it.each<Record<string, string | number>>([
    { scaling: 'fp32_output' },
    { fast_accumulation: 1 },
    { cublaslt_gelu: 0 },
  ])('computes the same with the GPU variant attributes %j', async (attrs) => {
    const seed = randomInt(2 ** 31);
    const p = randomProblem([9], 32, 16, seed);
    const a = await runWithOps(library, fp8LinearGraph(p, 'gelu_tanh'), feeds(p));
    const b = await runWithOps(library, fp8LinearGraph(p, 'gelu_tanh', attrs), feeds(p));
    expect(b.data).toEqual(a.data);
  });
});

describe('atelier:Fp8Linear shape inference', () => {
  it("tells ONNX Runtime y's shape: x's leading axes, named or not, and the weight's N", async () => {
    const session = (declared: number) => {
      const g = new GraphBuilder('shapes');
      const x = g.input('x', 'float16', ['batch', 'tokens', 32]);
      const w = g.constant('w', 'float8e4m3fn', [16, 32], new Uint8Array(16 * 32));
      const s = g.constant('s', 'float32', [16], new Float32Array(16).fill(1));
      const y = g.op('Relu', [g.op('Fp8Linear', [x, w, s], {}, ATELIER_DOMAIN)]);
      g.output(y, 'y', 'float16', ['batch', 'tokens', declared]);
      const config = { 'session.strict_shape_type_inference': '1' };
      return CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library], config });
    };
    (await session(16)).release();
    await expect(session(17)).rejects.toThrow(/Inferred=16 Declared=17/);
  });
});

describe('atelier:Fp8Linear errors', () => {
  const p = () => randomProblem([2, 3], 32, 16, 1);

  /** The graph of `p` with one initializer replaced. */
  function withInput(name: 'weight' | 'weight_scale' | 'bias', dims: number[]): BuiltModel {
    const q = p();
    const g = new GraphBuilder('bad');
    const x = g.input('x', 'float16', [...q.lead, q.k]);
    const size = dims.reduce((a, b) => a * b, 1);
    const make = (
      key: string,
      type: 'float8e4m3fn' | 'float32' | 'float16',
      shape: number[],
      data: ArrayBufferView,
    ) =>
      key === name
        ? g.constant(key, type, dims, new (data.constructor as Uint8ArrayConstructor)(size))
        : g.constant(key, type, shape, data);
    const w = make('weight', 'float8e4m3fn', [q.n, q.k], q.w8);
    const s = make('weight_scale', 'float32', [q.n], q.wScale);
    const b = make('bias', 'float16', [q.n], q.bias!);
    g.output(g.op('Fp8Linear', [x, w, s, b], {}, ATELIER_DOMAIN), 'y', 'float16', [...q.lead, q.n]);
    return g.build();
  }

  it.each<['weight' | 'weight_scale' | 'bias', number[], RegExp]>([
    [
      'weight',
      [16, 31],
      /Fp8Linear: weight must be \[N, K\] with K = 32 \(x's last axis, x \[2, 3, 32\]\), got \[16, 31\]/,
    ],
    ['weight', [16 * 32], /Fp8Linear: weight must be \[N, K\] with K = 32 .*got \[512\]/],
    [
      'weight_scale',
      [15],
      /Fp8Linear: weight_scale must be \[N\] = \[16\] \(one per output channel\), got \[15\]/,
    ],
    ['weight_scale', [16, 1], /Fp8Linear: weight_scale must be \[N\] = \[16\] .*got \[16, 1\]/],
    ['bias', [17], /Fp8Linear: bias must be \[N\] = \[16\], got \[17\]/],
  ])('refuses a %s of shape %j, naming it', async (name, dims, message) => {
    await expect(runWithOps(library, withInput(name, dims), feeds(p()))).rejects.toThrow(message);
  });

  it('refuses an unknown activation, scaling, fast_accumulation or cublaslt_gelu when the session is made', async () => {
    const make = (attrs: Record<string, string | number>) =>
      CapiSession.create(fp8LinearGraph(p(), 'none', attrs), {
        provider: 'cpu',
        customOpsLibraries: [library],
      });
    await expect(make({ activation: 'gelu' })).rejects.toThrow(
      /Fp8Linear: activation must be "none" or "gelu_tanh", got "gelu"/,
    );
    await expect(make({ scaling: 'tensor' })).rejects.toThrow(
      /Fp8Linear: scaling must be "outer_vector" or "fp32_output", got "tensor"/,
    );
    await expect(make({ fast_accumulation: 2 })).rejects.toThrow(
      /Fp8Linear: fast_accumulation must be 0 or 1, got 2/,
    );
    await expect(make({ cublaslt_gelu: -1 })).rejects.toThrow(
      /Fp8Linear: cublaslt_gelu must be 0 or 1, got -1/,
    );
  });

  it('refuses float32 activations and a float16 weight (ONNX Runtime checks the types)', async () => {
    const q = p();
    const graph = (xType: 'float32' | 'float16', wType: 'float8e4m3fn' | 'float16') => {
      const g = new GraphBuilder('types');
      const x = g.input('x', xType, [...q.lead, q.k]);
      const w =
        wType === 'float16'
          ? g.constant('w', 'float16', [q.n, q.k], new Uint16Array(q.n * q.k))
          : g.constant('w', 'float8e4m3fn', [q.n, q.k], q.w8);
      const s = g.constant('s', 'float32', [q.n], q.wScale);
      g.output(g.op('Fp8Linear', [x, w, s], {}, ATELIER_DOMAIN), 'y', 'float16', [...q.lead, q.n]);
      return g.build();
    };
    const create = (model: BuiltModel) =>
      CapiSession.create(model, { provider: 'cpu', customOpsLibraries: [library] });
    await expect(create(graph('float32', 'float8e4m3fn'))).rejects.toThrow(
      /Type 'tensor\(float\)' of input parameter \(x\) of operator \(Fp8Linear\)/,
    );
    await expect(create(graph('float16', 'float16'))).rejects.toThrow(
      /Type 'tensor\(float16\)' of input parameter \(w\) of operator \(Fp8Linear\)/,
    );
  });

  it('is refused by ONNX Runtime when the library is not loaded', async () => {
    await expect(CapiSession.create(fp8LinearGraph(p()), { provider: 'cpu' })).rejects.toThrow(
      /atelier:Fp8Linear.*is not a registered function\/op/,
    );
  });
});
