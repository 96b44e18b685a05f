/**
 * The jobs table: one row per job with its spec as JSON, its state and timestamps. `seq` (the
 * row id) is the queue order, so a restart re-enqueues unfinished jobs in the order they came.
 */
import type { JobKind, JobRecord, JobSpec, JobState, ReplyTarget, Requester } from '../jobs/types.js';
import type { SqliteDatabase } from './database.js';

interface JobRow {
  seq: number;
  id: string;
  kind: JobKind;
  state: JobState;
  platform: string;
  user_id: string;
  team_id: string | null;
  channel_id: string | null;
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

const KINDS: readonly JobKind[] = ['txt2img', 'reroll', 'variation', 'upscale'];
const NUMBER_PARAMS = ['width', 'height', 'seed', 'steps', 'guidance', 'count'] as const;
const STRING_PARAMS = ['prompt', 'negativePrompt', 'aspect', 'sampler'] as const;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isText = (value: unknown): value is string => typeof value === 'string' && value !== '';

/**
 * The stored spec, or why it cannot be used: not JSON, or without what every job has (kind,
 * requester, params, reply). A row written by hand or damaged on disk must not reach the queue.
 */
function parseSpec(text: unknown): { spec: JobSpec } | { problem: string; parsed?: unknown } {
  if (typeof text !== 'string') return { problem: 'spec is not text' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // Not JSON.parse's message itself: it quotes the text, which may hold the prompt.
    const at = /position (\d+)/.exec(String((error as Error).message))?.[1];
    return { problem: `spec is not valid JSON${at === undefined ? '' : ` (at character ${at})`}` };
  }
  if (!isObject(parsed)) return { problem: 'spec is not a JSON object', parsed };
  const missing: string[] = [];
  if (!KINDS.includes(parsed.kind as JobKind)) missing.push('kind');
  const { requester, params, reply, parent } = parsed;
  if (!isObject(requester) || !isText(requester.platform) || !isText(requester.userId))
    missing.push('requester');
  if (!isObject(params)) {
    missing.push('params');
  } else {
    for (const key of NUMBER_PARAMS)
      if (typeof params[key] !== 'number' || !Number.isFinite(params[key])) missing.push(`params.${key}`);
    for (const key of STRING_PARAMS) if (typeof params[key] !== 'string') missing.push(`params.${key}`);
  }
  if (!isObject(reply) || !isText(reply.platform) || !isText(reply.channelId)) missing.push('reply');
  if (parent !== undefined && (!isObject(parent) || !isText(parent.jobId))) missing.push('parent');
  if (missing.length > 0) return { problem: `spec lacks ${missing.join(', ')}`, parsed };
  return { spec: parsed as unknown as JobSpec };
}

/**
 * Where the job of an unreadable row was answered, from the spec's `reply` if that much is
 * readable, else from the row's own columns; undefined when neither says.
 */
function conversationOf(row: JobRow, parsed: unknown): ReplyTarget | undefined {
  const reply = isObject(parsed) && isObject(parsed.reply) ? parsed.reply : undefined;
  if (reply && isText(reply.platform) && isText(reply.channelId)) {
    const target: ReplyTarget = { platform: reply.platform, channelId: reply.channelId };
    if (isText(reply.threadId)) target.threadId = reply.threadId;
    if (isText(reply.teamId)) target.teamId = reply.teamId;
    if (isText(reply.messageId)) target.messageId = reply.messageId;
    if (isObject(reply.extra)) target.extra = reply.extra;
    return target;
  }
  if (!isText(row.platform) || !isText(row.channel_id)) return undefined;
  return {
    platform: row.platform,
    channelId: row.channel_id,
    ...(isText(row.team_id) ? { teamId: row.team_id } : {}),
  };
}

/**
 * A stand-in spec for a failed job whose stored one is unreadable, so the conversation can
 * still be told it failed (and `/queue` lists it): who asked comes from the row's columns.
 */
function placeholderSpec(row: JobRow, parsed: unknown): JobSpec {
  const reply = conversationOf(row, parsed) ?? { platform: String(row.platform), channelId: '' };
  const requester: Requester = {
    platform: String(row.platform),
    userId: String(row.user_id),
    displayName: '',
  };
  if (isText(row.team_id)) requester.teamId = row.team_id;
  return {
    kind: KINDS.includes(row.kind) ? row.kind : 'txt2img',
    requester,
    params: {
      prompt: '(unreadable job)',
      negativePrompt: '',
      aspect: '',
      width: 0,
      height: 0,
      seed: 0,
      steps: 0,
      guidance: 0,
      count: 0,
      sampler: 'euler',
    },
    reply,
  };
}

function record(row: JobRow, spec: JobSpec): StoredJob {
  const stored: StoredJob = {
    seq: row.seq,
    id: row.id,
    spec,
    state: row.state,
    createdAt: row.created_at,
    attempts: row.attempts,
  };
  if (row.started_at !== null) stored.startedAt = row.started_at;
  if (row.finished_at !== null) stored.finishedAt = row.finished_at;
  if (row.error !== null) stored.error = row.error;
  return stored;
}

/**
 * The row as a job. A row whose spec is unreadable is a failed job with a stand-in spec once it
 * has been failed (see `quarantineUnreadable`), and no job at all before: it must never run.
 */
function toRecord(row: JobRow): StoredJob | undefined {
  const read = parseSpec(row.spec);
  if ('spec' in read) return record(row, read.spec);
  return row.state === 'failed' ? record(row, placeholderSpec(row, read.parsed)) : undefined;
}

const readable = (job: StoredJob | undefined): job is StoredJob => job !== undefined;

/** An unfinished job whose row could not be read, failed by `quarantineUnreadable`. */
export interface QuarantinedJob {
  id: string;
  seq: number;
  /** What was wrong with the row, e.g. "spec is not valid JSON (…)". */
  problem: string;
  /** Where its user asked, when the row still says so. */
  conversation?: ReplyTarget;
  requester: { platform: string; userId: string };
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

  /**
   * Every queued or running job: running ones first, then queued ones, each in queue order.
   * Rows whose spec is unreadable are left out: `quarantineUnreadable` fails them.
   */
  unfinished(): StoredJob[] {
    return this.#unfinished.all().map(toRecord).filter(readable);
  }

  /**
   * Fails every queued or running job whose stored spec is unreadable (not JSON, or lacking
   * kind, requester, params or reply), with the reason in its `error`, so that one bad row
   * never stops a start. Returns them, with their conversation where the row still tells it.
   */
  quarantineUnreadable(now: number, error: (job: QuarantinedJob) => string): QuarantinedJob[] {
    const out: QuarantinedJob[] = [];
    for (const row of this.#unfinished.all()) {
      const read = parseSpec(row.spec);
      if ('spec' in read) continue;
      const job: QuarantinedJob = {
        id: row.id,
        seq: row.seq,
        problem: read.problem,
        requester: { platform: String(row.platform), userId: String(row.user_id) },
      };
      const conversation = conversationOf(row, read.parsed);
      if (conversation) job.conversation = conversation;
      if (this.#finish.run('failed', now, error(job), null, row.id).changes === 1) out.push(job);
    }
    return out;
  }

  /** Records that the adapter posted the job's final result. */
  markDelivered(id: string, now: number): void {
    this.#delivered.run(now, id);
  }

  /** Done jobs finished since `since` whose result no adapter confirmed posting. */
  undelivered(since: number): StoredJob[] {
    return this.#undelivered.all(since).map(toRecord).filter(readable);
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
      .map(toRecord)
      .filter(readable);
  }
}
