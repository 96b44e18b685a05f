/** Styles: choosing one (/imagine, a saved default, `none`), refusing unknown ones, and the prompts the model reads. */
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { formatParameters, parseParameters } from '../../src/images/index.js';
import { styledPrompts } from '../../src/jobs/styles.js';
import {
  type RawJobOptions,
  type ValidationContext,
  type ValidationOptions,
  validateJobParams,
  validateUserDefaults,
} from '../../src/jobs/validate.js';

const styles = {
  cinematic: { prompt: '{prompt}, cinematic still, film grain', negative: 'cartoon' },
  Watercolor: { prompt: 'watercolor painting of {prompt}', negative: '' },
  'pixel-art': { prompt: 'pixel art, {prompt}, {prompt} as a sprite', negative: 'blurry' },
};

const options: ValidationOptions = {
  promptMaxLength: 2000,
  negativePromptMaxLength: 500,
  blockedTerms: [],
  aspects: ['1:1'],
  samplers: ['euler'],
  ranges: { steps: { min: 1, max: 100 }, guidance: { min: 0, max: 20 }, count: { min: 1, max: 4 } },
  defaults: {
    negativePrompt: '',
    aspect: '1:1',
    steps: 4,
    guidance: 4.5,
    count: 1,
    sampler: 'euler',
    seed: 1,
    variationStrength: 0.6,
    upscaleStrength: 0.3,
  },
  styles,
};

function refusal(raw: RawJobOptions, context?: ValidationContext, opts = options): ValidationError {
  try {
    validateJobParams(raw, opts, context);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('choosing a style', () => {
  it('keeps the user’s prompt and the style (name and templates) apart in the params', () => {
    const params = validateJobParams({ prompt: 'a fox', style: 'cinematic' }, options);
    expect(params.prompt).toBe('a fox');
    expect(params.style).toEqual({ name: 'cinematic', ...styles.cinematic });
  });

  it('ignores case and spaces, and gives the configured name', () => {
    expect(validateJobParams({ prompt: 'a fox', style: ' WATERCOLOR ' }, options).style?.name).toBe(
      'Watercolor',
    );
  });

  it('takes the saved default style unless /imagine names one; `none` overrides it', () => {
    const saved = { userDefaults: { style: 'cinematic' } };
    expect(validateJobParams({ prompt: 'a fox' }, options, saved).style?.name).toBe('cinematic');
    expect(validateJobParams({ prompt: 'a fox', style: 'pixel-art' }, options, saved).style?.name).toBe(
      'pixel-art',
    );
    expect(validateJobParams({ prompt: 'a fox', style: 'none' }, options, saved).style).toBeUndefined();
    expect(validateJobParams({ prompt: 'a fox' }, options).style).toBeUndefined();
  });

  it('skips a saved style the operator has since removed, without blaming the user', () => {
    const params = validateJobParams({ prompt: 'a fox' }, options, { userDefaults: { style: 'gone' } });
    expect(params.style).toBeUndefined();
  });

  it('refuses an unknown style with a did-you-mean and the allowed names', () => {
    const typo = refusal({ prompt: 'a fox', style: 'cinematc' });
    expect(typo.field).toBe('style');
    expect(typo.userMessage).toBe(
      "“cinematc” isn't a style here. Did you mean cinematic? Choose one of: cinematic, Watercolor, pixel-art, none.",
    );
    expect(refusal({ prompt: 'a fox', style: 'pix' }).userMessage).toMatch(/Did you mean pixel-art\?/);
    expect(refusal({ prompt: 'a fox', style: 'baroque' }).userMessage).toBe(
      "“baroque” isn't a style here. Choose one of: cinematic, Watercolor, pixel-art, none.",
    );
    expect(refusal({ prompt: 'a fox', style: 'noir' }, {}, { ...options, styles: {} }).userMessage).toBe(
      "There are no styles on this bot, so “noir” can't be used.",
    );
  });

  it('/settings style: saves the configured name, `none` to clear, and refuses unknown ones', () => {
    expect(validateUserDefaults({ style: 'CINEMATIC' }, options)).toEqual({ style: 'cinematic' });
    expect(validateUserDefaults({ style: 'none' }, options)).toEqual({ style: 'none' });
    expect(() => validateUserDefaults({ style: 'cinematics' }, options)).toThrow(/Did you mean cinematic\?/);
  });
});

describe('the prompts the model reads', () => {
  it('puts the user’s prompt where {prompt} is (every time, $ patterns kept) and adds the negative', () => {
    const params = validateJobParams(
      { prompt: 'a $& coin', negativePrompt: 'text', style: 'pixel-art' },
      options,
    );
    expect(styledPrompts(params)).toEqual({
      prompt: 'pixel art, a $& coin, a $& coin as a sprite',
      negativePrompt: 'text, blurry',
    });
    expect(styledPrompts({ ...params, negativePrompt: '' }).negativePrompt).toBe('blurry');
    expect(styledPrompts({ prompt: 'plain', negativePrompt: 'n' })).toEqual({
      prompt: 'plain',
      negativePrompt: 'n',
    });
  });

  it('PNG parameters: the styled prompts (reproducible elsewhere) and `Style: <name>`', () => {
    const params = validateJobParams({ prompt: 'a fox', style: 'cinematic' }, options);
    const text = formatParameters(params, { model: 'tiny', seed: 1 });
    expect(text).toBe(
      'a fox, cinematic still, film grain\nNegative prompt: cartoon\nSteps: 4, Sampler: Euler, CFG scale: 4.5, Seed: 1, Size: 1024x1024, Model: tiny, Style: cinematic',
    );
    expect(parseParameters(text)).toMatchObject({
      prompt: 'a fox, cinematic still, film grain',
      style: 'cinematic',
    });
  });

  it('PNG parameters of a Vary (Subtle) variation say which, beside the strength', () => {
    const params = {
      ...validateJobParams({ prompt: 'a fox' }, options),
      strength: 0.35,
      variation: 'subtle' as const,
    };
    expect(formatParameters(params, { model: 'tiny', seed: 1 })).toMatch(
      /Denoising strength: 0\.35, Variation: subtle$/,
    );
  });
});
