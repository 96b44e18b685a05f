/**
 * Makes a training run's artefact the bundled demo model: copies `<run>/model` (the scaled-fp8
 * ComfyUI set train.py writes) into `models/demo/` and writes into its checkpoint's metadata the
 * sampling settings chosen by measurement (`atelier.sampling`, read by discovery like any other
 * checkpoint's), plus where the weights came from (`atelier.bundled_from`).
 *
 *   npx tsx tools/train-demo/bundle.ts <run dir> --steps 20 --guidance 4.5 --sampler euler --resolution 256 [--out models/demo]
 *
 * Only the header changes: every tensor's bytes are copied as they are.
 */
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readSamplingHint, SAMPLING_HINT_KEY } from '../../src/pipeline/models-dir/sampling-hint.js';
import { safetensorsHeaderBytes } from '../../src/pipeline/weights/safetensors.js';
import { encodeSafetensorsHeader } from '../../src/pipeline/weights/safetensors-writer.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHECKPOINT = 'checkpoints/atelier-demo-sd35.safetensors';

/** The file with `metadata` merged into its header's `__metadata__`; tensor data untouched. */
export function withMetadata(file: string, metadata: Record<string, string>): Buffer {
  const headerBytes = safetensorsHeaderBytes(file);
  const header = JSON.parse(headerBytes.toString('utf8')) as Record<string, unknown>;
  header['__metadata__'] = { ...(header['__metadata__'] as Record<string, string> | undefined), ...metadata };
  // The data offsets count from the end of the header, so only its length changes.
  const data = readFileSync(file).subarray(8 + headerBytes.length);
  return Buffer.concat([encodeSafetensorsHeader(header), data]);
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      steps: { type: 'string' },
      guidance: { type: 'string' },
      sampler: { type: 'string' },
      resolution: { type: 'string' },
      out: { type: 'string', default: join(ROOT, 'models/demo') },
    },
  });
  const run = positionals[0];
  if (!run || !existsSync(join(run, 'model', CHECKPOINT))) {
    throw new Error(
      `usage: bundle.ts <run dir with model/${CHECKPOINT}> --steps N --guidance G --sampler S --resolution PX`,
    );
  }
  const sampling = {
    steps: Number(values.steps),
    guidance: Number(values.guidance),
    sampler: values.sampler,
    resolution: Number(values.resolution),
  };
  const text = JSON.stringify(sampling);
  const { note } = readSamplingHint({ [SAMPLING_HINT_KEY]: text }, 'the bundled checkpoint');
  if (note) throw new Error(note);
  const out = resolve(values.out!);
  rmSync(out, { recursive: true, force: true });
  cpSync(join(run, 'model'), out, { recursive: true });
  const file = join(out, CHECKPOINT);
  writeFileSync(
    file,
    withMetadata(join(run, 'model', CHECKPOINT), {
      [SAMPLING_HINT_KEY]: text,
      'atelier.bundled_from': basename(resolve(run)),
    }),
  );
  console.log(`${out}: ${text}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
