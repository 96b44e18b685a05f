/**
 * The model sets `atelier models pull` knows, laid out as Stability AI publishes them on the hub
 * (gated: accept the licence, then use HF_TOKEN). Each repository carries the single-file
 * checkpoint at its root, the text encoders ComfyUI uses under text_encoders/, and the diffusers
 * tokenizer folders: tokenizer/ (CLIP, vocab.json + merges.txt) and tokenizer_3/ (T5,
 * tokenizer.json). Weights land in the models folder in the ComfyUI layout, tokenizers in
 * `<dataDir>/tokenizers`.
 */

export type HubSetName = 'sd3.5-large' | 'sd3.5-large-turbo' | 'sd3.5-medium';

export const HUB_SET_NAMES: readonly HubSetName[] = ['sd3.5-large', 'sd3.5-large-turbo', 'sd3.5-medium'];

export interface HubSetFile {
  repo: string;
  /** Path inside the repository. */
  path: string;
  /** Where it goes: under the models folder or the data dir, at this relative path. */
  target: { root: 'models' | 'data'; path: string };
  kind: 'weights' | 'tokenizer';
}

export interface HubModelSet {
  name: string;
  /** Repository of the checkpoint (its page is where the licence is accepted). */
  repo: string;
  revision: string;
  /** File name of the checkpoint under checkpoints/. */
  checkpoint: string;
  files: HubSetFile[];
}

export interface HubSetOptions {
  /**
   * Which T5-XXL to fetch: `fp8` (t5xxl_fp8_e4m3fn, 4.9 GB), `fp16` (t5xxl_fp16, 9.8 GB) or
   * `none` (SD3 then runs on the CLIP encoders alone).
   * @default 'fp8'
   */
  t5?: 'fp8' | 'fp16' | 'none';
  /** Another repository with the same layout (a mirror), instead of Stability's. */
  repo?: string;
  /** Repository of text_encoders/ and the tokenizer folders, when not the checkpoint's. */
  textEncodersRepo?: string;
  /** @default 'main' */
  revision?: string;
}

const SETS: Record<HubSetName, { repo: string; checkpoint: string }> = {
  'sd3.5-large': { repo: 'stabilityai/stable-diffusion-3.5-large', checkpoint: 'sd3.5_large.safetensors' },
  'sd3.5-large-turbo': {
    repo: 'stabilityai/stable-diffusion-3.5-large-turbo',
    checkpoint: 'sd3.5_large_turbo.safetensors',
  },
  'sd3.5-medium': { repo: 'stabilityai/stable-diffusion-3.5-medium', checkpoint: 'sd3.5_medium.safetensors' },
};

export function isHubSetName(name: string): name is HubSetName {
  return Object.hasOwn(SETS, name);
}

export function hubModelSet(name: HubSetName, options: HubSetOptions = {}): HubModelSet {
  const { checkpoint } = SETS[name];
  const repo = options.repo ?? SETS[name].repo;
  const te = options.textEncodersRepo ?? repo;
  const t5 = options.t5 ?? 'fp8';
  const weights = (r: string, path: string, target: string): HubSetFile => ({
    repo: r,
    path,
    target: { root: 'models', path: target },
    kind: 'weights',
  });
  const tokenizer = (path: string, target: string): HubSetFile => ({
    repo: te,
    path,
    target: { root: 'data', path: target },
    kind: 'tokenizer',
  });
  const files: HubSetFile[] = [
    weights(repo, checkpoint, `checkpoints/${checkpoint}`),
    weights(te, 'text_encoders/clip_l.safetensors', 'text_encoders/clip_l.safetensors'),
    weights(te, 'text_encoders/clip_g.safetensors', 'text_encoders/clip_g.safetensors'),
  ];
  if (t5 !== 'none') {
    const file = t5 === 'fp8' ? 't5xxl_fp8_e4m3fn.safetensors' : 't5xxl_fp16.safetensors';
    files.push(weights(te, `text_encoders/${file}`, `text_encoders/${file}`));
  }
  // The tokenizers are a few MB: always fetched, so a T5 file added later finds its tokenizer.
  files.push(
    tokenizer('tokenizer/vocab.json', 'tokenizers/clip/vocab.json'),
    tokenizer('tokenizer/merges.txt', 'tokenizers/clip/merges.txt'),
    tokenizer('tokenizer/tokenizer_config.json', 'tokenizers/clip/tokenizer_config.json'),
    tokenizer('tokenizer_3/tokenizer.json', 'tokenizers/t5/tokenizer.json'),
    tokenizer('tokenizer_3/tokenizer_config.json', 'tokenizers/t5/tokenizer_config.json'),
  );
  return { name, repo, revision: options.revision ?? 'main', checkpoint, files };
}
