/** Styles (`styles`) and the two variation strengths (`generation.variation.subtle/strong`) in the config. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { workdir } from './helpers.js';

function load(yaml: string, env: Record<string, string> = {}) {
  return loadConfig({
    env: { ATELIER_CONFIG: 'atelier.yaml', ...env },
    cwd: workdir({ 'atelier.yaml': yaml }),
  });
}

function loadError(yaml: string, env: Record<string, string> = {}): ConfigError {
  try {
    load(yaml, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected loadConfig to throw');
}

describe('generation.variation', () => {
  it('has a subtle and a strong strength beside the V1–V4 one', () => {
    expect(load('').generation.variation).toEqual({ strength: 0.6, subtle: 0.35, strong: 0.75 });
    expect(load('generation:\n  variation: {subtle: 0.2, strong: 0.9}\n').generation.variation).toMatchObject(
      {
        subtle: 0.2,
        strong: 0.9,
      },
    );
  });

  it('refuses a subtle strength that is not below the strong one, naming the key', () => {
    const error = loadError('generation:\n  variation:\n    subtle: 0.8\n');
    expect(error.key).toBe('generation.variation.subtle');
    expect(error.message).toBe(
      'config: generation.variation.subtle = 0.8 is not allowed: expected a number below generation.variation.strong (0.75): Vary (Subtle) must change less than Vary (Strong) (from override file atelier.yaml:3)',
    );
  });

  it('refuses strengths outside (0, 1]', () => {
    const error = loadError('', { ATELIER_GENERATION__VARIATION__STRONG: '0' });
    expect(error.message).toBe(
      'config: generation.variation.strong = 0 is not allowed: expected a number > 0 and ≤ 1 (from env ATELIER_GENERATION__VARIATION__STRONG)',
    );
  });
});

describe('styles', () => {
  it('none by default; an override file and the environment add them', () => {
    expect(load('').styles).toEqual({});
    const config = load(
      'styles:\n  cinematic: {prompt: "{prompt}, cinematic still", negative: "cartoon"}\n',
      { ATELIER_STYLES__ANIME__PROMPT: 'anime key visual of {prompt}' },
    );
    expect(config.styles).toEqual({
      cinematic: { prompt: '{prompt}, cinematic still', negative: 'cartoon' },
      anime: { prompt: 'anime key visual of {prompt}' },
    });
  });

  it('a prompt without {prompt} names the key and says what is needed', () => {
    const error = loadError('styles:\n  noir:\n    prompt: film noir still\n');
    expect(error.key).toBe('styles.noir.prompt');
    expect(error.message).toMatch(
      /^config: styles\.noir\.prompt = "film noir still" is not allowed: expected a prompt template containing \{prompt\}.*\(from override file atelier\.yaml:2\)$/,
    );
  });

  it('a bad name, the reserved name none and names that differ only in case are refused', () => {
    expect(loadError('styles:\n  "oil paint": {prompt: "{prompt}"}\n').message).toMatch(
      /^config: styles\.oil paint = .* expected a style name of 1–32 letters, digits, - or _/,
    );
    expect(loadError('styles:\n  none: {prompt: "{prompt}"}\n').key).toBe('styles.none');
    expect(
      loadError('styles:\n  Noir: {prompt: "{prompt}"}\n  noir: {prompt: "{prompt}, b&w"}\n').message,
    ).toMatch(/^config: styles\.noir = .* expected a name other than styles\.Noir/);
  });

  it('an unknown key in a style suggests the right one; a style that is not a mapping says what is', () => {
    expect(loadError('styles:\n  noir: {prompt: "{prompt}", negativ: "color"}\n').message).toBe(
      'config: styles.noir.negativ is not a known setting (from override file atelier.yaml:2); did you mean styles.noir.negative?',
    );
    expect(loadError('styles:\n  noir: "{prompt}, noir"\n').message).toMatch(
      /^config: styles\.noir = "\{prompt\}, noir" is not allowed: expected a style: \{ prompt:/,
    );
  });
});
