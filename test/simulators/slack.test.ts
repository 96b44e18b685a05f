/**
 * The Slack simulator proven against the real Bolt 5 app with its HTTP receiver: a minimal bot
 * defined here verifies signed requests, acks a slash command with a reply, posts progress,
 * uploads the result with the files v2 flow, handles a button and a reaction, survives an
 * injected 429, and refuses bad signatures with 401.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { App, LogLevel } from '@slack/bolt';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type SlackSimulator, startSlackSimulator } from './slack/index.js';

interface Bot {
  app: App;
  /** How often each listener ran. */
  runs: { command: number; action: number; reaction: number };
  errors: unknown[];
}

/**
 * The minimal bot: /imagine acks with its queue position, posts a progress message, uploads the
 * PNG into the channel (files v2) and turns the progress message into a result with buttons.
 * "reroll" replaces the message through response_url; 🔄 (arrows_counterclockwise) on a bot
 * message answers in its thread.
 */
async function startBot(
  s: SlackSimulator,
  png: Buffer,
  hooks: { beforeAck?: () => Promise<void> } = {},
): Promise<Bot> {
  const app = new App({
    token: s.botToken,
    signingSecret: s.signingSecret,
    clientOptions: { slackApiUrl: s.apiUrl },
    logLevel: LogLevel.ERROR,
  });
  const runs = { command: 0, action: 0, reaction: 0 };
  const errors: unknown[] = [];
  app.error(async (error) => {
    errors.push(error);
  });
  app.command('/imagine', async ({ ack, command, client }) => {
    runs.command += 1;
    await hooks.beforeAck?.();
    await ack(`Queued "${command.text}" at position 1`);
    const progress = await client.chat.postMessage({
      channel: command.channel_id,
      text: `Working on ${command.text}…`,
    });
    await client.files.uploadV2({
      channel_id: command.channel_id,
      thread_ts: progress.ts as string,
      file: png,
      filename: 'grid.png',
      initial_comment: `${command.text} (seed 42)`,
    });
    await client.chat.update({
      channel: command.channel_id,
      ts: progress.ts!,
      text: `Done: ${command.text}`,
      blocks: [
        { type: 'section', text: { type: 'mrkdwn', text: `*${command.text}*` } },
        {
          type: 'actions',
          block_id: 'job-1',
          elements: [
            {
              type: 'button',
              action_id: 'reroll',
              value: 'job-1',
              text: { type: 'plain_text', text: '🔄 Reroll' },
            },
          ],
        },
      ],
    });
  });
  app.action('reroll', async ({ ack, body, respond }) => {
    runs.action += 1;
    await ack();
    await respond({ replace_original: true, text: `Rerolled by <@${body.user.id}>` });
  });
  app.event('reaction_added', async ({ event, client }) => {
    runs.reaction += 1;
    if (event.reaction !== 'arrows_counterclockwise' || event.item.type !== 'message') return;
    await client.chat.postMessage({
      channel: event.item.channel,
      thread_ts: event.item.ts,
      text: `Reroll for <@${event.user}>`,
    });
  });
  const server = (await app.start(0)) as Server;
  s.setRequestUrl(`http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`);
  return { app, runs, errors };
}

