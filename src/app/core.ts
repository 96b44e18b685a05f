/**
 * The core every role is made of: config → logger, SQLite store, the SD3.5 pipelines (one process
 * per GPU), a job executor per pipeline and the fair scheduler. The `serve` role (./serve.ts) puts
 * the chat surfaces on top; `atelier imagine` uses it directly. Nothing here knows a chat platform.
 */
import pino from 'pino';
import type { AtelierConfig } from '../config/index.js';
import type { ValidationOptions } from '../jobs/validate.js';
import { createLogger, type Logger } from '../log.js';
import { ProcessPipeline } from '../pipeline/process/process-pipeline.js';
import { sd35ProcessSpec } from '../pipeline/sd35/index.js';
import type { Pipeline } from '../pipeline/types.js';
import { JobExecutor } from '../scheduler/executor.js';
import { type RecoveryReport, Scheduler } from '../scheduler/index.js';
import { openStore, type Store } from '../store/index.js';
import {
  type ModelCatalog,
  pipelineOptions,
  schedulerOptions,
  validationOptionsFromConfig,
} from './options.js';

export interface AtelierApp {
  config: AtelierConfig;
  logger: Logger;
  store: Store;
  scheduler: Scheduler;
  /** The first pipeline (all run the same models). */
  pipeline: Pipeline;
  /** How chat input becomes JobParams (config ranges, the loaded model's own defaults). */
  validation(): ValidationOptions;
  /** Loads the model (pipelines) — the model's defaults are known after this. */
  load(): Promise<void>;
  /**
   * Starts running jobs, first those left by the last run. Subscribe to job events before this:
   * results re-sent for an unconfirmed delivery are emitted during it.
   */
  resume(): Promise<RecoveryReport>;
  /** load() then resume(). */
  start(): Promise<RecoveryReport>;
  close(): Promise<void>;
}

export interface CreateAppOptions {
  /** A pipeline to use instead of the SD3.5 one (tests). */
  pipeline?: Pipeline;
  logger?: Logger;
}

/** The role's logger: to stderr (stdout carries the one line per surface), secrets masked. */
export function appLogger(config: AtelierConfig): Logger {
  return createLogger({
    level: config.log.level,
    // REDIS_URL's password alone too: a Redis error may quote it without the URL around it.
    secrets: [...Object.values(config.secrets), redisPassword(config.secrets.redisUrl)].filter(Boolean),
    destination: pino.destination(2),
  });
}

function redisPassword(url: string | undefined): string | undefined {
  try {
    return url ? decodeURIComponent(new URL(url).password) || undefined : undefined;
  } catch {
    return undefined;
  }
}

export async function createApp(config: AtelierConfig, options: CreateAppOptions = {}): Promise<AtelierApp> {
  const logger = options.logger ?? appLogger(config);
  const store = openStore({ dataDir: config.dataDir });
  // One pipeline per GPU (queue.concurrency): each in its own process, on its own device, with
  // every configured model (models.list) resident as far as they fit.
  const spec = options.pipeline ? undefined : await pipelineOptions(config);
  const pipelines: Pipeline[] = options.pipeline
    ? [options.pipeline]
    : Array.from({ length: config.queue.concurrency }, (_, i) => {
        const engine = spec!.engine;
        return new ProcessPipeline({
          spec: sd35ProcessSpec({ ...spec!, engine: { ...engine, deviceId: (engine.deviceId ?? 0) + i } }),
          // On the CPU the model competes with the bot for cores: chat answers come first.
          niceness: engine.provider === 'cpu' ? 19 : 0,
        });
      });
  const pipeline = pipelines[0];
  const executors = pipelines.map(
    (p) =>
      new JobExecutor({
        pipeline: p,
        store,
        variationStrength: config.generation.variation.strength,
        upscaleStrength: config.generation.upscale.strength,
      }),
  );
  const scheduler = new Scheduler(store, schedulerOptions(config, executors, logger));

  const load = async () => {
    await Promise.all(pipelines.map((p) => p.load()));
    const info = pipeline.info();
    logger.info(
      {
        model: info.model,
        provider: info.executionProvider,
        components: info.components.length,
        runtime: info.runtime,
        fp8: info.fp8,
        memory: info.memory,
      },
      'model loaded',
    );
    for (const model of info.models ?? []) {
      if (info.models!.length < 2) break;
      logger.info(
        {
          model: model.name,
          checkpoint: model.label,
          hash: model.hash,
          loaded: model.resident,
          loadMs: model.loadMs,
        },
        `model ${model.name}: ${model.label} (${model.resident ? 'loaded' : 'loads when a job needs it'})`,
      );
    }
    // Which fp8 route runs and why, in one line: "fp8: W8A8 on Hopper tensor cores (atelier:Fp8Linear)".
    if (info.fp8) logger.info({ fp8: info.fp8 }, info.fp8.summary);
    // GPU memory preflight (sd35/gpu-memory.ts): the expected peak against the limit or free memory.
    if (info.memory && info.memory.placement !== 'cpu') {
      // Not all cached LoRA combinations fitting beside the model is worth a warning too.
      const loras = info.memory.loras;
      const lorasShort =
        loras !== undefined && info.memory.budgetBytes !== undefined && loras.fit < loras.combinations;
      if (info.memory.fits && !lorasShort)
        logger.info({ memory: info.memory.summary }, `GPU memory: ${info.memory.summary}`);
      else logger.warn({ memory: info.memory.summary }, `GPU memory: ${info.memory.summary}`);
    }
  };
  const resume = () => scheduler.start();

  return {
    config,
    logger,
    store,
    scheduler,
    pipeline,
    validation: () => validationOptionsFromConfig(config, pipeline.info().defaults, catalogOf(pipeline)),
    load,
    resume,
    async start() {
      await load();
      return resume();
    },
    async close() {
      await scheduler.stop();
      await Promise.all(pipelines.map((p) => p.dispose()));
      store.close();
    },
  };
}

/** The models a pipeline serves and which are loaded now, when it says (several models). */
export function catalogOf(pipeline: Pipeline): ModelCatalog | undefined {
  const models = pipeline.info().models;
  if (!models?.length) return undefined;
  const resident = pipeline.residency?.()?.resident;
  return { models, ...(resident ? { resident } : {}) };
}
