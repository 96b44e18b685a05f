/**
 * Several models resident, in the playground end to end: tabs speak the page's WebSocket protocol
 * to the real server, the real Bot and the real core with two tiny models of different seeds.
 * `--model`, `--fast` and `/settings --model` (the playground has no server or workspace, so no
 * `/atelier model` default), the model in the result and the PNG, and after a restart on the same
 * data without the model, its reroll is refused to that person only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createPlaygroundSurface, type PlaygroundSurface } from '../../adapters/playground/index.js';
import type { ServerFrame, WireMessage } from '../../adapters/playground/protocol.js';
import { Bot } from '../../commands/bot.js';
import { readPngText } from '../../src/images/index.js';
import { checkpointHash } from '../../src/pipeline/models-dir/model-hash.js';
import { TINY_CHECKPOINT, TINY_MODEL_CONFIG, writeTinyModel } from '../../src/pipeline/tiny/index.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

let root: string;
let hashes: { alpha: string; beta: string };

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-playground-models-'));
  writeTinyModel(join(root, 'alpha'), TINY_MODEL_CONFIG, { name: 'tiny-alpha' });
  writeTinyModel(join(root, 'beta'), { ...TINY_MODEL_CONFIG, seed: 2 }, { name: 'tiny-beta' });
  hashes = {
    alpha: checkpointHash([join(root, 'alpha', 'checkpoints', TINY_CHECKPOINT)]),
    beta: checkpointHash([join(root, 'beta', 'checkpoints', TINY_CHECKPOINT)]),
  };
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A browser tab, as the page's WebSocket client. */
class Tab {
  readonly frames: ServerFrame[] = [];
  readonly #waiters: { match: (f: ServerFrame) => boolean; resolve: (f: ServerFrame) => void }[] = [];

  constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as ServerFrame;
      this.frames.push(frame);
      for (const waiter of [...this.#waiters]) {
        if (waiter.match(frame)) {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          waiter.resolve(frame);
        }
      }
    });
  }

  static async open(url: string, name: string): Promise<Tab> {
    const socket = new WebSocket(`${url.replace('http', 'ws')}/ws`);
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    const tab = new Tab(socket);
    tab.send({ type: 'hello', name });
    await tab.next((f) => f.type === 'welcome');
    return tab;
  }

  send(frame: unknown): void {
    this.socket.send(JSON.stringify(frame));
  }

  say(text: string): void {
    this.send({ type: 'say', channelId: 'general', text });
  }

  next(match: (f: ServerFrame) => boolean, timeoutMs = 60_000): Promise<ServerFrame> {
    const seen = this.frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const texts = this.frames.flatMap((f) => (f.type === 'message' ? [f.message.text] : []));
        reject(new Error(`no such frame in time; messages: ${texts.slice(-5).join(' | ')}`));
      }, timeoutMs);
      this.#waiters.push({
        match,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  /** The first message (already here or later) matching: for results, once it shows the image. */
  async message(match: (m: WireMessage) => boolean): Promise<WireMessage> {
    const frame = await this.next((f) => f.type === 'message' && match(f.message));
    return (frame as Extract<ServerFrame, { type: 'message' }>).message;
  }

  result(text: string): Promise<WireMessage> {
    return this.message(
      (m) => m.text.includes(text) && m.result && m.buttons.flat().some((b) => b.label === 'Reroll'),
    );
  }
}

function download(url: string, path: string): Promise<Buffer> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: target.port, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Running {
  app: TestApp;
  bot: Bot;
  surface: PlaygroundSurface;
  url: string;
}

let running: Running | undefined;
const tabs: Tab[] = [];

afterEach(async () => {
  for (const tab of tabs.splice(0)) tab.socket.terminate();
  if (running) await shutdown(running, false);
  running = undefined;
});

async function boot(env: Record<string, string>, dataDir?: string): Promise<Running> {
  const app = await startTestApp(env, dataDir);
  const bot = new Bot(app, { minEditIntervalMs: 0 });
  bot.start();
  const surface = createPlaygroundSurface({ logger: app.logger, port: 0 });
  await surface.start(bot);
  return { app, bot, surface, url: surface.url! };
}

async function shutdown(r: Running, keep: boolean): Promise<void> {
  await r.surface.stop();
  await r.bot.stop();
  await r.app.dispose({ keep });
}

