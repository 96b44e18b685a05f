/**
 * atelier:AdaLNResidualQuant (issue 10, step 8): block_mixing's gated residual x + gate · branch fused
 * with the modulated norm and e4m3 quantization of the result (AdaLNModulateQuant), CPU kernel built
 * here with g++, through the C-API binding. The residual against x + gate · branch rounded here as
 * ONNX Runtime's CUDA Mul then Add round it (the product and the sum each rounded to the element type),
 * per sample's gate, in float32 and float16; the codes and scales bit for bit against
 * AdaLNModulateQuant of that residual. In float32 also all three against the chain the W8A8 graph had
 * before (Mul → Add → AdaLNModulateQuant) run by ORT's CPU provider; its float16 Mul and Add run in
 * float32 (cast insertion, no rounding between them), so in float16 the chain is the GPU's to compare
 * (capi-check `residual-norm`). Random inputs are drawn afresh each run
 * (the seed is in every failure message). Then shape inference and the errors that name the input.
 * Then atelier:AdaLNResidual (the same residual, the norm written in the compute type: the fp16
 * path's form) against Mul → Add → AdaLNModulate and against AdaLNModulate of its residual. Last,
 * both ops with their optional second branch (branch2, gate2: MMDiT-X's two gated residuals in a
 * row) the same ways: against Mul → Add → Mul → Add → the norm in float32 (token and delayed_tensor
 * scaling), against both sums rounded as the GPU's Mul and Add round them, and the errors.
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
import { floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { normals, runAllWithOps } from './run-graphs.js';

type Dtype = 'float32' | 'float16';
type Shape = [number, number, number];
const EPS = 1e-6;

const NAMES = ['x', 'branch', 'gate', 'shift', 'scale'] as const;
/** The residual ops' inputs with the optional second branch. */
const NAMES2 = [...NAMES, 'branch2', 'gate2'] as const;
type Name = (typeof NAMES2)[number];
type Problem = { dtype: Dtype; shape: Shape } & Record<Name, Float32Array | Uint16Array>;

/**
 * Residual rows of different means and spreads (like the MMDiT's, which grow through the blocks),
 * branches of their own scale, gates per sample of either sign; sample 0's gate has zeros (the
 * residual is x there) and its token 0 is constant after the sum (x = −gate · branch = 0 and 0: the
 * norm's output is the shift, which is 0 for sample 0: amax 0). branch2 and gate2 (drawn last, so
 * the others are what they were) likewise, branch2 0 in that token.
 */
function randomProblem(dtype: Dtype, shape: Shape, seed: number): Problem {
  const [b, t, c] = shape;
  const normal = normals(seed);
  const store = (values: number[]) =>
    dtype === 'float32' ? Float32Array.from(values) : Uint16Array.from(values, floatToHalf);
  const x: number[] = [];
  const branch: number[] = [];
  for (let r = 0; r < b * t; r++) {
    const spread = 10 ** Math.max(-1, Math.min(2, normal(0.5, 0.8)));
    const mean = normal(0, 2);
    for (let i = 0; i < c; i++) {
      x.push(r === 0 ? 0 : mean + normal(0, spread));
      branch.push(r === 0 ? 0 : normal(0, spread * 10 ** normal(0, 0.5)));
    }
  }
  const gate = Array.from({ length: b * c }, (_, i) => (i < c && i % 4 === 0 ? 0 : normal(0, 0.8)));
  const shift = Array.from({ length: b * c }, (_, i) => (i < c ? 0 : normal(0, 1)));
  const scale = Array.from({ length: b * c }, () => normal(0, 0.6));
  const branch2 = Array.from({ length: b * t * c }, (_, i) => (i < c ? 0 : normal(0, 10 ** normal(0, 0.7))));
  const gate2 = Array.from({ length: b * c }, (_, i) => (i < c && i % 3 === 0 ? 0 : normal(0, 0.8)));
  return {
    dtype,
    shape,
    x: store(x),
    branch: store(branch),
    gate: store(gate),
    shift: store(shift),
    scale: store(scale),
    branch2: store(branch2),
    gate2: store(gate2),
  };
}

