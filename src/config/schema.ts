/**
 * The shape of every setting. `config/default.yaml` holds the values (and the one-line docs);
 * this file holds what is allowed. There are deliberately no zod defaults here: the default file
 * is the single place a default lives, and a setting missing from it is a bug the tests catch.
 */
import { z } from 'zod';
import { ASPECT_RATIOS } from '../jobs/aspect.js';
import { LORA_NAME, LORA_WEIGHTS } from '../jobs/loras.js';
import { DEFAULT_MODEL, MODEL_NAME } from '../jobs/models.js';
import { NO_STYLE, STYLE_NAME, STYLE_PLACEHOLDER } from '../jobs/styles.js';
import { MAX_COUNT, MAX_SEED, SAMPLER_NAMES } from '../vocabulary.js';
import {
  byteSize,
  choiceList,
  decimal,
  flag,
  httpUrl,
  idList,
  integer,
  oneOf,
  optionalHttpUrl,
  optionalId,
  optionalText,
  port,
  text,
  textList,
} from './fields.js';

function section<T extends z.core.$ZodLooseShape>(shape: T) {
  return z.strictObject(shape, { error: 'a section of settings (a mapping of keys to values)' });
}

/** `auto` lets Atelier decide from what is configured (e.g. whether a token is set). */
const autoSwitch = z.preprocess(
  (value) => (value === 'true' ? true : value === 'false' ? false : value),
  z.union([z.literal('auto'), z.boolean()], { error: 'auto, true or false' }),
);

function textEncoders() {
  return section({
    clipL: optionalText('a file name under text_encoders/', 'to find it by its usual name'),
    clipG: optionalText('a file name under text_encoders/', 'to find it by its usual name'),
    t5: optionalText('a file name under text_encoders/', 'to find it by its usual name'),
  });
}

const bucket = section({
  enabled: flag(),
  images: integer(1),
  perSeconds: integer(1),
  burst: integer(1),
});

function rangeOf(bounds: ReturnType<typeof integer> | ReturnType<typeof decimal>, defaultPhrase: string) {
  return section({
    default: z.union([z.null(), bounds], { error: `a number in the range below, or null ${defaultPhrase}` }),
    min: bounds,
    max: bounds,
  });
}

