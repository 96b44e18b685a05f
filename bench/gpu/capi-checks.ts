/**
 * The checks capi-check.ts runs, one per process (a native crash then loses one check, not the
 * report). Each builds its graph with the product's own builders (GraphBuilder, Net), runs it
 * through the C-API binding with device tensors bound once, and judges the outputs against float64
 * references of fresh random inputs. `session.disable_cpu_ep_fallback` makes session creation fail
 * if any node would leave the GPU, so a PASS on CUDA means the node really ran there.
 */
import { randomInt } from 'node:crypto';
import { type BuiltModel, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { Net } from '../../src/pipeline/onnx/nn.js';
import { Params, type WeightSource } from '../../src/pipeline/onnx/params.js';
import {
  type Binding,
  CapiSession,
  type CapiSessionOptions,
  type DeviceTensor,
  loadOrtLibrary,
} from '../../src/pipeline/ort/index.js';
import {
  type AttentionDims,
  adalnRelL2,
  attentionError,
  type FloatData,
  type FloatType,
  median,
  normals,
  relL2,
  uniform,
} from './check-math.js';

export interface CheckContext {
  provider: 'cuda' | 'cpu';
  deviceId: number;
  /** The custom-op library (CUDA build on the GPU; the CPU build for a dry run here). */
  ops: string | undefined;
  /** Small shapes, for a dry run on the CPU. */
  small: boolean;
  runs: number;
}

export interface CheckResult {
  status: 'PASS' | 'FAIL' | 'SKIP';
  detail: string;
  [metric: string]: unknown;
}

/** The attention shapes the product runs (tokens = image patches + 333 text tokens; CFG doubles the batch). */
export const MHA_SHAPES = {
  mha: { batch: 2, tokens: 4096 + 333, heads: 38, headDim: 64 }, // Large 1024², CFG
  'mha-large-512': { batch: 2, tokens: 1024 + 333, heads: 38, headDim: 64 },
  'mha-large-1024-b4': { batch: 8, tokens: 4096 + 333, heads: 38, headDim: 64 }, // 4 images, CFG
  'mha-turbo': { batch: 1, tokens: 4096 + 333, heads: 38, headDim: 64 }, // no CFG
  'mha-medium-1024': { batch: 2, tokens: 4096 + 333, heads: 24, headDim: 64 },
  'mha-medium-attn2': { batch: 2, tokens: 4096, heads: 24, headDim: 64 }, // MMDiT-X image-only attention
  'mha-medium-512': { batch: 2, tokens: 1024 + 333, heads: 24, headDim: 64 },
} satisfies Record<string, AttentionDims>;
export type MhaCheck = keyof typeof MHA_SHAPES;
export type CheckName = 'binding' | 'adaln-fp16' | 'adaln-fp32' | 'adaln-graph' | MhaCheck;
export const isMhaCheck = (name: string): name is MhaCheck => name in MHA_SHAPES;

/** SD3.5's adaLN LayerNorm epsilon. */
const EPSILON = 1e-6;
/** fp16 output rounding alone gives ~3e-4; a wrong formula (no +1, no mean) gives O(1). */
const ADALN_TOLERANCE: Record<FloatType, number> = { float16: 1e-3, float32: 1e-5 };
const NO_WEIGHTS: WeightSource = { description: 'no weights', resolve: () => undefined, keys: () => [] };

const rnd = () => uniform(randomInt(2 ** 31));

function net(name: string, compute: FloatType, customOps = false): { g: GraphBuilder; net: Net } {
  const g = new GraphBuilder(name);
  return {
    g,
    net: new Net(g, new Params(g, NO_WEIGHTS, compute), {
      attention: 'mha',
      fp8Linear: 'dequantize',
      customOps,
    }),
  };
}

function sessionOptions(ctx: CheckContext, extra: Partial<CapiSessionOptions> = {}): CapiSessionOptions {
  return {
    provider: ctx.provider,
    deviceId: ctx.deviceId,
    ...extra,
    config: {
      ...(ctx.provider === 'cuda' ? { 'session.disable_cpu_ep_fallback': '1' } : {}),
      ...extra.config,
    },
  };
}

/** Host wall time of `runs` runs after one warm-up (ONNX Runtime waits for the GPU at each end). */
async function timeRuns(binding: Binding, runs: number): Promise<number> {
  await binding.run();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await binding.run();
    times.push(performance.now() - t);
  }
  return median(times);
}

