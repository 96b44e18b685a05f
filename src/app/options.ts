/**
 * How the config maps onto the parts the roles compose: `models.*` onto the SD3.5 engine's options,
 * `queue.*` and `limits.*` onto the scheduler's, `generation.*` onto chat validation's. None of
 * those parts knows the config file.
 */
import { availableParallelism } from 'node:os';
import type { AtelierConfig, AtelierSettings } from '../config/index.js';
import {
  type ModelDefaults,
  type NumberRange,
  REFERENCE_MODEL_DEFAULTS,
  type ValidationOptions,
} from '../jobs/validate.js';
import type { Logger } from '../log.js';
import type { EngineOptions } from '../pipeline/sd35/index.js';
import { ensureTinyModel } from '../pipeline/tiny/index.js';
import type { MemoryInfo } from '../pipeline/types.js';
import type { AdminList, JobRunner, RunnerPool, SchedulerOptions } from '../scheduler/index.js';

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
    vaeTiling: m.vaeTiling,
    gpuMemoryLimit: m.gpuMemoryLimit ?? undefined,
    placement: m.placement,
    promptCacheBytes: m.promptCacheMB * 1024 * 1024,
    maxSteps: config.generation.steps.max,
    deviceId: m.deviceId,
    // On the CPU, leave one core to the bot's own process: with every core busy in ONNX Runtime,
    // chat answers (Slack's and Discord's 3-second windows) wait measurably.
    threads:
      m.cpuThreads || (m.executionProvider === 'cpu' ? Math.max(1, availableParallelism() - 1) : undefined),
  };
}

/** Scheduler options from `queue.*`, `limits.*` and `log.prompts`, for `runners` (one per pipeline, or the gateway's pool). */
export function schedulerOptions(
  config: AtelierConfig,
  runners: readonly JobRunner[] | RunnerPool,
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

const clamp = (value: number, range: NumberRange) => Math.min(range.max, Math.max(range.min, value));

/**
 * Validation options from the config's `generation` section. `modelDefaults` is the pipeline's
 * `info().defaults` (e.g. 4 steps and guidance 1 for Large Turbo), used where the config says null;
 * it is clamped into the operator's ranges.
 */
export function validationOptionsFromConfig(
  settings: Pick<AtelierSettings, 'generation'> & Partial<Pick<AtelierSettings, 'styles'>>,
  modelDefaults: ModelDefaults = REFERENCE_MODEL_DEFAULTS,
  memory?: Pick<MemoryInfo, 'maxImages'>,
): ValidationOptions {
  const generation = settings.generation;
  // The GPU memory may hold fewer images per job than the config allows (pipeline info().memory).
  const memoryMax =
    memory?.maxImages !== undefined && memory.maxImages >= 1 && memory.maxImages < generation.count.max
      ? Math.max(generation.count.min, memory.maxImages)
      : undefined;
  const ranges = {
    steps: { min: generation.steps.min, max: generation.steps.max },
    guidance: { min: generation.guidance.min, max: generation.guidance.max },
    count: { min: generation.count.min, max: memoryMax ?? generation.count.max },
  };
  const samplers = generation.sampler.allowed;
  const modelSampler = samplers.includes(modelDefaults.sampler) ? modelDefaults.sampler : samplers[0]!;
  return {
    resolution: modelDefaults.resolution,
    ...(memoryMax !== undefined
      ? { countNote: `More images per job would not fit in this server's GPU memory.` }
      : {}),
    promptMaxLength: generation.promptMaxLength,
    negativePromptMaxLength: generation.negativePromptMaxLength,
    blockedTerms: generation.blockedTerms,
    styles: Object.fromEntries(
      Object.entries(settings.styles ?? {}).map(([name, style]) => [
        name,
        { prompt: style.prompt, negative: style.negative ?? '' },
      ]),
    ),
    aspects: generation.aspect.allowed,
    samplers,
    ranges,
    defaults: {
      negativePrompt: generation.negativePrompt,
      aspect: generation.aspect.default,
      steps: generation.steps.default ?? clamp(modelDefaults.steps, ranges.steps),
      guidance: generation.guidance.default ?? clamp(modelDefaults.guidance, ranges.guidance),
      count: Math.min(generation.count.default, ranges.count.max),
      sampler: generation.sampler.default ?? modelSampler,
      seed: generation.seed.default,
      variationStrength: generation.variation.strength,
      upscaleStrength: generation.upscale.strength,
    },
  };
}
