/**
 * How the config maps onto the parts the roles compose: `models.*` onto the SD3.5 engine's options,
 * `queue.*` and `limits.*` onto the scheduler's, `generation.*` onto chat validation's. None of
 * those parts knows the config file.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { AtelierConfig, AtelierSettings } from '../config/index.js';
import { findByName } from '../edit-distance.js';
import type { ModelChoice } from '../jobs/models.js';
import {
  type ModelDefaults,
  type NumberRange,
  REFERENCE_MODEL_DEFAULTS,
  type ValidationOptions,
} from '../jobs/validate.js';
import type { Logger } from '../log.js';
import type { EngineOptions, ModelSpec, MultiEngineOptions } from '../pipeline/sd35/index.js';
import type { ModelInfo } from '../pipeline/types.js';
import type { AdminList, JobRunner, RunnerPool, SchedulerOptions } from '../scheduler/index.js';
import { loraChoicesFromConfig, lorasDir } from './loras.js';

/**
 * Engine options of the default model from `models.*` (`atelier doctor` describes it); no models
 * folder means the bundled demo model.
 */
export async function engineOptions(config: AtelierConfig): Promise<EngineOptions> {
  const [first] = await modelSpecs(config);
  const { name: _name, ...where } = first!;
  return { ...where, ...sharedEngineOptions(config) };
}

/**
 * The pipeline's options from `models.*`: every configured model (`models.list`, the default
 * first; or the one model of `models.dir` / `models.checkpoint`) and what they share.
 */
export async function pipelineOptions(config: AtelierConfig): Promise<MultiEngineOptions> {
  const m = config.models;
  return {
    engine: sharedEngineOptions(config),
    models: await modelSpecs(config),
    ...(m.maxResident !== null ? { maxResident: m.maxResident } : {}),
  };
}

/**
 * The bundled demo model (tools/train-demo, issue 13): a tiny SD3.5 trained on drawn shapes, in the
 * ComfyUI layout, found by the ordinary discovery. Its checkpoint says its own steps, guidance,
 * sampler and size (`atelier.sampling`).
 */
export const BUNDLED_MODEL_DIR = fileURLToPath(new URL('../../models/demo', import.meta.url));

/** The configured models in order, the default (`models.default`, else the first) first. */
async function modelSpecs(config: AtelierConfig): Promise<ModelSpec[]> {
  const m = config.models;
  // No folder anywhere: the bundled demo model.
  const where = (dir: string | null | undefined, checkpoint: string | null | undefined) => ({
    modelsDir: dir ?? m.dir ?? BUNDLED_MODEL_DIR,
    ...(checkpoint ? { checkpoint } : {}),
  });
  const entries = Object.entries(m.list);
  if (entries.length === 0) {
    return [{ ...where(m.dir, m.checkpoint), textEncoders: m.textEncoders }];
  }
  const chosen = m.default ? findByName(entries, m.default, ([name]) => name) : undefined;
  const first = chosen ? entries.indexOf(chosen) : -1;
  if (first > 0) entries.unshift(...entries.splice(first, 1));
  const specs: ModelSpec[] = [];
  for (const [name, entry] of entries) {
    specs.push({
      name,
      ...where(entry.dir, entry.checkpoint),
      textEncoders: { ...m.textEncoders, ...entry.textEncoders },
    });
  }
  return specs;
}

