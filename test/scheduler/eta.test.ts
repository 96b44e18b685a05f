/**
 * ETA accuracy against a scripted pipeline: a Pipeline double whose jobs take known simulated
 * times (text encoders, ms per step per image, VAE decode per image) on a manual clock, so the
 * estimates can be checked against the actual waits without sleeping.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { JobEvent } from '../../src/jobs/types.js';
import type {
  GenerateOptions,
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  PipelineInfo,
} from '../../src/pipeline/types.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec, NO_LIMITS, solidImage, tempDataDir } from './helpers.js';

const clock = { now: 1_000_000 };
const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Simulated costs of one model, at the test size (64×64). */
interface Script {
  model: string;
  encodeMs: number;
  msPerStepPerImage: number;
  decodeMsPerImage: number;
}

class ScriptedPipeline implements Pipeline {
  constructor(readonly script: Script) {}
  async load(): Promise<void> {}
  async dispose(): Promise<void> {}
  info(): PipelineInfo {
    return {
      model: this.script.model,
      executionProvider: 'cpu',
      components: [],
      defaults: { steps: 28, guidance: 4.5, sampler: 'euler', resolution: 1024 },
    };
  }
  async generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationOutput> {
    const { encodeMs, msPerStepPerImage, decodeMsPerImage, model } = this.script;
    clock.now += encodeMs;
    for (let step = 1; step <= request.steps; step++) {
      clock.now += msPerStepPerImage * request.count;
      options.onStep?.({ step, total: request.steps });
      await nextTick();
    }
    clock.now += decodeMsPerImage * request.count;
    const seeds = Array.from({ length: request.count }, (_, i) => request.seed + i);
    return {
      images: seeds.map((seed) => solidImage(request.width, request.height, seed)),
      seeds,
      model,
    };
  }
}

const MEDIUM: Script = {
  model: 'sd3.5-medium',
  encodeMs: 400,
  msPerStepPerImage: 120,
  decodeMsPerImage: 250,
};
const LARGE: Script = { model: 'sd3.5-large', encodeMs: 900, msPerStepPerImage: 400, decodeMsPerImage: 250 };

const simulatedMs = (s: Script, steps: number, count: number) =>
  s.encodeMs + steps * count * s.msPerStepPerImage + count * s.decodeMsPerImage;

interface Setup {
  store: Store;
  scheduler: Scheduler;
  events: JobEvent[];
  close(): Promise<void>;
}

const open: Setup[] = [];
const dirs: (() => void)[] = [];
afterEach(async () => {
  for (const setup of open.splice(0)) await setup.close();
  for (const cleanup of dirs.splice(0)) cleanup();
});

async function setup(dir: string, scripts: Script[]): Promise<Setup> {
  const store = openStore({ dataDir: dir });
  const scheduler = new Scheduler(store, {
    ...NO_LIMITS,
    runners: scripts.map((s) => new JobExecutor({ pipeline: new ScriptedPipeline(s), store })),
    positionUpdateIntervalMs: 0,
    clock: () => clock.now,
  });
  const events: JobEvent[] = [];
  scheduler.on('job', (event) => events.push(event));
  await scheduler.start();
  const s = {
    store,
    scheduler,
    events,
    async close() {
      await scheduler.stop();
      store.close();
    },
  };
  open.push(s);
  return s;
}

function newDir(): string {
  const temp = tempDataDir('atelier-eta-');
  dirs.push(temp.cleanup);
  return temp.dir;
}

/** Runs jobs one after another (warm-up: the estimator learns from them). */
async function runAlone(s: Setup, shapes: [steps: number, count: number][]): Promise<number[]> {
  const etas: number[] = [];
  for (const [steps, count] of shapes) {
    const receipt = await s.scheduler.enqueue(makeSpec('warm', { steps, count }));
    etas.push(receipt.etaMs);
    await s.scheduler.waitFor(receipt.job.id);
  }
  return etas;
}

/** Queues every job at once and returns each one's ETA at enqueue and its actual wait until done. */
async function queueAll(s: Setup, shapes: [steps: number, count: number][]) {
  const enqueuedAt = clock.now;
  const receipts = [];
  for (const [i, [steps, count]] of shapes.entries()) {
    receipts.push(await s.scheduler.enqueue(makeSpec(`user-${i}`, { steps, count })));
  }
  const doneAt = new Map<string, number>();
  s.scheduler.on('done', (event) => doneAt.set(event.jobId, clock.now));
  await s.scheduler.onIdle();
  return receipts.map((r) => ({ eta: r.etaMs, actual: doneAt.get(r.job.id)! - enqueuedAt }));
}

