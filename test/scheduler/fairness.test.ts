import { afterEach, describe, expect, it } from 'vitest';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openStore } from '../../src/store/index.js';
import { admin } from './admin.js';
import { type Harness, harness, makeSpec, NO_LIMITS, TestPipeline, tempDataDir } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('Scheduler fairness', () => {
  it("runs users in turn: a newcomer's first job goes before the queued jobs of a user with 20", async () => {
    h = await harness({ ...NO_LIMITS, hold: true });
    const first = await h.scheduler.enqueue(makeSpec('alice', { prompt: 'alice 1' }));
    for (let i = 2; i <= 20; i++) await h.scheduler.enqueue(makeSpec('alice', { prompt: `alice ${i}` }));
    await h.pipeline.nextCall(0);
    const bob = await h.scheduler.enqueue(makeSpec('bob', { prompt: 'bob 1' }));
    expect(bob.position).toBe(1);

    h.pipeline.hold = false;
    h.pipeline.calls[0]!.release();
    await h.scheduler.onIdle();

    const order = h.runOrder();
    expect(order[0]).toBe('alice 1');
    expect(order.slice(1, 3)).toEqual(['bob 1', 'alice 2']);
    expect(order).toHaveLength(21);
    expect(h.scheduler.getJob(first.job.id)?.state).toBe('done');
  });

  it('interleaves three users round-robin, each in the order they asked', async () => {
    h = await harness({ ...NO_LIMITS, admins: { userIds: ['root'] } });
    h.scheduler.pause(admin);
    for (const [user, n] of [
      ['alice', 3],
      ['bob', 3],
      ['carol', 1],
    ] as const) {
      for (let i = 1; i <= n; i++) await h.scheduler.enqueue(makeSpec(user, { prompt: `${user} ${i}` }));
    }
    h.scheduler.resume(admin);
    await h.scheduler.onIdle();
    expect(h.runOrder()).toEqual(['alice 1', 'bob 1', 'carol 1', 'alice 2', 'bob 2', 'alice 3', 'bob 3']);
  });

  it('puts the user served least recently first, so a returning user does not wait behind a busy one', async () => {
    h = await harness({ ...NO_LIMITS, hold: true });
    await h.scheduler.enqueue(makeSpec('alice', { prompt: 'alice 1' }));
    await h.scheduler.enqueue(makeSpec('alice', { prompt: 'alice 2' }));
    await h.scheduler.enqueue(makeSpec('alice', { prompt: 'alice 3' }));
    await h.scheduler.enqueue(makeSpec('bob', { prompt: 'bob 1' }));
    await h.pipeline.nextCall(0);
    h.pipeline.calls[0]!.release();
    await h.pipeline.nextCall(1); // bob 1
    // alice 2 waits, alice has been served (alice 1) after carol; carol never: carol goes first.
    const carol = await h.scheduler.enqueue(makeSpec('carol', { prompt: 'carol 1' }));
    expect(carol.position).toBe(1);
    h.pipeline.hold = false;
    h.pipeline.calls[1]!.release();
    await h.scheduler.onIdle();
    expect(h.runOrder()).toEqual(['alice 1', 'bob 1', 'carol 1', 'alice 2', 'alice 3']);
  });

  it('runs one job per pipeline at a time: two pipelines run two jobs at once', async () => {
    const dir = tempDataDir();
    const store = openStore({ dataDir: dir.dir });
    const pipelines = [new TestPipeline({ hold: true }), new TestPipeline({ hold: true })];
    const scheduler = new Scheduler(store, {
      ...NO_LIMITS,
      runners: pipelines.map((pipeline) => new JobExecutor({ pipeline, store })),
    });
    try {
      await scheduler.start();
      const jobs = [];
      for (const user of ['alice', 'bob', 'carol'])
        jobs.push(await scheduler.enqueue(makeSpec(user, { prompt: user })));
      const [one, two] = await Promise.all([pipelines[0]!.nextCall(0), pipelines[1]!.nextCall(0)]);
      expect([one.request.prompt, two.request.prompt].sort()).toEqual(['alice', 'bob']);
      expect(scheduler.pending).toBe(2);
      expect(scheduler.size).toBe(1);
      expect(jobs[2]!.position).toBe(1);

      // The third job waits for a free pipeline, then runs on the one that freed up.
      two.release();
      const third = await pipelines[1]!.nextCall(1);
      expect(third.request.prompt).toBe('carol');
      expect(pipelines[0]!.calls).toHaveLength(1);
      one.release();
      third.release();
      await scheduler.onIdle();
      expect(jobs.map(({ job }) => scheduler.getJob(job.id)?.state)).toEqual(['done', 'done', 'done']);
    } finally {
      await scheduler.stop();
      store.close();
      dir.cleanup();
    }
  });
});
