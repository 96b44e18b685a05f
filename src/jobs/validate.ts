/**
 * Turns what a chat user typed into `JobParams`, or refuses with a `ValidationError` whose message
 * says what was wrong and what is allowed, in words a chat user understands.
 *
 * Precedence for each field: the option the user gave now › the user's saved defaults (/settings)
 * › the operator's defaults (config `generation.*`, or the model's own defaults where the config
 * says null). With several models (config `models.list`) the model is chosen first (see
 * `pickModel`); steps, guidance and sampler then default to that model's own, and a model picked
 * in the command itself (`model:`, `mode: draft`) does not take the user's saved ones.
 */
import { randomInt } from 'node:crypto';
import { closestName } from '../edit-distance.js';
import { ValidationError } from '../errors.js';
import { MAX_SEED, parseSampler, type SamplerName } from '../vocabulary.js';
import { type AspectRatio, parseAspect, sizeForAspect } from './aspect.js';
import { type LoraChoice, readLoras } from './loras.js';
import { DEFAULT_MODEL, DRAFT_MODE, findModel, jobModelOf, type ModelChoice } from './models.js';
import { findStyle, NO_STYLE, type StyleTemplate } from './styles.js';
import { isImg2img, type JobKind, type JobParams, type JobStyle } from './types.js';

/** What a chat command hands over: strings from text commands, numbers from typed slash options. */
export type RawValue = string | number | boolean | null | undefined;

export interface RawJobOptions {
  prompt?: RawValue;
  negativePrompt?: RawValue;
  aspect?: RawValue;
  steps?: RawValue;
  guidance?: RawValue;
  count?: RawValue;
  /** Empty, `random` or -1 (the A1111 convention) ask for a random seed. */
  seed?: RawValue;
  sampler?: RawValue;
  /** img2img strength, only read for variations and upscales. */
  strength?: RawValue;
  /** A configured style's name, or `none`. */
  style?: RawValue;
  /** A configured model's name (config `models.list`). */
  model?: RawValue;
  /** `draft` (typed: `--fast`): the fastest loaded model, with its own defaults. */
  mode?: RawValue;
  /** LoRAs: `name[:weight]` entries separated by commas or spaces (jobs/loras.ts). */
  loras?: RawValue;
}

/** A user's saved defaults (/settings). Values no longer allowed by the config are ignored. */
export interface UserDefaults {
  aspect?: string;
  steps?: number;
  guidance?: number;
  count?: number;
  sampler?: string;
  negativePrompt?: string;
  /** A configured style's name (`none` is never saved: it clears the default). */
  style?: string;
  /** A configured model's name (`default` is never saved: it clears the default). */
  model?: string;
}

export interface NumberRange {
  min: number;
  max: number;
}

export interface ValidationOptions {
  /** Longest prompt in characters (Unicode code points). @default 2000 */
  promptMaxLength: number;
  /** @default 2000 */
  negativePromptMaxLength: number;
  /** Refused words or phrases: whole words, case-insensitive. Never shown to users. */
  blockedTerms: readonly string[];
  aspects: readonly AspectRatio[];
  samplers: readonly SamplerName[];
  ranges: { steps: NumberRange; guidance: NumberRange; count: NumberRange };
  defaults: {
    negativePrompt: string;
    aspect: AspectRatio;
    steps: number;
    guidance: number;
    count: number;
    sampler: SamplerName;
    /** null: a random seed for every job. */
    seed: number | null;
    variationStrength: number;
    upscaleStrength: number;
  };
  /** Named prompt presets (config `styles`) by name. @default none */
  styles?: Readonly<Record<string, StyleTemplate>>;
  /** Where random seeds come from (0 … MAX_SEED). @default crypto.randomInt */
  randomSeed?: () => number;
  /** Side of the model's 1:1 size; aspect sizes scale with it. @default 1024 (SD3.5) */
  resolution?: number;
  /**
   * The configured models (config `models.list`, or the one model), each with its own defaults,
   * which then replace `defaults.steps`, `guidance` and `sampler`. @default none: jobs name no model
   */
  models?: readonly ModelChoice[];
  /** The model jobs run on when nobody picks one. @default the first of `models` */
  defaultModel?: string;
  /** The model `mode: draft` (`--fast`) picks: the fastest loaded one. @default the default model */
  draftModel?: string;
  /** The LoRAs users may apply (config `loras.allowed`), each with its default weight. @default none */
  loras?: readonly LoraChoice[];
}

