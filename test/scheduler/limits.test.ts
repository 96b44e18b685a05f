import { afterEach, describe, expect, it } from 'vitest';
import { RateLimitedError } from '../../src/errors.js';
import { QueuePausedError } from '../../src/scheduler/index.js';
import { type Harness, harness, makeSpec, requester } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A clock the test moves by hand; the pipeline holds every job so nothing finishes. */
function manualClock(start = 1_700_000_000_000) {
  let now = start;
  return { clock: () => now, advance: (ms: number) => (now += ms) };
}

async function refusal(promise: Promise<unknown>): Promise<RateLimitedError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RateLimitedError);
  return error as RateLimitedError;
}

describe('Scheduler limits', () => {
  it('user bucket: 10 images per 10 minutes, burst 4, says when the next image is possible', async () => {
    const time = manualClock();
    h = await harness({ clock: time.clock, maxQueuedPerUser: 10, hold: true });
    await h.scheduler.enqueue(makeSpec('alice', { count: 4 }));

    const error = await refusal(h.scheduler.enqueue(makeSpec('alice', { count: 1 })));
    expect(error.limit).toBe('user');
    expect(error.code).toBe('RATE_LIMITED');
    expect(error.retryAfterMs).toBe(60_000);
    expect(error.userMessage).toBe(
      "You've used the 4 images you can make at once; they come back one every 1 min (10 images per 10 minutes). You can make the next image in 1 min.",
    );

    time.advance(90_000); // 1.5 tokens back
    const four = await refusal(h.scheduler.enqueue(makeSpec('alice', { count: 4 })));
    expect(four.retryAfterMs).toBe(150_000);
    expect(four.userMessage).toBe(
      'You have 1 of the 4 images you can make at once left; they come back one every 1 min (10 images per 10 minutes). You can make 4 images in 2 min 30 s.',
    );
    await h.scheduler.enqueue(makeSpec('alice', { count: 1 }));
    // Another user has their own bucket.
    await h.scheduler.enqueue(makeSpec('bob', { count: 4 }));
  });

  it('user bucket: a request larger than the burst says the most allowed at once', async () => {
    h = await harness({ userBucket: { images: 10, perMs: 600_000, burst: 2 }, hold: true });
    const error = await refusal(h.scheduler.enqueue(makeSpec('alice', { count: 3 })));
    expect(error.limit).toBe('user');
    expect(error.userMessage).toBe(
      'You can make at most 2 images at a time (10 images per 10 minutes). Ask for fewer images.',
    );
  });

  it('team bucket: members share it, and the refusal names the team', async () => {
    const time = manualClock();
    h = await harness({
      clock: time.clock,
      teamBucket: { images: 30, perMs: 3_600_000, burst: 5 },
      hold: true,
    });
    await h.scheduler.enqueue(makeSpec('alice', { count: 4, teamId: 'guild-1' }));
    const error = await refusal(h.scheduler.enqueue(makeSpec('bob', { count: 2, teamId: 'guild-1' })));
    expect(error.limit).toBe('team');
    expect(error.retryAfterMs).toBe(120_000);
    expect(error.userMessage).toBe(
      'This server has 1 of the 5 images its members can make at once left; they come back one every 2 min (30 images per hour). It can make 2 images in 2 min.',
    );
    // Another guild is not affected, and bob's own bucket was not charged by the refusal.
    await h.scheduler.enqueue(makeSpec('bob', { count: 4, teamId: 'guild-2' }));
  });

  it('per-user cap: at most 3 jobs waiting or running, with the time until one is done', async () => {
    h = await harness({ userBucket: false, hold: true, initialMsPerStep: 1000, clock: manualClock().clock });
    for (let i = 0; i < 3; i++) await h.scheduler.enqueue(makeSpec('alice', { size: 1024, steps: 10 }));
    const error = await refusal(h.scheduler.enqueue(makeSpec('alice')));
    expect(error.limit).toBe('user-queue');
    expect(error.code).toBe('USER_QUEUE_FULL');
    // The running job was estimated at 10 steps × 1 s.
    expect(error.retryAfterMs).toBe(10_000);
    expect(error.userMessage).toBe(
      'You already have 3 jobs waiting or running, the most allowed. Try again when one has finished (in about 10 s), or cancel one.',
    );
    await h.scheduler.enqueue(makeSpec('bob'));
  });

  it('global cap: refuses when the queue holds maxQueueSize waiting jobs', async () => {
    const time = manualClock();
    h = await harness({
      userBucket: false,
      maxQueueSize: 2,
      hold: true,
      initialMsPerStep: 1000,
      clock: time.clock,
    });
    await h.scheduler.enqueue(makeSpec('a', { size: 1024, steps: 20 })); // runs
    await h.scheduler.enqueue(makeSpec('b'));
    await h.scheduler.enqueue(makeSpec('c'));
    const error = await refusal(h.scheduler.enqueue(makeSpec('d')));
    expect(error.limit).toBe('queue');
    expect(error.code).toBe('QUEUE_FULL');
    expect(error.retryAfterMs).toBe(20_000);
    expect(error.userMessage).toBe('The queue is full (2 jobs waiting). Please try again in about 20 s.');
    // The wait shrinks as the running job gets on.
    time.advance(15_000);
    expect((await refusal(h.scheduler.enqueue(makeSpec('d')))).retryAfterMs).toBe(5_000);
  });

  it('admins (by user id or by role) are exempt from every limit', async () => {
    h = await harness({
      maxQueueSize: 1,
      maxQueuedPerUser: 1,
      admins: { userIds: ['root', 'slack:U1'], roleIds: ['role-mod'] },
      hold: true,
    });
    for (let i = 0; i < 4; i++) await h.scheduler.enqueue(makeSpec('root', { count: 4 }));
    for (let i = 0; i < 2; i++)
      await h.scheduler.enqueue(makeSpec('mod', { count: 4, roleIds: ['role-mod'] }));
    expect(h.scheduler.isAdmin(requester('U1', { platform: 'slack' }))).toBe(true);
    expect(h.scheduler.isAdmin(requester('U1'))).toBe(false);
    expect(h.scheduler.size).toBe(5);
    // Everyone else still meets the caps.
    expect((await refusal(h.scheduler.enqueue(makeSpec('alice')))).limit).toBe('queue');
  });

  it('team settings override limits and can pause a team', async () => {
    h = await harness({ hold: true });
    h.store.teamSettings.patch('discord', 'guild-1', { limits: { user: false, maxQueuedPerUser: 5 } });
    for (let i = 0; i < 5; i++) await h.scheduler.enqueue(makeSpec('alice', { count: 4, teamId: 'guild-1' }));
    expect((await refusal(h.scheduler.enqueue(makeSpec('alice', { teamId: 'guild-1' })))).limit).toBe(
      'user-queue',
    );

    h.store.teamSettings.patch('discord', 'guild-2', { paused: true });
    await expect(h.scheduler.enqueue(makeSpec('bob', { teamId: 'guild-2' }))).rejects.toThrow(
      QueuePausedError,
    );
    await expect(h.scheduler.enqueue(makeSpec('bob', { teamId: 'guild-2' }))).rejects.toMatchObject({
      code: 'QUEUE_PAUSED',
      userMessage: 'An admin has paused image generation here for now.',
    });
  });

  it('buckets are persisted: a new scheduler on the same data dir remembers them', async () => {
    const time = manualClock();
    h = await harness({ clock: time.clock, hold: true });
    await h.scheduler.enqueue(makeSpec('alice', { count: 4 }));
    const dir = h.dir;
    for (const call of h.pipeline.calls) call.release();
    await h.scheduler.onIdle();
    await h.scheduler.stop();
    h.store.close();

    const second = await harness({ clock: time.clock, dir });
    try {
      expect((await refusal(second.scheduler.enqueue(makeSpec('alice')))).limit).toBe('user');
    } finally {
      await second.close();
    }
    h = await harness({ dir }); // cleaned up by afterEach
  });

  it('gives the images back when a waiting job is cancelled, not when a running one is', async () => {
    h = await harness({ hold: true });
    const running = await h.scheduler.enqueue(makeSpec('alice', { count: 2 }));
    const waiting = await h.scheduler.enqueue(makeSpec('alice', { count: 2 }));
    expect((await refusal(h.scheduler.enqueue(makeSpec('alice')))).limit).toBe('user');
    await h.scheduler.cancel(waiting.job.id, requester('alice'));
    await h.scheduler.cancel(running.job.id, requester('alice'));
    await h.scheduler.enqueue(makeSpec('alice', { count: 2 }));
    expect((await refusal(h.scheduler.enqueue(makeSpec('alice')))).limit).toBe('user');
  });
});
