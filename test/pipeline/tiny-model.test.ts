/**
 * The bundled tiny model: deterministic bytes, found complete by discovery, the structure of the
 * golden set's tiny SD3.5 (read from ATELIER_GOLDEN_DIR: structure compared, nothing copied),
 * tokenizers that load and fit the embeddings, and generation on first use.
 */
import { execFile } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discoverModelSet } from '../../src/pipeline/models-dir/discover.js';
import type { ComponentName, ModelSet } from '../../src/pipeline/models-dir/types.js';
import { ComponentWeights } from '../../src/pipeline/models-dir/weight-source.js';
import { resolvedShape } from '../../src/pipeline/onnx/params.js';
import { readTokenizerFiles } from '../../src/pipeline/text/tokenizer-files.js';
import {
  ensureTinyModel,
  TINY_MODEL_CONFIG,
  TINY_MODEL_FILES,
  writeTinyModel,
} from '../../src/pipeline/tiny/index.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import {
  type GoldenE2E,
  type GoldenSet,
  goldenSets,
  manifestPath,
  OWN_GOLDEN_DIR,
} from '../golden/manifest.js';

const execFileAsync = promisify(execFile);
const COMPONENTS: ComponentName[] = ['mmdit', 'vae', 'clipL', 'clipG', 't5'];

let root: string;
let tiny: string;
let set: ModelSet;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-tiny-test-'));
  tiny = join(root, 'a');
  writeTinyModel(tiny);
  set = discoverModelSet({ modelsDir: tiny, dataDir: join(root, 'data') });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A golden set's tiny SD3.5, through discovery (its tokenizers are named in the manifest). */
function goldenModelSet(golden: GoldenSet): ModelSet {
  const e2e = golden.component<GoldenE2E & { tokenizers: string }>('e2e');
  const dataDir = mkdtempSync(join(root, 'golden-data-'));
  mkdirSync(join(dataDir, 'tokenizers'), { recursive: true });
  const dirs = e2e.tokenizers.split(/\s+/).filter((w) => w.includes('/'));
  symlinkSync(golden.path(dirs.find((d) => d.includes('clip'))!), join(dataDir, 'tokenizers/clip'));
  symlinkSync(golden.path(dirs.find((d) => d.includes('t5'))!), join(dataDir, 'tokenizers/t5'));
  return discoverModelSet({ modelsDir: golden.path(manifestPath(e2e.models)), dataDir });
}

/**
 * A component's structure independent of its size: key → rank, with layer indices folded
 * (`joint_blocks.#.`, `decoder.up.#.block.#.`) except the MMDiT's last block, whose context
 * stream is "pre_only" (no projection, no MLP) and must stay visible.
 */
function structure(location: ModelSet['components']['mmdit'], name: ComponentName): Map<string, number> {
  const weights = ComponentWeights.open(location, name);
  try {
    const keys = weights.keys();
    let depth = 0;
    while (keys.some((k) => k.startsWith(`joint_blocks.${depth}.`))) depth++;
    const out = new Map<string, number>();
    for (const key of keys) {
      const pattern = key
        .replace(`joint_blocks.${depth - 1}.`, 'joint_blocks.last.')
        .replace(/\.\d+(?=\.)/g, '.#');
      const rank = resolvedShape(weights.resolve(key)!).length;
      expect(out.get(pattern) ?? rank, pattern).toBe(rank);
      out.set(pattern, rank);
    }
    return out;
  } finally {
    weights.close();
  }
}

