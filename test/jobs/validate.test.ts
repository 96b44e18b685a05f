import { describe, expect, it } from 'vitest';
import { validationOptionsFromConfig } from '../../src/app/options.js';
import { loadConfig } from '../../src/config/index.js';
import { ValidationError } from '../../src/errors.js';
import {
  type RawJobOptions,
  REFERENCE_MODEL_DEFAULTS,
  type ValidationContext,
  type ValidationOptions,
  validateJobParams,
  validateUserDefaults,
} from '../../src/jobs/validate.js';
import { MAX_SEED } from '../../src/vocabulary.js';
import { workdir } from '../config/helpers.js';

const options: ValidationOptions = {
  promptMaxLength: 2000,
  negativePromptMaxLength: 500,
  blockedTerms: ['gore', 'blood bath', 'Ångström'],
  aspects: ['1:1', '16:9', '9:16', '4:3', '3:4', '3:2', '2:3', '21:9'],
  samplers: ['euler', 'dpmpp_2m'],
  ranges: { steps: { min: 1, max: 100 }, guidance: { min: 0, max: 20 }, count: { min: 1, max: 4 } },
  defaults: {
    negativePrompt: '',
    aspect: '1:1',
    steps: 28,
    guidance: 4.5,
    count: 1,
    sampler: 'euler',
    seed: null,
    variationStrength: 0.6,
    upscaleStrength: 0.35,
  },
  randomSeed: () => 777,
};

