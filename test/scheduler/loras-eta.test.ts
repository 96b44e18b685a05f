/**
 * LoRA combinations in the queue's ETA, through the real scheduler and executor against a pipeline
 * double on a manual clock: the double keeps `loraCapacity` combinations loaded per model with the
 * pipeline's own rule (lora/variants.ts: least recently used out; a model unloaded loses its own)
 * and merges and loads a combination only when a job with it starts, before its first step — so
 * the ETA must count that once per combination in queue order, as it counts model loads, and the
 * jobs behind it must see it too.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { JobLora, JobSpec } from '../../src/jobs/types.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec, NO_LIMITS, tempDataDir } from './helpers.js';
import { type ModelCosts, ModelsPipeline, runMsOf } from './models-pipeline.js';

const clock = { now: 7_000_000 };

/** Simulated costs per model at the test size (64×64); `mergeMs`: a LoRA combination's merge + load. */
const MODELS: Record<string, Required<ModelCosts>> = {
  large: { msPerStep: 400, loadMs: 30_000, mergeMs: 22_000, encodeMs: 300, decodeMs: 200 },
  medium: { msPerStep: 120, loadMs: 9_000, mergeMs: 6_000, encodeMs: 300, decodeMs: 200 },
};

const runMs = (model: string, steps: number, count = 1) => runMsOf(MODELS, model, steps, count);

/** `pixel` or `pixel:0.6 ink` → the job's LoRAs. */
function lorasOf(text: string): JobLora[] {
  return text
    .split(' ')
    .filter(Boolean)
    .map((entry) => {
      const [name, weight] = entry.split(':');
      return { name: name!, file: `${name}.safetensors`, weight: weight === undefined ? 1 : Number(weight) };
    });
}

function spec(user: string, model: string, loras: string, steps = 10): JobSpec {
  const s = makeSpec(user, { steps });
  s.params.model = { name: model, hash: `${model}-hash`, label: `${model}.safetensors` };
  if (loras) s.params.loras = lorasOf(loras);
  return s;
}

