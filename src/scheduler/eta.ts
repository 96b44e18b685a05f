/**
 * Queue wait estimates, measured per model. A job's run is split in three: the part before its
 * first denoising step (preparing, text encoders), the denoising steps, and the part after its
 * last step (VAE decode, PNG files). Only the steps grow with the job's size, so they are kept
 * per unit of work: one denoising step of one one-megapixel image; the other two are kept per
 * job. Each is the median of the model's last `window` finished jobs, so one slow warm-up job
 * does not skew the next ones, and a change of GPU or runtime is followed within a few jobs.
 * The configured `initialMsPerStep` is the prior until a model has finished a job.
 */
import { isImg2img, type JobResult, type JobSpec } from '../jobs/types.js';
import { denoisedSteps } from '../pipeline/sampling/schedule.js';
import type { GenerationOutput } from '../pipeline/types.js';
import { UPSCALE_FACTOR } from '../vocabulary.js';

const MEGAPIXEL = 1024 * 1024;
/** Upscales run img2img on the image enlarged 2× per side (see ./executor.ts). */

/** Where a pipeline's time went, when a runner passes it on with its result. */
export type RunTimings = NonNullable<GenerationOutput['timings']>;

/** A job result that may carry the pipeline's own timings. */
export type TimedJobResult = JobResult & { timings?: RunTimings };

/** Estimated work of a job in units (denoising steps × images × megapixels). */
export function jobUnits(spec: JobSpec): number {
  const { params, kind } = spec;
  const img2img = isImg2img(kind);
  // img2img starts at a partial sigma, so it runs only the last `strength` of the steps.
  const steps = img2img ? Math.max(1, denoisedSteps(params.steps, params.strength ?? 1)) : params.steps;
  const area = (params.width * params.height * (kind === 'upscale' ? UPSCALE_FACTOR ** 2 : 1)) / MEGAPIXEL;
  return Math.max(1e-6, steps * jobImages(spec) * area);
}

/** Images a job makes (an upscale makes one). */
export function jobImages(spec: JobSpec): number {
  return spec.kind === 'upscale' ? 1 : spec.params.count;
}

/** One finished job's measured time, split as the estimate is. */
export interface RunSample {
  /** The job's work (jobUnits). */
  units: number;
  /** The denoising steps. */
  denoiseMs: number;
  /** Start → first step (preparing, text encoders). */
  beforeMs: number;
  /** Last step → done (VAE decode, PNG files). */
  afterMs: number;
}

/** A model's current estimate. */
export interface ModelRate {
  /** ms per denoising step of one one-megapixel image. */
  msPerUnit: number;
  beforeMs: number;
  afterMs: number;
}

interface ModelSamples {
  perUnit: number[];
  before: number[];
  after: number[];
}

/** What is persisted (store flag `eta.models`). */
export interface EstimatorState {
  last?: string;
  models: Record<string, ModelSamples>;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const isSampleList = (value: unknown): value is number[] =>
  Array.isArray(value) && value.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0);

/**
 * Splits a finished job's wall time. With the pipeline's timings, those; otherwise the times of
 * its progress events (first and last step seen), the steps in between giving the rate.
 */
export function sampleRun(run: {
  units: number;
  runMs: number;
  timings?: RunTimings | undefined;
  progress?: { firstStep: number; firstAt: number; lastStep: number; lastAt: number; total: number };
  startedAt: number;
}): RunSample | undefined {
  const { units, runMs, timings, progress } = run;
  if (!(units > 0) || !(runMs >= 0)) return undefined;
  if (timings && Number.isFinite(timings.denoiseMs) && Number.isFinite(timings.encodeMs)) {
    const denoiseMs = Math.max(0, Math.min(runMs, timings.denoiseMs));
    const beforeMs = Math.max(0, Math.min(runMs - denoiseMs, timings.encodeMs));
    return { units, denoiseMs, beforeMs, afterMs: Math.max(0, runMs - denoiseMs - beforeMs) };
  }
  if (progress && progress.total > 0) {
    const { firstStep, firstAt, lastStep, lastAt, total } = progress;
    const msPerStep = lastStep > firstStep ? Math.max(0, (lastAt - firstAt) / (lastStep - firstStep)) : 0;
    const denoiseMs = Math.min(runMs, msPerStep * total);
    const beforeMs = Math.max(
      0,
      Math.min(runMs - denoiseMs, firstAt - run.startedAt - msPerStep * firstStep),
    );
    return { units, denoiseMs, beforeMs, afterMs: Math.max(0, runMs - denoiseMs - beforeMs) };
  }
  // Nothing to split by: all of it scales with the work.
  return { units, denoiseMs: runMs, beforeMs: 0, afterMs: 0 };
}

