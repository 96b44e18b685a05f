/**
 * The fused producer of FP8 activations (issue 10): atelier:AdaLNModulateQuant (LayerNorm + adaLN
 * modulate + per-token e4m3 quantization in one pass) feeding atelier:Fp8LinearQ (the FP8 GEMM on
 * pre-quantized activations), CPU kernels built here with g++, through the C-API binding. Judged
 * against the unfused pair the W8A8 graph had before (AdaLNModulate → Cast to float16 in a float32
 * graph → Fp8Linear): the same bits, since AdaLNModulateQuant rounds its result to float16 and
 * quantizes it with Fp8Linear's own quantizer. The codes and scales themselves are checked bit for
 * bit against AdaLNModulate's output quantized here, and against a float64 modulated norm per sample
 * (so a shift or scale of the wrong sample would show). Random inputs are drawn afresh each run (the
 * seed is in every failure message).
 */
import { randomInt } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ATELIER_DOMAIN,
  type BuiltModel,
  GraphBuilder,
  ONNX_DTYPE,
  type Value,
} from '../../src/pipeline/onnx/graph.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import { e4m3ToFloat, floatToE4M3, floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { normals, runWithOps } from './run-graphs.js';

type Dtype = 'float32' | 'float16';
type Activation = 'none' | 'gelu_tanh';
type Shape = [number, number, number];

const EPS = 1e-6;

interface Problem {
  dtype: Dtype;
  shape: Shape;
  n: number;
  x: Float32Array | Uint16Array;
  shift: Float32Array | Uint16Array;
  scale: Float32Array | Uint16Array;
  w8: Uint8Array;
  wScale: Float32Array;
  bias?: Uint16Array;
}

/**
 * Rows of very different means and spreads; per sample its own shift and scale. Sample 0 has a zero
 * shift and its token 0 is constant, so that row's output is exactly zero (amax 0: codes and scale 0).
 */
function randomProblem(dtype: Dtype, shape: Shape, n: number, seed: number, withBias = true): Problem {
  const [b, t, c] = shape;
  const normal = normals(seed);
  const store = (values: number[]) =>
    dtype === 'float32' ? Float32Array.from(values) : Uint16Array.from(values, floatToHalf);
  const x: number[] = [];
  for (let r = 0; r < b * t; r++) {
    const spread = 10 ** Math.max(-1.5, Math.min(1.5, normal(0, 0.8)));
    const mean = normal(0, 2);
    for (let i = 0; i < c; i++) x.push(r === 0 ? 0.75 : mean + normal(0, spread));
    if (r % 3 === 2) x[r * c + ((r * 5) % c)] = mean + 30 * spread; // an outlier channel
  }
  const shift = Array.from({ length: b * c }, (_, i) => (i < c ? 0 : normal(0, 1) * (1 + Math.floor(i / c))));
  const scale = Array.from({ length: b * c }, () => normal(0, 0.6));
  return {
    dtype,
    shape,
    n,
    x: store(x),
    shift: store(shift),
    scale: store(scale),
    w8: Uint8Array.from({ length: n * c }, () => floatToE4M3(normal(0, 120))),
    wScale: Float32Array.from({ length: n }, () => Math.abs(normal(0.02, 0.01)) / 448 + 1e-6),
    bias: withBias ? Uint16Array.from({ length: n }, () => floatToHalf(normal(0, 0.5))) : undefined,
  };
}

const feeds = (p: Problem): Record<string, HostTensor> => {
  const [b, t, c] = p.shape;
  return {
    x: { type: p.dtype, dims: [b, t, c], data: p.x },
    shift: { type: p.dtype, dims: [b, 1, c], data: p.shift },
    scale: { type: p.dtype, dims: [b, 1, c], data: p.scale },
  };
};

function inputs(g: GraphBuilder, p: Problem): [Value, Value, Value] {
  const [b, t, c] = p.shape;
  return [
    g.input('x', p.dtype, [b, t, c]),
    g.input('shift', p.dtype, [b, 1, c]),
    g.input('scale', p.dtype, [b, 1, c]),
  ];
}

