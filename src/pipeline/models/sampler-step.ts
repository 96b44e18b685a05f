/**
 * One whole denoising step as ONE static-shape graph (issue 9, item 2): CFG batching, the MMDiT,
 * denoised = x − v·σ, the guidance combine and the sampler's update of x, with the step's
 * scalars read from a device tensor `coeffs` at a step counter the graph increments itself. The
 * GPU path replays it from a captured CUDA graph with the latents never leaving the device, so
 * every dim is a number: ONNX Runtime then folds the MMDiT's Shape arithmetic away, which CUDA
 * graph capture needs (shape ops left on the CPU provider make it refuse to capture).
 *
 * Both samplers (samplers.ts) are one linear update x_next = a·x + b·denoised + c·prev_denoised
 * with per-step scalars, which stepCoefficients tabulates on the host once per job.
 *
 * A prompt and a negative prompt of different token counts (a prompt of more than 76 T5 tokens
 * against a short negative prompt, sd35/conditioning.ts) cannot share a batch: the graph then runs
 * the MMDiT twice per step, as cfgDenoiser makes two calls, the two passes sharing one copy of the
 * weights. stepConditioning decides which layout a job gets and lays out its host arrays.
 */
import { createHash } from 'node:crypto';
import type { AttrValue, DataType, GraphBuilder, Value } from '../onnx/graph.js';
import { Net } from '../onnx/nn.js';
import { type Conditioning, stackConditioning, usesUncond } from '../sampling/cfg.js';
import type { SamplerName } from '../types.js';
import { checkLatentSize, type MmditConfig, mmditVelocity } from './mmdit.js';

const f32 = Math.fround;

/** Columns of a `coeffs` row: [σ, a, b, c]. */
export const STEP_COEFFICIENTS = 4;

export interface SamplerStepShape {
  images: number;
  /** Latent height and width (pixels / 8). */
  height: number;
  width: number;
  /**
   * Context tokens of the prompt's conditioning, and of the negative prompt's unless `uncondTokens`
   * says otherwise.
   */
  tokens: number;
  /**
   * Context tokens of the negative prompt's conditioning, read only when `guided`. Absent or equal
   * to `tokens`: one batch [cond; uncond] through the MMDiT. Different: two MMDiT passes per step,
   * the negative prompt's through the inputs `context_uncond` and `y_uncond` (splitsUncond).
   */
  uncondTokens?: number;
  /** Whether the graph runs the unconditional pass and combines with `guidance` (cfg.ts usesUncond). */
  guided: boolean;
  /** Rows of `coeffs`: the most steps one job of this graph may run. */
  maxSteps: number;
}

/** Whether the graph of `shape` runs the negative prompt as a pass of its own (a token count of its own). */
export function splitsUncond(shape: Pick<SamplerStepShape, 'tokens' | 'uncondTokens' | 'guided'>): boolean {
  return shape.guided && shape.uncondTokens !== undefined && shape.uncondTokens !== shape.tokens;
}

/** Dims of the step graph's conditioning inputs, by input name; the `_uncond` ones only when splitsUncond. */
export interface ConditioningDims {
  context: number[];
  y: number[];
  context_uncond?: number[];
  y_uncond?: number[];
}

/**
 * The conditioning inputs of the step graph of `shape` and their dims. One batch (not splitsUncond):
 * `context` [rows, tokens, contextDim] and `y` [rows, admInChannels], rows = images · (guided ? 2 : 1),
 * the prompt's rows first. Split: `context` [images, tokens, contextDim], `y` [images, admInChannels]
 * for the prompt, `context_uncond` [images, uncondTokens, contextDim], `y_uncond` [images,
 * admInChannels] for the negative prompt.
 */
export function conditioningDims(
  cfg: Pick<MmditConfig, 'contextDim' | 'admInChannels'>,
  shape: SamplerStepShape,
): ConditioningDims {
  const { images, tokens, guided } = shape;
  if (splitsUncond(shape)) {
    return {
      context: [images, tokens, cfg.contextDim],
      y: [images, cfg.admInChannels],
      context_uncond: [images, shape.uncondTokens!, cfg.contextDim],
      y_uncond: [images, cfg.admInChannels],
    };
  }
  const rows = guided ? 2 * images : images;
  return { context: [rows, tokens, cfg.contextDim], y: [rows, cfg.admInChannels] };
}

