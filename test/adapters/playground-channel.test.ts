/**
 * The playground as a real channel: its conversation survives a restart (the real core and Bot,
 * the bundled tiny model, one data dir across two runs), one tab cannot flood the others, a
 * server bound beyond loopback asks for its shared secret, and a malformed image path is a 400.
 */
import { request } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import {
  createPlaygroundSurface,
  type PlaygroundBot,
  type PlaygroundSurface,
} from '../../adapters/playground/index.js';
import type { ServerFrame, WireMessage } from '../../adapters/playground/protocol.js';
import { Bot } from '../../commands/bot.js';
import type { ChatAdapter, Invocation } from '../../commands/types.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

type Welcome = Extract<ServerFrame, { type: 'welcome' }>;

class Tab {
  readonly frames: ServerFrame[] = [];
  readonly #waiters: { match: (f: ServerFrame) => boolean; resolve: (f: ServerFrame) => void }[] = [];
  readonly closed: Promise<number>;
  closeCode: number | undefined;
  welcomeBytes = 0;

  constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const text = data.toString();
      const frame = JSON.parse(text) as ServerFrame;
      if (frame.type === 'welcome') this.welcomeBytes = Buffer.byteLength(text);
      this.frames.push(frame);
      for (const waiter of [...this.#waiters]) {
        if (waiter.match(frame)) {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          waiter.resolve(frame);
        }
      }
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', (code) => {
        this.closeCode = code;
        resolve(code);
      }),
    );
  }

  static async open(url: string, name: string, options: WebSocket.ClientOptions = {}): Promise<Tab> {
    const socket = new WebSocket(`${url.replace('http', 'ws')}/ws`, options);
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

  next(match: (f: ServerFrame) => boolean, timeoutMs = 60_000): Promise<ServerFrame> {
    const seen = this.frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no such frame in time')), timeoutMs);
      this.#waiters.push({
        match,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  welcome(): Welcome {
    return this.frames.find((f): f is Welcome => f.type === 'welcome')!;
  }

  /** The latest version of each message this tab was sent. */
  messages(): WireMessage[] {
    const byId = new Map<string, WireMessage>();
    for (const f of this.frames) {
      if (f.type === 'welcome') for (const m of f.messages) byId.set(m.id, m);
      if (f.type === 'message') byId.set(f.message.id, f.message);
    }
    return [...byId.values()];
  }
}

function get(url: string, path: string, headers: Record<string, string> = {}) {
  const target = new URL(url);
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>(
    (resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: target.port, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      });
      req.on('error', reject);
      req.end();
    },
  );
}

function fakeBot() {
  const bot = {
    adapter: undefined as ChatAdapter | undefined,
    commands: [],
    attach: vi.fn((adapter: ChatAdapter) => {
      bot.adapter = adapter;
    }),
    parseText: vi.fn((text: string) => ({ command: 'imagine', args: { prompt: text.slice(9) } })),
    command: vi.fn(async (inv: Invocation) => void (await inv.reply({ text: 'ok' }))),
    action: vi.fn(async () => {}),
    submitForm: vi.fn(async () => {}),
    reaction: vi.fn(async () => {}),
    autocomplete: vi.fn(() => []),
    recentResults: vi.fn(() => []),
    resultImage: vi.fn(async () => undefined),
  };
  return bot satisfies PlaygroundBot;
}

const logLines: string[] = [];
const logger = createLogger({
  level: 'debug',
  destination: { write: (line: string) => void logLines.push(line) },
});
const loud = () => logLines.filter((line) => (JSON.parse(line) as { level: number }).level >= 40);

let surfaces: PlaygroundSurface[] = [];
let tabs: Tab[] = [];

async function startFake(options: Partial<Parameters<typeof createPlaygroundSurface>[0]> = {}) {
  logLines.length = 0;
  const surface = createPlaygroundSurface({ logger, port: 0, ...options });
  surfaces.push(surface);
  const line = await surface.start(fakeBot());
  return { surface, line, url: surface.url! };
}

async function open(url: string, name: string, options?: WebSocket.ClientOptions) {
  const tab = await Tab.open(url, name, options);
  tabs.push(tab);
  return tab;
}

afterEach(async () => {
  for (const tab of tabs) tab.socket.terminate();
  tabs = [];
  for (const surface of surfaces) await surface.stop();
  surfaces = [];
});

