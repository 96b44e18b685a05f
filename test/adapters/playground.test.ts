/**
 * The playground server's protocol, driven by WebSocket clients from Node as tabs and a small Bot
 * double (the real Bot runs in playground-browser.test.ts): what each tab receives, what reaches
 * the bot, and what is served over HTTP.
 */
import { request } from 'node:http';
import sharp from 'sharp';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { ImageStore } from '../../adapters/playground/image-store.js';
import {
  createPlaygroundSurface,
  type PlaygroundBot,
  type PlaygroundSurface,
} from '../../adapters/playground/index.js';
import type { ServerFrame, WireMessage } from '../../adapters/playground/protocol.js';
import type { ChatAdapter, ChatImage, CommandDef, Invocation, ReactionEvent } from '../../commands/types.js';
import { ConfigError, ValidationError } from '../../src/errors.js';
import type { Requester } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';

// ---- a tab, as a WebSocket client ------------------------------------------------------------

type MessageFrame = Extract<ServerFrame, { type: 'message' }>;

class Tab {
  readonly frames: ServerFrame[] = [];
  readonly #waiters: { match: (f: ServerFrame) => boolean; resolve: (f: ServerFrame) => void }[] = [];
  readonly closed: Promise<number>;

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
    this.closed = new Promise((resolve) => socket.on('close', (code) => resolve(code)));
  }

  static async open(url: string, name?: string): Promise<Tab> {
    const socket = new WebSocket(`${url.replace('http', 'ws')}/ws`);
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    const tab = new Tab(socket);
    if (name !== undefined) {
      tab.send({ type: 'hello', name });
      await tab.next((f) => f.type === 'welcome');
    }
    return tab;
  }

  send(frame: unknown): void {
    this.socket.send(JSON.stringify(frame));
  }

  /** The first frame (received already or later) that matches. */
  next<T extends ServerFrame>(match: (f: ServerFrame) => f is T): Promise<T>;
  next(match: (f: ServerFrame) => boolean): Promise<ServerFrame>;
  next(match: (f: ServerFrame) => boolean): Promise<ServerFrame> {
    const seen = this.frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  /** The first message frame whose text contains `text`. */
  message(text: string): Promise<WireMessage> {
    return this.next((f): f is MessageFrame => f.type === 'message' && f.message.text.includes(text)).then(
      (f) => f.message,
    );
  }

  messages(): WireMessage[] {
    return this.frames.flatMap((f) => (f.type === 'message' ? [f.message] : []));
  }
}

// ---- a Bot double --------------------------------------------------------------------------

const COMMANDS: CommandDef[] = [
  {
    name: 'imagine',
    description: 'Make images from a prompt',
    options: [
      { name: 'prompt', description: 'What to draw', type: 'string', required: true },
      { name: 'style', description: 'A style', type: 'string', autocomplete: true },
    ],
  },
];

type Handler = (inv: Invocation, name: string, args: Record<string, unknown>) => Promise<void>;

function fakeBot(
  onCommand: Handler = async (inv, _name, args) => void (await inv.reply({ text: `**${args.prompt}**` })),
) {
  const bot = {
    adapter: undefined as ChatAdapter | undefined,
    commands: COMMANDS,
    attach: vi.fn((adapter: ChatAdapter) => {
      bot.adapter = adapter;
    }),
    parseText: vi.fn((text: string) => {
      const match = /^\/imagine\s+(\S.*)$/s.exec(text);
      if (!match) throw new ValidationError('prompt', '/imagine needs a prompt. Usage: /imagine <prompt>');
      return { command: 'imagine', args: { prompt: match[1] } };
    }),
    command: vi.fn(onCommand),
    action: vi.fn(async (inv: Invocation, customId: string) => {
      await inv.reply({ text: `did ${customId}` });
    }),
    submitForm: vi.fn(
      async (inv: Invocation, formId: string, values: Readonly<Record<string, string | undefined>>) => {
        await inv.reply({ text: `submitted ${formId}: ${values.prompt}` });
      },
    ),
    reaction: vi.fn(async (_event: ReactionEvent) => {}),
    autocomplete: vi.fn((_requester: Requester, _command: string, _option: string, partial: string) => [
      { name: `${partial}punk`, value: `${partial}punk` },
    ]),
    recentResults: vi.fn(() => [
      {
        jobId: '0abc',
        prompt: 'a lighthouse',
        seed: 7,
        author: { userId: 'alice', displayName: 'Alice' },
        images: 4,
        width: 256,
        height: 256,
        createdAt: 1,
      },
    ]),
    resultImage: vi.fn(async (jobId: string, index: number | 'grid') => {
      if (jobId !== '0abc') return undefined;
      const side = index === 'grid' ? 512 : 256;
      const data = await solidPng(side, side);
      return { data, mime: 'image/png', width: side, height: side };
    }),
  };
  return bot satisfies PlaygroundBot;
}

