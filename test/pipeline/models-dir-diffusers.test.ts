/**
 * A diffusers folder of SD3, made here from the tiny model by renaming and reshaping its tensors
 * the way diffusers stores SD3 (to_q/to_k/to_v instead of a fused qkv, [scale, shift] adaLN in the
 * final layers, decoder levels numbered the other way, linear VAE attention, sharded files, T5's
 * tied `shared.weight`). The weight source must give back every reference tensor bit for bit.
 */
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.js';
import { discoverModelSet } from '../../src/pipeline/models-dir/discover.js';
import type { ComponentName, ModelSet } from '../../src/pipeline/models-dir/types.js';
import { ComponentWeights } from '../../src/pipeline/models-dir/weight-source.js';
import { type ResolvedTensor, resolvedShape } from '../../src/pipeline/onnx/params.js';
import { readTokenizerFiles } from '../../src/pipeline/text/tokenizer-files.js';
import { writeTinyModel } from '../../src/pipeline/tiny/generate.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type TensorToWrite, writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';

let root: string;
let tiny: string;
let diffusers: string;
let reference: ModelSet;

interface Tensor {
  shape: number[];
  bytes: Buffer;
}

/** A component's tensors, relative to its prefix. */
function readComponent(path: string, prefix: string): Map<string, Tensor> {
  const file = SafetensorsFile.open(path);
  try {
    const out = new Map<string, Tensor>();
    for (const name of file.names(prefix)) {
      out.set(name.slice(prefix.length), {
        shape: file.get(name).shape,
        bytes: Buffer.from(file.readBytes(name)),
      });
    }
    return out;
  } finally {
    file.close();
  }
}

const rows = (t: Tensor, from: number, to: number): Tensor => {
  const rowBytes = t.bytes.length / t.shape[0];
  return { shape: [to - from, ...t.shape.slice(1)], bytes: t.bytes.subarray(from * rowBytes, to * rowBytes) };
};
const thirds = (t: Tensor) => [0, 1, 2].map((i) => rows(t, (i * t.shape[0]) / 3, ((i + 1) * t.shape[0]) / 3));
const swapped = (t: Tensor): Tensor => {
  const half = t.shape[0] / 2;
  return { shape: t.shape, bytes: Buffer.concat([rows(t, half, t.shape[0]).bytes, rows(t, 0, half).bytes]) };
};

/** SD3 MMDiT in diffusers' SD3Transformer2DModel names. */
function toDiffusersTransformer(ref: Map<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  let depth = 0;
  while (ref.has(`joint_blocks.${depth}.x_block.attn.qkv.weight`)) depth++;
  const renames: [RegExp, string][] = [
    [/^context_embedder\./, 'context_embedder.'],
    [/^x_embedder\.proj\./, 'pos_embed.proj.'],
    [/^pos_embed$/, 'pos_embed.pos_embed'],
    [/^t_embedder\.mlp\.0\./, 'time_text_embed.timestep_embedder.linear_1.'],
    [/^t_embedder\.mlp\.2\./, 'time_text_embed.timestep_embedder.linear_2.'],
    [/^y_embedder\.mlp\.0\./, 'time_text_embed.text_embedder.linear_1.'],
    [/^y_embedder\.mlp\.2\./, 'time_text_embed.text_embedder.linear_2.'],
    [/^final_layer\.linear\./, 'proj_out.'],
    [/^final_layer\.adaLN_modulation\.1\./, 'norm_out.linear.'],
    [/^joint_blocks\.(\d+)\.x_block\.adaLN_modulation\.1\./, 'transformer_blocks.$1.norm1.linear.'],
    [
      /^joint_blocks\.(\d+)\.context_block\.adaLN_modulation\.1\./,
      'transformer_blocks.$1.norm1_context.linear.',
    ],
    [/^joint_blocks\.(\d+)\.x_block\.attn\.proj\./, 'transformer_blocks.$1.attn.to_out.0.'],
    [/^joint_blocks\.(\d+)\.context_block\.attn\.proj\./, 'transformer_blocks.$1.attn.to_add_out.'],
    [/^joint_blocks\.(\d+)\.x_block\.attn\.ln_q\./, 'transformer_blocks.$1.attn.norm_q.'],
    [/^joint_blocks\.(\d+)\.x_block\.attn\.ln_k\./, 'transformer_blocks.$1.attn.norm_k.'],
    [/^joint_blocks\.(\d+)\.context_block\.attn\.ln_q\./, 'transformer_blocks.$1.attn.norm_added_q.'],
    [/^joint_blocks\.(\d+)\.context_block\.attn\.ln_k\./, 'transformer_blocks.$1.attn.norm_added_k.'],
    [/^joint_blocks\.(\d+)\.x_block\.mlp\.fc1\./, 'transformer_blocks.$1.ff.net.0.proj.'],
    [/^joint_blocks\.(\d+)\.x_block\.mlp\.fc2\./, 'transformer_blocks.$1.ff.net.2.'],
    [/^joint_blocks\.(\d+)\.context_block\.mlp\.fc1\./, 'transformer_blocks.$1.ff_context.net.0.proj.'],
    [/^joint_blocks\.(\d+)\.context_block\.mlp\.fc2\./, 'transformer_blocks.$1.ff_context.net.2.'],
  ];
  for (const [key, t] of ref) {
    const qkv = /^joint_blocks\.(\d+)\.(x_block|context_block)\.attn\.qkv\.(weight|bias)$/.exec(key);
    if (qkv) {
      const names =
        qkv[2] === 'x_block' ? ['to_q', 'to_k', 'to_v'] : ['add_q_proj', 'add_k_proj', 'add_v_proj'];
      for (const [i, part] of thirds(t).entries()) {
        out.set(`transformer_blocks.${qkv[1]}.attn.${names[i]}.${qkv[3]}`, part);
      }
      continue;
    }
    const rule = renames.find(([pattern]) => pattern.test(key));
    if (!rule) throw new Error(`no diffusers name for ${key}`);
    const name = key.replace(rule[0], rule[1]);
    // AdaLayerNormContinuous (final layer, last context block) stores [scale, shift].
    const continuous =
      key.startsWith('final_layer.adaLN') || key.startsWith(`joint_blocks.${depth - 1}.context_block.adaLN`);
    out.set(name, continuous ? swapped(t) : t);
  }
  return out;
}