describe('the playground conversation across a restart', () => {
  let app: TestApp | undefined;
  let bot: Bot | undefined;

  afterEach(async () => {
    await bot?.stop();
    await app?.dispose();
    bot = undefined;
    app = undefined;
  });

  async function run(dataDir?: string) {
    app = await startTestApp({}, dataDir);
    bot = new Bot(app, { minEditIntervalMs: 0 });
    bot.start();
    const surface = createPlaygroundSurface({ logger: app.logger, port: 0 });
    surfaces.push(surface);
    await surface.start(bot);
    return surface.url!;
  }

  it('comes back after a restart, with the old result, its picture and working buttons', async () => {
    const first = await run();
    const alice = await open(first, 'Alice');
    alice.send({ type: 'say', channelId: 'general', text: 'hello from before the restart' });
    alice.send({ type: 'say', channelId: 'general', text: '/imagine a red lighthouse --seed 7' });
    await alice.next(
      (f) => f.type === 'message' && f.message.buttons.some((row) => row.some((b) => b.label === 'Reroll')),
    );
    const before = alice.messages();
    const result = before.find((m) => m.buttons.flat().some((b) => b.label === 'Reroll'))!;
    expect(result.image?.url).toMatch(/^\/images\//);

    // Stop everything, keep the data dir, start again on it.
    for (const surface of surfaces) await surface.stop();
    surfaces = [];
    for (const tab of tabs) tab.socket.terminate();
    tabs = [];
    await bot!.stop();
    const dataDir = app!.dataDir;
    await app!.dispose({ keep: true });
    const second = await run(dataDir);

    const bob = await open(second, 'Bob');
    const after = bob.welcome().messages;
    expect(after.map((m) => m.text)).toContain('hello from before the restart');
    const restored = after.find((m) => m.id === result.id);
    expect(restored).toBeDefined();
    expect(restored!.text).toBe(result.text);
    expect(restored!.buttons).toEqual(result.buttons);
    expect(restored!.interaction?.user.name).toBe('Alice');
    // The message images of the last run were in memory; the result's picture comes from its job.
    const picture = await get(second, restored!.image!.url);
    expect(picture.status).toBe(200);
    expect(String(picture.headers['content-type'])).toMatch(/^image\//);

    // A button on the old result still works, and the feed knows its label.
    const reroll = restored!.buttons.flat().find((b) => b.label === 'Reroll')!;
    bob.send({ type: 'click', channelId: 'general', messageId: restored!.id, customId: reroll.customId });
    const answer = await bob.next(
      (f) => f.type === 'message' && f.message.interaction?.action === 'clicked 🔄 Reroll',
    );
    expect(answer.type === 'message' && answer.message.private).toBeFalsy();
  }, 180_000);

  it('keeps only the newest playground.keepMessages of a channel', async () => {
    const url = await run();
    const alice = await open(url, 'Alice');
    for (let i = 0; i < 5; i++) alice.send({ type: 'say', channelId: 'general', text: `line ${i}` });
    await alice.next((f) => f.type === 'message' && f.message.text === 'line 4');
    const rows = () =>
      app!.store.db.prepare("SELECT count(*) AS n FROM playground_messages WHERE recipient = ''").get() as {
        n: number;
      };
    expect(rows().n).toBe(5);
    for (const surface of surfaces) await surface.stop();
    surfaces = [];
    const kept = createPlaygroundSurface({ logger: app!.logger, port: 0, maxMessagesPerChannel: 3 });
    surfaces.push(kept);
    await kept.start(bot!);
    const bob = await open(kept.url!, 'Bob');
    expect(bob.welcome().messages.map((m) => m.text)).toEqual(['line 2', 'line 3', 'line 4']);
    expect(rows().n).toBe(3);
  }, 120_000);
});

describe('per-tab limits', () => {
  it('one tab flooding large lines is refused politely; the others stay and newcomers get a small welcome', async () => {
    const { url } = await startFake();
    const calm = await open(url, 'Calm');
    const flooder = await open(url, 'Flooder');
    const big = 'x'.repeat(99_000);
    for (let i = 0; i < 400; i++) flooder.send({ type: 'say', channelId: 'general', text: `${i} ${big}` });
    flooder.send({ type: 'say', channelId: 'general', text: '/imagine still here?' });
    await flooder.next((f) => f.type === 'problem' && /at most 4000 characters/.test(f.message));
    // Let the server work through the flood, then check who is still here.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(calm.closeCode).toBeUndefined();
    expect(flooder.closeCode).toBeUndefined();
    expect(calm.messages().filter((m) => m.text.length > 4000)).toEqual([]);

    // Past its burst, the flooding tab is told to wait; the calm tab is not.
    for (let i = 0; i < 100; i++) flooder.send({ type: 'say', channelId: 'general', text: `short ${i}` });
    await flooder.next((f) => f.type === 'problem' && /faster than the playground takes/.test(f.message));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const shorts = calm.messages().filter((m) => m.text.startsWith('short '));
    expect(shorts.length).toBeGreaterThan(0);
    expect(shorts.length).toBeLessThan(100);
    expect(calm.frames.some((f) => f.type === 'problem')).toBe(false);
    calm.send({ type: 'say', channelId: 'general', text: 'still calm' });
    await calm.next((f) => f.type === 'message' && f.message.text === 'still calm', 5000);

    const newcomer = await open(url, 'Newcomer');
    expect(newcomer.welcomeBytes).toBeLessThan(1024 * 1024 + 4096);
  }, 30_000);

  it('refuses an oversized frame to that tab only, with a problem and the tab kept open', async () => {
    const { url } = await startFake();
    const other = await open(url, 'Other');
    const tab = await open(url, 'Big');
    tab.socket.send(JSON.stringify({ type: 'say', channelId: 'general', text: 'y'.repeat(1024 * 1024) }));
    await tab.next((f) => f.type === 'problem' && /too large/.test(f.message));
    tab.send({ type: 'say', channelId: 'general', text: 'after' });
    await other.next((f) => f.type === 'message' && f.message.text === 'after', 5000);
    expect(tab.closeCode).toBeUndefined();
    expect(other.closeCode).toBeUndefined();
  });
});

describe('beyond loopback', () => {
  it('will not start without a shared secret, and says which variable to set', async () => {
    const surface = createPlaygroundSurface({ logger, port: 0, host: '0.0.0.0', secret: '' });
    surfaces.push(surface);
    const error = await surface.start(fakeBot()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/PLAYGROUND_SECRET/);
  });

  it('refuses pages, images and WebSockets without the secret, and says so in the start line', async () => {
    const secret = 'correct horse battery staple';
    const { url, line } = await startFake({ host: '0.0.0.0', secret });
    expect(line).toMatch(/shared secret required/);
    expect(line).not.toContain(secret);
    const local = url.replace('0.0.0.0', '127.0.0.1');

    // Names are no identities out here: without the secret there is nothing to type a name into.
    const page = await get(local, '/');
    expect(page.status).toBe(401);
    expect(page.body.toString()).toMatch(/PLAYGROUND_SECRET/);
    expect((await get(local, '/api/gallery')).status).toBe(401);
    expect((await get(local, '/images/m1/abc')).status).toBe(401);
    const refused = new WebSocket(`${local.replace('http', 'ws')}/ws`);
    const status = await new Promise<number>((resolve) =>
      refused.on('unexpected-response', (_req, res) => resolve(res.statusCode!)),
    );
    expect(status).toBe(401);
    expect((await get(local, '/?key=wrong')).status).toBe(401);

    // The right key once: a cookie and a clean address; the cookie then opens the page and the socket.
    const entry = await get(local, `/?key=${encodeURIComponent(secret)}`);
    expect(entry.status).toBe(303);
    expect(entry.headers.location).toBe('/');
    const cookie = String((entry.headers['set-cookie'] as string[])[0]).split(';')[0]!;
    expect(cookie).not.toContain(secret);
    expect((await get(local, '/', { cookie })).status).toBe(200);
    const tab = await open(local, 'Admin', { headers: { cookie } });
    expect(tab.welcome().user.id).toBe('admin');
    const bearer = await open(local, 'Other', { headers: { authorization: `Bearer ${secret}` } });
    expect(bearer.welcome().user.id).toBe('other');
  });

  it('keeps names as they are on loopback without a secret', async () => {
    const { url, line } = await startFake({ secret: '' });
    expect(line).toBe(`playground: ${url}`);
    expect((await get(url, '/')).status).toBe(200);
  });
});

describe('malformed paths', () => {
  it('answers a malformed percent-encoding with 400 and logs nothing loud', async () => {
    const { url } = await startFake();
    for (let i = 0; i < 3; i++) {
      const res = await get(url, '/images/%E0%A4%A/x');
      expect(res.status).toBe(400);
    }
    expect(loud()).toEqual([]);
  });
});
