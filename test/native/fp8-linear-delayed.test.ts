/**
 * atelier:Fp8Linear's `output: "e4m3_delayed"` on the CPU kernel (native/src/fp8_linear.h): the node
 * writes e4m3 codes y8 and one per-tensor scale per row (y_scale) instead of float16 y, the scale
 * delayed as Transformer Engine does it (the amax of the last `amax_history` calls × `amax_margin`;
 * the first call its own amax). Judged against a float64 reference of the same math written here,
 * over several calls of one session (one kernel instance keeps the history).
 */
import { randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ATELIER_DOMAIN,
  type BuiltModel,
  GraphBuilder,
  ONNX_DTYPE,
  type Value,
} from '../../src/pipeline/onnx/graph.js';
import type { CapiSession, HostTensor } from '../../src/pipeline/ort/index.js';
import { e4m3ToFloat, floatToE4M3, floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { cpuOpsSessions, normals, runWithOps } from './run-graphs.js';

const K = 64;
const N = 32;
const LEAD = [2, 5];
const ROWS = LEAD[0]! * LEAD[1]!;

interface Layer {
  w8: Uint8Array;
  wScale: Float32Array;
  bias: Uint16Array;
}

function randomLayer(seed: number): Layer {
  const normal = normals(seed);
  return {
    w8: Uint8Array.from({ length: N * K }, () => floatToE4M3(normal(0, 120))),
    wScale: Float32Array.from({ length: N }, () => Math.abs(normal(0.02, 0.01)) / 448 + 1e-6),
    bias: Uint16Array.from({ length: N }, () => floatToHalf(normal(0, 0.5))),
  };
}

/** float16 x [ROWS, K] of about `size` per element. */
function randomX(seed: number, size: number): Uint16Array {
  const normal = normals(seed);
  return Uint16Array.from({ length: ROWS * K }, () => floatToHalf(normal(0, size)));
}

type Attrs = Record<string, string | number | { float: number }>;

/** The layer's weight, scales and bias as graph constants (Fp8Linear's inputs after x). */
function layerConstants(g: GraphBuilder, layer: Layer, name = 'weight'): Value[] {
  return [
    g.constant(name, 'float8e4m3fn', [N, K], layer.w8),
    g.constant(`${name}_scale`, 'float32', [N], layer.wScale),
    g.constant(`${name}_bias`, 'float16', [N], layer.bias),
  ];
}

function graph(layer: Layer, attrs: Attrs, gelu = true): BuiltModel {
  const g = new GraphBuilder('fp8_linear_delayed');
  const x = g.input('x', 'float16', [...LEAD, K]);
  const inputs = [x, ...layerConstants(g, layer)];
  const all = { ...(gelu ? { activation: 'gelu_tanh' } : {}), ...attrs };
  if (attrs.output === 'e4m3_delayed') {
    // Outputs y8 and y_scale; the op's first output, float16 y, left out.
    const [y8, yScale] = g.opMulti('Fp8Linear', inputs, 3, all, ATELIER_DOMAIN, [0]);
    // The binding reads no float8 tensors: the codes leave the graph as the float32 values they are.
    g.output(g.op('Cast', [y8!], { to: ONNX_DTYPE.float32 }), 'y8', 'float32', [...LEAD, N]);
    g.output(yScale!, 'y_scale', 'float32', LEAD);
  } else {
    g.output(g.op('Fp8Linear', inputs, all, ATELIER_DOMAIN), 'y', 'float16', [...LEAD, N]);
  }
  return g.build();
}

const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** float64 v (before any output rounding) of the W8A8 math, and the size of each sum. */
function reference(layer: Layer, x: Uint16Array, gelu = true): { v: Float64Array; magnitude: Float64Array } {
  const w = Float64Array.from(layer.w8, e4m3ToFloat);
  const v = new Float64Array(ROWS * N);
  const magnitude = new Float64Array(ROWS * N);
  for (let r = 0; r < ROWS; r++) {
    const row = Float64Array.from(x.subarray(r * K, (r + 1) * K), halfToFloat);
    const amax = row.reduce((m, a) => Math.max(m, Math.abs(a)), 0);
    const actScale = Math.fround(amax / 448);
    const inv = amax > 0 ? Math.fround(448 / amax) : 0;
    const x8 = row.map((a) => e4m3ToFloat(floatToE4M3(Math.fround(a * inv))));
    for (let n = 0; n < N; n++) {
      let acc = 0;
      let abs = 0;
      for (let k = 0; k < K; k++) {
        acc += x8[k]! * w[n * K + k]!;
        abs += Math.abs(x8[k]! * w[n * K + k]!);
      }
      const pre = acc * actScale * layer.wScale[n]! + halfToFloat(layer.bias[n]!);
      v[r * N + n] = gelu ? geluTanh(pre) : pre;
      magnitude[r * N + n] = abs * actScale * layer.wScale[n]! + Math.abs(pre);
    }
  }
  return { v, magnitude };
}

const amaxOf = (v: Float64Array) => v.reduce((m, a) => Math.max(m, Math.abs(a)), 0);

/** The spacing of e4m3 values around |u| (subnormal spacing 2⁻⁹ below 2⁻⁶). */
const e4m3Step = (u: number) => 2 ** (Math.max(Math.floor(Math.log2(Math.abs(u) || 2 ** -9)), -6) - 3);

/**
 * Checks one call's codes against the reference v and the scale the math says (`s`, float64): each
 * code is v/s rounded to e4m3 (saturated at ±448), within half a step plus the float32 error of v.
 * Returns how many codes saturated.
 */
function checkCodes(
  y8: Float32Array,
  yScale: Float32Array,
  ref: ReturnType<typeof reference>,
  s: number,
): number {
  expect(
    yScale.every((a) => a === yScale[0]),
    'one scale for the whole tensor',
  ).toBe(true);
  expect(Math.abs(yScale[0]! - s) / s).toBeLessThan(1e-6);
  const d = 1 / yScale[0]!;
  let saturated = 0;
  for (let i = 0; i < y8.length; i++) {
    const u = ref.v[i]! * d;
    const code = y8[i]!;
    if (Math.abs(u) > 448 + 16) {
      expect(code, `element ${i}: ${u} saturates`).toBe(Math.sign(u) * 448);
      saturated++;
      continue;
    }
    const slack = 2 ** -20 * ref.magnitude[i]! * d + 1e-9;
    const want = Math.max(-448, Math.min(448, u));
    expect(Math.abs(code - want), `element ${i}: code ${code} for ${u}`).toBeLessThanOrEqual(
      e4m3Step(u) / 2 + slack,
    );
    // (The first call's amax lands on 448 itself, give or take float32 rounding: not a clip.)
    if (Math.abs(code) === 448 && Math.abs(u) > 448 * 1.001) saturated++;
  }
  return saturated;
}

const ops = cpuOpsSessions();
const session = ops.session;

async function call(s: CapiSession, x: Uint16Array): Promise<{ y8: Float32Array; yScale: Float32Array }> {
  const out = await s.run({ x: { type: 'float16', dims: [...LEAD, K], data: x } satisfies HostTensor });
  expect(out.y8!.dims).toEqual([...LEAD, N]);
  expect(out.y_scale!.dims).toEqual(LEAD);
  return { y8: out.y8!.data as Float32Array, yScale: out.y_scale!.data as Float32Array };
}

describe('atelier:Fp8Linear output "e4m3_delayed", CPU kernel', () => {
  it('scales the first call by its own amax, later calls by margin × the largest amax of the history', async () => {
    const seed = randomInt(2 ** 31);
    const layer = randomLayer(seed);
    const s = await session(graph(layer, { output: 'e4m3_delayed' }));
    // Calls whose outputs differ in size: 1, 0.5, 0.8, 0.6 × the first's x.
    const sizes = [1, 0.5, 0.8, 0.6];
    const amaxes: number[] = [];
    for (const [i, size] of sizes.entries()) {
      const x = randomX(seed + 1 + i, size);
      const ref = reference(layer, x);
      const expected = i === 0 ? amaxOf(ref.v) / 448 : (2 * Math.max(...amaxes)) / 448;
      const { y8, yScale } = await call(s, x);
      // Margin 2 and smaller later outputs: nothing saturates.
      expect(checkCodes(y8, yScale, ref, expected), `seed ${seed}, call ${i}`).toBe(0);
      amaxes.push(amaxOf(ref.v));
    }
  });

  it('saturates a later call whose amax outgrew margin × history, and forgets amaxes older than amax_history calls', async () => {
    const seed = randomInt(2 ** 31);
    const layer = randomLayer(seed);
    layer.bias.fill(0); // outputs in proportion to x, so the sizes below set the amaxes
    const history = 3;
    const s = await session(
      graph(layer, { output: 'e4m3_delayed', amax_history: history, amax_margin: { float: 1.5 } }, false),
    );
    // Call 1 sets a small amax; call 2's outputs are ~6× larger: beyond 1.5 × history, so they clip.
    // Then small calls: call 2's amax rules the scale until it leaves the 3-call window.
    const sizes = [0.1, 0.6, 0.1, 0.1, 0.1, 0.1];
    const amaxes: number[] = [];
    for (const [i, size] of sizes.entries()) {
      const x = randomX(seed + 1 + i, size);
      const ref = reference(layer, x, false);
      const window = amaxes.slice(-history);
      const expected = i === 0 ? amaxOf(ref.v) / 448 : (1.5 * Math.max(...window)) / 448;
      const { y8, yScale } = await call(s, x);
      const saturated = checkCodes(y8, yScale, ref, expected);
      if (i === 1) expect(saturated, `seed ${seed}: call 2 clips`).toBeGreaterThan(0);
      amaxes.push(amaxOf(ref.v));
    }
    // The window moved: the last call's scale came from calls 3–5 only, not call 2's large amax.
    expect(Math.max(...amaxes.slice(2, 5))).toBeLessThan(amaxes[1]!);
  });

  it('writes zeros with scale 1 for an all-zero output, and keeps going', async () => {
    const layer = randomLayer(7);
    layer.bias.fill(0);
    const s = await session(graph(layer, { output: 'e4m3_delayed' }, false));
    const zero = await call(s, new Uint16Array(ROWS * K));
    expect(zero.y8.every((v) => v === 0)).toBe(true);
    expect(zero.yScale.every((a) => a === 1)).toBe(true);
    // The history holds 0: the next call has no amax to scale by, so s = 1 (codes up to ±448 kept).
    const x = randomX(8, 1e-3);
    const next = await call(s, x);
    checkCodes(next.y8, next.yScale, reference(layer, x, false), 1);
  });

  it('leaves output "float16" as it was: the same bits as without the attribute', async () => {
    const seed = randomInt(2 ** 31);
    const layer = randomLayer(seed);
    const x = randomX(seed + 1, 1);
    const feeds = { x: { type: 'float16', dims: [...LEAD, K], data: x } satisfies HostTensor };
    const plain = await runWithOps(ops.library(), graph(layer, {}), feeds);
    const explicit = await runWithOps(ops.library(), graph(layer, { output: 'float16' }), feeds);
    expect(explicit.data).toEqual(plain.data);
  });

  it('refuses an unknown output, a margin ≤ 0 and a history outside 1–64 when the session is made', async () => {
    const layer = randomLayer(1);
    await expect(session(graph(layer, { output: 'e5m2' }))).rejects.toThrow(
      /Fp8Linear: output must be "float16" or "e4m3_delayed", got "e5m2"/,
    );
    await expect(
      session(graph(layer, { output: 'e4m3_delayed', amax_margin: { float: 0 } })),
    ).rejects.toThrow(/amax_margin must be a finite number > 0/);
    await expect(session(graph(layer, { output: 'e4m3_delayed', amax_history: 0 }))).rejects.toThrow(
      /amax_history must be 1 to 64, got 0/,
    );
  });
});

describe('Fp8Linear (e4m3_delayed) → Fp8LinearQ, the MLP hand-off', () => {
  it('fc2 on the handed-off codes is within the quantization error of fc2 on float16 fc1', async () => {
    const seed = randomInt(2 ** 31);
    const fc1 = randomLayer(seed);
    const normal = normals(seed + 99);
    const fc2 = {
      w8: Uint8Array.from({ length: N * N }, () => floatToE4M3(normal(0, 120))),
      wScale: Float32Array.from({ length: N }, () => Math.abs(normal(0.02, 0.01)) / 448 + 1e-6),
    };
    const build = (handoff: boolean) => {
      const g = new GraphBuilder('mlp');
      const x = g.input('x', 'float16', [...LEAD, K]);
      const w1 = layerConstants(g, fc1, 'w1');
      const w2 = [
        g.constant('w2', 'float8e4m3fn', [N, N], fc2.w8),
        g.constant('s2', 'float32', [N], fc2.wScale),
      ];
      const attrs = { activation: 'gelu_tanh' };
      const y = handoff
        ? g.op(
            'Fp8LinearQ',
            [
              ...g.opMulti(
                'Fp8Linear',
                [x, ...w1],
                3,
                { ...attrs, output: 'e4m3_delayed' },
                ATELIER_DOMAIN,
                [0],
              ),
              ...w2,
            ],
            {},
            ATELIER_DOMAIN,
          )
        : g.op(
            'Fp8Linear',
            [g.op('Fp8Linear', [x, ...w1], attrs, ATELIER_DOMAIN), ...w2],
            {},
            ATELIER_DOMAIN,
          );
      g.output(y, 'y', 'float16', [...LEAD, N]);
      return g.build();
    };
    const feeds = {
      x: { type: 'float16', dims: [...LEAD, K], data: randomX(seed + 1, 1) } satisfies HostTensor,
    };
    const a = Float64Array.from(
      (await runWithOps(ops.library(), build(true), feeds)).data as Uint16Array,
      halfToFloat,
    );
    const b = Float64Array.from(
      (await runWithOps(ops.library(), build(false), feeds)).data as Uint16Array,
      halfToFloat,
    );
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i]! - b[i]!) ** 2;
      den += b[i]! ** 2;
    }
    // Two e4m3 roundings of h (per tensor vs per token) differ by about one e4m3 step (2⁻⁴ relative) each.
    expect(Math.sqrt(num / den), `seed ${seed}`).toBeLessThan(0.1);
  });
});

