/**
 * The gateway's side of the cluster: a `RunnerPool` for the scheduler with one runner per job
 * the live workers can take at once. The scheduler stays the one place that orders work (round
 * robin, buckets, caps): it starts a job only on an idle runner, so BullMQ never holds more jobs
 * than there are idle workers, and BullMQ's FIFO hands them out in the scheduler's order.
 *
 * A runner's `run()` puts the job into BullMQ under the job's own id (adding it again, after a
 * gateway restart, finds the one already there), then waits for BullMQ's `completed` or `failed`,
 * reads the images from the result hash and writes them as `JobExecutor` does. Each job id is
 * settled at most once: a second completion (a worker frozen past its lock that wakes up) finds
 * no waiter and is dropped.
 *
 * Everything is driven by events, none by polling: BullMQ's `completed`/`failed` (QueueEvents,
 * read from the stream position the gateway started at, so a reconnect misses none), progress over
 * pub/sub, workers coming and going through the registry's own events (./registry.ts). While the
 * Redis connection is down the pool lists no runner, so jobs wait in the scheduler and their users
 * are told they wait for a worker; when it is back, every job in flight is checked once against
 * BullMQ (a Redis restarted without its data lost them: they are added again).
 */
import { EventEmitter } from 'node:events';
import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { isImg2img, type JobRecord, type JobResult } from '../jobs/types.js';
import type { Logger } from '../log.js';
import { asAbortError, readParentImage, writeRendered } from '../scheduler/executor.js';
import type { JobRunner, RunContext, RunnerPool } from '../scheduler/runner.js';
import type { Store } from '../store/index.js';
import { type ClusterKeys, clusterKeys, LEFTOVER_TTL_SECONDS, QUEUE_NAME } from './keys.js';
import { closeRedis, connectRedis } from './redis.js';
import { type WorkerCard, WorkerWatch } from './registry.js';
import {
  type ClusterJobData,
  type ClusterJobSummary,
  decodeProgress,
  failureFromReason,
  renderedFromFields,
} from './wire.js';

export interface ClusterGatewayOptions {
  redisUrl: string;
  /** Key prefix (config `cluster.prefix`). */
  prefix: string;
  store: Store;
  logger: Logger;
  /**
   * How often the live workers are re-read, only where Redis refuses to send key-expiry events
   * (`CONFIG SET notify-keyspace-events` not allowed). @default 1000
   */
  watchIntervalMs?: number;
  /** After a cancel, how long a runner waits for its worker to stop before freeing its slot. @default 30000 */
  cancelGraceMs?: number;
}

interface Waiter {
  jobId: string;
  /** What was added, to add it again if Redis lost it (restarted without its data). */
  data: ClusterJobData;
  onProgress: RunContext['onProgress'];
  settle(outcome: { completed: true } | { completed: false; reason: string | undefined }): void;
}

/** Who ran a job (tests, logs); emitted once per settled job. */
export interface ClusterJobOutcome {
  jobId: string;
  worker?: string;
  state: 'completed' | 'failed';
}

