/**
 * Issue 13's checks on the bundled demo model (models/demo), reached as `npm start` reaches it: the
 * default config (no models folder) through the ordinary discovery, on the CPU, at the settings its
 * checkpoint suggests. A fixed prompt and seed give the same pixels twice; colour, position and count
 * of a few fixed prompts are judged by the evaluator's analysis (the only image-content assertions),
 * and a picture judged against another prompt fails them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertScene, type SceneExpectation } from '../../bench/demo-eval/analyse.js';
import { resolveOptions } from '../../bench/demo-eval/options.js';
import { BUNDLED_MODEL_DIR, engineOptions } from '../../src/app/options.js';
import { loadConfig } from '../../src/config/index.js';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { GenerationRequest, RawImage } from '../../src/pipeline/types.js';
import { demoSampling } from '../helpers/demo-sampling.js';

const { vocabulary } = resolveOptions([]);

/** Prompts the demo model should draw right, with what the picture must show. */
const FIXED: { prompt: string; seed: number; expected: SceneExpectation }[] = [
  {
    prompt: 'a yellow star in the top left corner on a dark blue background',
    seed: 1,
    expected: { background: 'dark blue', colour: 'yellow', position: 'top left', count: 1 },
  },
  {
    prompt: 'two red circles on a white background',
    seed: 2,
    expected: { background: 'white', colour: 'red', count: 2 },
  },
  {
    prompt: 'a large green square at the bottom on a light blue background',
    seed: 3,
    expected: { background: 'light blue', colour: 'green', position: 'bottom', count: 1 },
  },
];

describe('the bundled demo model', () => {
  let engine: Sd35Engine;
  let dataDir: string;
  let request: (prompt: string, seed: number) => GenerationRequest;
  const images = new Map<string, RawImage>();

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'atelier-demo-model-'));
    const config = loadConfig({ env: { ATELIER_DATA_DIR: dataDir }, cwd: dataDir });
    engine = new Sd35Engine(await engineOptions(config));
    await engine.load();
    const d = engine.info().defaults;
    request = (prompt, seed) => ({
      prompt,
      negativePrompt: '',
      seed,
      count: 1,
      steps: d.steps,
      guidance: d.guidance,
      sampler: d.sampler,
      width: d.resolution,
      height: d.resolution,
    });
    for (const { prompt, seed } of FIXED) {
      images.set(prompt, (await engine.generate(request(prompt, seed))).images[0]!);
    }
  }, 300_000);

  afterAll(async () => {
    await engine?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('is what the default config loads, with the settings its checkpoint suggests', () => {
    const info = engine.info();
    expect(info.model).toBe('atelier-demo-sd35');
    expect(info.components.find((c) => c.name === 'mmdit')?.file).toContain(BUNDLED_MODEL_DIR);
    expect(info.defaults).toMatchObject(demoSampling());
  });

  it('gives the same pixels for the same prompt and seed', async () => {
    const { prompt, seed } = FIXED[0]!;
    const again = (await engine.generate(request(prompt, seed))).images[0]!;
    expect(Buffer.from(again.data).equals(Buffer.from(images.get(prompt)!.data))).toBe(true);
  });

  it.each(FIXED)('draws "$prompt"', ({ prompt, expected }) => {
    const check = assertScene(images.get(prompt)!, expected, { vocabulary });
    expect(check.failures).toEqual([]);
  });

  it('fails the checks for a picture of another prompt', () => {
    // The yellow star's picture, judged as "two red circles on a white background".
    const check = assertScene(images.get(FIXED[0]!.prompt)!, FIXED[1]!.expected, { vocabulary });
    expect(check.ok).toBe(false);
    expect(check.verdicts.colour?.ok).toBe(false);
    expect(check.verdicts.background?.ok).toBe(false);
  });
});