/** A session with its tensors bound once, released together. */
class Bound {
  readonly tensors = new Map<string, DeviceTensor>();
  readonly binding: Binding;

  constructor(
    readonly session: CapiSession,
    type: FloatType,
    shapes: Record<string, readonly number[]>,
    outputs: string[],
  ) {
    this.binding = session.binding();
    for (const [name, dims] of Object.entries(shapes)) {
      const tensor = session.deviceTensor(type, dims);
      this.tensors.set(name, tensor);
      if (outputs.includes(name)) this.binding.bindOutput(name, tensor);
      else this.binding.bindInput(name, tensor);
    }
  }

  write(inputs: Record<string, FloatData>): void {
    for (const [name, data] of Object.entries(inputs)) this.tensors.get(name)!.write(data);
  }

  read(name: string): FloatData {
    return this.tensors.get(name)!.read() as FloatData;
  }

  release(): void {
    this.session.release();
  }
}

// ---- (a) the binding loads the CUDA provider through the V2 options --------------------------

async function binding(ctx: CheckContext): Promise<CheckResult> {
  const library = loadOrtLibrary();
  const g = new GraphBuilder('twice');
  const x = g.input('x', 'float32', [4096]);
  g.output(g.op('Add', [x, x]), 'y', 'float32', [4096]);
  const t0 = performance.now();
  // Graph capture on: the CUDA provider must take the V2 options (a wrong key or a missing provider fails here).
  const cuda = ctx.provider === 'cuda' ? { cuda: { enable_cuda_graph: '1' } } : {};
  const session = await CapiSession.create(g.build(), sessionOptions(ctx, cuda));
  const createMs = performance.now() - t0;
  const bound = new Bound(session, 'float32', { x: [4096], y: [4096] }, ['y']);
  try {
    const data = normals('float32', 4096, rnd()) as Float32Array;
    bound.write({ x: data });
    await bound.binding.run();
    const y = bound.read('y') as Float32Array;
    const exact = data.every((v, i) => y[i] === 2 * v);
    return {
      status: exact ? 'PASS' : 'FAIL',
      detail: `ONNX Runtime ${library.version} (${library.path}), ${ctx.provider} provider${ctx.provider === 'cuda' ? ' via CUDA_V2 options (enable_cuda_graph=1)' : ''}, session in ${createMs.toFixed(0)} ms; y = x + x ${exact ? 'exact' : 'WRONG'}`,
      ort_version: library.version,
      session_create_ms: createMs,
    };
  } finally {
    bound.release();
  }
}

// ---- (b) AdaLNModulate against the stock-op graph, then inside a captured CUDA graph ----------

function adalnDims(ctx: CheckContext): [number, number, number] {
  // SD3.5 Large's image stream: batch 2 (CFG), 4096 tokens at 1024², width 2432.
  return ctx.small ? [2, 64, 320] : [2, 4096, 2432];
}

function adalnModel(type: FloatType, dims: readonly number[], customOps: boolean): BuiltModel {
  const [b, , c] = dims;
  const { g, net: n } = net(customOps ? 'adaln-custom' : 'adaln-stock', type, customOps);
  const x = g.input('x', type, [...dims]);
  const shift = g.input('shift', type, [b, 1, c]);
  const scale = g.input('scale', type, [b, 1, c]);
  g.output(n.modulatedNorm(x, shift, scale, c, EPSILON), 'y', type, [...dims]);
  return g.build();
}

