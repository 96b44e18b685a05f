import { afterEach, describe, expect, it, vi } from 'vitest';
import type { JobEvent } from '../../src/jobs/types.js';
import { type Harness, harness, makeSpec, NO_LIMITS, nextEvent, requester } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await h?.close();
  h = undefined;
});

// 64×64 images, 10 steps: 10 × 4096 / 2^20 units; at 256 s per unit-step a job is estimated 10 s.
const TEN_SECONDS_PER_JOB = { initialMsPerStep: 256_000 };
const job = (user: string, prompt: string) => makeSpec(user, { prompt, steps: 10, size: 64 });

function queuedOf(events: JobEvent[], jobId: string): [position: number, etaMs: number][] {
  return events.flatMap((e) =>
    e.type === 'queued' && e.jobId === jobId ? [[e.position, e.etaMs] as [number, number]] : [],
  );
}

describe('positions and ETA', () => {
  it('are given at enqueue and re-sent only to jobs whose position changed', async () => {
    let now = 1_000_000;
    h = await harness({ ...NO_LIMITS, ...TEN_SECONDS_PER_JOB, clock: () => now, hold: true });
    const alice = await h.scheduler.enqueue(job('alice', 'alice'));
    expect([alice.position, alice.etaMs]).toEqual([1, 10_000]);
    const started = h.events.find((e) => e.type === 'started');
    expect(started).toEqual({ type: 'started', jobId: alice.job.id, etaMs: 10_000 });

    const bob = await h.scheduler.enqueue(job('bob', 'bob'));
    const carol = await h.scheduler.enqueue(job('carol', 'carol'));
    expect([bob.position, bob.etaMs]).toEqual([1, 20_000]);
    expect([carol.position, carol.etaMs]).toEqual([2, 30_000]);
    now += 3_000;
    expect(h.scheduler.position(carol.job.id)).toEqual({ position: 2, etaMs: 27_000 });
    expect(h.scheduler.position(alice.job.id)).toEqual({ position: 0, etaMs: 7_000 });

    // alice's job took 4 s instead of 10: the moving average now says 4 s per job.
    now += 1_000;
    const carolMoved = nextEvent(h.scheduler, 'queued', (e) => e.jobId === carol.job.id);
    h.pipeline.calls[0]!.release();
    expect(await carolMoved).toEqual({ type: 'queued', jobId: carol.job.id, position: 1, etaMs: 8_000 });
    expect(h.events.find((e) => e.type === 'started' && e.jobId === bob.job.id)).toMatchObject({
      etaMs: 4_000,
    });

    // A newcomer lands behind carol: carol's position does not change, so she is not told again.
    const dave = await h.scheduler.enqueue(job('dave', 'dave'));
    expect(dave.position).toBe(2);
    await h.pipeline.nextCall(1);
    expect(queuedOf(h.events, carol.job.id)).toEqual([
      [2, 30_000],
      [1, 8_000],
    ]);
    expect(queuedOf(h.events, bob.job.id)).toEqual([[1, 20_000]]);
  });

  it('coalesces position updates to one pass per positionUpdateIntervalMs', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    h = await harness({ ...NO_LIMITS, positionUpdateIntervalMs: 1000, hold: true });
    await h.scheduler.enqueue(job('alice', 'alice'));
    const bob = await h.scheduler.enqueue(job('bob', 'bob'));
    const carol = await h.scheduler.enqueue(job('carol', 'carol'));
    const dave = await h.scheduler.enqueue(job('dave', 'dave'));
    await h.scheduler.cancel(bob.job.id, requester('bob'));
    await Promise.resolve();
    expect(queuedOf(h.events, carol.job.id).map(([position]) => position)).toEqual([2]);

    vi.advanceTimersByTime(999);
    expect(queuedOf(h.events, carol.job.id).map(([position]) => position)).toEqual([2]);
    vi.advanceTimersByTime(1);
    expect(queuedOf(h.events, carol.job.id).map(([position]) => position)).toEqual([2, 1]);
    expect(queuedOf(h.events, dave.job.id).map(([position]) => position)).toEqual([3, 2]);
  });
});
