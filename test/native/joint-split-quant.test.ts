/**
 * atelier:JointSplitQuant (issue 10, step 8): joint attention's output split into the context's and
 * the image's tokens and quantized per token for each stream's output projection, CPU kernel built
 * here with g++, through the C-API binding. Judged against what the W8A8 graph did before: a Slice
 * per stream read by Fp8Linear (its own quantize pass) — the projections' outputs the same bits when
 * Fp8LinearQ reads the op's codes; the codes and scales themselves against Fp8Linear's quantizer
 * computed here on the right rows (a row of the wrong stream or sample would show). Random inputs
 * are drawn afresh each run (the seed is in every failure message). Then the errors that name the input.
 */
import { randomInt } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { ATELIER_DOMAIN, type BuiltModel, GraphBuilder, ONNX_DTYPE } from '../../src/pipeline/onnx/graph.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import type { HostTensor } from '../../src/pipeline/ort/index.js';
import { e4m3ToFloat, floatToE4M3, floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { normals, runAllWithOps } from './run-graphs.js';

interface Problem {
  batch: number;
  tokens: number;
  contextTokens: number;
  c: number;
  n: number;
  joint: Uint16Array;
  w8: [Uint8Array, Uint8Array];
  wScale: Float32Array;
  bias: Uint16Array;
}

/** Rows of very different spreads; row 0 all zeros (amax 0: codes and scale 0). */
function randomProblem(
  batch: number,
  contextTokens: number,
  xTokens: number,
  c: number,
  seed: number,
): Problem {
  const normal = normals(seed);
  const tokens = contextTokens + xTokens;
  const n = 24;
  const joint = new Uint16Array(batch * tokens * c);
  for (let r = 0; r < batch * tokens; r++) {
    const spread = 10 ** Math.max(-2, Math.min(2, normal(0, 1)));
    for (let i = 0; i < c; i++) joint[r * c + i] = r === 0 ? 0 : floatToHalf(normal(0, spread));
  }
  const weight = () => Uint8Array.from({ length: n * c }, () => floatToE4M3(normal(0, 120)));
  return {
    batch,
    tokens,
    contextTokens,
    c,
    n,
    joint,
    w8: [weight(), weight()],
    wScale: Float32Array.from({ length: n }, () => Math.abs(normal(0.02, 0.01)) / 448 + 1e-6),
    bias: Uint16Array.from({ length: n }, () => floatToHalf(normal(0, 0.5))),
  };
}

const feeds = (p: Problem): Record<string, HostTensor> => ({
  joint: { type: 'float16', dims: [p.batch, p.tokens, p.c], data: p.joint },
  tokens: { type: 'int64', dims: [1], data: BigInt64Array.from([BigInt(p.contextTokens)]) },
});

/**
 * Each stream's projection of its tokens: `fused` = JointSplitQuant → Fp8LinearQ per stream, else
 * Slice → Fp8Linear (as Net built it before). With `codes`, the op's outputs too (codes through a Cast).
 */
function graph(p: Problem, fused: boolean, codes = false): BuiltModel {
  const g = new GraphBuilder(fused ? 'fused' : 'sliced');
  const joint = g.input('joint', 'float16', [p.batch, p.tokens, p.c]);
  const tokens = g.input('tokens', 'int64', [1]);
  const ints = (v: number) => g.constant('i', 'int64', [1], BigInt64Array.from([BigInt(v)]));
  const layer = (i: number) => [
    g.constant(`w${i}`, 'float8e4m3fn', [p.n, p.c], p.w8[i]),
    g.constant(`s${i}`, 'float32', [p.n], p.wScale),
    g.constant(`b${i}`, 'float16', [p.n], p.bias),
  ];
  const xTokens = p.tokens - p.contextTokens;
  const dims = [
    [p.batch, p.contextTokens],
    [p.batch, xTokens],
  ];
  if (fused) {
    const [cx8, cs, xx8, xs] = g.opMulti('JointSplitQuant', [joint, tokens], 4, {}, ATELIER_DOMAIN);
    for (const [i, [x8, s]] of [
      [cx8, cs],
      [xx8, xs],
    ].entries()) {
      g.output(g.op('Fp8LinearQ', [x8!, s!, ...layer(i)], {}, ATELIER_DOMAIN), `y${i}`, 'float16', [
        ...dims[i],
        p.n,
      ]);
      if (codes) {
        g.output(g.op('Cast', [x8!], { to: ONNX_DTYPE.float32 }), `codes${i}`, 'float32', [...dims[i], p.c]);
        g.output(s!, `scales${i}`, 'float32', dims[i]);
      }
    }
  } else {
    const slices = [
      g.op('Slice', [joint, ints(0), tokens, ints(1)]),
      g.op('Slice', [joint, tokens, ints(Number.MAX_SAFE_INTEGER), ints(1)]),
    ];
    for (const [i, x] of slices.entries())
      g.output(g.op('Fp8Linear', [x, ...layer(i)], {}, ATELIER_DOMAIN), `y${i}`, 'float16', [
        ...dims[i],
        p.n,
      ]);
  }
  return g.build();
}

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

describe('atelier:JointSplitQuant, CPU kernel', () => {
  it.each<[string, number, number, number, number]>([
    ['B 1, one context and one image token', 1, 1, 1, 16],
    ['B 2 (CFG), Tc 5, Tx 12', 2, 5, 12, 64],
    ['B 3, C not a multiple of 8', 3, 4, 6, 50],
    ['no context tokens', 2, 0, 7, 32],
    ['enough work for the thread pool', 2, 40, 200, 128],
  ])('%s: Fp8LinearQ of its codes is Fp8Linear of the Slice, bit for bit', async (_, b, tc, tx, c) => {
    const seed = randomInt(2 ** 31);
    const p = randomProblem(b, tc, tx, c, seed);
    const fused = await runAllWithOps(library, graph(p, true), feeds(p));
    const sliced = await runAllWithOps(library, graph(p, false), feeds(p));
    for (const y of ['y0', 'y1']) {
      expect(fused[y].dims).toEqual(sliced[y].dims);
      const a = fused[y].data as Uint16Array;
      const s = sliced[y].data as Uint16Array;
      const at = a.findIndex((v, i) => v !== s[i] && ((v | s[i]) & 0x7fff) !== 0);
      expect(at, `seed ${seed}: ${y}[${at}] ${halfToFloat(a[at])} vs ${halfToFloat(s[at])}`).toBe(-1);
    }
  });

  it("writes each stream's rows quantized as Fp8Linear quantizes them, per sample", async () => {
    const seed = randomInt(2 ** 31);
    const [b, tc, tx, c] = [3, 4, 9, 40];
    const p = randomProblem(b, tc, tx, c, seed);
    const out = await runAllWithOps(library, graph(p, true, true), feeds(p));
    const t = tc + tx;
    for (const [stream, count, offset] of [
      [0, tc, 0],
      [1, tx, tc],
    ] as const) {
      const codes = out[`codes${stream}`].data as Float32Array;
      const scales = out[`scales${stream}`].data as Float32Array;
      expect(out[`scales${stream}`].dims).toEqual([b, count]);
      for (let s = 0; s < b; s++)
        for (let k = 0; k < count; k++) {
          const row = s * t + offset + k;
          const values = Array.from(p.joint.subarray(row * c, (row + 1) * c), halfToFloat);
          const amax = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
          const r = s * count + k;
          expect(scales[r], `seed ${seed}: scale of stream ${stream} row ${r}`).toBe(Math.fround(amax / 448));
          const inv = amax > 0 ? Math.fround(448 / amax) : 0;
          for (let i = 0; i < c; i++) {
            const want = e4m3ToFloat(floatToE4M3(Math.fround(values[i] * inv)));
            const got = codes[r * c + i];
            expect(
              Object.is(got, want) || (got === 0 && want === 0),
              `seed ${seed}: code [${stream}, ${r}, ${i}]`,
            ).toBe(true);
          }
        }
    }
  });

  it('refuses a context token count beyond the joint tokens, naming it', async () => {
    const p = randomProblem(2, 3, 4, 16, 1);
    const f = { ...feeds(p), tokens: { type: 'int64' as const, dims: [1], data: BigInt64Array.from([8n]) } };
    await expect(runAllWithOps(library, graph(p, true), f)).rejects.toThrow(
      /JointSplitQuant: context_tokens must be in \[0, 7\] for joint \[2, 7, 16\], got 8/,
    );
  });
});