/** A job's conditioning for the step graph: its shape fields and the host arrays of its inputs. */
export interface StepConditioning {
  /**
   * The conditioning fields of the job's SamplerStepShape. `uncondTokens` is set only when it
   * differs from `tokens` (and the job is guided), so jobs that share a batch get today's shape.
   */
  shape: Pick<SamplerStepShape, 'tokens' | 'uncondTokens' | 'guided'>;
  /** Row-major float32 data of each conditioning input, laid out as conditioningDims gives its dims. */
  inputs: { context: Float32Array; y: Float32Array; context_uncond?: Float32Array; y_uncond?: Float32Array };
}

/**
 * The one place that decides between the batched and the split layout: `uncond` is used when
 * `guidance` needs it (cfg.ts usesUncond; a TypeError if it is missing then) and shares the
 * prompt's batch when the token counts agree (cfg.ts stackConditioning), else it goes to
 * `context_uncond` / `y_uncond`, one row per image, as cfgDenoiser's second call lays it out.
 */
export function stepConditioning(
  cond: Conditioning,
  uncond: Conditioning | undefined,
  guidance: number,
  images: number,
): StepConditioning {
  const guided = usesUncond(guidance);
  if (!guided || !uncond) {
    if (guided) throw new TypeError(`Guidance ${guidance} > 1 needs an unconditional conditioning`);
    const stacked = stackConditioning(cond, undefined, images);
    return { shape: { tokens: cond.tokens, guided }, inputs: { context: stacked.context, y: stacked.y } };
  }
  if (uncond.tokens === cond.tokens) {
    const stacked = stackConditioning(cond, uncond, images);
    return { shape: { tokens: cond.tokens, guided }, inputs: { context: stacked.context, y: stacked.y } };
  }
  const c = stackConditioning(cond, undefined, images);
  const u = stackConditioning(uncond, undefined, images);
  if (u.contextWidth !== c.contextWidth || u.yWidth !== c.yWidth)
    throw new RangeError(
      `The negative prompt's conditioning (width ${u.contextWidth}, pooled ${u.yWidth}) does not match ` +
        `the prompt's (width ${c.contextWidth}, pooled ${c.yWidth})`,
    );
  return {
    shape: { tokens: cond.tokens, uncondTokens: uncond.tokens, guided },
    inputs: { context: c.context, y: c.y, context_uncond: u.context, y_uncond: u.y },
  };
}

/**
 * Builds the step graph. Every float input and output is float32 whatever the compute type (the
 * MMDiT casts inside, as Net.floatInput does); σ, the timestep, denoised, CFG and the update are
 * float32 throughout, as cfg.ts and samplers.ts compute them.
 *
 * Inputs: `x` [images, 16, h, w]; `prev_denoised` [images, 16, h, w] (the previous step's
 * `denoised`; zeros at the first step — it is multiplied by c = 0 there, and 0·NaN would not
 * vanish); `step` int64 [1]; `coeffs` float32 [maxSteps, 4] from stepCoefficients; `context` and
 * `y` (and, when splitsUncond, `context_uncond` and `y_uncond`) as conditioningDims gives them,
 * filled by stepConditioning; `guidance` float32 [1] (unused unless guided).
 * Outputs: `x_next`, `denoised` (the CFG-combined estimate) [images, 16, h, w]; `step_next` int64
 * [1] = step + 1. Keep `step` below maxSteps: the CPU's Gather refuses a larger index, and a
 * device kernel need not check it.
 *
 * Split (splitsUncond): the MMDiT runs once over the prompt's rows and once over the negative
 * prompt's, each `images` rows; the second pass takes every weight, constant and computation
 * the first already has (the patch embedding of x, the timestep embedding) from the first, so the
 * model holds each weight once (see sharedPasses).
 */
