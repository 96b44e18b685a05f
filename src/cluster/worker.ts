/**
 * The worker's side of the cluster: one pipeline (one GPU), one job at a time from BullMQ. It
 * announces itself with a heartbeat (./registry.ts), runs each job through the same `JobRenderer`
 * as the embedded executor, publishes progress, writes the images to the result hash and lets
 * BullMQ mark the job completed. A cancel (key or pub/sub message) aborts the pipeline, which
 * stops between steps.
 *
 * BullMQ features relied on: one queue, `concurrency: 1`, job locks renewed while a job runs and
 * the stalled-job check (a worker that dies loses its lock; another worker takes the job), and
 * its completed/failed events. Not used: retries with backoff (the scheduler decides about
 * failures), priorities, rate limits and groups (BullMQ Pro's group fairness: the scheduler does
 * the ordering).
 */
import { hostname } from 'node:os';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { CancelledError, PipelineError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Pipeline } from '../pipeline/types.js';
import { JobRenderer } from '../scheduler/executor.js';
import { type ClusterKeys, clusterKeys, LEFTOVER_TTL_SECONDS, QUEUE_NAME } from './keys.js';
import { closeRedis, connectRedis } from './redis.js';
import { Heartbeat } from './registry.js';
import {
  type ClusterJobData,
  type ClusterJobSummary,
  encodeProgress,
  failureReason,
  renderedBytes,
  resultFields,
} from './wire.js';

export interface ClusterWorkerOptions {
  redisUrl: string;
  prefix: string;
  /** A loaded pipeline. */
  pipeline: Pipeline;
  /** The GPU index this worker's pipeline runs on (`--device`). */
  device: number;
  logger: Logger;
  /** Unique in the cluster. @default `<host>-<device>-<pid>` */
  id?: string;
  /** A card not refreshed for this long is gone (config `cluster.workerTtlSeconds`). @default 15000 */
  heartbeatTtlMs?: number;
  /** BullMQ's job lock: a worker silent this long loses its job to another. @default 30000 */
  lockMs?: number;
  /** How often the stalled-job check runs. @default lockMs */
  stalledIntervalMs?: number;
  /** How many times a job may lose its worker before it fails. @default 2 */
  maxStalledCount?: number;
  /** A result larger than this fails the job. @default 64 MiB */
  maxResultBytes?: number;
  variationStrength?: number;
  upscaleStrength?: number;
}

export class ClusterWorker {
  readonly id: string;
  readonly keys: ClusterKeys;
  readonly #options: ClusterWorkerOptions;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #renderer: JobRenderer;
  readonly #heartbeat: Heartbeat;
  #worker: Worker<ClusterJobData, ClusterJobSummary> | undefined;
  /** The running job's abort, for cancels arriving over pub/sub. */
  readonly #running = new Map<string, AbortController>();

