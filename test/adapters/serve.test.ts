/**
 * The operator's contract: Discord, Slack and the playground started from the environment alone
 * (DISCORD_TOKEN + DISCORD_API_URL, SLACK_BOT_TOKEN + SLACK_SIGNING_SECRET + SLACK_PORT +
 * SLACK_API_URL, PLAYGROUND_PORT) in one process, one start line each, and a job left by a
 * killed run delivered to its original conversation once the surfaces are listening.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { serve } from '../../adapters/serve.js';
import { createApp } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log.js';
import { openStore } from '../../src/store/index.js';
import { tinyModelEnv } from '../helpers/tiny-model-env.js';
import { type DiscordSimulator, startDiscordSimulator } from '../simulators/discord/index.js';
import { type SlackSimulator, startSlackSimulator } from '../simulators/slack/index.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(dataDir: string, d: DiscordSimulator, s: SlackSimulator) {
  const config = loadConfig({
    cwd: dataDir,
    env: {
      ...(await tinyModelEnv()),
      ATELIER_DATA_DIR: dataDir,
      ATELIER_LOG__LEVEL: 'silent',
      ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '200',
      DISCORD_TOKEN: d.token,
      DISCORD_API_URL: d.apiUrl,
      SLACK_BOT_TOKEN: s.botToken,
      SLACK_SIGNING_SECRET: s.signingSecret,
      SLACK_PORT: '0',
      SLACK_API_URL: s.apiUrl,
      PLAYGROUND_PORT: '0',
      ATELIER_PLAYGROUND__ENABLED: 'true',
    },
  });
  const app = await createApp(config, { logger: createLogger({ level: 'silent' }) });
  await app.load();
  const lines: string[] = [];
  let stop!: () => void;
  const until = new Promise<void>((resolve) => {
    stop = resolve;
  });
  let listening!: () => void;
  const allListening = new Promise<void>((resolve) => {
    listening = resolve;
  });
  const running = serve(
    { app, config },
    {
      until,
      print: (line) => {
        lines.push(line);
        if (lines.length === 3) listening();
      },
    },
  );
  await allListening;
  const slackPort = /:(\d+)\/slack\/events/.exec(lines.find((l) => l.startsWith('slack:'))!)![1];
  s.setRequestUrl(`http://127.0.0.1:${slackPort}/slack/events`);
  return {
    lines,
    async close() {
      stop();
      await running;
      await app.close();
    },
  };
}

/** A temporary data dir and both platform simulators, closed after the test. */
async function platforms(): Promise<{ dataDir: string; d: DiscordSimulator; s: SlackSimulator }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'atelier-serve-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const d = await startDiscordSimulator({ waitTimeoutMs: 60_000 });
  const s = await startSlackSimulator({ waitTimeoutMs: 60_000 });
  cleanups.push(
    () => d.stop(),
    () => s.stop(),
  );
  return { dataDir, d, s };
}

describe('serve', () => {
  it('runs Discord, Slack and the playground in one process from the environment alone', async () => {
    const { dataDir, d, s } = await platforms();
    const bot = await start(dataDir, d, s);
    cleanups.push(() => bot.close());
    expect(bot.lines).toEqual([
      expect.stringMatching(/^discord: connected as /),
      expect.stringMatching(/^slack: HTTP on :\d+\/slack\/events as @/),
      expect.stringMatching(/^playground: http:\/\/127\.0\.0\.1:\d+$/),
    ]);

    const fromDiscord = d.slash('imagine', { prompt: 'from discord', seed: 1 }, { user: d.users.bob });
    const discordResult = await fromDiscord.waitForOriginal((m) => /seed \d+ ·/.test(m.content));
    expect(discordResult.content).toMatch(/from discord.*seed 1 ·/s);
    expect(discordResult.attachments).toHaveLength(1);

    expect(
      (await s.slash('/imagine', 'from slack --seed 2', { user: s.users.alice }).waitForAck()).status,
    ).toBe(200);
    const slackResult = await s.waitForMessage(
      (m) => m.text.includes('from slack') && /seed \d+ ·/.test(m.text),
    );
    expect(slackResult.text).toMatch(/seed 2/);
  });

  it('delivers a job the last run left queued into its original Discord conversation', async () => {
    const { dataDir, d, s } = await platforms();

    // A first run takes the command but never runs it (an admin paused the queue), then stops.
    const store = openStore({ dataDir });
    store.flags.set('queue.paused', true);
    store.close();
    const first = await start(dataDir, d, s);
    const interaction = d.slash('imagine', { prompt: 'left behind', seed: 5 }, { user: d.users.carol });
    const notice = await interaction.waitForOriginal((m) => /Queued/.test(m.content));
    await first.close();
    const between = openStore({ dataDir });
    expect(between.jobs.list().map((j) => j.state)).toEqual(['queued']);
    between.close();

    // The next run resumes it: the result replaces the queue notice where it was asked for.
    const reopened = openStore({ dataDir });
    reopened.flags.set('queue.paused', false);
    reopened.close();
    const second = await start(dataDir, d, s);
    cleanups.push(() => second.close());
    const result = await d.waitForMessage((m) => m.id === notice.id && /seed \d+ ·/.test(m.content));
    expect(result.content).toMatch(/left behind.*seed 5 ·/s);
    expect(result.attachments).toHaveLength(1);
  });
});
