/** Bot-wide values that must survive a restart (e.g. whether an admin paused the queue). */
import type { SqliteDatabase } from './database.js';

export class FlagsRepository {
  readonly #get;
  readonly #put;

  constructor(db: SqliteDatabase) {
    this.#get = db.prepare<[string], { value: string }>('SELECT value FROM flags WHERE key = ?');
    this.#put = db.prepare<[string, string]>(
      'INSERT INTO flags (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
  }

  /** The flag's value; undefined when unset or unreadable (not JSON), as if never set. */
  get<T>(key: string): T | undefined {
    const row = this.#get.get(key);
    if (!row) return undefined;
    try {
      return JSON.parse(row.value) as T;
    } catch {
      return undefined;
    }
  }

  set(key: string, value: unknown): void {
    this.#put.run(key, JSON.stringify(value));
  }
}
