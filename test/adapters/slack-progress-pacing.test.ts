/**
 * Progress on Slack within Slack's limits, on a fake clock: the SlackChatAdapter on the real
 * WebClient against the Slack simulator, which enforces chat.update's Tier 3 (50 a minute per
 * workspace) and 1 message a second per channel (bursts of 5), answering 429 beyond them. The
 * clock is vitest's (setTimeout and Date), so the adapter's pacing and the simulator's limits
 * read the same time; the HTTP round trips are real and awaited while the clock stands still
 * (`chat.settled()`), so every call lands at the fake time it was made.
 *
 * The adapter runs with its defaults: one progress edit per message per 2 s, one per channel
 * per 1 s, 40 chat.update calls a minute for progress.
 */

import { webApi } from '@slack/bolt';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SLACK_PROGRESS_DEFAULTS, SlackChatAdapter } from '../../adapters/slack/chat-adapter.js';
import type { ChatImage, ChatMessage, PostedMessage } from '../../commands/types.js';
import { createLogger } from '../../src/log.js';
import {
  type ApiCallRecord,
  type SlackChannel,
  type SlackSimulator,
  startSlackSimulator,
} from '../simulators/slack/index.js';

const { progressIntervalMs, channelIntervalMs, updatesPerMinute } = SLACK_PROGRESS_DEFAULTS;

let s: SlackSimulator;
let chat: SlackChatAdapter;
/** chat.update calls naming a file that the fake "still processing" refuses (as Slack does). */
let refuseImageBlocks = 0;

const slackFetch: webApi.FetchFunction = async (url, init) => {
  const body = typeof init?.body === 'string' ? decodeURIComponent(init.body) : '';
  if (String(url).endsWith('/chat.update') && body.includes('slack_file') && refuseImageBlocks > 0) {
    refuseImageBlocks -= 1;
    return new Response(
      JSON.stringify({
        ok: false,
        error: 'invalid_blocks',
        errors: ['invalid slack file [json-pointer:/blocks/1]'],
      }),
      { status: 200, headers: { 'content-type': 'application/json' } },
    ) as unknown as Awaited<ReturnType<webApi.FetchFunction>>;
  }
  return fetch(url, init as RequestInit) as unknown as Awaited<ReturnType<webApi.FetchFunction>>;
};

beforeEach(async () => {
  s = await startSlackSimulator();
  refuseImageBlocks = 0;
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: Date.UTC(2026, 0, 1) });
  chat = new SlackChatAdapter({
    client: new webApi.WebClient(s.botToken, {
      slackApiUrl: s.apiUrl,
      fetch: slackFetch,
      // A 429 must show in the call log, not be waited out on a clock that stands still.
      rejectRateLimitedCalls: true,
      retryConfig: { retries: 0 },
    }),
    uploadLimitBytes: 5_000_000,
    logger: createLogger({ level: 'silent' }),
  });
});
afterEach(async () => {
  chat.dropWaitingProgress();
  vi.useRealTimers();
  await s.stop();
});

/** One job's message and the progress states offered for it, with the fake time of each. */
interface Job {
  name: string;
  posted: PostedMessage;
  offered: { at: number; step: number; preview: boolean }[];
}

const previews = new Map<number, Buffer>();
/** A WebP preview (what the bot sends by default), different for each step. */
async function preview(step: number): Promise<ChatImage> {
  let data = previews.get(step);
  if (!data) {
    const shade = (step * 9) % 256;
    data = await sharp({
      create: { width: 32, height: 32, channels: 3, background: { r: shade, g: 40, b: 90 } },
    })
      .webp()
      .toBuffer();
    previews.set(step, data);
  }
  return { data, filename: 'preview.webp', mime: 'image/webp' };
}

async function resultImage(): Promise<ChatImage> {
  const data = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#aa3300' } })
    .png()
    .toBuffer();
  return { data, filename: 'atelier-1.png', mime: 'image/png', width: 64, height: 64 };
}

async function startJob(name: string, channel: SlackChannel = s.channels.general): Promise<Job> {
  const posted = await chat.post(
    { platform: 'slack', channelId: channel.id, teamId: s.teamId },
    { text: `**${name}**\n⏳ Queued`, buttons: [[{ id: `at1:c:${name}`, label: 'Cancel' }]] },
  );
  return { name, posted, offered: [] };
}

async function offerStep(job: Job, step: number, total: number, withPreview: boolean): Promise<void> {
  const message: ChatMessage = {
    text: `**${job.name}**\n🎨 step ${step}/${total}`,
    ...(withPreview ? { preview: await preview(step) } : {}),
    buttons: [[{ id: `at1:c:${job.name}`, label: 'Cancel' }]],
  };
  job.offered.push({ at: Date.now(), step, preview: withPreview });
  await chat.edit(job.posted, message, { transient: true });
}

/**
 * Moves the fake clock on by `ms`, one timer at a time: after each the clock stands while the
 * calls it started make their real round trips, so Slack sees each call at the time it was made.
 */
