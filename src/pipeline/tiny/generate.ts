/**
 * Writes the bundled tiny model in the ComfyUI layout, deterministically:
 *   checkpoints/atelier-tiny-sd35.safetensors   model.diffusion_model.* (MMDiT) + first_stage_model.* (VAE)
 *   text_encoders/clip_l.safetensors, clip_g.safetensors, t5xxl_tiny.safetensors
 *   tokenizers/clip/, tokenizers/t5/             tokenizer.json + tokenizer_config.json
 * Each safetensors file's metadata carries `atelier.config`: the hyperparameters that are not in
 * the shapes (head counts, activations), named as in the golden manifest.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelSetPaths } from '../models-dir/types.js';
import { clipTokenizerConfig, clipTokenizerJson } from '../text/clip-tokenizer-json.js';
import { writeSafetensors } from '../weights/safetensors-writer.js';
import { trainClipBpe } from './clip-bpe.js';
import { TINY_CHECKPOINT, TINY_MODEL_CONFIG, TINY_MODEL_VERSION, type TinyModelConfig } from './config.js';
import { TINY_CORPUS } from './corpus.js';
import { hashString } from './prng.js';
import { buildT5Vocab, t5TokenizerConfig, t5TokenizerJson } from './t5-unigram.js';
import { clipTensors, mmditTensors, t5Tensors, vaeTensors } from './weights.js';

export const TINY_MODEL_NAME = 'atelier-tiny-sd35';
const MANIFEST = 'atelier-tiny.json';

/** Every file of the set, relative to its folder. */
export const TINY_MODEL_FILES = [
  `checkpoints/${TINY_CHECKPOINT}`,
  'text_encoders/clip_l.safetensors',
  'text_encoders/clip_g.safetensors',
  'text_encoders/t5xxl_tiny.safetensors',
  'tokenizers/clip/tokenizer.json',
  'tokenizers/clip/tokenizer_config.json',
  'tokenizers/t5/tokenizer.json',
  'tokenizers/t5/tokenizer_config.json',
] as const;

function metadata(config: object, model = TINY_MODEL_NAME): Record<string, string> {
  return { format: 'pt', 'atelier.model': model, 'atelier.config': JSON.stringify(config) };
}

function clipMetadataConfig(c: TinyModelConfig['clipL']) {
  return {
    hidden_act: c.hiddenAct,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_attention_heads: c.numAttentionHeads,
    num_hidden_layers: c.numHiddenLayers,
  };
}