export const settingsSchema = z
  .strictObject({
    dataDir: text({ nonEmpty: true }),
    log: section({
      level: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
      prompts: flag(),
    }),
    queue: section({
      concurrency: integer(1, 64),
      maxQueued: integer(1),
      maxQueuedPerUser: integer(1),
      jobTimeoutSeconds: integer(1),
      etaWindow: integer(1, 1000),
      initialMsPerStep: integer(1),
      positionUpdateIntervalMs: integer(0),
      maxAttempts: integer(1, 100),
      redeliverWithinSeconds: integer(0),
    }),
    limits: section({
      user: bucket,
      team: bucket,
      admins: section({
        discord: section({ userIds: idList(), roleIds: idList() }),
        slack: section({ userIds: idList() }),
        playground: section({ userIds: idList() }),
      }),
    }),
    generation: section({
      promptMaxLength: integer(1, 100_000),
      negativePromptMaxLength: integer(0, 100_000),
      blockedTerms: textList(),
      negativePrompt: text(),
      aspect: section({ default: oneOf(ASPECT_RATIOS), allowed: choiceList(ASPECT_RATIOS) }),
      steps: rangeOf(integer(1, 500), "for the model's own default"),
      guidance: rangeOf(decimal(0, 50), "for the model's own default"),
      count: section({
        default: integer(1, MAX_COUNT),
        min: integer(1, MAX_COUNT),
        max: integer(1, MAX_COUNT),
      }),
      seed: section({
        default: z.union([z.null(), integer(0, MAX_SEED)], {
          error: `an integer from 0 to ${MAX_SEED}, or null for a random seed`,
        }),
      }),
      sampler: section({
        default: z.union([z.null(), oneOf(SAMPLER_NAMES)], {
          error: `one of ${SAMPLER_NAMES.join(', ')}, or null for the model's own default`,
        }),
        allowed: choiceList(SAMPLER_NAMES),
      }),
      variation: section({
        strength: decimal(0, 1, { exclusiveMin: true }),
        subtle: decimal(0, 1, { exclusiveMin: true }),
        strong: decimal(0, 1, { exclusiveMin: true }),
      }),
      upscale: section({ strength: decimal(0, 1, { exclusiveMin: true }) }),
    }),
    styles: z.record(
      z.string(),
      z.strictObject(
        { prompt: text({ nonEmpty: true }), negative: text().optional() },
        { error: 'a style: { prompt: "… {prompt} …", negative: "…" } (negative may be left out)' },
      ),
      { error: 'a mapping of style names to { prompt: "… {prompt} …", negative: "…" }' },
    ),
    loras: section({
      dir: optionalText(
        'a folder path',
        "for <models.dir>/loras (ComfyUI's models/loras) when it exists, else <dataDir>/loras",
      ),
      allowed: z.record(
        z.string(),
        z.strictObject(
          {
            file: text({ nonEmpty: true }).optional(),
            weight: decimal(LORA_WEIGHTS.min, LORA_WEIGHTS.max).optional(),
          },
          { error: 'a LoRA: { file: "….safetensors", weight: 0.8 } (each may be left out)' },
        ),
        { error: 'a mapping of LoRA names to { file: "….safetensors", weight: 0.8 }' },
      ),
      cachedCombinations: integer(1, 16),
    }),
    models: section({
      dir: optionalText('a folder path', 'for the bundled demo model'),
      checkpoint: optionalText('a file name under checkpoints/', 'to use the only checkpoint there'),
      textEncoders: textEncoders(),
      list: z.record(
        z.string(),
        z.strictObject(
          {
            dir: optionalText('a folder path', 'for models.dir').optional(),
            checkpoint: optionalText(
              'a file name under checkpoints/',
              'to use the only checkpoint there',
            ).optional(),
            textEncoders: textEncoders().partial().optional(),
            steps: integer(1, 500).optional(),
            guidance: decimal(0, 50).optional(),
            sampler: oneOf(SAMPLER_NAMES).optional(),
          },
          {
            error:
              'a model: { checkpoint: "….safetensors", dir, textEncoders, steps, guidance, sampler } (each may be left out)',
          },
        ),
        { error: 'a mapping of model names to { checkpoint, dir, textEncoders, steps, guidance, sampler }' },
      ),
      default: optionalText('a name from models.list', 'for the first model in models.list'),
      maxResident: z.union([z.null(), integer(1, 64)], {
        error: 'an integer from 1 to 64, or null to keep loaded every model that fits',
      }),
      precision: oneOf(['auto', 'fp8', 'fp8-weights', 'fp16', 'fp32']),
      vaePrecision: oneOf(['fp32', 'fp16']),
      executionProvider: oneOf(['cpu', 'cuda']),
      runtime: oneOf(['auto', 'capi', 'stock']),
      capiShapes: integer(1, 16),
      onnxRuntimeDir: optionalText('a folder path', "for onnxruntime-node's own copy"),
      vaeTiling: oneOf(['auto', 'always', 'never']),
      gpuMemoryLimit: z.union([z.null(), byteSize(2 ** 30)], {
        error: 'a size of at least 1 GiB (e.g. 22GiB, 16 GB), or null for no limit',
      }),
      placement: oneOf(['auto', 'gpu', 'cpu-encoders']),
      promptCacheMB: integer(0, 65536),
      deviceId: integer(0, 63),
      cpuThreads: integer(0, 1024),
      graphCacheDir: optionalText('a folder path', 'for <dataDir>/graphs'),
      hub: section({
        endpoint: httpUrl(),
      }),
    }),
    images: section({
      maxUploadBytes: section({ discord: byteSize(), slack: byteSize() }),
      pngCompressionLevel: integer(0, 9),
      oversizeFormat: oneOf(['jpeg', 'webp']),
      preview: section({
        maxSide: integer(16, 2048),
        format: oneOf(['webp', 'jpeg']),
        quality: integer(1, 100),
      }),
    }),
    progress: section({
      minEditIntervalMs: integer(0),
      previewEverySteps: integer(0),
    }),
    discord: section({
      enabled: autoSwitch,
      apiUrl: optionalHttpUrl('for https://discord.com/api'),
      guildIds: idList(),
      showcaseChannelId: optionalId('for no showcase channel'),
    }),
    slack: section({
      enabled: autoSwitch,
      mode: oneOf(['auto', 'http', 'socket']),
      port: port(),
      apiUrl: optionalHttpUrl('for https://slack.com/api/'),
      showcaseChannelId: optionalId('for no showcase channel'),
      progressEditIntervalMs: integer(0),
      updatesPerMinute: integer(1, 1000),
    }),
    playground: section({
      enabled: autoSwitch,
      host: text({ nonEmpty: true }),
      port: port(),
      showcaseChannelId: optionalId('for no showcase channel'),
      keepMessages: integer(1, 10_000),
      maxFramesPerMinute: integer(10, 100_000),
      maxChatLength: integer(1, 100_000),
    }),
    cluster: section({
      role: oneOf(['serve', 'gateway']),
      prefix: text({ nonEmpty: true }),
      workerTtlSeconds: integer(1, 3600),
      lockSeconds: integer(1, 3600),
      maxResultMB: integer(1, 512),
    }),
  })
  .superRefine((settings, context) => {
    const problem = (path: (string | number)[], input: unknown, message: string) =>
      context.addIssue({ code: 'custom', path, input, message });

    const generation = settings.generation;
    for (const name of ['steps', 'guidance', 'count'] as const) {
      const range = generation[name];
      if (range.min > range.max) {
        problem(['generation', name, 'max'], range.max, `a number ≥ generation.${name}.min (${range.min})`);
      } else if (range.default != null && (range.default < range.min || range.default > range.max)) {
        problem(
          ['generation', name, 'default'],
          range.default,
          `null or a number from ${range.min} to ${range.max} (generation.${name}.min … max)`,
        );
      }
    }
    if (!generation.aspect.allowed.includes(generation.aspect.default)) {
      problem(
        ['generation', 'aspect', 'default'],
        generation.aspect.default,
        `one of generation.aspect.allowed (${generation.aspect.allowed.join(', ')})`,
      );
    }
    const sampler = generation.sampler;
    if (sampler.default !== null && !sampler.allowed.includes(sampler.default)) {
      problem(
        ['generation', 'sampler', 'default'],
        sampler.default,
        `null or one of generation.sampler.allowed (${sampler.allowed.join(', ')})`,
      );
    }
    const variation = generation.variation;
    // (Only between two valid strengths: a strength out of range is reported on its own.)
    const strengths = [variation.subtle, variation.strong];
    if (
      strengths.every((s) => typeof s === 'number' && s > 0 && s <= 1) &&
      variation.subtle >= variation.strong
    ) {
      problem(
        ['generation', 'variation', 'subtle'],
        variation.subtle,
        `a number below generation.variation.strong (${variation.strong}): Vary (Subtle) must change less than Vary (Strong)`,
      );
    }
    const seen = new Map<string, string>();
    for (const [name, style] of Object.entries(settings.styles)) {
      if (!STYLE_NAME.test(name) || name.toLowerCase() === NO_STYLE) {
        problem(
          ['styles', name],
          style,
          `a style name of 1–32 letters, digits, - or _ (starting with a letter or digit, and not "${NO_STYLE}", which means no style)`,
        );
      }
      const other = seen.get(name.toLowerCase());
      if (other !== undefined) {
        problem(['styles', name], style, `a name other than styles.${other} (style names ignore case)`);
      }
      seen.set(name.toLowerCase(), name);
      if (!style.prompt.includes(STYLE_PLACEHOLDER)) {
        problem(
          ['styles', name, 'prompt'],
          style.prompt,
          `a prompt template containing ${STYLE_PLACEHOLDER} (where the user's prompt goes), e.g. "${STYLE_PLACEHOLDER}, cinematic still"`,
        );
      }
    }
    checkModels(settings, problem);
    checkLoras(settings.loras.allowed, problem);
    // A bucket smaller than the largest job would refuse that job forever, never "try later".
    for (const scope of ['user', 'team'] as const) {
      const limit = settings.limits[scope];
      if (limit.enabled && limit.burst < generation.count.max) {
        problem(
          ['limits', scope, 'burst'],
          limit.burst,
          `at least generation.count.max (${generation.count.max}), or a job of ${generation.count.max} images could never start`,
        );
      }
    }
  });

