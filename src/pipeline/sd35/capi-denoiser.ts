/**
 * The denoising loop on ONNX Runtime's C API: the whole step (CFG, MMDiT, sampler update) is one
 * static-shape graph (models/sampler-step.ts) whose inputs and outputs stay on the device for the
 * whole loop. Two IO bindings swap the latent, denoised and step buffers (ping-pong), so step k+1
 * reads what step k wrote without a copy, and each binding keeps its addresses: with the CUDA
 * provider's graph capture, every step after the first few is one graph replay. Per step only the
 * preview (the first image's denoised latent) comes back to the host.
 */
import { CancelledError } from '../../errors.js';
import type { MmditConfig } from '../models/mmdit.js';
import {
  conditioningDims,
  type SamplerStepShape,
  STEP_COEFFICIENTS,
  type StepConditioning,
  stepCoefficients,
  stepConditioning,
} from '../models/sampler-step.js';
import type { ArenaStats, Binding, BindingRunOptions, CapiSession, DeviceTensor } from '../ort/index.js';
import type { Conditioning } from '../sampling/cfg.js';
import type { SamplerName } from '../types.js';

export interface CapiJob {
  /** Starting latents [images, 16, h, w]. */
  x0: Float32Array;
  images: number;
  latentShape: readonly [number, number, number];
  /** Sigmas including the final 0. */
  schedule: Float32Array;
  sampler: SamplerName;
  cond: Conditioning;
  uncond: Conditioning;
  guidance: number;
}

export interface CapiSampleOptions {
  signal?: AbortSignal;
  /** After every step: its 0-based index, the number of steps, the first image's denoised latent. */
  onStep?: (i: number, total: number, denoisedFirst: Float32Array) => void | Promise<void>;
}

export interface CapiSampleResult {
  latent: Float32Array;
  /** Median host time of one step: issuing it, and with CUDA graphs nothing more (the wait is off-thread). */
  hostMsPerStep: number;
  /** Steps replayed from a captured CUDA graph. */
  replayedSteps: number;
  /** Why this shape runs without CUDA graphs, when its capture failed. */
  captureFailure?: string;
}

export interface CapiDenoiserOptions {
  mmdit: MmditConfig;
  /** The most steps a job may run (rows of the coefficient table). */
  maxSteps: number;
  /** Opens the step graph's session for one shape (built and cached by the caller). */
  open: (shape: SamplerStepShape) => Promise<CapiSession>;
  /**
   * Shapes kept loaded at once. Each shape is its own session with its own copy of the weights
   * (static shapes are what CUDA graph capture needs), so more than one costs GPU memory.
   * @default 1
   */
  maxShapes?: number;
  /** Told when a shape's capture failed (its steps then run without graphs). */
  onCaptureFailure?: (shape: SamplerStepShape, reason: string) => void;
  /** Whether the sessions capture CUDA graphs (false once capture was refused). */
  cudaGraph: () => boolean;
  /**
   * A completion signal per binding, from events recorded on the sessions' own CUDA stream, so two
   * steps can be queued (ONNX Runtime's stream sync would wait for both). Without it (CPU, or
   * ATELIER_STEP_QUEUE=1) one step is queued ahead.
   */
  stepQueue?: StepQueue;
}

/** Knows when the last step issued through a binding is done (a CUDA event per binding). */
export interface StepQueue {
  /** Called right after a step is issued through binding p. */
  issued(p: 0 | 1): void;
  /** Resolves when that step is done. */
  done(p: 0 | 1): Promise<void>;
  /** Frees the events; called once the sessions are released. */
  release(): void;
}

type ConditioningInput = keyof StepConditioning['inputs'] & string;

interface GraphState {
  regularRuns: number;
  captured: boolean;
}

/** The buffers and two bindings of one shape; allocated once, reused by every job of that shape. */
class ShapeState {
  readonly x: [DeviceTensor, DeviceTensor];
  readonly denoised: [DeviceTensor, DeviceTensor];
  readonly step: [DeviceTensor, DeviceTensor];
  readonly coeffs: DeviceTensor;
  /** context, y and, when the prompt and negative prompt differ in length, context_uncond, y_uncond. */
  readonly conditioning: Map<ConditioningInput, DeviceTensor>;
  readonly guidance: DeviceTensor;
  readonly bindings: [Binding, Binding];
  /** Where each binding is on its way to a captured CUDA graph (see CapiDenoiser.#step). */
  readonly graph: [GraphState, GraphState] = [
    { regularRuns: 0, captured: false },
    { regularRuns: 0, captured: false },
  ];
  /** Set when a capture failed: this shape's steps then run without CUDA graphs. */
  captureFailure: string | undefined;