interface Setup {
  store: Store;
  scheduler: Scheduler;
  pipeline: ModelsPipeline;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(capacity: number, loraCapacity: number, initial: string[]): Promise<Setup> {
  const temp = tempDataDir('atelier-loras-eta-');
  cleanups.push(temp.cleanup);
  const store = openStore({ dataDir: temp.dir });
  const pipeline = new ModelsPipeline(clock, MODELS, capacity, initial, loraCapacity);
  const scheduler = new Scheduler(store, {
    ...NO_LIMITS,
    runners: [new JobExecutor({ pipeline, store })],
    positionUpdateIntervalMs: 0,
    clock: () => clock.now,
  });
  cleanups.push(async () => {
    await scheduler.stop();
    store.close();
  });
  await scheduler.start();
  return { store, scheduler, pipeline };
}

/** One job at a time, without LoRAs, so the estimator learns each model's speed. */
async function warmUp(s: Setup, models: string[]): Promise<void> {
  for (const model of models) {
    for (const steps of [4, 12, 20]) {
      const receipt = await s.scheduler.enqueue(spec('warm', model, '', steps));
      await s.scheduler.waitFor(receipt.job.id);
    }
  }
}

async function runOne(s: Setup, job: JobSpec): Promise<number> {
  const receipt = await s.scheduler.enqueue(job);
  await s.scheduler.waitFor(receipt.job.id);
  return receipt.etaMs;
}

/**
 * Queues every job in a row; each one's ETA at enqueue and its actual wait until done from then
 * (the double's clock moves while the first jobs run), and when the last was done from the start.
 */
async function queueAll(s: Setup, specs: JobSpec[]) {
  const start = clock.now;
  const doneAt = new Map<string, number>();
  s.scheduler.on('done', (event) => doneAt.set(event.jobId, clock.now));
  const receipts = [];
  for (const job of specs) {
    const at = clock.now;
    receipts.push({ at, receipt: await s.scheduler.enqueue(job) });
  }
  await s.scheduler.onIdle();
  const results = receipts.map(({ at, receipt }) => ({
    eta: receipt.etaMs,
    actual: doneAt.get(receipt.job.id)! - at,
  }));
  return { results, totalMs: Math.max(...doneAt.values()) - start };
}

const near = (actual: number, expected: number, within = 0.1) =>
  expect(Math.abs(actual - expected) / expected).toBeLessThan(within);

describe('LoRA combinations in the queue ETA: merge + load counted once per combination', () => {
  it("a combination its model does not hold is estimated with its merge and load; a loaded one isn't", async () => {
    const s = await setup(1, 2, ['large']);
    await warmUp(s, ['large']);
    await runOne(s, spec('warm', 'large', 'pixel', 4)); // measures large's merge + load
    s.pipeline.log.length = 0;

    // Loaded (pixel, just merged): no merge in the ETA.
    near(await runOne(s, spec('alice', 'large', 'pixel', 20)), runMs('large', 20));
    // Another combination (another weight is another merge): the ETA counts it, at enqueue and at start.
    const other = await s.scheduler.enqueue(spec('bob', 'large', 'pixel:0.6 ink', 20));
    const expected = MODELS.large!.mergeMs + runMs('large', 20);
    near(other.etaMs, expected);
    const started = await new Promise<number>((resolve) =>
      s.scheduler.once('started', (event) => resolve(event.etaMs)),
    );
    near(started, expected);
    await s.scheduler.waitFor(other.job.id);
    expect(s.pipeline.log).toEqual([
      'run large',
      'merge ink=ink.safetensors@1|pixel=pixel.safetensors@0.6',
      'run large',
    ]);
    // The same LoRAs in another order, and a weight-0 one added, are the same combination: loaded.
    near(await runOne(s, spec('carol', 'large', 'ink pixel:0.6 grain:0', 20)), runMs('large', 20));
    // All at weight 0: the model's own denoiser, nothing to merge.
    near(await runOne(s, spec('dan', 'large', 'pixel:0', 20)), runMs('large', 20));
  });

  it('plays the combinations forward over the whole queue: each merge once, where it happens; every ETA within 15 %', async () => {
    const s = await setup(1, 2, ['large']);
    await warmUp(s, ['large']);
    await runOne(s, spec('warm', 'large', 'warm', 4));
    s.pipeline.log.length = 0;
    const { results, totalMs } = await queueAll(s, [
      spec('a', 'large', 'pixel', 10), // merge pixel (warm, pixel)
      spec('b', 'large', 'pixel', 10), // loaded
      spec('c', 'large', '', 10), // no LoRA
      spec('d', 'large', 'ink', 10), // merge ink, warm out (pixel, ink)
      spec('e', 'large', 'grain', 10), // merge grain, pixel out (ink, grain)
      spec('f', 'large', 'pixel', 10), // merge pixel again, ink out
      spec('g', 'large', 'grain', 10), // loaded
    ]);
    expect(s.pipeline.log.filter((l) => l.startsWith('merge')).length).toBe(4);
    for (const { eta, actual } of results) expect(Math.abs(eta - actual) / actual).toBeLessThan(0.15);
    // The queue as a whole waited for the four merges.
    expect(totalMs).toBe(7 * runMs('large', 10) + 4 * MODELS.large!.mergeMs);
  });

  it('jobs queued behind a merge see it; each later job counts only the merges up to it', async () => {
    const s = await setup(1, 2, ['large']);
    await warmUp(s, ['large']);
    await runOne(s, spec('warm', 'large', 'warm', 4));
    s.pipeline.log.length = 0;
    let release!: () => void;
    s.pipeline.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    // A job without LoRAs holds the pipeline while the others queue, all at the same instant.
    const blocker = await s.scheduler.enqueue(spec('z', 'large', '', 10));
    const at = clock.now;
    const doneAt = new Map<string, number>();
    s.scheduler.on('done', (event) => doneAt.set(event.jobId, clock.now));
    const queued = [];
    for (const [user, loras] of [
      ['a', 'pixel'], // merge (warm, pixel)
      ['b', 'pixel'], // loaded
      ['c', ''], // none
      ['d', 'ink'], // merge, warm out
      ['e', 'grain'], // merge, pixel out
      ['f', 'pixel'], // merge again, ink out
      ['g', 'grain'], // loaded
    ] as const)
      queued.push(await s.scheduler.enqueue(spec(user, 'large', loras, 10)));
    expect(clock.now).toBe(at);
    const run = runMs('large', 10);
    const merge = MODELS.large!.mergeMs;
    const etas = queued.map((r) => r.etaMs);
    near(etas[0]!, 2 * run + merge);
    // Behind the merge: b waits for it, but merges nothing itself.
    near(etas[1]! - etas[0]!, run);
    near(etas[1]!, 3 * run + merge);
    near(etas[3]! - etas[2]!, run + merge);
    near(etas[6]!, 8 * run + 4 * merge);
    s.pipeline.hold = undefined;
    release();
    await s.scheduler.waitFor(blocker.job.id);
    await s.scheduler.onIdle();
    expect(s.pipeline.log.filter((l) => l.startsWith('merge')).length).toBe(4);
    for (const [i, r] of queued.entries()) near(etas[i]!, doneAt.get(r.job.id)! - at, 0.05);
  });

  it('before any combination is measured, its merge + load is estimated at the model’s own load time', async () => {
    const s = await setup(1, 2, ['large']);
    await warmUp(s, ['large']);
    expect(s.pipeline.residency().loraMs).toEqual({});
    const first = await s.scheduler.enqueue(spec('alice', 'large', 'pixel', 20));
    near(first.etaMs, MODELS.large!.loadMs + runMs('large', 20));
    await s.scheduler.waitFor(first.job.id);
    // Measured now: the next combination is estimated at the measure.
    near(await runOne(s, spec('bob', 'large', 'ink', 20)), MODELS.large!.mergeMs + runMs('large', 20));
  });

  it("a model unloaded loses its combinations: coming back, a LoRA job counts the model's load and the merge", async () => {
    const s = await setup(1, 2, ['large']);
    await warmUp(s, ['large', 'medium', 'large']);
    await runOne(s, spec('warm', 'large', 'pixel', 4));
    await runOne(s, spec('warm', 'medium', 'pixel', 4)); // large (and its pixel) out
    s.pipeline.log.length = 0;
    const { results } = await queueAll(s, [
      spec('a', 'medium', 'pixel', 10), // loaded
      spec('b', 'large', 'pixel', 10), // load large, merge pixel again
      spec('c', 'large', 'pixel', 10), // loaded
    ]);
    expect(s.pipeline.log).toEqual([
      'run medium',
      'unload medium',
      'load large',
      'merge pixel=pixel.safetensors@1',
      'run large',
      'run large',
    ]);
    for (const { eta, actual } of results) expect(Math.abs(eta - actual) / actual).toBeLessThan(0.15);
  });

  it("a merge is not the model's speed: the rate learnt from a LoRA job leaves it out", async () => {
    const s = await setup(1, 2, ['large']);
    await warmUp(s, ['large']);
    for (const name of ['a', 'b', 'c', 'd']) await runOne(s, spec('warm', 'large', name, 20));
    near(await runOne(s, spec('alice', 'large', '', 20)), runMs('large', 20));
  });
});
