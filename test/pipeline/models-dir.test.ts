/**
 * Discovery in ComfyUI models folders as users have them: real safetensors files in temp dirs
 * whose headers carry the keys and shapes of SD3.5 checkpoints and text encoders (weights are
 * zeros: discovery reads headers only), plus the bundled tiny model written for real.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.js';
import { discoverModelSet } from '../../src/pipeline/models-dir/discover.js';
import { ComponentWeights } from '../../src/pipeline/models-dir/weight-source.js';
import { resolvedShape } from '../../src/pipeline/onnx/params.js';
import { writeTinyModel } from '../../src/pipeline/tiny/generate.js';
import { writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';

/** Rows of the stub text encoders' embeddings: more than the tiny tokenizers' ids. */
const CLIP_ROWS = 1000;
const T5_ROWS = 400;

let tiny: string;
let root: string;
let models: string;
let data: string;

beforeAll(() => {
  tiny = mkdtempSync(join(tmpdir(), 'atelier-tiny-'));
  writeTinyModel(tiny);
});
afterAll(() => rmSync(tiny, { recursive: true, force: true }));

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-models-'));
  models = join(root, 'models');
  data = join(root, 'data');
  mkdirSync(models);
  // `atelier models pull` puts tokenizers here; ComfyUI folders have none of their own.
  cpSync(join(tiny, 'tokenizers'), join(data, 'tokenizers'), { recursive: true });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** A safetensors file with these tensors (fp16 zeros). */
function stub(path: string, shapes: Record<string, number[]>, metadata?: Record<string, string>): void {
  mkdirSync(dirname(path), { recursive: true });
  const tensors = Object.entries(shapes).map(([name, shape]) => ({
    name,
    dtype: 'F16' as const,
    shape,
    data: new Uint16Array(shape.reduce((a, d) => a * d, 1)),
  }));
  writeSafetensors(path, tensors, metadata);
}

function mmditKeys(prefix: string, depth: number, dual = false): Record<string, number[]> {
  return {
    [`${prefix}x_embedder.proj.weight`]: [64 * depth, 16, 2, 2],
    [`${prefix}joint_blocks.0.x_block.attn.qkv.weight`]: [3, 2],
    [`${prefix}joint_blocks.0.context_block.adaLN_modulation.1.weight`]: [6, 2],
    ...(dual ? { [`${prefix}joint_blocks.0.x_block.attn2.qkv.weight`]: [3, 2] } : {}),
  };
}

const vaeKeys = (prefix: string) => ({
  [`${prefix}decoder.conv_in.weight`]: [4, 16, 3, 3],
  [`${prefix}encoder.conv_in.weight`]: [4, 3, 3, 3],
});

function clipKeys(prefix: string, layers: number, width = 8): Record<string, number[]> {
  const keys: Record<string, number[]> = {
    [`${prefix}text_model.embeddings.position_embedding.weight`]: [77, width],
    [`${prefix}text_model.embeddings.token_embedding.weight`]: [CLIP_ROWS, width],
  };
  for (let i = 0; i < layers; i++)
    keys[`${prefix}text_model.encoder.layers.${i}.mlp.fc1.weight`] = [2, width];
  return keys;
}

const t5Keys = (prefix: string) => ({
  [`${prefix}encoder.embed_tokens.weight`]: [T5_ROWS, 8],
  [`${prefix}encoder.block.0.layer.0.SelfAttention.q.weight`]: [8, 8],
});

/** SD3.5 Large as Stability ships it: MMDiT and VAE in the checkpoint, text encoders beside it. */
function largeFolder(): void {
  stub(join(models, 'checkpoints/sd3.5_large.safetensors'), {
    ...mmditKeys('model.diffusion_model.', 38),
    ...vaeKeys('first_stage_model.'),
  });
  stub(join(models, 'text_encoders/clip_l.safetensors'), clipKeys('', 12));
  stub(join(models, 'text_encoders/clip_g.safetensors'), clipKeys('', 32));
  stub(join(models, 'text_encoders/t5xxl_fp16.safetensors'), t5Keys(''));
  stub(join(models, 'text_encoders/t5xxl_fp8_e4m3fn.safetensors'), t5Keys(''));
}

const discover = (extra: Partial<Parameters<typeof discoverModelSet>[0]> = {}) =>
  discoverModelSet({ modelsDir: models, dataDir: data, ...extra });