describe('the tiny model', () => {
  it('is the same, byte for byte, every time it is generated', () => {
    const again = join(root, 'b');
    writeTinyModel(again);
    for (const file of TINY_MODEL_FILES) {
      expect(readFileSync(join(again, file)).equals(readFileSync(join(tiny, file))), file).toBe(true);
    }
  });

  it('weighs a few MB', () => {
    const total = TINY_MODEL_FILES.reduce((sum, f) => sum + statSync(join(tiny, f)).size, 0);
    expect(total).toBeLessThan(10_000_000);
  });

  it('is a complete SD3.5 set in the ComfyUI layout with its own tokenizers', () => {
    expect(set).toMatchObject({ name: 'atelier-tiny-sd35', family: 'tiny', layout: 'comfyui', notes: [] });
    for (const name of COMPONENTS) expect(set.components[name], name).toBeDefined();
    expect(set.tokenizers).toEqual({ clip: join(tiny, 'tokenizers/clip'), t5: join(tiny, 'tokenizers/t5') });
  });

  it('derives the hyperparameters of its config from its shapes, as the reference does', () => {
    const mmdit = ComponentWeights.open(set.components.mmdit, 'mmdit');
    try {
      const shape = (k: string) => resolvedShape(mmdit.resolve(k)!);
      const { depth, patchSize, latentChannels, posEmbedMaxSize } = TINY_MODEL_CONFIG.mmdit;
      expect(shape('x_embedder.proj.weight')).toEqual([64 * depth, latentChannels, patchSize, patchSize]);
      expect(shape('pos_embed')).toEqual([1, posEmbedMaxSize ** 2, 64 * depth]);
      expect(shape('context_embedder.weight')[1]).toBe(TINY_MODEL_CONFIG.t5.dModel);
      expect(shape('y_embedder.mlp.0.weight')[1]).toBe(
        TINY_MODEL_CONFIG.clipL.hiddenSize + TINY_MODEL_CONFIG.clipG.projectionDim,
      );
      expect(mmdit.keys('joint_blocks.').filter((k) => k.endsWith('attn.qkv.weight'))).toHaveLength(
        2 * depth,
      );
    } finally {
      mmdit.close();
    }
  });

  it('stores small finite fp16 weights, and the hyperparameters shapes cannot carry in its metadata', () => {
    for (const file of TINY_MODEL_FILES.filter((f) => f.endsWith('.safetensors'))) {
      const st = SafetensorsFile.open(join(tiny, file));
      try {
        for (const name of st.names()) {
          expect(st.get(name).dtype).toBe('F16');
          const values = st.readFloat32(name);
          expect(
            values.every((v) => Number.isFinite(v) && Math.abs(v) < 2),
            name,
          ).toBe(true);
        }
        expect(JSON.parse(st.metadata['atelier.config'])).toBeTypeOf('object');
      } finally {
        st.close();
      }
    }
    const clipG = ComponentWeights.open(set.components.clipG, 'clipG');
    expect(JSON.parse(clipG.metadata['atelier.config'])).toMatchObject({
      num_attention_heads: TINY_MODEL_CONFIG.clipG.numAttentionHeads,
      hidden_act: 'gelu',
    });
    clipG.close();
  });

  it('has tokenizers that load and whose ids fit the text encoders', () => {
    const load = (kind: 'clip' | 't5') => {
      const f = readTokenizerFiles(set.tokenizers[kind]!, kind);
      return new Tokenizer(f.tokenizerJson as never, f.tokenizerConfig as never);
    };
    const rows = (name: ComponentName, key: string) => {
      const w = ComponentWeights.open(set.components[name]!, name);
      try {
        return resolvedShape(w.resolve(key)!)[0];
      } finally {
        w.close();
      }
    };
    const clip = load('clip');
    const clipRows = rows('clipL', 'text_model.embeddings.token_embedding.weight');
    expect(rows('clipG', 'text_model.embeddings.token_embedding.weight')).toBe(clipRows);
    const prompt = 'a lighthouse at dusk, oil painting — Zürich 1970s!';
    const ids = clip.encode(prompt).ids;
    expect(ids[0]).toBe(clip.token_to_id('<|startoftext|>'));
    // CLIP pools at the end token, found as the largest id.
    expect(ids.at(-1)).toBe(clipRows - 1);
    expect(clip.token_to_id('<|endoftext|>')).toBe(clipRows - 1);
    expect(Math.max(...ids.slice(0, -1))).toBeLessThan(clipRows - 1);
    expect(clip.encode('painting').tokens).toEqual(['<|startoftext|>', 'painting</w>', '<|endoftext|>']);

    const t5 = load('t5');
    const t5ids = t5.encode(prompt).ids;
    expect(t5ids.at(-1)).toBe(t5.token_to_id('</s>'));
    expect(t5.token_to_id('<pad>')).toBe(0);
    expect(Math.max(...t5ids)).toBeLessThan(rows('t5', 'encoder.embed_tokens.weight'));
    expect(t5.encode('a lighthouse').tokens).toEqual(['▁a', '▁lighthouse', '</s>']);
  });
});