const dimsOf = (name: Name, [b, t, c]: Shape) =>
  name === 'x' || name === 'branch' || name === 'branch2' ? [b, t, c] : [b, 1, c];

const feeds = (p: Problem, names: readonly Name[] = NAMES): Record<string, HostTensor> =>
  Object.fromEntries(names.map((n) => [n, { type: p.dtype, dims: dimsOf(n, p.shape), data: p[n] }]));

function inputs(g: GraphBuilder, p: Problem, names: readonly Name[] = NAMES): Record<Name, Value> {
  return Object.fromEntries(names.map((n) => [n, g.input(n, p.dtype, dimsOf(n, p.shape))])) as Record<
    Name,
    Value
  >;
}

/** residual, codes (as float32, which the binding reads) and act_scale: fused, or the chain Net built. */
function graph(p: Problem, fused: boolean): BuiltModel {
  const [b, t, c] = p.shape;
  const g = new GraphBuilder(fused ? 'fused' : 'chain');
  const v = inputs(g, p);
  const epsilon = { epsilon: { float: EPS } };
  let residual: Value;
  let x8: Value;
  let actScale: Value;
  if (fused) {
    [residual, x8, actScale] = g.opMulti(
      'AdaLNResidualQuant',
      [v.x, v.branch, v.gate, v.shift, v.scale],
      3,
      epsilon,
      ATELIER_DOMAIN,
    );
  } else {
    residual = g.op('Add', [v.x, g.op('Mul', [v.gate, v.branch])]);
    [x8, actScale] = g.opMulti(
      'AdaLNModulateQuant',
      [residual, v.shift, v.scale],
      2,
      epsilon,
      ATELIER_DOMAIN,
    );
  }
  g.output(residual, 'residual', p.dtype, [b, t, c]);
  g.output(g.op('Cast', [x8], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', [b, t, c]);
  g.output(actScale, 'act_scale', 'float32', [b, t]);
  return g.build();
}

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

/** Index of the first element whose bits differ, else -1 (codes: ±0 alike). */
function firstDifference(a: HostTensor['data'], b: HostTensor['data'], zeros = false): number {
  const x = a as ArrayLike<number>;
  const y = b as ArrayLike<number>;
  for (let i = 0; i < x.length; i++)
    if (!(Object.is(x[i], y[i]) || (zeros && x[i] === 0 && y[i] === 0))) return i;
  return x.length === y.length ? -1 : x.length;
}

/** Element i of float32 data or float16 bits, as a number. */
const valueAt = (a: Float32Array | Uint16Array, i: number) =>
  a instanceof Uint16Array ? halfToFloat(a[i]) : a[i];

/**
 * v rounded once to `dtype`: float32 holds the product of two float16s exactly and rounds a sum of two
 * once, so the one rounding to float16 that follows is the correctly rounded float16 result
 * (p ≥ 2·11 + 2) — what the GPU's __hmul and __hadd give.
 */
const roundTo = (dtype: Dtype, v: number) =>
  dtype === 'float16' ? halfToFloat(floatToHalf(Math.fround(v))) : Math.fround(v);

const SHAPES: [string, Shape][] = [
  ['one sample, one token', [1, 1, 32]],
  ['batch 2 (CFG)', [2, 7, 64]],
  ['batch 3, C not a multiple of 8', [3, 5, 50]],
  ['enough work for the thread pool', [2, 96, 128]],
];

describe('atelier:AdaLNResidualQuant, float32, CPU kernel', () => {
  it.each(SHAPES)('%s: the same bits as Mul → Add → AdaLNModulateQuant', async (_, shape) => {
    const seed = randomInt(2 ** 31);
    const p = randomProblem('float32', shape, seed);
    const fused = await runAllWithOps(library, graph(p, true), feeds(p));
    const chain = await runAllWithOps(library, graph(p, false), feeds(p));
    expect(fused.residual.type).toBe('float32');
    expect(fused.residual.dims).toEqual(shape);
    expect(fused.act_scale.dims).toEqual(shape.slice(0, 2));
    for (const [name, zeros] of [
      ['residual', false],
      ['x8', true],
      ['act_scale', false],
    ] as const) {
      const at = firstDifference(fused[name].data, chain[name].data, zeros);
      expect(
        at,
        `seed ${seed}: ${name}[${at}] ${fused[name].data[at]} vs chain ${chain[name].data[at]}`,
      ).toBe(-1);
    }
  });
});

describe.each<Dtype>(['float32', 'float16'])('atelier:AdaLNResidualQuant, %s, CPU kernel', (dtype) => {
  it.each(SHAPES)(
    '%s: x + gate · branch rounded as Mul then Add on the GPU, with its own sample’s gate; codes and scales of it',
    async (_, shape) => {
      const seed = randomInt(2 ** 31);
      const [b, t, c] = shape;
      const p = randomProblem(dtype, shape, seed);
      const out = await runAllWithOps(library, graph(p, true), feeds(p));
      expect(out.residual.type).toBe(dtype);
      const value = valueAt;
      const round = (v: number) => roundTo(dtype, v);
      const residual = out.residual.data as Float32Array | Uint16Array;
      for (let i = 0; i < residual.length; i++) {
        const sample = Math.floor(i / (t * c));
        const gated = round(value(p.gate, sample * c + (i % c)) * value(p.branch, i));
        const want = round(value(p.x, i) + gated);
        expect(value(residual, i), `seed ${seed}: residual[${i}]`).toBe(want);
      }
      // The codes and scales: AdaLNModulateQuant of that residual, bit for bit.
      const g = new GraphBuilder('quant');
      const [x8, s] = g.opMulti(
        'AdaLNModulateQuant',
        [
          g.input('x', dtype, [b, t, c]),
          g.input('shift', dtype, [b, 1, c]),
          g.input('scale', dtype, [b, 1, c]),
        ],
        2,
        { epsilon: { float: EPS } },
        ATELIER_DOMAIN,
      );
      g.output(g.op('Cast', [x8], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', [b, t, c]);
      g.output(s, 'act_scale', 'float32', [b, t]);
      const quant = await runAllWithOps(library, g.build(), {
        x: out.residual,
        shift: feeds(p).shift,
        scale: feeds(p).scale,
      });
      for (const [name, zeros] of [
        ['x8', true],
        ['act_scale', false],
      ] as const) {
        const at = firstDifference(out[name].data, quant[name].data, zeros);
        expect(at, `seed ${seed}: ${name}[${at}]`).toBe(-1);
      }
      // Row 0 is all zeros (x and branch 0): codes and scale 0, no NaN.
      expect((out.act_scale.data as Float32Array)[0]).toBe(0);
      expect((out.x8.data as Float32Array).subarray(0, c).every((v) => v === 0)).toBe(true);
    },
  );
});

describe('AdaLNResidualQuant shapes and errors', () => {
  it("tells ONNX Runtime the residual's, codes' and scales' shapes, named or not", async () => {
    const session = (declared: number) => {
      const g = new GraphBuilder('shapes');
      const x = g.input('x', 'float16', ['batch', 'tokens', 32]);
      const branch = g.input('branch', 'float16', ['batch', 'tokens', 32]);
      const vec = (n: string) => g.input(n, 'float16', ['batch', 1, 32]);
      const [r, x8, s] = g.opMulti(
        'AdaLNResidualQuant',
        [x, branch, vec('gate'), vec('shift'), vec('scale')],
        3,
        {},
        ATELIER_DOMAIN,
      );
      g.output(g.op('Relu', [r]), 'r', 'float16', ['batch', 'tokens', declared]);
      g.output(g.op('Cast', [x8], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', ['batch', 'tokens', 32]);
      g.output(g.op('Relu', [s]), 's', 'float32', ['batch', 'tokens']);
      const config = { 'session.strict_shape_type_inference': '1' };
      return CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library], config });
    };
    (await session(32)).release();
    await expect(session(33)).rejects.toThrow(/Inferred=32 Declared=33/);
  });

  it("tells ONNX Runtime the second modulation's codes' shape when the node has the pair", async () => {
    const session = (declared: number) => {
      const g = new GraphBuilder('pair-shapes');
      const rows = (n: string) => g.input(n, 'float16', ['batch', 'tokens', 32]);
      const vec = (n: string) => g.input(n, 'float16', ['batch', 1, 32]);
      const ins = [rows('x'), rows('branch'), vec('gate'), vec('shift'), vec('scale'), undefined, undefined];
      const outs = g.opMulti(
        'AdaLNResidualQuant',
        [...ins, vec('shift2'), vec('scale2')],
        5,
        {},
        ATELIER_DOMAIN,
      );
      const dims = ['batch', 'tokens', declared];
      g.output(g.op('Cast', [outs[3]!], { to: ONNX_DTYPE.float32 }), 'x8_2', 'float32', dims);
      g.output(g.op('Relu', [outs[4]!]), 's2', 'float32', ['batch', 'tokens']);
      const config = { 'session.strict_shape_type_inference': '1' };
      return CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library], config });
    };
    (await session(32)).release();
    await expect(session(33)).rejects.toThrow(/Inferred=32 Declared=33/);
  });

  it.each<[string, Name, number[], RegExp]>([
    [
      'a branch of another token count',
      'branch',
      [2, 2, 32],
      /AdaLNResidualQuant: branch must be x's shape \[2, 3, 32\], got \[2, 2, 32\]/,
    ],
    [
      'a gate that is not [B, 1, C]',
      'gate',
      [2, 3, 32],
      /AdaLNResidualQuant: gate must be \[B, 1, C\] = \[2, 1, 32\] for x \[2, 3, 32\], got \[2, 3, 32\]/,
    ],
  ])('refuses %s, naming it', async (_, name, dims, message) => {
    const p = randomProblem('float16', [2, 3, 32], 1);
    const g = new GraphBuilder('bad');
    const v = NAMES.map((n) => g.input(n, 'float16', n === name ? dims : dimsOf(n, p.shape)));
    const [r] = g.opMulti('AdaLNResidualQuant', v, 3, {}, ATELIER_DOMAIN);
    g.output(r, 'r', 'float16', [2, 3, 32]);
    const size = dims.reduce((a, d) => a * d, 1);
    const f = { ...feeds(p), [name]: { type: 'float16' as const, dims, data: new Uint16Array(size) } };
    await expect(runAllWithOps(library, g.build(), f)).rejects.toThrow(message);
  });
});