/** SD3's VAE in diffusers' AutoencoderKL names. */
function toDiffusersVae(ref: Map<string, Tensor>): Map<string, Tensor> {
  let levels = 0;
  while ([...ref.keys()].some((k) => k.startsWith(`decoder.up.${levels}.`))) levels++;
  const out = new Map<string, Tensor>();
  for (const [key, t] of ref) {
    const name = key
      .replace(/^encoder\.down\.(\d+)\.block\.(\d+)\./, 'encoder.down_blocks.$1.resnets.$2.')
      .replace(/^encoder\.down\.(\d+)\.downsample\./, 'encoder.down_blocks.$1.downsamplers.0.')
      .replace(
        /^decoder\.up\.(\d+)\.block\.(\d+)\./,
        (_, i, j) => `decoder.up_blocks.${levels - 1 - Number(i)}.resnets.${j}.`,
      )
      .replace(
        /^decoder\.up\.(\d+)\.upsample\./,
        (_, i) => `decoder.up_blocks.${levels - 1 - Number(i)}.upsamplers.0.`,
      )
      .replace(/\.mid\.block_(\d)\./, (_, n) => `.mid_block.resnets.${Number(n) - 1}.`)
      .replace(/\.mid\.attn_1\.norm\./, '.mid_block.attentions.0.group_norm.')
      .replace(/\.mid\.attn_1\.(q|k|v)\./, '.mid_block.attentions.0.to_$1.')
      .replace(/\.mid\.attn_1\.proj_out\./, '.mid_block.attentions.0.to_out.0.')
      .replace('.nin_shortcut.', '.conv_shortcut.')
      .replace(/^(encoder|decoder)\.norm_out\./, '$1.conv_norm_out.');
    const linear = /mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(name);
    out.set(name, linear ? { shape: t.shape.slice(0, 2), bytes: t.bytes } : t);
  }
  return out;
}

function write(path: string, tensors: Map<string, Tensor>): void {
  mkdirSync(dirname(path), { recursive: true });
  const list: TensorToWrite[] = [...tensors].map(([name, t]) => ({
    name,
    dtype: 'F16',
    shape: t.shape,
    data: t.bytes,
  }));
  writeSafetensors(path, list);
}

/** Writes `tensors` as two shards and their index, as diffusers saves large components. */
function writeSharded(dir: string, base: string, tensors: Map<string, Tensor>): void {
  const entries = [...tensors];
  const half = Math.ceil(entries.length / 2);
  const shards = [entries.slice(0, half), entries.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const name = `${base}-0000${i + 1}-of-00002.safetensors`;
    write(join(dir, name), new Map(shard));
    for (const [key] of shard) weightMap[key] = name;
  });
  writeFileSync(
    join(dir, `${base}.safetensors.index.json`),
    JSON.stringify({ metadata: {}, weight_map: weightMap }),
  );
}

