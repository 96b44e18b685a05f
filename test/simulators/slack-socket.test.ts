/**
 * The Slack simulator's Socket Mode against Bolt's SocketModeReceiver: apps.connections.open
 * with the app-level token, `hello`, envelopes for slash commands, interactivity and events,
 * acks matched by envelope_id and timed.
 */
import { App, LogLevel, SocketModeReceiver } from '@slack/bolt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type SlackSimulator, startSlackSimulator } from './slack/index.js';

describe('Slack simulator in Socket Mode', () => {
  let s: SlackSimulator;
  let app: App | undefined;
  let release: (() => void) | undefined;

  async function startBot(options: { holdAcks?: boolean } = {}): Promise<App> {
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const bot = new App({
      token: s.botToken,
      appToken: s.appToken,
      socketMode: true,
      clientOptions: { slackApiUrl: s.apiUrl },
      logLevel: LogLevel.ERROR,
    });
    bot.command('/imagine', async ({ ack, command, client }) => {
      if (options.holdAcks) await held;
      await ack({ text: `Queued "${command.text}"` });
      await client.chat.postMessage({
        channel: command.channel_id,
        text: `Result for ${command.text}`,
        blocks: [
          {
            type: 'section',
            text: { type: 'mrkdwn', text: command.text },
            accessory: {
              type: 'button',
              action_id: 'upscale',
              text: { type: 'plain_text', text: 'Upscale' },
              value: 'job-7',
            },
          },
        ],
      });
    });
    bot.action('upscale', async ({ ack, action, respond }) => {
      await ack();
      await respond({ text: `Upscaling ${'value' in action ? action.value : '?'}` });
    });
    bot.event('reaction_added', async ({ event, client }) => {
      await client.chat.postMessage({ channel: event.item.channel, text: `saw :${event.reaction}:` });
    });
    await bot.start();
    await s.waitForSocket();
    app = bot;
    return bot;
  }

  beforeEach(async () => {
    s = await startSlackSimulator();
  });

  afterEach(async () => {
    release?.();
    await app?.stop();
    app = undefined;
    await s.stop();
  });

  it('connects with the app token and delivers a slash command; the ack payload becomes the reply', async () => {
    await startBot();
    expect(s.calls.find((c) => c.method === 'apps.connections.open')).toMatchObject({
      token: 'app',
      ok: true,
    });
    const delivery = s.slash('/imagine', 'a lighthouse');
    const ack = await delivery.waitForAck();
    expect(delivery.transport).toBe('socket');
    expect(ack).toMatchObject({ status: 200, timedOut: false, body: { text: 'Queued "a lighthouse"' } });
    expect(ack.ackMs).toBeLessThan(3000);
    expect(s.ephemerals(s.users.bob).map((e) => e.text)).toEqual(['Queued "a lighthouse"']);
    await s.waitForMessage((m) => m.text === 'Result for a lighthouse');
  });

  it('delivers interactive and events_api envelopes', async () => {
    await startBot();
    s.slash('/imagine', 'owl');
    const result = await s.waitForMessage((m) => m.buttons.length > 0);
    const click = s.clickButton(result, 'upscale', { user: s.users.carol });
    expect((await click.waitForAck()).status).toBe(200);
    expect((await click.waitForResponse()).body).toEqual({ text: 'Upscaling job-7' });
    expect(s.ephemerals(s.users.carol).map((e) => e.text)).toEqual(['Upscaling job-7']);

    expect((await s.react(result, 'star', s.users.alice).waitForAck()).status).toBe(200);
    await s.waitForMessage((m) => m.text === 'saw :star:');
  });

  it('records an envelope left unacked past the window as timed out', async () => {
    await s.stop();
    s = await startSlackSimulator({ ackTimeoutMs: 150 });
    await startBot({ holdAcks: true });
    const delivery = s.slash('/imagine', 'slow');
    const ack = await delivery.waitForAck();
    expect(ack).toMatchObject({ status: null, timedOut: true });
    expect(ack.ackMs).toBeGreaterThanOrEqual(140); // timers may fire a millisecond early
    const late = new Promise((resolve) => s.on('lateAck', resolve));
    release?.();
    expect(await late).toBe(delivery);
    expect(delivery.lateAckMs).toBeGreaterThan(ack.ackMs);
    // Slack ignored the late ack: its text never became a reply.
    await s.waitForMessage((m) => m.text === 'Result for slow');
    expect(s.ephemerals()).toEqual([]);
  });

  it('asks the app to reconnect (disconnect: refresh_requested); it opens a new connection and keeps working', async () => {
    // The receiver's clientPingTimeout also paces reconnects (5 s by default); shortened here.
    const receiver = new SocketModeReceiver({
      appToken: s.appToken,
      clientPingTimeout: 20,
      installerOptions: { clientOptions: { slackApiUrl: s.apiUrl } },
      logLevel: LogLevel.ERROR,
    });
    const bot = new App({
      token: s.botToken,
      receiver,
      clientOptions: { slackApiUrl: s.apiUrl },
      logLevel: LogLevel.ERROR,
    });
    bot.command('/imagine', async ({ ack }) => {
      await ack('still here');
    });
    await bot.start();
    app = bot;
    await s.waitForSocket();
    const closed = new Promise((resolve) => s.on('socketClosed', resolve));
    const reconnected = new Promise((resolve) => s.on('socketConnected', resolve));
    s.socket.requestReconnect();
    await closed;
    await reconnected;
    expect(s.calls.filter((c) => c.method === 'apps.connections.open')).toHaveLength(2);
    expect((await s.slash('/imagine', 'x').waitForAck()).body).toEqual({ text: 'still here' });
  });

  it('refuses to open a socket with the bot token, and refuses the app token for bot methods', async () => {
    const open = await fetch(`${s.apiUrl}apps.connections.open`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.botToken}` },
    });
    expect(await open.json()).toMatchObject({ ok: false, error: 'not_allowed_token_type' });
    const post = await fetch(`${s.apiUrl}chat.postMessage`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.appToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: s.channels.general.id, text: 'hi' }),
    });
    expect(await post.json()).toMatchObject({ ok: false, error: 'not_allowed_token_type' });
  });
});
