/**
 * Progress with previews on Slack, end to end: the Slack simulator (enforcing chat.update's Tier 3
 * and 1 message a second per channel with 429 + Retry-After) drives the real Bolt app, the real
 * Bot and the real core with the bundled tiny model. The bot reports every step with a preview
 * (progress.minEditIntervalMs 0, previewEverySteps 1); the surface paces what reaches Slack.
 * Pacing on Slack's own figures, on a fake clock, is slack-progress-pacing.test.ts.
 */
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import type { ApiCallRecord, SlackFile, SlackMessage } from '../simulators/slack/index.js';
import { type SlackWorld, startSlackWorld } from './slack-world.js';

let world: SlackWorld | undefined;

afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** The surface's pacing in this test: a tiny-model step takes ~20 ms, so 28 steps fit in ~0.6 s. */
const INTERVAL_MS = 150;
/**
 * Slack sees a call when it arrives; the surface spaces calls when it sends them. The previous
 * call's trip (local HTTP) may eat into the gap Slack sees, by at most this much.
 */
const TRIP_MS = 50;

type Block = { type: string; slack_file?: { id: string } };
const imageIdIn = (blocks: readonly Block[]) => blocks.find((b) => b.type === 'image')?.slack_file?.id;
const isResult = (m: SlackMessage) => imageIdIn(m.blocks as Block[]) !== undefined && m.buttons.length > 1;
const stepIn = (text: string) => Number(/step (\d+)\/28/.exec(text)?.[1] ?? 0);

describe('Slack progress with previews (real Bolt, real Bot, tiny model)', () => {
  it('a fast 28-step job: paced progress edits with previews, within Slack’s limits; the result replaces them', async () => {
    world = await startSlackWorld({
      env: () => ({
        ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '0',
        ATELIER_PROGRESS__PREVIEW_EVERY_STEPS: '1',
      }),
      surface: { progressEditIntervalMs: INTERVAL_MS, channelEditIntervalMs: INTERVAL_MS },
    });
    const { s } = world;
    const uploads: SlackFile[] = [];
    s.on('fileUploaded', (file) => uploads.push(file));

    s.slash('/imagine', 'a lighthouse at dusk --steps 28 --seed 5', { user: s.users.carol });
    const notice = await s.waitForMessage((m) => m.text.includes('lighthouse'));
    const result = await s.waitForMessage((m) => m.ts === notice.ts && isResult(m));

    // Progress: step k/28 with a preview inline, k never going back.
    const progress = result.history.filter((h) => stepIn(h.text) > 0);
    expect(progress.length).toBeGreaterThanOrEqual(1);
    const steps = progress.map((h) => stepIn(h.text));
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    const shownPreviews = progress.map((h) => imageIdIn(h.blocks as Block[]));
    expect(shownPreviews.every((id) => id !== undefined)).toBe(true);
    const previewFiles = uploads.filter((f) => f.filename.startsWith('preview'));
    for (const id of shownPreviews) {
      const file = previewFiles.find((f) => f.id === id)!;
      expect(file.filename).toBe('preview.jpg');
      // The bot makes WebP previews; an image block shows PNG, JPEG or GIF only.
      expect((await sharp(file.data!).metadata()).format).toBe('jpeg');
    }
    // No upload is wasted: each preview uploaded was shown.
    expect(previewFiles.map((f) => f.id)).toEqual([...new Set(shownPreviews)]);

    // Paced: the message's progress edits (and the first after the post) at least INTERVAL_MS apart.
    const updates = s.calls.filter((c) => c.method === 'chat.update' && c.args.ts === notice.ts);
    const final = updates.findIndex((c) => String(c.args.text).includes('28 steps ·'));
    expect(final).toBe(updates.length - 1);
    const post = s.calls.find(
      (c) => c.method === 'chat.postMessage' && String(c.args.text).includes('lighthouse'),
    )!;
    const paced: ApiCallRecord[] = [post, ...updates.slice(0, final)];
    for (let i = 1; i < paced.length; i++) {
      expect(paced[i]!.at - paced[i - 1]!.at).toBeGreaterThanOrEqual(INTERVAL_MS - TRIP_MS);
    }
    // Within Slack's limits: nothing refused, nothing rate limited.
    expect(s.rateLimitedCalls).toEqual([]);
    expect(s.calls.filter((c) => !c.ok)).toEqual([]);

    // The final message is the result: the PNG inline with its buttons. Its preview goes once the
    // result shows, and the thread ends with the result's file alone.
    expect(result.text).toMatch(/seed 5 · 28 steps/);
    const resultFile = s.files().find((f) => f.id === imageIdIn(result.blocks as Block[]))!;
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
});
