/**
 * ComfyUI's `models/` folder: an SD3 checkpoint in `checkpoints/` (or a diffusion-only file in
 * `diffusion_models/` / `unet/`), text encoders in `text_encoders/` (`clip/` in older installs)
 * unless the checkpoint bundles them, and a VAE in the checkpoint or in `vae/`.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, isAbsolute, join, relative } from 'node:path';
import { FAMILY_PREFERENCE, familyOf, type MmditShape, mmditShape } from './family.js';
import { type HeaderView, listSafetensors, readHeader } from './headers.js';
import { bundledPrefix, clipKind, isDiffusersVae, PROBES, standalonePrefix } from './probes.js';
import { readSamplingHint, type SamplingHint } from './sampling-hint.js';
import type { ComponentLocation, ComponentName, ModelComponents, ModelFamily } from './types.js';

export const CHECKPOINT_DIRS = ['checkpoints', 'diffusion_models', 'unet'] as const;
export const TEXT_ENCODER_DIRS = ['text_encoders', 'clip'] as const;
export const VAE_DIRS = ['vae'] as const;

export interface ComfyUIOptions {
  modelsDir: string;
  /** A checkpoint's file name (under checkpoints/, diffusion_models/ or unet/), relative or absolute path. */
  checkpoint?: string | null;
  /** File names under text_encoders/ (or clip/) chosen by the operator. */
  textEncoders?: { clipL?: string | null; clipG?: string | null; t5?: string | null };
  /**
   * Which T5-XXL file wins when several are there: `fp8` (t5xxl_fp8_e4m3fn: half the memory) or
   * `fp16` (t5xxl_fp16: what fp16/fp32 precision wants).
   * @default 'fp8'
   */
  t5Preference?: 'fp8' | 'fp16';
}

/** What was found in a ComfyUI folder: an MMDiT for sure, other components where they were found. */
export interface ComfyUIFindings {
  name: string;
  family: ModelFamily;
  checkpoint: string;
  components: Partial<ModelComponents> & { mmdit: ComponentLocation };
  notes: string[];
  /** What the checkpoint's `atelier.sampling` metadata suggests. */
  sampling?: SamplingHint;
  /** One line per required component not found, saying where it was looked for. */
  missing: string[];
}

/** Why no checkpoint was chosen: what was looked at, for the error message. */
export interface ComfyUINothing {
  lookedAt: string[];
  /** A problem with an explicitly named file: reported as is. */
  problem?: string;
}

interface Candidate {
  path: string;
  header: HeaderView;
  prefix: string;
  shape: MmditShape;
  family: ModelFamily;
}

/** What each component is called in messages. */
export const LABEL: Record<ComponentName, string> = {
  mmdit: 'MMDiT',
  vae: 'VAE',
  clipL: 'CLIP-L text encoder',
  clipG: 'CLIP-G text encoder',
  t5: 'T5-XXL text encoder',
};

/** File names that say which text encoder a file is (clip_l.safetensors, sd3_5_clip_g.safetensors, t5xxl_fp16 …). */
const NAME_PATTERN: Record<'clipL' | 'clipG' | 't5', RegExp> = {
  clipL: /clip_l(?![a-z])/i,
  clipG: /clip_g(?![a-z])/i,
  t5: /t5xxl|t5_xxl|t5-v1_1-xxl/i,
};

class Headers {
  readonly #cache = new Map<string, HeaderView | Error>();
  get(path: string): HeaderView | Error {
    let entry = this.#cache.get(path);
    if (!entry) {
      try {
        entry = readHeader(path);
      } catch (error) {
        entry = error as Error;
      }
      this.#cache.set(path, entry);
    }
    return entry;
  }
}