  constructor(
    readonly session: CapiSession,
    readonly shape: SamplerStepShape,
    cfg: MmditConfig,
    /** Whether the session was opened with graph capture on (its runs then need an explicit graph id). */
    readonly graphs: boolean,
  ) {
    const { images, height, width, maxSteps } = shape;
    const latent = [images, cfg.inChannels, height, width];
    const t = (type: 'float32' | 'int64', dims: number[]) => session.deviceTensor(type, dims);
    this.x = [t('float32', latent), t('float32', latent)];
    this.denoised = [t('float32', latent), t('float32', latent)];
    this.step = [t('int64', [1]), t('int64', [1])];
    this.coeffs = t('float32', [maxSteps, STEP_COEFFICIENTS]);
    this.conditioning = new Map(
      Object.entries(conditioningDims(cfg, shape)).map(([name, dims]) => [
        name as ConditioningInput,
        t('float32', dims),
      ]),
    );
    this.guidance = t('float32', [1]);
    // Binding p reads buffer p and writes buffer 1 − p; `prev_denoised` is what the other binding wrote.
    this.bindings = [0, 1].map((p) => {
      const q = 1 - p;
      const binding = session
        .binding()
        .bindInput('x', this.x[p])
        .bindInput('prev_denoised', this.denoised[q])
        .bindInput('step', this.step[p])
        .bindInput('coeffs', this.coeffs)
        .bindInput('guidance', this.guidance)
        .bindOutput('x_next', this.x[q])
        .bindOutput('denoised', this.denoised[p])
        .bindOutput('step_next', this.step[q]);
      for (const [name, tensor] of this.conditioning) binding.bindInput(name, tensor);
      return binding;
    }) as [Binding, Binding];
  }
}

/**
 * Plain runs of each binding before its graph is captured, so the arena has grown to what a step
 * needs (nothing may be allocated while capturing). ONNX Runtime counts 2 runs per thread, but with
 * two bindings alternating each would have made only one.
 */
const WARMUP_RUNS = 2;
/** ONNX Runtime's gpu_graph_id for "run normally, neither capture nor replay". */
const SKIP_CAPTURE = -1;

export class CapiDenoiser {
  /** Loaded shapes, least recently used first. */
  readonly #shapes = new Map<string, Promise<ShapeState>>();

  constructor(readonly options: CapiDenoiserOptions) {}

  async sample(job: CapiJob, opts: CapiSampleOptions = {}): Promise<CapiSampleResult> {
    const conditioning = stepConditioning(job.cond, job.uncond, job.guidance, job.images);
    const shape: SamplerStepShape = {
      images: job.images,
      height: job.latentShape[1],
      width: job.latentShape[2],
      maxSteps: this.options.maxSteps,
      ...conditioning.shape,
    };
    const state = await this.#state(shape);

    state.x[0].write(job.x0);
    state.denoised[1].write(new Float32Array(job.x0.length));
    state.step[0].write(new BigInt64Array([0n]));
    state.coeffs.write(stepCoefficients(job.sampler, job.schedule, this.options.maxSteps));
    for (const [name, tensor] of state.conditioning) {
      const data = conditioning.inputs[name];
      if (!data) throw new Error(`The step graph's ${name} input has no data for this job`);
      tensor.write(data);
    }
    state.guidance.write(new Float32Array([job.guidance]));

    const total = job.schedule.length - 1;
    const previewBytes = (job.x0.length / job.images) * 4;
    const hostMs: number[] = [];
    let replayed = 0;
    // Steps are queued ahead: one (each step's own wait, ONNX Runtime's sync of the whole stream), or
    // two with a StepQueue (a wait per binding, so step i is awaited while i + 1 runs). Step
    // i + depth is issued as soon as step i is done and its preview read (it writes step i's
    // denoised buffer), and only then is step i handed to onStep, so the GPU works while the host
    // reports. Nothing is left running on return or throw: the next job writes these buffers.
    const queue = this.options.stepQueue;
    const depth = queue ? 2 : 1;
    const pending: { i: number; done: () => Promise<void> }[] = [];
    const start = async (i: number) => {
      const p = (i % 2) as 0 | 1;
      const step = await this.#issue(state, p);
      if (step.replayed) replayed++;
      hostMs.push(step.hostMs);
      // A plain (synchronous) run is done already; a queued one completes at its event.
      queue?.issued(p);
      pending.push({ i, done: queue ? () => queue.done(p) : step.done });
    };
    try {
      for (let i = 0; i < Math.min(depth, total) && !opts.signal?.aborted; i++) await start(i);
      for (let i = 0; i < total; i++) {
        const step = pending[0];
        if (step?.i !== i) break;
        await step.done();
        pending.shift();
        // Cancelled while step i ran (issued before earlier steps were reported): not reported.
        if (opts.signal?.aborted) break;
        const preview = opts.onStep ? (state.denoised[i % 2].read(previewBytes) as Float32Array) : undefined;
        if (i + depth < total) await start(i + depth);
        if (opts.onStep && preview) await opts.onStep(i, total, preview);
      }
    } finally {
      // A throwing onStep or a cancel leaves steps queued: let them finish.
      for (const step of pending) await step.done().catch(() => undefined);
    }
    if (opts.signal?.aborted) throw new CancelledError('cancelled between denoising steps');
    const latent = state.x[total % 2].read() as Float32Array;
    return {
      latent,
      hostMsPerStep: median(hostMs),
      replayedSteps: replayed,
      ...(state.captureFailure ? { captureFailure: state.captureFailure } : {}),
    };
  }