/**
 * y = W8A8 linear of modulate(LayerNorm(x)): `fused` = AdaLNModulateQuant → Fp8LinearQ, else the
 * unfused pair as Net built it before (AdaLNModulate → Cast to float16 when float32 → Fp8Linear).
 */
function pairGraph(p: Problem, fused: boolean, activation: Activation): BuiltModel {
  const [b, t, c] = p.shape;
  const g = new GraphBuilder(fused ? 'fused' : 'unfused');
  const xs = inputs(g, p);
  const w = [
    g.constant('weight', 'float8e4m3fn', [p.n, c], p.w8),
    g.constant('weight_scale', 'float32', [p.n], p.wScale),
    ...(p.bias ? [g.constant('bias', 'float16', [p.n], p.bias)] : []),
  ];
  const attrs: Record<string, string> = activation === 'none' ? {} : { activation };
  const epsilon = { epsilon: { float: EPS } };
  let y: Value;
  if (fused) {
    const [x8, actScale] = g.opMulti('AdaLNModulateQuant', xs, 2, epsilon, ATELIER_DOMAIN);
    y = g.op('Fp8LinearQ', [x8, actScale, ...w], attrs, ATELIER_DOMAIN);
  } else {
    let h = g.op('AdaLNModulate', xs, epsilon, ATELIER_DOMAIN);
    if (p.dtype === 'float32') h = g.op('Cast', [h], { to: ONNX_DTYPE.float16 });
    y = g.op('Fp8Linear', [h, ...w], attrs, ATELIER_DOMAIN);
  }
  g.output(y, 'y', 'float16', [b, t, p.n]);
  return g.build();
}

async function runAll(model: BuiltModel, f: Record<string, HostTensor>, config?: Record<string, string>) {
  const session = await CapiSession.create(model, { provider: 'cpu', customOpsLibraries: [library], config });
  try {
    return await session.run(f);
  } finally {
    session.release();
  }
}

/** ±0 are one value (an accumulation starting at +0 can turn −0 into +0). */
const sameHalf = (a: number, b: number) => a === b || ((a | b) & 0x7fff) === 0;

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