describe('Fp8LinearQ scaling "tensor" (the per-tensor MLP: cuBLASLt scalar scales on the GPU)', () => {
  /** fc1 (e4m3_delayed) → fc2 as Fp8LinearQ with `fc2Attrs`, fc2's weight scale per channel as given. */
  const mlp = (fc2Scale: Float32Array, fc2Attrs: Attrs): BuiltModel => {
    const g = new GraphBuilder('mlp_tensor');
    const x = g.input('x', 'float16', [...LEAD, K]);
    const fc1 = randomLayer(7);
    const normal = normals(8);
    const [y8, yScale] = g.opMulti(
      'Fp8Linear',
      [x, ...layerConstants(g, fc1, 'w1')],
      3,
      { activation: 'gelu_tanh', output: 'e4m3_delayed' },
      ATELIER_DOMAIN,
      [0],
    );
    const w2 = g.constant(
      'w2',
      'float8e4m3fn',
      [N, N],
      Uint8Array.from({ length: N * N }, () => floatToE4M3(normal(0, 120))),
    );
    const s2 = g.constant('s2', 'float32', [N], fc2Scale);
    g.output(g.op('Fp8LinearQ', [y8!, yScale!, w2, s2], fc2Attrs, ATELIER_DOMAIN), 'y', 'float16', [
      ...LEAD,
      N,
    ]);
    return g.build();
  };
  const feeds = () => ({
    x: { type: 'float16', dims: [...LEAD, K], data: randomX(3, 1) } satisfies HostTensor,
  });

  it('computes what outer-vector scaling computes from the same uniform scales, bit for bit', async () => {
    const uniform = new Float32Array(N).fill(0.013 / 448);
    const tensor = (await runWithOps(ops.library(), mlp(uniform, { scaling: 'tensor' }), feeds()))
      .data as Uint16Array;
    const outer = (await runWithOps(ops.library(), mlp(uniform, {}), feeds())).data as Uint16Array;
    expect(tensor.some((v) => (v & 0x7fff) !== 0)).toBe(true);
    expect(tensor.findIndex((v, i) => v !== outer[i])).toBe(-1);
  });

  it('refuses weight scales that differ per channel, and per-token activation scales, naming what it needs', async () => {
    const perChannel = Float32Array.from({ length: N }, (_, i) => (0.01 + i * 1e-4) / 448);
    await expect(runWithOps(ops.library(), mlp(perChannel, { scaling: 'tensor' }), feeds())).rejects.toThrow(
      /Fp8LinearQ: scaling "tensor" needs one weight scale for the whole tensor/,
    );
    // Codes quantized per token (Fp8Linear's own input quantization, via AdaLNModulateQuant's form).
    const g = new GraphBuilder('per_token');
    const x = g.input('x', 'float16', [...LEAD, K]);
    const zeros = g.constant('zeros', 'float16', [LEAD[0]!, 1, K], new Uint16Array(LEAD[0]! * K));
    const [x8, actScale] = g.opMulti('AdaLNModulateQuant', [x, zeros, zeros], 2, {}, ATELIER_DOMAIN);
    const fc = randomLayer(9);
    const w = [
      g.constant('w', 'float8e4m3fn', [N, K], fc.w8),
      g.constant('s', 'float32', [N], new Float32Array(N).fill(0.01 / 448)),
    ];
    g.output(
      g.op('Fp8LinearQ', [x8!, actScale!, ...w], { scaling: 'tensor' }, ATELIER_DOMAIN),
      'y',
      'float16',
      [...LEAD, N],
    );
    await expect(runWithOps(ops.library(), g.build(), feeds())).rejects.toThrow(
      /Fp8LinearQ: scaling "tensor" needs activations quantized per tensor \(every act_scale equal\)/,
    );
  });

  it('is Fp8LinearQ-only: Fp8Linear quantizes per token itself and refuses it', async () => {
    await expect(session(graph(randomLayer(1), { scaling: 'tensor' }))).rejects.toThrow(
      /Fp8Linear: scaling must be "outer_vector" or "fp32_output", got "tensor"/,
    );
  });
});
