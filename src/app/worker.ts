/**
 * The `worker` role (`atelier worker [--device N]`): one pipeline process on one GPU, taking jobs
 * from the cluster's queue (REDIS_URL) one at a time. No chat, no store: the job and its parent
 * image come with it, its images go back through Redis. Stops on SIGINT/SIGTERM after finishing
 * the job in hand (a second signal stops at once; BullMQ gives the job to another worker).
 */
import { ClusterWorker, type ClusterWorkerOptions, redactRedisUrl } from '../cluster/index.js';
import type { AtelierConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import { ProcessPipeline } from '../pipeline/process/process-pipeline.js';
import { sd35ProcessSpec } from '../pipeline/sd35/index.js';
import type { Pipeline } from '../pipeline/types.js';
import { appLogger } from './core.js';
import { requireRedisUrl } from './gateway.js';
import { pipelineOptions } from './options.js';

export interface RunWorkerOptions {
  /** GPU index; @default models.deviceId */
  device?: number;
  /** A pipeline to use instead of the SD3.5 one (tests). */
  pipeline?: Pipeline;
  logger?: Logger;
  /** Resolves when the worker should stop; @default the first SIGINT or SIGTERM */
  until?: Promise<void>;
  /** Called once the worker takes jobs. */
  onReady?(worker: ClusterWorker): void;
  /** Overrides for tests (short heartbeats and locks). */
  cluster?: Partial<Pick<ClusterWorkerOptions, 'heartbeatTtlMs' | 'lockMs' | 'stalledIntervalMs' | 'id'>>;
}

function firstSignal(): Promise<'SIGINT' | 'SIGTERM'> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

export async function runWorker(config: AtelierConfig, options: RunWorkerOptions = {}): Promise<void> {
  const redisUrl = requireRedisUrl(config, 'worker');
  const logger = options.logger ?? appLogger(config);
  const device = options.device ?? config.models.deviceId;
  let pipeline = options.pipeline;
  if (!pipeline) {
    const spec = await pipelineOptions(config);
    pipeline = new ProcessPipeline({
      spec: sd35ProcessSpec({ ...spec, engine: { ...spec.engine, deviceId: device } }),
      niceness: spec.engine.provider === 'cpu' ? 19 : 0,
    });
  }
  try {
    await pipeline.load();
    const info = pipeline.info();
    logger.info({ model: info.model, provider: info.executionProvider, device }, 'worker: model loaded');
    if (info.fp8) logger.info({ fp8: info.fp8, device }, `worker: ${info.fp8.summary}`);
    const worker = new ClusterWorker({
      redisUrl,
      prefix: config.cluster.prefix,
      pipeline,
      device,
      logger,
      heartbeatTtlMs: config.cluster.workerTtlSeconds * 1000,
      lockMs: config.cluster.lockSeconds * 1000,
      maxResultBytes: config.cluster.maxResultMB * 1024 * 1024,
      variationStrength: config.generation.variation.strength,
      upscaleStrength: config.generation.upscale.strength,
      ...options.cluster,
    });
    await worker.start();
    logger.info({ redis: redactRedisUrl(redisUrl), worker: worker.id }, 'worker: connected');
    options.onReady?.(worker);
    await (options.until ?? firstSignal());
    // A second signal while the job in hand finishes stops at once.
    const force = () => void worker.close({ force: true });
    process.once('SIGINT', force);
    process.once('SIGTERM', force);
    try {
      await worker.close();
    } finally {
      process.off('SIGINT', force);
      process.off('SIGTERM', force);
    }
  } finally {
    await pipeline.dispose();
  }
}
