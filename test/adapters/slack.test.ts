/**
 * The Slack surface end to end over HTTP: the Slack simulator drives the real Bolt app (signed
 * requests to /slack/events), the real Bot and the real core with the bundled tiny model.
 */
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import type { SlackMessage } from '../simulators/slack/index.js';
import { type SlackWorld, startSlackWorld } from './slack-world.js';

let world: SlackWorld | undefined;

afterEach(async () => {
  await world?.close();
  world = undefined;
});

const imageBlockFile = (m: SlackMessage) =>
  (m.blocks.find((b) => b.type === 'image') as { slack_file?: { id: string } } | undefined)?.slack_file?.id;
const isResult = (m: SlackMessage) => imageBlockFile(m) !== undefined && m.buttons.length > 0;

describe('Slack surface over HTTP', () => {
  it('/imagine: acks at once, posts the queue notice, edits progress, then shows the image with buttons', async () => {
    world = await startSlackWorld();
    const { s } = world;
    expect(world.line).toMatch(/^slack: HTTP on :\d+\/slack\/events as @atelier \(team T\w+\)$/);
    const delivery = s.slash('/imagine', 'a lighthouse at dusk --seed 42', { user: s.users.carol });
    const ack = await delivery.waitForAck();
    expect(ack).toMatchObject({ status: 200, timedOut: false });
    expect(ack.ackMs).toBeLessThan(3000);

    const notice = await s.waitForMessage((m) => m.text.includes('Queued') || m.text.includes('step'));
    const result = await s.waitForMessage((m) => m.ts === notice.ts && isResult(m));
    const texts = result.history.map((h) => h.text);
    expect(texts[0]).toMatch(/\*a lighthouse at dusk\* — <@U\w+>\n⏳ Queued/);
    expect(texts.some((t) => /step \d+\/4/.test(t))).toBe(true);
    expect(result.text).toMatch(/seed 42 · 4 steps/);

    const fileId = imageBlockFile(result)!;
    const file = s.files().find((f) => f.id === fileId)!;
    expect(file.shares).toEqual([{ channel: s.channels.general.id, ts: expect.any(String) }]);
    const [share] = s.replies(result);
    expect(share?.files.map((f) => f.id)).toEqual([fileId]);
    expect(await sharp(file.data!).metadata()).toMatchObject({ width: 256, height: 256, format: 'png' });

    expect(result.buttons.map((b) => b.text)).toEqual([
      '🎲 Vary',
      '🔄 Reroll',
      '⬆️ Upscale 2×',
      '⭐ Share',
      '✖️ Delete',
    ]);
    expect(result.buttons.every((b) => b.value === b.actionId)).toBe(true);
    expect(s.ephemerals()).toEqual([]);
    expect(s.unhandledCalls).toEqual([]);
  });
});