async function open(name: string): Promise<Tab> {
  const tab = await Tab.open(running!.url, name);
  tabs.push(tab);
  return tab;
}

describe('playground: several models resident (real server and Bot, two tiny models)', () => {
  it('--model, --fast and /settings --model; the model in the result and the PNG; refused privately once removed', async () => {
    running = await boot({
      ATELIER_MODELS__LIST__ALPHA__DIR: join(root, 'alpha'),
      ATELIER_MODELS__LIST__BETA__DIR: join(root, 'beta'),
      ATELIER_MODELS__LIST__BETA__STEPS: '2',
      ATELIER_MODELS__LIST__BETA__GUIDANCE: '1',
    });
    const alice = await open('Alice');
    const bob = await open('Bob');
    // The page learns the options (and their choices) from the welcome.
    const welcome = alice.frames.find((f) => f.type === 'welcome') as Extract<
      ServerFrame,
      { type: 'welcome' }
    >;
    const imagine = welcome.commands.find((c) => c.name === 'imagine')!;
    expect(imagine.options!.find((o) => o.name === 'model')!.choices).toEqual([
      { name: 'alpha', value: 'alpha' },
      { name: 'beta', value: 'beta' },
    ]);
    expect(imagine.options!.find((o) => o.name === 'mode')!.presets).toEqual({ fast: 'draft' });

    alice.say('/imagine a heron --model beta --seed 5');
    const heron = await alice.result('a heron');
    expect(heron.text).toMatch(/seed 5 · 2 steps · CFG 1 · Euler · 256×256 · model beta/);
    const parameters = readPngText(await download(running.url, heron.image!.url)).parameters;
    expect(parameters).toMatch(new RegExp(`Model hash: ${hashes.beta}, Model: atelier-tiny-sd35$`));

    alice.say('/imagine a quick sketch --fast');
    expect((await alice.result('a quick sketch')).text).toMatch(/2 steps · CFG 1 · .*model beta/);

    bob.say('/settings --model beta');
    expect((await bob.message((m) => m.text.startsWith('Saved.'))).text).toMatch(
      /Your defaults: model beta\./,
    );
    bob.say('/imagine a default of my own');
    expect((await bob.result('a default of my own')).text).toMatch(/model beta/);
    alice.say('/imagine the bot default --steps 1');
    const plain = await alice.result('the bot default');
    expect(plain.text).toMatch(/model alpha/);
    expect(readPngText(await download(running.url, plain.image!.url)).parameters).toMatch(
      new RegExp(`Model hash: ${hashes.alpha}, Model: atelier-tiny-sd35$`),
    );
    // No server here: the per-server default belongs to Discord servers and Slack workspaces.
    alice.say('/atelier model beta');
    expect((await alice.message((m) => m.text.includes('belongs to a server'))).private).toBe(true);

    // Beta leaves the configuration; the playground restarts on the same data.
    const dataDir = running.app.dataDir;
    for (const tab of tabs.splice(0)) tab.socket.terminate();
    await shutdown(running, true);
    running = undefined;
    running = await boot({ ATELIER_MODELS__LIST__ALPHA__DIR: join(root, 'alpha') }, dataDir);
    const carol = await open('Carol');
    const watcher = await open('Dan');
    const reroll = heron.buttons.flat().find((b) => b.label === 'Reroll')!;
    carol.send({ type: 'click', channelId: 'general', messageId: heron.id, customId: reroll.customId });
    const refusal = await carol.message((m) => m.text.includes('no longer configured'));
    expect(refusal.private).toBe(true);
    expect(refusal.text).toBe(
      "⚠️ That image was made with the model “beta” (atelier-tiny-sd35), which is no longer configured here, so I can't make more of it with the same model. Configured models: alpha.",
    );
    // Only Carol saw it, and nothing was queued.
    carol.say('/imagine after the refusal --steps 1');
    await carol.result('after the refusal');
    expect(
      watcher.frames.some((f) => f.type === 'message' && f.message.text.includes('no longer configured')),
    ).toBe(false);
    expect(carol.frames.some((f) => f.type === 'message' && f.message.text.includes('reroll by'))).toBe(
      false,
    );
  }, 180_000);
});