function refusal(
  raw: RawJobOptions,
  context?: ValidationContext,
  opts: ValidationOptions = options,
): ValidationError {
  try {
    validateJobParams(raw, opts, context);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('validateJobParams() accepts', () => {
  it('a bare prompt, filling every field from the defaults', () => {
    expect(validateJobParams({ prompt: '  a cat in a hat  ' }, options)).toEqual({
      prompt: 'a cat in a hat',
      negativePrompt: '',
      aspect: '1:1',
      width: 1024,
      height: 1024,
      seed: 777,
      steps: 28,
      guidance: 4.5,
      count: 1,
      sampler: 'euler',
    });
  });

  it('options typed as text or as numbers', () => {
    const params = validateJobParams(
      {
        prompt: 'x',
        aspect: '16x9',
        steps: '40',
        guidance: '7,5',
        count: 4,
        seed: '123',
        sampler: 'DPM++ 2M',
        negativePrompt: 'blurry',
      },
      options,
    );
    expect(params).toMatchObject({
      aspect: '16:9',
      width: 1344,
      height: 768,
      steps: 40,
      guidance: 7.5,
      count: 4,
      seed: 123,
    });
    expect(params).toMatchObject({ sampler: 'dpmpp_2m', negativePrompt: 'blurry' });
  });

  it('the whole seed range, and -1 or "random" for a random seed', () => {
    expect(validateJobParams({ prompt: 'x', seed: 0 }, options).seed).toBe(0);
    expect(validateJobParams({ prompt: 'x', seed: MAX_SEED }, options).seed).toBe(4294967295);
    expect(validateJobParams({ prompt: 'x', seed: -1 }, options).seed).toBe(777);
    expect(validateJobParams({ prompt: 'x', seed: 'random' }, options).seed).toBe(777);
  });

  it('random seeds within 0 … 2^32−1 by default', () => {
    const { randomSeed: _, ...withoutSeedSource } = options;
    const seeds = Array.from(
      { length: 50 },
      () => validateJobParams({ prompt: 'x' }, withoutSeedSource).seed,
    );
    for (const seed of seeds) {
      expect(Number.isInteger(seed)).toBe(true);
      expect(seed).toBeGreaterThanOrEqual(0);
      expect(seed).toBeLessThanOrEqual(MAX_SEED);
    }
    expect(new Set(seeds).size).toBeGreaterThan(45);
  });

  it('a strength for variations and upscales, with their own defaults', () => {
    expect(validateJobParams({ prompt: 'x' }, options, { kind: 'variation' }).strength).toBe(0.6);
    expect(validateJobParams({ prompt: 'x' }, options, { kind: 'upscale' }).strength).toBe(0.35);
    expect(validateJobParams({ prompt: 'x', strength: '0.8' }, options, { kind: 'variation' }).strength).toBe(
      0.8,
    );
    expect(validateJobParams({ prompt: 'x', strength: 0.8 }, options).strength).toBeUndefined();
  });

  it('unicode prompts, counting characters as people do', () => {
    const prompt = '猫'.repeat(2000);
    expect(validateJobParams({ prompt }, options).prompt).toBe(prompt);
    expect(validateJobParams({ prompt: '🐈'.repeat(2000) }, options).prompt).toHaveLength(4000);
  });
});

describe('validateJobParams() refuses, saying what is wrong and what is allowed', () => {
  it('an empty prompt', () => {
    for (const prompt of [undefined, '', '   \n ']) {
      const error = refusal({ prompt });
      expect(error.field).toBe('prompt');
      expect(error.userMessage).toBe('Please describe the image you want: the prompt is empty.');
    }
  });

  it('a prompt over the limit, with its length and the limit', () => {
    const error = refusal({ prompt: 'a'.repeat(2345) });
    expect(error.field).toBe('prompt');
    expect(error.message).toBe(
      'Your prompt is 2,345 characters long; the limit is 2,000. Please shorten it by 345 characters.',
    );
  });

  it('a negative prompt over its limit', () => {
    expect(refusal({ prompt: 'x', negativePrompt: 'n'.repeat(501) }).message).toBe(
      'Your negative prompt is 501 characters long; the limit is 500. Please shorten it by 1 character.',
    );
  });

  it('steps out of range or not a number', () => {
    expect(refusal({ prompt: 'x', steps: 150 }).message).toBe(
      'Steps must be a whole number from 1 to 100, not “150”.',
    );
    expect(refusal({ prompt: 'x', steps: 'ten' }).message).toBe(
      'Steps must be a whole number from 1 to 100, not “ten”.',
    );
    expect(refusal({ prompt: 'x', steps: 2.5 }).field).toBe('steps');
    expect(refusal({ prompt: 'x', steps: 0 }).field).toBe('steps');
  });

  it('guidance out of range or not a number', () => {
    expect(refusal({ prompt: 'x', guidance: 25 }).message).toBe(
      'Guidance must be a number from 0 to 20, not “25”.',
    );
    expect(refusal({ prompt: 'x', guidance: 'lots' }).message).toBe(
      'Guidance must be a number from 0 to 20, not “lots”.',
    );
    expect(refusal({ prompt: 'x', guidance: Number.NaN }).field).toBe('guidance');
  });

  it('count out of range', () => {
    expect(refusal({ prompt: 'x', count: 5 }).message).toBe(
      'Count must be a whole number from 1 to 4, not “5”.',
    );
    expect(refusal({ prompt: 'x', count: '0' }).field).toBe('count');
  });

  it('seeds out of range or not numbers', () => {
    const tooBig = refusal({ prompt: 'x', seed: 2 ** 32 });
    expect(tooBig.field).toBe('seed');
    expect(tooBig.message).toBe(
      'Seed must be a whole number from 0 to 4294967295 (or leave it empty for a random one), not “4294967296”.',
    );
    expect(refusal({ prompt: 'x', seed: -5 }).field).toBe('seed');
    expect(refusal({ prompt: 'x', seed: 'abc' }).field).toBe('seed');
    expect(refusal({ prompt: 'x', seed: 1.5 }).field).toBe('seed');
  });

  it('an unknown sampler, listing the available ones', () => {
    expect(refusal({ prompt: 'x', sampler: 'heun' }).message).toBe(
      "“heun” isn't an available sampler. Choose one of: euler, dpmpp_2m.",
    );
  });

  it('an unknown aspect ratio, listing the allowed ones', () => {
    const error = refusal({ prompt: 'x', aspect: '5:4' });
    expect(error.field).toBe('aspect');
    expect(error.message).toBe(
      "“5:4” isn't an available aspect ratio. Choose one of: 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, 21:9.",
    );
  });

  it('an aspect ratio the operator switched off', () => {
    const narrow = { ...options, aspects: ['1:1', '16:9'] as ValidationOptions['aspects'] };
    expect(refusal({ prompt: 'x', aspect: '21:9' }, {}, narrow).message).toBe(
      "“21:9” isn't an available aspect ratio. Choose one of: 1:1, 16:9.",
    );
  });

  it('a strength outside (0, 1]', () => {
    expect(refusal({ prompt: 'x', strength: 0 }, { kind: 'variation' }).message).toBe(
      'Strength must be a number above 0 and at most 1, not “0”.',
    );
  });

  it('cuts a long wrong value short in the message', () => {
    expect(refusal({ prompt: 'x', sampler: 'z'.repeat(300) }).message).toBe(
      `“${'z'.repeat(40)}…” isn't an available sampler. Choose one of: euler, dpmpp_2m.`,
    );
  });
});

describe('blocked terms', () => {
  const blockedMessage = "Your prompt contains a word or phrase that isn't allowed here. Please rephrase it.";

  it('match whole words, case-insensitively, without naming the term', () => {
    for (const prompt of ['GORE everywhere', 'lots of gore.', 'a Blood  Bath scene', '(gore:1.3)']) {
      const error = refusal({ prompt });
      expect(error.field).toBe('prompt');
      expect(error.message).toBe(blockedMessage);
      expect(error.message.toLowerCase()).not.toContain('gore');
    }
  });

  it('leave other words alone', () => {
    for (const prompt of ['Goreville town hall', 'a bloodbath', 'gored bull', 'blood and bath']) {
      expect(() => validateJobParams({ prompt }, options)).not.toThrow();
    }
  });

  it('use Unicode word boundaries and fold look-alike forms', () => {
    expect(refusal({ prompt: 'an ångström ruler' }).message).toBe(blockedMessage);
    expect(refusal({ prompt: 'ｇｏｒｅ' }).message).toBe(blockedMessage);
    expect(() => validateJobParams({ prompt: 'xångströmx' }, options)).not.toThrow();
  });

  it('are not checked in the negative prompt, where they keep content out', () => {
    expect(validateJobParams({ prompt: 'x', negativePrompt: 'gore' }, options).negativePrompt).toBe('gore');
  });
});

describe('per-user defaults', () => {
  const userDefaults = {
    aspect: '9:16',
    steps: 12,
    count: 2,
    negativePrompt: 'watermark',
    guidance: 3,
    sampler: 'dpmpp_2m',
  };

  it('fill fields the user did not give', () => {
    expect(validateJobParams({ prompt: 'x' }, options, { userDefaults })).toMatchObject({
      aspect: '9:16',
      width: 768,
      height: 1344,
      steps: 12,
      count: 2,
      negativePrompt: 'watermark',
      guidance: 3,
      sampler: 'dpmpp_2m',
    });
  });

  it('give way to explicit options', () => {
    expect(
      validateJobParams(
        { prompt: 'x', aspect: '1:1', steps: 30, count: 1, negativePrompt: 'blur' },
        options,
        { userDefaults },
      ),
    ).toMatchObject({
      aspect: '1:1',
      steps: 30,
      count: 1,
      negativePrompt: 'blur',
    });
  });

  it('that the config no longer allows are skipped, not blamed on the user', () => {
    const stale = { aspect: '21:9', steps: 500 };
    const narrow = { ...options, aspects: ['1:1'] as ValidationOptions['aspects'] };
    expect(validateJobParams({ prompt: 'x' }, narrow, { userDefaults: stale })).toMatchObject({
      aspect: '1:1',
      steps: 28,
    });
  });

  it('are checked with the same messages when saved', () => {
    expect(validateUserDefaults({ aspect: '16:9', steps: '20', negativePrompt: '' }, options)).toEqual({
      aspect: '16:9',
      steps: 20,
      negativePrompt: '',
    });
    expect(() => validateUserDefaults({ count: 9 }, options)).toThrow(
      'Count must be a whole number from 1 to 4, not “9”.',
    );
  });
});

describe('validationOptionsFromConfig()', () => {
  it("uses the config's ranges and the model's defaults where the config says null", () => {
    const config = loadConfig({ env: { ATELIER_GENERATION__BLOCKED_TERMS: 'gore' }, cwd: workdir() });
    const fromReference = validationOptionsFromConfig(config);
    expect(fromReference.defaults).toMatchObject({
      steps: 40,
      guidance: 4.5,
      sampler: 'dpmpp_2m',
      count: 1,
      aspect: '1:1',
    });
    expect(REFERENCE_MODEL_DEFAULTS).toEqual({ steps: 40, guidance: 4.5, sampler: 'dpmpp_2m' });
    const turbo = validationOptionsFromConfig(config, { steps: 4, guidance: 1, sampler: 'euler' });
    expect(turbo.defaults).toMatchObject({ steps: 4, guidance: 1, sampler: 'euler' });
    expect(turbo.blockedTerms).toEqual(['gore']);
    expect(turbo.ranges.count).toEqual({ min: 1, max: 4 });
  });

  it("prefers the operator's defaults and keeps model defaults inside the operator's ranges", () => {
    const config = loadConfig({
      env: { ATELIER_GENERATION__STEPS__DEFAULT: '20', ATELIER_GENERATION__GUIDANCE__MAX: '3' },
      cwd: workdir(),
    });
    const opts = validationOptionsFromConfig(config, { steps: 40, guidance: 4.5, sampler: 'euler' });
    expect(opts.defaults.steps).toBe(20);
    expect(opts.defaults.guidance).toBe(3);
  });
});