async function solidPng(width: number, height: number, r = 200): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r, g: 90, b: 40 } } })
    .png()
    .toBuffer();
}

async function chatImage(width: number, height: number, r = 200, mime = 'image/png'): Promise<ChatImage> {
  const image = sharp({ create: { width, height, channels: 3, background: { r, g: 90, b: 40 } } });
  const data = mime === 'image/webp' ? await image.webp().toBuffer() : await image.png().toBuffer();
  return { data, mime, width, height, filename: mime === 'image/webp' ? 'preview.webp' : 'result.png' };
}

// ---- harness -------------------------------------------------------------------------------

let surface: PlaygroundSurface | undefined;
let tabs: Tab[] = [];
const logLines: string[] = [];

async function start(bot = fakeBot()) {
  logLines.length = 0;
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => void logLines.push(line) },
  });
  surface = createPlaygroundSurface({ logger, port: 0 });
  const line = await surface.start(bot);
  const url = surface.url!;
  const open = async (name?: string) => {
    const tab = await Tab.open(url, name);
    tabs.push(tab);
    return tab;
  };
  return { bot, line, url, open, adapter: bot.adapter! };
}

afterEach(async () => {
  for (const tab of tabs) tab.socket.terminate();
  tabs = [];
  await surface?.stop();
  surface = undefined;
});

const GENERAL = { platform: 'playground', channelId: 'general' };

