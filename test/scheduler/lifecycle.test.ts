import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ForbiddenError, NotFoundError } from '../../src/errors.js';
import { JobTimeoutError } from '../../src/scheduler/index.js';
import { admin } from './admin.js';
import { type Harness, harness, makeSpec, NO_LIMITS, nextEvent, requester, settle } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await h?.close();
  h = undefined;
});

const ADMINS = { admins: { userIds: ['root'] } };

describe('.cancel()', () => {
  it('cancels a waiting job for its owner: it never runs, and the jobs behind move up', async () => {
    h = await harness({ ...NO_LIMITS, hold: true });
    await h.scheduler.enqueue(makeSpec('alice', { prompt: 'running' }));
    const bob = await h.scheduler.enqueue(makeSpec('bob', { prompt: 'bob' }));
    const carol = await h.scheduler.enqueue(makeSpec('carol', { prompt: 'carol' }));
    expect(carol.position).toBe(2);

    const movedUp = nextEvent(h.scheduler, 'queued', (e) => e.jobId === carol.job.id);
    const record = await h.scheduler.cancel(bob.job.id, requester('bob'));
    expect(record.state).toBe('cancelled');
    expect(h.events.filter((e) => e.jobId === bob.job.id).map((e) => e.type)).toEqual([
      'queued',
      'cancelled',
    ]);
    expect(h.events.find((e) => e.type === 'cancelled')).toEqual({
      type: 'cancelled',
      jobId: bob.job.id,
      by: 'bob',
    });
    expect((await movedUp).position).toBe(1);

    h.pipeline.hold = false;
    h.pipeline.calls[0]!.release();
    await h.scheduler.onIdle();
    expect(h.runOrder()).toEqual(['running', 'carol']);
  });

  it('lets only the owner or an admin cancel', async () => {
    h = await harness({ ...NO_LIMITS, ...ADMINS, hold: true });
    const job = await h.scheduler.enqueue(makeSpec('alice'));
    await expect(h.scheduler.cancel(job.job.id, requester('mallory'))).rejects.toThrow(ForbiddenError);
    await expect(h.scheduler.cancel(job.job.id, requester('alice', { platform: 'slack' }))).rejects.toThrow(
      ForbiddenError,
    );
    expect((await h.scheduler.cancel(job.job.id, admin)).state).toBe('cancelled');
    await expect(h.scheduler.cancel(job.job.id, admin)).rejects.toMatchObject({
      userMessage: 'That job has already finished, so there is nothing to cancel.',
    });
    await expect(h.scheduler.cancel('nope', admin)).rejects.toThrow(NotFoundError);
  });

  it('stops a running job through its AbortSignal, between steps, then runs the next job', async () => {
    h = await harness({ ...NO_LIMITS, hold: true });
    const running = await h.scheduler.enqueue(makeSpec('alice', { prompt: 'long' }));
    await h.scheduler.enqueue(makeSpec('bob', { prompt: 'next' }));
    const call = await h.pipeline.nextCall(0);

    await h.scheduler.cancel(running.job.id, requester('alice'));
    expect(call.signal?.aborted).toBe(true);
    expect(await call.finished).toBe('cancelled');

    const next = await h.pipeline.nextCall(1);
    expect(next.request.prompt).toBe('next');
    next.release();
    await h.scheduler.onIdle();
    const types = h.events.filter((e) => e.jobId === running.job.id).map((e) => e.type);
    expect(types).toEqual(['queued', 'started', 'cancelled']);
    expect(h.scheduler.getJob(running.job.id)).toMatchObject({ state: 'cancelled' });
    expect(h.scheduler.getJob(running.job.id)?.result).toBeUndefined();
  });
});

describe('timeouts', () => {
  it('aborts a job that runs past jobTimeoutMs and fails it with a clear message', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    h = await harness({ ...NO_LIMITS, jobTimeoutMs: 5000, hold: true });
    const slow = await h.scheduler.enqueue(makeSpec('alice', { prompt: 'slow' }));
    await h.scheduler.enqueue(makeSpec('bob', { prompt: 'after' }));
    const call = await h.pipeline.nextCall(0);

    vi.advanceTimersByTime(4999);
    expect(call.signal?.aborted).toBe(false);
    const failed = nextEvent(h.scheduler, 'failed');
    vi.advanceTimersByTime(1);
    expect(await failed).toEqual({
      type: 'failed',
      jobId: slow.job.id,
      reason: 'job timed out after 5000 ms',
      userMessage: 'Your job took longer than 5 s and was stopped. Try fewer images or steps.',
    });
    expect(call.signal?.reason).toBeInstanceOf(JobTimeoutError);
    expect(await call.finished).toBe('cancelled');
    expect(h.scheduler.getJob(slow.job.id)).toMatchObject({
      state: 'failed',
      error: 'job timed out after 5000 ms',
    });

    const next = await h.pipeline.nextCall(1);
    expect(next.request.prompt).toBe('after');
  });
});

