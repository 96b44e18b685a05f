/**
 * Queue wait estimates. Jobs differ in work (1 vs 4 images, 4 vs 40 steps, upscales at 4× the
 * pixels), so the moving average is kept per unit of work: one denoising step of one
 * one-megapixel image. A job's estimate is its units × the recent average ms per unit.
 */
import type { JobSpec } from '../jobs/types.js';

const MEGAPIXEL = 1024 * 1024;
/** Upscales run img2img on the image enlarged 2× per side (see src/jobs/executor.ts). */
const UPSCALE_AREA_FACTOR = 4;

/** Estimated work of a job in units (denoising steps × images × megapixels). */
export function jobUnits(spec: JobSpec): number {
  const { params, kind } = spec;
  const img2img = kind === 'variation' || kind === 'upscale';
  // img2img starts at a partial sigma, so it runs only the last `strength` of the steps.
  const steps = img2img ? Math.max(1, Math.ceil(params.steps * (params.strength ?? 1))) : params.steps;
  const images = kind === 'upscale' ? 1 : params.count;
  const area = (params.width * params.height * (kind === 'upscale' ? UPSCALE_AREA_FACTOR : 1)) / MEGAPIXEL;
  return Math.max(1e-6, steps * images * area);
}

/** Moving average of ms per unit over the last `window` finished jobs. */
export class DurationEstimator {
  readonly #window: number;
  readonly #initialMsPerUnit: number;
  readonly #samples: number[] = [];
  #sum = 0;

  constructor(window: number, initialMsPerUnit: number) {
    this.#window = window;
    this.#initialMsPerUnit = initialMsPerUnit;
  }

  get msPerUnit(): number {
    return this.#samples.length === 0 ? this.#initialMsPerUnit : this.#sum / this.#samples.length;
  }

  /** Estimated run time of `units` of work. */
  estimate(units: number): number {
    return units * this.msPerUnit;
  }

  /** Records a finished job's run time. */
  record(units: number, ms: number): void {
    if (!(units > 0) || !(ms >= 0)) return;
    const sample = ms / units;
    this.#samples.push(sample);
    this.#sum += sample;
    if (this.#samples.length > this.#window) this.#sum -= this.#samples.shift()!;
  }
}
