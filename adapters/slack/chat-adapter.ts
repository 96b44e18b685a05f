/**
 * The ChatAdapter port on Slack's Web API. A message is one Slack message: its text as mrkdwn
 * sections, its buttons as actions blocks and — for results and progress previews — its image as
 * an `image` block that shows an uploaded file. Slack only lets channel members see files shared
 * into the channel, so the image is first uploaded (files v2) as a reply in the message's thread,
 * then shown inline in the message itself: the job message stays the one place with image and
 * buttons, edited in place, and the thread keeps the full-size file for download.
 *
 * Progress (edits the bot marks `transient`: queue position, step k/n with a preview) is paced
 * (edit-pacer.ts): at most one edit per message per `progressIntervalMs`, one per channel per
 * `channelIntervalMs`, and `updatesPerMinute` chat.update calls in the workspace, always the
 * newest state. Its preview is uploaded into the thread as a JPEG (an image block shows PNG, JPEG
 * and GIF only), shown inline, and deleted once a newer preview or the result replaces it, so the
 * thread ends with the result alone. The preview files a message holds are reported with it
 * (`extra.previewFiles`, through EditOptions.updated) and recorded with the job, so that after a
 * restart the resumed job's next preview or its result still deletes them. Final edits go out at
 * once and replace whatever waits.
 */
import { createHash } from 'node:crypto';
import { type types, webApi } from '@slack/bolt';
import sharp from 'sharp';
import type {
  ChatAdapter,
  ChatImage,
  ChatMessage,
  EditOptions,
  PostedMessage,
} from '../../commands/types.js';
import { AtelierError } from '../../src/errors.js';
import type { ReplyTarget } from '../../src/jobs/types.js';
import type { Logger } from '../../src/log.js';
import { altTextOf, type ImageView, renderMessage } from './blocks.js';
import { EditPacer } from './edit-pacer.js';
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
  /**
   * Least time between two progress edits of one message (config `slack.progressEditIntervalMs`).
   * @default 2000
   */
  progressIntervalMs?: number;
  /** Least time between two progress edits in one channel (Slack: about 1 message/s). @default 1000 */
  channelIntervalMs?: number;
  /**
   * chat.update calls per minute progress may use in the workspace (config `slack.updatesPerMinute`;
   * Slack's Tier 3 allows about 50, the rest is left to final edits). @default 40
   */
  updatesPerMinute?: number;
}

export const SLACK_PROGRESS_DEFAULTS = {
  progressIntervalMs: 2000,
  channelIntervalMs: 1000,
  updatesPerMinute: 40,
} as const;

/** Image formats an `image` block can show from a Slack file. */
const INLINE_MIME = new Set(['image/png', 'image/jpeg', 'image/gif']);
/** Uploaded files remembered per message, so re-showing the same image does not upload it again. */
const REMEMBERED_UPLOADS = 1000;

interface Upload {
  hash: string;
  fileId: string;
  permalink: string | undefined;
}

/** A progress preview uploaded into a message's thread. */
interface PreviewFile {
  hash: string;
  fileId: string;
}

/** The previews of one message: the one it shows, and a newer one Slack was still processing. */
interface Previews {
  shown?: PreviewFile;
  candidate?: PreviewFile;
}

/**
 * The preview files of a message as recorded in its `extra` (`previewFiles`): the ids alone, read
 * back after a restart (the hash is unknown then, so a new preview never matches them).
 */
interface RecordedPreviews {
  shown?: string;
  candidate?: string;
}

/** A progress state waiting for its turn (edit-pacer.ts). */
interface Progress {
  posted: PostedMessage;
  message: ChatMessage;
  /** Told the message's details once the state is shown, when its preview files changed. */
  updated?: (posted: PostedMessage) => void;
}

/** Previews are small; a JPEG at this quality keeps them a few kB. */
const PREVIEW_JPEG_QUALITY = 80;

export class SlackChatAdapter implements ChatAdapter {
  readonly platform = 'slack';
  readonly #client: webApi.WebClient;
  readonly #options: Required<Omit<SlackChatAdapterOptions, 'client'>>;
  readonly #uploads = new Map<string, Upload>();
  readonly #previews = new Map<string, Previews>();
  /** Edits of one message run one after another, so a slow (retried) edit never lands last. */
  readonly #chains = new Map<string, Promise<unknown>>();
  readonly #pacer: EditPacer<Progress>;

