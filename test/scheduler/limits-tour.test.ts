/**
 * The tour never hits a wall: refusals say which rule bit (the burst or the window) and never
 * suggest typing options; `platform:*` admins; what a user has left; a job cancelled before it ran
 * gives its images back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RateLimitedError } from '../../src/errors.js';
import { ImageLimitError, Limits } from '../../src/scheduler/limits.js';
import { type Harness, harness, makeSpec, requester } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

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

const rules = (userBucket: { images: number; perMs: number; burst: number }, userIds: string[] = []) => ({
  userBucket,
  teamBucket: false as const,
  maxQueuedPerUser: 10,
  admins: { userIds, roleIds: [] },
});

describe('refusals say which rule bit', () => {
  it('the burst: 4 images then one more (an Upscale) is refused for the burst, with no typed alternative', async () => {
    const time = manualClock();
    h = await harness({ clock: time.clock, maxQueuedPerUser: 10, hold: true });
    await h.scheduler.enqueue(makeSpec('alice', { count: 4 }));
    time.advance(6_000);
    const error = await refusal(h.scheduler.enqueue(makeSpec('alice', { count: 1 })));
    expect(error.userMessage).toMatch(
      /^You've used the 4 images you can make at once; they come back one every 1 min/,
    );
    expect(error.userMessage).not.toMatch(/reached your limit of 10/);
    expect(error.userMessage).not.toMatch(/ask for/i);
    expect(error.userMessage).toMatch(/You can make the next image in 54 s\.$/);
    expect(error).toBeInstanceOf(ImageLimitError);
    expect(error).toMatchObject({ availableNow: 0, cost: 1 });
  });

  it('the window: when the burst holds the whole allowance, the refusal names the window', async () => {
    const time = manualClock();
    h = await harness({
      clock: time.clock,
      userBucket: { images: 4, perMs: 3_600_000, burst: 4 },
      maxQueuedPerUser: 10,
      hold: true,
    });
    await h.scheduler.enqueue(makeSpec('alice', { count: 3 }));
    const error = await refusal(h.scheduler.enqueue(makeSpec('alice', { count: 2 })));
    expect(error.userMessage).toBe(
      'You have 1 image left of your limit of 4 images per hour. You can make 2 images in 15 min.',
    );
    expect(error).toMatchObject({ availableNow: 1, cost: 2 });
  });
});

describe('admins', () => {
  it('`playground:*` makes everyone on the playground an admin, and nobody elsewhere', async () => {
    h = await harness({ admins: { userIds: ['playground:*'] }, hold: true });
    const operator = requester('operator', { platform: 'playground' });
    // 20 images at once: far beyond the default 4-image burst, and never refused.
    for (let i = 0; i < 5; i++) {
      await h.scheduler.enqueue({ ...makeSpec('operator', { count: 4 }), requester: operator });
    }
    expect(h.scheduler.isAdmin(requester('anyone', { platform: 'playground' }))).toBe(true);
    expect(h.scheduler.isAdmin(requester('anyone', { platform: 'discord' }))).toBe(false);
  });
});

describe('allowance', () => {
  it('says how many images can be made now and when the next comes', async () => {
    const time = manualClock();
    h = await harness({ clock: time.clock, maxQueuedPerUser: 10, hold: true });
    const limits = new Limits(h.store, rules({ images: 10, perMs: 600_000, burst: 4 }));
    expect(limits.allowance(requester('alice'), time.clock())).toMatchObject({
      unlimited: false,
      availableNow: 4,
      nextInMs: 0,
    });
    await h.scheduler.enqueue(makeSpec('alice', { count: 3 }));
    time.advance(30_000);
    expect(limits.allowance(requester('alice'), time.clock())).toEqual({
      unlimited: false,
      availableNow: 1,
      burst: 4,
      nextInMs: 30_000,
      fullInMs: 150_000,
    });
    const admin = new Limits(h.store, rules({ images: 10, perMs: 600_000, burst: 4 }, ['discord:alice']));
    expect(admin.allowance(requester('alice'), time.clock())).toEqual({ unlimited: true });
  });
});

describe('cancelled before it ran', () => {
  it('gives the images back', async () => {
    const time = manualClock();
    h = await harness({ clock: time.clock, maxQueuedPerUser: 10, hold: true });
    await h.scheduler.enqueue(makeSpec('bob', { count: 4 })); // runs (held), so alice's jobs wait
    const waiting = await h.scheduler.enqueue(makeSpec('alice', { count: 4 }));
    expect(waiting.job.state).toBe('queued');
    await refusal(h.scheduler.enqueue(makeSpec('alice', { count: 1 })));
    await h.scheduler.cancel(waiting.job.id, requester('alice'));
    await h.scheduler.enqueue(makeSpec('alice', { count: 4 }));
  });
});
