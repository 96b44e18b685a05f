/**
 * atelier:JointQkvNorm (split_qkv + the qk RMSNorm of each head + the joint token concatenation in
 * one op, issue 10) with its CPU kernel (native/, built here with g++) through the C-API binding:
 * against a float64 reference written here, and bit for bit against the stock chain the MMDiT graph
 * builds without custom ops (Split, Reshape → SimplifiedLayerNormalization → Reshape per stream,
 * Concat along the tokens) run by onnxruntime-node, in both element types, with an empty context
 * (MMDiT-X's attn2), no image tokens, odd head widths and enough rows for the thread pool. Random
 * inputs are drawn afresh each run (the seed is in every failure message). Then shape inference and
 * the errors that name the op and the input.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ATELIER_DOMAIN,
  type BuiltModel,
  type Dim,
  GraphBuilder,
  type Value,
} from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import { floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';
import { normals, runAllStock, runAllWithOps } from './run-graphs.js';

type Dtype = 'float32' | 'float16';
type Shape = [batch: number, contextTokens: number, xTokens: number, heads: number, headDim: number];
type Data = Float32Array | Uint16Array;

const EPS = 1e-6;
const STREAMS = ['ctx', 'x'] as const;
const NORMS = ['ln_q', 'ln_k'] as const;
const weightKey = (stream: string, norm: string) => `${stream}.${norm}.weight`;

const store = (dtype: Dtype, values: number[]): Data =>
  dtype === 'float32' ? Float32Array.from(values) : Uint16Array.from(values, floatToHalf);
const valueAt = (data: Data, i: number) => (data instanceof Uint16Array ? halfToFloat(data[i]) : data[i]);

interface Problem {
  dtype: Dtype;
  shape: Shape;
  context: Data;
  x: Data;
  /** ln_q, ln_k of the context stream, then of x. */
  weights: Record<string, Data>;
  /** A safetensors file holding the weights, for Params (both graphs read them the same way). */
  file: SafetensorsFile;
}

