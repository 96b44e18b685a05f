/**
 * Classifier-free guidance as the reference runs it (Stability-AI/sd3.5 sd3_impls.py
 * `CFGDenoiser`, `BaseModel.apply_model`): the conditional and unconditional passes go through the
 * network as ONE batch [cond, uncond], the velocity becomes a denoised estimate (x − v·σ) and the
 * two are combined as uncond + (cond − uncond)·scale.
 *
 * Guidance ≤ 1 runs the conditional pass alone (as diffusers does, and as Turbo models expect:
 * their model card uses guidance 0). At exactly 1 that equals the reference's batched result up to
 * float rounding, since uncond + (cond − uncond)·1 = cond.
 */
import type { Denoiser } from './samplers.js';
import { denoisedFromVelocity, ModelSamplingDiscreteFlow } from './schedule.js';

const f32 = Math.fround;

/** One prompt's conditioning: the MMDiT's `context` (tokens × width) and pooled vector `y`. */
export interface Conditioning {
  /** Row-major [tokens, contextWidth]. */
  context: Float32Array;
  /** Number of context tokens (154 for SD3.5: 77 CLIP + 77 or more T5). */
  tokens: number;
  /** Pooled text embedding [pooledWidth] (CLIP-L pooled ‖ CLIP-G pooled). */
  y: Float32Array;
}

/** One network call: every array row-major with the batch first. */
export interface DiffusionModelInput {
  /** [batch, channels, height, width] latents. */
  x: Float32Array;
  xDims: readonly [number, number, number, number];
  /** [batch] timesteps, σ·1000. */
  timestep: Float32Array;
  /** [batch, tokens, contextWidth]. */
  context: Float32Array;
  contextDims: readonly [number, number, number];
  /** [batch, pooledWidth]. */
  y: Float32Array;
  yDims: readonly [number, number];
}

/** The network (MMDiT): returns the velocity, laid out like `x`. */
export type DiffusionModel = (input: DiffusionModelInput) => Promise<Float32Array>;

export interface CfgDenoiserOptions {
  model: DiffusionModel;
  /** Shape of the x the sampler works on: [images, channels, height, width]. */
  latentDims: readonly [number, number, number, number];
  /** Conditioning of the prompt; used for every image of the batch. */
  cond: Conditioning;
  /** Conditioning of the negative (or empty) prompt; needed when `scale` > 1. */
  uncond?: Conditioning;
  /** Guidance scale; ≤ 1 skips the unconditional pass. */
  scale: number;
  /** Maps σ to the network's timestep; @default new ModelSamplingDiscreteFlow() (σ·1000) */
  sampling?: ModelSamplingDiscreteFlow;
}

