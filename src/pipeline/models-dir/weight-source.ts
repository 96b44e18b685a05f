/**
 * A component's weights by reference key, whatever the folder layout: the graph builders ask for
 * `joint_blocks.0.x_block.attn.qkv.weight` (keys relative to the component) and get the file
 * bytes, or a recipe over them for diffusers folders. For ComfyUI files this is the identity with
 * the component's prefix.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { ModelError } from '../../errors.js';
import type { ResolvedTensor, WeightSource } from '../onnx/params.js';
import { SafetensorsFile, type TensorInfo } from '../weights/safetensors.js';
import { type KeyRecipe, mmditKeyMap, vaeKeyMap } from './diffusers-keys.js';
import type { ComponentLocation, ComponentName } from './types.js';

interface Stored {
  file: SafetensorsFile;
  info: TensorInfo;
}

/** T5 checkpoints written by transformers tie the input embedding to `shared.weight` and may omit the other name. */
const ALIASES: Partial<Record<ComponentName, [string, string][]>> = {
  t5: [
    ['encoder.embed_tokens.weight', 'shared.weight'],
    ['shared.weight', 'encoder.embed_tokens.weight'],
  ],
};

export class ComponentWeights implements WeightSource {
  readonly description: string;
  /** Identifies the weights (file headers, prefix, layout) for caches of built graphs. */
  readonly fingerprint: string;
  /**
   * The `__metadata__` of the component's (first) file. The bundled tiny model puts what shapes
   * cannot tell (attention heads, activation) in `atelier.config`, as JSON named like the
   * transformers configs (`num_attention_heads`, `hidden_act`, `num_heads` …).
   */
  readonly metadata: Readonly<Record<string, string>>;
  readonly #files: SafetensorsFile[];
  readonly #tensors: Map<string, ResolvedTensor>;

  private constructor(
    description: string,
    files: SafetensorsFile[],
    tensors: Map<string, ResolvedTensor>,
    fingerprint: string,
  ) {
    this.description = description;
    this.#files = files;
    this.#tensors = tensors;
    this.fingerprint = fingerprint;
    this.metadata = files[0]?.metadata ?? {};
  }

  /** Opens a component's files (headers only); a corrupt file is a ModelError naming it. */
  static open(location: ComponentLocation, component: ComponentName): ComponentWeights {
    const files: SafetensorsFile[] = [];
    try {
      for (const path of location.files) files.push(SafetensorsFile.open(path));
    } catch (error) {
      for (const f of files) f.close();
      throw error;
    }
    const stored = new Map<string, Stored>();
    for (const file of files) {
      for (const [name, info] of file.tensors) {
        if (name.startsWith(location.prefix)) stored.set(name.slice(location.prefix.length), { file, info });
      }
    }
    const tensors =
      location.format === 'reference'
        ? referenceTensors(stored)
        : diffusersTensors(stored, component, location.file);
    for (const [key, alias] of ALIASES[component] ?? []) {
      const target = tensors.get(alias);
      if (!tensors.has(key) && target) tensors.set(key, target);
    }
    const hash = createHash('sha256').update(`${location.format}\0${location.prefix}\0${component}`);
    for (const f of files) hash.update(f.headerHash);
    const description = location.prefix ? `${location.file} (keys ${location.prefix}*)` : location.file;
    return new ComponentWeights(description, files, tensors, hash.digest('hex'));
  }

  resolve(key: string): ResolvedTensor | undefined {
    return this.#tensors.get(key);
  }

