/**
 * What discovery hands to the rest of the pipeline: one complete SD3.5 model set, each component
 * located as (file, key prefix) so a weight source can read it without knowing the folder layout.
 */

import type { SamplingHint } from './sampling-hint.js';

/**
 * Which model the weights are. Turbo is told from Large only by the file's name or metadata (the
 * networks have the same shape); `tiny` is a toy-sized SD3 network (the bundled one, the golden
 * sets), `custom` any other SD3-shaped network (SD3 Medium, depths of fine-tunes we don't know).
 */
export type ModelFamily = 'sd3.5-large' | 'sd3.5-large-turbo' | 'sd3.5-medium' | 'tiny' | 'custom';

/** How the folder is organised: ComfyUI's `models/` (single files) or a Hugging Face diffusers folder. */
export type ModelLayout = 'comfyui' | 'diffusers';

export type ComponentName = 'mmdit' | 'vae' | 'clipL' | 'clipG' | 't5';

/**
 * Key naming inside a component's files: `reference` is the single-file naming of Stability's
 * sd3.5 code and ComfyUI (`joint_blocks.0.x_block.attn.qkv.weight`), `diffusers` the naming of
 * diffusers folders (`transformer_blocks.0.attn.to_q.weight`), mapped back by the weight source.
 */
export type KeyFormat = 'reference' | 'diffusers';

export interface ComponentLocation {
  /** Absolute path of the safetensors file; for a sharded diffusers component, its `*.index.json`. */
  file: string;
  /** Key prefix of this component inside the file (`model.diffusion_model.`), '' for a file of its own. */
  prefix: string;
  format: KeyFormat;
  /** Every safetensors file holding the component: one, or the shards of a diffusers component. */
  files: string[];
}

export interface ModelComponents {
  mmdit: ComponentLocation;
  vae: ComponentLocation;
  clipL: ComponentLocation;
  clipG: ComponentLocation;
  /**
   * Absent when no T5-XXL file was found: SD3 then runs on the CLIP encoders alone, with zeros in
   * place of the T5 tokens (the reference does the same when T5 is left out), and follows long
   * prompts less well. `ModelSet.notes` says so.
   */
  t5?: ComponentLocation;
}

export interface TokenizerDirs {
  /** Folder with the CLIP BPE tokenizer: `tokenizer.json`, or `vocab.json` + `merges.txt`. */
  clip: string;
  /** Folder with the T5 tokenizer (`tokenizer.json`); absent exactly when `components.t5` is. */
  t5?: string;
}

export interface ModelSet {
  /** Display name: the checkpoint's file name without extension, or the diffusers folder's name. */
  name: string;
  family: ModelFamily;
  layout: ModelLayout;
  /** The folder the set was found in. */
  root: string;
  components: ModelComponents;
  tokenizers: TokenizerDirs;
  /** Things the operator should know that are not errors (T5 missing, other checkpoints found). */
  notes: string[];
  /** Sampling settings the checkpoint suggests for itself (its `atelier.sampling` metadata). */
  sampling?: SamplingHint;
}

/** A model set on disk in the ComfyUI layout, as the bundled tiny model and `models pull` write it. */
export interface ModelSetPaths {
  /** A models folder with `checkpoints/` and `text_encoders/`. */
  modelsDir: string;
  /** File name of the checkpoint under `checkpoints/`. */
  checkpoint: string;
  tokenizers: { clip: string; t5: string };
}