async function advance(ms: number): Promise<void> {
  const until = Date.now() + ms;
  // A timer of our own at `until`, so stepping to the next timer never passes it.
  setTimeout(() => {}, ms);
  for (;;) {
    await chat.settled();
    if (Date.now() >= until) return;
    await vi.advanceTimersToNextTimerAsync();
  }
}

const updatesOf = (job: Job) =>
  s.calls.filter((c) => c.method === 'chat.update' && c.args.ts === job.posted.messageId);
const stepOf = (call: ApiCallRecord) => Number(/step (\d+)\//.exec(String(call.args.text))?.[1] ?? 0);
const imageIdOf = (call: ApiCallRecord) => {
  const blocks = JSON.parse(String(call.args.blocks)) as { type: string; slack_file?: { id: string } }[];
  return blocks.find((b) => b.type === 'image')?.slack_file?.id;
};
const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]!);

/** The checks every scenario ends with: Slack never said 429, and the spacing held. */
function expectWithinSlackLimits(jobs: Job[]): void {
  expect(s.rateLimitedCalls).toEqual([]);
  expect(s.calls.filter((c) => !c.ok)).toEqual([]);
  const progress = s.calls.filter(
    (c) => c.method === 'chat.update' && /step \d+\//.test(String(c.args.text)),
  );
  for (const job of jobs) {
    const posts = s.calls.filter(
      (c) => c.method === 'chat.postMessage' && String(c.args.text).includes(job.name),
    );
    const times = [
      posts[0]!.at,
      ...progress.filter((c) => c.args.ts === job.posted.messageId).map((c) => c.at),
    ];
    for (const gap of gaps(times)) expect(gap).toBeGreaterThanOrEqual(progressIntervalMs);
  }
  for (const channel of new Set(jobs.map((j) => j.posted.channelId))) {
    const times = progress.filter((c) => c.args.channel === channel).map((c) => c.at);
    for (const gap of gaps(times)) expect(gap).toBeGreaterThanOrEqual(channelIntervalMs);
  }
  const updates = s.calls.filter((c) => c.method === 'chat.update').map((c) => c.at);
  for (const at of updates) {
    expect(updates.filter((t) => t > at - 60_000 && t <= at).length).toBeLessThanOrEqual(50);
  }
}

/**
 * Each progress edit shows the newest step offered by then (one offered at the very same instant
 * may come just after it), and a preview as soon as one was offered.
 */
function expectNewestShown(job: Job): void {
  for (const call of updatesOf(job).filter((c) => stepOf(c) > 0)) {
    const before = job.offered.filter((o) => o.at < call.at).at(-1)?.step ?? 0;
    const atTheLatest = job.offered.filter((o) => o.at <= call.at).at(-1)!.step;
    expect(stepOf(call)).toBeGreaterThanOrEqual(before);
    expect(stepOf(call)).toBeLessThanOrEqual(atTheLatest);
    if (job.offered.some((o) => o.preview && o.at < call.at)) expect(imageIdOf(call)).toBeDefined();
  }
}