function adalnInputs(type: FloatType, dims: readonly [number, number, number]) {
  const [b, t, c] = dims;
  const r = rnd();
  // Rows with a mean far from 0 and a spread of 1.5: a kernel that skips the mean shows at once.
  return {
    x: normals(type, b * t * c, r, 0.7, 1.5),
    shift: normals(type, b * c, r, 0, 0.5),
    scale: normals(type, b * c, r, 0, 0.5),
  };
}

function needOps(ctx: CheckContext): string {
  if (!ctx.ops) throw new SkipCheck('no custom-op library (run npm run build:native, then bundle.mjs)');
  return ctx.ops;
}

class SkipCheck extends Error {}

async function adaln(ctx: CheckContext, type: FloatType): Promise<CheckResult> {
  const ops = needOps(ctx);
  const dims = adalnDims(ctx);
  const [b, , c] = dims;
  const shapes = { x: dims, shift: [b, 1, c], scale: [b, 1, c], y: dims };
  const custom = new Bound(
    await CapiSession.create(
      adalnModel(type, dims, true),
      sessionOptions(ctx, { customOpsLibraries: [ops] }),
    ),
    type,
    shapes,
    ['y'],
  );
  const stock = new Bound(
    await CapiSession.create(adalnModel(type, dims, false), sessionOptions(ctx)),
    type,
    shapes,
    ['y'],
  );
  try {
    const inputs = adalnInputs(type, dims);
    custom.write(inputs);
    stock.write(inputs);
    const customMs = await timeRuns(custom.binding, ctx.runs);
    const stockMs = await timeRuns(stock.binding, ctx.runs);
    const yCustom = custom.read('y');
    const yStock = stock.read('y');
    const [customErr, stockErr] = adalnRelL2(inputs.x, inputs.shift, inputs.scale, dims, EPSILON, [
      yCustom,
      yStock,
    ]);
    const agreement = relL2(yCustom, yStock);
    const tol = ADALN_TOLERANCE[type];
    const ok = customErr <= tol && agreement <= 2 * tol;
    return {
      status: ok ? 'PASS' : 'FAIL',
      detail:
        `[${dims}] ${type}: rel L2 vs float64 ${customErr.toExponential(2)} (stock ops ${stockErr.toExponential(2)}), ` +
        `vs stock ${agreement.toExponential(2)} (limit ${tol.toExponential(0)}); ${customMs.toFixed(3)} ms vs stock ${stockMs.toFixed(3)} ms`,
      dims,
      rel_l2_custom_vs_f64: customErr,
      rel_l2_stock_vs_f64: stockErr,
      rel_l2_custom_vs_stock: agreement,
      custom_ms: customMs,
      stock_ms: stockMs,
    };
  } finally {
    custom.release();
    stock.release();
  }
}

async function adalnGraph(ctx: CheckContext): Promise<CheckResult> {
  const ops = needOps(ctx);
  const type: FloatType = ctx.provider === 'cuda' ? 'float16' : 'float32';
  // A quarter of Large's tokens: capture does not depend on the size, and the float64 reference of
  // six runs at full size most likely outlasted this check's 40 s (it was killed on the H200, no output).
  const [b, t, c] = adalnDims(ctx);
  const dims: [number, number, number] = [b, Math.max(1, t / 4), c];
  const cuda = ctx.provider === 'cuda' ? { cuda: { enable_cuda_graph: '1' } } : {};
  const bound = new Bound(
    await CapiSession.create(
      adalnModel(type, dims, true),
      sessionOptions(ctx, { ...cuda, customOpsLibraries: [ops] }),
    ),
    type,
    { x: dims, shift: [b, 1, c], scale: [b, 1, c], y: dims },
    ['y'],
  );
  try {
    // ONNX Runtime runs a graph normally a few times before it captures, then replays: 6 runs cover
    // warm-up, capture and at least 3 replays, each with new inputs written into the same memory.
    const errors: number[] = [];
    const moved: number[] = [];
    let previous: FloatData | undefined;
    for (let run = 0; run < 6; run++) {
      const inputs = adalnInputs(type, dims);
      bound.write(inputs);
      await bound.binding.run();
      const y = bound.read('y');
      errors.push(adalnRelL2(inputs.x, inputs.shift, inputs.scale, dims, EPSILON, [y])[0]);
      if (previous) moved.push(relL2(previous, y));
      previous = y;
    }
    const replayMs = await timeRuns(bound.binding, ctx.runs);
    const tol = ADALN_TOLERANCE[type];
    const follows = moved.every((m) => m > 0.1);
    const ok = errors.every((e) => e <= tol) && follows;
    return {
      status: ok ? 'PASS' : 'FAIL',
      detail:
        `${ctx.provider === 'cuda' ? 'enable_cuda_graph=1' : 'CPU (no graph)'}, 6 runs with new inputs written in place: ` +
        `rel L2 ${errors.map((e) => e.toExponential(1)).join(' ')}; outputs ${follows ? 'follow' : 'DO NOT follow'} the inputs; ` +
        `${replayMs.toFixed(3)} ms per replay`,
      type,
      rel_l2_per_run: errors,
      change_between_runs: moved,
      replay_ms: replayMs,
    };
  } finally {
    bound.release();
  }
}