export function buildSamplerStep(net: Net, cfg: MmditConfig, shape: SamplerStepShape): void {
  checkShape(cfg, shape);
  if (splitsUncond(shape)) {
    buildSplitStep(net, cfg, shape);
    return;
  }
  const { g } = net;
  const { images, height, width, guided, maxSteps } = shape;
  const rows = guided ? 2 * images : images;
  const latent = [images, cfg.inChannels, height, width];
  const dims = conditioningDims(cfg, shape);

  const x = g.input('x', 'float32', latent);
  const prev = g.input('prev_denoised', 'float32', latent);
  const step = g.input('step', 'int64', [1]);
  const coeffs = g.input('coeffs', 'float32', [maxSteps, STEP_COEFFICIENTS]);
  const context = net.floatInput('context', dims.context);
  const y = net.floatInput('y', dims.y);
  const guidance = g.input('guidance', 'float32', [1]);

  const { sigma, a, b, c } = stepScalars(net, coeffs, step);
  // cfg.ts: the same x for the cond and the uncond rows, timestep σ·1000 for every row (float32,
  // as the reference embeds it).
  const xBatch = guided ? net.concat([x, x], 0) : x;
  const timestep = stepTimestep(net, sigma, rows);
  const v = mmditVelocity(net, cfg, toCompute(net, xBatch), timestep, context, y);
  const den = denoisedOf(net, xBatch, v, sigma);
  let denoised = den;
  if (guided) {
    const cond = net.slice(den, 0, 0, images);
    const uncond = net.slice(den, 0, images, rows);
    denoised = combine(net, cond, uncond, guidance);
  }
  finishStep(net, { x, prev, step, a, b, c, denoised, latent });
}

/** buildSamplerStep for splitsUncond: one MMDiT pass for the prompt, one for the negative prompt. */
function buildSplitStep(outer: Net, cfg: MmditConfig, shape: SamplerStepShape): void {
  const passes = sharedPasses(outer.g);
  // Every node goes through the sharing builder, so the second pass finds the first's constants
  // (Net.ints included: one Net for the whole graph, as in the batched build).
  const net = new Net(passes.g, outer.p, outer.options);
  const { g } = net;
  const { images, height, width, maxSteps } = shape;
  const latent = [images, cfg.inChannels, height, width];
  const dims = conditioningDims(cfg, shape);

  const x = g.input('x', 'float32', latent);
  const prev = g.input('prev_denoised', 'float32', latent);
  const step = g.input('step', 'int64', [1]);
  const coeffs = g.input('coeffs', 'float32', [maxSteps, STEP_COEFFICIENTS]);
  const context = net.floatInput('context', dims.context);
  const y = net.floatInput('y', dims.y);
  const contextUncond = net.floatInput('context_uncond', dims.context_uncond!);
  const yUncond = net.floatInput('y_uncond', dims.y_uncond!);
  const guidance = g.input('guidance', 'float32', [1]);

  const { sigma, a, b, c } = stepScalars(net, coeffs, step);
  // cfgDenoiser's two calls: the same x and timestep in both, `images` rows each.
  const timestep = stepTimestep(net, sigma, images);
  const xc = toCompute(net, x);
  const vCond = g.scope('cond', () => mmditVelocity(net, cfg, xc, timestep, context, y));
  passes.replay();
  const vUncond = g.scope('uncond', () => mmditVelocity(net, cfg, xc, timestep, contextUncond, yUncond));
  const denoised = combine(
    net,
    denoisedOf(net, x, vCond, sigma),
    denoisedOf(net, x, vUncond, sigma),
    guidance,
  );
  finishStep(net, { x, prev, step, a, b, c, denoised, latent });
}

/** coeffs[step] → four [1, 1, 1, 1] scalars that broadcast over the latents. */
function stepScalars(net: Net, coeffs: Value, step: Value): Record<'sigma' | 'a' | 'b' | 'c', Value> {
  const row = net.g.op('Gather', [coeffs, step], { axis: 0 });
  const [sigma, a, b, c] = net.chunk(net.reshape(row, [STEP_COEFFICIENTS, 1, 1, 1]), STEP_COEFFICIENTS, 0);
  return { sigma, a, b, c };
}

/** The timestep σ·1000 (float32, as the reference embeds it) for each of `rows` rows. */
function stepTimestep(net: Net, sigma: Value, rows: number): Value {
  const { g } = net;
  const thousand = g.constant('c', 'float32', [], new Float32Array([1000]));
  return g.op('Expand', [net.reshape(g.op('Mul', [sigma, thousand]), [1]), net.ints([rows])]);
}

/** calculate_denoised: x − v·σ in float32. */
function denoisedOf(net: Net, x: Value, v: Value, sigma: Value): Value {
  const v32 = net.compute === 'float32' ? v : net.cast(v, 'float32');
  return net.sub(x, net.mul(v32, sigma));
}