describe('Slack progress pacing (fake clock, Slack’s limits enforced by the simulator)', () => {
  it('a fast 28-step job: a few paced edits, each the newest step with its preview; the result replaces them', async () => {
    const job = await startJob('a lighthouse');
    const started = Date.now();
    // A step every 60 ms, a preview every 5 steps and with the last: 28 offers in 1.7 s.
    for (let step = 1; step <= 28; step++) {
      await advance(60);
      await offerStep(job, step, 28, step % 5 === 0 || step === 28);
    }
    // The last step waits for its turn; then decoding takes a while and the result comes.
    await advance(progressIntervalMs);
    const progress = updatesOf(job);
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / progressIntervalMs));
    expect(stepOf(progress.at(-1)!)).toBe(28);
    expectNewestShown(job);

    // Previews are JPEG files in the job's thread (an image block cannot show WebP); the one
    // shown is the newest, earlier ones were deleted when it replaced them.
    const shownPreviews = progress.map(imageIdOf).filter((id): id is string => id !== undefined);
    const live = () => s.messages(s.channels.general).find((m) => m.ts === job.posted.messageId)!;
    const current = s.files().find((f) => f.id === shownPreviews.at(-1))!;
    expect(current.filename).toBe('preview.jpg');
    expect((await sharp(current.data!).metadata()).format).toBe('jpeg');
    expect(s.files().filter((f) => f.filename.startsWith('preview'))).toEqual([current]);
    expect(s.replies(live()).flatMap((m) => m.files.map((f) => f.id))).toEqual([current.id]);

    await advance(300);
    await chat.edit(job.posted, { text: '**a lighthouse**\nseed 1 · 28 steps', image: await resultImage() });
    const final = live();
    expect(final.text).toContain('28 steps');
    const resultFile = s.files().find((f) => f.id === imageIdOf(updatesOf(job).at(-1)!))!;
    expect(resultFile.filename).toBe('atelier-1.png');
    // The thread ends with the result alone; no preview file is left.
    expect(s.files()).toEqual([resultFile]);
    expect(s.replies(final).map((m) => m.files.map((f) => f.id))).toEqual([[resultFile.id]]);
    // Nothing was waiting, and nothing comes after the result.
    const updatesAtResult = updatesOf(job).length;
    await advance(10_000);
    expect(updatesOf(job)).toHaveLength(updatesAtResult);
    expect(chat.progressWaiting).toBe(0);
    expectWithinSlackLimits([job]);
  });

  it('a final edit replaces the progress waiting for its turn at once', async () => {
    const job = await startJob('a fox');
    await advance(100);
    await offerStep(job, 1, 4, false);
    expect(chat.progressWaiting).toBe(1);
    await chat.edit(job.posted, { text: '**a fox**\n✖️ Cancelled.' });
    expect(chat.progressWaiting).toBe(0);
    await advance(10_000);
    expect(updatesOf(job).map((c) => c.args.text)).toEqual(['*a fox*\n✖️ Cancelled.']);
    expectWithinSlackLimits([job]);
  });

  it('six long jobs in three channels for three minutes: within Tier 3 and the channel rate, none starved', async () => {
    const channels = [s.channels.general, s.channels.showcase, s.createChannel('art')];
    const jobs: Job[] = [];
    for (let i = 0; i < 6; i++) {
      jobs.push(await startJob(`job ${i}`, channels[i % 3]));
      await advance(1000); // the channel takes a message a second
    }
    // A step every 250 ms for 3 minutes: far more than Slack takes.
    const total = 720;
    for (let step = 1; step <= total; step++) {
      await advance(250);
      for (const job of jobs) await offerStep(job, step, total, step % 20 === 0);
    }
    await advance(progressIntervalMs);
    const progress = s.calls.filter((c) => c.method === 'chat.update');
    // The workspace's budget binds (6 messages × 30 edits a minute would be 180 a minute).
    const perMinute = (from: number) => progress.filter((c) => c.at >= from && c.at < from + 60_000).length;
    const first = progress[0]!.at;
    for (let from = first; from + 60_000 <= progress.at(-1)!.at; from += 5_000) {
      expect(perMinute(from)).toBeLessThanOrEqual(updatesPerMinute);
    }
    expect(perMinute(first + 60_000)).toBeGreaterThanOrEqual(updatesPerMinute - 1);
    // Every message keeps moving: the longest waiting goes first.
    for (const job of jobs) {
      const edits = updatesOf(job);
      expect(edits.length).toBeGreaterThanOrEqual(Math.floor((3 * updatesPerMinute) / jobs.length) - 2);
      for (const gap of gaps(edits.map((c) => c.at))) expect(gap).toBeLessThanOrEqual(15_000);
      expectNewestShown(job);
    }
    // Results go out at once, each replacing its job's progress.
    for (const job of jobs) {
      await chat.edit(job.posted, { text: `**${job.name}**\ndone`, image: await resultImage() });
    }
    for (const job of jobs) expect(String(updatesOf(job).at(-1)!.args.text)).toContain('done');
    expect(s.files().filter((f) => f.filename.startsWith('preview'))).toEqual([]);
    expectWithinSlackLimits(jobs);
  });

  it('a preview Slack is still processing: the message keeps the one it shows, and the new one comes with the next edit', async () => {
    const job = await startJob('a comet');
    await advance(progressIntervalMs);
    await offerStep(job, 5, 28, true);
    await advance(progressIntervalMs);
    const first = imageIdOf(updatesOf(job).at(-1)!)!;
    expect(first).toBeDefined();

    refuseImageBlocks = 1;
    await offerStep(job, 10, 28, true);
    await chat.settled();
    expect(refuseImageBlocks).toBe(0);
    // Refused once (the fake answered for Slack): the step moved on with the preview already
    // shown, and the new file is kept for the next edit.
    const last = updatesOf(job).at(-1)!;
    expect(stepOf(last)).toBe(10);
    expect(imageIdOf(last)).toBe(first);
    const pending = s.files().filter((f) => f.filename.startsWith('preview') && f.id !== first);
    expect(pending).toHaveLength(1);

    // The next state, with no preview of its own, shows the new one; the old one goes.
    await advance(progressIntervalMs);
    await offerStep(job, 11, 28, false);
    await advance(progressIntervalMs);
    expect(imageIdOf(updatesOf(job).at(-1)!)).toBe(pending[0]!.id);
    expect(
      s
        .files()
        .filter((f) => f.filename.startsWith('preview'))
        .map((f) => f.id),
    ).toEqual([pending[0]!.id]);
    expectWithinSlackLimits([job]);
  });

  it('a 429 from Slack holds progress back for its Retry-After', async () => {
    const job = await startJob('a storm');
    await advance(progressIntervalMs);
    const failure = s.failNext('chat.update', { retryAfter: 7 });
    await offerStep(job, 1, 28, false);
    await chat.settled();
    const served = await failure.served;
    for (let step = 2; step <= 28; step++) {
      await advance(500);
      await offerStep(job, step, 28, false);
    }
    const after = updatesOf(job).filter((c) => !c.injected);
    expect(after.length).toBeGreaterThanOrEqual(1);
    expect(after[0]!.at - served.at).toBeGreaterThanOrEqual(7000);
    expect(s.rateLimitedCalls).toEqual([]);
  });
});