export function findComfyUISet(options: ComfyUIOptions): ComfyUIFindings | ComfyUINothing {
  const { modelsDir } = options;
  const headers = new Headers();
  const notes: string[] = [];

  const chosen = chooseCheckpoint(options, headers, notes);
  if (!('header' in chosen)) return chosen;

  const components: ComfyUIFindings['components'] = {
    mmdit: location(chosen.path, chosen.prefix),
  };
  const missing: string[] = [];
  const textEncoderFiles = TEXT_ENCODER_DIRS.flatMap((d) => listSafetensors(join(modelsDir, d), 2));
  const textEncoderDirs = TEXT_ENCODER_DIRS.map((d) => join(modelsDir, d)).join(' and ');
  const taken = new Set<string>();
  for (const component of ['clipL', 'clipG', 't5'] as const) {
    const named = options.textEncoders?.[component];
    const found = named
      ? namedTextEncoder(modelsDir, component, named, headers)
      : findTextEncoder(
          component,
          chosen.header,
          textEncoderFiles,
          headers,
          taken,
          options.t5Preference ?? 'fp8',
        );
    if (typeof found === 'string') {
      missing.push(found);
    } else if (found) {
      components[component] = found;
      if (found.file !== chosen.path) taken.add(found.file);
    } else if (component === 't5') {
      notes.push(
        `No T5-XXL text encoder (t5xxl*.safetensors in ${textEncoderDirs}, or inside ${basename(chosen.path)}): ` +
          'prompts are encoded by the CLIP encoders alone, with zeros in place of T5 (as the reference does without T5), which follows long prompts less well.',
      );
    } else {
      const pattern = component === 'clipL' ? 'clip_l' : 'clip_g';
      missing.push(
        `the ${LABEL[component]}: looked for ${pattern}*.safetensors in ${textEncoderDirs}, and inside ${chosen.path}`,
      );
    }
  }

  const latentChannels = chosen.header.tensors.get(`${chosen.prefix}x_embedder.proj.weight`)?.shape[1];
  const vae = findVae(modelsDir, chosen, headers, latentChannels);
  if (vae) components.vae = vae;
  else {
    missing.push(
      `the VAE: looked for ${PROBES.vae.bundledPrefixes[0]}* keys inside ${chosen.path}, and for an SD3 VAE (${latentChannels} latent channels) in ${join(modelsDir, 'vae')}`,
    );
  }

  const { hint: sampling, note } = readSamplingHint(chosen.header.metadata, basename(chosen.path));
  if (note) notes.push(note);
  return {
    name: basename(chosen.path).replace(/\.safetensors$/, ''),
    family: chosen.family,
    checkpoint: chosen.path,
    components,
    notes,
    missing,
    ...(sampling ? { sampling } : {}),
  };
}

