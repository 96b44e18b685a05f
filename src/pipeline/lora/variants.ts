/**
 * LoRAs without touching other users' jobs: each combination of LoRAs and weights runs on its own
 * denoiser, built on a merged copy of the MMDiT's weights (merge.ts), while jobs without LoRAs keep
 * the model's own. The last few combinations stay loaded (least recently used out first), so a
 * reroll or a second image with the same LoRAs costs nothing more; their merged files stay on
 * disk as many (a restart finds them again) and older ones are deleted.
 *
 * Why merge rather than add low-rank branches to the graph and feed the LoRA tensors per run: a
 * merged denoiser runs exactly the graph (and kernels: fp8 W8A8, CUDA graphs) of the model itself,
 * at its speed; branches would cost every step of every LoRA job an extra pair of GEMMs per layer
 * and a second graph variant per rank and layer set. The price is the merge and the load on a
 * combination's first use, and per cached combination one more full denoiser session in device
 * memory: its graph's initializers are all the MMDiT's weights (the merged layers from the merged
 * file, the others read again from the checkpoint), plus an arena of its own.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { FileWeightSource, OverlayWeightSource, resolvedShape, type WeightSource } from '../onnx/params.js';
import { loraCombinationKey } from '../residency.js';
import type { CapiDenoiser } from '../sd35/capi-denoiser.js';
import type { ComponentSession } from '../sd35/component-session.js';
import type { AppliedLora, GenerationLora } from '../types.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { LoraError } from './errors.js';
import { type LoraFile, type LoraModel, loraModules, readLoraFile } from './formats.js';
import { addnetHash, SHORT_HASH_LENGTH } from './hash.js';
import { mergeLoras } from './merge.js';

/** A way to denoise: the stock path's MMDiT session, or the C-API step loop. */
export interface Denoiser {
  mmdit?: ComponentSession;
  capi?: CapiDenoiser;
  release(): Promise<void>;
}

/** What the engine offers the LoRA cache: the model's MMDiT weights and a way to open a denoiser on others. */
export interface LoraHost {
  /** The model's name, for messages. */
  model: string;
  /** The MMDiT's weights as the model's own denoiser reads them, and the key its graphs are cached by. */
  weights: { source: WeightSource; key: string };
  /** A denoiser like the model's own, on `source` (graphs cached by `key`). */
  openDenoiser(source: WeightSource, key: string): Promise<Denoiser>;
}

/** Combinations kept loaded when `loras.cachedCombinations` is not set. */
export const DEFAULT_CACHED_COMBINATIONS = 2;

/**
 * Combinations an engine may hold loaded at once under its options (0: no LoRAs configured). Each
 * is a full denoiser session — every MMDiT weight on the device, the unchanged ones too, and an
 * arena of its own — so each costs about what the model's own MMDiT does.
 */
export function cachedCombinationsOf(
  loras: { dir: string; cachedCombinations?: number } | undefined,
): number {
  return loras ? Math.max(1, loras.cachedCombinations ?? DEFAULT_CACHED_COMBINATIONS) : 0;
}

export interface LoraVariantsOptions {
  /** The folder LoRA files are in (config `loras.dir`); a request's `file` is relative to it. */
  dir: string;
  /** Where merged weights are written. */
  workDir: string;
  /** Combinations kept loaded (and merged files kept on disk). @default 2 */
  capacity?: number;
  /**
   * An op library whose native merge kernel to use (the engine's own, e.g. the GPU bundle's CUDA
   * library); @default the CPU library built from the sources. JS when neither has the kernel.
   */
  mergeLibrary?: string;
}

export interface LoraVariant {
  denoiser: Denoiser;
  applied: AppliedLora[];
  /** Time spent merging and loading now (0 when the combination was loaded). */
  ms: number;
  cached: boolean;
}

interface Entry {
  denoiser: Denoiser;
  merged: SafetensorsFile;
  applied: AppliedLora[];
  /** The requests' keys (residency.ts `loraCombinationKey`) that came to this combination. */
  keys: Set<string>;
}

interface Use {
  request: GenerationLora;
  path: string;
  header: string;
  hash: string;
}

export class LoraVariants {
  readonly #host: LoraHost;
  readonly #dir: string;
  readonly #workDir: string;
  readonly #capacity: number;
  readonly #mergeLibrary: string | undefined;
  /** Loaded combinations, least recently used first. */
  readonly #entries = new Map<string, Entry>();
  #model: LoraModel | undefined;
  #modules: ReturnType<typeof loraModules> | undefined;

  constructor(host: LoraHost, options: LoraVariantsOptions) {
    this.#host = host;
    this.#dir = options.dir;
    // One folder per model: pruning one model's merges never deletes another's.
    const model = createHash('sha256').update(host.weights.key).digest('hex').slice(0, 12);
    this.#workDir = join(options.workDir, model);
    this.#capacity = Math.max(1, options.capacity ?? DEFAULT_CACHED_COMBINATIONS);
    this.#mergeLibrary = options.mergeLibrary;
  }

