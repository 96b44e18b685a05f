/**
 * Several models resident, on Slack end to end (Bolt over HTTP + the Slack surface + the real Bot +
 * the real core with two tiny models of different seeds, against the simulator): `--model` and
 * `--fast`, `/settings --model`, `/atelier model` for the workspace, the model in the result and the
 * PNG, and after a restart without the model a private refusal of the reroll.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSlackSurface, type SlackSurface } from '../../adapters/slack/index.js';
import { Bot } from '../../commands/bot.js';
import { readPngText } from '../../src/images/index.js';
import { createLogger } from '../../src/log.js';
import { checkpointHash } from '../../src/pipeline/models-dir/model-hash.js';
import { TINY_CHECKPOINT, TINY_MODEL_CONFIG, writeTinyModel } from '../../src/pipeline/tiny/index.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import {
  type SlackMessage,
  type SlackSimulator,
  type SlackUser,
  startSlackSimulator,
} from '../simulators/slack/index.js';
import { button, imageFileId, isResult } from './slack-world.js';

let root: string;
let betaHash: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-slack-models-'));
  writeTinyModel(join(root, 'alpha'), TINY_MODEL_CONFIG, { name: 'tiny-alpha' });
  writeTinyModel(join(root, 'beta'), { ...TINY_MODEL_CONFIG, seed: 2 }, { name: 'tiny-beta' });
  betaHash = checkpointHash([join(root, 'beta', 'checkpoints', TINY_CHECKPOINT)]);
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Running {
  app: TestApp;
  bot: Bot;
  surface: SlackSurface;
}

let s: SlackSimulator | undefined;
let running: Running | undefined;

afterEach(async () => {
  if (running) await shutdown(running, false);
  running = undefined;
  await s?.stop();
  s = undefined;
});

/** The core, the Bot and the Slack surface over HTTP, on `dataDir` (a restart passes the last one). */
async function boot(sim: SlackSimulator, env: Record<string, string>, dataDir?: string): Promise<Running> {
  const app = await startTestApp(
    {
      ATELIER_LIMITS__USER__ENABLED: 'false',
      ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '200',
      ATELIER_PROGRESS__PREVIEW_EVERY_STEPS: '0',
      ATELIER_LIMITS__ADMINS__SLACK__USER_IDS: sim.users.alice.id,
      ...env,
    },
    dataDir,
  );
  const bot = new Bot(app);
  const surface = createSlackSurface({
    botToken: sim.botToken,
    signingSecret: sim.signingSecret,
    port: 0,
    apiUrl: sim.apiUrl,
    logger: createLogger({ level: 'silent' }),
  });
  const line = await surface.start(bot);
  bot.start();
  sim.setRequestUrl(`http://127.0.0.1:${/:(\d+)\//.exec(line)![1]}/slack/events`);
  return { app, bot, surface };
}

async function shutdown(r: Running, keep: boolean): Promise<void> {
  await r.surface.stop();
  await r.bot.stop();
  await r.app.dispose({ keep });
}

describe('Slack: several models resident (real Bot, two tiny models)', () => {
  it('--model, --fast, /settings --model, /atelier model; after a restart without the model, its reroll is refused', async () => {
    s = await startSlackSimulator({ waitTimeoutMs: 30_000 });
    const sim = s;
    const models = {
      ATELIER_MODELS__LIST__ALPHA__DIR: join(root, 'alpha'),
      ATELIER_MODELS__LIST__BETA__DIR: join(root, 'beta'),
      ATELIER_MODELS__LIST__BETA__STEPS: '2',
      ATELIER_MODELS__LIST__BETA__GUIDANCE: '1',
    };
    running = await boot(sim, models);
    const { alice, bob, carol } = sim.users;
    const png = (m: SlackMessage) =>
      readPngText(sim.files().find((f) => f.id === imageFileId(m))!.data!).parameters;
    const ephemeralFor = async (user: SlackUser, text: RegExp) =>
      (await sim.waitForEphemeral((e) => e.user === user.id && text.test(e.text))).text;
    const resultWith = (text: string) => sim.waitForMessage((m) => m.text.includes(text) && isResult(m));

    sim.slash('/imagine', 'a heron --model beta --seed 5', { user: carol });
    const heron = await resultWith('a heron');
    expect(heron.text).toMatch(/seed 5 · 2 steps · CFG 1 · Euler · 256×256 · model beta/);
    expect(png(heron)).toMatch(new RegExp(`Model hash: ${betaHash}, Model: atelier-tiny-sd35$`));

    sim.slash('/imagine', 'a quick sketch --fast', { user: bob });
    expect((await resultWith('a quick sketch')).text).toMatch(/2 steps · CFG 1 · .*model beta/);

    sim.slash('/imagine', 'a fox --model bta', { user: bob });
    expect(await ephemeralFor(bob, /model/)).toBe(
      "⚠️ “bta” isn't a model here. Did you mean beta? Choose one of: alpha, beta.",
    );

    // The workspace's default (an Atelier admin sets it), below each user's own.
    sim.slash('/atelier', 'model beta', { user: alice });
    expect(await ephemeralFor(alice, /New images here/)).toBe(
      'New images here now use the model beta unless people pick one (their own /settings model: still wins).',
    );
    sim.slash('/settings', '--model alpha', { user: carol });
    expect(await ephemeralFor(carol, /Saved/)).toMatch(/^Saved\. Your defaults: model alpha\./);
    sim.slash('/imagine', 'a workspace default', { user: bob });
    expect((await resultWith('a workspace default')).text).toMatch(/model beta/);
    sim.slash('/imagine', 'a default of my own --steps 1', { user: carol });
    expect((await resultWith('a default of my own')).text).toMatch(/model alpha/);

    // Beta leaves the configuration; the bot restarts on the same data.
    const dataDir = running.app.dataDir;
    await shutdown(running, true);
    running = undefined;
    running = await boot(sim, { ATELIER_MODELS__LIST__ALPHA__DIR: join(root, 'alpha') }, dataDir);
    sim.clickButton(heron, button(heron, 'Reroll'), { user: bob });
    expect(await ephemeralFor(bob, /no longer configured/)).toBe(
      "⚠️ That image was made with the model “beta” (atelier-tiny-sd35), which is no longer configured here, so I can't make more of it with the same model. Configured models: alpha.",
    );
    expect(sim.messages(sim.channels.general).filter((m) => m.text.includes('reroll by'))).toEqual([]);
    // With one model left, --model is no longer an option.
    sim.slash('/imagine', 'a heron --model beta', { user: bob });
    expect(await ephemeralFor(bob, /Unknown option --model/)).toMatch(/^⚠️ Unknown option --model\./);
    expect(sim.unhandledCalls).toEqual([]);
  });
});
