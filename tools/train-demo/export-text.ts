/**
 * Writes the demo model's tokenizers and text encoders into tools/train-demo/text/, with the
 * product's own tiny-model generator (src/pipeline/tiny): the same BPE/Unigram builders, the same
 * seeded initialisation and the same tiny encoder widths, but vocabularies learned from the drawn
 * world's words (world.json), so that every caption word is one token. The encoders stay frozen at
 * this initialisation: training (train.py) reads these files and copies them into the artefact.
 *
 *   npx tsx tools/train-demo/export-text.ts [outDir]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clipTokenizerConfig, clipTokenizerJson } from '../../src/pipeline/text/clip-tokenizer-json.js';
import { trainClipBpe } from '../../src/pipeline/tiny/clip-bpe.js';
import { TINY_MODEL_CONFIG, type TinyModelConfig } from '../../src/pipeline/tiny/config.js';
import { writeTinyTextEncoders } from '../../src/pipeline/tiny/generate.js';
import { buildT5Vocab, t5TokenizerConfig, t5TokenizerJson } from '../../src/pipeline/tiny/t5-unigram.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const DEMO_MODEL_NAME = 'atelier-demo-sd35';
export const DEMO_TEXT_SEED = 35_000_002;

/** Words of the captions world.py writes, beyond the vocabulary in world.json. */
const FUNCTION_WORDS = `a an the one of on in at and with under above below against plain background
  picture landscape sky ground stripes striped horizontal vertical corner middle center centre left right
  top bottom`;

interface World {
  colours: Record<string, unknown>;
  colour_aliases: Record<string, string>;
  shapes: Record<string, { plural: string }>;
  sizes: Record<string, number>;
  size_aliases: Record<string, string>;
  positions: Record<string, unknown>;
  position_aliases: Record<string, string>;
  counts: Record<string, number>;
  relations: Record<string, unknown>;
}

export function worldWords(world: World): string[] {
  const words = new Set<string>(FUNCTION_WORDS.split(/\s+/).filter(Boolean));
  const add = (phrase: string) => {
    for (const w of phrase.split(/\s+/)) if (w) words.add(w);
  };
  for (const group of [
    world.colours,
    world.colour_aliases,
    world.sizes,
    world.size_aliases,
    world.positions,
    world.position_aliases,
    world.counts,
    world.relations,
  ])
    for (const k of Object.keys(group)) add(k);
  for (const [shape, { plural }] of Object.entries(world.shapes)) {
    add(shape);
    add(plural);
  }
  return [...words].sort();
}

function json(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 1)}\n`);
}

export function writeDemoText(outDir: string): void {
  const world = JSON.parse(readFileSync(join(HERE, 'world.json'), 'utf8')) as World;
  const words = worldWords(world);
  // Each word several times, one per line: every word's pairs repeat, so BPE merges it whole.
  const corpus = words.map((w) => `${w}\n`.repeat(4)).join('');
  const cfg: TinyModelConfig = { ...TINY_MODEL_CONFIG, seed: DEMO_TEXT_SEED };
  const clipVocab = trainClipBpe(corpus, 5000);
  const t5Vocab = buildT5Vocab(corpus, 1000);
  const clipSize = Object.keys(clipVocab.vocab).length;
  for (const sub of ['text_encoders', 'tokenizers/clip', 'tokenizers/t5'])
    mkdirSync(join(outDir, sub), { recursive: true });
  json(
    join(outDir, 'tokenizers/clip/tokenizer.json'),
    clipTokenizerJson(clipVocab, 'the demo CLIP vocabulary'),
  );
  json(join(outDir, 'tokenizers/clip/tokenizer_config.json'), clipTokenizerConfig());
  json(join(outDir, 'tokenizers/t5/tokenizer.json'), t5TokenizerJson(t5Vocab));
  json(join(outDir, 'tokenizers/t5/tokenizer_config.json'), t5TokenizerConfig());
  writeTinyTextEncoders(
    outDir,
    cfg,
    { clip: clipSize, t5: t5Vocab.length },
    { model: DEMO_MODEL_NAME, t5File: 't5xxl_demo.safetensors' },
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = process.argv[2] ?? join(HERE, 'text');
  writeDemoText(out);
  console.log(`wrote ${out}`);
}