describe.each<Dtype>(['float32', 'float16'])(
  'atelier:AdaLNModulateQuant → Fp8LinearQ, %s, CPU kernels',
  (dtype) => {
    it.each<[string, Shape, number, Activation, boolean]>([
      ['one sample, one token', [1, 1, 32], 16, 'none', true],
      ['batch 2 (CFG), bias and GELU', [2, 7, 64], 48, 'gelu_tanh', true],
      ['batch 3, no bias, C not a multiple of 8', [3, 5, 50], 24, 'none', false],
      ['enough work for the thread pool', [2, 96, 128], 64, 'gelu_tanh', true],
    ])('%s: bit-identical to AdaLNModulate → Fp8Linear', async (_, shape, n, activation, bias) => {
      const seed = randomInt(2 ** 31);
      const p = randomProblem(dtype, shape, n, seed, bias);
      const fused = await runWithOps(library, pairGraph(p, true, activation), feeds(p));
      const unfused = await runWithOps(library, pairGraph(p, false, activation), feeds(p));
      expect(fused.type).toBe('float16');
      expect(fused.dims).toEqual([shape[0], shape[1], n]);
      const a = fused.data as Uint16Array;
      const b = unfused.data as Uint16Array;
      const mismatch = a.findIndex((bits, i) => !sameHalf(bits, b[i]));
      expect(
        mismatch,
        `seed ${seed}: element ${mismatch} is ${halfToFloat(a[mismatch])}, unfused ${halfToFloat(b[mismatch])}`,
      ).toBe(-1);
    });

    it('writes the codes and scales Fp8Linear would compute from the float16 norm, per sample', async () => {
      const seed = randomInt(2 ** 31);
      const shape: Shape = [3, 6, 40];
      const [b, t, c] = shape;
      const p = randomProblem(dtype, shape, 16, seed);
      // AdaLNModulateQuant's outputs (the codes through a Cast, which the binding can read) ...
      const g = new GraphBuilder('quant');
      const [x8, actScale] = g.opMulti(
        'AdaLNModulateQuant',
        inputs(g, p),
        2,
        { epsilon: { float: EPS } },
        ATELIER_DOMAIN,
      );
      g.output(g.op('Cast', [x8], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', [b, t, c]);
      g.output(actScale, 'act_scale', 'float32', [b, t]);
      const out = await runAll(g.build(), feeds(p));
      expect(out.act_scale.dims).toEqual([b, t]);
      const codes = out.x8.data as Float32Array;
      const scales = out.act_scale.data as Float32Array;
      // ... against AdaLNModulate's output, rounded to float16 and quantized here (fp8_linear.h).
      const h = new GraphBuilder('norm');
      h.output(h.op('AdaLNModulate', inputs(h, p), { epsilon: { float: EPS } }, ATELIER_DOMAIN), 'y', dtype, [
        b,
        t,
        c,
      ]);
      const y = (await runWithOps(library, h.build(), feeds(p))).data as Float32Array | Uint16Array;
      const y16 = (i: number) => (dtype === 'float16' ? halfToFloat(y[i]) : halfToFloat(floatToHalf(y[i])));
      const at = (a: Float32Array | Uint16Array, i: number) =>
        a instanceof Uint16Array ? halfToFloat(a[i]) : a[i];
      let far = 0;
      for (let r = 0; r < b * t; r++) {
        let amax = 0;
        for (let i = 0; i < c; i++) amax = Math.max(amax, Math.abs(y16(r * c + i)));
        expect(scales[r], `seed ${seed}: act_scale of row ${r}`).toBe(Math.fround(amax / 448));
        const inv = amax > 0 ? Math.fround(448 / amax) : 0;
        // The float64 modulated norm of this row with its own sample's shift and scale.
        const s = Math.floor(r / t);
        const row = Array.from({ length: c }, (_, i) => at(p.x, r * c + i));
        const mean = row.reduce((m, v) => m + v, 0) / c;
        const rstd = 1 / Math.sqrt(row.reduce((m, v) => m + (v - mean) ** 2, 0) / c + EPS);
        for (let i = 0; i < c; i++) {
          const want = e4m3ToFloat(floatToE4M3(Math.fround(y16(r * c + i) * inv)));
          expect(
            Object.is(codes[r * c + i], want) || (codes[r * c + i] === 0 && want === 0),
            `seed ${seed}: code [${r}, ${i}]`,
          ).toBe(true);
          const exact = (row[i] - mean) * rstd * (1 + at(p.scale, s * c + i)) + at(p.shift, s * c + i);
          // e4m3 keeps 3 mantissa bits: half a step is 1/16 of the value (normal codes) or 2⁻¹⁰ of
          // 448 · act_scale (subnormal codes); float16 and float32 add less than 2⁻¹⁰ of the value.
          const bound = Math.abs(exact) * (1 / 16 + 2 ** -9) + scales[r] / 2 + 1e-6 * amax;
          if (Math.abs(codes[r * c + i] * scales[r] - exact) > bound) far++;
        }
      }
      expect(far, `seed ${seed}`).toBe(0);
      // Row 0 (constant x, zero shift) is all zeros: no NaN from amax 0.
      expect(scales[0]).toBe(0);
      expect(codes.subarray(0, c).every((v) => v === 0)).toBe(true);
    });
  },
);

describe('AdaLNModulateQuant and Fp8LinearQ shape inference', () => {
  it("tells ONNX Runtime the codes' and scales' shapes and y's, named or not", async () => {
    const session = (declared: number) => {
      const g = new GraphBuilder('shapes');
      const x = g.input('x', 'float16', ['batch', 'tokens', 32]);
      const shift = g.input('shift', 'float16', ['batch', 1, 32]);
      const scale = g.input('scale', 'float16', ['batch', 1, 32]);
      const [x8, actScale] = g.opMulti('AdaLNModulateQuant', [x, shift, scale], 2, {}, ATELIER_DOMAIN);
      const w = g.constant('w', 'float8e4m3fn', [16, 32], new Uint8Array(16 * 32));
      const s = g.constant('s', 'float32', [16], new Float32Array(16).fill(1));
      const y = g.op('Relu', [g.op('Fp8LinearQ', [x8, actScale, w, s], {}, ATELIER_DOMAIN)]);
      g.output(y, 'y', 'float16', ['batch', 'tokens', declared]);
      g.output(g.op('Relu', [actScale]), 'act_scale', 'float32', ['batch', 'tokens']);
      const config = { 'session.strict_shape_type_inference': '1' };
      return CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library], config });
    };
    (await session(16)).release();
    await expect(session(17)).rejects.toThrow(/Inferred=16 Declared=17/);
  });
});

