/**
 * A Pipeline test double whose denoising steps advance only when the test says so: a job started
 * on it waits at step 0 until `advance(k)`, which reports the steps up to k at once (only step k
 * with a preview, a solid colour that encodes k, so each preview is a different image), and its
 * images come out once a test advances it to its last step. Stopping the bot aborts a job
 * waiting here, as it would a real one (the job's signal). One instance may serve several
 * starts of an app (a restart resumes the job on it). Test use only.
 */
import { CancelledError } from '../../src/errors.js';
import type {
  GenerateOptions,
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  PipelineInfo,
  RawImage,
} from '../../src/pipeline/types.js';

/** A job running on the double. */
export interface SteppedRun {
  request: GenerationRequest;
  /** The last step reported. */
  readonly step: number;
  /**
   * Reports the steps after the last one up to `step` (at most the request's steps), the last of
   * them with a preview; at the last step the images come out.
   */
  advance(step: number): void;
  /** Advances to the last step. */
  finish(): void;
}

const PREVIEW_SIDE = 16;

export class SteppedPipeline implements Pipeline {
  readonly #resolution: number;
  #current: SteppedRun | undefined;
  #waiters: ((run: SteppedRun) => void)[] = [];
  /** Every run started so far (a restarted job runs again: a new run). */
  readonly runs: SteppedRun[] = [];

  constructor(options: { resolution?: number } = {}) {
    this.#resolution = options.resolution ?? 256;
  }

  async load(): Promise<void> {}

  info(): PipelineInfo {
    return {
      model: 'stepped',
      executionProvider: 'cpu',
      components: [],
      defaults: { steps: 4, guidance: 4.5, sampler: 'euler', resolution: this.#resolution },
    };
  }

  /** The run in progress, or the next one to start. */
  running(): Promise<SteppedRun> {
    if (this.#current) return Promise.resolve(this.#current);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The next run to start after the one in progress (a job resumed after a restart). */
  nextRun(): Promise<SteppedRun> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationOutput> {
    const { signal, onStep } = options;
    return new Promise<GenerationOutput>((resolve, reject) => {
      let step = 0;
      let settled = false;
      const end = () => {
        settled = true;
        signal?.removeEventListener('abort', abort);
        if (this.#current === run) this.#current = undefined;
      };
      const abort = () => {
        if (settled) return;
        end();
        reject(signal?.reason instanceof Error ? signal.reason : new CancelledError());
      };
      const run: SteppedRun = {
        request,
        get step() {
          return step;
        },
        advance: (to: number) => {
          if (settled) throw new Error('stepped pipeline: this run is over');
          const target = Math.min(to, request.steps);
          for (let s = step + 1; s <= target; s++) {
            step = s;
            onStep?.({ step: s, total: request.steps, ...(s === target ? { preview: previewOf(s) } : {}) });
          }
          if (step < request.steps) return;
          end();
          resolve(outputOf(request));
        },
        finish: () => run.advance(request.steps),
      };
      if (signal?.aborted) {
        abort();
        return;
      }
      signal?.addEventListener('abort', abort, { once: true });
      this.#current = run;
      this.runs.push(run);
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const resolveWaiter of waiters) resolveWaiter(run);
    });
  }

  async dispose(): Promise<void> {}
}

/** A small solid RGB image whose colour encodes `step`. */
function previewOf(step: number): RawImage {
  const data = new Uint8Array(PREVIEW_SIDE * PREVIEW_SIDE * 3);
  for (let i = 0; i < data.length; i += 3) {
    data[i] = (step * 37) % 256;
    data[i + 1] = (step * 91) % 256;
    data[i + 2] = 255 - ((step * 53) % 256);
  }
  return { width: PREVIEW_SIDE, height: PREVIEW_SIDE, data };
}

/** Solid images whose colour encodes each seed. */
function outputOf(request: GenerationRequest): GenerationOutput {
  const seeds = Array.from({ length: request.count }, (_, i) => request.seed + i);
  return {
    images: seeds.map((seed) => ({
      width: request.width,
      height: request.height,
      data: new Uint8Array(request.width * request.height * 3).fill(seed % 256),
    })),
    seeds,
    model: 'stepped',
  };
}
