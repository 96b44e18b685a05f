/**
 * The playground's `/results/<jobId>/…` serves the playground's own results only: a Discord or
 * Slack job's image is not handed to whoever learns its id. Real core (tiny model), real Bot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPlaygroundSurface, type PlaygroundSurface } from '../../adapters/playground/index.js';
import { Bot } from '../../commands/bot.js';
import type { JobSpec } from '../../src/jobs/types.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import { makeSpec } from '../scheduler/helpers.js';

let app: TestApp;
let bot: Bot;
let surface: PlaygroundSurface;
let base: string;

beforeAll(async () => {
  app = await startTestApp();
  bot = new Bot(app);
  bot.start();
  surface = createPlaygroundSurface({ logger: app.logger, port: 0 });
  const line = await surface.start(bot);
  base = /(http:\/\/\S+)/.exec(line)![1]!;
}, 120_000);

afterAll(async () => {
  await surface?.stop();
  await bot?.stop();
  await app?.dispose();
});

async function finishedJob(platform: string, teamId?: string): Promise<string> {
  const base = makeSpec(`${platform}-user`, { size: 256 });
  const spec: JobSpec = {
    ...base,
    requester: { ...base.requester, platform, ...(teamId ? { teamId } : {}) },
    reply: {
      platform,
      channelId: platform === 'playground' ? 'general' : 'C0SOMEWHERE',
      ...(teamId ? { teamId } : {}),
    },
  };
  const { job } = await app.scheduler.enqueue(spec);
  expect(await app.scheduler.waitFor(job.id)).toMatchObject({ type: 'done' });
  return job.id;
}

describe('playground /results/<jobId>', () => {
  it("serves a playground job's images, and 404 for a Discord or Slack job's", async () => {
    const own = await finishedJob('playground');
    const discord = await finishedJob('discord', 'G1');
    const slack = await finishedJob('slack', 'T1');
    for (const which of ['grid', '0', 'thumb']) {
      const ok = await fetch(`${base}/results/${own}/${which}`);
      expect(ok.status, `${own}/${which}`).toBe(200);
      expect(ok.headers.get('content-type')).toMatch(/^image\//);
      await ok.arrayBuffer();
      for (const other of [discord, slack]) {
        const refused = await fetch(`${base}/results/${other}/${which}`);
        expect(refused.status, `${other}/${which}`).toBe(404);
        expect(refused.headers.get('content-type')).not.toMatch(/^image\//);
        await refused.arrayBuffer();
      }
    }
  }, 120_000);
});