/** AdaLNResidual's residual and y, or Mul → Add → AdaLNModulate (what Net builds with residualNorm 'separate'). */
function plainGraph(p: Problem, fused: boolean): BuiltModel {
  const [b, t, c] = p.shape;
  const g = new GraphBuilder(fused ? 'fused' : 'chain');
  const v = inputs(g, p);
  const epsilon = { epsilon: { float: EPS } };
  let residual: Value;
  let y: Value;
  if (fused) {
    [residual, y] = g.opMulti(
      'AdaLNResidual',
      [v.x, v.branch, v.gate, v.shift, v.scale],
      2,
      epsilon,
      ATELIER_DOMAIN,
    );
  } else {
    residual = g.op('Add', [v.x, g.op('Mul', [v.gate, v.branch])]);
    y = g.op('AdaLNModulate', [residual, v.shift, v.scale], epsilon, ATELIER_DOMAIN);
  }
  g.output(residual, 'residual', p.dtype, [b, t, c]);
  g.output(y, 'y', p.dtype, [b, t, c]);
  return g.build();
}

describe('atelier:AdaLNResidual (the norm in the compute type), CPU kernel', () => {
  it.each(SHAPES)('%s, float32: the same bits as Mul → Add → AdaLNModulate', async (_, shape) => {
    const seed = randomInt(2 ** 31);
    const p = randomProblem('float32', shape, seed);
    const fused = await runAllWithOps(library, plainGraph(p, true), feeds(p));
    const chain = await runAllWithOps(library, plainGraph(p, false), feeds(p));
    for (const name of ['residual', 'y']) {
      const at = firstDifference(fused[name].data, chain[name].data);
      expect(at, `seed ${seed}: ${name}[${at}]`).toBe(-1);
    }
  });

  it.each<Dtype>(['float32', 'float16'])(
    '%s: the residual is AdaLNResidualQuant’s, y is AdaLNModulate of it, bit for bit',
    async (dtype) => {
      const seed = randomInt(2 ** 31);
      const shape: Shape = [2, 33, 96];
      const [b, t, c] = shape;
      const p = randomProblem(dtype, shape, seed);
      const out = await runAllWithOps(library, plainGraph(p, true), feeds(p));
      const quant = await runAllWithOps(library, graph(p, true), feeds(p));
      expect(firstDifference(out.residual.data, quant.residual.data), `seed ${seed}: residual`).toBe(-1);
      const g = new GraphBuilder('norm');
      const y = g.op(
        'AdaLNModulate',
        [
          g.input('x', dtype, [b, t, c]),
          g.input('shift', dtype, [b, 1, c]),
          g.input('scale', dtype, [b, 1, c]),
        ],
        { epsilon: { float: EPS } },
        ATELIER_DOMAIN,
      );
      g.output(y, 'y', dtype, [b, t, c]);
      const norm = await runAllWithOps(library, g.build(), {
        x: out.residual,
        shift: feeds(p).shift,
        scale: feeds(p).scale,
      });
      expect(firstDifference(out.y.data, norm.y.data), `seed ${seed}: y`).toBe(-1);
    },
  );
});

