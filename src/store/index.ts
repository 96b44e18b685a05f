/**
 * The embedded SQLite store: `<dataDir>/atelier.db` plus image files under
 * `<dataDir>/images/<jobId>/`. One `Store` per process; every repository shares its connection.
 *
 * ```ts
 * const store = openStore({ dataDir: './data' });
 * store.transaction(() => { store.jobs.finish(id, 'done', now); store.results.save(id, result, now); });
 * ```
 */
import { join } from 'node:path';
import type { JobRecord } from '../jobs/types.js';
import { BucketsRepository } from './buckets-repository.js';
import { type DatabaseOptions, openDatabase, type SqliteDatabase } from './database.js';
import { storeError } from './errors.js';
import { FlagsRepository } from './flags-repository.js';
import { JobsRepository } from './jobs-repository.js';
import { migrate, schemaVersion } from './migrations.js';
import { ResultsRepository } from './results-repository.js';
import { SettingsRepository } from './settings-repository.js';
import type { TeamSettings, UserSettings } from './types.js';

export type { SqliteDatabase } from './database.js';
export { isSqliteError, storeError, UnreadableJobError } from './errors.js';
export type { JobListQuery, QuarantinedJob, StoredJob } from './jobs-repository.js';
export { migrate, migrations, schemaVersion } from './migrations.js';
export type { StoredMessage } from './results-repository.js';
export type {
  BucketRule,
  BucketState,
  LimitOverrides,
  MessageRef,
  TeamSettings,
  UserSettings,
} from './types.js';
export { BucketsRepository, FlagsRepository, JobsRepository, ResultsRepository, SettingsRepository };

export interface StoreOptions extends DatabaseOptions {
  /** Directory holding all state (ATELIER_DATA_DIR). */
  dataDir: string;
}

export const DATABASE_FILE = 'atelier.db';

export class Store {
  readonly dataDir: string;
  readonly db: SqliteDatabase;
  readonly jobs: JobsRepository;
  readonly results: ResultsRepository;
  readonly buckets: BucketsRepository;
  readonly userSettings: SettingsRepository<UserSettings>;
  readonly teamSettings: SettingsRepository<TeamSettings>;
  readonly flags: FlagsRepository;

  constructor(db: SqliteDatabase, dataDir: string) {
    this.db = db;
    this.dataDir = dataDir;
    this.jobs = new JobsRepository(db);
    this.results = new ResultsRepository(db, dataDir);
    this.buckets = new BucketsRepository(db);
    this.userSettings = new SettingsRepository<UserSettings>(db, 'user_settings');
    this.teamSettings = new SettingsRepository<TeamSettings>(db, 'team_settings');
    this.flags = new FlagsRepository(db);
  }

  /** Runs `fn` in one IMMEDIATE transaction (all or nothing; rolls back if it throws). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** A job with its result, if it has one. */
  getJob(id: string): JobRecord | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    const result = job.state === 'done' ? this.results.get(id) : undefined;
    const { seq: _seq, ...record } = job;
    return result ? { ...record, result } : record;
  }

  /** Where a job's image files go. */
  imageDir(jobId: string): string {
    return join(this.dataDir, 'images', jobId);
  }

  /** Schema version and SQLite's own integrity verdict, for `atelier doctor`. */
  health(): { schemaVersion: number; integrity: string; journalMode: string } {
    return {
      schemaVersion: schemaVersion(this.db),
      integrity: String(this.db.pragma('quick_check', { simple: true })),
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
    };
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/**
 * Opens (creating if needed) and migrates `<dataDir>/atelier.db`. A data dir or database that
 * cannot be used throws a StoreError with a one-line message for the operator.
 */
export function openStore(options: StoreOptions): Store {
  const file = join(options.dataDir, DATABASE_FILE);
  const db = openDatabase(file, options);
  try {
    migrate(db);
    return new Store(db, options.dataDir);
  } catch (error) {
    db.close();
    throw storeError(error, file);
  }
}
