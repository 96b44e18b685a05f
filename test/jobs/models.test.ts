/**
 * Several models (config `models.list`): the config keys, each model's own defaults, which model a
 * job runs on (named › draft › the user's default › the server's › the bot's), and how a job's
 * recorded model is found again — or refused — after the configuration changed.
 */
import { describe, expect, it } from 'vitest';
import { fastestModel, validationOptionsFromConfig } from '../../src/app/options.js';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError, NotFoundError, ValidationError } from '../../src/errors.js';
import { configuredModelOf, jobModelOf, modelGoneError } from '../../src/jobs/models.js';
import { validateJobParams, validateUserDefaults } from '../../src/jobs/validate.js';
import type { ModelInfo } from '../../src/pipeline/types.js';
import { workdir } from '../config/helpers.js';

function load(yaml: string, env: Record<string, string> = {}) {
  return loadConfig({
    env: { ATELIER_CONFIG: 'atelier.yaml', ...env },
    cwd: workdir({ 'atelier.yaml': yaml }),
  });
}

function loadError(yaml: string): ConfigError {
  try {
    load(yaml);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected loadConfig to throw');
}

const info = (
  name: string,
  family: string,
  parameters: number,
  extra: Partial<ModelInfo> = {},
): ModelInfo => ({
  name,
  label: `sd3.5_${name}`,
  hash: `${name.padEnd(10, '0').slice(0, 10)}`,
  family,
  defaults:
    family === 'sd3.5-large-turbo'
      ? { steps: 4, guidance: 1, sampler: 'euler', resolution: 1024 }
      : family === 'sd3.5-medium'
        ? { steps: 50, guidance: 5, sampler: 'dpmpp_2m', resolution: 1024 }
        : { steps: 40, guidance: 4.5, sampler: 'dpmpp_2m', resolution: 1024 },
  parameters,
  resident: true,
  ...extra,
});

const CATALOG = {
  models: [
    info('large', 'sd3.5-large', 8.06e9),
    info('turbo', 'sd3.5-large-turbo', 8.06e9),
    info('medium', 'sd3.5-medium', 2.5e9),
  ],
};

describe('config models.list', () => {
  it('is empty by default; an override file or the environment adds models with their own defaults', () => {
    expect(load('').models).toMatchObject({ list: {}, default: null, maxResident: null });
    const config = load(
      'models:\n  dir: ./models\n  list:\n    large: { checkpoint: sd3.5_large.safetensors }\n    turbo: { checkpoint: sd3.5_large_turbo.safetensors, steps: 4, guidance: 1, sampler: euler }\n',
      {
        ATELIER_MODELS__LIST__MEDIUM__DIR: 'other',
        ATELIER_MODELS__DEFAULT: 'turbo',
        ATELIER_MODELS__MAX_RESIDENT: '2',
      },
    );
    expect(config.models.list).toEqual({
      large: { checkpoint: 'sd3.5_large.safetensors' },
      turbo: { checkpoint: 'sd3.5_large_turbo.safetensors', steps: 4, guidance: 1, sampler: 'euler' },
      medium: { dir: expect.stringMatching(/\/other$/) },
    });
    expect(config.models).toMatchObject({ default: 'turbo', maxResident: 2 });
  });

  it('refuses a bad or reserved name, names that differ in case, defaults out of range and an unknown default', () => {
    expect(loadError('models:\n  list:\n    "sd 3": {}\n').message).toMatch(
      /^config: models\.list\.sd 3 = .* expected a model name of 1–32 letters, digits, \., - or _/,
    );
    expect(loadError('models:\n  list:\n    default: {}\n').key).toBe('models.list.default');
    expect(loadError('models:\n  list:\n    Large: {}\n    large: {}\n').message).toMatch(
      /expected a name other than models\.list\.Large \(model names ignore case\)/,
    );
    expect(loadError('models:\n  list:\n    turbo: { steps: 200 }\n').message).toMatch(
      /^config: models\.list\.turbo\.steps = 200 is not allowed: expected a number from 1 to 100 \(generation\.steps\.min … max\)/,
    );
    expect(loadError('models:\n  list:\n    turbo: {}\n  default: larg\n').message).toMatch(
      /^config: models\.default = "larg" is not allowed: expected one of the names in models\.list \(turbo\)/,
    );
    expect(loadError('models:\n  list:\n    turbo: { stepz: 4 }\n').message).toMatch(
      /models\.list\.turbo\.stepz is not a known setting .*did you mean models\.list\.turbo\.steps\?/,
    );
  });
});

describe('each model’s own defaults, and the fastest', () => {
  it('models.list.<name> › generation.* › the family’s; the default model’s are the bot’s defaults', () => {
    const config = load('models:\n  list:\n    large: {}\n    turbo: { steps: 6 }\n    medium: {}\n');
    const v = validationOptionsFromConfig(config, CATALOG.models[0]!.defaults, CATALOG);
    expect(v.models!.map((m) => [m.name, m.defaults])).toEqual([
      ['large', { steps: 40, guidance: 4.5, sampler: 'dpmpp_2m' }],
      ['turbo', { steps: 6, guidance: 1, sampler: 'euler' }],
      ['medium', { steps: 50, guidance: 5, sampler: 'dpmpp_2m' }],
    ]);
    expect(v.defaultModel).toBe('large');
    expect(v.defaults).toMatchObject({ steps: 40, guidance: 4.5, sampler: 'dpmpp_2m' });
    const global = load(
      'generation:\n  steps: { default: 28 }\nmodels:\n  list:\n    large: {}\n    turbo: { steps: 4 }\n',
    );
    const g = validationOptionsFromConfig(global, undefined, CATALOG);
    expect(g.models!.find((m) => m.name === 'turbo')!.defaults.steps).toBe(4);
    expect(g.models!.find((m) => m.name === 'large')!.defaults.steps).toBe(28);
  });

  it('--fast picks the loaded model whose default job is cheapest: steps × parameters, twice with CFG', () => {
    const config = load('');
    const v = validationOptionsFromConfig(config, undefined, CATALOG);
    // turbo: 4 × 8.06e9; medium: 50 × 2 × 2.5e9; large: 40 × 2 × 8.06e9.
    expect(v.draftModel).toBe('turbo');
    expect(fastestModel({ ...CATALOG, resident: ['large', 'medium'] }, v.models!)).toBe('medium');
    expect(fastestModel({ ...CATALOG, resident: ['large'] }, v.models!)).toBe('large');
  });
});

describe('which model a job runs on', () => {
  const config = load('models:\n  list:\n    large: {}\n    turbo: {}\n    medium: {}\n');
  const v = validationOptionsFromConfig(config, undefined, CATALOG);
  const run = (raw: Record<string, unknown>, context: Parameters<typeof validateJobParams>[2] = {}) =>
    validateJobParams({ prompt: 'a fox', ...raw }, { ...v, randomSeed: () => 1 }, context);

  it('named › mode draft › the user’s default › the server’s › the bot’s', () => {
    expect(run({}).model).toEqual(jobModelOf(v.models![0]!));
    expect(run({}).model).toEqual({ name: 'large', hash: 'large00000', label: 'sd3.5_large' });
    expect(run({}, { teamDefaults: { model: 'medium' } }).model!.name).toBe('medium');
    expect(run({}, { userDefaults: { model: 'turbo' }, teamDefaults: { model: 'medium' } }).model!.name).toBe(
      'turbo',
    );
    expect(run({ mode: 'draft' }, { userDefaults: { model: 'medium' } }).model!.name).toBe('turbo');
    expect(run({ mode: 'fast' }).model!.name).toBe('turbo');
    expect(run({ model: 'Medium', mode: 'draft' }).model!.name).toBe('medium');
  });

  it('a model picked in the command runs with its own defaults; a saved one with the user’s saved steps', () => {
    const saved = { steps: 30, guidance: 7, sampler: 'dpmpp_2m' };
    expect(run({ model: 'turbo' }, { userDefaults: saved })).toMatchObject({
      steps: 4,
      guidance: 1,
      sampler: 'euler',
    });
    expect(run({ mode: 'draft' }, { userDefaults: saved })).toMatchObject({ steps: 4, guidance: 1 });
    expect(run({}, { userDefaults: { ...saved, model: 'turbo' } })).toMatchObject({ steps: 30, guidance: 7 });
    // What the user types now still wins.
    expect(run({ model: 'turbo', steps: 8 })).toMatchObject({ steps: 8, guidance: 1 });
  });

  it('an unknown name is refused with the configured ones (and a guess); a saved one since removed is skipped', () => {
    expect(() => run({ model: 'trubo' })).toThrow(
      new ValidationError(
        'model',
        "“trubo” isn't a model here. Did you mean turbo? Choose one of: large, turbo, medium.",
      ),
    );
    expect(() => run({ mode: 'slow' })).toThrow(/Mode must be draft/);
    expect(run({}, { userDefaults: { model: 'xl' }, teamDefaults: { model: 'gone' } }).model!.name).toBe(
      'large',
    );
  });

  it('/settings and /atelier model: a configured name, or default to forget it', () => {
    expect(validateUserDefaults({ model: 'TURBO' }, v)).toEqual({ model: 'turbo' });
    expect(validateUserDefaults({ model: 'default' }, v)).toEqual({ model: 'default' });
    expect(() => validateUserDefaults({ model: 'xl' }, v)).toThrow(ValidationError);
  });

  it('without several models nothing changes: no model named, the old defaults', () => {
    const one = validationOptionsFromConfig(load(''));
    const params = validateJobParams({ prompt: 'a fox' }, { ...one, randomSeed: () => 1 });
    expect(params.model).toBeUndefined();
    expect(params.steps).toBe(40);
  });
});

describe('a job’s recorded model after the configuration changed', () => {
  const models = validationOptionsFromConfig(load(''), undefined, CATALOG).models!;

  it('is found by its checkpoint’s hash (renamed too), by name when it recorded none', () => {
    expect(configuredModelOf(models, { name: 'turbo', hash: 'turbo00000' })!.name).toBe('turbo');
    expect(configuredModelOf(models, { name: 'fast', hash: 'turbo00000' })!.name).toBe('turbo');
    expect(configuredModelOf(models, { name: 'medium' })!.name).toBe('medium');
    // The name is configured again, but for another checkpoint: not the same model.
    expect(configuredModelOf(models, { name: 'turbo', hash: 'ffffffffff' })).toBeUndefined();
  });

  it('is refused naming the model and the configured ones when gone', () => {
    const error = modelGoneError({ name: 'xl', hash: 'abcdef0123', label: 'sd_xl_base' }, models);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.userMessage).toBe(
      "That image was made with the model “xl” (sd_xl_base), which is no longer configured here, so I can't make more of it with the same model. Configured models: large, turbo, medium.",
    );
  });
});

describe('the model in the PNG parameters', () => {
  it('writes A1111’s Model hash before Model, and reads it back', async () => {
    const { formatParameters, parseParameters } = await import('../../src/images/index.js');
    const text = formatParameters(
      {
        prompt: 'a fox',
        negativePrompt: '',
        aspect: '1:1',
        width: 1024,
        height: 1024,
        seed: 3,
        steps: 4,
        guidance: 1,
        count: 1,
        sampler: 'euler',
        model: { name: 'turbo', hash: '3f1a9c0b2e', label: 'sd3.5_large_turbo' },
      },
      { model: 'sd3.5_large_turbo', seed: 3, modelHash: '3f1a9c0b2e' },
    );
    expect(text).toBe(
      'a fox\nSteps: 4, Sampler: Euler, CFG scale: 1, Seed: 3, Size: 1024x1024, Model hash: 3f1a9c0b2e, Model: sd3.5_large_turbo',
    );
    expect(parseParameters(text)).toMatchObject({ model: 'sd3.5_large_turbo', modelHash: '3f1a9c0b2e' });
  });
});