function get(
  url: string,
  options: { path?: string; method?: string; headers?: Record<string, string> } = {},
) {
  const target = new URL(url);
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>(
    (resolve, reject) => {
      const req = request(
        {
          host: target.hostname,
          port: target.port,
          path: options.path ?? target.pathname + target.search,
          method: options.method ?? 'GET',
          headers: options.headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    },
  );
}

// ---- tests -----------------------------------------------------------------------------------

describe('playground server', () => {
  it('reports where it listens with the real port, and serves the page with a strict CSP', async () => {
    const { line, url } = await start();
    expect(line).toMatch(/^playground: http:\/\/127\.0\.0\.1:\d+$/);
    expect(line).toBe(`playground: ${url}`);
    expect(url).not.toMatch(/:0$/);

    const page = await get(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body.toString()).toContain('<textarea');
    const script = await get(`${url}/app.js`);
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    // A path outside the static folder is never served, however it is spelled.
    expect((await get(url, { path: '/%2e%2e/package.json' })).status).toBe(404);
    expect((await get(url, { path: '/../../package.json' })).status).toBe(404);
    expect((await get(url, { method: 'POST' })).status).toBe(405);
  });

  it('answers only to loopback host names (a DNS-rebinding page cannot reach it)', async () => {
    const { url } = await start();
    expect((await get(url, { headers: { host: 'evil.example:7860' } })).status).toBe(421);
    expect((await get(url, { headers: { host: `localhost:${new URL(url).port}` } })).status).toBe(200);
  });

  it('refuses WebSocket upgrades from pages on other origins', async () => {
    const { url } = await start();
    const foreign = new WebSocket(`${url.replace('http', 'ws')}/ws`, { origin: 'http://evil.example' });
    const status = await new Promise<number>((resolve) =>
      foreign.on('unexpected-response', (_req, res) => resolve(res.statusCode!)),
    );
    expect(status).toBe(403);
    const own = new WebSocket(`${url.replace('http', 'ws')}/ws`, { origin: url });
    await new Promise((resolve) => own.once('open', resolve));
    own.terminate();
  });

  it('welcomes a tab by its name with the channels, commands and reaction bar; refuses a bad name', async () => {
    const { open } = await start();
    const tab = await open();
    tab.send({ type: 'say', channelId: 'general', text: 'hi' });
    expect(await tab.next((f) => f.type === 'problem')).toEqual({
      type: 'problem',
      message: 'Choose a name first.',
    });

    tab.send({ type: 'hello', name: '<script>' });
    const problem = await tab.next((f) => f.type === 'problem' && f.field === 'name');
    expect(problem).toMatchObject({ message: expect.stringContaining('letters, digits') });

    tab.send({ type: 'hello', name: '  Ada   Lovelace ' });
    const welcome = await tab.next((f) => f.type === 'welcome');
    expect(welcome).toEqual({
      type: 'welcome',
      user: { id: 'ada-lovelace', name: 'Ada Lovelace' },
      channels: ['general', 'showcase'],
      commands: COMMANDS,
      reactionEmojis: ['🔄', '⭐', '✖'],
      messages: [],
    });
  });

  it('answers a frame it cannot use with a problem and keeps the tab open', async () => {
    const { open } = await start();
    const tab = await open('alice');
    tab.socket.send('{not json');
    await tab.next((f) => f.type === 'problem' && f.message.includes('did not understand'));
    tab.send({ type: 'say', channelId: 'nowhere', text: 'hi' });
    await tab.next((f) => f.type === 'problem' && f.message.includes('no #nowhere channel'));
    tab.send({ type: 'say', channelId: 'general', text: 'still here' });
    await tab.message('still here');
  });

  it('hands a typed /imagine to the bot and shows its public reply to every tab, with who asked', async () => {
    const { open, bot } = await start();
    const alice = await open('Alice');
    const bob = await open('Bob');
    alice.send({ type: 'say', channelId: 'general', text: '/imagine a fox in the snow' });

    const seenByBob = await bob.message('a fox in the snow');
    const seenByAlice = await alice.message('a fox in the snow');
    expect(seenByAlice).toEqual(seenByBob);
    expect(seenByBob).toMatchObject({
      channelId: 'general',
      author: { id: 'atelier', name: 'Atelier', bot: true },
      text: '**a fox in the snow**',
      interaction: { user: { id: 'alice', name: 'Alice' }, action: 'used /imagine' },
      result: false,
      buttons: [],
    });
    expect(seenByBob.private).toBeUndefined();
    const [inv, name, args] = bot.command.mock.calls[0];
    expect(name).toBe('imagine');
    expect(args).toEqual({ prompt: 'a fox in the snow' });
    expect(inv.requester).toEqual({ platform: 'playground', userId: 'alice', displayName: 'Alice' });
    expect(inv.where).toEqual(GENERAL);
  });

  it("shows private answers in every tab of that user and nobody else's, now and in later tabs", async () => {
    const { open } = await start(
      fakeBot(async (inv) => {
        await inv.replyPrivately({ text: 'only for you, <@alice>' });
      }),
    );
    const alice1 = await open('Alice');
    const alice2 = await open('alice');
    const bob = await open('Bob');
    alice1.send({ type: 'say', channelId: 'general', text: '/imagine something' });
    const note = await alice2.message('only for you');
    expect(note).toMatchObject({ private: true, mentions: { alice: 'alice' } });
    await alice1.message('only for you');

    // Frames reach a tab in order: once Bob sees the next public line, he would have seen the note.
    alice1.send({ type: 'say', channelId: 'general', text: 'public line' });
    await bob.message('public line');
    expect(bob.messages().map((m) => m.text)).toEqual(['public line']);

    const laterAlice = await open('Alice');
    const laterBob = await open('Bob');
    const history = (tab: Tab) =>
      tab.frames.flatMap((f) => (f.type === 'welcome' ? f.messages.map((m) => m.text) : []));
    expect(history(laterAlice)).toEqual(['only for you, <@alice>', 'public line']);
    expect(history(laterBob)).toEqual(['public line']);
  });

  it('shows a usage error only to the person who typed the line', async () => {
    const { open, bot } = await start();
    const alice = await open('Alice');
    const bob = await open('Bob');
    alice.send({ type: 'say', channelId: 'general', text: '/imagine' });
    const usage = await alice.message('Usage: /imagine <prompt>');
    expect(usage).toMatchObject({ private: true, interaction: { action: 'used /imagine' } });
    expect(bot.command).not.toHaveBeenCalled();
    alice.send({ type: 'say', channelId: 'general', text: 'after' });
    await bob.message('after');
    expect(bob.messages().map((m) => m.text)).toEqual(['after']);
  });

  it('logs a bug in the bot, apologises privately and keeps serving', async () => {
    let calls = 0;
    const { open } = await start(
      fakeBot(async (inv) => {
        calls += 1;
        if (calls === 1) throw new TypeError('boom');
        await inv.reply({ text: 'second try worked' });
      }),
    );
    const alice = await open('Alice');
    alice.send({ type: 'say', channelId: 'general', text: '/imagine one' });
    const apology = await alice.message('Something went wrong on my side');
    expect(apology.private).toBe(true);
    expect(logLines.join('')).toContain('playground: bot call failed');
    expect(logLines.join('')).toContain('boom');
    alice.send({ type: 'say', channelId: 'general', text: '/imagine two' });
    await alice.message('second try worked');
  });

  it('posts plain chat lines as the person, to everyone', async () => {
    const { open, bot } = await start();
    const alice = await open('Alice');
    const bob = await open('Bob');
    alice.send({ type: 'say', channelId: 'general', text: '  nice one **Bob**  ' });
    expect(await bob.message('nice one')).toMatchObject({
      author: { id: 'alice', name: 'Alice', bot: false },
      text: 'nice one **Bob**',
      result: false,
    });
    expect(bot.parseText).not.toHaveBeenCalled();
  });

  it('replaces an edited message in place and serves each version of its pictures at its own URL', async () => {
    const { open, adapter, url } = await start();
    const alice = await open('Alice');
    const posted = await adapter.post(GENERAL, { text: '**a lighthouse** — <@alice>\n⏳ Queued' });
    expect(posted).toMatchObject({ platform: 'playground', channelId: 'general' });
    const queued = await alice.message('Queued');
    expect(queued.id).toBe(posted.messageId);

    const preview = await chatImage(32, 32, 10, 'image/webp');
    await adapter.edit(posted, { text: '**a lighthouse** — <@alice>\n🎨 step 2/4', preview });
    const progress = await alice.message('step 2/4');
    expect(progress).toMatchObject({ id: posted.messageId, createdAt: queued.createdAt, result: false });
    expect(progress.preview).toMatchObject({ width: 32, height: 32, alt: 'Preview: a lighthouse' });
    const previewResponse = await get(`${url}${progress.preview!.url}`);
    expect(previewResponse.status).toBe(200);
    expect(previewResponse.headers['content-type']).toBe('image/webp');
    expect(previewResponse.headers['cache-control']).toContain('immutable');
    expect(previewResponse.body.equals(Buffer.from(preview.data))).toBe(true);

    const image = await chatImage(512, 512);
    await adapter.edit(posted, {
      text: '**a lighthouse** — <@alice>\nseed 7',
      image,
      buttons: [[{ id: 'r:1', label: 'Reroll', emoji: '🔄' }]],
    });
    const done = await alice.message('seed 7');
    expect(done).toMatchObject({
      id: posted.messageId,
      result: true,
      image: { width: 512, height: 512, alt: 'a lighthouse' },
      buttons: [[{ customId: 'r:1', label: 'Reroll', emoji: '🔄', style: 'secondary' }]],
    });
    expect(done.preview).toBeUndefined();
    expect((await get(`${url}${progress.preview!.url}`)).status).toBe(404);
    const png = await get(`${url}${done.image!.url}`);
    expect(png.headers['content-type']).toBe('image/png');
    expect(await sharp(png.body).metadata()).toMatchObject({ width: 512, height: 512, format: 'png' });
  });

  it('posts an edit of a message it no longer holds anew, so a result after a restart still shows', async () => {
    const { open, adapter } = await start();
    const alice = await open('Alice');
    await adapter.edit(
      { platform: 'playground', channelId: 'general', messageId: 'm0000000000old' },
      { text: 'late result' },
    );
    expect(await alice.message('late result')).toMatchObject({ id: 'm0000000000old', channelId: 'general' });
  });

  it('deletes a message in every tab and forgets its pictures', async () => {
    const { open, adapter, url } = await start();
    const alice = await open('Alice');
    const bob = await open('Bob');
    const posted = await adapter.post(GENERAL, { text: 'doomed', image: await chatImage(64, 64) });
    const shown = await bob.message('doomed');
    await adapter.delete(posted);
    for (const tab of [alice, bob]) {
      expect(await tab.next((f) => f.type === 'delete')).toEqual({
        type: 'delete',
        channelId: 'general',
        messageId: posted.messageId,
      });
    }
    expect((await get(`${url}${shown.image!.url}`)).status).toBe(404);
  });

  it("tellPrivately reaches only that user's tabs", async () => {
    const { open, adapter } = await start();
    const alice = await open('Alice');
    const bob = await open('Bob');
    await adapter.tellPrivately(GENERAL, 'bob', { text: 'your job failed' });
    expect(await bob.message('your job failed')).toMatchObject({ private: true });
    await adapter.post(GENERAL, { text: 'marker' });
    await alice.message('marker');
    expect(alice.messages().map((m) => m.text)).toEqual(['marker']);
  });

  it('hands a button click to bot.action and shows who clicked what', async () => {
    const { open, adapter, bot } = await start();
    const bob = await open('Bob');
    const posted = await adapter.post(GENERAL, {
      text: 'result',
      image: await chatImage(64, 64),
      buttons: [[{ id: 'reroll:0abc', label: 'Reroll', emoji: '🔄' }]],
    });
    bob.send({ type: 'click', channelId: 'general', messageId: posted.messageId, customId: 'reroll:0abc' });
    const answer = await bob.message('did reroll:0abc');
    expect(answer.interaction).toEqual({ user: { id: 'bob', name: 'Bob' }, action: 'clicked 🔄 Reroll' });
    const [inv, customId] = bot.action.mock.calls[0];
    expect(customId).toBe('reroll:0abc');
    expect(inv.requester.userId).toBe('bob');
    expect(inv.where).toEqual(GENERAL);
  });

  it('shows a form the bot opens for a click in that tab only, and hands its submission to bot.submitForm', async () => {
    const bot = fakeBot();
    bot.action.mockImplementation(async (inv: Invocation) => {
      await inv.openForm!({
        id: 'at1f:r:0abc',
        title: 'Remix · Reroll',
        submitLabel: 'Make it',
        fields: [{ id: 'prompt', label: 'Prompt', value: 'a fox', multiline: true, required: true }],
      });
    });
    const { open, adapter } = await start(bot);
    const bob = await open('Bob');
    const bobElsewhere = await open('Bob');
    const posted = await adapter.post(GENERAL, {
      text: 'result',
      buttons: [[{ id: 'at1:r:0abc', label: 'Reroll', emoji: '🔄' }]],
    });
    bob.send({ type: 'click', channelId: 'general', messageId: posted.messageId, customId: 'at1:r:0abc' });
    const frame = await bob.next((f) => f.type === 'form');
    expect(frame).toEqual({
      type: 'form',
      channelId: 'general',
      form: {
        id: 'at1f:r:0abc',
        title: 'Remix · Reroll',
        submitLabel: 'Make it',
        fields: [{ id: 'prompt', label: 'Prompt', value: 'a fox', multiline: true, required: true }],
      },
    });
    bob.send({
      type: 'submit',
      channelId: 'general',
      formId: 'at1f:r:0abc',
      values: { prompt: 'a fox at dawn' },
    });
    const answer = await bob.message('submitted at1f:r:0abc: a fox at dawn');
    expect(answer.interaction).toEqual({
      user: { id: 'bob', name: 'Bob' },
      action: 'submitted Remix · Reroll',
    });
    const [inv, formId, values] = bot.submitForm.mock.calls[0]!;
    expect([inv.requester.userId, inv.where, formId, values]).toEqual([
      'bob',
      GENERAL,
      'at1f:r:0abc',
      { prompt: 'a fox at dawn' },
    ]);
    // The other tab of the same person saw the answer, never the form.
    await bobElsewhere.message('submitted at1f:r:0abc');
    expect(bobElsewhere.frames.some((f) => f.type === 'form')).toBe(false);
    // A submit frame with too many or oversized fields is not a frame the server takes.
    const many = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`f${i}`, 'x']));
    bob.send({ type: 'submit', channelId: 'general', formId: 'x', values: many });
    expect(await bob.next((f) => f.type === 'problem')).toMatchObject({
      message: 'The server did not understand that frame.',
    });
    expect(bot.submitForm).toHaveBeenCalledTimes(1);
  });

  it('counts reactions per person for every tab and hands new ones to bot.reaction', async () => {
    const { open, adapter, bot } = await start();
    const alice = await open('Alice');
    const bob = await open('Bob');
    const posted = await adapter.post(GENERAL, { text: 'result', image: await chatImage(64, 64) });
    await alice.message('result');
    const reactions = (tab: Tab, n: number) =>
      tab.next(
        (f) => f.type === 'reactions' && tab.frames.filter((g) => g.type === 'reactions').indexOf(f) === n,
      );

    bob.send({ type: 'react', channelId: 'general', messageId: posted.messageId, emoji: '🔄' });
    expect(await reactions(alice, 0)).toEqual({
      type: 'reactions',
      channelId: 'general',
      messageId: posted.messageId,
      reactions: [{ emoji: '🔄', userIds: ['bob'] }],
    });
    // The frame goes out in the same turn as the call, so the call has happened by now.
    expect(bot.reaction).toHaveBeenCalledTimes(1);
    expect(bot.reaction.mock.calls[0][0]).toEqual({
      requester: { platform: 'playground', userId: 'bob', displayName: 'Bob' },
      message: { platform: 'playground', channelId: 'general', messageId: posted.messageId },
      emoji: '🔄',
      where: GENERAL,
    });

    bob.send({ type: 'unreact', channelId: 'general', messageId: posted.messageId, emoji: '🔄' });
    expect(await reactions(alice, 1)).toMatchObject({ reactions: [] });
    // Emoji outside the reaction bar are not counted; the next public frame shows none came.
    bob.send({ type: 'react', channelId: 'general', messageId: posted.messageId, emoji: '💩' });
    bob.send({ type: 'say', channelId: 'general', text: 'marker' });
    await alice.message('marker');
    expect(alice.frames.filter((f) => f.type === 'reactions')).toHaveLength(2);
    expect(bot.reaction).toHaveBeenCalledTimes(1);
  });

  it('answers autocomplete requests from the bot to the asking tab', async () => {
    const { open, bot } = await start();
    const alice = await open('Alice');
    alice.send({ type: 'autocomplete', requestId: 7, command: 'imagine', option: 'style', partial: 'cyber' });
    expect(await alice.next((f) => f.type === 'suggestions')).toEqual({
      type: 'suggestions',
      requestId: 7,
      choices: [{ name: 'cyberpunk', value: 'cyberpunk' }],
    });
    expect(bot.autocomplete.mock.calls[0]).toEqual([
      { platform: 'playground', userId: 'alice', displayName: 'Alice' },
      'imagine',
      'style',
      'cyber',
    ]);
  });

  it('shows a channel the bot posts to in every tab', async () => {
    const { open, adapter } = await start();
    const alice = await open('Alice');
    await adapter.post({ platform: 'playground', channelId: 'art' }, { text: 'shared' });
    expect(await alice.next((f) => f.type === 'channels')).toEqual({
      type: 'channels',
      channels: ['general', 'showcase', 'art'],
    });
    alice.send({ type: 'say', channelId: 'art', text: 'hello art' });
    expect(await alice.message('hello art')).toMatchObject({ channelId: 'art' });
  });

  it("serves the channel's gallery from the bot, with small thumbnails and full images", async () => {
    const { url, bot } = await start();
    const gallery = await get(`${url}/api/gallery?channel=general&limit=5`);
    expect(gallery.status).toBe(200);
    expect(JSON.parse(gallery.body.toString())).toEqual({
      channelId: 'general',
      items: [
        expect.objectContaining({
          jobId: '0abc',
          prompt: 'a lighthouse',
          thumbUrl: '/results/0abc/thumb',
          gridUrl: '/results/0abc/grid',
        }),
      ],
    });
    expect(bot.recentResults).toHaveBeenCalledWith(GENERAL, 5);

    const thumb = await get(`${url}/results/0abc/thumb`);
    expect(thumb.headers['content-type']).toBe('image/webp');
    expect(await sharp(thumb.body).metadata()).toMatchObject({ width: 384, height: 384, format: 'webp' });
    const grid = await get(`${url}/results/0abc/grid`);
    expect(await sharp(grid.body).metadata()).toMatchObject({ width: 512, height: 512, format: 'png' });
    const single = await get(`${url}/results/0abc/2`);
    expect(await sharp(single.body).metadata()).toMatchObject({ width: 256, height: 256 });
    expect((await get(`${url}/results/nope/grid`)).status).toBe(404);
    expect((await get(`${url}/results/0abc/9`)).status).toBe(404);
    expect((await get(`${url}/api/gallery?channel=${encodeURIComponent('../x')}`)).status).toBe(400);
  });

  it('says which setting to change when its port is taken', async () => {
    const { url } = await start();
    const second = createPlaygroundSurface({
      logger: createLogger({ level: 'silent' }),
      port: Number(new URL(url).port),
    });
    const failure = second.start(fakeBot());
    await expect(failure).rejects.toBeInstanceOf(ConfigError);
    await expect(failure).rejects.toMatchObject({
      key: 'playground.port',
      message: expect.stringMatching(/port \d+ is already in use\. Set PLAYGROUND_PORT/),
    });
  });

  it('moves a tab to another user when its name changes, private history included', async () => {
    const { open, adapter } = await start();
    const tab = await open('Alice');
    await adapter.tellPrivately(GENERAL, 'alice', { text: 'for alice' });
    await adapter.tellPrivately(GENERAL, 'bob', { text: 'for bob' });
    await tab.message('for alice');
    tab.send({ type: 'hello', name: 'Bob' });
    const welcome = await tab.next(
      (f): f is Extract<ServerFrame, { type: 'welcome' }> => f.type === 'welcome' && f.user.id === 'bob',
    );
    expect(welcome.messages.map((m) => m.text)).toEqual(['for bob']);
    await adapter.tellPrivately(GENERAL, 'alice', { text: 'alice again' });
    await adapter.tellPrivately(GENERAL, 'bob', { text: 'bob again' });
    await tab.message('bob again');
    expect(tab.messages().map((m) => m.text)).toEqual(['for alice', 'bob again']);
  });

  it('stop() closes every tab and frees the port', async () => {
    const { open, url } = await start();
    const alice = await open('Alice');
    await surface!.stop();
    await alice.closed;
    await expect(get(url)).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('ImageStore', () => {
  const image = (bytes: number, fill: number): ChatImage => ({
    data: new Uint8Array(bytes).fill(fill),
    mime: 'image/png',
    filename: 'x.png',
    width: 1,
    height: 1,
  });
  const hashOf = (url: string) => url.split('/').at(-1)!;

  it('keeps only the latest image of each slot and the newest within its byte budget', () => {
    const store = new ImageStore(250);
    const first = store.put('m1', 'image', image(100, 1));
    const second = store.put('m1', 'image', image(100, 2));
    expect(store.get('m1', hashOf(first))).toBeUndefined();
    expect(store.get('m1', hashOf(second))?.data[0]).toBe(2);
    expect(store.bytes).toBe(100);

    const preview = store.put('m1', 'preview', image(100, 3));
    const other = store.put('m2', 'image', image(100, 4));
    // 300 bytes > 250: the oldest (m1's image) goes, the newest stays.
    expect(store.get('m1', hashOf(second))).toBeUndefined();
    expect(store.get('m1', hashOf(preview))).toBeDefined();
    expect(store.get('m2', hashOf(other))).toBeDefined();
    expect(store.bytes).toBe(200);

    store.clear('m1');
    expect(store.get('m1', hashOf(preview))).toBeUndefined();
    expect(store.bytes).toBe(100);
  });

  it('names the same bytes with the same URL, so an unchanged image is not fetched again', () => {
    const store = new ImageStore(1000);
    const a = store.put('m1', 'image', image(10, 5));
    const b = store.put('m1', 'image', image(10, 5));
    expect(a).toBe(b);
    expect(store.bytes).toBe(10);
  });
});
