/**
 * The Slack simulator's Web API fidelity, through Bolt's own WebClient: the error codes Slack
 * answers for the mistakes an adapter can make, and the shapes of what it returns.
 */
import { App, LogLevel } from '@slack/bolt';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type SlackSimulator, startSlackSimulator } from './slack/index.js';

type Client = App['client'];

/** The Slack error code a call was refused with. */
async function slackError(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (error) {
    const data = (error as { data?: { error?: string } }).data;
    if (data?.error) return data.error;
    throw error;
  }
  throw new Error('expected Slack to refuse the call');
}

describe('Slack simulator: Web API', () => {
  let s: SlackSimulator;
  let client: Client;

  const clientWith = (token: string, options: Record<string, unknown> = {}): Client =>
    new App({
      token,
      signingSecret: s.signingSecret,
      clientOptions: { slackApiUrl: s.apiUrl, ...options },
      logLevel: LogLevel.ERROR,
      tokenVerificationEnabled: false,
    }).client;

  beforeEach(async () => {
    s = await startSlackSimulator();
    client = clientWith(s.botToken);
  });
  afterEach(() => s.stop());

  it('checks tokens: invalid_auth for an unknown one; auth.test describes the bot', async () => {
    expect(await slackError(clientWith('xoxb-wrong').auth.test())).toBe('invalid_auth');
    const me = await client.auth.test();
    expect(me).toMatchObject({ ok: true, user_id: s.bot.id, team_id: s.teamId, bot_id: s.state.botId });
  });

  it('refuses bad messages the way Slack does', async () => {
    const general = s.channels.general.id;
    expect(await slackError(client.chat.postMessage({ channel: 'C0NOTREAL00', text: 'x' }))).toBe(
      'channel_not_found',
    );
    expect(await slackError(client.chat.postMessage({ channel: general, text: '' }))).toBe('no_text');
    const blocks = Array.from({ length: 51 }, () => ({ type: 'divider' }));
    expect(await slackError(client.chat.postMessage({ channel: general, text: 'x', blocks }))).toBe(
      'invalid_blocks',
    );
    expect(await slackError(client.chat.postMessage({ channel: general, text: 'x'.repeat(40_001) }))).toBe(
      'msg_too_long',
    );

    const theirs = s.say(s.channels.general, 'a person wrote this');
    expect(await slackError(client.chat.update({ channel: general, ts: theirs.ts, text: 'mine now' }))).toBe(
      'cant_update_message',
    );
    expect(await slackError(client.chat.delete({ channel: general, ts: theirs.ts }))).toBe(
      'cant_delete_message',
    );
    expect(await slackError(client.chat.update({ channel: general, ts: '1.000001', text: 'x' }))).toBe(
      'message_not_found',
    );
  });

  it('takes reaction shortcodes, not emoji characters', async () => {
    const posted = await client.chat.postMessage({ channel: s.channels.general.id, text: 'react to me' });
    const target = { channel: s.channels.general.id, timestamp: posted.ts! };
    expect(await slackError(client.reactions.add({ ...target, name: '🔄' }))).toBe('invalid_name');
    await client.reactions.add({ ...target, name: 'arrows_counterclockwise' });
    expect(await slackError(client.reactions.add({ ...target, name: 'arrows_counterclockwise' }))).toBe(
      'already_reacted',
    );
    expect(s.messages(s.channels.general)[0]?.reactions).toEqual([
      { name: 'arrows_counterclockwise', users: [s.bot.id] },
    ]);
  });

  it('posts ephemeral messages only to channel members, and builds permalinks', async () => {
    const secret = s.createChannel('secret', { private: true, members: [s.users.alice] });
    expect(
      await slackError(client.chat.postEphemeral({ channel: secret.id, user: s.users.bob.id, text: 'psst' })),
    ).toBe('user_not_in_channel');
    const { message_ts: ts } = await client.chat.postEphemeral({
      channel: secret.id,
      user: s.users.alice.id,
      text: 'psst',
    });
    expect(s.ephemerals(s.users.alice)).toMatchObject([
      { ts, channel: secret.id, text: 'psst', source: 'chat.postEphemeral' },
    ]);

    const posted = await client.chat.postMessage({ channel: s.channels.general.id, text: 'link me' });
    const { permalink } = await client.chat.getPermalink({
      channel: s.channels.general.id,
      message_ts: posted.ts!,
    });
    expect(permalink).toBe(
      `https://atelier-lab.slack.com/archives/${s.channels.general.id}/p${posted.ts!.replace('.', '')}`,
    );
  });

  it('describes channels and users (admins flagged)', async () => {
    const { channel } = await client.conversations.info({ channel: s.channels.showcase.id });
    expect(channel).toMatchObject({
      id: s.channels.showcase.id,
      name: 'showcase',
      is_channel: true,
      is_member: true,
    });
    const { user } = await client.users.info({ user: s.users.alice.id });
    expect(user).toMatchObject({
      name: 'alice',
      team_id: s.teamId,
      is_admin: true,
      is_owner: true,
      is_primary_owner: true,
      is_bot: false,
    });
    const dana = s.createUser('dana', { admin: true });
    const erin = s.createUser('erin', { owner: true });
    expect((await client.users.info({ user: dana.id })).user).toMatchObject({
      is_admin: true,
      is_owner: false,
      is_primary_owner: false,
    });
    expect((await client.users.info({ user: erin.id })).user).toMatchObject({
      is_admin: true,
      is_owner: true,
      is_primary_owner: false,
    });
    expect((await client.users.info({ user: s.users.bob.id })).user).toMatchObject({
      is_admin: false,
      is_owner: false,
      is_primary_owner: false,
    });
    expect(await slackError(client.users.info({ user: 'U0NOTREAL00' }))).toBe('user_not_found');
  });

  it('completes an upload only after the bytes arrived, and serves url_private with the bot token', async () => {
    const { upload_url: uploadUrl, file_id: fileId } = await client.files.getUploadURLExternal({
      filename: 'a.png',
      length: 3,
    });
    expect(await slackError(client.files.completeUploadExternal({ files: [{ id: fileId! }] }))).toBe(
      'file_upload_not_found',
    );
    expect((await fetch(uploadUrl!, { method: 'POST', body: new Uint8Array([1, 2, 3]) })).status).toBe(200);
    const done = await client.files.completeUploadExternal({
      files: [{ id: fileId!, title: 'Grid' }],
      channel_id: s.channels.general.id,
    });
    const [file] = done.files as { url_private: string; title: string }[];
    expect(file?.title).toBe('Grid');
    expect((await fetch(file!.url_private)).status).toBe(403);
    const bytes = await fetch(file!.url_private, { headers: { authorization: `Bearer ${s.botToken}` } });
    expect([...new Uint8Array(await bytes.arrayBuffer())]).toEqual([1, 2, 3]);
  });

  it('injects 429s with Retry-After; a client that rejects rate-limited calls sees the wait', async () => {
    s.failNext('chat.postMessage', { retryAfter: 7 });
    const strict = clientWith(s.botToken, { rejectRateLimitedCalls: true });
    await expect(
      strict.chat.postMessage({ channel: s.channels.general.id, text: 'x' }),
    ).rejects.toMatchObject({
      code: 'slack_webapi_rate_limited_error',
      retryAfter: 7,
    });
    expect(s.calls.at(-1)).toMatchObject({ method: 'chat.postMessage', status: 429, injected: true });
  });

  it('answers unknown_method for what it does not simulate, and logs it', async () => {
    expect(await slackError(client.apiCall('pins.add', { channel: s.channels.general.id }))).toBe(
      'unknown_method',
    );
    expect(s.unhandledCalls.map((c) => c.method)).toEqual(['pins.add']);
    expect(
      await slackError(
        client.views.open({
          trigger_id: 'nope',
          view: { type: 'modal', title: { type: 'plain_text', text: 't' }, blocks: [] },
        }),
      ),
    ).toBe('invalid_trigger_id');
  });
});