  constructor(options: SlackChatAdapterOptions) {
    this.#client = options.client;
    this.#options = {
      uploadLimitBytes: options.uploadLimitBytes,
      logger: options.logger,
      imageRetryDelaysMs: options.imageRetryDelaysMs ?? [1000, 3000],
      progressIntervalMs: options.progressIntervalMs ?? SLACK_PROGRESS_DEFAULTS.progressIntervalMs,
      channelIntervalMs: options.channelIntervalMs ?? SLACK_PROGRESS_DEFAULTS.channelIntervalMs,
      updatesPerMinute: options.updatesPerMinute ?? SLACK_PROGRESS_DEFAULTS.updatesPerMinute,
    };
    this.#pacer = new EditPacer(
      {
        messageIntervalMs: this.#options.progressIntervalMs,
        channelIntervalMs: this.#options.channelIntervalMs,
        updatesPerMinute: this.#options.updatesPerMinute,
      },
      (_key, { posted, message, updated }) =>
        this.#serialized(posted, async () => {
          try {
            await this.#showProgress(posted, message);
          } finally {
            this.#reportPreviews(posted, updated);
          }
        }).catch((error: unknown) => {
          this.#options.logger.warn(
            { err: error, ...this.#where(posted) },
            'slack: could not show the progress of a job',
          );
        }),
    );
    // Slack said 429 (the WebClient waits Retry-After and tries again): progress waits as long.
    this.#client.on(webApi.WebClientEvent.RATE_LIMITED, (seconds: number) => {
      this.#pacer.pause(seconds * 1000);
    });
  }

  /** Drops progress waiting to be shown (the surface stops). */
  dropWaitingProgress(): void {
    this.#pacer.clear();
  }

  /** Progress states waiting for their turn (tests). */
  get progressWaiting(): number {
    return this.#pacer.waiting;
  }

  /** Resolves when every progress edit started and every edit queued so far is done (tests). */
  async settled(): Promise<void> {
    await this.#pacer.idle();
    while (this.#chains.size > 0) await Promise.allSettled([...this.#chains.values()]);
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
    this.#pacer.noteUpdate(`${target.channelId}:${ts}`, target.channelId, { chatUpdate: false });
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

  /**
   * A transient edit (progress) is handed to the pacer and resolves at once: it is shown when
   * Slack's limits allow, unless a newer one replaces it first. Any other edit is final: it
   * replaces whatever progress waits, goes out at once, and removes the progress preview.
   */
  async edit(
    posted: PostedMessage,
    next: ChatMessage,
    options: EditOptions = {},
  ): Promise<PostedMessage | undefined> {
    const key = keyOf(posted);
    if (options.transient) {
      const updated = options.updated?.bind(options);
      // The newest state wins; a preview it lacks is taken from the state it replaces.
      this.#pacer.offer(
        key,
        posted.channelId,
        { posted, message: next, ...(updated ? { updated } : {}) },
        (older, newer) => ({
          posted: newer.posted,
          message: newer.message.preview
            ? newer.message
            : { ...newer.message, ...(older.message.preview ? { preview: older.message.preview } : {}) },
          ...(newer.updated || older.updated ? { updated: newer.updated ?? older.updated } : {}),
        }),
      );
      return undefined;
    }
    this.#pacer.drop(key);
    return this.#serialized(posted, async () => {
      if (next.image) await this.#showWithImage(posted, next, next.image);
      else await this.#update(posted, renderMessage(next));
      const deleted = await this.#deletePreviews(posted);
      // The previews are gone: what is recorded of the message no longer names them.
      return deleted ? withPreviews(posted, {}) : undefined;
    });
  }

  async delete(posted: PostedMessage): Promise<void> {
    this.#pacer.drop(keyOf(posted));
    await this.#serialized(posted, async () => {
      await this.#deletePreviews(posted);
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

  /**
   * Shows a progress state: its text and buttons, and the newest preview Slack can show. A new
   * preview is uploaded into the thread; if Slack is still processing it (`invalid_blocks`), the
   * message keeps the preview it showed and the new one is tried again with the next state.
   * Previews no longer shown are deleted.
   */
  async #showProgress(posted: PostedMessage, message: ChatMessage): Promise<void> {
    const key = keyOf(posted);
    let previews = this.#previews.get(key);
    if (!previews) {
      // After a restart only what was recorded with the message knows its previews.
      previews = restoredPreviews(posted);
      this.#rememberPreviews(key, previews);
    }
    const { preview: image, ...rest } = message;
    const text: ChatMessage = { ...rest, image: undefined };
    let newest = previews.candidate;
    if (image) {
      const hash = hashOf(image.data);
      if (hash !== previews.shown?.hash && hash !== previews.candidate?.hash) {
        try {
          newest = await this.#uploadPreview(posted, image, hash);
          this.#rememberPreviews(key, { ...previews, candidate: newest });
          if (previews.candidate) await this.#deleteFile(previews.candidate.fileId);
        } catch (error) {
          this.#options.logger.warn(
            { err: error, ...this.#where(posted) },
            'slack: could not upload a preview',
          );
        }
      }
    }
    const alt = `Preview: ${altTextOf(text)}`;
    if (newest) {
      try {
        await this.#update(posted, renderMessage(text, { kind: 'file', fileId: newest.fileId, alt }), {
          rawErrors: true,
        });
        if (previews.shown) await this.#deleteFile(previews.shown.fileId);
        this.#rememberPreviews(key, { shown: newest });
        return;
      } catch (error) {
        if (slackErrorCode(error) !== 'invalid_blocks') throw asSlackError(error, this.#where(posted));
        this.#rememberPreviews(key, { ...previews, candidate: newest });
      }
    }
    const shown = previews.shown;
    await this.#update(
      posted,
      renderMessage(text, shown ? { kind: 'file', fileId: shown.fileId, alt } : undefined),
    );
  }

  /** The preview as a JPEG in the message's thread. */
  async #uploadPreview(posted: PostedMessage, image: ChatImage, hash: string): Promise<PreviewFile> {
    const data = INLINE_MIME.has(image.mime)
      ? Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength)
      : await sharp(image.data).jpeg({ quality: PREVIEW_JPEG_QUALITY }).toBuffer();
    const ext = image.mime === 'image/png' ? 'png' : image.mime === 'image/gif' ? 'gif' : 'jpg';
    const answer = await this.#client.filesUploadV2({
      channel_id: posted.channelId,
      thread_ts: posted.threadId ?? posted.messageId,
      file: data,
      filename: `preview.${ext}`,
      title: 'Preview',
      alt_text: 'Preview',
    });
    const file = answer.files[0]?.files?.[0];
    if (!file?.id) throw new Error('slack: files.completeUploadExternal answered without a file id');
    return { hash, fileId: file.id };
  }

  #rememberPreviews(key: string, previews: Previews): void {
    this.#previews.delete(key);
    if (!previews.shown && !previews.candidate) return;
    this.#previews.set(key, previews);
    if (this.#previews.size > REMEMBERED_UPLOADS) this.#previews.delete(this.#previews.keys().next().value!);
  }

  /**
   * Tells `updated` the message's preview files when they differ from what `posted` says it holds
   * (a progress state was shown: recorded with the job, so a restart still knows them).
   */
  #reportPreviews(posted: PostedMessage, updated: ((posted: PostedMessage) => void) | undefined): void {
    if (!updated) return;
    const previews = this.#previews.get(keyOf(posted));
    const now: RecordedPreviews = {
      ...(previews?.shown ? { shown: previews.shown.fileId } : {}),
      ...(previews?.candidate ? { candidate: previews.candidate.fileId } : {}),
    };
    const before = recordedPreviews(posted);
    if (now.shown === before.shown && now.candidate === before.candidate) return;
    try {
      updated(withPreviews(posted, now));
    } catch (error) {
      this.#options.logger.warn(
        { err: error, ...this.#where(posted) },
        'slack: could not report the previews',
      );
    }
  }

  /**
   * The message no longer shows progress: its preview files go, those of this run and those
   * recorded with the message (a run before a restart). True when there were any.
   */
  async #deletePreviews(posted: PostedMessage): Promise<boolean> {
    const key = keyOf(posted);
    const previews = this.#previews.get(key);
    this.#previews.delete(key);
    const recorded = recordedPreviews(posted);
    const ids = new Set(
      [previews?.shown?.fileId, previews?.candidate?.fileId, recorded.shown, recorded.candidate].filter(
        (id): id is string => id !== undefined,
      ),
    );
    for (const fileId of ids) await this.#deleteFile(fileId);
    return ids.size > 0;
  }

  async #deleteFile(fileId: string): Promise<void> {
    await this.#client.files.delete({ file: fileId }).catch((error: unknown) => {
      if (slackErrorCode(error) === 'file_not_found') return;
      this.#options.logger.warn({ err: error, fileId }, 'slack: could not delete an uploaded image');
    });
  }

  async #upload(posted: PostedMessage, image: ChatImage): Promise<Upload> {
    const key = keyOf(posted);
    const hash = hashOf(image.data);
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
    this.#pacer.noteUpdate(keyOf(posted), posted.channelId, { chatUpdate: true });
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

