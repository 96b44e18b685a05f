/**
 * LoRAs as users pick them: `lora:name[:weight]` (and typed `--lora`, given again), the allowed
 * ones only (a did-you-mean for near misses), up to three, weights in range; what a reroll keeps;
 * the result line and A1111's `<lora:name:weight>` / `Lora hashes` in the PNG parameters; and the
 * config that allows them.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defineCommands } from '../../commands/definitions.js';
import { loraChoices } from '../../commands/lora-choices.js';
import { parseCommandText } from '../../commands/text-args.js';
import { lorasDir } from '../../src/app/loras.js';
import { validationOptionsFromConfig } from '../../src/app/options.js';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError, ValidationError } from '../../src/errors.js';
import { formatParameters, parseParameters } from '../../src/images/index.js';
import {
  currentLoras,
  type LoraChoice,
  loraSummary,
  loraTags,
  loraText,
  readLoras,
  splitLoraText,
} from '../../src/jobs/loras.js';
import type { JobParams } from '../../src/jobs/types.js';
import { workdir } from '../config/helpers.js';

const allowed: LoraChoice[] = [
  { name: 'pixel', file: 'sd3.5_pixel_art.safetensors', weight: 0.8 },
  { name: 'Ink', file: 'ink.safetensors', weight: 1 },
  { name: 'watercolor-v2', file: 'watercolor.safetensors', weight: 0.6 },
];

function refusal(text: string, choices = allowed): string {
  try {
    readLoras(text, choices);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as ValidationError).message;
  }
  throw new Error(`"${text}" was not refused`);
}

describe('choosing LoRAs', () => {
  it('reads names and weights as typed, Discord options joined, or pasted A1111 tags', () => {
    expect(splitLoraText('pixel:0.5, ink  watercolor-v2:-1')).toEqual([
      { name: 'pixel', weight: '0.5' },
      { name: 'ink' },
      { name: 'watercolor-v2', weight: '-1' },
    ]);
    expect(readLoras('<lora:pixel:0.5> <lora:ink:1.25>', allowed)).toEqual([
      { name: 'pixel', file: 'sd3.5_pixel_art.safetensors', weight: 0.5 },
      { name: 'Ink', file: 'ink.safetensors', weight: 1.25 },
    ]);
    // Without a weight, the configured one; names ignore case and come back as configured.
    expect(readLoras('PIXEL', allowed)).toEqual([
      { name: 'pixel', file: 'sd3.5_pixel_art.safetensors', weight: 0.8 },
    ]);
    expect(loraText({ lora: 'pixel:0.5', lora2: '', lora3: 'ink' })).toBe('pixel:0.5, ink');
    expect(loraText({ prompt: 'x' })).toBeUndefined();
  });

  it('refuses unknown names with a guess and the allowed ones, more than three, twice the same, weights out of range', () => {
    expect(refusal('pixle:0.5')).toBe(
      "“pixle” isn't a LoRA here. Did you mean pixel? Choose one of: pixel, Ink, watercolor-v2 (e.g. lora:pixel:0.8).",
    );
    expect(refusal('zzz')).toBe(
      "“zzz” isn't a LoRA here. Choose one of: pixel, Ink, watercolor-v2 (e.g. lora:pixel:0.8).",
    );
    expect(refusal('pixel', [])).toBe("There are no LoRAs on this bot, so “pixel” can't be used.");
    expect(refusal('pixel ink watercolor-v2 pixel')).toBe(
      'Up to 3 LoRAs at once, not 4 (pixel, ink, watercolor-v2, pixel).',
    );
    expect(refusal('pixel:0.5, Pixel')).toBe('pixel is named twice; give each LoRA once, with one weight.');
    expect(refusal('ink:3')).toBe(
      "A LoRA's weight must be a number from -2 to 2, not “3” (e.g. lora:Ink:0.8).",
    );
    expect(refusal('ink:strong')).toMatch(/not “strong”/);
  });

  it('a reroll keeps the recorded weights and runs the file configured now; a LoRA removed since is refused', () => {
    const recorded = [{ name: 'pixel', file: 'old-pixel.safetensors', weight: 0.3 }];
    expect(currentLoras(recorded, allowed)).toEqual([
      { name: 'pixel', file: 'sd3.5_pixel_art.safetensors', weight: 0.3 },
    ]);
    expect(() => currentLoras(recorded, allowed.slice(1))).toThrow(
      '“pixel” was used for that image but is no longer a LoRA here. Choose one of: Ink, watercolor-v2 (e.g. lora:Ink:0.8).',
    );
  });

  it('autocompletes names with their default weights, then the entry as typed once a weight is being typed', () => {
    expect(loraChoices(allowed, 'I')).toEqual([
      { name: 'pixel (weight 0.8)', value: 'pixel' },
      { name: 'Ink (weight 1)', value: 'Ink' },
    ]);
    expect(loraChoices(allowed, 'pixel:0.')).toEqual([{ name: 'pixel:0.', value: 'pixel:0.' }]);
    expect(loraChoices(allowed, 'wat')).toEqual([
      { name: 'watercolor-v2 (weight 0.6)', value: 'watercolor-v2' },
    ]);
  });
});

describe('LoRAs in the result and the PNG parameters (A1111)', () => {
  const params: JobParams = {
    prompt: 'a fox',
    negativePrompt: 'blurry',
    aspect: '1:1',
    width: 1024,
    height: 1024,
    seed: 3,
    steps: 4,
    guidance: 4.5,
    count: 1,
    sampler: 'euler',
    loras: [
      { name: 'pixel', file: 'p.safetensors', weight: 0.8 },
      { name: 'Ink', file: 'i.safetensors', weight: -0.25 },
    ],
  };

  it('writes <lora:name:weight> after the prompt and the files’ short hashes in `Lora hashes`', () => {
    const text = formatParameters(params, {
      model: 'sd3.5_large',
      seed: 3,
      loraHashes: [
        { name: 'Ink', hash: '0123456789ab' },
        { name: 'pixel', hash: 'ba9876543210' },
      ],
    });
    expect(text).toBe(
      'a fox <lora:pixel:0.8> <lora:Ink:-0.25>\nNegative prompt: blurry\n' +
        'Steps: 4, Sampler: Euler, CFG scale: 4.5, Seed: 3, Size: 1024x1024, Model: sd3.5_large, ' +
        'Lora hashes: "Ink: 0123456789ab, pixel: ba9876543210"',
    );
    // A1111's reader gets the field back whole (quoted, with its commas).
    expect(parseParameters(text).fields['Lora hashes']).toBe('Ink: 0123456789ab, pixel: ba9876543210');
    expect(loraTags(params.loras!)).toBe('<lora:pixel:0.8> <lora:Ink:-0.25>');
    expect(loraSummary(params.loras!)).toBe('lora pixel 0.8, Ink -0.25');
  });
});

describe('text commands and the command definitions', () => {
  const config = loadConfig({
    env: {
      ATELIER_LORAS__ALLOWED__PIXEL__WEIGHT: '0.8',
      ATELIER_LORAS__ALLOWED__INK: '{}',
    },
    cwd: workdir(),
  });
  const commands = defineCommands(validationOptionsFromConfig(config));

  it('/imagine has three autocompleted LoRA options where LoRAs are allowed, none otherwise', () => {
    const imagine = commands.find((c) => c.name === 'imagine')!;
    expect(imagine.options!.filter((o) => o.name.startsWith('lora'))).toEqual([
      expect.objectContaining({ name: 'lora', type: 'string', autocomplete: true, repeatable: true }),
      expect.objectContaining({ name: 'lora2', autocomplete: true }),
      expect.objectContaining({ name: 'lora3', autocomplete: true }),
    ]);
    const none = defineCommands(validationOptionsFromConfig(loadConfig({ env: {}, cwd: workdir() })));
    expect(none.find((c) => c.name === 'imagine')!.options!.some((o) => o.name.startsWith('lora'))).toBe(
      false,
    );
  });

  it('--lora given again adds up (typed surfaces have no lora2)', () => {
    expect(parseCommandText(commands, '/imagine a fox --lora pixel:0.5 --lora ink').args).toMatchObject({
      prompt: 'a fox',
      lora: 'pixel:0.5, ink',
    });
  });
});

describe('config loras', () => {
  const load = (yaml: string, env: Record<string, string> = {}) =>
    loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml', ...env }, cwd: workdir({ 'atelier.yaml': yaml }) });
  const loadError = (yaml: string): ConfigError => {
    try {
      load(yaml);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return error as ConfigError;
    }
    throw new Error('expected loadConfig to throw');
  };

  it('allows named LoRAs with a file and a default weight; <name>.safetensors at 1 when left out', () => {
    const config = load(
      'loras:\n  allowed:\n    pixel: { file: px.safetensors, weight: 0.8 }\n    ink: {}\n',
    );
    expect(validationOptionsFromConfig(config).loras).toEqual([
      { name: 'pixel', file: 'px.safetensors', weight: 0.8 },
      { name: 'ink', file: 'ink.safetensors', weight: 1 },
    ]);
    expect(config.loras.cachedCombinations).toBe(2);
  });

  it('refuses bad names, names twice in different case, pickles and weights out of range', () => {
    expect(loadError('loras:\n  allowed:\n    "bad name": {}\n').message).toMatch(
      /^config: loras\.allowed\.bad name = \{\} is not allowed: expected a LoRA name of 1–32 letters/,
    );
    expect(loadError('loras:\n  allowed:\n    Pixel: {}\n    pixel: {}\n').message).toMatch(
      /expected a name other than loras\.allowed\.Pixel \(LoRA names ignore case\)/,
    );
    expect(loadError('loras:\n  allowed:\n    pixel: { file: pixel.ckpt }\n').message).toMatch(
      /^config: loras\.allowed\.pixel\.file = "pixel\.ckpt" is not allowed: expected a \.safetensors file in loras\.dir/,
    );
    expect(loadError('loras:\n  allowed:\n    pixel: { weight: 5 }\n').message).toMatch(
      /^config: loras\.allowed\.pixel\.weight = 5 is not allowed: expected a number from -2 to 2/,
    );
  });

  it('finds ComfyUI’s models/loras beside the checkpoints, else <dataDir>/loras; loras.dir wins', () => {
    const dir = workdir();
    mkdirSync(join(dir, 'models', 'loras'), { recursive: true });
    const comfy = loadConfig({ env: { ATELIER_MODELS__DIR: 'models' }, cwd: dir });
    expect(lorasDir(comfy)).toBe(`${dir}/models/loras`);
    const plain = loadConfig({ env: { ATELIER_DATA_DIR: 'data' }, cwd: dir });
    expect(lorasDir(plain)).toBe(`${dir}/data/loras`);
    const set = loadConfig({ env: { ATELIER_LORAS__DIR: 'mine' }, cwd: dir });
    expect(lorasDir(set)).toBe(`${dir}/mine`);
  });
});
