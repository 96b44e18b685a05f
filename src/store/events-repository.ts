/**
 * Deliveries already acted on (table `seen_deliveries`, migration 3): a chat platform may deliver
 * the same event again (Slack retries an event with the same `event_id`), and a captured signed
 * request may be sent again. The first `claim` of a key wins; later claims of it, until it
 * expires, lose — across restarts, since the claim is in the database. Expired rows are pruned.
 */
import type { SqliteDatabase } from './database.js';

export class SeenDeliveriesRepository {
  readonly #claim;
  readonly #prune;
  readonly #count;

  constructor(db: SqliteDatabase) {
    // An expired row is claimed afresh; a live one is left alone (no change: the claim lost).
    this.#claim = db.prepare<[string, number, number, number]>(
      `INSERT INTO seen_deliveries (key, seen_at, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET seen_at = excluded.seen_at, expires_at = excluded.expires_at
       WHERE seen_deliveries.expires_at <= ?`,
    );
    this.#prune = db.prepare<[number]>('DELETE FROM seen_deliveries WHERE expires_at <= ?');
    this.#count = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM seen_deliveries');
  }

  /**
   * Records `key` as seen until `expiresAt` (ms since the epoch). True if this is the first
   * claim (or the earlier one had expired), false if `key` was seen and has not expired.
   */
  claim(key: string, expiresAt: number, now = Date.now()): boolean {
    return this.#claim.run(key, now, expiresAt, now).changes === 1;
  }

  /** Deletes the entries that expired by `now`; returns how many. */
  prune(now = Date.now()): number {
    return this.#prune.run(now).changes;
  }

  /** How many entries are kept (tests, diagnostics). */
  size(): number {
    return this.#count.get()?.n ?? 0;
  }
}
