/**
 * The playground's conversation, kept like any chat service keeps its messages: each message of
 * the feed as JSON (the playground's own wire shape), public ones per channel and private ones per
 * recipient, bounded to the newest N of each list. The playground reads it back on start, so a
 * restart loses nothing a person saw, and the buttons under old results keep working.
 */
import type { SqliteDatabase } from './database.js';

export interface StoredFeedMessage {
  id: string;
  channelId: string;
  /** The only user who sees it; undefined for public messages. */
  recipient: string | undefined;
  /** The message as the playground serialized it. */
  message: unknown;
  createdAt: number;
}

interface Row {
  id: string;
  channel_id: string;
  recipient: string;
  message: string;
  created_at: number;
}

/** `recipient` is '' for public messages, so (channel, recipient) is one list either way. */
const PUBLIC = '';

export class PlaygroundFeedRepository {
  readonly #put;
  readonly #remove;
  readonly #trimPublic;
  readonly #trimPrivate;
  readonly #all;
  readonly #jobOf;

  constructor(db: SqliteDatabase) {
    this.#put = db.prepare<[string, string, string, string, number, number]>(
      `INSERT INTO playground_messages (id, channel_id, recipient, message, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET channel_id = excluded.channel_id, recipient = excluded.recipient,
         message = excluded.message, updated_at = excluded.updated_at`,
    );
    this.#remove = db.prepare<[string]>('DELETE FROM playground_messages WHERE id = ?');
    // Public lists are per channel, private ones per recipient across channels (as the feed keeps them).
    this.#trimPublic = db.prepare<[string, number]>(
      `DELETE FROM playground_messages WHERE id IN (
         SELECT id FROM playground_messages WHERE recipient = '' AND channel_id = ?
         ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?)`,
    );
    this.#trimPrivate = db.prepare<[string, number]>(
      `DELETE FROM playground_messages WHERE id IN (
         SELECT id FROM playground_messages WHERE recipient = ?
         ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?)`,
    );
    this.#all = db.prepare<[], Row>(
      'SELECT id, channel_id, recipient, message, created_at FROM playground_messages ORDER BY created_at, id',
    );
    this.#jobOf = db.prepare<[string], { job_id: string }>(
      "SELECT job_id FROM job_messages WHERE platform = 'playground' AND message_id = ? LIMIT 1",
    );
  }

  /** Adds a message or replaces the one with its id. */
  put(entry: StoredFeedMessage, now = Date.now()): void {
    this.#put.run(
      entry.id,
      entry.channelId,
      entry.recipient ?? PUBLIC,
      JSON.stringify(entry.message),
      entry.createdAt,
      now,
    );
  }

  remove(id: string): void {
    this.#remove.run(id);
  }

  /** Keeps the newest `keep` messages of a channel (public) or of a recipient (private). */
  trim(list: { channelId: string; recipient?: string }, keep: number): void {
    const offset = Math.max(0, Math.floor(keep));
    if (list.recipient === undefined || list.recipient === PUBLIC)
      this.#trimPublic.run(list.channelId, offset);
    else this.#trimPrivate.run(list.recipient, offset);
  }

  /** Every stored message, oldest first; rows whose JSON cannot be read are dropped. */
  all(): StoredFeedMessage[] {
    const entries: StoredFeedMessage[] = [];
    for (const row of this.#all.all()) {
      let message: unknown;
      try {
        message = JSON.parse(row.message);
      } catch {
        this.#remove.run(row.id);
        continue;
      }
      entries.push({
        id: row.id,
        channelId: row.channel_id,
        recipient: row.recipient === PUBLIC ? undefined : row.recipient,
        message,
        createdAt: row.created_at,
      });
    }
    return entries;
  }

  /** The job a playground message shows, if the bot recorded one. */
  jobOfMessage(messageId: string): string | undefined {
    return this.#jobOf.get(messageId)?.job_id;
  }
}
