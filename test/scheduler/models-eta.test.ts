/**
 * Several models on one pipeline (config `models.list`), through the real scheduler and executor
 * against a pipeline double on a manual clock: the double keeps `capacity` models loaded with the
 * pipeline's own rule (src/pipeline/residency.ts: least recently used out) and swaps only when a
 * job of another model starts, before its first step — so the scheduler's ETA must count the
 * load, and fairness must stay round-robin over users whatever their models (nothing is grouped).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { JobSpec } from '../../src/jobs/types.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec, NO_LIMITS, tempDataDir } from './helpers.js';
import { type ModelCosts, ModelsPipeline, runMsOf } from './models-pipeline.js';

const clock = { now: 5_000_000 };

/** Simulated costs per model at the test size (64×64). */
const MODELS: Record<string, ModelCosts> = {
  large: { msPerStep: 400, loadMs: 9_000, encodeMs: 300, decodeMs: 200 },
  turbo: { msPerStep: 380, loadMs: 8_000, encodeMs: 300, decodeMs: 200 },
  medium: { msPerStep: 120, loadMs: 3_000, encodeMs: 300, decodeMs: 200 },
};

const runMs = (model: string, steps: number, count = 1) => runMsOf(MODELS, model, steps, count);

function spec(user: string, model: string, steps = 10): JobSpec {
  const s = makeSpec(user, { steps });
  s.params.model = { name: model, hash: `${model}-hash`, label: `${model}.safetensors` };
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

async function setup(capacity: number, initial: string[]): Promise<Setup> {
  const temp = tempDataDir('atelier-models-eta-');
  cleanups.push(temp.cleanup);
  const store = openStore({ dataDir: temp.dir });
  const pipeline = new ModelsPipeline(clock, MODELS, capacity, initial);
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

/** One job at a time, so the estimator learns each model's speed. */
async function warmUp(s: Setup, models: string[]): Promise<void> {
  for (const model of models) {
    for (const steps of [4, 12, 20]) {
      const receipt = await s.scheduler.enqueue(spec('warm', model, steps));
      await s.scheduler.waitFor(receipt.job.id);
    }
  }
}

/** Queues every job at once; each one's ETA at enqueue and its actual wait until done. */
async function queueAll(s: Setup, specs: JobSpec[]) {
  const enqueuedAt = clock.now;
  const receipts = [];
  for (const job of specs) receipts.push(await s.scheduler.enqueue(job));
  const doneAt = new Map<string, number>();
  s.scheduler.on('done', (event) => doneAt.set(event.jobId, clock.now));
  await s.scheduler.onIdle();
  return receipts.map((r) => ({
    id: r.job.id,
    model: r.job.spec.params.model!.name,
    eta: r.etaMs,
    actual: doneAt.get(r.job.id)! - enqueuedAt,
  }));
}

describe('several models on one pipeline: load time in the ETA, LRU between jobs', () => {
  it('a job whose model is not loaded is estimated with its load time; the model rates stay apart', async () => {
    const s = await setup(1, ['large']);
    await warmUp(s, ['large', 'medium', 'large']);
    expect(s.pipeline.resident).toEqual(['large']);
    // Each model's speed was learnt without its load time (medium loaded once, at its first job).
    const loaded = await s.scheduler.enqueue(spec('alice', 'large', 20));
    expect(Math.abs(loaded.etaMs - runMs('large', 20)) / runMs('large', 20)).toBeLessThan(0.1);
    await s.scheduler.waitFor(loaded.job.id);

    const other = await s.scheduler.enqueue(spec('bob', 'medium', 20));
    const expected = MODELS.medium!.loadMs + runMs('medium', 20);
    expect(Math.abs(other.etaMs - expected) / expected).toBeLessThan(0.1);
    // Told as it starts, too: the "started" ETA includes the load.
    const started = await new Promise<number>((resolve) =>
      s.scheduler.once('started', (event) => resolve(event.etaMs)),
    );
    expect(Math.abs(started - expected) / expected).toBeLessThan(0.1);
    await s.scheduler.waitFor(other.job.id);
    expect(s.pipeline.log.slice(-3)).toEqual(['unload large', 'load medium', 'run medium']);
  });

  it('plays the least-recently-used rule forward over the whole queue; every ETA is within 15 %', async () => {
    const s = await setup(2, ['large', 'turbo']);
    await warmUp(s, ['large', 'turbo', 'medium']);
    // Now loaded: turbo, medium (large went when medium came).
    expect(s.pipeline.resident).toEqual(['turbo', 'medium']);
    s.pipeline.log.length = 0;
    const results = await queueAll(s, [
      spec('a', 'medium', 20), // loaded
      spec('b', 'large', 10), // loads, turbo out
      spec('c', 'medium', 10), // loaded
      spec('d', 'turbo', 8), // loads, large out (medium was used after it)
      spec('e', 'turbo', 8), // loaded
    ]);
    expect(s.pipeline.log.filter((l) => l.startsWith('load'))).toEqual(['load large', 'load turbo']);
    expect(s.pipeline.log.filter((l) => l.startsWith('unload'))).toEqual(['unload turbo', 'unload large']);
    for (const { eta, actual } of results) expect(Math.abs(eta - actual) / actual).toBeLessThan(0.15);
    // The back of the queue waits for both loads.
    const work = runMs('medium', 20) + runMs('large', 10) + runMs('medium', 10) + 2 * runMs('turbo', 8);
    expect(results.at(-1)!.actual).toBe(work + MODELS.large!.loadMs + MODELS.turbo!.loadMs);
  });

  it('groups nothing: users take turns whatever their models, each switch paying its load', async () => {
    const s = await setup(1, ['large']);
    s.pipeline.log.length = 0;
    const results = await queueAll(s, [
      spec('ann', 'large', 4),
      spec('ann', 'large', 4),
      spec('ben', 'medium', 4),
      spec('ben', 'medium', 4),
    ]);
    // Round-robin over users, exactly as with one model: ann, ben, ann, ben — four runs, three swaps.
    expect(s.pipeline.log.filter((l) => l.startsWith('run'))).toEqual([
      'run large',
      'run medium',
      'run large',
      'run medium',
    ]);
    expect(s.pipeline.log.filter((l) => l.startsWith('load'))).toEqual([
      'load medium',
      'load large',
      'load medium',
    ]);
    expect(results.map((r) => r.model)).toEqual(['large', 'large', 'medium', 'medium']);
    // The executor asked the pipeline for each job's own model.
    expect(s.pipeline.requests.map((r) => r.model)).toEqual(['large', 'medium', 'large', 'medium']);
  });

  it("jobs naming no model teach the default model's speed under its configured name", async () => {
    const s = await setup(1, ['large']);
    for (const steps of [4, 12, 20]) {
      const receipt = await s.scheduler.enqueue(makeSpec('warm', { steps }));
      await s.scheduler.waitFor(receipt.job.id);
    }
    await warmUp(s, ['medium']);
    // The pipeline reports the checkpoint ('large.safetensors'); the estimate asks for 'large', the
    // default, which medium's jobs have since unloaded. Medium's speed must not stand in for it.
    const next = await s.scheduler.enqueue(makeSpec('alice', { steps: 20 }));
    const expected = MODELS.large!.loadMs + runMs('large', 20);
    expect(Math.abs(next.etaMs - expected) / expected).toBeLessThan(0.1);
  });

  it('a job naming no model (from before several models) runs the default, and counts a load if it is out', async () => {
    const s = await setup(1, ['medium']);
    await warmUp(s, ['medium', 'large', 'medium']);
    const old = makeSpec('old', { steps: 10 });
    const receipt = await s.scheduler.enqueue(old);
    expect(receipt.etaMs).toBeGreaterThan(MODELS.large!.loadMs);
    await s.scheduler.waitFor(receipt.job.id);
    expect(s.pipeline.requests.at(-1)!.model).toBeUndefined();
    expect(s.pipeline.log.slice(-2)).toEqual(['load large', 'run large']);
  });
});