/** The checkpoint named in the config, else the most preferred SD3 checkpoint found. */
function chooseCheckpoint(
  options: ComfyUIOptions,
  headers: Headers,
  notes: string[],
): Candidate | ComfyUINothing {
  const { modelsDir } = options;
  const checkpointDirs = CHECKPOINT_DIRS.map((d) => join(modelsDir, d));
  if (options.checkpoint) {
    const path = resolveNamed(modelsDir, CHECKPOINT_DIRS, options.checkpoint);
    if (!path) {
      const present = CHECKPOINT_DIRS.flatMap((d) =>
        listSafetensors(join(modelsDir, d)).map((p) => basename(p)),
      );
      return {
        lookedAt: checkpointDirs,
        problem:
          `models.checkpoint = ${options.checkpoint}: no such file in ${checkpointDirs.join(', ')}` +
          (present.length ? ` (there: ${present.join(', ')})` : ' (no .safetensors files there)'),
      };
    }
    const header = headers.get(path);
    if (header instanceof Error) return { lookedAt: [path], problem: header.message };
    const candidate = asCandidate(path, header);
    if (!candidate) {
      return {
        lookedAt: [path],
        problem: `${path} is not an SD3 model: it has no ${PROBES.mmdit.bundledPrefixes[0]}joint_blocks.* keys (an SDXL, Flux or other model?)`,
      };
    }
    return candidate;
  }
  const candidates: Candidate[] = [];
  const others: string[] = [];
  const broken: string[] = [];
  for (const path of checkpointDirs.flatMap((d) => listSafetensors(d))) {
    const header = headers.get(path);
    if (header instanceof Error) {
      const rel = relative(modelsDir, path);
      const message = header.message.split(path).join(rel);
      broken.push(message.startsWith(rel) ? message : `${rel}: ${message}`);
      notes.push(
        header.message.startsWith(path) ? `Skipped ${header.message}` : `Skipped ${path}: ${header.message}`,
      );
      continue;
    }
    const candidate = asCandidate(path, header);
    if (candidate) candidates.push(candidate);
    else others.push(basename(path));
  }
  if (candidates.length === 0 && broken.length) {
    // A damaged checkpoint is the model the operator meant: name it and what is wrong, not "none found".
    return {
      lookedAt: checkpointDirs,
      problem:
        `No usable SD3.5 checkpoint in ${modelsDir}:\n${broken.map((b) => `  - ${b}`).join('\n')}` +
        (others.length ? `\n  (also found ${others.join(', ')}: not SD3 models)` : ''),
    };
  }
  if (candidates.length === 0) {
    const found = others.length ? ` (found ${others.join(', ')}: not SD3 models)` : '';
    return { lookedAt: [`an SD3 checkpoint (*.safetensors) in ${checkpointDirs.join(', ')}${found}`] };
  }
  const rank = (c: Candidate) => FAMILY_PREFERENCE.indexOf(c.family);
  candidates.sort((a, b) => rank(a) - rank(b) || basename(a.path).localeCompare(basename(b.path)));
  if (candidates.length > 1) {
    const rest = candidates.slice(1).map((c) => basename(c.path));
    notes.push(
      `Using ${basename(candidates[0].path)}; also found ${rest.join(', ')} (choose one with models.checkpoint).`,
    );
  }
  return candidates[0];
}

function asCandidate(path: string, header: HeaderView): Candidate | undefined {
  const prefix = bundledPrefix(header, 'mmdit');
  if (prefix === undefined) return undefined;
  const keys = function* () {
    for (const k of header.tensors.keys()) if (k.startsWith(prefix)) yield k.slice(prefix.length);
  };
  const shape = mmditShape((k) => header.tensors.get(prefix + k)?.shape, keys());
  if (!shape) return undefined;
  const family = familyOf(shape, [basename(path), ...Object.values(header.metadata).map(String)]);
  return { path, header, prefix, shape, family };
}

