/**
 * The core every role is made of: config → logger, SQLite store, the SD3.5 pipelines (one process
 * per GPU), a job executor per pipeline and the fair scheduler. The `serve` role (./serve.ts) puts
 * the chat surfaces on top; `atelier imagine` uses it directly. Nothing here knows a chat platform.
 */
import { mkdirSync } from 'node:fs';
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
import { engineOptions, schedulerOptions, validationOptionsFromConfig } from './options.js';

export interface AtelierApp {
  config: AtelierConfig;
  logger: Logger;
  store: Store;
  scheduler: Scheduler;
  /** The first pipeline (all run the same model). */
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

export async function createApp(config: AtelierConfig, options: CreateAppOptions = {}): Promise<AtelierApp> {
  const logger =
    options.logger ??
    // Logs go to stderr: stdout carries the one line per surface that says where the bot is.
    createLogger({
      level: config.log.level,
      secrets: Object.values(config.secrets).filter(Boolean),
      destination: pino.destination(2),
    });
  mkdirSync(config.dataDir, { recursive: true });
  const store = openStore({ dataDir: config.dataDir });
  // One pipeline per GPU (queue.concurrency): each in its own process, on its own device.
  const engine = options.pipeline ? undefined : await engineOptions(config);
  const pipelines: Pipeline[] = options.pipeline
    ? [options.pipeline]
    : Array.from(
        { length: config.queue.concurrency },
        (_, i) =>
          new ProcessPipeline({
            spec: sd35ProcessSpec({ ...engine!, deviceId: (engine!.deviceId ?? 0) + i }),
            // On the CPU the model competes with the bot for cores: chat answers come first.
            niceness: engine!.provider === 'cpu' ? 19 : 0,
          }),
      );
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
      },
      'model loaded',
    );
  };
  const resume = () => scheduler.start();

  return {
    config,
    logger,
    store,
    scheduler,
    pipeline,
    validation: () => validationOptionsFromConfig(config, pipeline.info().defaults),
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