  constructor(options: ClusterWorkerOptions) {
    this.#options = options;
    this.id = options.id ?? `${hostname()}-${options.device}-${process.pid}`;
    this.keys = clusterKeys(options.prefix);
    const warn = (what: string) => (error: unknown) =>
      options.logger.warn({ err: error instanceof Error ? error.message : String(error) }, what);
    this.#redis = connectRedis(options.redisUrl, { name: 'atelier:worker' });
    this.#redis.on('error', warn('redis'));
    this.#subscriber = connectRedis(options.redisUrl, { name: 'atelier:worker:sub' });
    this.#subscriber.on('error', warn('redis (subscriber)'));
    this.#renderer = new JobRenderer({
      pipeline: options.pipeline,
      variationStrength: options.variationStrength,
      upscaleStrength: options.upscaleStrength,
    });
    this.#heartbeat = new Heartbeat(
      {
        id: this.id,
        host: hostname(),
        pid: process.pid,
        device: options.device,
        model: options.pipeline.info().model,
        defaults: options.pipeline.info().defaults,
        ...(options.pipeline.info().models ? { models: options.pipeline.info().models } : {}),
        capacity: 1,
        busy: false,
        startedAt: Date.now(),
      },
      {
        redis: this.#redis,
        keys: this.keys,
        ttlMs: options.heartbeatTtlMs ?? 15_000,
        onError: warn('heartbeat'),
      },
    );
  }

  /** Subscribes to cancels, starts consuming, then announces itself. */
  async start(): Promise<void> {
    this.#subscriber.on('message', (channel: string, jobId: string) => {
      if (channel === this.keys.channels.cancel) this.#running.get(jobId)?.abort(new CancelledError());
    });
    await this.#subscriber.subscribe(this.keys.channels.cancel);
    const lockMs = this.#options.lockMs ?? 30_000;
    this.#worker = new Worker<ClusterJobData, ClusterJobSummary>(QUEUE_NAME, (job) => this.#process(job), {
      connection: this.#redis,
      prefix: this.keys.prefix,
      concurrency: 1,
      lockDuration: lockMs,
      stalledInterval: this.#options.stalledIntervalMs ?? lockMs,
      maxStalledCount: this.#options.maxStalledCount ?? 2,
      autorun: false,
    });
    this.#worker.on('error', (error) =>
      this.#options.logger.warn({ err: error.message }, 'worker: queue error'),
    );
    void this.#worker.run();
    await this.#worker.waitUntilReady();
    await this.#heartbeat.start();
    this.#options.logger.info({ worker: this.id, device: this.#options.device }, 'worker: taking jobs');
  }

  async #process(job: Job<ClusterJobData, ClusterJobSummary>): Promise<ClusterJobSummary> {
    const jobId = job.id!;
    const controller = new AbortController();
    this.#running.set(jobId, controller);
    const { logger } = this.#options;
    try {
      if ((await this.#redis.exists(this.keys.cancel(jobId))) > 0) throw new CancelledError();
      await this.#heartbeat.update({ busy: true, jobId });
      logger.info({ jobId, worker: this.id }, 'worker: job started');
      const parent = job.data.parent ? Buffer.from(job.data.parent, 'base64') : undefined;
      const rendered = await this.#renderer.render(job.data.job, parent, {
        signal: controller.signal,
        onProgress: (progress) => {
          void this.#redis
            .publish(this.keys.channels.progress, encodeProgress({ ...progress, jobId, worker: this.id }))
            .catch(() => {});
        },
      });
      const bytes = renderedBytes(rendered);
      const max = this.#options.maxResultBytes ?? 64 * 1024 * 1024;
      if (bytes > max) {
        throw new PipelineError(
          `the result of job ${jobId} is ${bytes} bytes, over cluster.maxResultMB (${max} bytes)`,
          'The images came out too large to send back. Try fewer images or a smaller size.',
        );
      }
      const key = this.keys.result(jobId);
      await this.#redis
        .multi()
        .del(key)
        .hset(key, resultFields(rendered, this.id))
        .expire(key, LEFTOVER_TTL_SECONDS)
        .exec();
      logger.info({ jobId, worker: this.id, bytes }, 'worker: job done');
      return { worker: this.id, images: rendered.images.length, bytes };
    } catch (error) {
      logger.info({ jobId, worker: this.id, err: (error as Error).message }, 'worker: job failed');
      // Failures are final here: the scheduler decides what a failed job means.
      throw new UnrecoverableError(failureReason(error));
    } finally {
      this.#running.delete(jobId);
      await this.#heartbeat.update({ busy: false, jobId: undefined });
    }
  }

  /**
   * Stops taking jobs; a running job is finished first unless `force` (then BullMQ's stalled check
   * gives it to another worker). Removes the card.
   */
  async close(options: { force?: boolean } = {}): Promise<void> {
    if (options.force)
      for (const controller of this.#running.values()) controller.abort(new CancelledError());
    await this.#worker?.close(options.force);
    await this.#heartbeat.stop();
    await closeRedis(this.#subscriber);
    await closeRedis(this.#redis);
  }
}