/** cfgCombine: uncond + (cond − uncond)·scale. */
function combine(net: Net, cond: Value, uncond: Value, guidance: Value): Value {
  return net.add(uncond, net.mul(net.sub(cond, uncond), guidance));
}

/** The sampler update and the graph's outputs. */
function finishStep(
  net: Net,
  s: { x: Value; prev: Value; step: Value; a: Value; b: Value; c: Value; denoised: Value; latent: number[] },
): void {
  const { g } = net;
  const xNext = net.add(net.add(net.mul(s.a, s.x), net.mul(s.b, s.denoised)), net.mul(s.c, s.prev));
  g.output(xNext, 'x_next', 'float32', s.latent);
  g.output(s.denoised, 'denoised', 'float32', s.latent);
  g.output(net.add(s.step, net.ints([1])), 'step_next', 'int64', [1]);
}

/** Ops whose outputs are not a function of their inputs: never shared. */
const RANDOM_OPS = /^(Random|Multinomial|Bernoulli|Dropout)/;

/**
 * A GraphBuilder for building a network twice into one graph (the split CFG step) with what the
 * two passes have in common emitted once. While recording (the first pass) it builds as `target`
 * does and remembers every constant (by type, dims and bytes) and every node (by op, inputs and
 * attributes); after `replay()` (the second pass) a constant or node the first pass already has
 * returns the first pass's value instead of a copy. Weights are shared by Params' cache already;
 * this shares what Net and the model emit per call: constants (the timestep frequencies, fp8
 * block scales), the nodes on weights alone (an fp8 weight's DequantizeLinear: one float copy
 * of each weight, whether ONNX Runtime folds it at load or runs it) and the nodes on the inputs both passes read (x's patch embedding, the timestep
 * embedding). A node depends only on its inputs and attributes, so sharing changes no value.
 */
function sharedPasses(target: GraphBuilder): { g: GraphBuilder; replay: () => void } {
  let replaying = false;
  const constants = new Map<string, Value>();
  const nodes = new Map<string, Value[]>();

  const constant = (name: string, dtype: DataType, dims: number[], data: ArrayBufferView): Value => {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const key = `${dtype}|${dims.join(',')}|${createHash('sha256').update(bytes).digest('base64')}`;
    const known = constants.get(key);
    if (replaying && known) return known;
    const value = target.constant(name, dtype, dims, data);
    if (!replaying && !known) constants.set(key, value);
    return value;
  };
  const opMulti = (
    opType: string,
    inputs: (Value | undefined)[],
    outputCount: number,
    attrs: Record<string, AttrValue> = {},
    domain = '',
  ): Value[] => {
    if (RANDOM_OPS.test(opType)) return target.opMulti(opType, inputs, outputCount, attrs, domain);
    const key = JSON.stringify(
      [domain, opType, outputCount, inputs.map((v) => v?.name ?? ''), attrs],
      bytesAsText,
    );
    const known = nodes.get(key);
    if (replaying && known) return known;
    const outputs = target.opMulti(opType, inputs, outputCount, attrs, domain);
    if (!replaying && !known) nodes.set(key, outputs);
    return outputs;
  };
  const overrides: Partial<Record<keyof GraphBuilder, unknown>> = {
    constant,
    opMulti,
    op: (opType: string, inputs: (Value | undefined)[], attrs?: Record<string, AttrValue>, domain?: string) =>
      opMulti(opType, inputs, 1, attrs, domain)[0],
  };
  const g = new Proxy(target, {
    get(t, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as keyof GraphBuilder];
      // GraphBuilder keeps its state in private fields: its methods must run on the builder itself.
      const value = Reflect.get(t, prop, t);
      return typeof value === 'function' ? value.bind(t) : value;
    },
  });
  return {
    g,
    replay: () => {
      replaying = true;
    },
  };
}

/** JSON.stringify replacer: byte arrays (tensor attributes) as text. */
function bytesAsText(_key: string, value: unknown): unknown {
  return ArrayBuffer.isView(value)
    ? Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')
    : value;
}

function toCompute(net: Net, x: Value): Value {
  return net.compute === 'float32' ? x : net.cast(x, net.compute);
}