// ---- (c) MultiHeadAttention at the SD3.5 Large shape, as Net.attention builds it ---------------

async function mha(ctx: CheckContext, shape: MhaCheck): Promise<CheckResult> {
  // The CPU provider has no float16 MultiHeadAttention: a dry run here uses float32.
  const type: FloatType = ctx.provider === 'cuda' ? 'float16' : 'float32';
  const d: AttentionDims = ctx.small ? { batch: 2, tokens: 256, heads: 4, headDim: 64 } : MHA_SHAPES[shape];
  const dims = [d.batch, d.tokens, d.heads * d.headDim];
  const { g, net: n } = net('mha', type);
  const [q, k, v] = ['q', 'k', 'v'].map((name) => g.input(name, type, dims));
  g.output(n.attention(q, k, v, d.heads, d.headDim), 'out', type, dims);
  const bound = new Bound(
    await CapiSession.create(g.build(), sessionOptions(ctx)),
    type,
    { q: dims, k: dims, v: dims, out: dims },
    ['out'],
  );
  try {
    const r = rnd();
    const size = dims.reduce((a, b) => a * b, 1);
    const inputs = { q: normals(type, size, r), k: normals(type, size, r), v: normals(type, size, r) };
    bound.write(inputs);
    const ms = await timeRuns(bound.binding, ctx.runs);
    const out = bound.read('out');
    const pick = uniform(randomInt(2 ** 31));
    const samples = Array.from({ length: 16 }, () => ({
      b: Math.floor(pick() * d.batch),
      t: Math.floor(pick() * d.tokens),
      h: Math.floor(pick() * d.heads),
    }));
    const error = attentionError(inputs.q, inputs.k, inputs.v, out, d, samples);
    const tflops = (4 * d.batch * d.heads * d.tokens ** 2 * d.headDim) / (ms * 1e-3) / 1e12;
    const ok = error <= 5e-3;
    return {
      status: ok ? 'PASS' : 'FAIL',
      detail: `[${dims}] ${type}, ${d.heads}×${d.headDim}: ${ms.toFixed(3)} ms median of ${ctx.runs} (${tflops.toFixed(0)} TFLOP/s), max error ${error.toExponential(2)} of the largest value on 16 rows`,
      dims,
      median_ms: ms,
      tflops,
      max_rel_error: error,
    };
  } finally {
    bound.release();
  }
}

export async function runCheck(name: CheckName, ctx: CheckContext): Promise<CheckResult> {
  try {
    switch (name) {
      case 'binding':
        return await binding(ctx);
      case 'adaln-fp16':
        return await adaln(ctx, 'float16');
      case 'adaln-fp32':
        return await adaln(ctx, 'float32');
      case 'adaln-graph':
        return await adalnGraph(ctx);
      default:
        return await mha(ctx, name);
    }
  } catch (error) {
    if (error instanceof SkipCheck) return { status: 'SKIP', detail: error.message };
    return { status: 'FAIL', detail: String((error as Error).message ?? error).split('\n')[0] };
  }
}