let dir: string;
const files: SafetensorsFile[] = [];
let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
  dir = mkdtempSync(join(tmpdir(), 'joint-qkv-norm-'));
});
afterAll(() => {
  for (const f of files) f.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Rows whose heads differ in scale by up to 10⁴ (so a norm over the wrong span shows), one head of
 * zeros (y must be 0, not NaN), weights around 1 that differ per stream and per norm.
 */
function randomProblem(dtype: Dtype, shape: Shape, seed: number): Problem {
  const [b, tc, tx, heads, d] = shape;
  const normal = normals(seed);
  const width = 3 * heads * d;
  const rows = (tokens: number) => {
    const values: number[] = [];
    for (let r = 0; r < b * tokens; r++) {
      for (let part = 0; part < 3; part++) {
        for (let h = 0; h < heads; h++) {
          const spread = 10 ** (normal(0, 0.8) * 1.2);
          const zero = r === 1 && part === 1 && h === heads - 1;
          for (let i = 0; i < d; i++) values.push(zero ? 0 : normal(0.2 * spread, spread));
        }
      }
    }
    expect(values.length).toBe(b * tokens * width);
    return store(dtype, values);
  };
  const weights: Record<string, Data> = {};
  for (const stream of STREAMS)
    for (const norm of NORMS)
      weights[weightKey(stream, norm)] = store(
        dtype,
        Array.from({ length: d }, () => normal(1, 0.5)),
      );
  const path = join(dir, `w${randomInt(2 ** 31)}.safetensors`);
  writeSafetensors(
    path,
    Object.entries(weights).map(([name, data]) => ({
      name,
      dtype: dtype === 'float32' ? 'F32' : 'F16',
      shape: [d],
      data,
    })),
  );
  const file = SafetensorsFile.open(path);
  files.push(file);
  return { dtype, shape, context: rows(tc), x: rows(tx), weights, file };
}

const feedsOf = (p: Problem): Record<string, HostTensor> => {
  const [b, tc, tx, heads, d] = p.shape;
  return {
    context_qkv: { type: p.dtype, dims: [b, tc, 3 * heads * d], data: p.context },
    x_qkv: { type: p.dtype, dims: [b, tx, 3 * heads * d], data: p.x },
  };
};

/**
 * q, k, v of the joint attention as the MMDiT graph builds them (mmdit.ts preAttention and
 * jointQkv): `customOps` = one Net.jointQkvNorm node; else Split, per-head Net.rmsNorm between two
 * Reshapes for each stream, Net.concatTokens. `emptyContext`: the node without a context input
 * (MMDiT-X's attn2), against the stock chain of x alone.
 */
function qkvGraph(p: Problem, customOps: boolean, emptyContext = false): BuiltModel {
  const [b, tc, tx, heads, d] = p.shape;
  const c = heads * d;
  const g = new GraphBuilder(customOps ? 'joint_qkv_norm' : 'stock_qkv_norm');
  const params = new Params(g, new FileWeightSource(p.file), p.dtype);
  const net = new Net(g, params, { ...DEFAULT_NET_OPTIONS, customOps });
  const context = emptyContext ? undefined : g.input('context_qkv', p.dtype, [b, tc, 3 * c]);
  const x = g.input('x_qkv', p.dtype, [b, tx, 3 * c]);
  const norm = (stream: string): [string, string] => [weightKey(stream, 'ln_q'), weightKey(stream, 'ln_k')];
  let out: Value[];
  if (customOps) {
    out = net.jointQkvNorm(
      context && { qkv: context, norm: norm('ctx') },
      { qkv: x, norm: norm('x') },
      heads,
      EPS,
    );
  } else {
    const split = (qkv: Value, stream: string) => {
      const [q, k, v] = net.chunk(qkv, 3, 2);
      const headNorm = (t: Value, key: string) =>
        net.reshape(net.rmsNorm(net.reshape(t, [0, 0, heads, d]), key, EPS), [0, 0, c]);
      return [headNorm(q, norm(stream)[0]), headNorm(k, norm(stream)[1]), v];
    };
    const xs = split(x, 'x');
    out = context ? split(context, 'ctx').map((part, i) => net.concatTokens(part, xs[i])) : xs;
  }
  const tokens = emptyContext ? tx : tc + tx;
  for (const [i, value] of out.entries()) g.output(value, 'qkv'[i], p.dtype, [b, tokens, c]);
  return g.build();
}

/** q, k, v in float64 from the values the kernel sees: each head of q and k x / √(mean x² + ε) · w. */
function reference(p: Problem): Record<'q' | 'k' | 'v', Float64Array> {
  const [b, tc, tx, heads, d] = p.shape;
  const c = heads * d;
  const tokens = tc + tx;
  const out = {
    q: new Float64Array(b * tokens * c),
    k: new Float64Array(b * tokens * c),
    v: new Float64Array(b * tokens * c),
  };
  for (let n = 0; n < b; n++) {
    for (let t = 0; t < tokens; t++) {
      const fromContext = t < tc;
      const source = fromContext ? p.context : p.x;
      const base = fromContext ? (n * tc + t) * 3 * c : (n * tx + t - tc) * 3 * c;
      const stream = fromContext ? 'ctx' : 'x';
      const row = (n * tokens + t) * c;
      (['q', 'k', 'v'] as const).forEach((part, index) => {
        for (let h = 0; h < heads; h++) {
          const at = base + index * c + h * d;
          let squares = 0;
          for (let i = 0; i < d; i++) squares += valueAt(source, at + i) ** 2;
          const inv = 1 / Math.sqrt(squares / d + EPS);
          for (let i = 0; i < d; i++) {
            const x = valueAt(source, at + i);
            out[part][row + h * d + i] =
              part === 'v' ? x : x * inv * valueAt(p.weights[weightKey(stream, NORMS[index])], i);
          }
        }
      });
    }
  }
  return out;
}

/** The spacing of float16 numbers at |v| (subnormals: 2⁻²⁴). */
function halfUlp(v: number): number {
  const a = Math.abs(v);
  if (a < 2 ** -14) return 2 ** -24;
  return 2 ** (Math.floor(Math.log2(a)) - 10);
}

const bytesOf = (t: { data: unknown }): Uint8Array => {
  const view = t.data as ArrayBufferView;
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
};

// SD3.5's head width (64) in both streams; a context of one token; CFG's batch 2 with Tc ≠ Tx;
// no context tokens (attn2) and no image tokens; head widths that are not 64 (32, and an odd 5 whose
// rows start on odd float16 elements); the last shape is over 2¹⁶ elements, so the CPU kernel
// splits the rows over ONNX Runtime's threads.
const SHAPES: Shape[] = [
  [2, 5, 9, 2, 64],
  [1, 1, 12, 3, 64],
  [2, 0, 7, 2, 64],
  [3, 6, 0, 1, 64],
  [2, 4, 11, 4, 32],
  [2, 3, 5, 3, 5],
  [2, 77, 160, 4, 64],
];

describe.each<Dtype>(['float32', 'float16'])('atelier:JointQkvNorm, %s, CPU kernel', (dtype) => {
  it.each(SHAPES)(
    'equals the stock Split → SimplifiedLayerNormalization → Concat chain bit for bit and float64 within rounding (B %i, Tc %i, Tx %i, heads %i × %i)',
    async (...shape) => {
      const seed = randomInt(2 ** 31);
      const p = randomProblem(dtype, shape, seed);
      const [b, tc, tx, heads, d] = shape;
      const custom = await runAllWithOps(library, qkvGraph(p, true), feedsOf(p));
      const stock = await runAllStock(qkvGraph(p, false), feedsOf(p));
      const want = reference(p);
      for (const part of ['q', 'k', 'v'] as const) {
        const got = custom[part];
        expect(got.type).toBe(dtype);
        expect(got.dims).toEqual([b, tc + tx, heads * d]);
        expect(Buffer.compare(bytesOf(got), bytesOf(stock[part])), `seed ${seed}: ${part} vs stock`).toBe(0);
        const data = got.data as Data;
        let worst = 0;
        let where = -1;
        for (let i = 0; i < data.length; i++) {
          const exact = want[part][i];
          // v is a copy; q and k: float16 rounds once (≤ ½ ulp) after float32 math (≪ ½ ulp);
          // float32 carries the 64-term sum's and three roundings' error, ≤ 2⁻¹⁸ relative here.
          const bound =
            part === 'v' ? 0 : dtype === 'float16' ? halfUlp(exact) : Math.abs(exact) * 2 ** -18 + 1e-30;
          const error = Math.abs(valueAt(data, i) - exact) / (bound || 1);
          if (bound === 0 ? valueAt(data, i) !== exact : error > worst) {
            worst = bound === 0 ? Number.POSITIVE_INFINITY : error;
            where = i;
          }
        }
        expect(
          worst,
          `seed ${seed}: ${part}[${where}] = ${valueAt(data, where)}, float64 ${want[part][where]}`,
        ).toBeLessThanOrEqual(1);
      }
      // Each stream's row 1 has a k head of zeros (the last): it normalises to zeros, not NaN.
      const k = custom.k.data as Data;
      for (const [tokens, offset] of [
        [tc, 0],
        [tx, tc],
      ]) {
        if (b * tokens < 2) continue;
        const row = Math.floor(1 / tokens) * (tc + tx) + offset + (1 % tokens);
        const at = row * heads * d + (heads - 1) * d;
        // ±0: the weight's sign carries over (0 / r · w), as in the stock chain.
        for (let i = 0; i < d; i++) expect(valueAt(k, at + i) === 0, `seed ${seed}: k[${at + i}]`).toBe(true);
      }
    },
  );

  it('with no context input (MMDiT-X attn2) equals the stock chain of the image tokens alone', async () => {
    const seed = randomInt(2 ** 31);
    const p = randomProblem(dtype, [2, 0, 9, 3, 64], seed);
    const feeds = { x_qkv: feedsOf(p).x_qkv };
    const custom = await runAllWithOps(library, qkvGraph(p, true, true), feeds);
    const stock = await runAllStock(qkvGraph(p, false, true), feeds);
    for (const part of ['q', 'k', 'v'] as const)
      expect(Buffer.compare(bytesOf(custom[part]), bytesOf(stock[part])), `seed ${seed}: ${part}`).toBe(0);
  });
});

describe('atelier:JointQkvNorm shape inference', () => {
  // Strict inference turns a conflict between the inferred and the declared shape into an error.
  const STRICT = { 'session.strict_shape_type_inference': '1' };

  /** q, k, v = Relu(JointQkvNorm(...)) with the given declared shapes, heads 2 of width 4. */
  const session = (ctxDims: Dim[], xDims: Dim[], outDims: Dim[]) => {
    const g = new GraphBuilder('shapes');
    const ctx = g.input('context_qkv', 'float32', ctxDims);
    const x = g.input('x_qkv', 'float32', xDims);
    const w = g.constant('w', 'float32', [4], new Float32Array(4).fill(1));
    const outs = g.opMulti('JointQkvNorm', [ctx, x, w, w, w, w], 3, { heads: 2 }, ATELIER_DOMAIN);
    for (const [i, o] of outs.entries()) g.output(g.op('Relu', [o]), 'qkv'[i], 'float32', outDims);
    return CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library], config: STRICT });
  };

  it('tells ONNX Runtime that q, k and v are [B, Tc + Tx, 3C / 3] when every dimension is known', async () => {
    (await session([2, 3, 24], [2, 5, 24], [2, 8, 8])).release();
    await expect(session([2, 3, 24], [2, 5, 24], [2, 9, 8])).rejects.toThrow(/Inferred=8 Declared=9/);
    await expect(session([2, 3, 24], [2, 5, 24], [2, 8, 24])).rejects.toThrow(/Inferred=8 Declared=24/);
    await expect(session([2, 0, 24], [2, 5, 24], [2, 6, 8])).rejects.toThrow(/Inferred=5 Declared=6/);
  });

  it('names the token sum when token counts are named, B from either input', async () => {
    (await session(['batch', 'ctx', 24], ['batch', 'img', 24], ['batch', 'ctx+img', 8])).release();
    await expect(session([2, 'ctx', 24], ['batch', 'img', 24], [3, 't', 8])).rejects.toThrow(
      /Inferred=2 Declared=3/,
    );
    await expect(session(['batch', 'ctx', 24], ['batch', 'img', 24], ['batch', 't', 9])).rejects.toThrow(
      /Inferred=8 Declared=9/,
    );
  });
});