  /** Combinations loaded now, least recently used first (their ids). */
  get loaded(): string[] {
    return [...this.#entries.keys()];
  }

  /**
   * Combinations loaded now as the queue's ETA names them (residency.ts `loraCombinationKey`: the
   * requests' names, files and weights), least recently used first.
   */
  get loadedKeys(): string[] {
    return [...this.#entries.values()].flatMap((e) => [...e.keys]);
  }

  /**
   * The denoiser for `loras` (merged and loaded on first use), or undefined when none changes
   * anything (all weights 0). A file that cannot be applied is a LoraError naming it.
   */
  async variant(loras: readonly GenerationLora[]): Promise<LoraVariant | undefined> {
    const asked = loras
      .filter((l) => l.weight !== 0)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (asked.length === 0) return undefined;
    const started = performance.now();
    const uses = await Promise.all(asked.map((request) => this.#use(request)));
    const id = createHash('sha256')
      .update(this.#host.weights.key)
      .update(JSON.stringify(uses.map((u) => [u.header, u.hash, u.request.weight])))
      .digest('hex')
      .slice(0, 24);
    const combination = loraCombinationKey(asked)!;
    const loaded = this.#entries.get(id);
    if (loaded) {
      this.#entries.delete(id);
      this.#entries.set(id, loaded);
      loaded.keys.delete(combination);
      loaded.keys.add(combination);
      return { denoiser: loaded.denoiser, applied: loaded.applied, ms: 0, cached: true };
    }
    // Merged first: a LoRA that cannot be applied fails here and leaves the loaded combinations be.
    const { file: merged, fresh } = await this.#merged(id, uses);
    try {
      // Then room: a new combination never holds more than `capacity` denoisers at once.
      while (this.#entries.size >= this.#capacity) await this.#evict(this.#entries.keys().next().value!);
      if (fresh) this.#prune(merged.path);
      const source = new OverlayWeightSource(new FileWeightSource(merged), this.#host.weights.source);
      // A built graph points into the merged file: its cache key names that very file.
      const key = `${this.#host.weights.key}:lora:${merged.path}:${merged.headerHash}`;
      const denoiser = await this.#host.openDenoiser(source, key);
      const applied = uses.map((u) => ({
        name: u.request.name,
        weight: u.request.weight,
        hash: u.hash.slice(0, SHORT_HASH_LENGTH),
      }));
      this.#entries.set(id, { denoiser, merged, applied, keys: new Set([combination]) });
      return { denoiser, applied, ms: performance.now() - started, cached: false };
    } catch (error) {
      merged.close();
      throw error;
    }
  }

  async release(): Promise<void> {
    for (const id of [...this.#entries.keys()]) await this.#evict(id);
  }

  async #evict(id: string): Promise<void> {
    const entry = this.#entries.get(id);
    this.#entries.delete(id);
    if (!entry) return;
    await entry.denoiser.release();
    entry.merged.close();
  }

  async #use(request: GenerationLora): Promise<Use> {
    const path = isAbsolute(request.file) ? request.file : resolve(this.#dir, request.file);
    let header: string;
    try {
      const file = SafetensorsFile.open(path);
      header = file.headerHash;
      file.close();
    } catch (error) {
      throw new LoraError(request.name, path, `LoRA ${request.name}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return { request, path, header, hash: await addnetHash(path) };
  }

  /** The merged weights of a combination: written now, or found from an earlier merge. */
  async #merged(id: string, uses: readonly Use[]): Promise<{ file: SafetensorsFile; fresh: boolean }> {
    mkdirSync(this.#workDir, { recursive: true });
    const path = join(this.#workDir, `lora-${id}.safetensors`);
    try {
      const now = new Date();
      utimesSync(path, now, now);
      return { file: SafetensorsFile.open(path), fresh: false };
    } catch {
      // Not merged yet (or unreadable): merge now.
    }
    const { model, modules } = this.#lorasModel();
    const files: LoraFile[] = [];
    try {
      for (const u of uses) files.push(readLoraFile(u.request.name, u.path, model, modules));
      await mergeLoras(
        this.#host.weights.source,
        model.shapes,
        files.map((lora, i) => ({ lora, weight: uses[i]!.request.weight })),
        path,
        this.#mergeLibrary ? { nativeLibrary: this.#mergeLibrary } : {},
      );
    } finally {
      for (const f of files) f.file.close();
    }
    return { file: SafetensorsFile.open(path), fresh: true };
  }

  /** Keeps the merged files of the loaded combinations and the newest others, up to `capacity` in all. */
  #prune(keep: string): void {
    const inUse = new Set([keep, ...[...this.#entries.values()].map((e) => e.merged.path)]);
    const others = readdirSync(this.#workDir)
      .filter((f) => /^lora-[0-9a-f]+\.safetensors$/.test(f))
      .map((f) => join(this.#workDir, f))
      .filter((p) => !inUse.has(p))
      .map((p) => ({ p, at: statSync(p).mtimeMs }))
      .sort((a, b) => b.at - a.at);
    for (const { p } of others.slice(Math.max(0, this.#capacity - inUse.size))) rmSync(p, { force: true });
  }

  #lorasModel(): { model: LoraModel; modules: ReturnType<typeof loraModules> } {
    if (!this.#model || !this.#modules) {
      const { source } = this.#host.weights;
      const shapes = new Map<string, number[]>();
      for (const key of source.keys()) {
        const t = source.resolve(key);
        if (t) shapes.set(key, resolvedShape(t));
      }
      this.#model = { name: this.#host.model, shapes };
      this.#modules = loraModules(shapes);
    }
    return { model: this.#model, modules: this.#modules };
  }
}