describe('AdaLNModulateQuant and Fp8LinearQ errors', () => {
  const p = () => randomProblem('float16', [2, 3, 32], 16, 1);

  it('AdaLNModulateQuant refuses a shift that is not [B, 1, C], naming it', async () => {
    const q = p();
    const g = new GraphBuilder('bad');
    const x = g.input('x', 'float16', [2, 3, 32]);
    const shift = g.input('shift', 'float16', [2, 3, 32]);
    const scale = g.input('scale', 'float16', [2, 1, 32]);
    const [x8] = g.opMulti('AdaLNModulateQuant', [x, shift, scale], 2, {}, ATELIER_DOMAIN);
    g.output(g.op('Cast', [x8], { to: ONNX_DTYPE.float32 }), 'y', 'float32', [2, 3, 32]);
    const f = { ...feeds(q), shift: { type: 'float16' as const, dims: [2, 3, 32], data: q.x } };
    await expect(runWithOps(library, g.build(), f)).rejects.toThrow(
      /AdaLNModulateQuant: shift must be \[B, 1, C\] = \[2, 1, 32\] for x \[2, 3, 32\], got \[2, 3, 32\]/,
    );
  });

  it('AdaLNModulateQuant refuses a negative epsilon when the session is made', async () => {
    const g = new GraphBuilder('eps');
    const [x8, s] = g.opMulti(
      'AdaLNModulateQuant',
      inputs(g, p()),
      2,
      { epsilon: { float: -1 } },
      ATELIER_DOMAIN,
    );
    g.output(g.op('Cast', [x8], { to: ONNX_DTYPE.float32 }), 'y', 'float32', [2, 3, 32]);
    g.output(s, 's', 'float32', [2, 3]);
    await expect(
      CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library] }),
    ).rejects.toThrow(/AdaLNModulateQuant: epsilon must be a finite number >= 0, got -1/);
  });

  /** Fp8LinearQ on codes made by a Cast inside the graph (the binding feeds no float8 tensors). */
  function linearQ(x8Dims: number[], scaleDims: number[], wDims: number[]): BuiltModel {
    const g = new GraphBuilder('bad-q');
    const x = g.input('x', 'float32', x8Dims);
    const x8 = g.op('Cast', [x], { to: ONNX_DTYPE.float8e4m3fn });
    const s = g.input('s', 'float32', scaleDims);
    const size = wDims.reduce((a, b) => a * b, 1);
    const w = g.constant('w', 'float8e4m3fn', wDims, new Uint8Array(size));
    const ws = g.constant('ws', 'float32', [16], new Float32Array(16).fill(1));
    g.output(g.op('Fp8LinearQ', [x8, s, w, ws], {}, ATELIER_DOMAIN), 'y', 'float16', [
      ...x8Dims.slice(0, -1),
      16,
    ]);
    return g.build();
  }
  const linearFeeds = (x8Dims: number[], scaleDims: number[]): Record<string, HostTensor> => {
    const count = (d: number[]) => d.reduce((a, b) => a * b, 1);
    return {
      x: { type: 'float32', dims: x8Dims, data: new Float32Array(count(x8Dims)).fill(0.5) },
      s: { type: 'float32', dims: scaleDims, data: new Float32Array(count(scaleDims)).fill(1) },
    };
  };

  it.each<[string, number[], number[], number[], RegExp]>([
    [
      'an act_scale with a trailing 1',
      [2, 3, 32],
      [2, 3, 1],
      [16, 32],
      /Fp8LinearQ: act_scale must be x8's shape without its last axis, \[2, 3\] for x8 \[2, 3, 32\] \(one scale per token\), got \[2, 3, 1\]/,
    ],
    [
      'an act_scale of another batch',
      [2, 3, 32],
      [1, 3],
      [16, 32],
      /Fp8LinearQ: act_scale must be .*got \[1, 3\]/,
    ],
    [
      'a weight of another K',
      [2, 3, 32],
      [2, 3],
      [16, 31],
      /Fp8LinearQ: weight must be \[N, K\] with K = 32 \(x8's last axis, x8 \[2, 3, 32\]\), got \[16, 31\]/,
    ],
  ])('Fp8LinearQ refuses %s, naming it', async (_, x8Dims, scaleDims, wDims, message) => {
    await expect(
      runWithOps(library, linearQ(x8Dims, scaleDims, wDims), linearFeeds(x8Dims, scaleDims)),
    ).rejects.toThrow(message);
  });

  it('Fp8LinearQ computes Fp8Linear of the dequantized codes', async () => {
    // Codes on e4m3's grid with a scale per token: y = Fp8LinearQ(x8, s) = Fp8Linear(x8 · s) when
    // each row's largest code is 448 (then Fp8Linear's own quantizer gives back the same codes).
    const seed = randomInt(2 ** 31);
    const normal = normals(seed);
    const [m, k, n] = [6, 32, 16];
    const codes = Float32Array.from({ length: m * k }, (_, i) =>
      i % k === 0 ? (i % 2 ? -448 : 448) : e4m3ToFloat(floatToE4M3(normal(0, 100))),
    );
    const scales = Float32Array.from(
      { length: m },
      () => 2 ** Math.max(-12, Math.min(-4, Math.round(normal(-8, 2)))),
    );
    const w8 = Uint8Array.from({ length: n * k }, () => floatToE4M3(normal(0, 120)));
    const ws = Float32Array.from({ length: n }, () => Math.abs(normal(0.02, 0.01)) / 448);
    const g = new GraphBuilder('q');
    const x8 = g.op('Cast', [g.input('x', 'float32', [m, k])], { to: ONNX_DTYPE.float8e4m3fn });
    const w = g.constant('w', 'float8e4m3fn', [n, k], w8);
    const s = g.constant('ws', 'float32', [n], ws);
    g.output(
      g.op('Fp8LinearQ', [x8, g.input('s', 'float32', [m]), w, s], {}, ATELIER_DOMAIN),
      'y',
      'float16',
      [m, n],
    );
    const q = await runWithOps(library, g.build(), {
      x: { type: 'float32', dims: [m, k], data: codes },
      s: { type: 'float32', dims: [m], data: scales },
    });
    // x = codes · scale is exact in float16 for these scales (powers of two, no underflow).
    const x = Uint16Array.from(codes, (v, i) => floatToHalf(v * scales[Math.floor(i / k)]));
    const h = new GraphBuilder('plain');
    const y = h.op(
      'Fp8Linear',
      [
        h.input('x', 'float16', [m, k]),
        h.constant('w', 'float8e4m3fn', [n, k], w8),
        h.constant('ws', 'float32', [n], ws),
      ],
      {},
      ATELIER_DOMAIN,
    );
    h.output(y, 'y', 'float16', [m, n]);
    const plain = await runWithOps(library, h.build(), { x: { type: 'float16', dims: [m, k], data: x } });
    expect(Array.from(q.data as Uint16Array), `seed ${seed}`).toEqual(Array.from(plain.data as Uint16Array));
  });

  it('is refused by ONNX Runtime when the library is not loaded', async () => {
    const q = p();
    await expect(CapiSession.create(pairGraph(q, true, 'none'), { provider: 'cpu' })).rejects.toThrow(
      /atelier:AdaLNModulateQuant.*is not a registered function\/op/,
    );
  });
});
