import { describe, expect, it } from 'vitest';
import { formatParameters, parseParameters } from '../../src/images/index.js';
import type { JobParams } from '../../src/jobs/types.js';

const params: JobParams = {
  prompt: 'a cat in a hat',
  negativePrompt: 'blurry',
  aspect: '1:1',
  width: 1024,
  height: 1024,
  seed: 5,
  steps: 28,
  guidance: 4.5,
  count: 4,
  sampler: 'euler',
};

describe('formatParameters()', () => {
  it('writes the A1111 layout', () => {
    expect(formatParameters(params, { model: 'sd3.5_large', seed: 123 })).toBe(
      'a cat in a hat\nNegative prompt: blurry\nSteps: 28, Sampler: Euler, CFG scale: 4.5, Seed: 123, Size: 1024x1024, Model: sd3.5_large',
    );
  });

  it('leaves out an empty negative prompt, names DPM++ 2M as A1111 does, adds denoising strength for img2img', () => {
    const text = formatParameters(
      { ...params, negativePrompt: '', sampler: 'dpmpp_2m', width: 1344, height: 768, strength: 0.6 },
      { model: 'sd3.5_large_turbo', seed: 7 },
    );
    expect(text).toBe(
      'a cat in a hat\nSteps: 28, Sampler: DPM++ 2M, CFG scale: 4.5, Seed: 7, Size: 1344x768, Model: sd3.5_large_turbo, Denoising strength: 0.6',
    );
  });

  it('quotes values holding commas or colons', () => {
    expect(formatParameters(params, { model: 'my: model, v2', seed: 1 })).toContain('Model: "my: model, v2"');
  });
});

describe('parseParameters()', () => {
  it('reads back what formatParameters wrote', () => {
    const text = formatParameters(
      {
        ...params,
        prompt: 'line one\nline two, with: colon 猫',
        negativePrompt: 'ugly\nwatermark',
        strength: 0.35,
      },
      { model: 'a, b', seed: 4294967295 },
    );
    expect(parseParameters(text)).toEqual({
      prompt: 'line one\nline two, with: colon 猫',
      negativePrompt: 'ugly\nwatermark',
      steps: 28,
      sampler: 'euler',
      guidance: 4.5,
      seed: 4294967295,
      width: 1024,
      height: 1024,
      model: 'a, b',
      strength: 0.35,
      fields: {
        Steps: '28',
        Sampler: 'Euler',
        'CFG scale': '4.5',
        Seed: '4294967295',
        Size: '1024x1024',
        Model: 'a, b',
        'Denoising strength': '0.35',
      },
    });
  });

  it('reads A1111 output with fields Atelier does not use', () => {
    const text =
      'masterpiece, 1girl\nNegative prompt: lowres\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 2179987202, Size: 768x512, Model hash: 93b79e09ed, Model: anything-v4.5, Clip skip: 2';
    const parsed = parseParameters(text);
    expect(parsed).toMatchObject({
      prompt: 'masterpiece, 1girl',
      negativePrompt: 'lowres',
      steps: 20,
      guidance: 7,
      width: 768,
      height: 512,
    });
    expect(parsed.sampler).toBeUndefined();
    expect(parsed.fields['Sampler']).toBe('DPM++ 2M Karras');
    expect(parsed.fields['Clip skip']).toBe('2');
  });

  it('treats text without a parameters line as a prompt', () => {
    expect(parseParameters('just a prompt: nothing else')).toEqual({
      prompt: 'just a prompt: nothing else',
      negativePrompt: '',
      fields: {},
    });
  });
});