const WARM_UP: [number, number][] = [
  [4, 1],
  [28, 2],
  [12, 4],
  [20, 1],
];
const QUEUE: [number, number][] = [
  [28, 4],
  [4, 1],
  [40, 2],
  [8, 1],
  [28, 1],
  [20, 4],
];

describe('ETA from measured time per step', () => {
  it('after a few jobs, every queued job’s ETA is within 20 % of its actual wait', async () => {
    const s = await setup(newDir(), [MEDIUM]);
    await runAlone(s, WARM_UP);
    const results = await queueAll(s, QUEUE);
    for (const { eta, actual } of results) {
      expect(Math.abs(eta - actual) / actual).toBeLessThan(0.2);
    }
    // The job at the back waits for all of them.
    const total = QUEUE.reduce((sum, [steps, count]) => sum + simulatedMs(MEDIUM, steps, count), 0);
    expect(results.at(-1)!.actual).toBe(total);
  });

  it('follows steps × images: each added step of each image costs the measured step time', async () => {
    const s = await setup(newDir(), [MEDIUM]);
    await runAlone(s, WARM_UP);
    const [base, moreSteps, moreImages, both] = await runAlone(s, [
      [10, 1],
      [30, 1],
      [10, 3],
      [30, 4],
    ]);
    const step = MEDIUM.msPerStepPerImage;
    expect(Math.abs(moreSteps! - base! - 20 * step) / (20 * step)).toBeLessThan(0.1);
    // Two more images: 20 more image-steps plus their decode, which the estimate keeps per job.
    expect(Math.abs(moreImages! - base! - 20 * step) / (20 * step)).toBeLessThan(0.2);
    expect(Math.abs(both! - simulatedMs(MEDIUM, 30, 4)) / simulatedMs(MEDIUM, 30, 4)).toBeLessThan(0.2);
  });

  it('a running job’s ETA counts down its remaining steps', async () => {
    const s = await setup(newDir(), [MEDIUM]);
    await runAlone(s, WARM_UP);
    const running = await s.scheduler.enqueue(makeSpec('a', { steps: 40, count: 1 }));
    const waiting = await s.scheduler.enqueue(makeSpec('b', { steps: 4, count: 1 }));
    const enqueuedAt = clock.now;
    // Halfway through the running job, the waiting one's ETA has shrunk by the time gone.
    await new Promise<void>((resolve) => {
      const listener = (event: JobEvent) => {
        if (event.type === 'progress' && event.jobId === running.job.id && event.step === 20) {
          s.scheduler.off('job', listener);
          resolve();
        }
      };
      s.scheduler.on('job', listener);
    });
    const halfway = s.scheduler.position(waiting.job.id)!;
    const elapsed = clock.now - enqueuedAt;
    const actual = simulatedMs(MEDIUM, 40, 1) + simulatedMs(MEDIUM, 4, 1) - elapsed;
    expect(Math.abs(halfway.etaMs - actual) / actual).toBeLessThan(0.1);
    await s.scheduler.onIdle();
  });

  it('keeps the rate per model and across a restart', async () => {
    const dir = newDir();
    const large = await setup(dir, [LARGE]);
    await runAlone(large, WARM_UP);
    await large.close();
    open.splice(open.indexOf(large), 1);

    // Same data dir, the slow model's rate is known at once after the restart.
    const again = await setup(dir, [LARGE]);
    const [first] = await runAlone(again, [[28, 1]]);
    expect(Math.abs(first! - simulatedMs(LARGE, 28, 1)) / simulatedMs(LARGE, 28, 1)).toBeLessThan(0.2);
    await again.close();
    open.splice(open.indexOf(again), 1);

    // Another model learns its own rate: after a job of it, the large model's does not leak in.
    const medium = await setup(dir, [MEDIUM]);
    await runAlone(medium, [[20, 2]]);
    const results = await queueAll(medium, QUEUE);
    for (const { eta, actual } of results) expect(Math.abs(eta - actual) / actual).toBeLessThan(0.2);
  });
});
