/**
 * The scheduler on a `RunnerPool` (the gateway's: one runner per live worker): it starts a job
 * only on a runner the pool lists, waits while it lists none (and says so: `waitingForRunner`),
 * grows and shrinks with it, shares the ETA of the work ahead over the runners listed, and never
 * reuses a runner the pool dropped while it ran a job. With no runner, the queue-cap refusals say
 * they wait for a worker instead of a time counted as if one were there.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RateLimitedError } from '../../src/errors.js';
import type { JobEvent, JobRecord, JobResult } from '../../src/jobs/types.js';
import {
  type JobRunner,
  type RunContext,
  type RunnerPool,
  Scheduler,
  type SchedulerOptions,
} from '../../src/scheduler/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { WAITING_FOR_WORKER } from '../../src/vocabulary.js';
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

function setup(
  pool: TestPool,
  options: Partial<SchedulerOptions> = {},
): { store: Store; scheduler: Scheduler; events: JobEvent[] } {
  const temp = tempDataDir();
  const store = openStore({ dataDir: temp.dir });
  const scheduler = new Scheduler(store, {
    runners: pool,
    positionUpdateIntervalMs: 0,
    ...NO_LIMITS,
    ...options,
  });
  const events: JobEvent[] = [];
  scheduler.on('job', (event) => events.push(event));
  cleanups.push(
    temp.cleanup,
    () => store.close(),
    () => scheduler.stop(),
  );
  return { store, scheduler, events };
}

// 64×64 images, 10 steps: 10 × 4096 / 2^20 units; at 256 s per unit-step a job is estimated 10 s.
const TEN_SECONDS_PER_JOB = { initialMsPerStep: 256_000, clock: () => 1_000_000 };
const tenSeconds = (user: string) => makeSpec(user, { prompt: user, steps: 10, size: 64 });

/** The `queued` events a job got: position, ETA, and whether it waited for a runner. */
function told(events: JobEvent[], jobId: string) {
  return events.flatMap((e) =>
    e.type === 'queued' && e.jobId === jobId ? [[e.position, e.etaMs, e.waitingForRunner ?? false]] : [],
  );
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

  it('with no runner, jobs say they wait for one; when one comes they are told again, with an ETA', async () => {
    const pool = new TestPool();
    const { scheduler, events } = setup(pool, TEN_SECONDS_PER_JOB);
    await scheduler.start();
    const j1 = await scheduler.enqueue(tenSeconds('u1'));
    const j2 = await scheduler.enqueue(tenSeconds('u2'));
    expect([j1.waitingForRunner, j2.waitingForRunner]).toEqual([true, true]);
    expect(scheduler.list(j2.job.spec.requester)).toEqual([
      { job: j2.job, state: 'queued', position: 2, etaMs: 20_000, waitingForRunner: true },
    ]);

    const started = nextEvent(scheduler, 'started');
    pool.set([new HeldRunner('first')]);
    expect((await started).jobId).toBe(j1.job.id);
    await settle();
    // j1 left the queue, so j2 is next; a runner exists now, so it gets a time instead.
    expect(told(events, j2.job.id)).toEqual([
      [2, 20_000, true],
      [1, 20_000, false],
    ]);
    const later = await scheduler.enqueue(tenSeconds('u3'));
    expect(later.waitingForRunner).toBe(false);

    // The last runner leaves (its worker died, or Redis went away): waiting jobs are told at once.
    pool.set([]);
    await settle();
    expect(told(events, later.job.id).at(-1)).toEqual([2, 30_000, true]);
  });

  it('shares the work ahead over the runners listed, and re-tells waiting jobs when their number changes', async () => {
    const pool = new TestPool();
    const first = new HeldRunner('first');
    const second = new HeldRunner('second');
    pool.set([first]);
    const { scheduler, events } = setup(pool, TEN_SECONDS_PER_JOB);
    await scheduler.start();
    await scheduler.enqueue(tenSeconds('u1'));
    await settle();
    // One runner, busy for 10 s, two jobs of 10 s ahead: 30 s of wait, then its own 10 s.
    const j2 = await scheduler.enqueue(tenSeconds('u2'));
    const j3 = await scheduler.enqueue(tenSeconds('u3'));
    const j4 = await scheduler.enqueue(tenSeconds('u4'));
    expect(j4.etaMs).toBe(40_000);

    // A second runner takes j2: two running (10 s left each) and j3 ahead, over two runners.
    const started = nextEvent(scheduler, 'started');
    pool.set([first, second]);
    expect((await started).jobId).toBe(j2.job.id);
    await settle();
    expect(told(events, j3.job.id).at(-1)).toEqual([1, 20_000, false]);
    expect(told(events, j4.job.id).at(-1)).toEqual([2, 25_000, false]);

    // The second runner's worker leaves while busy: nobody moves, but the same work is now shared
    // by one runner, and the waiting jobs hear it.
    pool.set([first]);
    await settle();
    expect(told(events, j3.job.id).at(-1)).toEqual([1, 30_000, false]);
    expect(told(events, j4.job.id).at(-1)).toEqual([2, 40_000, false]);
  });

  it('with no runner, the queue-cap and per-user-cap refusals say they wait for a worker, not a time', async () => {
    const pool = new TestPool();
    const { scheduler } = setup(pool, { ...TEN_SECONDS_PER_JOB, maxQueueSize: 2, maxQueuedPerUser: 1 });
    await scheduler.start();
    const refusal = (enqueued: Promise<unknown>) =>
      enqueued.then(
        () => expect.fail('the job was accepted'),
        (error: unknown) => {
          expect(error).toBeInstanceOf(RateLimitedError);
          return error as RateLimitedError;
        },
      );
    const userCap = (how: string) =>
      `You already have 1 job waiting or running, the most allowed. ${how}, or cancel one.`;
    const queueCap = (how: string) => `The queue is full (2 jobs waiting). ${how}.`;

    await scheduler.enqueue(tenSeconds('u1'));
    const capped = await refusal(scheduler.enqueue(tenSeconds('u1')));
    expect(capped.limit).toBe('user-queue');
    expect(capped.userMessage).toBe(
      userCap(`They are ${WAITING_FOR_WORKER}; try again when one has finished`),
    );
    await scheduler.enqueue(tenSeconds('u2'));
    const full = await refusal(scheduler.enqueue(tenSeconds('u3')));
    expect(full.limit).toBe('queue');
    expect(full.userMessage).toBe(
      queueCap(`They are ${WAITING_FOR_WORKER}; please try again once one comes online`),
    );

    // A worker comes and takes u1's job: both refusals give a time again.
    const started = nextEvent(scheduler, 'started');
    pool.set([new HeldRunner('first')]);
    await started;
    expect((await refusal(scheduler.enqueue(tenSeconds('u1')))).userMessage).toBe(
      userCap('Try again when one has finished (in about 10 s)'),
    );
    const u3 = await scheduler.enqueue(tenSeconds('u3'));
    expect((await refusal(scheduler.enqueue(tenSeconds('u4')))).userMessage).toBe(
      queueCap('Please try again in about 10 s'),
    );

    // Its worker leaves while it runs u1's job: the queue frees no place until a worker comes, but
    // that job can still finish, so u1 is given its time.
    pool.set([]);
    await settle();
    expect((await refusal(scheduler.enqueue(tenSeconds('u4')))).userMessage).toBe(
      queueCap(`They are ${WAITING_FOR_WORKER}; please try again once one comes online`),
    );
    await scheduler.cancel(u3.job.id, u3.job.spec.requester);
    expect((await refusal(scheduler.enqueue(tenSeconds('u1')))).userMessage).toBe(
      userCap('Try again when one has finished (in about 10 s)'),
    );
  });

  it('an empty pool at start is allowed (a gateway before its first worker)', () => {
    expect(() => setup(new TestPool())).not.toThrow();
  });
});
