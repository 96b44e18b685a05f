/**
 * The random-weight tiny model as the models folder of a test's config: for tests about the bot's
 * behaviour rather than the pictures, which would otherwise run on the bundled demo model (the
 * default) at its 20 steps. Generated once per machine into the temp dir (ensureTinyModel is safe
 * to race and regenerates an outdated copy).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTinyModel } from '../../src/pipeline/tiny/index.js';

/** `ATELIER_MODELS__DIR` and `ATELIER_MODELS__CHECKPOINT` naming the tiny model. */
export async function tinyModelEnv(): Promise<Record<string, string>> {
  const tiny = await ensureTinyModel(join(tmpdir(), 'atelier-test-models'));
  return { ATELIER_MODELS__DIR: tiny.modelsDir, ATELIER_MODELS__CHECKPOINT: tiny.checkpoint };
}