export interface ValidationContext {
  /** @default 'txt2img' */
  kind?: JobKind;
  userDefaults?: UserDefaults;
  /** The server's or workspace's defaults (`/atelier model`), below the user's own. */
  teamDefaults?: { model?: string };
}

const SHOWN_VALUE_LENGTH = 40;

/** The user's own input, quoted and cut short, so a message never turns into a wall of text. */
function shown(value: RawValue): string {
  const text = String(value).trim();
  const cut =
    [...text].length > SHOWN_VALUE_LENGTH ? `${[...text].slice(0, SHOWN_VALUE_LENGTH).join('')}…` : text;
  return `“${cut}”`;
}

function isGiven(value: RawValue): value is string | number | boolean {
  return value !== undefined && value !== null && !(typeof value === 'string' && value.trim() === '');
}

const formatCount = (value: number) => value.toLocaleString('en-US');
const characters = (value: number) => `${formatCount(value)} character${value === 1 ? '' : 's'}`;

/** Reads a number from a slash option or from text ("4.5", "4,5", "+3"); NaN when it is not one. */
function readNumber(value: string | number | boolean): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return Number.NaN;
  const text = value.trim().replace(/^([+-]?\d*),(\d+)$/, '$1.$2');
  return /^[+-]?(\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : Number.NaN;
}

/** A number within `range`; `whole` asks for an integer. The message says which and the bounds. */
function readInRange(
  field: string,
  label: string,
  value: string | number | boolean,
  range: NumberRange,
  whole: boolean,
): number {
  const number = readNumber(value);
  const ok = whole ? Number.isInteger(number) : Number.isFinite(number);
  if (!ok || number < range.min || number > range.max) {
    throw new ValidationError(
      field,
      `${label} must be a ${whole ? 'whole number' : 'number'} from ${range.min} to ${range.max}, not ${shown(value)}.`,
    );
  }
  return number;
}

const readInteger = (field: string, label: string, value: string | number | boolean, range: NumberRange) =>
  readInRange(field, label, value, range, true);
const readDecimal = (field: string, label: string, value: string | number | boolean, range: NumberRange) =>
  readInRange(field, label, value, range, false);

/** Line endings unified, invisible control characters dropped, composed Unicode (stable lengths). */
function cleanText(value: string): string {
  return value
    .replace(/\r\n?/g, '\n')
    .replace(/[\u0000-\u0008\u000B-\u001F\u007F]/g, '')
    .normalize('NFC')
    .trim();
}

function readPrompt(raw: RawValue, maxLength: number): string {
  const prompt = typeof raw === 'string' ? cleanText(raw) : typeof raw === 'number' ? String(raw) : '';
  if (prompt === '') {
    throw new ValidationError('prompt', 'Please describe the image you want: the prompt is empty.');
  }
  const length = [...prompt].length;
  if (length > maxLength) {
    throw new ValidationError(
      'prompt',
      `Your prompt is ${formatCount(length)} characters long; the limit is ${formatCount(maxLength)}. ` +
        `Please shorten it by ${characters(length - maxLength)}.`,
    );
  }
  return prompt;
}

function readNegativePrompt(raw: RawValue, fallback: string, maxLength: number): string {
  const negative = isGiven(raw) ? cleanText(String(raw)) : fallback;
  const length = [...negative].length;
  if (length > maxLength) {
    throw new ValidationError(
      'negativePrompt',
      `Your negative prompt is ${formatCount(length)} characters long; the limit is ${formatCount(maxLength)}. ` +
        `Please shorten it by ${characters(length - maxLength)}.`,
    );
  }
  return negative;
}

