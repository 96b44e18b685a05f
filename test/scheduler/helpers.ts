/**
 * Test helpers for the scheduler and store: temp data dirs with a real SQLite store, a
 * controllable Pipeline test double, job specs and an event recorder. Test use only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CancelledError, PipelineError } from '../../src/errors.js';
import type { JobEvent, JobKind, JobSpec, Requester } from '../../src/jobs/types.js';
import type {
  GenerateOptions,
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  PipelineInfo,
  RawImage,
} from '../../src/pipeline/types.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler, type SchedulerOptions } from '../../src/scheduler/index.js';
import { openStore, type Store } from '../../src/store/index.js';

export function tempDataDir(prefix = 'atelier-test-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A solid image whose colour encodes the seed, so tests can tell images apart. */
export function solidImage(width: number, height: number, seed: number): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i += 3) {
    data[i] = seed % 256;
    data[i + 1] = (seed >> 8) % 256;
    data[i + 2] = 128;
  }
  return { width, height, data };
}

export interface PipelineCall {
  request: GenerationRequest;
  signal: AbortSignal | undefined;
  /** Lets a held call run its remaining steps. */
  release(): void;
  /** Settles when generate() returned or threw. */
  finished: Promise<'returned' | 'cancelled'>;
}

/**
 * A Pipeline test double. `instant` runs every step at once; `hold` makes each call wait
 * before its first step until `release()` (or an abort, which it honours between steps as the
 * real pipeline does). Images are solid colours of the requested size.
 */
export class TestPipeline implements Pipeline {
  readonly calls: PipelineCall[] = [];
  hold: boolean;
  #waiters: ((call: PipelineCall) => void)[] = [];

  constructor(options: { hold?: boolean } = {}) {
    this.hold = options.hold ?? false;
  }

  async load(): Promise<void> {}
  async dispose(): Promise<void> {}

  info(): PipelineInfo {
    return {
      model: 'test-model',
      executionProvider: 'cpu',
      components: [],
      defaults: { steps: 4, guidance: 4.5, sampler: 'euler', resolution: 1024 },
    };
  }

  /** Resolves with the next call to generate() (or the n-th, 0-based, if it already happened). */
  nextCall(index = this.calls.length): Promise<PipelineCall> {
    if (this.calls[index]) return Promise.resolve(this.calls[index]!);
    return new Promise((resolve) => {
      const wait = (call: PipelineCall) => {
        if (this.calls.indexOf(call) === index) resolve(call);
        else this.#waiters.push(wait);
      };
      this.#waiters.push(wait);
    });
  }

  generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationOutput> {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
      options.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    let settle!: (how: 'returned' | 'cancelled') => void;
    const finished = new Promise<'returned' | 'cancelled'>((resolve) => {
      settle = resolve;
    });
    const call: PipelineCall = { request, signal: options.signal, release, finished };
    this.calls.push(call);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wait of waiters) wait(call);
    const hold = this.hold;
    const run = async (): Promise<GenerationOutput> => {
      if (hold) await released;
      if (request.prompt.includes('explode'))
        throw new PipelineError('test pipeline exploded', 'The GPU ran out of memory.');
      for (let step = 1; step <= request.steps; step++) {
        if (options.signal?.aborted) throw new CancelledError();
        options.onStep?.({ step, total: request.steps, preview: solidImage(8, 8, step) });
      }
      const seeds = Array.from({ length: request.count }, (_, i) => request.seed + i);
      return {
        images: seeds.map((seed) => solidImage(request.width, request.height, seed)),
        seeds,
        model: 'test-model',
      };
    };
    return run().then(
      (output) => {
        settle('returned');
        return output;
      },
      (error: unknown) => {
        settle('cancelled');
        throw error;
      },
    );
  }
}

let userCounter = 0;

export function requester(userId: string, extra: Partial<Requester> = {}): Requester {
  return { platform: 'discord', userId, displayName: userId, ...extra };
}

export function makeSpec(
  userId: string,
  options: {
    count?: number;
    prompt?: string;
    kind?: JobKind;
    teamId?: string;
    roleIds?: string[];
    parent?: JobSpec['parent'];
    size?: number;
    steps?: number;
    strength?: number;
  } = {},
): JobSpec {
  userCounter++;
  const size = options.size ?? 64;
  const req = requester(userId, {
    ...(options.teamId === undefined ? {} : { teamId: options.teamId }),
    ...(options.roleIds === undefined ? {} : { roleIds: options.roleIds }),
  });
  const spec: JobSpec = {
    kind: options.kind ?? 'txt2img',
    requester: req,
    params: {
      prompt: options.prompt ?? `${userId} job ${userCounter}`,
      negativePrompt: '',
      aspect: '1:1',
      width: size,
      height: size,
      seed: 1000 + userCounter,
      steps: options.steps ?? 4,
      guidance: 4.5,
      count: options.count ?? 1,
      sampler: 'euler',
      ...(options.strength === undefined ? {} : { strength: options.strength }),
    },
    reply: { platform: 'discord', channelId: 'channel-1' },
  };
  if (options.parent) spec.parent = options.parent;
  return spec;
}

/** No limits, so tests about ordering are not about limits. */
export const NO_LIMITS = {
  userBucket: false,
  teamBucket: false,
  maxQueuedPerUser: 1000,
  maxQueueSize: 100_000,
} as const satisfies Partial<SchedulerOptions>;

export interface Harness {
  dir: string;
  store: Store;
  pipeline: TestPipeline;
  scheduler: Scheduler;
  events: JobEvent[];
  /** Prompts in the order the pipeline was asked to run them. */
  runOrder(): string[];
  close(): Promise<void>;
}

export async function harness(
  options: Partial<SchedulerOptions> & { hold?: boolean; dir?: string; start?: boolean } = {},
): Promise<Harness> {
  const temp = options.dir === undefined ? tempDataDir() : undefined;
  const dir = options.dir ?? temp!.dir;
  const store = openStore({ dataDir: dir });
  const pipeline = new TestPipeline({ hold: options.hold ?? false });
  const { hold: _hold, dir: _dir, start, ...schedulerOptions } = options;
  const scheduler = new Scheduler(store, {
    runners: [new JobExecutor({ pipeline, store })],
    positionUpdateIntervalMs: 0,
    ...schedulerOptions,
  });
  const events: JobEvent[] = [];
  scheduler.on('job', (event) => events.push(event));
  if (start !== false) await scheduler.start();
  return {
    dir,
    store,
    pipeline,
    scheduler,
    events,
    runOrder: () => pipeline.calls.map((call) => call.request.prompt),
    async close() {
      for (const call of pipeline.calls) call.release();
      await scheduler.stop();
      store.close();
      temp?.cleanup();
    },
  };
}

/** Resolves with the next event of `type` that matches. */
export function nextEvent<T extends JobEvent['type']>(
  scheduler: Scheduler,
  type: T,
  match: (event: Extract<JobEvent, { type: T }>) => boolean = () => true,
): Promise<Extract<JobEvent, { type: T }>> {
  return new Promise((resolve) => {
    const listener = (event: JobEvent) => {
      if (event.type !== type || !match(event as Extract<JobEvent, { type: T }>)) return;
      scheduler.off('job', listener);
      resolve(event as Extract<JobEvent, { type: T }>);
    };
    scheduler.on('job', listener);
  });
}

/** Lets pending promise callbacks (and p-queue's microtask hops) run. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}
