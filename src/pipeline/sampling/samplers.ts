/**
 * The reference's samplers, one function per method with one signature (Stability-AI/sd3.5 @
 * fbf8f48, sd3_impls.py `sample_euler`, `sample_dpmpp_2m`; both from k-diffusion). Arithmetic is
 * float32, operation by operation, as the reference runs it on torch float32 tensors.
 *
 * A `Denoiser` maps (x, σ) to the denoised estimate (for SD3: x − v·σ, with classifier-free
 * guidance applied, see cfg.ts). The signal is checked before every step, so a cancelled job stops
 * between two network evaluations and never in the middle of one.
 */
import { CancelledError } from '../../errors.js';
import type { SamplerName } from '../types.js';

const f32 = Math.fround;

/** The denoised estimate of `x` at noise level `sigma`. Must not modify `x`. */
export type Denoiser = (x: Float32Array, sigma: number) => Promise<Float32Array>;

export interface SamplerOptions {
  /** Checked before every step; an aborted signal rejects with a CancelledError. */
  signal?: AbortSignal;
  /**
   * Called after every step with the step's 0-based index i (so i + 1 of `total` steps are done),
   * the new x and the denoised estimate the step used (the better picture for a preview). Neither
   * array is modified later, so they may be kept. A returned promise is awaited before the next
   * step: a caller that runs the network synchronously can yield to its event loop there, and a
   * rejection (a CancelledError) stops sampling.
   */
  onStep?: (i: number, total: number, x: Float32Array, denoised: Float32Array) => void | Promise<void>;
}

/**
 * Runs the reverse process from `x` at sigmas[0] down the schedule; returns x at the last sigma
 * (the clean latent when the schedule ends in 0). `x` itself is not modified.
 */
export type Sampler = (
  denoise: Denoiser,
  x: Float32Array,
  sigmas: Float32Array | readonly number[],
  options?: SamplerOptions,
) => Promise<Float32Array>;

/** Euler steps of the probability-flow ODE (Karras et al. 2022, Algorithm 2, without churn). */
export const sampleEuler: Sampler = async (denoise, x, sigmas, options = {}) => {
  const schedule = Float32Array.from(sigmas);
  const total = schedule.length - 1;
  let current = x;
  for (let i = 0; i < total; i++) {
    throwIfAborted(options.signal);
    const sigma = schedule[i];
    const denoised = await denoise(current, sigma);
    checkLength(denoised, current);
    const dt = f32(schedule[i + 1] - sigma);
    const next = new Float32Array(current.length);
    for (let k = 0; k < next.length; k++) {
      // d = (x − denoised) / σ, the ODE's derivative (`to_d`); x ← x + d·dt.
      const d = f32(f32(current[k] - denoised[k]) / sigma);
      next[k] = f32(current[k] + f32(d * dt));
    }
    current = next;
    await options.onStep?.(i, total, current, denoised);
  }
  return current === x ? Float32Array.from(x) : current;
};

/**
 * DPM-Solver++(2M) (Lu et al. 2022), multistep second order in t = −log σ. The first step, and a
 * step down to σ = 0, are first order, exactly as the reference: with no previous estimate there
 * is nothing to extrapolate from, and at σ = 0 the update reduces to x = denoised.
 */
export const sampleDpmpp2m: Sampler = async (denoise, x, sigmas, options = {}) => {
  const schedule = Float32Array.from(sigmas);
  const total = schedule.length - 1;
  const tOf = (sigma: number) => f32(-f32(Math.log(sigma)));
  const sigmaOf = (t: number) => f32(Math.exp(-t));
  let current = x;
  let oldDenoised: Float32Array | undefined;
  for (let i = 0; i < total; i++) {
    throwIfAborted(options.signal);
    const denoised = await denoise(current, schedule[i]);
    checkLength(denoised, current);
    const t = tOf(schedule[i]);
    const tNext = tOf(schedule[i + 1]);
    const h = f32(tNext - t);
    const ratio = f32(sigmaOf(tNext) / sigmaOf(t));
    const expm1 = f32(Math.expm1(-h));
    const next = new Float32Array(current.length);
    if (oldDenoised === undefined || schedule[i + 1] === 0) {
      for (let k = 0; k < next.length; k++) {
        next[k] = f32(f32(ratio * current[k]) - f32(expm1 * denoised[k]));
      }
    } else {
      const hLast = f32(t - tOf(schedule[i - 1]));
      const r = f32(hLast / h);
      const oldWeight = f32(1 / f32(2 * r));
      const newWeight = f32(1 + oldWeight);
      for (let k = 0; k < next.length; k++) {
        const extrapolated = f32(f32(newWeight * denoised[k]) - f32(oldWeight * oldDenoised[k]));
        next[k] = f32(f32(ratio * current[k]) - f32(expm1 * extrapolated));
      }
    }
    oldDenoised = denoised;
    current = next;
    await options.onStep?.(i, total, current, denoised);
  }
  return current === x ? Float32Array.from(x) : current;
};

/** The samplers by the names the pipeline contract uses. */
export const SAMPLERS: Readonly<Record<SamplerName, Sampler>> = {
  euler: sampleEuler,
  dpmpp_2m: sampleDpmpp2m,
};

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError('cancelled between denoising steps');
}

function checkLength(denoised: Float32Array, x: Float32Array): void {
  if (denoised.length !== x.length) {
    throw new RangeError(`The denoiser returned ${denoised.length} values for an x of ${x.length}`);
  }
}
