/**
 * Versioned schema migrations on SQLite's `user_version` header field: migration N brings the
 * schema from version N−1 to N inside one transaction, together with the version bump, so a
 * crash mid-migration leaves the old schema intact. Append new migrations; never edit one that
 * has shipped.
 */
import { ConfigError } from '../errors.js';
import type { SqliteDatabase } from './database.js';

export interface Migration {
  version: number;
  name: string;
  up(db: SqliteDatabase): void;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'jobs, results, buckets, settings',
    up(db) {
      db.exec(`
        CREATE TABLE jobs (
          seq INTEGER PRIMARY KEY AUTOINCREMENT, -- queue order
          id TEXT NOT NULL UNIQUE,
          kind TEXT NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
          platform TEXT NOT NULL,
          user_id TEXT NOT NULL,
          team_id TEXT,
          parent_job_id TEXT,
          spec TEXT NOT NULL, -- JobSpec as JSON
          created_at INTEGER NOT NULL,
          started_at INTEGER,
          finished_at INTEGER,
          attempts INTEGER NOT NULL DEFAULT 0,
          error TEXT,
          cancelled_by TEXT,
          delivered_at INTEGER -- when the adapter confirmed it posted the final result
        );
        CREATE INDEX jobs_unfinished ON jobs (state, seq) WHERE state IN ('queued', 'running');
        CREATE INDEX jobs_by_user ON jobs (platform, user_id, seq);
        CREATE INDEX jobs_by_team ON jobs (platform, team_id, seq);
        CREATE INDEX jobs_undelivered ON jobs (finished_at) WHERE state = 'done' AND delivered_at IS NULL;

        CREATE TABLE results (
          job_id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
          model TEXT NOT NULL,
          grid_path TEXT, -- relative to the data dir
          prompt_truncated INTEGER NOT NULL DEFAULT 0,
          created_at INTEGER NOT NULL
        );
        CREATE TABLE result_images (
          job_id TEXT NOT NULL REFERENCES results (job_id) ON DELETE CASCADE,
          idx INTEGER NOT NULL,
          path TEXT NOT NULL, -- relative to the data dir
          width INTEGER NOT NULL,
          height INTEGER NOT NULL,
          seed INTEGER NOT NULL,
          PRIMARY KEY (job_id, idx)
        );
        -- Every chat message that shows a job, so a button or reaction on it finds the job.
        CREATE TABLE job_messages (
          platform TEXT NOT NULL,
          channel_id TEXT NOT NULL,
          message_id TEXT NOT NULL,
          job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
          posted_at INTEGER NOT NULL,
          PRIMARY KEY (platform, channel_id, message_id)
        );
        CREATE INDEX job_messages_by_job ON job_messages (job_id);

        CREATE TABLE rate_buckets (
          key TEXT PRIMARY KEY,
          tokens REAL NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE TABLE user_settings (
          platform TEXT NOT NULL,
          user_id TEXT NOT NULL,
          settings TEXT NOT NULL,
          updated_at INTEGER NOT NULL,
          PRIMARY KEY (platform, user_id)
        );
        CREATE TABLE team_settings (
          platform TEXT NOT NULL,
          team_id TEXT NOT NULL,
          settings TEXT NOT NULL,
          updated_at INTEGER NOT NULL,
          PRIMARY KEY (platform, team_id)
        );
        -- Bot-wide flags that must survive a restart (e.g. the queue being paused).
        CREATE TABLE flags (
          key TEXT PRIMARY KEY,
          value TEXT NOT NULL
        );
      `);
    },
  },
  {
    version: 2,
    name: 'channel of each job (gallery), deleted results, posted-message details',
    up(db) {
      db.exec(`
        ALTER TABLE jobs ADD COLUMN channel_id TEXT;
        UPDATE jobs SET channel_id = CASE WHEN json_valid(spec) THEN json_extract(spec, '$.reply.channelId') END;
        CREATE INDEX jobs_by_channel ON jobs (platform, channel_id, seq) WHERE state = 'done';

        ALTER TABLE results ADD COLUMN deleted_at INTEGER;
        ALTER TABLE results ADD COLUMN deleted_by TEXT;

        -- What an adapter needs to edit or delete the message later (thread, tokens), as JSON.
        ALTER TABLE job_messages ADD COLUMN extra TEXT;
      `);
    },
  },
  {
    version: 3,
    name: 'deliveries already acted on (chat events by id, signed requests by signature)',
    up(db) {
      db.exec(`
        -- A chat platform may deliver the same event again (Slack retries by event_id), and a
        -- captured signed request may be replayed: each is acted on once. Rows expire.
        CREATE TABLE seen_deliveries (
          key TEXT PRIMARY KEY, -- e.g. 'slack:event:T123:Ev456', 'slack:signature:v0=…'
          seen_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX seen_deliveries_by_expiry ON seen_deliveries (expires_at);
      `);
    },
  },
  {
    version: 4,
    name: 'the playground conversation',
    up(db) {
      db.exec(`
        -- The playground's messages (its own wire JSON), so its feed outlives restarts; bounded by
        -- playground.keepMessages per channel. recipient = '' for public messages.
        CREATE TABLE playground_messages (
          id TEXT PRIMARY KEY,
          channel_id TEXT NOT NULL,
          recipient TEXT NOT NULL DEFAULT '',
          message TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE INDEX playground_messages_by_list ON playground_messages (recipient, channel_id, created_at);
      `);
    },
  },
];

export function schemaVersion(db: SqliteDatabase): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** Brings the schema up to the newest version; returns the versions applied. */
export function migrate(db: SqliteDatabase, list: readonly Migration[] = migrations): number[] {
  const latest = list.at(-1)?.version ?? 0;
  const current = schemaVersion(db);
  if (current > latest) {
    throw new ConfigError(
      'dataDir',
      `The database ${db.name} has schema version ${current}, newer than this Atelier knows (${latest}); ` +
        'upgrade Atelier or point ATELIER_DATA_DIR elsewhere.',
    );
  }
  list.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new TypeError(
        `Expected migration ${index + 1} at position ${index}, got version ${migration.version}`,
      );
    }
  });
  const applied: number[] = [];
  for (const migration of list) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      migration.up(db);
      db.pragma(`user_version = ${migration.version}`);
    }).immediate();
    applied.push(migration.version);
  }
  return applied;
}