describe('Slack simulator with Bolt (HTTP receiver)', () => {
  let s: SlackSimulator;
  let bot: Bot | undefined;
  let png: Buffer;

  beforeEach(async () => {
    s = await startSlackSimulator();
    png = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#2050c0' } })
      .png()
      .toBuffer();
  });

  afterEach(async () => {
    await bot?.app.stop();
    bot = undefined;
    await s.stop();
  });

  it('runs /imagine end to end: ack with a reply in time, progress, files v2 upload, update with buttons', async () => {
    bot = await startBot(s, png);
    const delivery = s.slash('/imagine', 'a blue square', { user: s.users.carol });
    const ack = await delivery.waitForAck();
    expect(ack).toMatchObject({ status: 200, timedOut: false, body: 'Queued "a blue square" at position 1' });
    expect(ack.ackMs).toBeLessThan(3000);
    expect(s.ephemerals(s.users.carol).map((e) => [e.source, e.text])).toEqual([
      ['ack', 'Queued "a blue square" at position 1'],
    ]);

    const result = await s.waitForMessage((m) => m.text === 'Done: a blue square');
    expect(result.buttons).toMatchObject([{ actionId: 'reroll', blockId: 'job-1', value: 'job-1' }]);
    expect(result.history.map((h) => h.text)).toEqual(['Working on a blue square…', 'Done: a blue square']);
    const [upload] = s.replies(result);
    expect(upload?.text).toBe('a blue square (seed 42)');
    expect(upload?.files[0]?.data?.equals(png)).toBe(true);
    await s.waitForCall((c) => c.method === 'chat.update');
    expect(s.calls.map((c) => c.method)).toEqual([
      'auth.test',
      'chat.postMessage',
      'files.getUploadURLExternal',
      'upload_url',
      'files.completeUploadExternal',
      'chat.update',
    ]);
    expect(s.calls.filter((c) => c.method !== 'upload_url').every((c) => c.token === 'bot')).toBe(true);
  });

  it('delivers a button click as signed block_actions; respond() replaces the message via response_url', async () => {
    bot = await startBot(s, png);
    s.slash('/imagine', 'fox');
    const result = await s.waitForMessage((m) => m.buttons.length > 0);
    const click = s.clickButton(result, 'reroll', { user: s.users.alice });
    expect((await click.waitForAck()).status).toBe(200);
    const post = await click.waitForResponse();
    expect(post.body).toMatchObject({ replace_original: true });
    expect(s.messages(s.channels.general).find((m) => m.ts === result.ts)?.text).toBe(
      `Rerolled by <@${s.users.alice.id}>`,
    );
  });

  it('delivers reaction_added events and answers url_verification', async () => {
    bot = await startBot(s, png);
    s.slash('/imagine', 'fox');
    const result = await s.waitForMessage((m) => m.buttons.length > 0);
    expect((await s.react(result, 'arrows_counterclockwise', s.users.carol).waitForAck()).status).toBe(200);
    const reply = await s.waitForMessage((m) => m.text.startsWith('Reroll for'));
    expect(reply).toMatchObject({ threadTs: result.ts, text: `Reroll for <@${s.users.carol.id}>` });

    const check = s.urlVerification({ challenge: 'abc123' });
    expect((await check.waitForAck()).body).toEqual({ challenge: 'abc123' });
  });

  it('sends requests with a bad signature or a stale timestamp that the bot refuses with 401', async () => {
    bot = await startBot(s, png);
    const forged = s.slash('/imagine', 'forged', { signature: 'bad' });
    const stale = s.slash('/imagine', 'replayed', { signature: 'stale' });
    const unsigned = s.slash('/imagine', 'unsigned', { signature: 'missing' });
    for (const delivery of [forged, stale, unsigned]) expect((await delivery.waitForAck()).status).toBe(401);
    expect(bot.runs.command).toBe(0);
    expect(s.calls.filter((c) => c.method.startsWith('chat.'))).toEqual([]);
  });

  it('survives an injected 429 on chat.update: the WebClient waits Retry-After and retries', async () => {
    bot = await startBot(s, png);
    const failure = s.failNext('chat.update', { retryAfter: 1 });
    s.slash('/imagine', 'patience');
    const served = await failure.served;
    const retried = await failure.retried;
    expect(served).toMatchObject({ status: 429, error: 'ratelimited', injected: true });
    expect(retried.at - served.at).toBeGreaterThanOrEqual(1000);
    await s.waitForMessage((m) => m.text === 'Done: patience');
    expect(bot.errors).toEqual([]);
  });

  it('records a late ack as timed out after the window', async () => {
    await s.stop();
    s = await startSlackSimulator({ ackTimeoutMs: 150 });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    bot = await startBot(s, png, { beforeAck: () => held });
    const ack = await s.slash('/imagine', 'slow').waitForAck();
    release();
    expect(ack).toMatchObject({ status: null, timedOut: true });
    expect(ack.ackMs).toBeGreaterThanOrEqual(140); // timers may fire a millisecond early
    // Slack dropped the request, so the late ack body never becomes a reply.
    await s.waitForMessage((m) => m.text === 'Done: slow');
    expect(s.ephemerals()).toEqual([]);
  });
});

