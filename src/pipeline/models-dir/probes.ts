/**
 * What a safetensors header holds: each probe is a key that only that component has, and the
 * prefixes single-file checkpoints put it under (ComfyUI's supported_models.py SD3 class and
 * sd3_clip.py; Stability's sd3_infer.py): `model.diffusion_model.` for the MMDiT,
 * `first_stage_model.` for the VAE, `text_encoders.{clip_l,clip_g,t5xxl}.transformer.` for
 * text encoders bundled into the checkpoint.
 */
import { countIndexed, findPrefix, type HeaderView } from './headers.js';
import type { ComponentName } from './types.js';

export interface Probe {
  /** A key (relative to the component) every file of this component has. */
  key: string;
  /** Prefixes inside a single-file checkpoint, most likely first. */
  bundledPrefixes: readonly string[];
}

export const PROBES: Record<ComponentName, Probe> = {
  mmdit: { key: 'joint_blocks.0.x_block.attn.qkv.weight', bundledPrefixes: ['model.diffusion_model.', ''] },
  vae: { key: 'decoder.conv_in.weight', bundledPrefixes: ['first_stage_model.'] },
  clipL: {
    key: 'text_model.embeddings.position_embedding.weight',
    bundledPrefixes: ['text_encoders.clip_l.transformer.'],
  },
  clipG: {
    key: 'text_model.embeddings.position_embedding.weight',
    bundledPrefixes: ['text_encoders.clip_g.transformer.'],
  },
  t5: {
    key: 'encoder.block.0.layer.0.SelfAttention.q.weight',
    bundledPrefixes: ['text_encoders.t5xxl.transformer.'],
  },
};

/** Prefix of a component bundled into a checkpoint under its known prefix. */
export function bundledPrefix(header: HeaderView, component: ComponentName): string | undefined {
  const probe = PROBES[component];
  return probe.bundledPrefixes.find((p) => header.tensors.has(p + probe.key));
}

/** Prefix of a component in a file of its own (usually ''), found by its probe key. */
export function standalonePrefix(header: HeaderView, component: ComponentName): string | undefined {
  return findPrefix(header, PROBES[component].key, ['']);
}

/**
 * CLIP-L or CLIP-G, for a text encoder file whose name doesn't say: by depth, as ComfyUI's
 * detect_te_model does (CLIP-G has 32 layers, CLIP-L 12), else by width (1280 vs 768).
 */
export function clipKind(header: HeaderView, prefix: string): 'clipL' | 'clipG' | undefined {
  const layers = countIndexed(
    (k) => header.tensors.has(prefix + k),
    'text_model.encoder.layers',
    'mlp.fc1.weight',
  );
  const width = header.tensors.get(`${prefix}text_model.embeddings.position_embedding.weight`)?.shape[1];
  if (layers === 32 || width === 1280) return 'clipG';
  if (layers === 12 || width === 768) return 'clipL';
  return undefined;
}

/** A VAE in diffusers naming (`decoder.up_blocks.*`) rather than the reference's (`decoder.up.*`). */
export function isDiffusersVae(header: HeaderView, prefix: string): boolean {
  for (const key of header.tensors.keys()) if (key.startsWith(`${prefix}decoder.up_blocks.`)) return true;
  return false;
}
