/**
 * The ChatAdapter port on Slack's Web API. A message is one Slack message: its text as mrkdwn
 * sections, its buttons as actions blocks and — for results — its image as an `image` block that
 * shows an uploaded file. Slack only lets channel members see files shared into the channel, so
 * the image is first uploaded (files v2) as a reply in the message's thread, then shown inline in
 * the message itself: the job message stays the one place with image and buttons, edited in
 * place, and the thread keeps the full-size file for download.
 *
 * Progress previews are not shown: Slack has no cheap way to swap an inline image, and each
 * preview would leave a file in the thread. The progress bar text is edited instead.
 */
import { createHash } from 'node:crypto';
import type { types, webApi } from '@slack/bolt';
import type { ChatAdapter, ChatImage, ChatMessage, PostedMessage } from '../../commands/types.js';
import { AtelierError } from '../../src/errors.js';
import type { ReplyTarget } from '../../src/jobs/types.js';
import type { Logger } from '../../src/log.js';
import { altTextOf, type ImageView, renderMessage } from './blocks.js';
import { asSlackError, slackErrorCode } from './errors.js';

export interface SlackChatAdapterOptions {
  client: webApi.WebClient;
  /** Largest upload in bytes (config `images.maxUploadBytes.slack`). */
  uploadLimitBytes: number;
  logger: Logger;
  /**
   * Slack processes uploads asynchronously; an image block naming a file it has not finished
   * yet is refused (`invalid_blocks`). Waits before each retry; after the last the message links
   * to the file instead. @default [1000, 3000]
   */
  imageRetryDelaysMs?: readonly number[];
}

/** Image formats an `image` block can show from a Slack file. */
const INLINE_MIME = new Set(['image/png', 'image/jpeg', 'image/gif']);
/** Uploaded files remembered per message, so re-showing the same image does not upload it again. */
const REMEMBERED_UPLOADS = 1000;

interface Upload {
  hash: string;
  fileId: string;
  permalink: string | undefined;
}

export class SlackChatAdapter implements ChatAdapter {
  readonly platform = 'slack';
  readonly #client: webApi.WebClient;
  readonly #options: Required<Omit<SlackChatAdapterOptions, 'client'>>;
  readonly #uploads = new Map<string, Upload>();
  /** Edits of one message run one after another, so a slow (retried) edit never lands last. */
  readonly #chains = new Map<string, Promise<unknown>>();

