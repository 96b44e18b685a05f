/**
 * The fair GPU queue. p-queue runs at most one job per runner (pipeline) at once; `FairQueue`
 * decides whose job starts next (round-robin over users); `Limits` decides whether a job may
 * enter at all. Every transition is written to SQLite before its event is emitted, so a
 * restart (`start()`) finds every queued or running job and runs it again, in order.
 *
 * ```ts
 * const scheduler = new Scheduler(store, { runners: [new JobExecutor({ pipeline, store, images })] });
 * scheduler.on('job', (event) => adapter.show(event));
 * await scheduler.start();
 * const { job, position, etaMs } = await scheduler.enqueue(spec);
 * ```
 */
import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import {
  type AtelierError,
  asAtelierError,
  CancelledError,
  ForbiddenError,
  NotFoundError,
  RateLimitedError,
} from '../errors.js';
import { newJobId } from '../jobs/ids.js';
import type {
  JobEvent,
  JobRecord,
  JobResult,
  JobSpec,
  JobState,
  ReplyTarget,
  Requester,
} from '../jobs/types.js';
import { logJobTransition } from '../log.js';
import { loraCombinationKey, ResidencySimulation } from '../pipeline/residency.js';
import type { Residency } from '../pipeline/types.js';
import {
  type MessageRef,
  type Store,
  type StoredJob,
  type StoredMessage,
  storeError,
  UnreadableJobError,
} from '../store/index.js';
import { JobCrashedError, JobTimeoutError, QueuePausedError } from './errors.js';
import { DurationEstimator, jobUnits, sampleRun, type TimedJobResult } from './eta.js';
import { type FinalJobEvent, isFinal, type SchedulerEvents } from './events.js';
import { FairQueue, type FairQueueAddOptions } from './fair-queue.js';
import { type Allowance, Limits, queueFullError, userKey, userQueueFullError } from './limits.js';
import { type ResolvedSchedulerOptions, resolveSchedulerOptions, type SchedulerOptions } from './options.js';
import { isRunnerPool, type JobRunner } from './runner.js';

/** setTimeout's ceiling (2^31 − 1 ms); longer timeouts would fire at once. */
const MAX_TIMER_MS = 2_147_483_647;
const PAUSED_FLAG = 'queue.paused';
/** The measured time per step of each model, so ETAs are right from the first job after a restart. */
const ETA_FLAG = 'eta.models';
/** LoRA combinations a model keeps loaded when its pipeline does not say (lora/variants.ts). */
const DEFAULT_CACHED_COMBINATIONS = 2;
/** Recovered running jobs go before everything else. */
const RECOVERED_PRIORITY = 1;

export interface EnqueueReceipt {
  job: JobRecord;
  /** 1 = next to start. */
  position: number;
  /** Estimated ms until the job is done. */
  etaMs: number;
  /** The queue is paused by an admin: the job waits until it is resumed. */
  paused: boolean;
  /**
   * No runner can take jobs now (a gateway with no live worker, or Redis unreachable): the job
   * waits for one, and `etaMs` counts as if one were there.
   */
  waitingForRunner: boolean;
}

export interface QueueEntry {
  job: JobRecord;
  state: 'queued' | 'running';
  /** 0 while running, else 1 = next to start. */
  position: number;
  /** Estimated ms until the job is done. */
  etaMs: number;
  /** Waiting, and no runner can take jobs now (see `EnqueueReceipt.waitingForRunner`). */
  waitingForRunner?: true;
}

export interface RecoveryReport {
  /** Jobs found queued or running and put back in the queue, in their new order. */
  requeued: string[];
  /**
   * Jobs failed instead: found running after `maxAttempts` starts, or unfinished with a stored
   * row that cannot be read (not JSON, or lacking what every job has).
   */
  failed: string[];
  /** Done jobs whose `done` event was sent again because no adapter confirmed posting them. */
  redelivered: string[];
}

/** One job the scheduler holds in memory between enqueue and its final event. */
interface ActiveJob {
  job: StoredJob;
  userKey: string;
  units: number;
  state: 'queued' | 'running';
  /** Removes the job from p-queue while it waits; never aborted once it runs. */
  readonly dequeue: AbortController;
  run?: AbortController;
  startedAt?: number;
  estimateMs?: number;
  /** The model of the runner it runs on, as far as known. */
  model?: string;
  /** Time its run spends loading its model first (it was not loaded on its runner), in its estimate. */
  loadMs?: number;
  /** Time its run spends merging and loading its LoRA combination first (not loaded), in its estimate. */
  loraMs?: number;
  /** Its progress events so far: the step rate measured live, and its remaining steps. */
  progress?: { firstStep: number; firstAt: number; lastStep: number; lastAt: number; total: number };
  timer?: NodeJS.Timeout;
  /** The last position sent in a `queued` event, and how many runners there were then. */
  lastPosition?: number;
  lastRunners?: number;
  /** The final event was sent (the runner may still be winding down). */
  settled: boolean;
  /** stop() interrupted it: leave it `running` in SQLite so the next start runs it again. */
  interrupted: boolean;
}

function imageCost(spec: JobSpec): number {
  return spec.kind === 'upscale' ? 1 : spec.params.count;
}

function publicRecord(job: StoredJob): JobRecord {
  const { seq: _seq, ...record } = job;
  return record;
}