export class ClusterGateway
  extends EventEmitter<{
    workers: [readonly WorkerCard[]];
    /** The Redis connection went down (false) or came back (true). */
    connection: [up: boolean];
    outcome: [ClusterJobOutcome];
    progress: [{ jobId: string; worker: string; step: number; total: number }];
  }>
  implements RunnerPool
{
  readonly keys: ClusterKeys;
  readonly #options: Required<ClusterGatewayOptions>;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #queue: Queue<ClusterJobData, ClusterJobSummary>;
  #events: QueueEvents | undefined;
  readonly #watch: WorkerWatch;
  readonly #waiters = new Map<string, Waiter>();
  readonly #listeners = new Set<() => void>();
  #runners: RemoteRunner[] = [];
  /** The command connection is ready; while it is not, the pool lists no runner. */
  #up = false;
  /** The connection was lost since it was last ready: check the jobs in flight when it is back. */
  #dropped = false;
  #started = false;
  /** Set by `detach()`: aborts now mean the gateway is stopping, not a cancel. */
  #detached = false;
  #closed = false;

  constructor(options: ClusterGatewayOptions) {
    super();
    this.#options = { watchIntervalMs: 1000, cancelGraceMs: 30_000, ...options };
    this.keys = clusterKeys(options.prefix);
    const onError = (what: string) => (error: unknown) =>
      this.#options.logger.warn({ err: error instanceof Error ? error.message : String(error) }, what);
    this.#redis = connectRedis(options.redisUrl, { name: 'atelier:gateway' });
    this.#redis.on('error', onError('redis'));
    this.#subscriber = connectRedis(options.redisUrl, { name: 'atelier:gateway:sub' });
    this.#subscriber.on('error', onError('redis (subscriber)'));
    this.#queue = new Queue<ClusterJobData, ClusterJobSummary>(QUEUE_NAME, {
      connection: this.#redis,
      prefix: this.keys.prefix,
    });
    this.#queue.on('error', onError('queue'));
    this.#redis.on('ready', () => this.#connected());
    this.#redis.on('close', () => this.#disconnected());
    this.#watch = new WorkerWatch({
      redis: this.#redis,
      subscriber: this.#subscriber,
      keys: this.keys,
      intervalMs: this.#options.watchIntervalMs,
      onError: onError('reading the workers'),
    });
    this.#watch.on('change', (workers) => this.#resize(workers));
  }

  /** Connects, subscribes and reads the workers. Call before the scheduler starts. */
  async start(): Promise<void> {
    this.#started = true;
    this.#subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (channel.toString() !== this.keys.channels.progress) return;
      const frame = decodeProgress(message);
      if (!frame) return;
      const { jobId, worker, ...progress } = frame;
      const waiter = this.#waiters.get(jobId);
      if (!waiter) return;
      waiter.onProgress(progress);
      this.emit('progress', { jobId, worker, step: progress.step, total: progress.total });
    });
    await this.#subscriber.subscribe(this.keys.channels.progress);
    if (this.#closed) return;
    // From the stream's current end, not BullMQ's `$`: a reconnect before the first event would
    // otherwise start over at the then-current end and miss what finished meanwhile.
    const [last] = await this.#redis.xrevrange(this.#queue.keys.events!, '+', '-', 'COUNT', 1);
    if (this.#closed) return;
    const events = new QueueEvents(QUEUE_NAME, {
      connection: this.#redis,
      prefix: this.keys.prefix,
      autorun: false,
      lastEventId: last?.[0] ?? '0-0',
    });
    this.#events = events;
    events.on('error', (error) => this.#options.logger.warn({ err: error.message }, 'cluster: queue events'));
    events.on('completed', ({ jobId }) => this.#waiters.get(jobId)?.settle({ completed: true }));
    events.on('failed', ({ jobId, failedReason }) =>
      this.#waiters.get(jobId)?.settle({ completed: false, reason: failedReason }),
    );
    void events.run();
    await events.waitUntilReady();
    if (this.#closed) return;
    await this.#watch.start();
    if (this.#closed) this.#watch.stop();
  }

  /** Whether the gateway reaches Redis now. */
  get connected(): boolean {
    return this.#up;
  }

  #connected(): void {
    if (this.#closed || this.#up) return;
    this.#up = true;
    const dropped = this.#dropped;
    this.#dropped = false;
    if (dropped) {
      this.#options.logger.info('cluster: Redis is back');
      // Workers that came or went meanwhile sent events nobody heard; jobs may have finished, or
      // vanished with a Redis that restarted without its data.
      if (this.#started) void this.#watch.resync();
      void this.#checkStates();
    }
    this.#notify();
    this.emit('connection', true);
  }

  #disconnected(): void {
    if (!this.#up) return;
    this.#up = false;
    this.#dropped = true;
    if (this.#closed) return;
    this.#options.logger.warn('cluster: Redis unreachable; new jobs wait for it and a worker');
    this.#notify();
    this.emit('connection', false);
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }

  // ——— RunnerPool ———

  /** One runner per job the live workers take at once; none while Redis is unreachable. */
  current(): readonly JobRunner[] {
    return this.#up ? this.#runners : [];
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The live workers, as last read. */
  get workers(): readonly WorkerCard[] {
    return this.#watch.workers;
  }

  /** BullMQ's counts (waiting, active, …) for `doctor`. */
  jobCounts(): Promise<Record<string, number>> {
    return this.#queue.getJobCounts('wait', 'active', 'completed', 'failed', 'delayed');
  }

  /**
   * One runner per job the workers can take at once. Shrinking drops idle runners first: a job
   * its worker died with is still BullMQ's to give to another worker, and waits for a free one
   * before a new job is handed out.
   */
  #resize(workers: readonly WorkerCard[]): void {
    const capacity = this.#watch.capacity;
    const runners = [...this.#runners];
    while (runners.length < capacity) runners.push(new RemoteRunner(this));
    while (runners.length > capacity) {
      const idle = runners.findIndex((runner) => !runner.busy);
      runners.splice(idle >= 0 ? idle : runners.length - 1, 1);
    }
    this.#options.logger.info(
      { workers: workers.map((w) => `${w.host}/${w.device}`), capacity },
      `cluster: ${workers.length} worker${workers.length === 1 ? '' : 's'} alive`,
    );
    this.#runners = runners;
    this.#notify();
    this.emit('workers', workers);
  }

  // ——— running a job (RemoteRunner calls these) ———

  /** @internal Hands a job to BullMQ and resolves with its stored result. */
  async run(job: JobRecord, context: RunContext): Promise<JobResult> {
    const { signal } = context;
    if (signal.aborted) throw asAbortError(signal);
    if (this.#waiters.has(job.id)) throw new Error(`job ${job.id} is already running on the cluster`);
    const data: ClusterJobData = { job };
    if (isImg2img(job.spec.kind)) {
      data.parent = Buffer.from(await readParentImage(this.#options.store, job)).toString('base64');
    }
    let settle!: Waiter['settle'];
    const finished = new Promise<Parameters<Waiter['settle']>[0]>((resolve) => {
      settle = resolve;
    });
    let settled = false;
    const waiter: Waiter = {
      jobId: job.id,
      data,
      onProgress: (progress) => {
        if (!settled) context.onProgress(progress);
      },
      settle: (outcome) => {
        if (settled) return;
        settled = true;
        this.#waiters.delete(job.id);
        settle(outcome);
      },
    };
    // Listen before adding: a fast worker may finish before add() returns.
    this.#waiters.set(job.id, waiter);
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<'aborted'>((resolve) => {
      onAbort = () => resolve('aborted');
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      await this.#add(job.id, data);
      // Already finished (a gateway restart found it done): no event will come.
      await this.#checkState(job.id);
      const first = await Promise.race([finished, aborted]);
      if (first === 'aborted') return await this.#abandon(job.id, signal, finished);
      return await this.#collect(job.id, first);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
      waiter.settle({ completed: false, reason: undefined });
    }
  }

  #add(jobId: string, data: ClusterJobData): Promise<unknown> {
    return this.#queue.add('generate', data, {
      jobId,
      attempts: 1,
      removeOnComplete: { age: LEFTOVER_TTL_SECONDS },
      removeOnFail: { age: LEFTOVER_TTL_SECONDS },
    });
  }

  /** The job finished on a worker: its images stored like an embedded run's, then Redis cleaned. */
  async #collect(jobId: string, outcome: Parameters<Waiter['settle']>[0]): Promise<JobResult> {
    if (!outcome.completed) {
      this.emit('outcome', { jobId, state: 'failed' });
      this.#cleanUp(jobId);
      throw failureFromReason(outcome.reason);
    }
    const fields = (await this.#redis.hgetallBuffer(this.keys.result(jobId))) as Record<string, Buffer>;
    const { rendered, worker } = renderedFromFields(jobId, fields);
    const result = await writeRendered(this.#options.store.imageDir(jobId), rendered);
    this.emit('outcome', { jobId, worker, state: 'completed' });
    this.#cleanUp(jobId);
    return result;
  }

  /**
   * After an abort: a cancel (or timeout) tells the worker and waits for it to stop, so its slot
   * is not handed out while it still runs; a gateway shutting down (`detach`) leaves the job to the
   * workers and collects its result at the next start.
   */
  async #abandon(
    jobId: string,
    signal: AbortSignal,
    finished: Promise<Parameters<Waiter['settle']>[0]>,
  ): Promise<never> {
    const reason = asAbortError(signal);
    if (this.#detached) throw reason;
    await this.#redis
      .multi()
      .set(this.keys.cancel(jobId), '1', 'EX', LEFTOVER_TTL_SECONDS)
      .publish(this.keys.channels.cancel, jobId)
      .exec()
      .catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      finished,
      new Promise((resolve) => {
        timer = setTimeout(resolve, this.#options.cancelGraceMs);
      }),
    ]);
    clearTimeout(timer);
    this.emit('outcome', { jobId, state: 'failed' });
    this.#cleanUp(jobId);
    throw reason;
  }

  /** Settles a waiter from the job's stored state (after add, and after a reconnect). */
  async #checkState(jobId: string): Promise<void> {
    const waiter = this.#waiters.get(jobId);
    if (!waiter) return;
    const state = await this.#queue.getJobState(jobId);
    if (state === 'completed') waiter.settle({ completed: true });
    else if (state === 'failed') {
      const job = await this.#queue.getJob(jobId);
      waiter.settle({ completed: false, reason: job?.failedReason });
    } else if (state === 'unknown') {
      // Redis lost it (restarted without persistence): hand it out again.
      this.#options.logger.warn({ jobId }, 'cluster: job missing from Redis, queued again');
      await this.#add(jobId, waiter.data);
    }
  }

  async #checkStates(): Promise<void> {
    for (const jobId of [...this.#waiters.keys()]) {
      await this.#checkState(jobId).catch((error: unknown) =>
        this.#options.logger.warn({ jobId, err: (error as Error).message }, 'cluster: could not check a job'),
      );
    }
  }

  /** Removes what Redis holds of a settled job, once the scheduler has stored it (next tick). */
  #cleanUp(jobId: string): void {
    setImmediate(() => {
      void Promise.all([
        this.#redis.del(this.keys.result(jobId), this.keys.cancel(jobId)),
        this.#queue.remove(jobId),
      ]).catch(() => {});
    });
  }

  /**
   * The gateway is stopping: aborts from now on leave the jobs on the workers. Call before the
   * scheduler's `stop()`.
   */
  detach(): void {
    this.#detached = true;
  }

  async close(): Promise<void> {
    this.detach();
    this.#closed = true;
    this.#watch.stop();
    await this.#events?.close().catch(() => {});
    await this.#queue.close().catch(() => {});
    await closeRedis(this.#subscriber);
    await closeRedis(this.#redis);
  }
}

/** One job slot on the cluster: the scheduler sees one per job the live workers can take. */
class RemoteRunner implements JobRunner {
  #running = 0;

  constructor(readonly gateway: ClusterGateway) {}

  get busy(): boolean {
    return this.#running > 0;
  }

  async run(job: JobRecord, context: RunContext): Promise<JobResult> {
    this.#running++;
    try {
      return await this.gateway.run(job, context);
    } finally {
      this.#running--;
    }
  }
}
