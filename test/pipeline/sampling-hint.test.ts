/**
 * A checkpoint's own sampling settings (`atelier.sampling` metadata): read by discovery, laid over
 * the family's defaults, and a bad entry ignored with a note naming the file and what is allowed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLED_MODEL_DIR } from '../../src/app/options.js';
import { discoverModelSet } from '../../src/pipeline/models-dir/discover.js';
import { readSamplingHint, SAMPLING_HINT_KEY } from '../../src/pipeline/models-dir/sampling-hint.js';
import { SAMPLING_DEFAULTS, samplingDefaultsOf } from '../../src/pipeline/sampling/defaults.js';
import { TINY_CHECKPOINT, writeTinyModel } from '../../src/pipeline/tiny/index.js';
import { withMetadata } from '../../tools/train-demo/bundle.js';

describe('readSamplingHint', () => {
  const read = (value: string) => readSamplingHint({ [SAMPLING_HINT_KEY]: value }, 'x.safetensors');

  it('reads every field, and any subset', () => {
    expect(read('{"steps": 16, "guidance": 3.5, "sampler": "dpmpp_2m", "resolution": 512}')).toEqual({
      hint: { steps: 16, guidance: 3.5, sampler: 'dpmpp_2m', resolution: 512 },
    });
    expect(read('{"steps": 8}')).toEqual({ hint: { steps: 8 } });
    expect(readSamplingHint({}, 'x.safetensors')).toEqual({});
  });

  it.each([
    ['not json', 'not JSON'],
    ['[1, 2]', 'not an object'],
    ['{"steps": 2.5}', 'steps must be a whole number from 1 to 200'],
    ['{"guidance": "high"}', 'guidance must be a number from 0 to 30'],
    ['{"sampler": "ddim"}', 'sampler must be one of euler, dpmpp_2m'],
    ['{"resolution": 300}', 'resolution must be a multiple of 16 from 64 to 4096'],
  ])('ignores %s with a note saying why', (value, why) => {
    const { hint, note } = read(value);
    expect(hint).toBeUndefined();
    expect(note).toContain('x.safetensors');
    expect(note).toContain(why);
  });
});

describe('discovery with a sampling hint', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'atelier-hint-'));
    writeTinyModel(join(dir, 'models'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const withHint = (value: string) => {
    const file = join(dir, 'models', 'checkpoints', TINY_CHECKPOINT);
    writeFileSync(file, withMetadata(file, { [SAMPLING_HINT_KEY]: value }));
    return discoverModelSet({ modelsDir: join(dir, 'models'), dataDir: dir });
  };

  it("lays the checkpoint's settings over its family's", () => {
    const set = withHint('{"steps": 12, "guidance": 3}');
    expect(set.sampling).toEqual({ steps: 12, guidance: 3 });
    expect(samplingDefaultsOf(set)).toEqual({ ...SAMPLING_DEFAULTS.tiny, steps: 12, guidance: 3 });
  });

  it("keeps the family's defaults and notes a bad entry", () => {
    const set = withHint('{"steps": 0}');
    expect(set.sampling).toBeUndefined();
    expect(samplingDefaultsOf(set)).toEqual(SAMPLING_DEFAULTS.tiny);
    expect(set.notes.join('\n')).toMatch(/atelier\.sampling metadata is ignored: steps must be/);
  });

  it('finds the bundled demo model with its own settings', () => {
    const set = discoverModelSet({ modelsDir: BUNDLED_MODEL_DIR, dataDir: dir });
    expect(set.name).toBe('atelier-demo-sd35');
    expect(set.sampling?.resolution).toBe(256);
    expect(samplingDefaultsOf(set).steps).toBe(set.sampling?.steps);
  });
});