  keys(prefix = ''): string[] {
    return [...this.#tensors.keys()].filter((k) => k.startsWith(prefix));
  }

  close(): void {
    for (const f of this.#files) f.close();
  }
}

function referenceTensors(stored: Map<string, Stored>): Map<string, ResolvedTensor> {
  const tensors = new Map<string, ResolvedTensor>();
  for (const [key, { file, info }] of stored) tensors.set(key, { kind: 'tensor', file, info });
  return tensors;
}

function diffusersTensors(
  stored: Map<string, Stored>,
  component: ComponentName,
  where: string,
): Map<string, ResolvedTensor> {
  if (component !== 'mmdit' && component !== 'vae') return referenceTensors(stored);
  const recipes =
    component === 'mmdit'
      ? mmditKeyMap(stored.keys())
      : vaeKeyMap(stored.keys(), (key) => stored.get(key)?.info.shape.length ?? 0);
  const tensors = new Map<string, ResolvedTensor>();
  for (const [ref, recipe] of recipes) tensors.set(ref, fromRecipe(recipe, stored, where));
  return tensors;
}

function fromRecipe(recipe: KeyRecipe, stored: Map<string, Stored>, where: string): ResolvedTensor {
  const plain = (key: string): ResolvedTensor => {
    const s = stored.get(key)!;
    return { kind: 'tensor', file: s.file, info: s.info };
  };
  switch (recipe.kind) {
    case 'tensor':
      return plain(recipe.key);
    case 'concat':
      return { kind: 'concat', axis: 0, parts: recipe.keys.map(plain) };
    case 'reshape':
      return {
        kind: 'reshape',
        shape: recipe.shape(stored.get(recipe.key)!.info.shape),
        of: plain(recipe.key),
      };
    case 'swap-halves': {
      const { file, info } = stored.get(recipe.key)!;
      const [rows, ...rest] = info.shape;
      if (rows % 2 !== 0) {
        throw new ModelError(
          where,
          `${where}: tensor "${recipe.key}" has ${rows} rows, expected an even number (scale and shift)`,
        );
      }
      // Rows are contiguous, so each half is a byte range of the stored tensor.
      const half = (index: 0 | 1): ResolvedTensor => ({
        kind: 'tensor',
        file,
        info: {
          name: `${info.name}[${index === 0 ? 'first' : 'second'} half]`,
          dtype: info.dtype,
          shape: [rows / 2, ...rest],
          offset: info.offset + index * (info.byteLength / 2),
          byteLength: info.byteLength / 2,
        },
      });
      return { kind: 'concat', axis: 0, parts: [half(1), half(0)] };
    }
  }
}

const contentHashes = new Map<string, string>();

/**
 * What a component's weights are, whatever file holds them: sha256 over its tensors (names after
 * the prefix, dtype, shape and bytes, in name order) and its key format. SD3.5 Large, Large Turbo
 * and Medium each carry the same VAE in their own checkpoint: resident together they can then
 * share one VAE session (its weights and its decode arena) instead of three. Reads every byte of
 * the component once per process (the VAE: 168 MB in fp16, a fraction of a second from the page
 * cache); remembered by path, prefix, size and modification time.
 */
export function componentContentHash(location: ComponentLocation): string {
  const stamp = location.files.map((f) => {
    const s = statSync(f);
    return `${f}\0${s.size}\0${s.mtimeMs}`;
  });
  const memo = `${location.format}\0${location.prefix}\0${stamp.join('\0')}`;
  const known = contentHashes.get(memo);
  if (known) return known;
  const hash = createHash('sha256').update(`${location.format}\0`);
  const files = location.files.map((f) => SafetensorsFile.open(f));
  try {
    const tensors: [string, SafetensorsFile, TensorInfo][] = [];
    for (const file of files) {
      for (const [name, info] of file.tensors) {
        if (name.startsWith(location.prefix)) tensors.push([name.slice(location.prefix.length), file, info]);
      }
    }
    tensors.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const [name, file, info] of tensors) {
      hash.update(`${name}\0${info.dtype}\0${info.shape.join(',')}\0`).update(file.readBytes(info.name));
    }
  } finally {
    for (const f of files) f.close();
  }
  const digest = hash.digest('hex');
  contentHashes.set(memo, digest);
  return digest;
}
