/**
 * The composition root of the core: config → logger, SQLite store, SD3.5 pipeline (in its own
 * process), job executor and fair scheduler. Chat adapters are wired on top of this by
 * adapters/serve.ts; `atelier imagine` and `atelier doctor` use it directly. Nothing here knows a
 * chat platform.
 */
import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import pino from 'pino';
import type { AtelierConfig } from './config/index.js';
import { JobExecutor } from './jobs/executor.js';
import { type ValidationOptions, validationOptionsFromConfig } from './jobs/validate.js';
import { createLogger, type Logger } from './log.js';
import { ProcessPipeline } from './pipeline/process/process-pipeline.js';
import { type EngineOptions, sd35ProcessSpec } from './pipeline/sd35/index.js';
import { ensureTinyModel } from './pipeline/tiny/index.js';
import type { Pipeline } from './pipeline/types.js';
import { type AdminList, type RecoveryReport, Scheduler, type SchedulerOptions } from './scheduler/index.js';
import { openStore, type Store } from './store/index.js';

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

/** Engine options from `models.*`; no models folder means the bundled tiny model. */
export async function engineOptions(config: AtelierConfig): Promise<EngineOptions> {
  const m = config.models;
  let modelsDir = m.dir;
  let checkpoint = m.checkpoint ?? undefined;
  if (!modelsDir) {
    const tiny = await ensureTinyModel(config.dataDir);
    modelsDir = tiny.modelsDir;
    checkpoint = tiny.checkpoint;
  }
  return {
    modelsDir,
    checkpoint,
    textEncoders: m.textEncoders,
    dataDir: config.dataDir,
    graphCacheDir: m.graphCacheDir ?? undefined,
    precision: m.precision === 'auto' ? undefined : m.precision,
    vaeCompute: m.vaePrecision === 'fp16' ? 'float16' : 'float32',
    provider: m.executionProvider,
    runtime: m.runtime,
    capiShapes: m.capiShapes,
    onnxRuntimeDir: m.onnxRuntimeDir ?? undefined,
    maxSteps: config.generation.steps.max,
    deviceId: m.deviceId,
    // On the CPU, leave one core to the bot's own process: with every core busy in ONNX Runtime,
    // chat answers (Slack's and Discord's 3-second windows) wait measurably.
    threads:
      m.cpuThreads || (m.executionProvider === 'cpu' ? Math.max(1, availableParallelism() - 1) : undefined),
  };
}

export function schedulerOptions(
  config: AtelierConfig,
  runners: JobExecutor[],
  logger: Logger,
): SchedulerOptions {
  const bucket = (rule: AtelierConfig['limits']['user']) =>
    rule.enabled
      ? { images: rule.images, perMs: rule.perSeconds * 1000, burst: rule.burst }
      : (false as const);
  const a = config.limits.admins;
  // The scheduler knows admins as `platform:id`, so one id never counts on another platform.
  const admins: AdminList = {
    userIds: [
      ...a.discord.userIds.map((id) => `discord:${id}`),
      ...a.slack.userIds.map((id) => `slack:${id}`),
      ...a.playground.userIds.map((id) => `playground:${id}`),
    ],
    roleIds: a.discord.roleIds.map((id) => `discord:${id}`),
  };
  return {
    runners,
    userBucket: bucket(config.limits.user),
    teamBucket: bucket(config.limits.team),
    maxQueuedPerUser: config.queue.maxQueuedPerUser,
    maxQueueSize: config.queue.maxQueued,
    admins,
    jobTimeoutMs: config.queue.jobTimeoutSeconds * 1000,
    etaWindow: config.queue.etaWindow,
    initialMsPerStep: config.queue.initialMsPerStep,
    positionUpdateIntervalMs: config.queue.positionUpdateIntervalMs,
    maxAttempts: config.queue.maxAttempts,
    redeliverWithinMs: config.queue.redeliverWithinSeconds * 1000,
    logger,
    logPrompts: config.log.prompts,
  };
}