/** What every model's engine shares: precision, provider, memory, runtime… */
function sharedEngineOptions(
  config: AtelierConfig,
): Omit<EngineOptions, 'modelsDir' | 'checkpoint' | 'textEncoders'> {
  const m = config.models;
  return {
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
    // Only with LoRAs allowed: the memory plan counts a full MMDiT per cached combination.
    ...(Object.keys(config.loras.allowed ?? {}).length > 0
      ? { loras: { dir: lorasDir(config), cachedCombinations: config.loras.cachedCombinations } }
      : {}),
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
  settings: Pick<AtelierSettings, 'generation'> &
    Partial<Pick<AtelierSettings, 'styles' | 'loras'>> & { models?: Pick<AtelierSettings['models'], 'list'> },
  modelDefaults: ModelDefaults = REFERENCE_MODEL_DEFAULTS,
  catalog?: ModelCatalog,
): ValidationOptions {
  const generation = settings.generation;
  // The count is not capped by GPU memory: images that do not fit together run in passes (engine).
  const ranges = {
    steps: { min: generation.steps.min, max: generation.steps.max },
    guidance: { min: generation.guidance.min, max: generation.guidance.max },
    count: { min: generation.count.min, max: generation.count.max },
  };
  const samplers = generation.sampler.allowed;
  const modelSampler = samplers.includes(modelDefaults.sampler) ? modelDefaults.sampler : samplers[0]!;
  // Each model's own defaults: its entry in models.list, else generation.*, else its family's.
  const models: ModelChoice[] | undefined = catalog?.models.map((model) => {
    const own = settings.models?.list?.[model.name];
    const sampler = samplers.includes(model.defaults.sampler) ? model.defaults.sampler : samplers[0]!;
    return {
      name: model.name,
      label: model.label,
      ...(model.hash ? { hash: model.hash } : {}),
      resolution: model.defaults.resolution,
      defaults: {
        steps: own?.steps ?? generation.steps.default ?? clamp(model.defaults.steps, ranges.steps),
        guidance:
          own?.guidance ?? generation.guidance.default ?? clamp(model.defaults.guidance, ranges.guidance),
        sampler: own?.sampler ?? generation.sampler.default ?? sampler,
      },
    };
  });
  const first = models?.[0];
  return {
    ...(models && first
      ? { models, defaultModel: first.name, draftModel: fastestModel(catalog!, models) }
      : {}),
    resolution: modelDefaults.resolution,
    promptMaxLength: generation.promptMaxLength,
    negativePromptMaxLength: generation.negativePromptMaxLength,
    blockedTerms: generation.blockedTerms,
    styles: Object.fromEntries(
      Object.entries(settings.styles ?? {}).map(([name, style]) => [
        name,
        { prompt: style.prompt, negative: style.negative ?? '' },
      ]),
    ),
    ...(settings.loras ? { loras: loraChoicesFromConfig(settings.loras.allowed) } : {}),
    aspects: generation.aspect.allowed,
    samplers,
    ranges,
    defaults: {
      negativePrompt: generation.negativePrompt,
      aspect: generation.aspect.default,
      steps: first?.defaults.steps ?? generation.steps.default ?? clamp(modelDefaults.steps, ranges.steps),
      guidance:
        first?.defaults.guidance ??
        generation.guidance.default ??
        clamp(modelDefaults.guidance, ranges.guidance),
      count: Math.min(generation.count.default, ranges.count.max),
      sampler: first?.defaults.sampler ?? generation.sampler.default ?? modelSampler,
      seed: generation.seed.default,
      variationStrength: generation.variation.strength,
      upscaleStrength: generation.upscale.strength,
    },
  };
}

/** The models a pipeline serves (its info().models) and which are loaded now (its residency()). */
export interface ModelCatalog {
  models: readonly ModelInfo[];
  /** Loaded now; undefined: unknown (every model counts as loaded). */
  resident?: readonly string[];
}

/**
 * The model `--fast` / `mode: draft` picks: of the loaded ones, the one whose default job costs
 * least — its default steps × its denoiser's parameters, twice that with CFG (guidance > 1 runs
 * the batch twice). Ties go to the earlier model in the list.
 */
export function fastestModel(catalog: ModelCatalog, models: readonly ModelChoice[]): string | undefined {
  const loaded = new Set(catalog.resident ?? catalog.models.map((m) => m.name));
  let best: { name: string; cost: number } | undefined;
  for (const choice of models) {
    const info = catalog.models.find((m) => m.name === choice.name);
    if (!info || !loaded.has(info.name)) continue;
    const { steps, guidance } = choice.defaults;
    const cost = steps * (guidance > 1 ? 2 : 1) * Math.max(1, info.parameters);
    if (!best || cost < best.cost) best = { name: choice.name, cost };
  }
  return best?.name ?? models[0]?.name;
}