/** The preview files recorded with a message (`extra.previewFiles`). */
function recordedPreviews(posted: PostedMessage): RecordedPreviews {
  const value = posted.extra?.previewFiles as Record<string, unknown> | undefined;
  if (typeof value !== 'object' || value === null) return {};
  return {
    ...(typeof value.shown === 'string' ? { shown: value.shown } : {}),
    ...(typeof value.candidate === 'string' ? { candidate: value.candidate } : {}),
  };
}

/** The previews of a message this process has not shown progress in (after a restart). */
function restoredPreviews(posted: PostedMessage): Previews {
  const { shown, candidate } = recordedPreviews(posted);
  return {
    ...(shown ? { shown: { hash: '', fileId: shown } } : {}),
    ...(candidate ? { candidate: { hash: '', fileId: candidate } } : {}),
  };
}

/** `posted` with `previews` recorded in its extra (none: the key goes). */
function withPreviews(posted: PostedMessage, previews: RecordedPreviews): PostedMessage {
  const { previewFiles: _, ...extra } = posted.extra ?? {};
  const any = previews.shown !== undefined || previews.candidate !== undefined;
  return { ...posted, extra: { ...extra, ...(any ? { previewFiles: previews } : {}) } };
}

function keyOf(posted: PostedMessage): string {
  return `${posted.channelId}:${posted.messageId}`;
}

function hashOf(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
