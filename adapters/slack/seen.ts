/**
 * What the Slack surface has already acted on, so nothing acts twice: Events API deliveries by
 * `event_id` (Slack retries an event whose ack was late or failed, over HTTP with
 * `X-Slack-Retry-Num`, over Socket Mode with `retry_attempt`) and signed HTTP requests by
 * signature (a captured request replayed within the signature window). Kept in SQLite when the
 * bot has a store, so a retry arriving after a restart is still caught; in memory otherwise.
 */

import type { Logger } from '../../src/log.js';
import type { SqliteDatabase } from '../../src/store/database.js';
import { SeenDeliveriesRepository } from '../../src/store/events-repository.js';

/** Slack retries an event three times within about an hour; ids are kept a day. */
export const EVENT_RETENTION_MS = 24 * 60 * 60 * 1000;
/** Expired entries are deleted at most this often. */
const PRUNE_EVERY_MS = 10 * 60 * 1000;
/** Entries kept in memory at most (without a store). */
const MEMORY_LIMIT = 50_000;

export interface SeenDeliveries {
  /** True the first time `key` is claimed (until it expires at `expiresAt`), false after. */
  claim(key: string, expiresAt: number): boolean;
}

/** In SQLite (`db` given, schema version ≥ 3) or in memory. */
export function seenDeliveries(db: SqliteDatabase | undefined, logger: Logger): SeenDeliveries {
  const memory = new MemorySeen();
  if (!db) return memory;
  let repository: SeenDeliveriesRepository | undefined;
  try {
    repository = new SeenDeliveriesRepository(db);
    repository.prune();
  } catch (error) {
    logger.warn(
      { err: error },
      'slack: cannot keep delivered event ids in the database; keeping them in memory',
    );
    return memory;
  }
  const stored = repository;
  let prunedAt = Date.now();
  return {
    claim(key, expiresAt) {
      const now = Date.now();
      try {
        if (now - prunedAt >= PRUNE_EVERY_MS) {
          prunedAt = now;
          stored.prune(now);
        }
        return stored.claim(key, expiresAt, now);
      } catch (error) {
        // Better to act on a delivery than to drop it because the database hiccupped.
        logger.warn({ err: error, key }, 'slack: could not record a delivery in the database');
        return memory.claim(key, expiresAt);
      }
    },
  };
}

class MemorySeen implements SeenDeliveries {
  readonly #entries = new Map<string, number>();

  claim(key: string, expiresAt: number): boolean {
    const now = Date.now();
    const known = this.#entries.get(key);
    if (known !== undefined && known > now) return false;
    this.#entries.delete(key);
    this.#entries.set(key, expiresAt);
    // A Map iterates oldest first: the oldest claims go when it is full.
    for (const old of this.#entries.keys()) {
      if (this.#entries.size <= MEMORY_LIMIT) break;
      this.#entries.delete(old);
    }
    return true;
  }
}