function writeDiffusersFolder(dir: string, options: { t5?: boolean } = {}): void {
  const ckpt = join(tiny, 'checkpoints/atelier-tiny-sd35.safetensors');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'model_index.json'),
    JSON.stringify({
      _class_name: 'StableDiffusion3Pipeline',
      transformer: ['diffusers', 'SD3Transformer2DModel'],
      vae: ['diffusers', 'AutoencoderKL'],
      text_encoder: ['transformers', 'CLIPTextModelWithProjection'],
      text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
      text_encoder_3: options.t5 === false ? [null, null] : ['transformers', 'T5EncoderModel'],
    }),
  );
  writeSharded(
    join(dir, 'transformer'),
    'diffusion_pytorch_model',
    toDiffusersTransformer(readComponent(ckpt, 'model.diffusion_model.')),
  );
  write(
    join(dir, 'vae/diffusion_pytorch_model.safetensors'),
    toDiffusersVae(readComponent(ckpt, 'first_stage_model.')),
  );
  write(
    join(dir, 'text_encoder/model.safetensors'),
    readComponent(join(tiny, 'text_encoders/clip_l.safetensors'), ''),
  );
  write(
    join(dir, 'text_encoder_2/model.safetensors'),
    readComponent(join(tiny, 'text_encoders/clip_g.safetensors'), ''),
  );
  if (options.t5 !== false) {
    const t5 = readComponent(join(tiny, 'text_encoders/t5xxl_tiny.safetensors'), '');
    // transformers ties T5's input embedding to `shared.weight` and saves it under that name.
    t5.set('shared.weight', t5.get('encoder.embed_tokens.weight')!);
    t5.delete('encoder.embed_tokens.weight');
    writeSharded(join(dir, 'text_encoder_3'), 'model', t5);
  }
  const clip = JSON.parse(readFileSync(join(tiny, 'tokenizers/clip/tokenizer.json'), 'utf8'));
  mkdirSync(join(dir, 'tokenizer'));
  writeFileSync(join(dir, 'tokenizer/vocab.json'), JSON.stringify(clip.model.vocab));
  writeFileSync(
    join(dir, 'tokenizer/merges.txt'),
    ['#version: 0.2', ...clip.model.merges.map((m: string[]) => m.join(' '))].join('\n'),
  );
  mkdirSync(join(dir, 'tokenizer_3'));
  writeFileSync(
    join(dir, 'tokenizer_3/tokenizer.json'),
    readFileSync(join(tiny, 'tokenizers/t5/tokenizer.json')),
  );
}