/**
 * `models.list`: names users can type (unique whatever their case; `default` is reserved: it clears
 * a saved choice), per-model defaults within `generation`'s ranges, and `models.default` one of them.
 */
function checkModels(
  settings: {
    generation: {
      steps: { min: number; max: number };
      guidance: { min: number; max: number };
      sampler: { allowed: readonly string[] };
    };
    models: {
      list: Record<string, { steps?: number; guidance?: number; sampler?: string }>;
      default: string | null;
    };
  },
  problem: (path: (string | number)[], input: unknown, message: string) => void,
): void {
  const { list } = settings.models;
  const seen = new Map<string, string>();
  for (const [name, model] of Object.entries(list)) {
    if (!MODEL_NAME.test(name) || name.toLowerCase() === DEFAULT_MODEL) {
      problem(
        ['models', 'list', name],
        model,
        `a model name of 1–32 letters, digits, ., - or _ (starting with a letter or digit, and not "${DEFAULT_MODEL}", which means no model of one's own)`,
      );
    }
    const other = seen.get(name.toLowerCase());
    if (other !== undefined) {
      problem(
        ['models', 'list', name],
        model,
        `a name other than models.list.${other} (model names ignore case)`,
      );
    }
    seen.set(name.toLowerCase(), name);
    for (const field of ['steps', 'guidance'] as const) {
      const value = model[field];
      const range = settings.generation[field];
      if (value !== undefined && (value < range.min || value > range.max)) {
        problem(
          ['models', 'list', name, field],
          value,
          `a number from ${range.min} to ${range.max} (generation.${field}.min … max), or leave it out for the model's own default`,
        );
      }
    }
    const allowed = settings.generation.sampler.allowed;
    if (model.sampler !== undefined && !allowed.includes(model.sampler)) {
      problem(
        ['models', 'list', name, 'sampler'],
        model.sampler,
        `one of generation.sampler.allowed (${allowed.join(', ')}), or leave it out for the model's own default`,
      );
    }
  }
  const wanted = settings.models.default;
  if (wanted !== null && !seen.has(wanted.trim().toLowerCase())) {
    const names = [...seen.values()];
    problem(
      ['models', 'default'],
      wanted,
      names.length
        ? `one of the names in models.list (${names.join(', ')}), or null for the first of them`
        : 'null: models.list is empty, so the one model of models.dir / models.checkpoint is the default',
    );
  }
}