function location(
  file: string,
  prefix: string,
  format: 'reference' | 'diffusers' = 'reference',
): ComponentLocation {
  return { file, prefix, format, files: [file] };
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** A file named by the operator: an absolute path, a path under the models folder, or a name in `dirs`. */
function resolveNamed(modelsDir: string, dirs: readonly string[], name: string): string | undefined {
  const names = name.endsWith('.safetensors') ? [name] : [name, `${name}.safetensors`];
  if (isAbsolute(name)) return names.find(isFile);
  for (const dir of ['', ...dirs]) {
    for (const n of names) if (isFile(join(modelsDir, dir, n))) return join(modelsDir, dir, n);
  }
  for (const dir of dirs) {
    const hit = listSafetensors(join(modelsDir, dir)).find((p) => names.includes(basename(p)));
    if (hit) return hit;
  }
  return undefined;
}

function namedTextEncoder(
  modelsDir: string,
  component: 'clipL' | 'clipG' | 't5',
  name: string,
  headers: Headers,
): ComponentLocation | string {
  const setting = `models.textEncoders.${component} = ${name}`;
  const path = resolveNamed(modelsDir, TEXT_ENCODER_DIRS, name);
  if (!path) {
    const dirs = TEXT_ENCODER_DIRS.map((d) => join(modelsDir, d)).join(' or ');
    return `${setting}: no such file in ${dirs}`;
  }
  const header = headers.get(path);
  if (header instanceof Error) return `${setting}: ${header.message}`;
  const prefix = standalonePrefix(header, component);
  if (prefix === undefined)
    return `${setting}: ${path} is not a ${LABEL[component]} (no ${PROBES[component].key} key)`;
  return location(path, prefix);
}

/**
 * A text encoder bundled into the checkpoint, else a file whose name says what it is, else (CLIP
 * only) a file whose depth says it. Returns undefined when nothing fits.
 */
function findTextEncoder(
  component: 'clipL' | 'clipG' | 't5',
  checkpoint: HeaderView,
  files: string[],
  headers: Headers,
  taken: Set<string>,
  t5Preference: 'fp8' | 'fp16',
): ComponentLocation | undefined {
  // What a checkpoint bundles was trained (or at least shipped) with it: it wins over loose files.
  const bundled = bundledPrefix(checkpoint, component);
  if (bundled !== undefined) return location(checkpoint.path, bundled);

  const byName = files.filter((f) => NAME_PATTERN[component].test(basename(f)) && !taken.has(f));
  if (component === 't5') byName.sort((a, b) => t5Rank(a, t5Preference) - t5Rank(b, t5Preference));
  for (const path of byName) {
    const header = headers.get(path);
    if (header instanceof Error) continue;
    const prefix = standalonePrefix(header, component);
    if (prefix !== undefined) return location(path, prefix);
  }
  if (component === 't5') return undefined;
  for (const path of files) {
    if (taken.has(path) || Object.values(NAME_PATTERN).some((p) => p.test(basename(path)))) continue;
    const header = headers.get(path);
    if (header instanceof Error) continue;
    const prefix = standalonePrefix(header, component);
    if (prefix !== undefined && clipKind(header, prefix) === component) return location(path, prefix);
  }
  return undefined;
}

/** Lower is preferred: fp8 first for `fp8` (half the memory), 16-bit first for `fp16`. */
function t5Rank(path: string, preference: 'fp8' | 'fp16'): number {
  const name = basename(path).toLowerCase();
  const fp8 = name.includes('fp8') || name.includes('e4m3');
  const scaled = name.includes('scaled');
  const half = name.includes('fp16') || name.includes('bf16');
  if (preference === 'fp8') return fp8 ? (scaled ? 1 : 0) : half ? 2 : 3;
  return half ? 0 : fp8 ? (scaled ? 3 : 2) : 1;
}

function findVae(
  modelsDir: string,
  chosen: Candidate,
  headers: Headers,
  latentChannels: number | undefined,
): ComponentLocation | undefined {
  const bundled = bundledPrefix(chosen.header, 'vae');
  if (bundled !== undefined) return location(chosen.path, bundled);
  // Flux's ae.safetensors has the same shape (16 latent channels) but other latents: never pick it by shape.
  const files = VAE_DIRS.flatMap((d) => listSafetensors(join(modelsDir, d), 2))
    .filter((f) => !/flux/i.test(f) && basename(f) !== 'ae.safetensors')
    .sort((a, b) => Number(!/sd3/i.test(basename(a))) - Number(!/sd3/i.test(basename(b))));
  for (const path of files) {
    const header = headers.get(path);
    if (header instanceof Error) continue;
    const prefix = standalonePrefix(header, 'vae');
    if (prefix === undefined) continue;
    const channels = header.tensors.get(`${prefix}decoder.conv_in.weight`)?.shape[1];
    if (latentChannels !== undefined && channels !== latentChannels) continue;
    return location(path, prefix, isDiffusersVae(header, prefix) ? 'diffusers' : 'reference');
  }
  return undefined;
}

/** True when `dir` looks like a ComfyUI models folder (has one of its well-known subfolders). */
export function looksLikeComfyUI(dir: string): boolean {
  return [...CHECKPOINT_DIRS, ...TEXT_ENCODER_DIRS, ...VAE_DIRS].some((d) => existsSync(join(dir, d)));
}
