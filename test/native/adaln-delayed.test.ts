/**
 * AdaLNModulateQuant's and AdaLNResidualQuant's act_scaling "delayed_tensor" on the CPU kernel
 * (native/src/adaln_modulate.h): one e4m3 scale for the whole output, chosen by delayed per-tensor
 * scaling as Fp8Linear's output "e4m3_delayed" chooses it (the first call its own amax, later calls
 * amax_margin × the largest amax of the last amax_history calls). The values quantized are the
 * float16-rounded modulated norm that act_scaling "token" quantizes: taken here from AdaLNModulate
 * (AdaLNResidual for the residual op), whose float16 rounding the token mode's tests already match bit
 * for bit; the delayed scale, the codes and the history are a float32 reference written here. Several
 * calls of one session (one kernel instance keeps the history). Random inputs are drawn afresh each
 * run (the seed is in every failure message).
 */
import { randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ATELIER_DOMAIN, type BuiltModel, GraphBuilder, ONNX_DTYPE } from '../../src/pipeline/onnx/graph.js';
import type { CapiSession, HostTensor } from '../../src/pipeline/ort/index.js';
import { e4m3ToFloat, floatToE4M3, floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { cpuOpsSessions, normals, runAllWithOps } from './run-graphs.js';

type Op = 'AdaLNModulateQuant' | 'AdaLNResidualQuant';
type Dtype = 'float32' | 'float16';
type Shape = [number, number, number];
type Attrs = Record<string, string | number | { float: number }>;
type Feeds = Record<string, HostTensor>;

const EPS = 1e-6;
const isResidual = (op: Op) => op === 'AdaLNResidualQuant';
const inputNames = (op: Op) =>
  isResidual(op) ? ['x', 'branch', 'gate', 'shift', 'scale'] : ['x', 'shift', 'scale'];
const dimsOf = (name: string, [b, t, c]: Shape) =>
  name === 'x' || name === 'branch' ? [b, t, c] : [b, 1, c];

/**
 * The op's inputs; `size` scales shift and scale, so the outputs' amax grows with it (about 3 at
 * size 0.1, tens at size 6). `fill` makes x that constant (each row's norm is then 0).
 */
function randomFeeds(op: Op, dtype: Dtype, shape: Shape, seed: number, size: number, fill?: number): Feeds {
  const [b, t, c] = shape;
  const normal = normals(seed);
  const store = (values: number[]) =>
    dtype === 'float32' ? Float32Array.from(values) : Uint16Array.from(values, floatToHalf);
  const rows = (sd: number) =>
    Array.from({ length: b * t }, () => {
      const spread = sd * 10 ** normal(0, 0.5);
      const mean = normal(0, 2);
      return Array.from({ length: c }, () => fill ?? mean + normal(0, spread));
    }).flat();
  const vector = (sd: number) => Array.from({ length: b * c }, () => normal(0, sd));
  const values: Record<string, number[]> = {
    x: rows(1),
    branch: fill === undefined ? rows(1) : new Array(b * t * c).fill(0),
    gate: vector(0.8),
    shift: fill === undefined ? vector(size) : new Array(b * c).fill(0),
    scale: vector(size),
  };
  return Object.fromEntries(
    inputNames(op).map((n) => [n, { type: dtype, dims: dimsOf(n, shape), data: store(values[n]!) }]),
  );
}

/** The op's outputs: residual (the residual op), the codes as float32 (the binding reads no float8), act_scale. */
function quantGraph(op: Op, dtype: Dtype, shape: Shape, attrs: Attrs): BuiltModel {
  const [b, t] = shape;
  const g = new GraphBuilder('quant');
  const inputs = inputNames(op).map((n) => g.input(n, dtype, dimsOf(n, shape)));
  const outs = g.opMulti(
    op,
    inputs,
    isResidual(op) ? 3 : 2,
    { epsilon: { float: EPS }, ...attrs },
    ATELIER_DOMAIN,
  );
  if (isResidual(op)) g.output(outs[0]!, 'residual', dtype, shape);
  const [x8, actScale] = outs.slice(-2);
  g.output(g.op('Cast', [x8!], { to: ONNX_DTYPE.float32 }), 'x8', 'float32', shape);
  g.output(actScale!, 'act_scale', 'float32', [b, t]);
  return g.build();
}

/** The same norm unquantized (AdaLNModulate, or AdaLNResidual's y) in the element type. */
function normGraph(op: Op, dtype: Dtype, shape: Shape): BuiltModel {
  const g = new GraphBuilder('norm');
  const inputs = inputNames(op).map((n) => g.input(n, dtype, dimsOf(n, shape)));
  const epsilon = { epsilon: { float: EPS } };
  const y = isResidual(op)
    ? g.opMulti('AdaLNResidual', inputs, 2, epsilon, ATELIER_DOMAIN)[1]!
    : g.op('AdaLNModulate', inputs, epsilon, ATELIER_DOMAIN);
  g.output(y, 'y', dtype, shape);
  return g.build();
}

/** y16: the norm rounded to float16, what act_scaling "token" quantizes a row at a time. */
async function roundedNorm(op: Op, dtype: Dtype, shape: Shape, feeds: Feeds): Promise<Float64Array> {
  const y = (await runAllWithOps(ops.library(), normGraph(op, dtype, shape), feeds)).y!.data;
  return dtype === 'float16'
    ? Float64Array.from(y as Uint16Array, halfToFloat)
    : Float64Array.from(y as Float32Array, (v) => halfToFloat(floatToHalf(v)));
}

/** fp8_linear_cpu.cc's delayed_scale in float32: s and d = 1/s, or 1 and 1 when either is unusable. */
function delayedScale(ref: number, margin: number): [number, number] {
  const s = Math.fround(Math.fround(margin * ref) / 448);
  const d = Math.fround(1 / s);
  const usable = (v: number) => v > 0 && Number.isFinite(v);
  return usable(ref) && usable(s) && usable(d) ? [s, d] : [1, 1];
}

/** One kernel instance's delayed scaling, as fp8_linear.h describes it: the reference for every call. */
class Delayed {
  readonly amaxes: number[] = []; // the finite amaxes pushed, oldest first
  #first = true;
  constructor(
    readonly margin = 2,
    readonly history = 16,
  ) {}

  /** The call's codes, s, amax and how many values clipped (|y16 · d| beyond 448, float32 rounding aside). */
  quantize(y16: Float64Array): { codes: Float64Array; s: number; amax: number; clipped: number } {
    let amax = 0;
    for (const v of y16) amax = Math.max(amax, Math.abs(v)); // NaN stays NaN
    const window = this.amaxes.slice(-this.history);
    const [s, d] = this.#first ? delayedScale(amax, 1) : delayedScale(Math.max(0, ...window), this.margin);
    this.#first = false;
    if (Number.isFinite(amax)) this.amaxes.push(amax);
    const clipped = y16.reduce((n, v) => (Math.abs(v * d) > 448 * 1.001 ? n + 1 : n), 0);
    return { codes: y16.map((v) => e4m3ToFloat(floatToE4M3(Math.fround(v * d)))), s, amax, clipped };
  }
}

const ops = cpuOpsSessions();
const session = ops.session;

/**
 * Runs one call of `s` and checks it against `ref` bit for bit: every act_scale is the reference s,
 * every code the reference e4m3 (±0 alike, NaN as NaN). Returns the reference's answer (with how
 * many values clipped) and the op's outputs.
 */
async function checkCall(
  s: CapiSession,
  ref: Delayed,
  problem: { op: Op; dtype: Dtype; shape: Shape; feeds: Feeds },
  what: string,
): Promise<{ s: number; amax: number; clipped: number; out: Record<string, HostTensor> }> {
  const { op, dtype, shape, feeds } = problem;
  const out = await s.run(feeds);
  const want = ref.quantize(await roundedNorm(op, dtype, shape, feeds));
  const scales = out.act_scale!.data as Float32Array;
  expect(out.act_scale!.dims).toEqual(shape.slice(0, 2));
  expect(
    scales.every((v) => v === want.s),
    `${what}: every act_scale is s = ${want.s}, got ${scales[0]}…`,
  ).toBe(true);
  const codes = out.x8!.data as Float32Array;
  expect(codes.length).toBe(want.codes.length);
  for (let i = 0; i < codes.length; i++) {
    const same = Object.is(codes[i], want.codes[i]) || (codes[i] === 0 && want.codes[i] === 0);
    if (!same) expect(codes[i], `${what}: code ${i}`).toBe(want.codes[i]);
  }
  return { s: want.s, amax: want.amax, clipped: want.clipped, out };
}

const OPS: Op[] = ['AdaLNModulateQuant', 'AdaLNResidualQuant'];

describe.each(OPS)('atelier:%s act_scaling "delayed_tensor", CPU kernel', (op) => {
  describe.each<Dtype>(['float32', 'float16'])('%s', (dtype) => {
    it.each<[string, Shape]>([
      ['batch 2', [2, 5, 48]],
      ['enough rows for the thread pool', [2, 300, 128]],
    ])(
      '%s: the first call scales by its own amax, later calls by 2 × the largest amax so far',
      async (_, shape) => {
        const seed = randomInt(2 ** 31);
        const s = await session(quantGraph(op, dtype, shape, { act_scaling: 'delayed_tensor' }));
        const ref = new Delayed();
        // Outputs of different sizes: the reference scale changes from call to call.
        for (const [i, size] of [1, 0.4, 0.7, 0.5].entries()) {
          const feeds = randomFeeds(op, dtype, shape, seed + i, size);
          const call = await checkCall(s, ref, { op, dtype, shape, feeds }, `seed ${seed}, call ${i}`);
          if (i === 0) expect(call.s).toBe(Math.fround(call.amax / 448));
          else expect(call.s).toBe(Math.fround(Math.fround(2 * Math.max(...ref.amaxes.slice(0, i))) / 448));
          // The first call's amax lands on 448; the later, smaller outputs stay well within margin 2.
          expect(call.clipped, `seed ${seed}, call ${i}`).toBe(0);
        }
      },
    );

    it('saturates a call whose amax outgrew margin × history, and forgets amaxes older than amax_history calls', async () => {
      const seed = randomInt(2 ** 31);
      const shape: Shape = [2, 6, 64];
      const history = 3;
      const attrs = { act_scaling: 'delayed_tensor', amax_history: history, amax_margin: { float: 1.5 } };
      const s = await session(quantGraph(op, dtype, shape, attrs));
      const ref = new Delayed(1.5, history);
      // Call 1 sets a small amax; call 2's outputs are far larger (beyond 1.5 × call 1's amax: they
      // clip), then small calls: call 2's amax rules the scale until it leaves the 3-call window.
      const calls = [];
      for (const [i, size] of [0.1, 6, 0.1, 0.1, 0.1, 0.1].entries()) {
        const feeds = randomFeeds(op, dtype, shape, seed + i, size);
        calls.push(await checkCall(s, ref, { op, dtype, shape, feeds }, `seed ${seed}, call ${i}`));
      }
      expect(calls[1]!.clipped, `seed ${seed}: call 2 clips`).toBeGreaterThan(0);
      // Clipped values saturate to ±448 (the codes were checked against the reference above).
      const y8 = calls[1]!.out.x8!.data as Float32Array;
      expect(Math.max(...Array.from(y8, Math.abs))).toBe(448);
      expect(calls[1]!.amax).toBeGreaterThan(1.5 * calls[0]!.amax);
      // Calls 3–5 still saw call 2's amax; call 6 no longer does (calls 3–5 only).
      for (const i of [2, 3, 4])
        expect(calls[i]!.s).toBe(delayedScale(Math.max(...ref.amaxes.slice(0, i).slice(-3)), 1.5)[0]);
      expect(calls[5]!.s).toBe(delayedScale(Math.max(...ref.amaxes.slice(2, 5)), 1.5)[0]);
      expect(calls[5]!.s).toBeLessThan(calls[4]!.s);
    });

    it('writes zeros with scale 1 for an all-zero output; a call with a NaN is not remembered', async () => {
      const seed = randomInt(2 ** 31);
      const shape: Shape = [2, 4, 32];
      const s = await session(quantGraph(op, dtype, shape, { act_scaling: 'delayed_tensor' }));
      const ref = new Delayed();
      const problem = (i: number, fill?: number) => ({
        op,
        dtype,
        shape,
        feeds: randomFeeds(op, dtype, shape, seed + i, 1, fill),
      });
      // Constant x and zero shift: every output 0, amax 0: s = 1, codes 0.
      const zero = await checkCall(s, ref, problem(0, 0.75), `seed ${seed}, zeros`);
      expect(zero.s).toBe(1);
      expect((zero.out.x8!.data as Float32Array).every((v) => v === 0)).toBe(true);
      // The history holds 0: no reference to scale by, so s = 1 again.
      expect((await checkCall(s, ref, problem(1), `seed ${seed}, after zeros`)).s).toBe(1);
      // A NaN in x makes its row NaN: amax NaN; the scale still comes from the history (the last call's amax).
      const nan = problem(2);
      (nan.feeds.x!.data as Float32Array | Uint16Array)[5] = dtype === 'float32' ? Number.NaN : 0x7e00;
      const withNan = await checkCall(s, ref, nan, `seed ${seed}, NaN`);
      expect(Number.isNaN(withNan.amax)).toBe(true);
      expect(withNan.s).toBe(delayedScale(ref.amaxes[1]!, 2)[0]);
      expect(Number.isNaN((withNan.out.x8!.data as Float32Array)[5])).toBe(true);
      // Not pushed: the next call's reference is still the one before.
      const after = await checkCall(s, ref, problem(3), `seed ${seed}, after NaN`);
      expect(after.s).toBe(withNan.s);
      // A first call with a NaN (a fresh instance): no usable amax, s = 1; nothing pushed, so s = 1 next.
      const fresh = await session(quantGraph(op, dtype, shape, { act_scaling: 'delayed_tensor' }));
      const freshRef = new Delayed();
      expect((await checkCall(fresh, freshRef, nan, `seed ${seed}, first NaN`)).s).toBe(1);
      expect((await checkCall(fresh, freshRef, problem(4), `seed ${seed}, after first NaN`)).s).toBe(1);
    });

    if (isResidual(op))
      it('writes the same residual as act_scaling "token"', async () => {
        const seed = randomInt(2 ** 31);
        const shape: Shape = [2, 7, 64];
        const feeds = randomFeeds(op, dtype, shape, seed, 1);
        const delayed = await runAllWithOps(
          ops.library(),
          quantGraph(op, dtype, shape, { act_scaling: 'delayed_tensor' }),
          feeds,
        );
        const token = await runAllWithOps(ops.library(), quantGraph(op, dtype, shape, {}), feeds);
        expect(Array.from(delayed.residual!.data as ArrayLike<number>), `seed ${seed}`).toEqual(
          Array.from(token.residual!.data as ArrayLike<number>),
        );
      });
  });

  it('act_scaling "token" is the default: the same codes and scales as without the attribute', async () => {
    const seed = randomInt(2 ** 31);
    const shape: Shape = [2, 5, 40];
    const feeds = randomFeeds(op, 'float16', shape, seed, 1);
    const plain = await runAllWithOps(ops.library(), quantGraph(op, 'float16', shape, {}), feeds);
    const token = await runAllWithOps(
      ops.library(),
      quantGraph(op, 'float16', shape, { act_scaling: 'token', amax_margin: { float: 3 }, amax_history: 4 }),
      feeds,
    );
    for (const name of ['x8', 'act_scale'])
      expect(Array.from(token[name]!.data as Float32Array), `seed ${seed}: ${name}`).toEqual(
        Array.from(plain[name]!.data as Float32Array),
      );
    // Per token: the rows' scales differ.
    expect(new Set(plain.act_scale!.data as Float32Array).size).toBeGreaterThan(1);
  });

  it.each<[string, Attrs, RegExp]>([
    [
      'an unknown act_scaling',
      { act_scaling: 'tensor' },
      new RegExp(`${op}: act_scaling must be "token" or "delayed_tensor", got "tensor"`),
    ],
    [
      'a margin ≤ 0',
      { act_scaling: 'delayed_tensor', amax_margin: { float: 0 } },
      new RegExp(`${op}: amax_margin must be a finite number > 0, got 0`),
    ],
    [
      'a history of 0',
      { act_scaling: 'delayed_tensor', amax_history: 0 },
      new RegExp(`${op}: amax_history must be 1 to 64, got 0`),
    ],
    [
      'a history over 64',
      { act_scaling: 'delayed_tensor', amax_history: 65 },
      new RegExp(`${op}: amax_history must be 1 to 64, got 65`),
    ],
  ])('refuses %s when the session is made, naming the op and the attribute', async (_, attrs, message) => {
    await expect(session(quantGraph(op, 'float32', [1, 2, 16], attrs))).rejects.toThrow(message);
  });
});