/** uncond + (cond − uncond)·scale, element-wise in float32. */
export function cfgCombine(cond: Float32Array, uncond: Float32Array, scale: number): Float32Array {
  if (cond.length !== uncond.length) {
    throw new RangeError(`cond has ${cond.length} values but uncond has ${uncond.length}`);
  }
  const s = f32(scale);
  const out = new Float32Array(cond.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(uncond[i] + f32(f32(cond[i] - uncond[i]) * s));
  return out;
}

/** Whether guidance `scale` needs the unconditional pass at all. */
export function usesUncond(scale: number): boolean {
  return scale > 1;
}

/**
 * A sampler `Denoiser` over `model` with classifier-free guidance, batching as the reference. A
 * prompt and negative prompt whose T5 token counts differ (a prompt longer than 76 T5 tokens
 * against a short negative) cannot share a batch, so they go through the network in two calls;
 * each sample is computed independently either way.
 */
export function cfgDenoiser(options: CfgDenoiserOptions): Denoiser {
  const { model, latentDims, cond, uncond, scale } = options;
  const sampling = options.sampling ?? new ModelSamplingDiscreteFlow();
  const [images, channels, height, width] = latentDims;
  const perImage = channels * height * width;
  const guided = usesUncond(scale);
  if (guided && !uncond) throw new TypeError(`Guidance ${scale} > 1 needs an unconditional conditioning`);
  const prompts = guided && uncond ? [cond, uncond] : [cond];
  const groups = sameShape(prompts) ? [stack(prompts, images)] : prompts.map((p) => stack([p], images));

  const run = async (group: StackedConditioning, x: Float32Array, sigma: number): Promise<Float32Array> => {
    const batch = group.rows;
    const xBatch = new Float32Array(batch * perImage);
    for (let at = 0; at < xBatch.length; at += x.length) xBatch.set(x, at);
    const velocity = await model({
      x: xBatch,
      xDims: [batch, channels, height, width],
      timestep: new Float32Array(batch).fill(sampling.timestep(sigma)),
      context: group.context,
      contextDims: [batch, group.tokens, group.contextWidth],
      y: group.y,
      yDims: [batch, group.yWidth],
    });
    if (velocity.length !== xBatch.length) {
      throw new RangeError(`The model returned ${velocity.length} values for an input of ${xBatch.length}`);
    }
    return denoisedFromVelocity(xBatch, velocity, sigma);
  };

  return async (x, sigma) => {
    if (x.length !== images * perImage) {
      throw new RangeError(`Expected x of [${latentDims}] (${images * perImage} values), got ${x.length}`);
    }
    const outputs: Float32Array[] = [];
    for (const group of groups) outputs.push(await run(group, x, sigma));
    const denoised = outputs.length === 1 ? outputs[0] : concat(outputs);
    if (!guided) return denoised;
    return cfgCombine(denoised.subarray(0, x.length), denoised.subarray(x.length), scale);
  };
}

/** Conditioning of one batched network call, row-major with the batch (`rows`) first. */
export interface StackedConditioning {
  rows: number;
  /** [rows, tokens, contextWidth]. */
  context: Float32Array;
  tokens: number;
  contextWidth: number;
  /** [rows, yWidth]. */
  y: Float32Array;
  yWidth: number;
}

/**
 * The `context` and `y` of ONE batch exactly as cfgDenoiser lays them out: the prompt's rows
 * (one per image) first, then the negative prompt's when `uncond` is given, so rows =
 * images · (uncond ? 2 : 1). Pass `uncond` only when the guidance uses it (`usesUncond`). Throws a
 * RangeError when the two differ in token count: they cannot share a batch (cfgDenoiser then makes
 * two calls; a single-batch graph cannot).
 */
export function stackConditioning(
  cond: Conditioning,
  uncond: Conditioning | undefined,
  images: number,
): StackedConditioning {
  if (!Number.isSafeInteger(images) || images < 1)
    throw new RangeError(`Expected \`images\` to be an integer >= 1, got ${images}`);
  const prompts = uncond ? [cond, uncond] : [cond];
  if (!sameShape(prompts)) {
    throw new RangeError(
      `The prompt (${cond.tokens} tokens) and negative prompt (${uncond?.tokens} tokens) cannot share one batch`,
    );
  }
  return stack(prompts, images);
}

function sameShape(prompts: Conditioning[]): boolean {
  return prompts.every(
    (p) => p.tokens === prompts[0].tokens && p.context.length === prompts[0].context.length,
  );
}

/** Each prompt's conditioning repeated for every image, prompts one after the other on the batch axis. */
function stack(prompts: Conditioning[], images: number): StackedConditioning {
  const { tokens, context: firstContext, y: firstY } = prompts[0];
  const contextWidth = firstContext.length / tokens;
  const yWidth = firstY.length;
  for (const p of prompts) {
    if (!Number.isInteger(p.context.length / p.tokens) || p.context.length / p.tokens !== contextWidth) {
      throw new RangeError(
        `A context of ${p.context.length} values is not ${p.tokens} tokens of width ${contextWidth}`,
      );
    }
    if (p.y.length !== yWidth)
      throw new RangeError(`Pooled vectors differ in width (${p.y.length} vs ${yWidth})`);
  }
  const rows = prompts.length * images;
  const context = new Float32Array(rows * firstContext.length);
  const y = new Float32Array(rows * yWidth);
  let row = 0;
  for (const p of prompts) {
    for (let i = 0; i < images; i++, row++) {
      context.set(p.context, row * firstContext.length);
      y.set(p.y, row * yWidth);
    }
  }
  return { rows, context, tokens, contextWidth, y, yWidth };
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
