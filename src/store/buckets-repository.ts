/** Rate-limit token buckets by key (e.g. `user:discord:123`), persisted so a restart keeps them. */
import type { SqliteDatabase } from './database.js';
import type { BucketState } from './types.js';

export class BucketsRepository {
  readonly #get;
  readonly #put;
  readonly #delete;

  constructor(db: SqliteDatabase) {
    this.#get = db.prepare<[string], { tokens: number; updated_at: number }>(
      'SELECT tokens, updated_at FROM rate_buckets WHERE key = ?',
    );
    this.#put = db.prepare<[string, number, number]>(
      `INSERT INTO rate_buckets (key, tokens, updated_at) VALUES (?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at`,
    );
    this.#delete = db.prepare<[string]>('DELETE FROM rate_buckets WHERE key = ?');
  }

  get(key: string): BucketState | undefined {
    const row = this.#get.get(key);
    return row ? { tokens: row.tokens, updatedAt: row.updated_at } : undefined;
  }

  put(key: string, state: BucketState): void {
    this.#put.run(key, state.tokens, state.updatedAt);
  }

  /** Forgets a bucket, so it starts full again (an admin's reset). */
  delete(key: string): void {
    this.#delete.run(key);
  }
}
