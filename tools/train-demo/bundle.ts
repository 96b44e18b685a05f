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
import { closeSync, cpSync, existsSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readSamplingHint, SAMPLING_HINT_KEY } from '../../src/pipeline/models-dir/sampling-hint.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHECKPOINT = 'checkpoints/atelier-demo-sd35.safetensors';

/** The file with `metadata` merged into its header's `__metadata__`; tensor data untouched. */
export function withMetadata(file: string, metadata: Record<string, string>): Buffer {
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    const header = JSON.parse(headerBuf.toString('utf8')) as Record<string, unknown>;
    header['__metadata__'] = { ...((header['__metadata__'] as Record<string, string>) ?? {}), ...metadata };
    // The data offsets are relative to the end of the header, so only its length changes; pad to 8
    // bytes with spaces as the format allows, which keeps the tensors aligned.
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
    const newHeader = Buffer.from(json, 'utf8');
    const data = Buffer.alloc(size - 8 - headerLen);
    readSync(fd, data, 0, data.length, 8 + headerLen);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(newHeader.length));
    return Buffer.concat([len, newHeader, data]);
  } finally {
    closeSync(fd);
  }
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