describe('Slack simulator: rate limits, image blocks naming files', () => {
  let s: SlackSimulator;
  let client: Client;

  beforeEach(async () => {
    s = await startSlackSimulator();
    client = new App({
      token: s.botToken,
      signingSecret: s.signingSecret,
      clientOptions: { slackApiUrl: s.apiUrl, rejectRateLimitedCalls: true, retryConfig: { retries: 0 } },
      logLevel: LogLevel.ERROR,
      tokenVerificationEnabled: false,
    }).client;
    vi.useFakeTimers({ toFake: ['Date'], now: Date.UTC(2026, 0, 1) });
  });
  afterEach(async () => {
    vi.useRealTimers();
    await s.stop();
  });

  const general = () => s.channels.general.id;

  /** Uploads a file (files v2), shared into `channel` when given. */
  async function upload(filename: string, channel?: string): Promise<string> {
    const { upload_url: url, file_id: id } = await client.files.getUploadURLExternal({ filename, length: 3 });
    await fetch(url!, { method: 'POST', body: new Uint8Array([1, 2, 3]) });
    await client.files.completeUploadExternal({
      files: [{ id: id! }],
      ...(channel ? { channel_id: channel } : {}),
    });
    return id!;
  }

  it('chat.update: 50 in any minute of the workspace (Tier 3), then 429 with Retry-After until the oldest is a minute old', async () => {
    const { ts } = await client.chat.postMessage({ channel: general(), text: 'job' });
    for (let i = 0; i < 50; i++) {
      await client.chat.update({ channel: general(), ts: ts!, text: `step ${i}` });
      vi.setSystemTime(Date.now() + 100);
    }
    await expect(
      client.chat.update({ channel: general(), ts: ts!, text: 'one too many' }),
    ).rejects.toMatchObject({
      code: 'slack_webapi_rate_limited_error',
      retryAfter: 55,
    });
    expect(s.rateLimitedCalls).toMatchObject([{ method: 'chat.update', status: 429, error: 'ratelimited' }]);
    // A refused call does not count; once the first update is a minute old, one more passes.
    vi.setSystemTime(Date.now() + 55_000);
    await client.chat.update({ channel: general(), ts: ts!, text: 'a minute later' });
    await expect(client.chat.update({ channel: general(), ts: ts!, text: 'again' })).rejects.toMatchObject({
      retryAfter: 1,
    });
  });

  it('messages into one channel: bursts of 5, then 1 a second; file shares count, other channels do not', async () => {
    for (let i = 0; i < 4; i++) await client.chat.postMessage({ channel: general(), text: `m${i}` });
    await upload('a.png', general());
    await expect(client.chat.postMessage({ channel: general(), text: 'sixth' })).rejects.toMatchObject({
      retryAfter: 1,
    });
    await client.chat.postMessage({ channel: s.channels.showcase.id, text: 'elsewhere' });
    vi.setSystemTime(Date.now() + 1000);
    await client.chat.postMessage({ channel: general(), text: 'a second later' });
    await expect(client.chat.postMessage({ channel: general(), text: 'too soon' })).rejects.toMatchObject({
      retryAfter: 1,
    });
    expect(s.rateLimitedCalls.map((c) => c.method)).toEqual(['chat.postMessage', 'chat.postMessage']);
  });

  it('an image block shows a shared PNG, JPEG or GIF only; deleting a file removes the message that shared it', async () => {
    const { ts } = await client.chat.postMessage({ channel: general(), text: 'job' });
    const image = (id: string) => [{ type: 'image', slack_file: { id }, alt_text: 'x' }];
    const shared = await upload('preview.jpg', general());
    const unshared = await upload('private.png');
    const webp = await upload('preview.webp', general());
    await client.chat.update({ channel: general(), ts: ts!, text: 'ok', blocks: image(shared) });
    for (const id of [unshared, webp, 'F0NOTREAL00']) {
      vi.setSystemTime(Date.now() + 1000);
      await expect(
        client.chat.update({ channel: general(), ts: ts!, text: 'no', blocks: image(id) }),
      ).rejects.toMatchObject({
        data: { error: 'invalid_blocks', errors: ['invalid slack file [json-pointer:/blocks/0/slack_file]'] },
      });
    }
    const shareMessage = s.messages(s.channels.general).find((m) => m.files.some((f) => f.id === shared))!;
    await client.files.delete({ file: shared });
    expect(s.messages(s.channels.general)).not.toContain(shareMessage);
    await expect(
      client.chat.update({ channel: general(), ts: ts!, text: 'gone', blocks: image(shared) }),
    ).rejects.toMatchObject({ data: { error: 'invalid_blocks' } });
  });
});