const blockedPatterns = new WeakMap<readonly string[], RegExp | null>();

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * One regex for the whole list, compiled once per list. "Whole word" uses Unicode letters and
 * digits as word characters (JavaScript's \b is ASCII-only, so "café" would otherwise split), and
 * both sides are NFKC-folded so full-width or ligature look-alikes match too.
 */
function blockedPattern(terms: readonly string[]): RegExp | null {
  const cached = blockedPatterns.get(terms);
  if (cached !== undefined) return cached;
  const alternatives = terms
    .map((term) => term.normalize('NFKC').trim())
    .filter((term) => term.length > 0)
    .map((term) => term.split(/\s+/).map(escapeRegExp).join('\\s+'));
  const pattern =
    alternatives.length === 0
      ? null
      : new RegExp(`(?<![\\p{L}\\p{N}_])(?:${alternatives.join('|')})(?![\\p{L}\\p{N}_])`, 'iu');
  blockedPatterns.set(terms, pattern);
  return pattern;
}

/** True when the text contains a blocked term as a whole word (case-insensitive). */
export function containsBlockedTerm(text: string, terms: readonly string[]): boolean {
  const pattern = blockedPattern(terms);
  return pattern?.test(text.normalize('NFKC')) ?? false;
}

function readAspect(raw: string | number | boolean, allowed: readonly AspectRatio[]): AspectRatio {
  const aspect = parseAspect(String(raw));
  if (aspect === undefined || !allowed.includes(aspect)) {
    throw new ValidationError(
      'aspect',
      `${shown(raw)} isn't an available aspect ratio. Choose one of: ${allowed.join(', ')}.`,
    );
  }
  return aspect;
}

function readSampler(raw: string | number | boolean, allowed: readonly SamplerName[]): SamplerName {
  const sampler = parseSampler(String(raw));
  if (sampler === undefined || !allowed.includes(sampler)) {
    throw new ValidationError(
      'sampler',
      `${shown(raw)} isn't an available sampler. Choose one of: ${allowed.join(', ')}.`,
    );
  }
  return sampler;
}

/** Style names a refusal lists at most (a long list is cut: the autocomplete offers them all). */
const SHOWN_STYLES = 25;

/** A style name this config knows, or a did-you-mean naming the allowed ones; `none` is no style. */
function readStyle(
  raw: string | number | boolean,
  styles: Readonly<Record<string, StyleTemplate>>,
): JobStyle | undefined {
  const name = String(raw).trim();
  if (name.toLowerCase() === NO_STYLE) return undefined;
  const found = findStyle(styles, name);
  if (found) return { name: found.name, prompt: found.template.prompt, negative: found.template.negative };
  const names = Object.keys(styles);
  if (names.length === 0) {
    throw new ValidationError('style', `There are no styles on this bot, so ${shown(raw)} can't be used.`);
  }
  const guess = closestName(name.toLowerCase(), names);
  const listed = [...names, NO_STYLE];
  const list =
    listed.length <= SHOWN_STYLES
      ? listed.join(', ')
      : `${listed.slice(0, SHOWN_STYLES).join(', ')} … (${listed.length} in all)`;
  throw new ValidationError(
    'style',
    `${shown(raw)} isn't a style here.${guess ? ` Did you mean ${guess}?` : ''} Choose one of: ${list}.`,
  );
}

/** A configured model's name, or a did-you-mean naming the configured ones. */
function readModel(raw: string | number | boolean, models: readonly ModelChoice[]): ModelChoice {
  const name = String(raw).trim();
  const found = findModel(models, name);
  if (found) return found;
  const names = models.map((m) => m.name);
  if (names.length === 0) {
    throw new ValidationError(
      'model',
      `There is only one model on this bot, so ${shown(raw)} can't be picked.`,
    );
  }
  const guess = closestName(name.toLowerCase(), names);
  throw new ValidationError(
    'model',
    `${shown(raw)} isn't a model here.${guess ? ` Did you mean ${guess}?` : ''} Choose one of: ${names.join(', ')}.`,
  );
}

/** `draft` (and `fast`, the typed flag's word): the fastest loaded model. */
function readMode(raw: string | number | boolean): typeof DRAFT_MODE {
  const mode = String(raw).trim().toLowerCase();
  if (mode === DRAFT_MODE || mode === 'fast') return DRAFT_MODE;
  throw new ValidationError(
    'mode',
    `Mode must be ${DRAFT_MODE} (the fastest loaded model), not ${shown(raw)}.`,
  );
}

/**
 * The model a new job runs on: the one named now › `mode: draft` (the fastest loaded) › the user's
 * saved default › the server's › the bot's default. `explicit`: picked in this command, so the
 * user's saved steps, guidance and sampler (meant for their usual model) give way to the model's.
 */
function pickModel(
  raw: RawJobOptions,
  saved: UserDefaults,
  team: { model?: string },
  options: ValidationOptions,
): { model?: ModelChoice; explicit: boolean } {
  const models = options.models ?? [];
  if (isGiven(raw.model)) return { model: readModel(raw.model, models), explicit: true };
  const fallback = findModel(models, options.defaultModel ?? '') ?? models[0];
  if (isGiven(raw.mode) && readMode(raw.mode) === DRAFT_MODE) {
    return { model: findModel(models, options.draftModel ?? '') ?? fallback, explicit: true };
  }
  for (const name of [saved.model, team.model]) {
    // A saved default the operator has since removed is skipped, not blamed on the user.
    const found = name ? findModel(models, name) : undefined;
    if (found) return { model: found, explicit: false };
  }
  return { model: fallback, explicit: false };
}

function readSeed(raw: RawValue, fallback: number | null, randomSeed: () => number): number {
  if (!isGiven(raw) || (typeof raw === 'string' && raw.trim().toLowerCase() === 'random')) {
    return fallback ?? randomSeed();
  }
  const number = readNumber(raw);
  if (number === -1) return randomSeed();
  if (!Number.isInteger(number) || number < 0 || number > MAX_SEED) {
    throw new ValidationError(
      'seed',
      `Seed must be a whole number from 0 to ${MAX_SEED} (or leave it empty for a random one), not ${shown(raw)}.`,
    );
  }
  return number;
}

/**
 * The value the user gave now, else their saved default, else the operator's. A saved default the
 * current config no longer allows (the operator narrowed a range) is skipped, not blamed on the user.
 */
function choose<T>(
  given: RawValue,
  saved: RawValue,
  fallback: T,
  read: (value: string | number | boolean) => T,
): T {
  if (isGiven(given)) return read(given);
  if (isGiven(saved)) {
    try {
      return read(saved);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
    }
  }
  return fallback;
}

const defaultRandomSeed = () => randomInt(0, MAX_SEED + 1);

export function validateJobParams(
  raw: RawJobOptions,
  options: ValidationOptions,
  context: ValidationContext = {},
): JobParams {
  const kind = context.kind ?? 'txt2img';
  const saved = context.userDefaults ?? {};
  const { ranges, defaults } = options;

  const prompt = validatePrompt(raw.prompt, options);
  const negativeFallback =
    saved.negativePrompt !== undefined ? cleanText(saved.negativePrompt) : defaults.negativePrompt;
  const negativePrompt = readNegativePrompt(
    raw.negativePrompt,
    negativeFallback,
    options.negativePromptMaxLength,
  );

  const aspect = choose(raw.aspect, saved.aspect, defaults.aspect, (value) =>
    readAspect(value, options.aspects),
  );
  const picked = pickModel(raw, saved, context.teamDefaults ?? {}, options);
  const modelDefaults = picked.model?.defaults ?? defaults;
  // A model picked in this command runs with its own defaults, not those the user saved.
  const own = picked.explicit ? {} : saved;
  const steps = choose(raw.steps, own.steps, modelDefaults.steps, (value) =>
    readInteger('steps', 'Steps', value, ranges.steps),
  );
  const guidance = choose(raw.guidance, own.guidance, modelDefaults.guidance, (value) =>
    readDecimal('guidance', 'Guidance', value, ranges.guidance),
  );
  const count = choose(raw.count, saved.count, defaults.count, (value) =>
    readInteger('count', 'Count', value, ranges.count),
  );
  const sampler = choose(raw.sampler, own.sampler, modelDefaults.sampler, (value) =>
    readSampler(value, options.samplers),
  );
  const seed = readSeed(raw.seed, defaults.seed, options.randomSeed ?? defaultRandomSeed);
  const style = choose<JobStyle | undefined>(raw.style, saved.style, undefined, (value) =>
    readStyle(value, options.styles ?? {}),
  );

  const params: JobParams = {
    prompt,
    negativePrompt,
    aspect,
    ...sizeForAspect(aspect, picked.model?.resolution ?? options.resolution),
    seed,
    steps,
    guidance,
    count,
    sampler,
    ...(style ? { style } : {}),
    ...(picked.model ? { model: jobModelOf(picked.model) } : {}),
  };
  const loras = isGiven(raw.loras) ? readLoras(String(raw.loras), options.loras ?? []) : [];
  if (loras.length > 0) params.loras = loras;
  if (isImg2img(kind)) {
    const fallback = kind === 'variation' ? defaults.variationStrength : defaults.upscaleStrength;
    params.strength = isGiven(raw.strength) ? readStrength(raw.strength) : fallback;
  }
  return params;
}

/**
 * A prompt typed again (remix: the form a Reroll or V button opens), checked as /imagine checks
 * one: not empty, not too long, no blocked term.
 */
export function validatePrompt(
  raw: RawValue,
  options: Pick<ValidationOptions, 'promptMaxLength' | 'blockedTerms'>,
): string {
  const prompt = readPrompt(raw, options.promptMaxLength);
  if (containsBlockedTerm(prompt, options.blockedTerms)) {
    throw new ValidationError(
      'prompt',
      "Your prompt contains a word or phrase that isn't allowed here. Please rephrase it.",
    );
  }
  return prompt;
}

function readStrength(raw: string | number | boolean): number {
  const number = readNumber(raw);
  if (!Number.isFinite(number) || number <= 0 || number > 1) {
    throw new ValidationError(
      'strength',
      `Strength must be a number above 0 and at most 1, not ${shown(raw)}.`,
    );
  }
  return number;
}

/**
 * Checks what a user wants to save as their defaults (/settings), with the same messages as a
 * job. Only the given fields are returned; an empty negative prompt is kept (it clears the saved one),
 * and so are style `none` and model `default` (they clear the saved style or model).
 */
export function validateUserDefaults(
  raw: Omit<RawJobOptions, 'prompt' | 'seed' | 'strength' | 'mode'>,
  options: ValidationOptions,
): UserDefaults {
  const result: UserDefaults = {};
  if (isGiven(raw.aspect)) result.aspect = readAspect(raw.aspect, options.aspects);
  if (isGiven(raw.steps)) result.steps = readInteger('steps', 'Steps', raw.steps, options.ranges.steps);
  if (isGiven(raw.guidance))
    result.guidance = readDecimal('guidance', 'Guidance', raw.guidance, options.ranges.guidance);
  if (isGiven(raw.count)) result.count = readInteger('count', 'Count', raw.count, options.ranges.count);
  if (isGiven(raw.sampler)) result.sampler = readSampler(raw.sampler, options.samplers);
  if (isGiven(raw.style)) result.style = readStyle(raw.style, options.styles ?? {})?.name ?? NO_STYLE;
  if (isGiven(raw.model)) {
    result.model =
      String(raw.model).trim().toLowerCase() === DEFAULT_MODEL
        ? DEFAULT_MODEL
        : readModel(raw.model, options.models ?? []).name;
  }
  if (raw.negativePrompt !== undefined && raw.negativePrompt !== null) {
    result.negativePrompt = readNegativePrompt(raw.negativePrompt, '', options.negativePromptMaxLength);
  }
  return result;
}

/** What a model suggests when the config leaves steps, guidance or sampler at null. */
export interface ModelDefaults {
  steps: number;
  guidance: number;
  sampler: SamplerName;
  /** Side of the model's 1:1 size in pixels; @default 1024 */
  resolution?: number;
}

/**
 * SD3.5 Large in the reference (Stability-AI/sd3.5 `sd3_infer.py` CONFIGS["sd3.5_large"]): 40 steps,
 * CFG 4.5, DPM++ 2M. Used only when the pipeline has not said what its model prefers.
 */
export const REFERENCE_MODEL_DEFAULTS: ModelDefaults = { steps: 40, guidance: 4.5, sampler: 'dpmpp_2m' };