function checkShape(cfg: MmditConfig, shape: SamplerStepShape): void {
  for (const key of ['images', 'height', 'width', 'tokens', 'maxSteps'] as const) {
    const n = shape[key];
    if (!Number.isSafeInteger(n) || n < 1)
      throw new RangeError(`Expected \`${key}\` of the step graph to be an integer >= 1, got ${n}`);
  }
  if (cfg.inChannels !== cfg.outChannels)
    throw new RangeError(
      `A sampler step needs the model to output what it reads (${cfg.inChannels} vs ${cfg.outChannels} channels)`,
    );
  const { uncondTokens } = shape;
  if (uncondTokens !== undefined && (!Number.isSafeInteger(uncondTokens) || uncondTokens < 1))
    throw new RangeError(
      `Expected \`uncondTokens\` of the step graph to be an integer >= 1, got ${uncondTokens}`,
    );
  checkLatentSize(cfg, shape.height, shape.width);
}

/**
 * The `coeffs` input for a job: row i = [σ_i, a_i, b_i, c_i] so that step i of `sampler` is
 * x_{i+1} = a_i·x_i + b_i·denoised_i + c_i·denoised_{i−1}; rows past the schedule are zeros.
 * `schedule` holds the sigmas including the final 0 (schedule.ts `sigmas`, possibly truncated for
 * img2img), so it runs schedule.length − 1 steps; more than `maxSteps` is a RangeError.
 *
 * The scalars samplers.ts computes (dt, h, ratio, expm1(−h), the 2M weights) are taken exactly as
 * it computes them, rounded to float32 where the reference's float32 tensors round them. Where
 * the graph folds two of samplers.ts's element-wise operations into one coefficient (dt/σ,
 * expm1·weight), the product is formed in float64 and rounded to float32 once: the nearest
 * float32 to the exact coefficient, so the regrouped update stays as close to samplers.ts as one
 * rounding allows (a chain of float32 operations would add a rounding of its own per factor).
 */
export function stepCoefficients(
  sampler: SamplerName,
  schedule: Float32Array,
  maxSteps: number,
): Float32Array {
  if (!Number.isSafeInteger(maxSteps) || maxSteps < 1)
    throw new RangeError(`Expected \`maxSteps\` to be an integer >= 1, got ${maxSteps}`);
  const steps = schedule.length - 1;
  if (steps > maxSteps)
    throw new RangeError(
      `A schedule of ${steps} steps does not fit a step graph of at most ${maxSteps} steps`,
    );
  const out = new Float32Array(maxSteps * STEP_COEFFICIENTS);
  for (let i = 0; i < steps; i++) {
    out.set(ROWS[sampler](schedule, i), i * STEP_COEFFICIENTS);
  }
  return out;
}

/** One row per sampler (a Record, so a new SamplerName without a row does not compile). */
const ROWS: Readonly<Record<SamplerName, (schedule: Float32Array, i: number) => number[]>> = {
  euler: eulerRow,
  dpmpp_2m: dpmpp2mRow,
};

/** sampleEuler: x + ((x − den)/σ)·dt = (1 + dt/σ)·x − (dt/σ)·den. */
function eulerRow(schedule: Float32Array, i: number): number[] {
  const sigma = schedule[i];
  const dt = f32(schedule[i + 1] - sigma);
  const slope = dt / sigma;
  return [sigma, f32(1 + slope), f32(-slope), 0];
}

/** sampleDpmpp2m: ratio·x − expm1(−h)·(newWeight·den − oldWeight·old); first order at the ends. */
function dpmpp2mRow(schedule: Float32Array, i: number): number[] {
  const tOf = (sigma: number) => f32(-f32(Math.log(sigma)));
  const sigmaOf = (t: number) => f32(Math.exp(-t));
  const sigma = schedule[i];
  const t = tOf(sigma);
  const tNext = tOf(schedule[i + 1]);
  const h = f32(tNext - t);
  const ratio = f32(sigmaOf(tNext) / sigmaOf(t));
  const expm1 = f32(Math.expm1(-h));
  // No previous estimate at the first step; at σ_next = 0 the update is x = denoised.
  if (i === 0 || schedule[i + 1] === 0) return [sigma, ratio, -expm1, 0];
  const hLast = f32(t - tOf(schedule[i - 1]));
  const r = f32(hLast / h);
  const oldWeight = f32(1 / f32(2 * r));
  const newWeight = f32(1 + oldWeight);
  return [sigma, ratio, f32(-expm1 * newWeight), f32(expm1 * oldWeight)];
}
