/**
 * Issue 13's content checks on the trained demo model: colour, position and count of a few fixed
 * prompts, judged by the evaluator's analysis, and a wrong prompt that fails them. Kept out of
 * `npm test` (the name is not *.test.ts) until the trained model is bundled and passes: then it
 * moves to test/demo-eval/demo-model.test.ts without the skip (copy it there to run it by hand).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { RawImage } from '../../src/pipeline/types.js';
import { assertScene, type SceneExpectation } from './analyse.js';
import { resolveOptions } from './options.js';
import { missingModel } from './runner.js';

const { modelsDir, vocabulary } = resolveOptions([]);
const missing = missingModel(modelsDir);

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

describe.skipIf(missing !== undefined)(`the demo model draws what is asked (${missing ?? modelsDir})`, () => {
  let engine: Sd35Engine;
  let dataDir: string;
  const images = new Map<string, RawImage>();

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'atelier-demo-model-'));
    engine = new Sd35Engine({ modelsDir, dataDir, runtime: 'stock' });
    await engine.load();
    const d = engine.info().defaults;
    for (const { prompt, seed } of FIXED) {
      const out = await engine.generate({
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
      images.set(prompt, out.images[0]!);
    }
  }, 300_000);

  afterAll(async () => {
    await engine?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it.each(FIXED)('$prompt', ({ prompt, expected }) => {
    const check = assertScene(images.get(prompt)!, expected, { vocabulary });
    expect(check.failures).toEqual([]);
  });

  it('a picture of another prompt fails the checks', () => {
    // The yellow star's picture, judged as "two red circles on a white background".
    const check = assertScene(images.get(FIXED[0]!.prompt)!, FIXED[1]!.expected, { vocabulary });
    expect(check.ok).toBe(false);
    expect(check.verdicts.colour?.ok).toBe(false);
    expect(check.verdicts.background?.ok).toBe(false);
  });
});
