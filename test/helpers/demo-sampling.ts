/**
 * The sampling settings the bundled demo model's checkpoint carries (its `atelier.sampling`
 * metadata), read from the file as discovery reads them, so tests of the default model assert what
 * the file says rather than copied numbers.
 */
import { join } from 'node:path';
import { BUNDLED_MODEL_DIR } from '../../src/app/options.js';
import { readSamplingHint } from '../../src/pipeline/models-dir/sampling-hint.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';

export function demoSampling(): Required<NonNullable<ReturnType<typeof readSamplingHint>['hint']>> {
  const file = join(BUNDLED_MODEL_DIR, 'checkpoints', 'atelier-demo-sd35.safetensors');
  const st = SafetensorsFile.open(file);
  const { hint } = readSamplingHint(st.metadata, file);
  st.close();
  if (!hint?.steps || hint.guidance === undefined || !hint.sampler || !hint.resolution) {
    throw new Error(`${file}: no complete atelier.sampling metadata`);
  }
  return { steps: hint.steps, guidance: hint.guidance, sampler: hint.sampler, resolution: hint.resolution };
}
