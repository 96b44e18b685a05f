/**
 * Progress with previews on Slack, end to end: the Slack simulator (enforcing chat.update's Tier 3
 * and 1 message a second per channel with 429 + Retry-After) drives the real Bolt app, the real
 * Bot and the real core. The pipeline is a double whose steps advance only when the test says
 * (test/helpers/stepped-pipeline.ts): each test moves the job to a step, waits for Slack to show
 * that step, and only then moves on, so what Slack sees does not depend on how fast the machine
 * is. The bot reports every step with a preview (progress.minEditIntervalMs 0, previewEverySteps
 * 1); the surface paces what reaches Slack on the workspace's own budget (40 chat.update a minute,
 * one every 1.5 s). The budget's arithmetic, on a fake clock, is slack-progress-pacing.test.ts.
 */
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { SteppedPipeline } from '../helpers/stepped-pipeline.js';
import type { ApiCallRecord, SlackFile, SlackMessage } from '../simulators/slack/index.js';
import { button, type SlackWorld, startSlackWorld } from './slack-world.js';

let world: SlackWorld | undefined;

afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** The surface's per-message and per-channel pacing in these tests. */
const INTERVAL_MS = 150;
/** The workspace budget's spacing at Slack's 40 chat.update a minute (the surface's default). */
const BUDGET_SPACING_MS = 60_000 / 40;
/**
 * Slack sees a call when it arrives; the surface spaces calls when it sends them. The previous
 * call's trip (local HTTP on a busy machine) may eat into the gap Slack sees, by at most this much.
 */
const TRIP_MS = 250;

type Block = { type: string; slack_file?: { id: string } };
const imageIdIn = (blocks: readonly unknown[]) =>
  (blocks as Block[]).find((b) => b.type === 'image')?.slack_file?.id;
const isResult = (m: SlackMessage) => imageIdIn(m.blocks) !== undefined && m.buttons.length > 1;
const stepIn = (text: string, total: number) =>
  Number(new RegExp(`step (\\d+)/${total}`).exec(text)?.[1] ?? 0);
const previewsIn = (files: SlackFile[]) => files.filter((f) => f.filename.startsWith('preview'));

async function startWorld(pipeline: SteppedPipeline): Promise<SlackWorld> {
  return startSlackWorld({
    env: () => ({
      ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '0',
      ATELIER_PROGRESS__PREVIEW_EVERY_STEPS: '1',
    }),
    surface: { progressEditIntervalMs: INTERVAL_MS, channelEditIntervalMs: INTERVAL_MS },
    pipeline,
  });
}

/**
 * Moves the job to `step` and waits until its message shows that step with a preview other than
 * `previous` (each step's preview is another image) and `previous` is deleted: the preview file
 * now shown.
 */
async function showStep(
  w: SlackWorld,
  advance: (step: number) => void,
  message: SlackMessage,
  step: number,
  total: number,
  previous: string | undefined,
): Promise<string> {
  advance(step);
  const shown = await w.s.waitForMessage(
    (m) =>
      m.ts === message.ts &&
      stepIn(m.text, total) === step &&
      imageIdIn(m.blocks) !== undefined &&
      imageIdIn(m.blocks) !== previous,
  );
  const id = imageIdIn(shown.blocks)!;
  if (previous) await w.s.waitForCall((c) => c.method === 'files.delete' && c.args.file === previous);
  return id;
}

