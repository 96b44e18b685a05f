/**
 * The scheduler on a `RunnerPool` (the gateway's: one runner per live worker): it starts a job
 * only on a runner the pool lists, waits while it lists none, grows and shrinks with it, and never
 * reuses a runner the pool dropped while it ran a job.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { JobRecord, JobResult } from '../../src/jobs/types.js';
import { type JobRunner, type RunContext, type RunnerPool, Scheduler } from '../../src/scheduler/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec, NO_LIMITS, nextEvent, settle, tempDataDir } from './helpers.js';

/** A runner whose jobs run until the test finishes them (or the scheduler aborts them). */
class HeldRunner implements JobRunner {
  readonly jobs: { job: JobRecord; finish(): void }[] = [];
  constructor(readonly name: string) {}
  run(job: JobRecord, context: RunContext): Promise<JobResult> {
    return new Promise((resolve, reject) => {
      context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true });
      this.jobs.push({ job, finish: () => resolve({ images: [], model: this.name }) });
    });
  }
}

class TestPool implements RunnerPool {
  runners: JobRunner[] = [];
  readonly #listeners = new Set<() => void>();
  current(): readonly JobRunner[] {
    return this.runners;
  }
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  set(runners: JobRunner[]): void {
    this.runners = runners;
    for (const listener of this.#listeners) listener();
  }
}

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(pool: TestPool): { store: Store; scheduler: Scheduler } {
  const temp = tempDataDir();
  const store = openStore({ dataDir: temp.dir });
  const scheduler = new Scheduler(store, { runners: pool, positionUpdateIntervalMs: 0, ...NO_LIMITS });
  cleanups.push(
    temp.cleanup,
    () => store.close(),
    () => scheduler.stop(),
  );
  return { store, scheduler };
}

describe('Scheduler on a RunnerPool', () => {
  it('holds jobs while the pool is empty and starts them in fair order as runners come', async () => {
    const pool = new TestPool();
    const { scheduler } = setup(pool);
    await scheduler.start();
    const a1 = await scheduler.enqueue(makeSpec('alice', { prompt: 'a1' }));
    await scheduler.enqueue(makeSpec('alice', { prompt: 'a2' }));
    const b1 = await scheduler.enqueue(makeSpec('bob', { prompt: 'b1' }));
    await settle();
    expect(scheduler.pending).toBe(0);
    expect(scheduler.size).toBe(3);
    expect(a1.etaMs).toBeGreaterThan(0);

    const first = new HeldRunner('first');
    const started = nextEvent(scheduler, 'started');
    pool.set([first]);
    expect((await started).jobId).toBe(a1.job.id);
    expect(scheduler.pending).toBe(1);

    const second = new HeldRunner('second');
    const startedB = nextEvent(scheduler, 'started');
    pool.set([first, second]);
    expect((await startedB).jobId).toBe(b1.job.id);
    expect(second.jobs.map((j) => j.job.spec.params.prompt)).toEqual(['b1']);
  });

  it('a runner dropped while busy finishes its job and is not used again; the next job waits for a live one', async () => {
    const pool = new TestPool();
    const gone = new HeldRunner('gone');
    const stays = new HeldRunner('stays');
    pool.set([gone, stays]);
    const { scheduler } = setup(pool);
    await scheduler.start();
    const j1 = await scheduler.enqueue(makeSpec('u1', { prompt: 'j1' }));
    const j2 = await scheduler.enqueue(makeSpec('u2', { prompt: 'j2' }));
    await scheduler.enqueue(makeSpec('u3', { prompt: 'j3' }));
    await settle();
    expect(scheduler.pending).toBe(2);
    const onGone = gone.jobs[0]!;
    const onStays = stays.jobs[0]!;
    expect(new Set([onGone.job.id, onStays.job.id])).toEqual(new Set([j1.job.id, j2.job.id]));

    pool.set([stays]);
    expect(scheduler.runnerCount).toBe(1);
    const done = nextEvent(scheduler, 'done', (e) => e.jobId === onGone.job.id);
    onGone.finish();
    await done;
    await settle();
    // One runner listed, one job still running on it: j3 waits.
    expect(scheduler.pending).toBe(1);
    expect(gone.jobs).toHaveLength(1);

    const j3Started = nextEvent(scheduler, 'started');
    onStays.finish();
    await j3Started;
    expect(stays.jobs.map((j) => j.job.spec.params.prompt)).toEqual([onStays.job.spec.params.prompt, 'j3']);
    expect(gone.jobs).toHaveLength(1);
    stays.jobs[1]!.finish();
  });

  it('an empty pool at start is allowed (a gateway before its first worker)', () => {
    expect(() => setup(new TestPool())).not.toThrow();
  });
});