describe('failures', () => {
  it('fails a job the pipeline throws on, tells the user why and gives the images back', async () => {
    h = await harness({ userBucket: { images: 10, perMs: 600_000, burst: 4 }, maxQueuedPerUser: 5 });
    const job = await h.scheduler.enqueue(makeSpec('alice', { prompt: 'explode', count: 4 }));
    expect(await h.scheduler.waitFor(job.job.id)).toEqual({
      type: 'failed',
      jobId: job.job.id,
      reason: 'test pipeline exploded',
      userMessage: 'The GPU ran out of memory.',
    });
    // The 4 images were refunded, so another 4 fit in the bucket.
    const again = await h.scheduler.enqueue(makeSpec('alice', { count: 4 }));
    expect((await h.scheduler.waitFor(again.job.id)).type).toBe('done');
  });

  it('keeps going when an event listener throws', async () => {
    h = await harness(NO_LIMITS);
    h.scheduler.on('started', () => {
      throw new Error('adapter bug');
    });
    const job = await h.scheduler.enqueue(makeSpec('alice'));
    expect((await h.scheduler.waitFor(job.job.id)).type).toBe('done');
  });
});

describe('.pause() and .resume()', () => {
  it('holds waiting jobs while paused (running ones finish), admins only, remembered across restarts', async () => {
    h = await harness({ ...NO_LIMITS, ...ADMINS, hold: true });
    const first = await h.scheduler.enqueue(makeSpec('alice', { prompt: 'first' }));
    const call = await h.pipeline.nextCall(0);
    expect(() => h!.scheduler.pause(requester('alice'))).toThrow(ForbiddenError);
    h.scheduler.pause(admin);
    expect(h.scheduler.isPaused).toBe(true);
    const second = await h.scheduler.enqueue(makeSpec('bob', { prompt: 'second' }));
    expect(second.paused).toBe(true);

    call.release();
    expect((await h.scheduler.waitFor(first.job.id)).type).toBe('done');
    await settle();
    expect(h.pipeline.calls).toHaveLength(1);

    // A restart keeps the queue paused and the job waiting.
    const dir = h.dir;
    await h.scheduler.stop();
    h.store.close();
    h = await harness({ ...NO_LIMITS, ...ADMINS, dir });
    expect(h.scheduler.isPaused).toBe(true);
    await settle();
    expect(h.pipeline.calls).toHaveLength(0);
    expect(() => h!.scheduler.resume(requester('bob'))).toThrow(ForbiddenError);
    h.scheduler.resume(admin);
    expect((await h.scheduler.waitFor(second.job.id)).type).toBe('done');
    expect(h.runOrder()).toEqual(['second']);
  });
});

describe('.list()', () => {
  it("shows a user's own jobs, or everyone's to an admin, in run order with positions", async () => {
    h = await harness({ ...NO_LIMITS, ...ADMINS, hold: true });
    const a1 = await h.scheduler.enqueue(makeSpec('alice'));
    const a2 = await h.scheduler.enqueue(makeSpec('alice'));
    const b1 = await h.scheduler.enqueue(makeSpec('bob'));
    await h.pipeline.nextCall(0);
    const mine = h.scheduler.list(requester('alice'));
    expect(mine.map((e) => [e.job.id, e.state, e.position])).toEqual([
      [a1.job.id, 'running', 0],
      [a2.job.id, 'queued', 2],
    ]);
    expect(() => h!.scheduler.list(requester('alice'), { all: true })).toThrow(ForbiddenError);
    expect(h.scheduler.list(admin, { all: true }).map((e) => e.job.id)).toEqual([
      a1.job.id,
      b1.job.id,
      a2.job.id,
    ]);
  });
});

describe('logging', () => {
  it('writes one line per job transition with queue wait and run time, without the prompt', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
          done();
        },
      }),
    );
    let now = 5_000;
    h = await harness({ ...NO_LIMITS, logger, clock: () => now, hold: true });
    const job = await h.scheduler.enqueue(makeSpec('alice', { prompt: 'secret plans' }));
    now += 2_000;
    (await h.pipeline.nextCall(0)).release();
    await h.scheduler.waitFor(job.job.id);
    const transitions = lines.filter((line) => line.jobId === job.job.id);
    expect(transitions.map((line) => `${line.from} → ${line.to}`)).toEqual([
      'null → queued',
      'queued → running',
      'running → done',
    ]);
    expect(transitions[2]).toMatchObject({ user: 'discord:alice', queueWaitMs: 0, runMs: 2_000 });
    expect(JSON.stringify(lines)).not.toContain('secret plans');
  });
});

describe('.start() and .stop()', () => {
  it('holds jobs enqueued before start() until it, and runs each once', async () => {
    h = await harness({ ...NO_LIMITS, start: false });
    const early = await h.scheduler.enqueue(makeSpec('alice', { prompt: 'early' }));
    await settle();
    expect(h.pipeline.calls).toHaveLength(0);
    expect((await h.scheduler.start()).requeued).toEqual([]);
    expect((await h.scheduler.waitFor(early.job.id)).type).toBe('done');
    expect(h.runOrder()).toEqual(['early']);
  });

  it('leaves running and waiting jobs unfinished on stop(), for the next start, and refuses new ones', async () => {
    h = await harness({ ...NO_LIMITS, hold: true });
    const running = await h.scheduler.enqueue(makeSpec('alice'));
    const waiting = await h.scheduler.enqueue(makeSpec('bob'));
    const call = await h.pipeline.nextCall(0);
    await h.scheduler.stop();
    expect(call.signal?.aborted).toBe(true);
    expect(h.store.jobs.get(running.job.id)?.state).toBe('running');
    expect(h.store.jobs.get(waiting.job.id)?.state).toBe('queued');
    expect(h.events.filter((e) => e.type === 'failed' || e.type === 'cancelled')).toEqual([]);
    await expect(h.scheduler.enqueue(makeSpec('carol'))).rejects.toMatchObject({
      code: 'QUEUE_PAUSED',
      userMessage: 'The bot is restarting. Please try again in a minute.',
    });
  });
});