describe('Slack progress with previews (real Bolt, real Bot, stepped pipeline)', () => {
  it('a 28-step job: progress edits with previews on the workspace budget, within Slack’s limits; the result replaces them', async () => {
    const pipeline = new SteppedPipeline();
    world = await startWorld(pipeline);
    const { s } = world;
    const uploads: SlackFile[] = [];
    s.on('fileUploaded', (file) => uploads.push(file));

    s.slash('/imagine', 'a lighthouse at dusk --steps 28 --seed 5', { user: s.users.carol });
    const notice = await s.waitForMessage((m) => m.text.includes('lighthouse'));
    const run = await pipeline.running();
    expect(run.request.steps).toBe(28);

    // Each step the test moves to is shown with its own preview, which replaces the one before:
    // the thread never holds more than the preview shown.
    let previous: string | undefined;
    const shownPreviews: string[] = [];
    for (const step of [1, 10, 20]) {
      previous = await showStep(world, (k) => run.advance(k), notice, step, 28, previous);
      shownPreviews.push(previous);
      expect(previewsIn(s.files()).map((f) => f.id)).toEqual([previous]);
    }
    run.finish();
    const result = await s.waitForMessage((m) => m.ts === notice.ts && isResult(m));

    // Progress: step k/28 with a preview inline, k never going back.
    const progress = result.history.filter((h) => stepIn(h.text, 28) > 0);
    const steps = progress.map((h) => stepIn(h.text, 28));
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(steps).toEqual(expect.arrayContaining([1, 10, 20]));
    expect(progress.every((h) => imageIdIn(h.blocks) !== undefined)).toBe(true);
    const previewFiles = previewsIn(uploads);
    for (const file of previewFiles) {
      expect(file.filename).toBe('preview.jpg');
      // The bot makes WebP previews; an image block shows PNG, JPEG or GIF only.
      expect((await sharp(file.data!).metadata()).format).toBe('jpeg');
    }
    // No upload is wasted: one per step the test moved to, each shown.
    expect(previewFiles.map((f) => f.id)).toEqual(shownPreviews);
    expect([...new Set(progress.map((h) => imageIdIn(h.blocks)))]).toEqual(shownPreviews);

    // Paced: the message's edits at least INTERVAL_MS apart (the first after the post), progress
    // edits on the workspace budget (one per 1.5 s), the result at once after the last.
    const updates = s.calls.filter((c) => c.method === 'chat.update' && c.args.ts === notice.ts);
    const final = updates.findIndex((c) => String(c.args.text).includes('28 steps ·'));
    expect(final).toBe(updates.length - 1);
    const post = s.calls.find(
      (c) => c.method === 'chat.postMessage' && String(c.args.text).includes('lighthouse'),
    )!;
    const paced: ApiCallRecord[] = [post, ...updates.slice(0, final)];
    for (let i = 1; i < paced.length; i++) {
      expect(paced[i]!.at - paced[i - 1]!.at).toBeGreaterThanOrEqual(INTERVAL_MS - TRIP_MS);
      if (i > 1) expect(paced[i]!.at - paced[i - 1]!.at).toBeGreaterThanOrEqual(BUDGET_SPACING_MS - TRIP_MS);
    }
    // Within Slack's limits: nothing refused, nothing rate limited.
    expect(s.rateLimitedCalls).toEqual([]);
    expect(s.calls.filter((c) => !c.ok)).toEqual([]);

    // The final message is the result: the PNG inline with its buttons. Its preview goes once the
    // result shows, and the thread ends with the result's file alone.
    expect(result.text).toMatch(/seed 5 · 28 steps/);
    const resultFile = s.files().find((f) => f.id === imageIdIn(result.blocks))!;
    expect(await sharp(resultFile.data!).metadata()).toMatchObject({
      format: 'png',
      width: 256,
      height: 256,
    });
    await s.waitForCall((c) => c.method === 'files.delete' && c.args.file === shownPreviews.at(-1));
    expect(s.files()).toEqual([resultFile]);
    expect(s.replies(result).map((m) => m.files.map((f) => f.id))).toEqual([[resultFile.id]]);
    expect(s.unhandledCalls).toEqual([]);
  });

  it('a restart mid-job: the preview uploaded before it is deleted when the resumed job posts its result', async () => {
    const pipeline = new SteppedPipeline();
    world = await startWorld(pipeline);
    const { s } = world;
    s.slash('/imagine', 'a harbour in fog --steps 20 --seed 3', { user: s.users.carol });
    const notice = await s.waitForMessage((m) => m.text.includes('harbour'));
    const run = await pipeline.running();
    const before = await showStep(world, (k) => run.advance(k), notice, 6, 20, undefined);
    expect(previewsIn(s.files()).map((f) => f.id)).toEqual([before]);

    const resumed = pipeline.nextRun();
    await world.restart();
    // The job runs again from its first step; the message still shows the preview of before.
    (await resumed).finish();
    const result = await s.waitForMessage((m) => m.ts === notice.ts && isResult(m));
    expect(result.text).toMatch(/seed 3 · 20 steps/);
    await s.waitForCall((c) => c.method === 'files.delete' && c.args.file === before);
    const resultFile = s.files().find((f) => f.id === imageIdIn(result.blocks))!;
    expect(s.files()).toEqual([resultFile]);
    expect(s.replies(result).map((m) => m.files.map((f) => f.id))).toEqual([[resultFile.id]]);
    expect(s.messages(s.channels.general).filter((m) => m.text.includes('harbour'))).toHaveLength(1);
    expect(s.calls.filter((c) => !c.ok)).toEqual([]);
  });

  it('a restart mid-job: a new preview replaces the one of before, and a cancel removes the new one', async () => {
    const pipeline = new SteppedPipeline();
    world = await startWorld(pipeline);
    const { s } = world;
    s.slash('/imagine', 'a kite over dunes --steps 20 --seed 4', { user: s.users.carol });
    const notice = await s.waitForMessage((m) => m.text.includes('kite'));
    const run = await pipeline.running();
    const before = await showStep(world, (k) => run.advance(k), notice, 6, 20, undefined);

    const resumed = pipeline.nextRun();
    await world.restart();
    const again = await resumed;
    // The resumed job's preview replaces the one uploaded before the restart, which is deleted.
    const after = await showStep(world, (k) => again.advance(k), notice, 12, 20, before);
    expect(previewsIn(s.files()).map((f) => f.id)).toEqual([after]);

    const showing = s.messages(s.channels.general).find((m) => m.ts === notice.ts)!;
    s.clickButton(showing, button(showing, 'Cancel'), { user: s.users.carol });
    await s.waitForMessage((m) => m.ts === notice.ts && m.text.includes('Cancelled'));
    await s.waitForCall((c) => c.method === 'files.delete' && c.args.file === after);
    expect(s.files()).toEqual([]);
    expect(s.calls.filter((c) => !c.ok)).toEqual([]);
  });
});
