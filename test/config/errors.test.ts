import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { workdir } from './helpers.js';

/** The ConfigError that loading throws, or a failure if it loads. */
function loadError(env: Record<string, string>, files: Record<string, string> = {}): ConfigError {
  const cwd = workdir(files);
  try {
    loadConfig({ env, cwd });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected loadConfig to throw');
}

describe('config errors name the key, the value, what is allowed and where it came from', () => {
  it('a bad environment value', () => {
    const error = loadError({ ATELIER_QUEUE__CONCURRENCY: 'abc' });
    expect(error.message).toBe(
      'config: queue.concurrency = "abc" is not allowed: expected an integer from 1 to 64 (from env ATELIER_QUEUE__CONCURRENCY)',
    );
    expect(error.key).toBe('queue.concurrency');
    expect(error.message).not.toContain('\n');
  });

  it('a bad value in the override file, with its line', () => {
    const error = loadError(
      { ATELIER_CONFIG: 'atelier.yaml' },
      { 'atelier.yaml': 'queue:\n  concurrency: 1\n  maxQueuedPerUser: 0\n' },
    );
    expect(error.message).toBe(
      'config: queue.maxQueuedPerUser = 0 is not allowed: expected an integer ≥ 1 (from override file atelier.yaml:3)',
    );
  });

  it('a bad value from .env says so', () => {
    const error = loadError({}, { '.env': 'PLAYGROUND_PORT=99999\n' });
    expect(error.message).toBe(
      'config: playground.port = 99999 is not allowed: expected a port number from 0 to 65535 (0 picks any free port) (from .env PLAYGROUND_PORT)',
    );
  });

  it('a setting missing from the defaults file names that file', () => {
    const cwd = workdir({ 'defaults.yaml': 'dataDir: ./data\n' });
    expect(() => loadConfig({ env: {}, cwd, defaultsFile: `${cwd}/defaults.yaml` })).toThrow(
      'config: log is missing from default file defaults.yaml: expected a section of settings (a mapping of keys to values) (+12 more config problems)',
    );
  });

  it('an enum value lists the choices', () => {
    const error = loadError({ ATELIER_MODELS__EXECUTION_PROVIDER: 'tpu' });
    expect(error.message).toBe(
      'config: models.executionProvider = "tpu" is not allowed: expected one of cpu, cuda (from env ATELIER_MODELS__EXECUTION_PROVIDER)',
    );
  });

  it('an item of a list', () => {
    const error = loadError({ ATELIER_GENERATION__ASPECT__ALLOWED: '1:1,5:4' });
    expect(error.message).toBe(
      'config: generation.aspect.allowed[1] = "5:4" is not allowed: expected one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, 21:9 (from env ATELIER_GENERATION__ASPECT__ALLOWED)',
    );
  });

  it('settings that contradict each other', () => {
    expect(loadError({ ATELIER_LIMITS__USER__BURST: '2' }).message).toBe(
      'config: limits.user.burst = 2 is not allowed: expected at least generation.count.max (4), or a job of 4 images could never start (from env ATELIER_LIMITS__USER__BURST)',
    );
    expect(loadError({ ATELIER_GENERATION__STEPS__DEFAULT: '150' }).message).toBe(
      'config: generation.steps.default = 150 is not allowed: expected null or a number from 1 to 100 (generation.steps.min … max) (from env ATELIER_GENERATION__STEPS__DEFAULT)',
    );
    expect(
      loadError({ ATELIER_GENERATION__ASPECT__DEFAULT: '21:9', ATELIER_GENERATION__ASPECT__ALLOWED: '1:1' })
        .message,
    ).toContain(
      'generation.aspect.default = "21:9" is not allowed: expected one of generation.aspect.allowed (1:1)',
    );
  });

  it('counts the other problems instead of hiding them', () => {
    const error = loadError({ ATELIER_QUEUE__CONCURRENCY: '0', ATELIER_QUEUE__MAX_QUEUED: '-1' });
    expect(error.message).toMatch(
      /^config: queue\.concurrency = 0 is not allowed: .* \(\+1 more config problem\)$/,
    );
  });
});

describe('models.precision', () => {
  it('takes fp8-weights beside fp8, fp16, fp32 and auto', () => {
    for (const precision of ['auto', 'fp8', 'fp8-weights', 'fp16', 'fp32'])
      expect(
        loadConfig({ env: { ATELIER_MODELS__PRECISION: precision }, cwd: workdir() }).models.precision,
      ).toBe(precision);
  });

  it('refuses another value, naming the key and every allowed value', () => {
    const error = loadError({ ATELIER_MODELS__PRECISION: 'int8' });
    expect(error.key).toBe('models.precision');
    expect(error.message).toBe(
      'config: models.precision = "int8" is not allowed: expected one of auto, fp8, fp8-weights, fp16, fp32 (from env ATELIER_MODELS__PRECISION)',
    );
  });

  it('suggests the value a near miss was meant to be', () => {
    expect(loadError({ ATELIER_MODELS__PRECISION: 'fp8_weights' }).message).toBe(
      'config: models.precision = "fp8_weights" is not allowed: expected one of auto, fp8, fp8-weights, fp16, fp32 (from env ATELIER_MODELS__PRECISION); did you mean fp8-weights?',
    );
    expect(loadError({ ATELIER_MODELS__PRECISION: 'fp8-weigths' }).message).toMatch(
      /; did you mean fp8-weights\?$/,
    );
    const yaml = loadError(
      { ATELIER_CONFIG: 'atelier.yaml' },
      { 'atelier.yaml': 'models:\n  precision: FP16\n' },
    );
    expect(yaml.message).toBe(
      'config: models.precision = "FP16" is not allowed: expected one of auto, fp8, fp8-weights, fp16, fp32 (from override file atelier.yaml:2); did you mean fp16?',
    );
  });

  it('suggests nothing for a short word that is another choice one letter away', () => {
    // "tpu" is one edit from "cpu", but it is no typo of it: the line stays as it was.
    expect(loadError({ ATELIER_MODELS__EXECUTION_PROVIDER: 'tpu' }).message).not.toContain('did you mean');
  });
});

describe('unknown keys are errors', () => {
  it('a typo in an environment variable suggests the setting', () => {
    expect(loadError({ ATELIER_QUEUE__CONCURENCY: '2' }).message).toBe(
      'config: queue.concurency is not a known setting (from env ATELIER_QUEUE__CONCURENCY); did you mean queue.concurrency?',
    );
  });

  it('a snake_case key in YAML suggests the camelCase one', () => {
    const error = loadError(
      { ATELIER_CONFIG: 'atelier.yaml' },
      { 'atelier.yaml': 'queue:\n  max_queued_per_user: 5\n' },
    );
    expect(error.message).toBe(
      'config: queue.max_queued_per_user is not a known setting (from override file atelier.yaml:2); did you mean queue.maxQueuedPerUser?',
    );
  });

  it('an unknown section lists the known ones', () => {
    const error = loadError({ ATELIER_CONFIG: 'atelier.yaml' }, { 'atelier.yaml': 'gpu:\n  count: 2\n' });
    expect(error.message).toMatch(
      /^config: gpu is not a known setting \(from override file atelier\.yaml:1\); known keys: dataDir, log, queue, /,
    );
  });

  it('a variable name that does not follow the scheme', () => {
    expect(loadError({ ATELIER_QUEUE___CONCURRENCY: '2' }).message).toMatch(
      /^config: ATELIER_QUEUE___CONCURRENCY is not allowed: expected a name like/,
    );
  });
});

describe('files that cannot be used', () => {
  it('ATELIER_CONFIG naming a missing file', () => {
    const error = loadError({ ATELIER_CONFIG: 'nope.yaml' });
    expect(error.message).toMatch(
      /^config: ATELIER_CONFIG = "nope\.yaml" is not allowed: expected a readable YAML file \(there is no file at .*nope\.yaml\)$/,
    );
  });

  it('invalid YAML, with its line', () => {
    const error = loadError(
      { ATELIER_CONFIG: 'atelier.yaml' },
      { 'atelier.yaml': 'queue:\n  concurrency: [1\n' },
    );
    expect(error.message).toMatch(/^config: atelier\.yaml:\d+ is not valid YAML: /);
  });

  it('a YAML file that is not a mapping', () => {
    const error = loadError({ ATELIER_CONFIG: 'atelier.yaml' }, { 'atelier.yaml': '- a\n- b\n' });
    expect(error.message).toContain('expected a YAML mapping of sections');
  });

  it('a duplicated key', () => {
    const error = loadError(
      { ATELIER_CONFIG: 'atelier.yaml' },
      { 'atelier.yaml': 'queue:\n  concurrency: 1\n  concurrency: 2\n' },
    );
    expect(error.message).toMatch(/^config: atelier\.yaml:3 is not valid YAML: /);
  });

  it('an empty override file changes nothing', () => {
    const cwd = workdir({ 'atelier.yaml': '# nothing yet\n' });
    expect(loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml' }, cwd }).queue.concurrency).toBe(1);
  });
});
