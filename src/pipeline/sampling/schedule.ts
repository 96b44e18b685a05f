/**
 * Flow-matching noise schedule of SD3/SD3.5, ported from the Stability AI reference
 * (Stability-AI/sd3.5 @ fbf8f48, sd3_impls.py `ModelSamplingDiscreteFlow`; sd3_infer.py
 * `get_sigmas`, `do_sampling`). Arithmetic is float32, step for step, as the reference runs it
 * on torch float32 tensors, so the sigmas match the reference's bit for bit.
 *
 * In rectified flow x_σ = σ·noise + (1 − σ)·x₀; the network predicts the velocity v and the
 * denoised estimate is x − v·σ. `shift` bends the schedule toward high noise (3.0 for every
 * public SD3.5 model, sd3_infer.py `SHIFT`).
 */

import { fmaf } from './float32.js';

const f32 = Math.fround;

/** The shift of every released SD3.5 model (sd3_infer.py `SHIFT = 3.0`, CONFIGS). */
export const DEFAULT_SHIFT = 3.0;

/** Number of discrete training timesteps the reference tabulates (`timesteps = 1000`). */
const TRAINING_TIMESTEPS = 1000;

export class ModelSamplingDiscreteFlow {
  readonly shift: number;
  /** σ(t) for t = 1 … 1000, ascending: the reference's `sigmas` buffer. */
  readonly sigmas: Float32Array;

  /** @param shift schedule shift; @default 3.0 (DEFAULT_SHIFT) */
  constructor(shift = DEFAULT_SHIFT) {
    if (!Number.isFinite(shift) || shift <= 0) {
      throw new RangeError(`Expected \`shift\` to be a finite number > 0, got ${shift}`);
    }
    this.shift = shift;
    this.sigmas = new Float32Array(TRAINING_TIMESTEPS);
    for (let t = 1; t <= TRAINING_TIMESTEPS; t++) this.sigmas[t - 1] = this.sigma(t);
  }

  get sigmaMin(): number {
    return this.sigmas[0];
  }

  get sigmaMax(): number {
    return this.sigmas[TRAINING_TIMESTEPS - 1];
  }

  /** The timestep the network is conditioned on: σ·1000. */
  timestep(sigma: number): number {
    return f32(f32(sigma) * 1000);
  }

  /** σ(t) = shift·t' / (1 + (shift − 1)·t') with t' = t/1000. */
  sigma(timestep: number): number {
    const t = f32(f32(timestep) / 1000);
    if (this.shift === 1) return t;
    const numerator = f32(f32(this.shift) * t);
    const denominator = f32(1 + f32(f32(this.shift - 1) * t));
    return f32(numerator / denominator);
  }
}

/**
 * The reference's `get_sigmas`: `steps` sigmas at timesteps evenly spaced (torch.linspace) from
 * timestep(σ_max) down to timestep(σ_min), then a final 0. Returns steps + 1 values.
 */
export function getSigmas(sampling: ModelSamplingDiscreteFlow, steps: number): Float32Array {
  if (!Number.isSafeInteger(steps) || steps < 1) {
    throw new RangeError(`Expected \`steps\` to be an integer >= 1, got ${steps}`);
  }
  const timesteps = linspaceF32(
    sampling.timestep(sampling.sigmaMax),
    sampling.timestep(sampling.sigmaMin),
    steps,
  );
  const out = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) out[i] = sampling.sigma(timesteps[i]);
  out[steps] = 0;
  return out;
}

/** Shorthand: the sigma schedule for `steps` steps at `shift` (steps + 1 values, ending in 0). */
export function sigmas(steps: number, shift = DEFAULT_SHIFT): Float32Array {
  return getSigmas(new ModelSamplingDiscreteFlow(shift), steps);
}

/**
 * img2img: run only the last part of the schedule. The reference drops the first
 * `int(steps · (1 − denoise))` sigmas (sd3_infer.py `do_sampling`), so denoise 1 keeps them all
 * and denoise 0 keeps only the final 0 (the image comes back unchanged).
 */
export function truncateForDenoise(schedule: Float32Array, denoise: number): Float32Array {
  return schedule.slice(schedule.length - 1 - denoisedSteps(schedule.length - 1, denoise));
}

/** How many of `steps` an img2img at `denoise` (strength) runs: the last ones, as the reference cuts. */
export function denoisedSteps(steps: number, denoise: number): number {
  if (!(denoise >= 0 && denoise <= 1)) {
    throw new RangeError(`Expected \`denoise\` to be a number from 0 to 1, got ${denoise}`);
  }
  return steps - Math.trunc(steps * (1 - denoise));
}

/**
 * The starting latent: σ₀·noise + (1 − σ₀)·latent (`noise_scaling`). For txt2img σ₀ = 1 and the
 * start is the noise itself; pass no latent there.
 */
export function noiseScaling(sigma: number, noise: Float32Array, latent?: Float32Array): Float32Array {
  if (latent && latent.length !== noise.length) {
    throw new RangeError(`noise has ${noise.length} values but the latent has ${latent.length}`);
  }
  const s = f32(sigma);
  const keep = f32(1 - s);
  const out = new Float32Array(noise.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = f32(f32(s * noise[i]) + (latent ? f32(keep * latent[i]) : 0));
  }
  return out;
}

/** The denoised estimate from the network's velocity: x − v·σ (`calculate_denoised`). */
export function denoisedFromVelocity(x: Float32Array, velocity: Float32Array, sigma: number): Float32Array {
  const s = f32(sigma);
  const out = new Float32Array(x.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(x[i] - f32(velocity[i] * s));
  return out;
}

/**
 * torch.linspace on the CPU in float32 (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp, torch
 * 2.x): one float step; the first half counts up from `start`, the second half down from `end`, so
 * both ends are exact. `start + step * i` is one fused multiply-add in torch's x86 builds (GCC
 * contracts it, as it does in the noise kernels, see avx-mathfun.ts); without the fusion 1 in 3
 * step counts from 9 on would differ by one float ulp in a sigma. torch 1.x vectorised this loop
 * differently and differs from both by an ulp at some step counts.
 */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const step = f32(f32(end - start) / (steps - 1));
  const halfway = Math.trunc(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? fmaf(step, i, start) : fmaf(-step, steps - i - 1, end);
  }
  return out;
}