  /**
   * Issues one step through binding p: whether it replays a captured graph, the host time issuing
   * took, and `done()`, which waits for it off the event loop. With CUDA graphs each binding runs
   * WARMUP_RUNS plain steps (graph id −1), then captures on its next run and replays from then on;
   * the run only queues the work. A failed capture is not a failed job: the step's inputs are
   * untouched (it writes only the other buffers), so it runs again without a graph, and so does every
   * later step of this shape.
   */
  async #issue(
    state: ShapeState,
    p: 0 | 1,
  ): Promise<{ replayed: boolean; hostMs: number; done: () => Promise<void> }> {
    const binding = state.bindings[p];
    const finished = async () => {};
    const waitFor = () => binding.synchronizeAsync();
    /** Runs once, timing only the issuing of the work (with noWait, the GPU's time is not in it). */
    const run = async (options: BindingRunOptions = {}) => {
      const t0 = performance.now();
      await binding.run(options);
      return { hostMs: performance.now() - t0, done: options.noWait ? waitFor : finished };
    };
    if (!state.graphs) return { replayed: false, ...(await run()) };
    // A session opened for capture treats a run without a graph id as graph 0 (capture): plain
    // runs there must say -1, also after a failed capture.
    if (state.captureFailure) return { replayed: false, ...(await run({ graphId: SKIP_CAPTURE })) };
    const graph = state.graph[p];
    // Neither binding captures before both have warmed up: a job of an odd number of steps leaves
    // them uneven, and capturing while the other binding's run has not yet grown the arena fails
    // (an allocation inside the capture; seen on the H200 with one-step segments).
    if (state.graph.some((g) => g.regularRuns < WARMUP_RUNS)) {
      graph.regularRuns++;
      return { replayed: false, ...(await run({ noWait: true, graphId: SKIP_CAPTURE })) };
    }
    try {
      const issued = await run({ noWait: true, graphId: p });
      const replayed = graph.captured;
      graph.captured = true;
      return { replayed, ...issued };
    } catch (error) {
      if (graph.captured) throw error;
      state.captureFailure = String((error as Error).message ?? error).split('\n')[0];
      this.options.onCaptureFailure?.(state.shape, state.captureFailure);
      return { replayed: false, ...(await run({ graphId: SKIP_CAPTURE })) };
    }
  }

  /**
   * The arena counters of each loaded shape's step session, least recently used first (a shape
   * still opening is waited for; one that failed to open is left out).
   */
  async arenaStats(): Promise<{ shape: SamplerStepShape; stats: ArenaStats }[]> {
    const out: { shape: SamplerStepShape; stats: ArenaStats }[] = [];
    for (const state of [...this.#shapes.values()]) {
      const s = await state.catch(() => undefined);
      const stats = s?.session.arenaStats();
      if (s && stats) out.push({ shape: s.shape, stats });
    }
    return out;
  }

  /** Releases every shape's session, then the step queue's events. */
  async release(): Promise<void> {
    const states = [...this.#shapes.values()];
    this.#shapes.clear();
    for (const state of states)
      await state.then(
        (s) => s.session.release(),
        () => {},
      );
    this.options.stepQueue?.release();
  }

  async #state(shape: SamplerStepShape): Promise<ShapeState> {
    const key = JSON.stringify(shape);
    let state = this.#shapes.get(key);
    if (state) {
      this.#shapes.delete(key);
      this.#shapes.set(key, state);
      return state;
    }
    // Free the least recently used shapes first: each holds a session with its own weights.
    const keep = Math.max(1, this.options.maxShapes ?? 1) - 1;
    while (this.#shapes.size > keep) {
      const [oldest, old] = this.#shapes.entries().next().value as [string, Promise<ShapeState>];
      this.#shapes.delete(oldest);
      await old.then(
        (s) => s.session.release(),
        () => {},
      );
    }
    state = this.options
      .open(shape)
      // Asked once open: opening turns capture off when the provider refuses it.
      .then((session) => new ShapeState(session, shape, this.options.mmdit, this.options.cudaGraph()));
    this.#shapes.set(key, state);
    state.catch(() => this.#shapes.delete(key));
    return state;
  }
}

function median(values: number[]): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
