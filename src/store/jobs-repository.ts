/**
 * The jobs table: one row per job with its spec as JSON, its state and timestamps. `seq` (the
 * row id) is the queue order, so a restart re-enqueues unfinished jobs in the order they came.
 */
import type { JobKind, JobRecord, JobSpec, JobState, ReplyTarget } from '../jobs/types.js';
import type { SqliteDatabase } from './database.js';

interface JobRow {
  seq: number;
  id: string;
  kind: JobKind;
  state: JobState;
  spec: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  attempts: number;
  error: string | null;
}

/** A job as stored, with its queue order. */
export type StoredJob = JobRecord & { seq: number };

export interface JobListQuery {
  /** Only this user's jobs. */
  owner?: { platform: string; userId: string };
  /** Only jobs in these states. */
  states?: readonly JobState[];
  /** Only jobs answered in this channel. */
  channel?: { platform: string; channelId: string };
  /** Newest first, at most this many. @default 50 */
  limit?: number;
}

const FINISHED: readonly JobState[] = ['done', 'failed', 'cancelled'];

function toRecord(row: JobRow): StoredJob {
  const record: StoredJob = {
    seq: row.seq,
    id: row.id,
    spec: JSON.parse(row.spec) as JobSpec,
    state: row.state,
    createdAt: row.created_at,
    attempts: row.attempts,
  };
  if (row.started_at !== null) record.startedAt = row.started_at;
  if (row.finished_at !== null) record.finishedAt = row.finished_at;
  if (row.error !== null) record.error = row.error;
  return record;
}

export class JobsRepository {
  readonly #db: SqliteDatabase;
  readonly #insert;
  readonly #get;
  readonly #start;
  readonly #finish;
  readonly #unfinished;
  readonly #setSpec;
  readonly #delivered;
  readonly #undelivered;

  constructor(db: SqliteDatabase) {
    this.#db = db;
    this.#insert = db.prepare<
      [string, string, string, string, string | null, string | null, string, number, string]
    >(
      `INSERT INTO jobs (id, kind, state, platform, user_id, team_id, parent_job_id, spec, created_at, channel_id)
       VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#get = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?');
    this.#start = db.prepare<[number, string], { attempts: number }>(
      `UPDATE jobs SET state = 'running', started_at = ?, attempts = attempts + 1
       WHERE id = ? AND state IN ('queued', 'running') RETURNING attempts`,
    );
    this.#finish = db.prepare<[JobState, number, string | null, string | null, string]>(
      `UPDATE jobs SET state = ?, finished_at = ?, error = ?, cancelled_by = ?
       WHERE id = ? AND state IN ('queued', 'running')`,
    );
    // Running jobs first (they were furthest along), then queued ones, each in queue order.
    this.#unfinished = db.prepare<[], JobRow>(
      `SELECT * FROM jobs WHERE state IN ('queued', 'running')
       ORDER BY CASE state WHEN 'running' THEN 0 ELSE 1 END, seq`,
    );
    this.#setSpec = db.prepare<[string, string]>('UPDATE jobs SET spec = ? WHERE id = ?');
    this.#delivered = db.prepare<[number, string]>(
      'UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL',
    );
    this.#undelivered = db.prepare<[number], JobRow>(
      `SELECT * FROM jobs WHERE state = 'done' AND delivered_at IS NULL AND finished_at >= ? ORDER BY seq`,
    );
  }

  /** Stores a new queued job; returns its queue order. */
  insert(id: string, spec: JobSpec, createdAt: number): number {
    const { requester } = spec;
    const info = this.#insert.run(
      id,
      spec.kind,
      requester.platform,
      requester.userId,
      requester.teamId ?? null,
      spec.parent?.jobId ?? null,
      JSON.stringify(spec),
      createdAt,
      spec.reply.channelId,
    );
    return Number(info.lastInsertRowid);
  }

  get(id: string): StoredJob | undefined {
    const row = this.#get.get(id);
    return row ? toRecord(row) : undefined;
  }

  /** Marks a job running and counts the attempt; returns the attempt number, or 0 if it had finished. */
  markRunning(id: string, startedAt: number): number {
    return this.#start.get(startedAt, id)?.attempts ?? 0;
  }

  /** Moves an unfinished job to a final state; returns false if it had already finished. */
  finish(
    id: string,
    state: 'done' | 'failed' | 'cancelled',
    finishedAt: number,
    detail?: { error?: string; cancelledBy?: string },
  ): boolean {
    if (!FINISHED.includes(state)) throw new TypeError(`Expected a final state, got \`${state}\``);
    const info = this.#finish.run(state, finishedAt, detail?.error ?? null, detail?.cancelledBy ?? null, id);
    return info.changes === 1;
  }

  /** Every queued or running job: running ones first, then queued ones, each in queue order. */
  unfinished(): StoredJob[] {
    return this.#unfinished.all().map(toRecord);
  }

  /** Records that the adapter posted the job's final result. */
  markDelivered(id: string, now: number): void {
    this.#delivered.run(now, id);
  }

  /** Done jobs finished since `since` whose result no adapter confirmed posting. */
  undelivered(since: number): StoredJob[] {
    return this.#undelivered.all(since).map(toRecord);
  }

  /** Updates where the job's answer goes (e.g. the message id the adapter posted). */
  updateReply(id: string, patch: Partial<ReplyTarget>): JobSpec | undefined {
    const job = this.get(id);
    if (!job) return undefined;
    const spec: JobSpec = { ...job.spec, reply: { ...job.spec.reply, ...patch } };
    this.#setSpec.run(JSON.stringify(spec), id);
    return spec;
  }

  list(query: JobListQuery = {}): StoredJob[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (query.owner) {
      where.push('platform = ? AND user_id = ?');
      args.push(query.owner.platform, query.owner.userId);
    }
    if (query.channel) {
      where.push('platform = ? AND channel_id = ?');
      args.push(query.channel.platform, query.channel.channelId);
    }
    if (query.states && query.states.length > 0) {
      where.push(`state IN (${query.states.map(() => '?').join(', ')})`);
      args.push(...query.states);
    }
    const limit = Math.max(1, Math.floor(query.limit ?? 50));
    const sql = `SELECT * FROM jobs ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ${limit}`;
    return this.#db
      .prepare<(string | number)[], JobRow>(sql)
      .all(...args)
      .map(toRecord);
  }
}
