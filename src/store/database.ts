/**
 * Opens the SQLite file with the settings every connection needs. WAL lets readers (the CLI's
 * `doctor`, a second process) work while the bot writes; `synchronous = NORMAL` in WAL mode
 * survives a killed process (only a power cut can lose the last transactions), which is the
 * crash the bot must survive, at a fraction of the fsync cost of FULL.
 * @see https://www.sqlite.org/wal.html and https://www.sqlite.org/pragma.html#pragma_synchronous
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { storeError } from './errors.js';

export type SqliteDatabase = Database.Database;

export interface DatabaseOptions {
  /**
   * How long a write waits for another connection's lock before failing with SQLITE_BUSY.
   * @default 5000
   */
  busyTimeoutMs?: number;
}

/**
 * Opens `file`, creating it and its folder if needed. An unwritable folder, a file that is not a
 * SQLite database or a damaged one throws a StoreError whose one-line message names the file and
 * what to do (see errors.ts).
 */
export function openDatabase(file: string, options: DatabaseOptions = {}): SqliteDatabase {
  let db: SqliteDatabase | undefined;
  try {
    mkdirSync(dirname(file), { recursive: true });
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    return db;
  } catch (error) {
    if (db?.open) db.close();
    throw storeError(error, file);
  }
}