type ResidualOp = 'AdaLNResidualQuant' | 'AdaLNResidual';
type Attrs = Record<string, string | number | { float: number }>;

/**
 * `op` with its second branch: the residual, then x8 (as float32) and act_scale or y. Or the chain Net
 * builds without the fusion (residualNorm 'separate'): Mul → Add → Mul → Add → AdaLNModulateQuant /
 * AdaLNModulate, with the same attributes.
 */
function twoBranchGraph(p: Problem, op: ResidualOp, fused: boolean, attrs: Attrs = {}): BuiltModel {
  const [b, t, c] = p.shape;
  const g = new GraphBuilder(fused ? 'fused' : 'chain');
  const v = inputs(g, p, NAMES2);
  const all = { epsilon: { float: EPS }, ...attrs };
  const quant = op === 'AdaLNResidualQuant';
  let residual: Value;
  let rest: Value[];
  if (fused) {
    const ins = [v.x, v.branch, v.gate, v.shift, v.scale, v.branch2, v.gate2];
    [residual, ...rest] = g.opMulti(op, ins, quant ? 3 : 2, all, ATELIER_DOMAIN) as [Value, ...Value[]];
  } else {
    const first = g.op('Add', [v.x, g.op('Mul', [v.gate, v.branch])]);
    residual = g.op('Add', [first, g.op('Mul', [v.gate2, v.branch2])]);
    const norm = quant ? 'AdaLNModulateQuant' : 'AdaLNModulate';
    rest = g.opMulti(norm, [residual, v.shift, v.scale], quant ? 2 : 1, all, ATELIER_DOMAIN);
  }
  g.output(residual, 'residual', p.dtype, [b, t, c]);
  if (quant) {
    g.output(g.op('Cast', [rest[0]!], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', [b, t, c]);
    g.output(rest[1]!, 'act_scale', 'float32', [b, t]);
  } else {
    g.output(rest[0]!, 'y', p.dtype, [b, t, c]);
  }
  return g.build();
}

/** The outputs of `op` and whether a code may be ±0 on either side. */
const outputsOf = (op: ResidualOp): [string, boolean][] =>
  op === 'AdaLNResidualQuant'
    ? [
        ['residual', false],
        ['x8', true],
        ['act_scale', false],
      ]
    : [
        ['residual', false],
        ['y', false],
      ];

const RESIDUAL_OPS: ResidualOp[] = ['AdaLNResidualQuant', 'AdaLNResidual'];

describe.each(RESIDUAL_OPS)('atelier:%s with a second branch (branch2, gate2), CPU kernel', (op) => {
  it.each(SHAPES)('%s, float32: the same bits as Mul → Add → Mul → Add → the norm', async (_, shape) => {
    const seed = randomInt(2 ** 31);
    const p = randomProblem('float32', shape, seed);
    const fused = await runAllWithOps(library, twoBranchGraph(p, op, true), feeds(p, NAMES2));
    const chain = await runAllWithOps(library, twoBranchGraph(p, op, false), feeds(p, NAMES2));
    expect(fused.residual.dims).toEqual(shape);
    for (const [name, zeros] of outputsOf(op)) {
      const at = firstDifference(fused[name].data, chain[name].data, zeros);
      expect(
        at,
        `seed ${seed}: ${name}[${at}] ${fused[name].data[at]} vs chain ${chain[name].data[at]}`,
      ).toBe(-1);
    }
  });

  it.each<Dtype>(['float32', 'float16'])(
    '%s: x + gate · branch, then + gate2 · branch2, rounded as Mul, Add, Mul, Add on the GPU; the norm of it bit for bit',
    async (dtype) => {
      const seed = randomInt(2 ** 31);
      const shape: Shape = [2, 33, 96];
      const [b, t, c] = shape;
      const p = randomProblem(dtype, shape, seed);
      const out = await runAllWithOps(library, twoBranchGraph(p, op, true), feeds(p, NAMES2));
      expect(out.residual.type).toBe(dtype);
      // Each product and each sum rounded once to the element type.
      const value = valueAt;
      const round = (v: number) => roundTo(dtype, v);
      const residual = out.residual.data as Float32Array | Uint16Array;
      for (let i = 0; i < residual.length; i++) {
        const g = Math.floor(i / (t * c)) * c + (i % c);
        const first = round(value(p.x, i) + round(value(p.gate, g) * value(p.branch, i)));
        const want = round(first + round(value(p.gate2, g) * value(p.branch2, i)));
        expect(value(residual, i), `seed ${seed}: residual[${i}]`).toBe(want);
      }
      // The norm's outputs: the one-input op's of that residual, bit for bit.
      const quant = op === 'AdaLNResidualQuant';
      const g = new GraphBuilder('norm');
      const norm = g.opMulti(
        quant ? 'AdaLNModulateQuant' : 'AdaLNModulate',
        [
          g.input('x', dtype, [b, t, c]),
          g.input('shift', dtype, [b, 1, c]),
          g.input('scale', dtype, [b, 1, c]),
        ],
        quant ? 2 : 1,
        { epsilon: { float: EPS } },
        ATELIER_DOMAIN,
      );
      if (quant) {
        g.output(g.op('Cast', [norm[0]!], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', [b, t, c]);
        g.output(norm[1]!, 'act_scale', 'float32', [b, t]);
      } else {
        g.output(norm[0]!, 'y', dtype, [b, t, c]);
      }
      const alone = await runAllWithOps(library, g.build(), {
        x: out.residual,
        shift: feeds(p).shift,
        scale: feeds(p).scale,
      });
      for (const [name, zeros] of outputsOf(op).slice(1)) {
        const at = firstDifference(out[name].data, alone[name].data, zeros);
        expect(at, `seed ${seed}: ${name}[${at}]`).toBe(-1);
      }
    },
  );

  it('is the one-branch op when the node names neither (empty input names in their place)', async () => {
    const seed = randomInt(2 ** 31);
    const p = randomProblem('float16', [2, 7, 64], seed);
    const build = (blanks: boolean) => {
      const g = new GraphBuilder('blanks');
      const v = inputs(g, p);
      const ins = [v.x, v.branch, v.gate, v.shift, v.scale, ...(blanks ? [undefined, undefined] : [])];
      const [r, ...rest] = g.opMulti(op, ins, op === 'AdaLNResidualQuant' ? 3 : 2, {}, ATELIER_DOMAIN);
      g.output(r!, 'residual', 'float16', [2, 7, 64]);
      if (op === 'AdaLNResidualQuant') {
        g.output(g.op('Cast', [rest[0]!], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', [2, 7, 64]);
        g.output(rest[1]!, 'act_scale', 'float32', [2, 7]);
      } else {
        g.output(rest[0]!, 'y', 'float16', [2, 7, 64]);
      }
      return g.build();
    };
    const blanks = await runAllWithOps(library, build(true), feeds(p));
    const five = await runAllWithOps(library, build(false), feeds(p));
    for (const [name, zeros] of outputsOf(op)) {
      const at = firstDifference(blanks[name].data, five[name].data, zeros);
      expect(at, `seed ${seed}: ${name}[${at}]`).toBe(-1);
    }
  });

  it.each<[string, Name[], Partial<Record<Name, number[]>>, RegExp]>([
    [
      'branch2 without gate2',
      ['branch2'],
      {},
      /: branch2 and gate2 come together, got branch2 without gate2/,
    ],
    ['gate2 without branch2', ['gate2'], {}, /: branch2 and gate2 come together, got gate2 without branch2/],
    [
      'a branch2 of another token count',
      ['branch2', 'gate2'],
      { branch2: [2, 2, 32] },
      /: branch2 must be x's shape \[2, 3, 32\], got \[2, 2, 32\]/,
    ],
    [
      'a gate2 that is not [B, 1, C]',
      ['branch2', 'gate2'],
      { gate2: [1, 1, 32] },
      /: gate2 must be \[B, 1, C\] = \[2, 1, 32\] for x \[2, 3, 32\], got \[1, 1, 32\]/,
    ],
  ])('refuses %s, naming the op and the input', async (_, given, dims, message) => {
    const p = randomProblem('float16', [2, 3, 32], 1);
    const g = new GraphBuilder('bad');
    const dimsFor = (n: Name) => dims[n] ?? dimsOf(n, p.shape);
    const input = (n: Name) => (given.includes(n) ? g.input(n, 'float16', dimsFor(n)) : undefined);
    const ins = [
      ...NAMES.map((n) => g.input(n, 'float16', dimsOf(n, p.shape))),
      input('branch2'),
      input('gate2'),
    ];
    const [r] = g.opMulti(op, ins, op === 'AdaLNResidualQuant' ? 3 : 2, {}, ATELIER_DOMAIN);
    g.output(r!, 'r', 'float16', [2, 3, 32]);
    const f: Record<string, HostTensor> = feeds(p);
    for (const n of given) {
      const d = dimsFor(n);
      f[n] = { type: 'float16', dims: d, data: new Uint16Array(d.reduce((a, x) => a * x, 1)) };
    }
    await expect(runAllWithOps(library, g.build(), f)).rejects.toThrow(new RegExp(`${op}${message.source}`));
  });
});

describe('atelier:AdaLNResidualQuant with a second branch, act_scaling "delayed_tensor", CPU kernel', () => {
  it('gives the same bits as Mul → Add → Mul → Add → AdaLNModulateQuant over several calls (float32)', async () => {
    const seed = randomInt(2 ** 31);
    const attrs = { act_scaling: 'delayed_tensor', amax_history: 2 };
    const shape: Shape = [2, 9, 64];
    const options = { provider: 'cpu' as const, customOpsLibraries: [library] };
    const fused = await CapiSession.create(
      twoBranchGraph(randomProblem('float32', shape, 0), 'AdaLNResidualQuant', true, attrs),
      options,
    );
    const chain = await CapiSession.create(
      twoBranchGraph(randomProblem('float32', shape, 0), 'AdaLNResidualQuant', false, attrs),
      options,
    );
    try {
      // Each call its own inputs, so the scale of later calls comes from the history.
      for (let call = 0; call < 4; call++) {
        const p = randomProblem('float32', shape, seed + call);
        const a = await fused.run(feeds(p, NAMES2));
        const b = await chain.run(feeds(p, NAMES2));
        for (const [name, zeros] of outputsOf('AdaLNResidualQuant')) {
          const at = firstDifference(a[name].data, b[name].data, zeros);
          expect(
            at,
            `seed ${seed}, call ${call}: ${name}[${at}] ${a[name].data[at]} vs ${b[name].data[at]}`,
          ).toBe(-1);
        }
      }
    } finally {
      fused.release();
      chain.release();
    }
  });
});

describe('AdaLNResidualQuant with a second modulation (shift2, scale2), CPU kernel', () => {
  type Pair = 'shift2' | 'scale2';
  /** x, branch, gate, shift, scale; branch2 and gate2 with two branches (else blanks); the pair as given. */
  function pairGraph(p: Problem, branches: 1 | 2, given: readonly Pair[], attrs: Attrs = {}): BuiltModel {
    const [b, t, c] = p.shape;
    const g = new GraphBuilder('pair');
    const v = NAMES.map((n) => g.input(n, 'float16', dimsOf(n, p.shape)));
    const second = (['branch2', 'gate2'] as const).map((n) =>
      branches === 2 ? g.input(n, 'float16', dimsOf(n, p.shape)) : undefined,
    );
    const pair = (['shift2', 'scale2'] as const).map((n) =>
      given.includes(n) ? g.input(n, 'float16', [b, 1, c]) : undefined,
    );
    const outs = g.opMulti('AdaLNResidualQuant', [...v, ...second, ...pair], 5, attrs, ATELIER_DOMAIN);
    g.output(outs[0]!, 'residual', 'float16', [b, t, c]);
    g.output(g.op('Cast', [outs[3]!], { to: ONNX_DTYPE.float32 }), 'x8_2', 'float32', [b, t, c]);
    g.output(outs[4]!, 'act_scale_2', 'float32', [b, t]);
    return g.build();
  }

  /** AdaLNModulateQuant of r with shift2 and scale2, alone. */
  function secondGraph(shape: Shape): BuiltModel {
    const [b, t, c] = shape;
    const g = new GraphBuilder('second');
    const ins = [
      g.input('r', 'float16', [b, t, c]),
      g.input('shift2', 'float16', [b, 1, c]),
      g.input('scale2', 'float16', [b, 1, c]),
    ];
    const [x8, s] = g.opMulti('AdaLNModulateQuant', ins, 2, {}, ATELIER_DOMAIN);
    g.output(g.op('Cast', [x8!], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', [b, t, c]);
    g.output(s!, 'act_scale', 'float32', [b, t]);
    return g.build();
  }

  function pairFeeds(p: Problem, seed: number, given: readonly Pair[] = ['shift2', 'scale2']) {
    const q = randomProblem('float16', p.shape, seed + 1);
    const [b, , c] = p.shape;
    const f: Record<string, HostTensor> = {
      ...feeds(p, NAMES2),
      ...(given.includes('shift2') ? { shift2: { type: 'float16', dims: [b, 1, c], data: q.shift } } : {}),
      ...(given.includes('scale2') ? { scale2: { type: 'float16', dims: [b, 1, c], data: q.scale } } : {}),
    };
    return f;
  }

  it.each([1, 2] as const)(
    'writes x8_2 and act_scale_2 as AdaLNModulateQuant of its residual with shift2 and scale2 (%i branch)',
    async (branches) => {
      const seed = randomInt(2 ** 31);
      const p = randomProblem('float16', [2, 5, 64], seed);
      const f = pairFeeds(p, seed);
      if (branches === 1) {
        delete f.branch2;
        delete f.gate2;
      }
      const paired = await runAllWithOps(library, pairGraph(p, branches, ['shift2', 'scale2']), f);
      const second = await runAllWithOps(library, secondGraph(p.shape), {
        r: paired.residual!,
        shift2: f.shift2!,
        scale2: f.scale2!,
      });
      expect(paired.act_scale_2!.data.some((v) => v > 0)).toBe(true);
      expect(firstDifference(paired.x8_2!.data, second.x8!.data), `seed ${seed}`).toBe(-1);
      expect(firstDifference(paired.act_scale_2!.data, second.act_scale!.data), `seed ${seed}`).toBe(-1);
    },
  );

  it.each<[string, Pair[], Attrs, RegExp]>([
    ['shift2 without scale2', ['shift2'], {}, /shift2 and scale2 come together, got shift2 without scale2/],
    ['scale2 without shift2', ['scale2'], {}, /shift2 and scale2 come together, got scale2 without shift2/],
    [
      'a pair with act_scaling "delayed_tensor"',
      ['shift2', 'scale2'],
      { act_scaling: 'delayed_tensor' },
      /the second modulation \(shift2, scale2\) is quantized per token: act_scaling must be "token"/,
    ],
  ])('refuses %s, naming the op and the inputs', async (_, given, attrs, message) => {
    const p = randomProblem('float16', [2, 3, 32], 1);
    const f = pairFeeds(p, 1, given);
    delete f.branch2;
    delete f.gate2;
    await expect(runAllWithOps(library, pairGraph(p, 1, given, attrs), f)).rejects.toThrow(
      new RegExp(`AdaLNResidualQuant: ${message.source}`),
    );
  });
});