function discoveryError(extra: Partial<Parameters<typeof discoverModelSet>[0]> = {}): ModelError {
  try {
    discover(extra);
  } catch (error) {
    expect(error).toBeInstanceOf(ModelError);
    return error as ModelError;
  }
  throw new Error('discovery succeeded');
}

describe('discoverModelSet in a ComfyUI folder', () => {
  it('finds the bundled tiny model complete, with the tokenizers next to its weights', () => {
    const set = discoverModelSet({ modelsDir: tiny, dataDir: data });
    const ckpt = join(tiny, 'checkpoints/atelier-tiny-sd35.safetensors');
    expect(set).toMatchObject({
      name: 'atelier-tiny-sd35',
      family: 'tiny',
      layout: 'comfyui',
      root: tiny,
      notes: [],
    });
    expect(set.components.mmdit).toEqual({
      file: ckpt,
      prefix: 'model.diffusion_model.',
      format: 'reference',
      files: [ckpt],
    });
    expect(set.components.vae).toMatchObject({ file: ckpt, prefix: 'first_stage_model.' });
    expect(set.components.clipL.file).toBe(join(tiny, 'text_encoders/clip_l.safetensors'));
    expect(set.components.clipG.file).toBe(join(tiny, 'text_encoders/clip_g.safetensors'));
    expect(set.components.t5?.file).toBe(join(tiny, 'text_encoders/t5xxl_tiny.safetensors'));
    expect(set.tokenizers).toEqual({ clip: join(tiny, 'tokenizers/clip'), t5: join(tiny, 'tokenizers/t5') });
  });

  it('finds SD3.5 Large with separate text encoders, fp8 T5 first unless fp16 is preferred', () => {
    largeFolder();
    const set = discover();
    expect(set.family).toBe('sd3.5-large');
    expect(set.name).toBe('sd3.5_large');
    expect(set.components.mmdit.prefix).toBe('model.diffusion_model.');
    expect(set.components.vae.prefix).toBe('first_stage_model.');
    expect(set.components.clipL).toMatchObject({
      file: join(models, 'text_encoders/clip_l.safetensors'),
      prefix: '',
    });
    expect(set.components.clipG.file).toBe(join(models, 'text_encoders/clip_g.safetensors'));
    expect(set.components.t5?.file).toBe(join(models, 'text_encoders/t5xxl_fp8_e4m3fn.safetensors'));
    expect(set.tokenizers).toEqual({ clip: join(data, 'tokenizers/clip'), t5: join(data, 'tokenizers/t5') });
    expect(discover({ t5Preference: 'fp16' }).components.t5?.file).toBe(
      join(models, 'text_encoders/t5xxl_fp16.safetensors'),
    );
    expect(discover({ textEncoders: { t5: 't5xxl_fp16' } }).components.t5?.file).toBe(
      join(models, 'text_encoders/t5xxl_fp16.safetensors'),
    );
  });

  it('points into a checkpoint that bundles the text encoders and the VAE', () => {
    largeFolder();
    rmSync(join(models, 'checkpoints/sd3.5_large.safetensors'));
    const ckpt = join(models, 'checkpoints/sd3.5_large_fp8_scaled.safetensors');
    stub(ckpt, {
      ...mmditKeys('model.diffusion_model.', 38),
      ...vaeKeys('first_stage_model.'),
      ...clipKeys('text_encoders.clip_l.transformer.', 12),
      ...clipKeys('text_encoders.clip_g.transformer.', 32, 16),
      ...t5Keys('text_encoders.t5xxl.transformer.'),
    });
    const set = discover();
    expect(set.components.clipL).toMatchObject({ file: ckpt, prefix: 'text_encoders.clip_l.transformer.' });
    expect(set.components.clipG).toMatchObject({ file: ckpt, prefix: 'text_encoders.clip_g.transformer.' });
    expect(set.components.t5).toMatchObject({ file: ckpt, prefix: 'text_encoders.t5xxl.transformer.' });
    const clipG = ComponentWeights.open(set.components.clipG, 'clipG');
    try {
      expect(resolvedShape(clipG.resolve('text_model.embeddings.position_embedding.weight')!)).toEqual([
        77, 16,
      ]);
      expect(clipG.keys('text_model.encoder.layers.31.')).toEqual([
        'text_model.encoder.layers.31.mlp.fc1.weight',
      ]);
    } finally {
      clipG.close();
    }
  });

  it('tells the families apart: Large, Turbo by name or metadata, Medium by its dual attention', () => {
    const ckpt = (name: string, shapes: Record<string, number[]>, metadata?: Record<string, string>) => {
      rmSync(join(models, 'checkpoints'), { recursive: true, force: true });
      stub(join(models, 'checkpoints', name), { ...shapes, ...vaeKeys('first_stage_model.') }, metadata);
      return discover().family;
    };
    largeFolder();
    expect(ckpt('sd3.5_large_turbo.safetensors', mmditKeys('model.diffusion_model.', 38))).toBe(
      'sd3.5-large-turbo',
    );
    expect(
      ckpt('mine.safetensors', mmditKeys('model.diffusion_model.', 38), {
        'modelspec.title': 'Stable Diffusion 3.5 Large Turbo',
      }),
    ).toBe('sd3.5-large-turbo');
    expect(ckpt('mine.safetensors', mmditKeys('model.diffusion_model.', 38))).toBe('sd3.5-large');
    expect(ckpt('sd3.5_medium.safetensors', mmditKeys('model.diffusion_model.', 24, true))).toBe(
      'sd3.5-medium',
    );
    expect(ckpt('sd3_medium.safetensors', mmditKeys('model.diffusion_model.', 24))).toBe('custom');
    // A diffusion-model file without the `model.diffusion_model.` prefix.
    expect(ckpt('bare.safetensors', mmditKeys('', 2))).toBe('tiny');
  });

  it('finds text encoders in the older clip/ folder, by name, or by depth when the name does not say', () => {
    stub(join(models, 'checkpoints/sd3.5_medium.safetensors'), {
      ...mmditKeys('model.diffusion_model.', 24, true),
      ...vaeKeys('first_stage_model.'),
    });
    stub(join(models, 'clip/SD3/sd3_5_clip_g.safetensors'), clipKeys('', 32));
    stub(join(models, 'clip/openai-vit-l-text.safetensors'), clipKeys('', 12));
    stub(join(models, 'clip/llama.safetensors'), { 'model.layers.0.mlp.up_proj.weight': [2, 2] });
    const set = discover();
    expect(set.components.clipG.file).toBe(join(models, 'clip/SD3/sd3_5_clip_g.safetensors'));
    expect(set.components.clipL.file).toBe(join(models, 'clip/openai-vit-l-text.safetensors'));
  });

  it('runs without T5 when none is there, and says so', () => {
    largeFolder();
    rmSync(join(models, 'text_encoders/t5xxl_fp16.safetensors'));
    rmSync(join(models, 'text_encoders/t5xxl_fp8_e4m3fn.safetensors'));
    rmSync(join(data, 'tokenizers/t5'), { recursive: true });
    const set = discover();
    expect(set.components.t5).toBeUndefined();
    expect(set.tokenizers).toEqual({ clip: join(data, 'tokenizers/clip') });
    expect(set.notes).toEqual([
      expect.stringMatching(
        /^No T5-XXL text encoder .*prompts are encoded by the CLIP encoders alone, with zeros in place of T5/,
      ),
    ]);
  });

  it('prefers Large among several checkpoints, says which others it saw, and takes the one named in the config', () => {
    largeFolder();
    stub(join(models, 'checkpoints/SD3/sd3.5_medium.safetensors'), {
      ...mmditKeys('model.diffusion_model.', 24, true),
      ...vaeKeys('first_stage_model.'),
    });
    stub(join(models, 'checkpoints/sdxl.safetensors'), {
      'model.diffusion_model.input_blocks.0.0.weight': [2, 2],
    });
    const set = discover();
    expect(set.name).toBe('sd3.5_large');
    expect(set.notes).toContain(
      'Using sd3.5_large.safetensors; also found sd3.5_medium.safetensors (choose one with models.checkpoint).',
    );
    const medium = discover({ checkpoint: 'sd3.5_medium' });
    expect(medium).toMatchObject({ name: 'sd3.5_medium', family: 'sd3.5-medium' });
    expect(medium.components.mmdit.file).toBe(join(models, 'checkpoints/SD3/sd3.5_medium.safetensors'));
    expect(discover({ checkpoint: join(models, 'checkpoints/SD3/sd3.5_medium.safetensors') }).name).toBe(
      'sd3.5_medium',
    );
  });

  it('explains a checkpoint named in the config that is not there, or not SD3', () => {
    largeFolder();
    stub(join(models, 'checkpoints/sdxl.safetensors'), {
      'model.diffusion_model.input_blocks.0.0.weight': [2, 2],
    });
    expect(discoveryError({ checkpoint: 'sd3.5_largee.safetensors' }).message).toMatch(
      /^models\.checkpoint = sd3\.5_largee\.safetensors: no such file in .*\/checkpoints, .*\/diffusion_models, .*\/unet \(there: sd3\.5_large\.safetensors, sdxl\.safetensors\)\nTo get a model:/,
    );
    expect(discoveryError({ checkpoint: 'sdxl' }).message).toMatch(
      /sdxl\.safetensors is not an SD3 model: it has no model\.diffusion_model\.joint_blocks\.\* keys/,
    );
  });

  it('says what it looked for and the two ways to get a model when there is none', () => {
    stub(join(models, 'checkpoints/sdxl.safetensors'), {
      'model.diffusion_model.input_blocks.0.0.weight': [2, 2],
    });
    const error = discoveryError();
    expect(error.file).toBe(models);
    expect(error.message).toContain(
      `This looks like a ComfyUI models folder, but no SD3.5 model was found in ${models}. Looked for:`,
    );
    expect(error.message).toContain(
      `an SD3 checkpoint (*.safetensors) in ${join(models, 'checkpoints')}, ${join(models, 'diffusion_models')}, ${join(models, 'unet')} (found sdxl.safetensors: not SD3 models)`,
    );
    expect(error.message).toContain('a diffusers folder (model_index.json)');
    expect(error.message).toContain('atelier models pull sd3.5-large');
    expect(error.message).toContain('set models.dir to an existing ComfyUI models folder');
    expect(discoveryError({ modelsDir: join(root, 'nowhere') }).message).toMatch(
      /^models\.dir = .*nowhere: no such folder\.\nTo get a model:/,
    );
  });

  it('lists every missing part at once, with the command that fetches them', () => {
    stub(join(models, 'diffusion_models/sd3.5_large.safetensors'), mmditKeys('model.diffusion_model.', 38));
    stub(join(models, 'text_encoders/clip_l.safetensors'), clipKeys('', 12));
    const error = discoveryError();
    expect(error.file).toBe(models);
    expect(error.message.split('\n')).toEqual([
      `The SD3.5 model "sd3.5_large" in ${models} is incomplete. Missing:`,
      `  - the CLIP-G text encoder: looked for clip_g*.safetensors in ${join(models, 'text_encoders')} and ${join(models, 'clip')}, and inside ${join(models, 'diffusion_models/sd3.5_large.safetensors')}`,
      `  - the VAE: looked for first_stage_model.* keys inside ${join(models, 'diffusion_models/sd3.5_large.safetensors')}, and for an SD3 VAE (16 latent channels) in ${join(models, 'vae')}`,
      'To fix it:',
      expect.stringMatching(
        /^ {2}- atelier models pull sd3\.5-large {3}\(downloads the complete set from Hugging Face into models\.dir; needs HF_TOKEN/,
      ),
      `  - or copy the missing files into ${join(models, 'text_encoders')} / ${join(models, 'vae')} as ComfyUI expects them`,
    ]);
  });

  it("takes a separate VAE from vae/, never Flux's", () => {
    largeFolder();
    rmSync(join(models, 'checkpoints'), { recursive: true });
    stub(join(models, 'unet/sd3.5_large.safetensors'), mmditKeys('', 38));
    stub(join(models, 'vae/ae.safetensors'), vaeKeys(''));
    stub(join(models, 'vae/flux_vae.safetensors'), vaeKeys(''));
    stub(join(models, 'vae/sdxl_vae.safetensors'), { 'decoder.conv_in.weight': [4, 4, 3, 3] });
    stub(join(models, 'vae/sd3_vae.safetensors'), {
      ...vaeKeys(''),
      'decoder.up_blocks.0.resnets.0.conv1.weight': [4, 4, 3, 3],
    });
    const set = discover();
    expect(set.components.mmdit.prefix).toBe('');
    expect(set.components.vae).toEqual({
      file: join(models, 'vae/sd3_vae.safetensors'),
      prefix: '',
      format: 'diffusers',
      files: [join(models, 'vae/sd3_vae.safetensors')],
    });
  });

  it('asks only for the tokenizers when the weights are all there', () => {
    largeFolder();
    rmSync(join(data, 'tokenizers'), { recursive: true });
    const error = discoveryError();
    expect(error.message).toContain(
      `  - the CLIP tokenizer (tokenizer.json, or vocab.json + merges.txt): looked in ${join(models, 'tokenizers/clip')}, ${join(data, 'tokenizers/clip')} (ComfyUI models folders carry no tokenizer files; inside a ComfyUI installation its own comfy/sd1_tokenizer and comfy/text_encoders/t5_tokenizer are used)`,
    );
    expect(error.message).toContain('  - the T5 tokenizer (tokenizer.json)');
    expect(error.message).toContain(
      `atelier models pull sd3.5-large --tokenizers-only   (downloads the tokenizer files, a few MB, into ${join(data, 'tokenizers')}`,
    );
  });

  it('uses the tokenizers of the ComfyUI installation the models folder belongs to, also through a link', () => {
    largeFolder();
    rmSync(join(data, 'tokenizers'), { recursive: true });
    // ComfyUI's source tree: CLIP as vocab.json + merges.txt, T5 as tokenizer.json.
    const clip = JSON.parse(readFileSync(join(tiny, 'tokenizers/clip/tokenizer.json'), 'utf8'));
    const sd1 = join(root, 'comfy/sd1_tokenizer');
    mkdirSync(sd1, { recursive: true });
    writeFileSync(join(sd1, 'vocab.json'), JSON.stringify(clip.model.vocab));
    const merges = (clip.model.merges as (string | string[])[]).map((m) =>
      Array.isArray(m) ? m.join(' ') : m,
    );
    writeFileSync(join(sd1, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
    cpSync(join(tiny, 'tokenizers/t5'), join(root, 'comfy/text_encoders/t5_tokenizer'), { recursive: true });
    const expected = { clip: sd1, t5: join(root, 'comfy/text_encoders/t5_tokenizer') };
    expect(discover().tokenizers).toEqual(expected);
    const elsewhere = mkdtempSync(join(tmpdir(), 'atelier-link-'));
    try {
      symlinkSync(models, join(elsewhere, 'models'));
      expect(discover({ modelsDir: join(elsewhere, 'models') }).tokenizers).toEqual(expected);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
    // Tokenizers next to the weights still come first.
    cpSync(join(tiny, 'tokenizers'), join(models, 'tokenizers'), { recursive: true });
    expect(discover().tokenizers.clip).toBe(join(models, 'tokenizers/clip'));
  });

  it("refuses a tokenizer that makes ids past the text encoder's embedding", () => {
    largeFolder();
    stub(join(models, 'text_encoders/clip_l.safetensors'), {
      ...clipKeys('', 12),
      'text_model.embeddings.token_embedding.weight': [300, 8],
    });
    const error = discoveryError();
    expect(error.file).toBe(join(data, 'tokenizers/clip'));
    expect(error.message).toMatch(
      /^The CLIP tokenizer in .*tokenizers\/clip has \d+ tokens, but clip_l\.safetensors embeds only 300: the tokenizer belongs to another model\./,
    );
  });

  it('skips an unreadable file while scanning but reports one named in the config', () => {
    largeFolder();
    writeFileSync(join(models, 'checkpoints/broken.safetensors'), 'not a safetensors file');
    expect(discover().notes).toEqual([
      expect.stringMatching(/^Skipped \/.*\/broken\.safetensors: not a valid safetensors file/),
    ]);
    expect(discoveryError({ checkpoint: 'broken.safetensors' }).message).toMatch(
      /broken\.safetensors: not a valid safetensors file/,
    );
    expect(discoveryError({ textEncoders: { clipG: 'clip_gg.safetensors' } }).message).toContain(
      `  - models.textEncoders.clipG = clip_gg.safetensors: no such file in ${join(models, 'text_encoders')} or ${join(models, 'clip')}`,
    );
    expect(discoveryError({ textEncoders: { clipL: 't5xxl_fp16.safetensors' } }).message).toContain(
      'is not a CLIP-L text encoder (no text_model.embeddings.position_embedding.weight key)',
    );
  });
});
