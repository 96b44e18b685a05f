/**
 * Results of finished jobs: the image files (paths kept relative to the data dir, so the data
 * dir can move), the grid, the model, and every chat message that shows the job, so a button or
 * reaction on an old message still finds its job after a restart.
 */
import { isAbsolute, join, relative } from 'node:path';
import type { JobImage, JobResult } from '../jobs/types.js';
import type { SqliteDatabase } from './database.js';
import type { MessageRef } from './types.js';

interface ResultRow {
  model: string;
  grid_path: string | null;
  prompt_truncated: number;
  deleted_at: number | null;
}

/** A message that shows a job, with what the adapter needs to edit or delete it later. */
export interface StoredMessage extends MessageRef {
  extra?: Record<string, unknown>;
}

interface ImageRow {
  path: string;
  width: number;
  height: number;
  seed: number;
}

/** A message's adapter details; an unreadable value reads as none rather than breaking a lookup. */
function parseExtra(text: string): Record<string, unknown> {
  try {
    const extra: unknown = JSON.parse(text);
    return typeof extra === 'object' && extra !== null && !Array.isArray(extra)
      ? (extra as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

export class ResultsRepository {
  readonly #dataDir: string;
  readonly #insertResult;
  readonly #insertImage;
  readonly #getResult;
  readonly #getImages;
  readonly #getImage;
  readonly #insertMessage;
  readonly #findByMessage;
  readonly #messagesOf;
  readonly #shownIn;
  readonly #markDeleted;

  constructor(db: SqliteDatabase, dataDir: string) {
    this.#dataDir = dataDir;
    this.#insertResult = db.prepare<[string, string, string | null, number, number]>(
      'INSERT OR REPLACE INTO results (job_id, model, grid_path, prompt_truncated, created_at) VALUES (?, ?, ?, ?, ?)',
    );
    this.#insertImage = db.prepare<[string, number, string, number, number, number]>(
      'INSERT OR REPLACE INTO result_images (job_id, idx, path, width, height, seed) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#getResult = db.prepare<[string], ResultRow>(
      'SELECT model, grid_path, prompt_truncated, deleted_at FROM results WHERE job_id = ?',
    );
    this.#getImages = db.prepare<[string], ImageRow>(
      'SELECT path, width, height, seed FROM result_images WHERE job_id = ? ORDER BY idx',
    );
    this.#getImage = db.prepare<[string, number], ImageRow>(
      'SELECT path, width, height, seed FROM result_images WHERE job_id = ? AND idx = ?',
    );
    this.#insertMessage = db.prepare<[string, string, string, string, number, string | null]>(
      `INSERT INTO job_messages (platform, channel_id, message_id, job_id, posted_at, extra) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (platform, channel_id, message_id) DO UPDATE SET job_id = excluded.job_id, extra = excluded.extra`,
    );
    this.#markDeleted = db.prepare<[number, string, string]>(
      'UPDATE results SET deleted_at = ?, deleted_by = ? WHERE job_id = ? AND deleted_at IS NULL',
    );
    this.#findByMessage = db.prepare<[string, string, string], { job_id: string }>(
      'SELECT job_id FROM job_messages WHERE platform = ? AND channel_id = ? AND message_id = ?',
    );
    this.#messagesOf = db.prepare<
      [string],
      { platform: string; channel_id: string; message_id: string; extra: string | null }
    >(
      'SELECT platform, channel_id, message_id, extra FROM job_messages WHERE job_id = ? ORDER BY posted_at, rowid',
    );
    this.#shownIn = db.prepare<[string, string, number], { job_id: string; at: number }>(
      `SELECT job_id, MAX(posted_at) AS at FROM job_messages WHERE platform = ? AND channel_id = ?
       GROUP BY job_id ORDER BY at DESC LIMIT ?`,
    );
  }

  /** Jobs with a message in the channel (made there or shared there), the latest post first. */
  jobsShownIn(
    where: { platform: string; channelId: string },
    limit: number,
  ): { jobId: string; at: number }[] {
    return this.#shownIn
      .all(where.platform, where.channelId, limit)
      .map((row) => ({ jobId: row.job_id, at: row.at }));
  }

  /** Stores a job's result (call inside the transaction that marks the job done). */
  save(jobId: string, result: JobResult, now: number): void {
    this.#insertResult.run(
      jobId,
      result.model,
      result.gridPath === undefined ? null : this.#toStored(result.gridPath),
      result.promptTruncated ? 1 : 0,
      now,
    );
    result.images.forEach((image, index) => {
      this.#insertImage.run(jobId, index, this.#toStored(image.path), image.width, image.height, image.seed);
    });
  }

  /** The job's result with absolute file paths, or undefined if it has none. */
  get(jobId: string): JobResult | undefined {
    const row = this.#getResult.get(jobId);
    if (!row) return undefined;
    const result: JobResult = {
      images: this.#getImages.all(jobId).map((image) => this.#toImage(image)),
      model: row.model,
    };
    if (row.grid_path !== null) result.gridPath = this.#toAbsolute(row.grid_path);
    if (row.prompt_truncated) result.promptTruncated = true;
    return result;
  }

  /** Whether the result was deleted from chat (its buttons then answer that it is gone). */
  isDeleted(jobId: string): boolean {
    return (this.#getResult.get(jobId)?.deleted_at ?? null) !== null;
  }

  /** Marks a result deleted by `by` (the files stay, so moderation can look at them). */
  markDeleted(jobId: string, by: string, now: number): boolean {
    return this.#markDeleted.run(now, by, jobId).changes > 0;
  }

  /** One image (0-based) of a finished job, with an absolute path. */
  image(jobId: string, index: number): JobImage | undefined {
    const row = this.#getImage.get(jobId, index);
    return row ? this.#toImage(row) : undefined;
  }

  /** Remembers that `message` shows `jobId` (queue notice, progress or result). */
  recordMessage(jobId: string, message: StoredMessage, now: number): void {
    this.#insertMessage.run(
      message.platform,
      message.channelId,
      message.messageId,
      jobId,
      now,
      message.extra === undefined ? null : JSON.stringify(message.extra),
    );
  }

  /** The job a chat message shows, e.g. when someone clicks a button on it. */
  findJobByMessage(message: MessageRef): string | undefined {
    return this.#findByMessage.get(message.platform, message.channelId, message.messageId)?.job_id;
  }

  messagesOf(jobId: string): StoredMessage[] {
    return this.#messagesOf.all(jobId).map((row) => ({
      platform: row.platform,
      channelId: row.channel_id,
      messageId: row.message_id,
      ...(row.extra ? { extra: parseExtra(row.extra) } : {}),
    }));
  }

  #toImage(row: ImageRow): JobImage {
    return { path: this.#toAbsolute(row.path), width: row.width, height: row.height, seed: row.seed };
  }

  #toStored(path: string): string {
    if (!isAbsolute(path)) return path;
    const inside = relative(this.#dataDir, path);
    // Files outside the data dir (unusual) keep their absolute path.
    return inside.startsWith('..') || isAbsolute(inside) ? path : inside;
  }

  #toAbsolute(path: string): string {
    return isAbsolute(path) ? path : join(this.#dataDir, path);
  }
}