/** The bytes a resolved tensor stands for (concatenations on axis 0 of row-major tensors are byte concatenations). */
function bytesOf(t: ResolvedTensor): Buffer {
  switch (t.kind) {
    case 'tensor': {
      const out = Buffer.alloc(t.info.byteLength);
      const fd = openSync(t.file.path, 'r');
      try {
        readSync(fd, out, 0, out.length, t.info.offset);
      } finally {
        closeSync(fd);
      }
      return out;
    }
    case 'reshape':
      return bytesOf(t.of);
    case 'concat':
      expect(t.axis).toBe(0);
      return Buffer.concat(t.parts.map(bytesOf));
  }
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-diffusers-'));
  tiny = join(root, 'tiny');
  writeTinyModel(tiny);
  reference = discoverModelSet({ modelsDir: tiny, dataDir: join(root, 'data') });
  diffusers = join(root, 'stable-diffusion-3.5-tiny-diffusers');
  writeDiffusersFolder(diffusers);
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('discoverModelSet in a diffusers folder', () => {
  it('finds every component, its shards and its tokenizers', () => {
    const set = discoverModelSet({ modelsDir: diffusers, dataDir: join(root, 'data') });
    expect(set).toMatchObject({
      name: 'stable-diffusion-3.5-tiny-diffusers',
      family: 'tiny',
      layout: 'diffusers',
      root: diffusers,
      notes: [],
    });
    expect(set.components.mmdit).toEqual({
      file: join(diffusers, 'transformer/diffusion_pytorch_model.safetensors.index.json'),
      prefix: '',
      format: 'diffusers',
      files: [1, 2].map((i) =>
        join(diffusers, `transformer/diffusion_pytorch_model-0000${i}-of-00002.safetensors`),
      ),
    });
    expect(set.components.vae.format).toBe('diffusers');
    expect(set.components.clipL).toMatchObject({
      file: join(diffusers, 'text_encoder/model.safetensors'),
      format: 'reference',
    });
    expect(set.components.t5?.files).toHaveLength(2);
    expect(set.tokenizers).toEqual({
      clip: join(diffusers, 'tokenizer'),
      t5: join(diffusers, 'tokenizer_3'),
    });
  });

  it.each<ComponentName>(['mmdit', 'vae', 'clipL', 'clipG', 't5'])(
    'gives back every reference tensor of %s, bit for bit',
    (component) => {
      const set = discoverModelSet({ modelsDir: diffusers, dataDir: join(root, 'data') });
      const fromDiffusers = ComponentWeights.open(set.components[component]!, component);
      const fromReference = ComponentWeights.open(reference.components[component]!, component);
      try {
        expect(fromDiffusers.keys().sort()).toEqual(fromReference.keys().sort());
        for (const key of fromReference.keys()) {
          const want = fromReference.resolve(key)!;
          const got = fromDiffusers.resolve(key)!;
          expect(resolvedShape(got), key).toEqual(resolvedShape(want));
          expect(bytesOf(got).equals(bytesOf(want)), key).toBe(true);
        }
        expect(fromDiffusers.fingerprint).not.toBe(fromReference.fingerprint);
      } finally {
        fromDiffusers.close();
        fromReference.close();
      }
    },
  );

  it('reads the CLIP tokenizer from vocab.json + merges.txt as the tokenizer.json it was made from', () => {
    const load = (dir: string) => {
      const f = readTokenizerFiles(dir, 'clip');
      return new Tokenizer(f.tokenizerJson as never, f.tokenizerConfig as never);
    };
    const slow = load(join(diffusers, 'tokenizer'));
    const fast = load(join(tiny, 'tokenizers/clip'));
    for (const text of ['a photo of a cat, soft light', 'Ünïcödé and 42 numbers!!', '']) {
      expect(slow.encode(text).ids).toEqual(fast.encode(text).ids);
    }
  });

  it('is found inside a ComfyUI models folder under diffusers/', () => {
    const models = join(root, 'comfy-models');
    writeDiffusersFolder(join(models, 'diffusers/sd35-tiny'));
    mkdirSync(join(models, 'checkpoints'));
    const set = discoverModelSet({ modelsDir: models, dataDir: join(root, 'data') });
    expect(set).toMatchObject({ layout: 'diffusers', root: join(models, 'diffusers/sd35-tiny') });
    expect(
      discoverModelSet({ modelsDir: models, checkpoint: 'diffusers/sd35-tiny', dataDir: join(root, 'data') })
        .root,
    ).toBe(set.root);
  });

  it('runs without T5 when the folder leaves it out', () => {
    const dir = join(root, 'no-t5');
    writeDiffusersFolder(dir, { t5: false });
    const set = discoverModelSet({ modelsDir: dir, dataDir: join(root, 'data') });
    expect(set.components.t5).toBeUndefined();
    expect(set.notes).toEqual([
      expect.stringMatching(/^No T5-XXL text encoder \(the folder leaves T5 out\)/),
    ]);
  });

  it('names a missing shard, and refuses a diffusers folder of another pipeline', () => {
    const dir = join(root, 'broken');
    writeDiffusersFolder(dir);
    rmSync(join(dir, 'transformer/diffusion_pytorch_model-00002-of-00002.safetensors'));
    expect(() => discoverModelSet({ modelsDir: dir, dataDir: join(root, 'data') })).toThrow(
      /Missing:\n {2}- .*transformer\/diffusion_pytorch_model\.safetensors\.index\.json: shard diffusion_pytorch_model-00002-of-00002\.safetensors is missing \(download incomplete\?\)/,
    );
    const sdxl = join(root, 'sdxl');
    mkdirSync(sdxl);
    writeFileSync(
      join(sdxl, 'model_index.json'),
      JSON.stringify({ _class_name: 'StableDiffusionXLPipeline' }),
    );
    const error = (() => {
      try {
        discoverModelSet({ modelsDir: sdxl, dataDir: join(root, 'data') });
      } catch (e) {
        return e as ModelError;
      }
    })();
    expect(error).toBeInstanceOf(ModelError);
    expect(error?.message).toBe(
      `${sdxl} is a diffusers folder of StableDiffusionXLPipeline, not of Stable Diffusion 3`,
    );
  });
});