describe('atelier:JointQkvNorm errors', () => {
  /** A graph whose inputs' shapes are only named, so only the kernel can check them. */
  function unchecked(weightDims: Dim[] = ['d'], attrs: Record<string, number> = { heads: 2 }): BuiltModel {
    const g = new GraphBuilder('unchecked');
    const ctx = g.input('context_qkv', 'float32', ['cb', 'ct', 'cw']);
    const x = g.input('x_qkv', 'float32', ['xb', 'xt', 'xw']);
    const weights = ['ctx_ln_q', 'ctx_ln_k', 'x_ln_q', 'x_ln_k'].map((name) =>
      g.input(name, 'float32', weightDims),
    );
    const outs = g.opMulti('JointQkvNorm', [ctx, x, ...weights], 3, attrs, ATELIER_DOMAIN);
    for (const [i, o] of outs.entries()) g.output(o, 'qkv'[i], 'float32', ['b', 't', 'c']);
    return g.build();
  }
  const zeros = (dims: number[]): HostTensor => ({
    type: 'float32',
    dims,
    data: new Float32Array(dims.reduce((n, d) => n * d, 1)),
  });
  const feeds = (ctx: number[], x: number[], w: number[][] = [[4], [4], [4], [4]]) => ({
    context_qkv: zeros(ctx),
    x_qkv: zeros(x),
    ctx_ln_q: zeros(w[0]),
    ctx_ln_k: zeros(w[1]),
    x_ln_q: zeros(w[2]),
    x_ln_k: zeros(w[3]),
  });

  it('is refused by ONNX Runtime when the library is not loaded', async () => {
    await expect(CapiSession.create(unchecked(), { provider: 'cpu' })).rejects.toThrow(
      /atelier:JointQkvNorm.*is not a registered function\/op/,
    );
  });

  it('names both shapes when B or 3C differ', async () => {
    await expect(runAllWithOps(library, unchecked(), feeds([1, 3, 24], [1, 4, 30]))).rejects.toThrow(
      /JointQkvNorm: context_qkv \[B, Tc, 3C\] and x_qkv \[B, Tx, 3C\] must agree in B and 3C, got context_qkv \[1, 3, 24\] and x_qkv \[1, 4, 30\]/,
    );
    await expect(runAllWithOps(library, unchecked(), feeds([2, 3, 24], [1, 3, 24]))).rejects.toThrow(
      /got context_qkv \[2, 3, 24\] and x_qkv \[1, 3, 24\]/,
    );
  });

  it('says when 3C is no multiple of 3 · heads', async () => {
    await expect(runAllWithOps(library, unchecked(), feeds([1, 3, 22], [1, 4, 22]))).rejects.toThrow(
      /JointQkvNorm: the last axis of context_qkv and x_qkv must be 3C = 3 · heads · head_dim with heads = 2, got 22 \(not a multiple of 6\)/,
    );
  });

  it('names the weight whose length is not head_dim', async () => {
    await expect(
      runAllWithOps(library, unchecked(), feeds([1, 3, 24], [1, 4, 24], [[4], [4], [5], [4]])),
    ).rejects.toThrow(
      /JointQkvNorm: x_ln_q must be \[head_dim\] = \[4\] \(3C = 24 over 3 · 2 heads\), got \[5\]/,
    );
  });

  it('names the input whose rank is wrong', async () => {
    await expect(
      runAllWithOps(
        library,
        unchecked(['a', 'd']),
        feeds(
          [1, 3, 24],
          [1, 4, 24],
          [
            [1, 4],
            [1, 4],
            [1, 4],
            [1, 4],
          ],
        ),
      ),
    ).rejects.toThrow(/JointQkvNorm: input ctx_ln_q must have rank 1, got rank 2/);
  });

  it('needs the heads attribute, at least 1', async () => {
    const options = { provider: 'cpu' as const, customOpsLibraries: [library] };
    await expect(CapiSession.create(unchecked(['d'], {}), options)).rejects.toThrow(
      /JointQkvNorm: the attribute heads \(an int, C = heads · head_dim\) is required/,
    );
    await expect(CapiSession.create(unchecked(['d'], { heads: 0 }), options)).rejects.toThrow(
      /JointQkvNorm: heads must be at least 1, got 0/,
    );
  });

  it('writes empty outputs for no tokens at all', async () => {
    const out = await runAllWithOps(library, unchecked(), feeds([2, 0, 24], [2, 0, 24]));
    for (const part of ['q', 'k', 'v']) expect(out[part].dims).toEqual([2, 0, 8]);
  });
});