  constructor(options: SlackChatAdapterOptions) {
    this.#client = options.client;
    this.#options = {
      uploadLimitBytes: options.uploadLimitBytes,
      logger: options.logger,
      imageRetryDelaysMs: options.imageRetryDelaysMs ?? [1000, 3000],
    };
  }

  /** Opens a modal for the person whose click gave `triggerId` (valid 3 s, one modal). */
  async openView(triggerId: string, view: types.ModalView): Promise<void> {
    try {
      await this.#client.views.open({ trigger_id: triggerId, view });
    } catch (error) {
      const code = slackErrorCode(error);
      // The click's trigger lasts 3 s and opens one modal: a slow bot asks for a new click.
      if (code === 'expired_trigger_id' || code === 'exchanged_trigger_id') {
        throw new AtelierError(
          'TIMEOUT',
          `slack: views.open: ${code}`,
          'That took me too long to open the form. Please click again.',
          { cause: error },
        );
      }
      throw error;
    }
  }

  async post(target: ReplyTarget, message: ChatMessage): Promise<PostedMessage> {
    const { text, blocks } = renderMessage(message);
    let ts: string;
    try {
      const answer = await this.#client.chat.postMessage({
        channel: target.channelId,
        text,
        blocks,
        ...(target.threadId ? { thread_ts: target.threadId } : {}),
      });
      ts = answer.ts as string;
    } catch (error) {
      throw asSlackError(error, { channelId: target.channelId });
    }
    const posted: PostedMessage = {
      platform: this.platform,
      channelId: target.channelId,
      messageId: ts,
      ...(target.threadId ? { threadId: target.threadId } : {}),
      ...(target.teamId ? { teamId: target.teamId } : {}),
    };
    if (!message.image) return posted;
    const upload = await this.#serialized(posted, () => this.#showWithImage(posted, message, message.image!));
    return { ...posted, extra: { fileIds: [upload.fileId] } };
  }

  async edit(posted: PostedMessage, next: ChatMessage): Promise<void> {
    await this.#serialized(posted, async () => {
      if (next.image) {
        await this.#showWithImage(posted, next, next.image);
        return;
      }
      await this.#update(posted, renderMessage(next));
    });
  }

  async delete(posted: PostedMessage): Promise<void> {
    await this.#serialized(posted, async () => {
      try {
        await this.#client.chat.delete({ channel: posted.channelId, ts: posted.messageId });
      } catch (error) {
        // Already gone is what was asked for.
        if (slackErrorCode(error) !== 'message_not_found') throw asSlackError(error, this.#where(posted));
      }
      for (const fileId of this.#fileIdsOf(posted)) {
        await this.#client.files.delete({ file: fileId }).catch((error: unknown) => {
          this.#options.logger.warn({ err: error, fileId }, 'slack: could not delete an uploaded image');
        });
      }
      this.#uploads.delete(keyOf(posted));
    });
  }

  async tellPrivately(target: ReplyTarget, userId: string, message: ChatMessage): Promise<void> {
    const { text, blocks } = renderMessage({ ...message, image: undefined });
    try {
      await this.#client.chat.postEphemeral({
        channel: target.channelId,
        user: userId,
        text,
        blocks,
        ...(target.threadId ? { thread_ts: target.threadId } : {}),
      });
    } catch (error) {
      throw asSlackError(error, { channelId: target.channelId });
    }
  }

  uploadLimit(_target: ReplyTarget): number {
    return this.#options.uploadLimitBytes;
  }

  /** Uploads `image` into the message's thread (once per image) and shows it in the message. */
  async #showWithImage(posted: PostedMessage, message: ChatMessage, image: ChatImage): Promise<Upload> {
    const upload = await this.#upload(posted, image);
    const link: ImageView = { kind: 'link', permalink: upload.permalink, filename: image.filename };
    if (!INLINE_MIME.has(image.mime)) {
      await this.#update(posted, renderMessage(message, link));
      return upload;
    }
    const inline: ImageView = { kind: 'file', fileId: upload.fileId, alt: altTextOf(message) };
    for (const delayMs of [...this.#options.imageRetryDelaysMs, undefined]) {
      try {
        await this.#update(posted, renderMessage(message, inline), { rawErrors: true });
        return upload;
      } catch (error) {
        if (slackErrorCode(error) !== 'invalid_blocks') throw asSlackError(error, this.#where(posted));
        if (delayMs === undefined) break;
        await delay(delayMs);
      }
    }
    this.#options.logger.warn(
      { fileId: upload.fileId, channelId: posted.channelId },
      'slack: the uploaded image could not be shown inline; linking to it instead',
    );
    await this.#update(posted, renderMessage(message, link));
    return upload;
  }

  async #upload(posted: PostedMessage, image: ChatImage): Promise<Upload> {
    const key = keyOf(posted);
    const hash = createHash('sha256').update(image.data).digest('base64url');
    const known = this.#uploads.get(key);
    if (known?.hash === hash) return known;
    let answer: Awaited<ReturnType<webApi.WebClient['filesUploadV2']>>;
    try {
      answer = await this.#client.filesUploadV2({
        channel_id: posted.channelId,
        // A reply's ts is never a thread: replies go to the thread's parent.
        thread_ts: posted.threadId ?? posted.messageId,
        file: Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength),
        filename: image.filename,
        title: image.filename,
        alt_text: image.filename,
      });
    } catch (error) {
      throw asSlackError(error, this.#where(posted));
    }
    const file = answer.files[0]?.files?.[0];
    if (!file?.id) throw new Error('slack: files.completeUploadExternal answered without a file id');
    const upload: Upload = { hash, fileId: file.id, permalink: file.permalink };
    this.#uploads.delete(key);
    this.#uploads.set(key, upload);
    if (this.#uploads.size > REMEMBERED_UPLOADS) this.#uploads.delete(this.#uploads.keys().next().value!);
    return upload;
  }

  async #update(
    posted: PostedMessage,
    rendering: ReturnType<typeof renderMessage>,
    options: { rawErrors?: boolean } = {},
  ): Promise<void> {
    try {
      await this.#client.chat.update({
        channel: posted.channelId,
        ts: posted.messageId,
        text: rendering.text,
        blocks: rendering.blocks,
      });
    } catch (error) {
      throw options.rawErrors ? error : asSlackError(error, this.#where(posted));
    }
  }

  #fileIdsOf(posted: PostedMessage): string[] {
    const recorded = posted.extra?.fileIds;
    const ids = new Set(Array.isArray(recorded) ? recorded.filter((id) => typeof id === 'string') : []);
    const remembered = this.#uploads.get(keyOf(posted));
    if (remembered) ids.add(remembered.fileId);
    return [...ids];
  }

  #where(posted: PostedMessage) {
    return { channelId: posted.channelId, messageId: posted.messageId };
  }

  #serialized<T>(posted: PostedMessage, run: () => Promise<T>): Promise<T> {
    const key = keyOf(posted);
    const previous = this.#chains.get(key) ?? Promise.resolve();
    const next = previous.then(run, run);
    const settled = next.catch(() => undefined);
    this.#chains.set(key, settled);
    void settled.then(() => {
      if (this.#chains.get(key) === settled) this.#chains.delete(key);
    });
    return next;
  }
}

function keyOf(posted: PostedMessage): string {
  return `${posted.channelId}:${posted.messageId}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
