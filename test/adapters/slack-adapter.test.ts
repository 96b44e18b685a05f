/**
 * SlackChatAdapter on the real WebClient against the Slack simulator: what lands in Slack for
 * each ChatAdapter call, and how it copes with Slack's asynchronous file processing, retries,
 * deleted messages and channels the bot is not in.
 */

import { webApi } from '@slack/bolt';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlackChatAdapter } from '../../adapters/slack/chat-adapter.js';
import { SlackNotInChannelError } from '../../adapters/slack/errors.js';
import type { ChatImage, PostedMessage } from '../../commands/types.js';
import { NotFoundError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { type SlackSimulator, startSlackSimulator } from '../simulators/slack/index.js';

let s: SlackSimulator;
/** chat.update calls carrying an image block that the fake "still processing" refuses. */
let refuseImageBlocks: number;

beforeEach(async () => {
  s = await startSlackSimulator();
  refuseImageBlocks = 0;
});
afterEach(async () => {
  await s.stop();
});

/**
 * Slack refuses an image block naming a file it has not finished processing; the simulator
 * finishes at once, so this fetch answers for Slack the first `refuseImageBlocks` times.
 */
const slackFetch: webApi.FetchFunction = async (url, init) => {
  const body = typeof init?.body === 'string' ? decodeURIComponent(init.body) : '';
  if (String(url).endsWith('/chat.update') && body.includes('slack_file') && refuseImageBlocks > 0) {
    refuseImageBlocks -= 1;
    return new Response(
      JSON.stringify({
        ok: false,
        error: 'invalid_blocks',
        errors: ['invalid slack file [json-pointer:/blocks/1]'],
      }),
      { status: 200, headers: { 'content-type': 'application/json' } },
    ) as unknown as Awaited<ReturnType<webApi.FetchFunction>>;
  }
  return fetch(url, init as RequestInit) as unknown as Awaited<ReturnType<webApi.FetchFunction>>;
};

function adapter(options: { imageRetryDelaysMs?: number[] } = {}): SlackChatAdapter {
  return new SlackChatAdapter({
    client: new webApi.WebClient(s.botToken, {
      slackApiUrl: s.apiUrl,
      fetch: slackFetch,
      retryConfig: { retries: 2, minTimeout: 10, maxTimeout: 50 },
    }),
    uploadLimitBytes: 5_000_000,
    logger: createLogger({ level: 'silent' }),
    imageRetryDelaysMs: options.imageRetryDelaysMs ?? [5, 10],
  });
}

async function image(color: string, format: 'png' | 'webp' = 'png'): Promise<ChatImage> {
  const data = await sharp({ create: { width: 16, height: 16, channels: 3, background: color } })
    .toFormat(format)
    .toBuffer();
  return { data, filename: `tile.${format}`, mime: `image/${format}`, width: 16, height: 16 };
}

const target = () => ({ platform: 'slack', channelId: s.channels.general.id, teamId: s.teamId });
const live = (posted: PostedMessage) => s.messages(posted.channelId).find((m) => m.ts === posted.messageId)!;
const blockTypes = (posted: PostedMessage) => live(posted).blocks.map((b) => b.type);

describe('SlackChatAdapter', () => {
  it('posts a message with an image: text and buttons, the file in its thread, then the image inline', async () => {
    const chat = adapter();
    const tile = await image('#336699');
    const posted = await chat.post(target(), {
      text: '**tile**',
      image: tile,
      buttons: [[{ id: 'at1:r:J1', label: 'Reroll', emoji: '🔄' }]],
    });
    expect(posted).toMatchObject({ platform: 'slack', channelId: s.channels.general.id, teamId: s.teamId });
    const message = live(posted);
    const [reply] = s.replies(message);
    expect(reply!.files[0]!.data!.equals(Buffer.from(tile.data))).toBe(true);
    expect(posted.extra).toEqual({ fileIds: [reply!.files[0]!.id] });
    expect(message.blocks[1]).toMatchObject({ type: 'image', slack_file: { id: reply!.files[0]!.id } });
    expect(message.text).toBe('*tile*');
    expect(message.buttons.map((b) => b.actionId)).toEqual(['at1:r:J1']);
  });

  it('retries an image block Slack is still processing, then shows it inline', async () => {
    const chat = adapter();
    const posted = await chat.post(target(), { text: 'progress' });
    refuseImageBlocks = 2;
    await chat.edit(posted, { text: 'done', image: await image('#aa0000') });
    expect(refuseImageBlocks).toBe(0);
    expect(blockTypes(posted)).toEqual(['section', 'image']);
  });

  it('links to the file when Slack keeps refusing the image block, or cannot show the format inline', async () => {
    const chat = adapter();
    const posted = await chat.post(target(), { text: 'progress' });
    refuseImageBlocks = 3;
    await chat.edit(posted, { text: 'done', image: await image('#00aa00') });
    expect(blockTypes(posted)).toEqual(['section', 'context']);
    expect(JSON.stringify(live(posted).blocks[1])).toMatch(
      /<https:\/\/simulated\.slack\.com\/files\/.+\|tile\.png>/,
    );

    const webp = await chat.post(target(), { text: 'small', image: await image('#0000aa', 'webp') });
    expect(blockTypes(webp)).toEqual(['section', 'context']);
  });

  it('uploads an image once per message, however often the message is edited with it', async () => {
    const chat = adapter();
    const posted = await chat.post(target(), { text: 'queued' });
    const tile = await image('#123456');
    await chat.edit(posted, { text: 'done', image: tile });
    await chat.edit(posted, { text: 'done, shared', image: tile });
    expect(s.files()).toHaveLength(1);
    await chat.edit(posted, { text: 'another', image: await image('#654321') });
    expect(s.files()).toHaveLength(2);
  });

  it('keeps the edits of one message in order, even when an earlier one waits out a 429', async () => {
    const chat = adapter();
    const posted = await chat.post(target(), { text: 'queued' });
    s.failNext('chat.update', { retryAfter: 1 });
    await Promise.all([chat.edit(posted, { text: 'step 1/4' }), chat.edit(posted, { text: 'done' })]);
    expect(live(posted).history.map((h) => h.text)).toEqual(['queued', 'step 1/4', 'done']);
  });

  it('deletes the message and its uploaded file; a message already gone is fine', async () => {
    const chat = adapter();
    const posted = await chat.post(target(), { text: 'x', image: await image('#999999') });
    const message = live(posted);
    await chat.delete(posted);
    expect(message.deleted).toBe(true);
    expect(s.calls.filter((c) => c.method === 'files.delete').map((c) => c.args.file)).toEqual(
      posted.extra!.fileIds,
    );
    await expect(chat.delete(posted)).resolves.toBeUndefined();
  });

  it('says NotFoundError for an edit of a deleted message and SlackNotInChannelError where it is not a member', async () => {
    const chat = adapter();
    const posted = await chat.post(target(), { text: 'x' });
    await chat.delete(posted);
    await expect(chat.edit(posted, { text: 'y' })).rejects.toBeInstanceOf(NotFoundError);
    const elsewhere = s.state.addChannel('no-bot', { members: [s.users.alice.id] });
    const refused = chat.post({ platform: 'slack', channelId: elsewhere.id }, { text: 'hi' });
    await expect(refused).rejects.toBeInstanceOf(SlackNotInChannelError);
    await expect(refused).rejects.toMatchObject({ userMessage: expect.stringMatching(/\/invite @atelier/) });
  });

  it('tells one person privately with chat.postEphemeral', async () => {
    const chat = adapter();
    await chat.tellPrivately(target(), s.users.bob.id, { text: 'Your job **failed**.' });
    expect(s.ephemerals(s.users.bob)).toMatchObject([
      { source: 'chat.postEphemeral', text: 'Your job *failed*.', channel: s.channels.general.id },
    ]);
    expect(s.ephemerals(s.users.alice)).toEqual([]);
  });
});