function json(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 1)}\n`);
}

/**
 * The tiny model's three text encoders with their seeded initialisation, in `dir/text_encoders/`
 * (also the demo model's frozen encoders: tools/train-demo/export-text.ts).
 */
export function writeTinyTextEncoders(
  dir: string,
  cfg: TinyModelConfig,
  vocabSizes: { clip: number; t5: number },
  names: { model?: string; t5File?: string } = {},
): void {
  const meta = (config: object) => metadata(config, names.model);
  writeSafetensors(
    join(dir, 'text_encoders/clip_l.safetensors'),
    clipTensors(cfg.seed ^ hashString('clip_l'), cfg.clipL, vocabSizes.clip),
    meta(clipMetadataConfig(cfg.clipL)),
  );
  writeSafetensors(
    join(dir, 'text_encoders/clip_g.safetensors'),
    clipTensors(cfg.seed ^ hashString('clip_g'), cfg.clipG, vocabSizes.clip),
    meta({ ...clipMetadataConfig(cfg.clipG), projection_dim: cfg.clipG.projectionDim }),
  );
  const { t5 } = cfg;
  writeSafetensors(
    join(dir, `text_encoders/${names.t5File ?? 't5xxl_tiny.safetensors'}`),
    t5Tensors(cfg.seed ^ hashString('t5xxl'), cfg, vocabSizes.t5),
    meta({
      d_ff: t5.dFf,
      d_kv: t5.dKv,
      d_model: t5.dModel,
      num_heads: t5.numHeads,
      num_layers: t5.numLayers,
      vocab_size: vocabSizes.t5,
    }),
  );
}

/**
 * Writes the whole set into `dir` (created if needed), overwriting what is there. `name` goes into
 * every file's metadata (`atelier.model`): two sets of other seeds or names then differ in their
 * headers too, so they are two models (their `Model hash` differs) when both are configured.
 */
export function writeTinyModel(
  dir: string,
  cfg: TinyModelConfig = TINY_MODEL_CONFIG,
  options: { name?: string } = {},
): ModelSetPaths {
  const name = options.name ?? TINY_MODEL_NAME;
  for (const sub of ['checkpoints', 'text_encoders', 'tokenizers/clip', 'tokenizers/t5']) {
    mkdirSync(join(dir, sub), { recursive: true });
  }
  const clipVocab = trainClipBpe(TINY_CORPUS, cfg.tokenizers.clipMerges);
  const t5Vocab = buildT5Vocab(TINY_CORPUS, cfg.tokenizers.t5Words);
  const clipSize = Object.keys(clipVocab.vocab).length;

  json(join(dir, 'tokenizers/clip/tokenizer.json'), clipTokenizerJson(clipVocab, 'the tiny CLIP vocabulary'));
  json(join(dir, 'tokenizers/clip/tokenizer_config.json'), clipTokenizerConfig());
  json(join(dir, 'tokenizers/t5/tokenizer.json'), t5TokenizerJson(t5Vocab));
  json(join(dir, 'tokenizers/t5/tokenizer_config.json'), t5TokenizerConfig());

  const { mmdit, vae } = cfg;
  writeSafetensors(
    join(dir, 'checkpoints', TINY_CHECKPOINT),
    [...mmditTensors(cfg), ...vaeTensors(cfg)],
    metadata(
      {
        mmdit: {
          depth: mmdit.depth,
          hidden_size: 64 * mmdit.depth,
          num_heads: mmdit.depth,
          patch_size: mmdit.patchSize,
          pos_embed_max_size: mmdit.posEmbedMaxSize,
        },
        vae: {
          ch: vae.ch,
          ch_mult: vae.chMult,
          num_res_blocks: vae.numResBlocks,
          z_channels: mmdit.latentChannels,
        },
      },
      name,
    ),
  );
  writeTinyTextEncoders(dir, cfg, { clip: clipSize, t5: t5Vocab.length }, { model: name });
  return pathsOf(dir);
}

function pathsOf(dir: string): ModelSetPaths {
  return {
    modelsDir: dir,
    checkpoint: TINY_CHECKPOINT,
    tokenizers: { clip: join(dir, 'tokenizers/clip'), t5: join(dir, 'tokenizers/t5') },
  };
}

interface Manifest {
  version: number;
  files: Record<string, number>;
}

/** True when `dir` holds a complete tiny model written by this version of the generator. */
function isCurrent(dir: string): boolean {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as Manifest;
    if (manifest.version !== TINY_MODEL_VERSION) return false;
    return TINY_MODEL_FILES.every((f) => statSync(join(dir, f)).size === manifest.files[f]);
  } catch {
    return false;
  }
}

/**
 * The tiny model under `<dataDir>/tiny-model/`, generated on first use (or when this version of
 * Atelier generates a different one). Written to a temporary folder and renamed into place, so a
 * crash or a second process never leaves a half-written model behind.
 */
export async function ensureTinyModel(dataDir: string): Promise<ModelSetPaths> {
  const dir = join(dataDir, 'tiny-model');
  if (isCurrent(dir)) return pathsOf(dir);
  mkdirSync(dataDir, { recursive: true });
  const tmp = join(dataDir, `.tiny-model-${process.pid}-${Date.now()}`);
  try {
    writeTinyModel(tmp);
    const files = Object.fromEntries(TINY_MODEL_FILES.map((f) => [f, statSync(join(tmp, f)).size]));
    json(join(tmp, MANIFEST), { version: TINY_MODEL_VERSION, files } satisfies Manifest);
    if (existsSync(dir)) {
      if (isCurrent(dir)) return pathsOf(dir); // another process finished first
      rmSync(dir, { recursive: true, force: true });
    }
    try {
      renameSync(tmp, dir);
    } catch (error) {
      if (!isCurrent(dir)) throw error;
    }
    return pathsOf(dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
