/**
 * Settings stored as one JSON object per user or per team, keyed by platform + id. The same
 * class serves both tables; `patch` merges shallowly and drops keys set to `undefined`.
 */
import type { SqliteDatabase } from './database.js';

export class SettingsRepository<Settings extends object> {
  readonly #get;
  readonly #put;
  readonly #delete;

  constructor(db: SqliteDatabase, table: 'user_settings' | 'team_settings') {
    const idColumn = table === 'user_settings' ? 'user_id' : 'team_id';
    this.#get = db.prepare<[string, string], { settings: string }>(
      `SELECT settings FROM ${table} WHERE platform = ? AND ${idColumn} = ?`,
    );
    this.#put = db.prepare<[string, string, string, number]>(
      `INSERT INTO ${table} (platform, ${idColumn}, settings, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (platform, ${idColumn}) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at`,
    );
    this.#delete = db.prepare<[string, string]>(
      `DELETE FROM ${table} WHERE platform = ? AND ${idColumn} = ?`,
    );
  }

  /** The stored settings, or an empty object (also for a row that is not a JSON object). */
  get(platform: string, id: string): Partial<Settings> {
    const row = this.#get.get(platform, id);
    if (!row) return {};
    try {
      const settings: unknown = JSON.parse(row.settings);
      return typeof settings === 'object' && settings !== null && !Array.isArray(settings)
        ? (settings as Partial<Settings>)
        : {};
    } catch {
      // Unreadable: the defaults apply, and the next change writes a clean row.
      return {};
    }
  }

  /** Merges `patch` into the stored settings and returns the result. */
  patch(platform: string, id: string, patch: Partial<Settings>, now: number = Date.now()): Partial<Settings> {
    const merged: Record<string, unknown> = { ...this.get(platform, id), ...patch };
    for (const key of Object.keys(merged)) if (merged[key] === undefined) delete merged[key];
    this.#put.run(platform, id, JSON.stringify(merged), now);
    return merged as Partial<Settings>;
  }

  /** Forgets every setting of this user or team. */
  clear(platform: string, id: string): void {
    this.#delete.run(platform, id);
  }
}