export class Scheduler extends EventEmitter<SchedulerEvents> {
  readonly #store: Store;
  readonly #options: ResolvedSchedulerOptions;
  readonly #limits: Limits;
  readonly #estimator: DurationEstimator;
  readonly #queue: PQueue<FairQueue, FairQueueAddOptions>;
  readonly #fair: FairQueue;
  /** The runners jobs may start on now: the configured ones, or a `RunnerPool`'s current ones. */
  #runners: JobRunner[];
  readonly #idleRunners: JobRunner[];
  readonly #busyRunners = new Set<JobRunner>();
  #unsubscribePool: (() => void) | undefined;
  readonly #active = new Map<string, ActiveJob>();
  readonly #running = new Set<ActiveJob>();
  /** Each runner's model, learnt from its results (`JobResult.model`, the pipeline's model). */
  readonly #runnerModels = new Map<JobRunner, string>();
  /** Unfinished (queued + running, not yet settled) jobs per user, for the per-user cap. */
  readonly #perUser = new Map<string, number>();
  #started = false;
  #stopped = false;
  #broadcastPending = false;
  #broadcastTimer: NodeJS.Timeout | undefined;
  #lastBroadcast = Number.NEGATIVE_INFINITY;

  constructor(store: Store, options: SchedulerOptions) {
    super();
    this.#store = store;
    this.#options = resolveSchedulerOptions(options);
    this.#limits = new Limits(store, this.#options);
    this.#estimator = new DurationEstimator(this.#options.etaWindow, this.#options.initialMsPerStep);
    const { runners } = this.#options;
    this.#runners = [...(isRunnerPool(runners) ? runners.current() : runners)];
    this.#idleRunners = [...this.#runners];
    // p-queue builds its queue itself; keep a handle on the instance to ask it for positions.
    let fair: FairQueue | undefined;
    const queueClass = class extends FairQueue {
      constructor() {
        super();
        fair = this;
      }
    };
    this.#queue = new PQueue<FairQueue, FairQueueAddOptions>({
      concurrency: Math.max(1, this.#runners.length),
      autoStart: false,
      queueClass,
    });
    this.#fair = fair!;
    this.#queue.on('idle', () => this.#emit('idle'));
    if (isRunnerPool(runners)) this.#unsubscribePool = runners.subscribe(() => this.#syncRunners());
  }

  /** Runners jobs may start on now (live workers, for the gateway). */
  get runnerCount(): number {
    return this.#runners.length;
  }

  /** Jobs waiting to start. */
  get size(): number {
    return this.#fair.size;
  }

  /** Jobs running now. */
  get pending(): number {
    return this.#running.size;
  }

  get isPaused(): boolean {
    return this.#store.flags.get<boolean>(PAUSED_FLAG) === true;
  }

  /** Whether `requester` is exempt from limits and may manage every job. */
  isAdmin(requester: Requester): boolean {
    return this.#limits.isAdmin(requester);
  }

  /** What `requester` can make at `now` under the limits, and when the next image comes (none taken). */
  allowance(requester: Requester, now: number = this.#options.clock()): Allowance {
    return this.#limits.allowance(requester, now);
  }

  /**
   * Puts back every job SQLite holds as queued or running (running ones first, then queued
   * ones in their original order), re-sends `done` for results not confirmed posted, then
   * starts running jobs unless an admin had paused the queue. Subscribe to events first.
   */
  async start(): Promise<RecoveryReport> {
    if (this.#stopped) throw new TypeError('This scheduler was stopped; create a new one');
    const report: RecoveryReport = { requeued: [], failed: [], redelivered: [] };
    if (this.#started) return report;
    this.#started = true;
    let paused: boolean;
    try {
      this.#recover(report);
      paused = this.isPaused;
    } catch (error) {
      // A damaged database: one line naming the file and what to do, not a SqliteError.
      throw storeError(error, this.#store.db.name);
    }
    if (report.requeued.length > 0 || report.failed.length > 0) {
      this.#options.logger.info({ ...report }, 'recovered unfinished jobs');
    }
    if (!paused) this.#startQueue();
    return report;
  }

  /** start()'s reading of the store: unreadable rows, unfinished jobs, unconfirmed results. */
  #recover(report: RecoveryReport): void {
    this.#estimator.restore(this.#store.flags.get(ETA_FLAG));
    this.#quarantineUnreadable(report);
    for (const job of this.#store.jobs.unfinished()) {
      if (this.#active.has(job.id)) continue;
      if (job.state === 'running' && job.attempts >= this.#options.maxAttempts) {
        this.#failStored(job, new JobCrashedError(job.attempts));
        report.failed.push(job.id);
        continue;
      }
      this.#admit(job, job.state === 'running' ? RECOVERED_PRIORITY : 0);
      report.requeued.push(job.id);
    }
    if (this.#options.redeliverWithinMs > 0) {
      const since = this.#options.clock() - this.#options.redeliverWithinMs;
      for (const job of this.#store.jobs.undelivered(since)) {
        const result = this.#store.results.get(job.id);
        if (!result) continue;
        this.#emitJob({ type: 'done', jobId: job.id, result });
        report.redelivered.push(job.id);
      }
    }
  }

  /**
   * Fails every unfinished job whose stored row cannot be read (one line in the log each) and
   * tells its user through the usual `failed` event where the row still names the
   * conversation, so one bad row never turns into a crash at every start.
   */
  #quarantineUnreadable(report: RecoveryReport): void {
    const now = this.#options.clock();
    const errors = new Map<string, UnreadableJobError>();
    const quarantined = this.#store.jobs.quarantineUnreadable(now, (job) => {
      const error = new UnreadableJobError(job.id, job.problem);
      errors.set(job.id, error);
      return error.message;
    });
    for (const job of quarantined) {
      this.#options.logger.warn(
        {
          jobId: job.id,
          user: `${job.requester.platform}:${job.requester.userId}`,
          problem: job.problem,
          told: job.conversation !== undefined,
        },
        `job ${job.id} failed at start-up: its stored row is unreadable (${job.problem}); it will not run`,
      );
      report.failed.push(job.id);
      if (job.conversation) this.#announceFailure(job.id, errors.get(job.id)!);
    }
  }

  /**
   * Stops starting jobs and interrupts running ones without failing them: SQLite keeps them
   * queued/running, so the next `start()` runs them again. Resolves once every runner returned.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribePool?.();
    this.#queue.pause();
    clearTimeout(this.#broadcastTimer);
    const shutdown = new CancelledError('the bot is shutting down');
    for (const entry of this.#active.values()) {
      entry.interrupted = true;
      if (entry.state === 'queued') entry.dequeue.abort(shutdown);
      else entry.run?.abort(shutdown);
    }
    await this.#queue.onPendingZero();
    this.#active.clear();
    this.#perUser.clear();
  }

  /**
   * Checks the limits, stores the job and queues it. Throws RateLimitedError (which limit, and
   * `retryAfterMs`), QueuePausedError (team paused) or NotFoundError (parent image gone).
   */
  async enqueue(spec: JobSpec): Promise<EnqueueReceipt> {
    if (this.#stopped) throw new QueuePausedError('The bot is restarting. Please try again in a minute.');
    const now = this.#options.clock();
    const { requester } = spec;
    this.#checkParent(spec);
    const id = newJobId(now);
    let seq: number;
    if (this.#limits.isAdmin(requester)) {
      seq = this.#store.jobs.insert(id, spec, now);
    } else {
      const limits = this.#limits.effective(requester);
      if (limits.teamPaused) throw new QueuePausedError();
      // No runner (a gateway without a live worker): no place frees up and no job of the user's
      // finishes until one comes, so the refusals say that rather than a time.
      const noRunner = this.#runners.length === 0;
      if (this.#fair.size >= this.#options.maxQueueSize) {
        throw this.#refuse(
          queueFullError(this.#options.maxQueueSize, this.#nextSlotMs(now), { waitingForWorker: noRunner }),
          requester,
        );
      }
      const key = userKey(requester);
      if ((this.#perUser.get(key) ?? 0) >= limits.maxQueuedPerUser) {
        throw this.#refuse(
          userQueueFullError(limits.maxQueuedPerUser, this.#userNextDoneMs(key, now), {
            waitingForWorker: noRunner && !this.#runsFor(key),
          }),
          requester,
        );
      }
      try {
        seq = this.#store.transaction(() => {
          this.#limits.take(requester, limits, imageCost(spec), now);
          return this.#store.jobs.insert(id, spec, now);
        });
      } catch (error) {
        throw error instanceof RateLimitedError ? this.#refuse(error, requester) : error;
      }
    }
    const job: StoredJob = { id, seq, spec, state: 'queued', createdAt: now, attempts: 0 };
    const { position, etaMs } = this.#admit(job, 0);
    return {
      job: publicRecord(job),
      position,
      etaMs,
      paused: this.isPaused,
      waitingForRunner: this.#runners.length === 0,
    };
  }

  /**
   * Cancels a queued or running job; only its owner or an admin may. A running job is told to
   * stop through its AbortSignal (the pipeline stops between denoising steps); its `cancelled`
   * event is sent at once. `refund` gives a started job's images back too (the bot could not
   * show the job at all, so nobody got anything for them).
   */
  async cancel(jobId: string, by: Requester, options: { refund?: boolean } = {}): Promise<JobRecord> {
    const entry = this.#active.get(jobId);
    if (!entry || entry.settled) {
      if (!this.#store.jobs.get(jobId)) throw new NotFoundError(`job ${jobId}`, "I can't find that job.");
      throw new NotFoundError(
        `unfinished job ${jobId}`,
        'That job has already finished, so there is nothing to cancel.',
      );
    }
    const owner = entry.job.spec.requester;
    if (userKey(owner) !== userKey(by) && !this.#limits.isAdmin(by)) {
      throw new ForbiddenError('Only the person who asked for this image, or an admin, can cancel it.');
    }
    const now = this.#options.clock();
    const wasQueued = entry.state === 'queued';
    this.#store.transaction(() => {
      this.#store.jobs.finish(jobId, 'cancelled', now, { cancelledBy: userKey(by) });
      // Images never made are given back; a started job used the GPU, so it keeps its cost.
      if (wasQueued || options.refund) this.#refund(entry.job.spec, now);
    });
    this.#settle(entry);
    const reason = new CancelledError(`cancelled by ${userKey(by)}`);
    if (wasQueued) {
      entry.dequeue.abort(reason);
      this.#active.delete(jobId);
      this.#markPositionsDirty();
    } else {
      entry.run?.abort(reason);
    }
    this.#logTransition({ ...entry.job, finishedAt: now }, entry.state, 'cancelled', now);
    this.#emitJob({ type: 'cancelled', jobId, by: by.userId });
    return this.getJob(jobId)!;
  }

  /** Stops starting new jobs (running ones finish); remembered across restarts. Admins only. */
  pause(by: Requester): void {
    this.#requireAdmin(by, 'pause the queue');
    this.#store.flags.set(PAUSED_FLAG, true);
    this.#queue.pause();
    this.#options.logger.info({ by: userKey(by) }, 'queue paused');
    this.#emit('paused', userKey(by));
  }

  /** Starts running jobs again after `pause`. Admins only. */
  resume(by: Requester): void {
    this.#requireAdmin(by, 'resume the queue');
    this.#store.flags.set(PAUSED_FLAG, false);
    if (this.#started && !this.#stopped) this.#startQueue();
    this.#options.logger.info({ by: userKey(by) }, 'queue resumed');
    this.#emit('resumed', userKey(by));
  }

  /**
   * Running and waiting jobs with positions and ETAs, in the order they will run: the
   * requester's own, or everyone's (`all`, admins only).
   */
  list(by: Requester, options: { all?: boolean } = {}): QueueEntry[] {
    if (options.all) this.#requireAdmin(by, "see everyone's jobs");
    const mine = userKey(by);
    const visible = (entry: ActiveJob) => options.all === true || entry.userKey === mine;
    const now = this.#options.clock();
    const out: QueueEntry[] = [];
    for (const entry of this.#running) {
      if (entry.settled || !visible(entry)) continue;
      out.push({
        job: publicRecord(entry.job),
        state: 'running',
        position: 0,
        etaMs: this.#remainingMs(entry, now),
      });
    }
    const { etas } = this.#queueEtas(now);
    this.#fair.forEachInOrder((id, position) => {
      const entry = this.#active.get(id);
      if (!entry || !visible(entry)) return;
      out.push({
        job: publicRecord(entry.job),
        state: 'queued',
        position,
        etaMs: etas.get(id) ?? 0,
        ...this.#waitingForRunner(),
      });
    });
    return out;
  }

  /** A waiting job's position (1 = next) and ETA, 0 for a running one; undefined otherwise. */
  position(jobId: string): { position: number; etaMs: number } | undefined {
    const entry = this.#active.get(jobId);
    if (!entry || entry.settled) return undefined;
    const now = this.#options.clock();
    if (entry.state === 'running') return { position: 0, etaMs: this.#remainingMs(entry, now) };
    const at = this.#fair.positionOf(jobId);
    if (!at) return undefined;
    return { position: at.position, etaMs: this.#queueEtas(now).etas.get(jobId) ?? 0 };
  }

  /** A job as stored, with its result once done. */
  getJob(jobId: string): JobRecord | undefined {
    return this.#store.getJob(jobId);
  }

  /** The job a chat message shows (for buttons and reactions on old messages). */
  findJobByMessage(message: MessageRef): JobRecord | undefined {
    const jobId = this.#store.results.findJobByMessage(message);
    return jobId === undefined ? undefined : this.getJob(jobId);
  }

  /**
   * Records a message the adapter posted for a job, so later clicks on it find the job, and
   * makes it the job's reply message so a restart edits it instead of posting anew.
   */
  attachMessage(jobId: string, message: StoredMessage, reply: Partial<ReplyTarget> = {}): void {
    const now = this.#options.clock();
    this.#store.transaction(() => {
      if (!this.#store.jobs.updateReply(jobId, { ...reply, messageId: message.messageId })) {
        throw new NotFoundError(`job ${jobId}`);
      }
      this.#store.results.recordMessage(jobId, message, now);
    });
    const entry = this.#active.get(jobId);
    if (entry)
      entry.job.spec = {
        ...entry.job.spec,
        reply: { ...entry.job.spec.reply, ...reply, messageId: message.messageId },
      };
  }

  /** The adapter posted the job's final result: no need to send `done` again after a restart. */
  markDelivered(jobId: string): void {
    this.#store.jobs.markDelivered(jobId, this.#options.clock());
  }

  /** Resolves with the job's final event (at once if it has already finished). */
  waitFor(jobId: string): Promise<FinalJobEvent> {
    const entry = this.#active.get(jobId);
    if (!entry || entry.settled) {
      const job = this.getJob(jobId);
      if (!job) return Promise.reject(new NotFoundError(`job ${jobId}`));
      if (job.state === 'done' && job.result)
        return Promise.resolve({ type: 'done', jobId, result: job.result });
      if (job.state === 'failed') {
        const reason = job.error ?? 'failed';
        return Promise.resolve({
          type: 'failed',
          jobId,
          reason,
          userMessage: asAtelierError(reason).userMessage,
        });
      }
      if (job.state === 'cancelled') return Promise.resolve({ type: 'cancelled', jobId, by: '' });
    }
    return new Promise((resolve) => {
      const listener = (event: JobEvent) => {
        if (event.jobId !== jobId || !isFinal(event)) return;
        this.off('job', listener);
        resolve(event);
      };
      this.on('job', listener);
    });
  }

  /** Resolves when nothing is waiting or running (a paused queue with waiting jobs never is). */
  async onIdle(): Promise<void> {
    await this.#queue.onIdle();
  }

  // ——— internals ———

  /** Lets p-queue start jobs, unless no runner is there to take one (it waits for the pool). */
  #startQueue(): void {
    if (this.#runners.length > 0) this.#queue.start();
  }

  /**
   * The pool's runners changed: new ones become idle, gone ones leave the idle list (a busy one
   * finishes its job first), and p-queue runs as many jobs as there are runners, none when none.
   */
  #syncRunners(): void {
    const { runners } = this.#options;
    if (this.#stopped || !isRunnerPool(runners)) return;
    const next = [...runners.current()];
    const kept = new Set(next);
    for (let i = this.#idleRunners.length - 1; i >= 0; i--) {
      if (!kept.has(this.#idleRunners[i]!)) this.#idleRunners.splice(i, 1);
    }
    for (const runner of next) {
      if (!this.#busyRunners.has(runner) && !this.#idleRunners.includes(runner))
        this.#idleRunners.push(runner);
    }
    this.#runners = next;
    if (next.length === 0) {
      this.#queue.pause();
    } else {
      this.#queue.concurrency = next.length;
      if (this.#started && !this.#isPausedSafe()) this.#queue.start();
    }
    this.#markPositionsDirty();
  }

  #isPausedSafe(): boolean {
    try {
      return this.isPaused;
    } catch {
      return true;
    }
  }

  /** Takes a stored job into memory and p-queue, sending its first `queued` event. */
  #admit(job: StoredJob, priority: number): { position: number; etaMs: number } {
    const key = userKey(job.spec.requester);
    const entry: ActiveJob = {
      job,
      userKey: key,
      units: jobUnits(job.spec),
      state: 'queued',
      dequeue: new AbortController(),
      settled: false,
      interrupted: false,
    };
    this.#active.set(job.id, entry);
    this.#perUser.set(key, (this.#perUser.get(key) ?? 0) + 1);
    // The position is worked out before p-queue sees the job: a job that finds a free runner
    // starts inside add(), and its `queued` event must come before its `started` event.
    const at = this.#fair.positionIfAdded(key, priority);
    const now = this.#options.clock();
    const etaMs = this.#queueEtas(now, { position: at.position, entry }).extraEtaMs ?? 0;
    entry.lastPosition = at.position;
    entry.lastRunners = this.#runners.length;
    // A recovered job logs where it was found; a new one comes from nowhere.
    this.#logTransition(job, job.attempts > 0 || job.state !== 'queued' ? job.state : null, 'queued', now);
    this.#emitJob({
      type: 'queued',
      jobId: job.id,
      position: at.position,
      etaMs,
      ...this.#waitingForRunner(),
    });
    this.#queue
      .add(() => this.#run(entry), {
        id: job.id,
        userKey: key,
        units: entry.units,
        priority,
        signal: entry.dequeue.signal,
      })
      // Rejects only when the job is taken out of the queue (cancel, stop); handled there.
      .catch(() => {});
    this.#markPositionsDirty();
    return { position: at.position, etaMs };
  }

  /** Runs one job on a free runner; never throws (every outcome becomes an event). */
  async #run(entry: ActiveJob): Promise<void> {
    const runner = this.#idleRunners.pop();
    if (!runner) throw new Error('p-queue started more jobs than there are runners');
    this.#busyRunners.add(runner);
    const { id } = entry.job;
    const startedAt = this.#options.clock();
    try {
      let attempts: number;
      try {
        attempts = this.#store.jobs.markRunning(id, startedAt);
      } catch (error) {
        this.#fail(entry, error);
        return;
      }
      if (attempts === 0) {
        // Finished meanwhile by someone else (another process on the same database).
        this.#settle(entry);
        return;
      }
      entry.state = 'running';
      entry.startedAt = startedAt;
      // Its own model's rate once measured (several models), else the runner's; plus loading its
      // model first when the runner's pipeline does not hold it, and merging and loading its LoRA
      // combination first when that model does not hold it.
      const residency = runner.residency?.();
      const own = this.#jobModel(entry.job.spec, residency);
      entry.model = own !== undefined && this.#estimator.knows(own) ? own : this.#runnerModel(runner);
      entry.loadMs = this.#loadMs(residency, own);
      entry.loraMs = this.#loraMs(residency, own, loraCombinationKey(entry.job.spec.params.loras));
      entry.estimateMs = Math.round(
        this.#estimator.estimate(entry.units, entry.model) + entry.loadMs + entry.loraMs,
      );
      entry.run = new AbortController();
      entry.job = { ...entry.job, state: 'running', startedAt, attempts };
      this.#running.add(entry);
      entry.timer = setTimeout(
        () => this.#timeOut(entry),
        Math.min(this.#options.jobTimeoutMs, MAX_TIMER_MS),
      );
      entry.timer.unref?.();
      this.#logTransition(entry.job, 'queued', 'running', startedAt);
      this.#emitJob({ type: 'started', jobId: id, etaMs: entry.estimateMs });
      this.#markPositionsDirty();

      let result: JobResult;
      try {
        result = await runner.run(publicRecord(entry.job), {
          signal: entry.run.signal,
          onProgress: (progress) => {
            this.#recordProgress(entry, progress.step, progress.total);
            if (!entry.settled && !entry.interrupted)
              this.#emitJob({ type: 'progress', jobId: id, ...progress });
          },
        });
      } catch (error) {
        if (!entry.settled && !entry.interrupted) this.#fail(entry, error);
        return;
      }
      // Cancelled or timed out while the runner finished: the user was already told.
      if (entry.settled) return;
      this.#complete(entry, result, runner);
    } finally {
      clearTimeout(entry.timer);
      this.#running.delete(entry);
      if (entry.settled || entry.interrupted) this.#active.delete(id);
      this.#busyRunners.delete(runner);
      // A runner its pool dropped meanwhile (its worker left) is not used again.
      if (this.#runners.includes(runner) && !this.#idleRunners.includes(runner))
        this.#idleRunners.push(runner);
    }
  }

  #complete(entry: ActiveJob, timed: TimedJobResult, runner: JobRunner): void {
    // The pipeline's timings feed the ETA; the result stored and published is the job's alone.
    const { timings, ...result } = timed;
    const { id } = entry.job;
    const finishedAt = this.#options.clock();
    try {
      this.#store.transaction(() => {
        this.#store.jobs.finish(id, 'done', finishedAt);
        this.#store.results.save(id, result, finishedAt);
      });
    } catch (error) {
      this.#fail(entry, error);
      return;
    }
    this.#recordRun(entry, result, timings, runner, finishedAt);
    this.#settle(entry);
    entry.job = { ...entry.job, state: 'done', finishedAt };
    this.#logTransition(entry.job, 'running', 'done', finishedAt);
    this.#emitJob({ type: 'done', jobId: id, result });
  }

  #timeOut(entry: ActiveJob): void {
    if (entry.settled || entry.interrupted) return;
    const timeout = new JobTimeoutError(this.#options.jobTimeoutMs);
    this.#fail(entry, timeout);
    entry.run?.abort(timeout);
  }

  /** Fails an active job: SQLite, refund, `failed` event. */
  #fail(entry: ActiveJob, cause: unknown): void {
    if (entry.settled) return;
    const error = asAtelierError(cause);
    const now = this.#options.clock();
    try {
      this.#store.transaction(() => {
        this.#store.jobs.finish(entry.job.id, 'failed', now, { error: error.message });
        this.#refund(entry.job.spec, now);
      });
    } catch (dbError) {
      this.#options.logger.error(
        { jobId: entry.job.id, err: asAtelierError(dbError).message },
        'could not store failure',
      );
    }
    this.#settle(entry);
    if (entry.state === 'queued') {
      this.#active.delete(entry.job.id);
      this.#markPositionsDirty();
    }
    const failed = { ...entry.job, finishedAt: now, error: error.message };
    this.#logTransition(failed, entry.state, 'failed', now);
    this.#announceFailure(entry.job.id, error);
  }

  /** Fails a job that is only in SQLite (found at start-up). */
  #failStored(job: StoredJob, error: AtelierError): void {
    const now = this.#options.clock();
    this.#store.transaction(() => {
      this.#store.jobs.finish(job.id, 'failed', now, { error: error.message });
      this.#refund(job.spec, now);
    });
    this.#logTransition({ ...job, finishedAt: now, error: error.message }, job.state, 'failed', now);
    this.#announceFailure(job.id, error);
  }

  #announceFailure(jobId: string, error: AtelierError): void {
    this.#emitJob({ type: 'failed', jobId, reason: error.message, userMessage: error.userMessage });
  }

  /** The job has had its final event: it no longer counts against its user's cap. */
  #settle(entry: ActiveJob): void {
    if (entry.settled) return;
    entry.settled = true;
    const count = (this.#perUser.get(entry.userKey) ?? 1) - 1;
    if (count > 0) this.#perUser.set(entry.userKey, count);
    else this.#perUser.delete(entry.userKey);
  }

  #refund(spec: JobSpec, now: number): void {
    if (this.#limits.isAdmin(spec.requester)) return;
    this.#limits.refund(spec.requester, imageCost(spec), now);
  }

  #checkParent(spec: JobSpec): void {
    if (spec.kind !== 'variation' && spec.kind !== 'upscale') return;
    const parent = spec.parent;
    const image = parent && this.#store.results.image(parent.jobId, parent.imageIndex ?? 0);
    if (!image) {
      throw new NotFoundError(
        `image ${parent?.imageIndex ?? 0} of job ${parent?.jobId ?? '(none)'}`,
        "I can't find that image any more, so I can't make a variation or upscale of it.",
      );
    }
  }

  #logTransition(job: StoredJob, from: JobState | null, to: JobState, now: number): void {
    if (!this.#options.logger.isLevelEnabled(to === 'failed' ? 'warn' : 'info')) return;
    logJobTransition(this.#options.logger, publicRecord(job), from, to, {
      now,
      includePrompt: this.#options.logPrompts,
    });
  }

  #requireAdmin(by: Requester, what: string): void {
    if (!this.#limits.isAdmin(by)) throw new ForbiddenError(`Only admins can ${what}.`);
  }

  #refuse(error: RateLimitedError, requester: Requester): RateLimitedError {
    this.#options.logger.info(
      { user: userKey(requester), limit: error.limit, retryAfterMs: error.retryAfterMs },
      'job refused',
    );
    return error;
  }

  // ——— estimates ———

  /** The model a runner runs: learnt from its last result, else the last model seen at all. */
  #runnerModel(runner: JobRunner): string | undefined {
    return this.#runnerModels.get(runner) ?? this.#estimator.lastModel;
  }

  #recordProgress(entry: ActiveJob, step: number, total: number): void {
    if (!(total > 0) || !Number.isFinite(step)) return;
    const now = this.#options.clock();
    if (!entry.progress) {
      entry.progress = { firstStep: step, firstAt: now, lastStep: step, lastAt: now, total };
    } else {
      entry.progress.lastStep = step;
      entry.progress.lastAt = now;
      entry.progress.total = total;
    }
  }

  /** A finished job's time, measured per model, feeds the next estimates (and survives a restart). */
  #recordRun(
    entry: ActiveJob,
    result: JobResult,
    timings: TimedJobResult['timings'],
    runner: JobRunner,
    finishedAt: number,
  ): void {
    // Several models: the rate is kept under the configured name the job ran on (the default
    // model's too, which is what the estimates look up); one model: under its checkpoint label.
    const model = this.#jobModel(entry.job.spec, runner.residency?.()) ?? (result.model || entry.model);
    if (!model) return;
    this.#runnerModels.set(runner, model);
    // Loading the model first (it was not resident), or merging and loading the job's LoRA
    // combination, is not the model's speed: left out of the sample.
    const loadMs = Math.max(0, timings?.loadMs ?? 0) + Math.max(0, timings?.loraMs ?? 0);
    const startedAt = (entry.startedAt ?? finishedAt) + loadMs;
    const sample = sampleRun({
      units: entry.units,
      runMs: Math.max(0, finishedAt - startedAt),
      timings,
      progress: entry.progress,
      startedAt,
    });
    if (!sample) return;
    this.#estimator.record(model, sample);
    try {
      this.#store.flags.set(ETA_FLAG, this.#estimator.snapshot());
    } catch (error) {
      this.#options.logger.warn({ err: asAtelierError(error).message }, 'could not store the ETA estimates');
    }
  }

  /**
   * A running job's remaining time: from its progress (remaining steps at the rate measured on
   * this very job, then the model's decode time) once it reports steps, else its estimate less
   * the time it has run.
   */
  #remainingMs(entry: ActiveJob, now: number): number {
    const { progress } = entry;
    if (!progress) return Math.max(0, (entry.estimateMs ?? 0) - (now - (entry.startedAt ?? now)));
    const rate = this.#estimator.rate(entry.model);
    const msPerStep =
      progress.lastStep > progress.firstStep
        ? (progress.lastAt - progress.firstAt) / (progress.lastStep - progress.firstStep)
        : (entry.units / progress.total) * rate.msPerUnit;
    const left = Math.max(0, progress.total - progress.lastStep) * msPerStep + rate.afterMs;
    return Math.max(0, Math.round(left - (now - progress.lastAt)));
  }

  #runningRemainingMs(now: number): number {
    let total = 0;
    for (const entry of this.#running) total += this.#remainingMs(entry, now);
    return total;
  }

  /**
   * Estimated run of a job of `units` work, and of the fixed part of one job, on the configured
   * runners: each runner's model rate, averaged over the runners (the job runs on whichever is
   * free first).
   */
  #runnerRate(): { msPerUnit: number; perJobMs: number } {
    const runners = this.#runners;
    if (runners.length === 0) {
      const rate = this.#estimator.rate(this.#estimator.lastModel);
      return { msPerUnit: rate.msPerUnit, perJobMs: rate.beforeMs + rate.afterMs };
    }
    let msPerUnit = 0;
    let perJobMs = 0;
    for (const runner of runners) {
      const rate = this.#estimator.rate(this.#runnerModel(runner));
      msPerUnit += rate.msPerUnit;
      perJobMs += rate.beforeMs + rate.afterMs;
    }
    return { msPerUnit: msPerUnit / runners.length, perJobMs: perJobMs / runners.length };
  }

  /**
   * ETAs of the waiting jobs, by id: for each, the running jobs' remaining time and the jobs ahead
   * of it (their steps × images × size at the measured rate of their model, plus each one's fixed
   * part, plus loading its model where the pipeline would not hold it by then), shared over the
   * runners, then its own run. A job with a runner free for it waits for nothing. `extra`: a job
   * about to join at `extra.position`, whose ETA comes back as `extraEtaMs`.
   *
   * Several models (config `models.list`): what is loaded is played forward job by job with the
   * pipeline's own rule (least recently used out, at its capacity), from what the first runner
   * holds now and the models of the running jobs; each model's load time is the pipeline's measure.
   * LoRA combinations the same way, per model at its combination capacity: a job whose combination
   * its model would not hold by then counts its merge and load once (`#loraTimeOf`), and the jobs
   * behind it with the same combination count none.
   */
  #queueEtas(
    now: number,
    extra?: { position: number; entry: Pick<ActiveJob, 'job' | 'units'> },
  ): { etas: Map<string, number>; extraEtaMs?: number } {
    // No runner (no worker alive): estimate as for one, the least that can come back.
    const runners = Math.max(1, this.#runners.length);
    const base = this.#runningRemainingMs(now);
    const rate = this.#runnerRate();
    const residency = this.#residency();
    const simulation =
      residency &&
      new ResidencySimulation(residency.resident, residency.capacity, {
        loaded: residency.loras ?? {},
        capacity: residency.loraCapacity ?? DEFAULT_CACHED_COMBINATIONS,
      });
    for (const entry of this.#running) {
      const model = this.#jobModel(entry.job.spec, residency);
      if (!simulation || model === undefined) continue;
      simulation.use(model);
      const combination = loraCombinationKey(entry.job.spec.params.loras);
      if (combination !== undefined) simulation.useLoras(model, combination);
    }
    let aheadMs = 0;
    const etaOf = (entry: Pick<ActiveJob, 'job' | 'units'>, jobsAhead: number): number => {
      const model = this.#jobModel(entry.job.spec, residency);
      const run =
        model !== undefined && this.#estimator.knows(model)
          ? this.#estimator.estimate(entry.units, model)
          : entry.units * rate.msPerUnit + rate.perJobMs;
      const load =
        simulation && model !== undefined && simulation.use(model) ? this.#loadTimeOf(residency!, model) : 0;
      const combination = loraCombinationKey(entry.job.spec.params.loras);
      const merge =
        simulation &&
        model !== undefined &&
        combination !== undefined &&
        simulation.useLoras(model, combination)
          ? this.#loraTimeOf(residency!, model)
          : 0;
      const own = run + load + merge;
      const wait = this.#running.size + jobsAhead < runners ? 0 : (base + aheadMs) / runners;
      aheadMs += own;
      return Math.round(wait + own);
    };
    const etas = new Map<string, number>();
    let extraEtaMs: number | undefined;
    this.#fair.forEachInOrder((id, position) => {
      if (extra && extraEtaMs === undefined && position >= extra.position)
        extraEtaMs = etaOf(extra.entry, extra.position - 1);
      const entry = this.#active.get(id);
      if (entry) etas.set(id, etaOf(entry, extra && extraEtaMs !== undefined ? position : position - 1));
    });
    if (extra && extraEtaMs === undefined) extraEtaMs = etaOf(extra.entry, extra.position - 1);
    return { etas, ...(extraEtaMs !== undefined ? { extraEtaMs } : {}) };
  }

  /** What the first runner that serves several models holds loaded; undefined for one model. */
  #residency(): Residency | undefined {
    for (const runner of this.#runners) {
      const residency = runner.residency?.();
      if (residency) return residency;
    }
    return undefined;
  }

  /** The configured model a job runs on: the one it names, else the pipeline's default. */
  #jobModel(spec: JobSpec, residency: Residency | undefined): string | undefined {
    return spec.params.model?.name ?? residency?.defaultModel;
  }

  /** How long a job of `model` spends loading it first on a runner that holds `residency` now. */
  #loadMs(residency: Residency | undefined, model: string | undefined): number {
    if (!residency || model === undefined || residency.resident.includes(model)) return 0;
    return this.#loadTimeOf(residency, model);
  }

  /**
   * How long a job of `model` with LoRA combination `combination` spends merging and loading it
   * first on a runner that holds `residency` now (0: no LoRAs, or that combination is loaded).
   */
  #loraMs(
    residency: Residency | undefined,
    model: string | undefined,
    combination: string | undefined,
  ): number {
    if (!residency || model === undefined || combination === undefined) return 0;
    // A model loaded for the job holds no combination yet.
    if (residency.resident.includes(model) && residency.loras?.[model]?.includes(combination)) return 0;
    return this.#loraTimeOf(residency, model);
  }

  /**
   * How long merging and loading a LoRA combination of `model` takes: its last measured one, else
   * the mean of the other models' (the same merge over another model), else the model's own load
   * time — a combination's first job opens a whole denoiser session of the model (every MMDiT
   * weight, its graph, an arena), which is most of what loading the model does, plus the merge.
   */
  #loraTimeOf(residency: Residency, model: string): number {
    const known = residency.loraMs?.[model];
    if (known !== undefined) return known;
    const all = Object.values(residency.loraMs ?? {});
    if (all.length) return all.reduce((a, b) => a + b, 0) / all.length;
    return this.#loadTimeOf(residency, model);
  }

  /**
   * How long loading `model` takes: its last measured load, else the mean of the others' (a model
   * that did not fit at start has never been loaded).
   */
  #loadTimeOf(residency: Residency, model: string): number {
    const known = residency.loadMs[model];
    if (known !== undefined) return known;
    const all = Object.values(residency.loadMs);
    return all.length ? all.reduce((a, b) => a + b, 0) / all.length : 0;
  }

  /** When a waiting job could next start, for "the queue is full, try again in …". */
  #nextSlotMs(now: number): number {
    let soonest = Number.POSITIVE_INFINITY;
    for (const entry of this.#running) soonest = Math.min(soonest, this.#remainingMs(entry, now));
    if (!Number.isFinite(soonest)) soonest = this.#estimator.estimate(1, this.#estimator.lastModel);
    return Math.max(1000, Math.round(soonest));
  }

  /** Whether one of the user's jobs is running (it can finish even while no runner is listed). */
  #runsFor(key: string): boolean {
    for (const entry of this.#running) if (entry.userKey === key) return true;
    return false;
  }

  /** When the first of a user's unfinished jobs should be done. */
  #userNextDoneMs(key: string, now: number): number {
    let soonest = Number.POSITIVE_INFINITY;
    let etas: Map<string, number> | undefined;
    for (const entry of this.#active.values()) {
      if (entry.userKey !== key || entry.settled) continue;
      if (entry.state === 'running') {
        soonest = Math.min(soonest, this.#remainingMs(entry, now));
      } else {
        etas ??= this.#queueEtas(now).etas;
        const eta = etas.get(entry.job.id);
        if (eta !== undefined) soonest = Math.min(soonest, eta);
      }
    }
    return Math.max(
      1000,
      Math.round(Number.isFinite(soonest) ? soonest : this.#estimator.estimate(1, this.#estimator.lastModel)),
    );
  }

  // ——— events ———

  /** The flag waiting jobs carry while no runner can take them (a gateway without workers). */
  #waitingForRunner(): { waitingForRunner?: true } {
    return this.#runners.length === 0 ? { waitingForRunner: true } : {};
  }

  /**
   * Positions change for many jobs at once (every start moves everyone up), so updates are
   * coalesced: at most one pass every `positionUpdateIntervalMs`, each sending `queued` only
   * to jobs whose position changed since they were last told, or to every waiting job when the
   * number of runners changed (a worker came or left: the ETA is shared over a different number).
   */
  #markPositionsDirty(): void {
    if (this.#broadcastPending || this.#stopped) return;
    this.#broadcastPending = true;
    const wait = this.#lastBroadcast + this.#options.positionUpdateIntervalMs - this.#options.clock();
    if (wait <= 0) {
      queueMicrotask(() => this.#broadcastPositions());
    } else {
      this.#broadcastTimer = setTimeout(() => this.#broadcastPositions(), wait);
      this.#broadcastTimer.unref?.();
    }
  }

  #broadcastPositions(): void {
    this.#broadcastPending = false;
    this.#broadcastTimer = undefined;
    if (this.#stopped) return;
    const now = this.#options.clock();
    this.#lastBroadcast = now;
    const runners = this.#runners.length;
    const waiting = this.#waitingForRunner();
    const { etas } = this.#queueEtas(now);
    this.#fair.forEachInOrder((id, position) => {
      const entry = this.#active.get(id);
      if (!entry || (entry.lastPosition === position && entry.lastRunners === runners)) return;
      entry.lastPosition = position;
      entry.lastRunners = runners;
      this.#emitJob({
        type: 'queued',
        jobId: id,
        position,
        etaMs: etas.get(id) ?? 0,
        ...waiting,
      });
    });
  }

  #emitJob(event: JobEvent): void {
    this.#emit(event.type, event as never);
    this.#emit('job', event);
  }

  /** A listener that throws must not break the queue: log it and go on. */
  #emit<K extends keyof SchedulerEvents>(name: K, ...args: SchedulerEvents[K]): void {
    try {
      (this.emit as (name: K, ...args: SchedulerEvents[K]) => boolean)(name, ...args);
    } catch (error) {
      this.#options.logger.error({ event: name, err: asAtelierError(error).message }, 'event listener threw');
    }
  }
}