describe('Slack simulator: modals (views.open and view_submission) with Bolt', () => {
  let s: SlackSimulator;
  let app: App | undefined;

  beforeEach(async () => {
    s = await startSlackSimulator();
  });

  afterEach(async () => {
    await app?.stop();
    app = undefined;
    await s.stop();
  });

  it('checks views like Slack, opens one per trigger_id, and delivers view_submission; an errors ack keeps it open', async () => {
    app = new App({
      token: s.botToken,
      signingSecret: s.signingSecret,
      clientOptions: { slackApiUrl: s.apiUrl },
      logLevel: LogLevel.ERROR,
    });
    const opened: { errors: string[] } = { errors: [] };
    const submitted: { user: string; values: unknown; metadata: string }[] = [];
    const input = {
      type: 'input' as const,
      block_id: 'prompt',
      label: { type: 'plain_text' as const, text: 'Prompt' },
      element: {
        type: 'plain_text_input' as const,
        action_id: 'prompt',
        multiline: true,
        max_length: 20,
        initial_value: 'a fox',
      },
    };
    app.action('remix', async ({ ack, body, client }) => {
      await ack();
      const trigger = (body as { trigger_id: string }).trigger_id;
      try {
        await client.views.open({
          trigger_id: trigger,
          view: {
            type: 'modal',
            title: { type: 'plain_text', text: 'A title longer than 24 chars' },
            blocks: [input],
          },
        });
      } catch (error) {
        opened.errors = (
          error as { data: { response_metadata: { messages: string[] } } }
        ).data.response_metadata.messages;
      }
      const view = {
        type: 'modal' as const,
        callback_id: 'remix-form',
        private_metadata: 'C-where',
        title: { type: 'plain_text' as const, text: 'Remix' },
        submit: { type: 'plain_text' as const, text: 'Make it' },
        blocks: [input],
      };
      await client.views.open({ trigger_id: trigger, view });
      await client.views.open({ trigger_id: trigger, view }).catch(() => {});
    });
    app.view('remix-form', async ({ ack, body, view }) => {
      const value = view.state.values.prompt?.prompt?.value ?? '';
      if (value.includes('bad')) {
        await ack({ response_action: 'errors', errors: { prompt: 'Not that word.' } });
        return;
      }
      await ack();
      submitted.push({ user: body.user.id, values: view.state.values, metadata: view.private_metadata });
    });
    const server = (await app.start(0)) as Server;
    s.setRequestUrl(`http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`);
    const message = s.state.postMessage({
      channel: s.channels.general.id,
      user: s.bot.id,
      text: 'result',
      blocks: [
        {
          type: 'actions',
          elements: [{ type: 'button', action_id: 'remix', text: { type: 'plain_text', text: 'Remix' } }],
        },
      ],
    });

    s.clickButton(message, 'remix', { user: s.users.carol });
    const view = await s.waitForView();
    expect(opened.errors).toEqual([
      '[ERROR] must be less than 25 characters [json-pointer:/view/title/text]',
      '[ERROR] must be provided when the view has input blocks [json-pointer:/view/submit]',
    ]);
    // The same trigger_id again: Slack has exchanged it for the first view already.
    await s.waitForCall((c) => c.method === 'views.open' && c.error === 'exchanged_trigger_id');
    expect(s.views).toHaveLength(1);
    expect(view).toMatchObject({
      user: s.users.carol.id,
      callbackId: 'remix-form',
      title: 'Remix',
      state: 'open',
    });
    expect(view.inputs).toEqual([
      expect.objectContaining({
        blockId: 'prompt',
        actionId: 'prompt',
        initialValue: 'a fox',
        maxLength: 20,
      }),
    ]);
    // Slack's client checks inputs before sending.
    expect(() => s.submitView(view, { prompt: '' })).toThrow(/"Prompt" is required/);
    expect(() => s.submitView(view, { prompt: 'x'.repeat(21) })).toThrow(/0–20 characters/);

    const bad = s.submitView(view, { prompt: 'a bad fox' });
    expect((await bad.waitForAck()).body).toEqual({
      response_action: 'errors',
      errors: { prompt: 'Not that word.' },
    });
    expect(view).toMatchObject({ state: 'open', errors: { prompt: 'Not that word.' } });
    const good = s.submitView(view, { prompt: 'a good fox' });
    expect((await good.waitForAck()).status).toBe(200);
    expect(view.state).toBe('submitted');
    expect(submitted).toEqual([
      {
        user: s.users.carol.id,
        values: { prompt: { prompt: { type: 'plain_text_input', value: 'a good fox' } } },
        metadata: 'C-where',
      },
    ]);
    expect(() => s.submitView(view)).toThrow(/closed/);
  });
});
