/**
 * A Hugging Face diffusers folder of SD3 (`model_index.json` with StableDiffusion3Pipeline):
 * transformer/, vae/, text_encoder/ (CLIP-L), text_encoder_2/ (CLIP-G), text_encoder_3/ (T5,
 * may be left out), each a safetensors file or shards listed in `*.safetensors.index.json`;
 * tokenizer/ (CLIP, vocab.json + merges.txt) and tokenizer_3/ (T5, tokenizer.json).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { resolvedShape } from '../onnx/params.js';
import { familyOf, mmditShape } from './family.js';
import type { ComponentLocation, ComponentName, ModelComponents, ModelFamily } from './types.js';
import { ComponentWeights } from './weight-source.js';

export interface DiffusersFindings {
  name: string;
  family: ModelFamily;
  components: Partial<ModelComponents>;
  notes: string[];
  missing: string[];
}

/** Component → (subfolder, file base name) in the diffusers layout. */
const FOLDERS: Record<ComponentName, [string, string]> = {
  mmdit: ['transformer', 'diffusion_pytorch_model'],
  vae: ['vae', 'diffusion_pytorch_model'],
  clipL: ['text_encoder', 'model'],
  clipG: ['text_encoder_2', 'model'],
  t5: ['text_encoder_3', 'model'],
};

export function isDiffusersFolder(dir: string): boolean {
  return existsSync(join(dir, 'model_index.json'));
}

/** Diffusers folders one or two levels below `dir` (ComfyUI keeps them in `models/diffusers/`). */
export function listDiffusersFolders(dir: string): string[] {
  const found: string[] = [];
  for (const sub of ['', 'diffusers']) {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(join(dir, sub), { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, sub, e.name);
      if (e.isDirectory() && isDiffusersFolder(path)) found.push(path);
    }
  }
  return found;
}

/** Pipeline class and which components model_index.json declares (T5 may be `[null, null]`). */
function readModelIndex(root: string): { className: string; declared: (folder: string) => boolean } | string {
  const path = join(root, 'model_index.json');
  let index: Record<string, unknown>;
  try {
    index = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    return `${path}: cannot be read as JSON (${(error as Error).message})`;
  }
  return {
    className: String(index._class_name ?? ''),
    declared: (folder) => Array.isArray(index[folder]) && (index[folder] as unknown[])[0] !== null,
  };
}

/**
 * The safetensors file(s) of a component folder: a single file or an index of shards, the
 * fp16 variant as a fallback. A string explains what is wrong (a missing shard).
 */
export function componentFiles(
  dir: string,
  base: string,
): { file: string; files: string[] } | string | undefined {
  const candidates = [
    `${base}.safetensors`,
    `${base}.safetensors.index.json`,
    `${base}.fp16.safetensors`,
    `${base}.safetensors.index.fp16.json`,
    `${base}.fp16.safetensors.index.json`,
  ];
  for (const name of candidates) {
    const path = join(dir, name);
    if (!existsSync(path)) continue;
    if (!name.endsWith('.json')) return { file: path, files: [path] };
    let weightMap: Record<string, string>;
    try {
      weightMap = (JSON.parse(readFileSync(path, 'utf8')) as { weight_map: Record<string, string> })
        .weight_map;
    } catch (error) {
      return `${path}: not a valid shard index (${(error as Error).message})`;
    }
    const shards = [...new Set(Object.values(weightMap ?? {}))].sort().map((s) => join(dir, s));
    const absent = shards.filter((s) => !existsSync(s));
    if (shards.length === 0) return `${path}: lists no shards`;
    if (absent.length)
      return `${path}: shard ${absent.map((s) => basename(s)).join(', ')} is missing (download incomplete?)`;
    return { file: path, files: shards };
  }
  return undefined;
}

export function findDiffusersSet(root: string): DiffusersFindings | { problem: string } {
  const index = readModelIndex(root);
  if (typeof index === 'string') return { problem: index };
  if (!/StableDiffusion3/.test(index.className)) {
    return {
      problem: `${root} is a diffusers folder of ${index.className || 'an unknown pipeline'}, not of Stable Diffusion 3`,
    };
  }
  const components: Partial<ModelComponents> = {};
  const notes: string[] = [];
  const missing: string[] = [];
  for (const component of Object.keys(FOLDERS) as ComponentName[]) {
    const [folder, base] = FOLDERS[component];
    const found = componentFiles(join(root, folder), base);
    if (typeof found === 'string') {
      missing.push(found);
    } else if (found) {
      const format = component === 'mmdit' || component === 'vae' ? 'diffusers' : 'reference';
      components[component] = { ...found, prefix: '', format } satisfies ComponentLocation;
    } else if (component === 't5') {
      const why = index.declared(folder)
        ? `${join(root, folder)} has no weights`
        : 'the folder leaves T5 out';
      notes.push(
        `No T5-XXL text encoder (${why}): prompts are encoded by the CLIP encoders alone, with zeros in place of T5, which follows long prompts less well.`,
      );
    } else {
      missing.push(`${join(root, folder)}: no ${base}.safetensors (or shard index) found`);
    }
  }
  let family: ModelFamily = 'custom';
  if (components.mmdit) {
    const weights = ComponentWeights.open(components.mmdit, 'mmdit');
    try {
      const shape = mmditShape((key) => {
        const t = weights.resolve(key);
        return t && resolvedShape(t);
      }, weights.keys());
      if (shape) family = familyOf(shape, [basename(root)]);
      else missing.push(`${join(root, 'transformer')}: not an SD3 transformer (no pos_embed.proj.weight)`);
    } finally {
      weights.close();
    }
  }
  return { name: basename(root), family, components, notes, missing };
}