// The project's own set's tiny SD3.5 is this generator's output (smaller): comparing the two would
// prove nothing, so only the other sets' tiny models are compared.
const referenceSets = goldenSets('e2e').filter((golden) => golden.dir !== OWN_GOLDEN_DIR);

describe.each(referenceSets)('the tiny model beside the $name golden set’s tiny SD3.5', (golden) => {
  it('has its files, key names and tensor ranks', () => {
    const theirs = goldenModelSet(golden);
    for (const name of COMPONENTS) {
      const a = set.components[name]!;
      const b = theirs.components[name]!;
      expect(a.prefix, name).toBe(b.prefix);
      expect(a.file.slice(tiny.length).split('/')[1], name).toBe(
        b.file.slice(theirs.root.length).split('/')[1],
      );
      expect(Object.fromEntries(structure(a, name)), name).toEqual(Object.fromEntries(structure(b, name)));
    }
  });
});

describe('ensureTinyModel', () => {
  it('generates the model on first use, then reuses it', async () => {
    const dataDir = join(root, 'ensure');
    const paths = await ensureTinyModel(dataDir);
    expect(paths).toEqual({
      modelsDir: join(dataDir, 'tiny-model'),
      checkpoint: 'atelier-tiny-sd35.safetensors',
      tokenizers: {
        clip: join(dataDir, 'tiny-model/tokenizers/clip'),
        t5: join(dataDir, 'tiny-model/tokenizers/t5'),
      },
    });
    const checkpoint = join(paths.modelsDir, 'checkpoints', paths.checkpoint);
    expect(readFileSync(checkpoint).equals(readFileSync(join(tiny, 'checkpoints', paths.checkpoint)))).toBe(
      true,
    );
    const { ino, mtimeMs } = statSync(checkpoint);
    await ensureTinyModel(dataDir);
    expect(statSync(checkpoint)).toMatchObject({ ino, mtimeMs });
    expect(discoverModelSet({ modelsDir: paths.modelsDir, dataDir }).family).toBe('tiny');
  });

  it('writes it again when a file is missing or an older generator wrote it', async () => {
    const dataDir = join(root, 'repair');
    const paths = await ensureTinyModel(dataDir);
    rmSync(join(paths.modelsDir, 'text_encoders/clip_g.safetensors'));
    await ensureTinyModel(dataDir);
    expect(statSync(join(paths.modelsDir, 'text_encoders/clip_g.safetensors')).size).toBeGreaterThan(0);

    const manifest = join(paths.modelsDir, 'atelier-tiny.json');
    writeFileSync(manifest, JSON.stringify({ ...JSON.parse(readFileSync(manifest, 'utf8')), version: 0 }));
    const before = statSync(join(paths.modelsDir, 'checkpoints', paths.checkpoint)).ino;
    await ensureTinyModel(dataDir);
    expect(statSync(join(paths.modelsDir, 'checkpoints', paths.checkpoint)).ino).not.toBe(before);
    expect(JSON.parse(readFileSync(manifest, 'utf8')).version).toBeGreaterThan(0);
  });

  it('survives two processes generating it at once', async () => {
    const dataDir = join(root, 'race');
    const module = pathToFileURL(join(import.meta.dirname, '../../src/pipeline/tiny/index.ts')).href;
    const code = `const m = await import(${JSON.stringify(module)}); console.log(JSON.stringify(await m.ensureTinyModel(${JSON.stringify(dataDir)})));`;
    const run = () => execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code]);
    const [a, b] = await Promise.all([run(), run()]);
    expect(JSON.parse(a.stdout)).toEqual(JSON.parse(b.stdout));
    expect(discoverModelSet({ modelsDir: join(dataDir, 'tiny-model'), dataDir }).name).toBe(
      'atelier-tiny-sd35',
    );
    for (const file of TINY_MODEL_FILES) {
      expect(
        readFileSync(join(dataDir, 'tiny-model', file)).equals(readFileSync(join(tiny, file))),
        file,
      ).toBe(true);
    }
    // No temporary folder is left behind.
    expect(readdirSync(dataDir)).toEqual(['tiny-model']);
  });
});