/** Per-model medians of the last `window` finished jobs. */
export class DurationEstimator {
  readonly #window: number;
  readonly #initialMsPerUnit: number;
  #models = new Map<string, ModelSamples>();
  /** Each model's medians, computed when its samples change (rate() runs per queued job per update). */
  #rates = new Map<string, ModelRate>();
  #last: string | undefined;

  constructor(window: number, initialMsPerUnit: number) {
    this.#window = window;
    this.#initialMsPerUnit = initialMsPerUnit;
  }

  /** The model that finished a job last (a runner's model before it has run one). */
  get lastModel(): string | undefined {
    return this.#last;
  }

  /** Whether `model` has finished a job (its rate is measured, not the prior). */
  knows(model: string): boolean {
    return this.#rates.has(model);
  }

  /** A model's estimate; the last model's when none is named, the prior when it has no jobs. */
  rate(model: string | undefined = this.#last): ModelRate {
    const known = model === undefined ? undefined : this.#rates.get(model);
    return known ?? { msPerUnit: this.#initialMsPerUnit, beforeMs: 0, afterMs: 0 };
  }

  #update(model: string, samples: ModelSamples): void {
    this.#models.set(model, samples);
    this.#rates.set(model, {
      msPerUnit: median(samples.perUnit),
      beforeMs: median(samples.before),
      afterMs: median(samples.after),
    });
  }

  /** Estimated run time of a job of `units` work on `model`. */
  estimate(units: number, model?: string): number {
    const rate = this.rate(model);
    return units * rate.msPerUnit + rate.beforeMs + rate.afterMs;
  }

  /** Records a finished job of `model`. */
  record(model: string, sample: RunSample): void {
    const { units, denoiseMs, beforeMs, afterMs } = sample;
    if (!(units > 0) || ![denoiseMs, beforeMs, afterMs].every((v) => Number.isFinite(v) && v >= 0)) return;
    const samples = this.#models.get(model) ?? { perUnit: [], before: [], after: [] };
    for (const [list, value] of [
      [samples.perUnit, denoiseMs / units],
      [samples.before, beforeMs],
      [samples.after, afterMs],
    ] as const) {
      list.push(value);
      if (list.length > this.#window) list.splice(0, list.length - this.#window);
    }
    this.#update(model, samples);
    this.#last = model;
  }

  snapshot(): EstimatorState {
    const state: EstimatorState = { models: Object.fromEntries(this.#models) };
    if (this.#last !== undefined) state.last = this.#last;
    return state;
  }

  /** Takes back a snapshot; anything malformed is ignored (the prior is used instead). */
  restore(state: unknown): void {
    if (typeof state !== 'object' || state === null) return;
    const { last, models } = state as Partial<EstimatorState>;
    if (typeof models !== 'object' || models === null) return;
    for (const [model, samples] of Object.entries(models)) {
      if (!samples || !isSampleList(samples.perUnit) || !isSampleList(samples.before)) continue;
      if (!isSampleList(samples.after)) continue;
      const n = Math.min(samples.perUnit.length, samples.before.length, samples.after.length, this.#window);
      if (n === 0) continue;
      this.#update(model, {
        perUnit: samples.perUnit.slice(-n),
        before: samples.before.slice(-n),
        after: samples.after.slice(-n),
      });
    }
    if (typeof last === 'string' && this.#models.has(last)) this.#last = last;
  }
}