/** Settings as validated, before paths are resolved against the working directory. */
export type AtelierSettings = z.output<typeof settingsSchema>;

/**
 * `loras.allowed`: names users can type (unique whatever their case), and safetensors files (the
 * only format Atelier reads LoRAs from; a `.ckpt`/`.pt` pickle could run code when loaded elsewhere).
 */
function checkLoras(
  allowed: Record<string, { file?: string }>,
  problem: (path: (string | number)[], input: unknown, message: string) => void,
): void {
  const seen = new Map<string, string>();
  for (const [name, lora] of Object.entries(allowed)) {
    if (!LORA_NAME.test(name)) {
      problem(
        ['loras', 'allowed', name],
        lora,
        'a LoRA name of 1–32 letters, digits, ., - or _ (starting with a letter or digit)',
      );
    }
    const other = seen.get(name.toLowerCase());
    if (other !== undefined) {
      problem(
        ['loras', 'allowed', name],
        lora,
        `a name other than loras.allowed.${other} (LoRA names ignore case)`,
      );
    }
    seen.set(name.toLowerCase(), name);
    if (lora.file !== undefined && !/\.safetensors$/i.test(lora.file.trim())) {
      problem(
        ['loras', 'allowed', name, 'file'],
        lora.file,
        'a .safetensors file in loras.dir (Atelier reads LoRAs from safetensors only), or leave it out for <name>.safetensors',
      );
    }
  }
}
