/**
 * Which models stay loaded when not all fit: least recently used out first, decided between jobs
 * (a pipeline runs one job at a time, so "before the next job's model loads" is between jobs).
 *
 * A model's footprint is what only it holds (its MMDiT's weights and activations) plus parts it
 * may share with other models (text encoders, VAE), keyed by identity: models whose text encoders
 * are the same files hold them once. Two limits, either or both: a count (`models.maxResident`)
 * and bytes (the GPU budget: `models.gpuMemoryLimit` or the free memory at start).
 *
 * Pure: the engine asks it before each load, the scheduler's ETA simulates the same rule.
 */

export interface ModelFootprint {
  /** Bytes only this model holds. */
  ownBytes: number;
  /** Bytes of parts that models with the same files share, by the parts' identity. */
  shared: Readonly<Record<string, number>>;
}

export interface ResidencyLimits {
  /** Most models loaded at once. @default no limit */
  maxResident?: number;
  /** Bytes all loaded models may take together. @default no limit */
  budgetBytes?: number;
}

/** Bytes a set of models takes together: each shared part once. */
export function footprintBytes(
  models: Iterable<string>,
  footprints: Readonly<Record<string, ModelFootprint | undefined>>,
): number {
  let bytes = 0;
  const parts = new Map<string, number>();
  for (const name of models) {
    const f = footprints[name];
    if (!f) continue;
    bytes += f.ownBytes;
    for (const [key, size] of Object.entries(f.shared)) parts.set(key, Math.max(parts.get(key) ?? 0, size));
  }
  for (const size of parts.values()) bytes += size;
  return bytes;
}

function fits(
  models: readonly string[],
  footprints: Readonly<Record<string, ModelFootprint | undefined>>,
  limits: ResidencyLimits,
): boolean {
  if (limits.maxResident !== undefined && models.length > limits.maxResident) return false;
  if (limits.budgetBytes !== undefined && footprintBytes(models, footprints) > limits.budgetBytes)
    return false;
  return true;
}

export interface LoadPlan {
  /** Models to unload first, least recently used first. */
  evict: string[];
  /** Even alone, `target` exceeds the byte budget (it is loaded anyway: the estimate may err high). */
  overBudget: boolean;
}

/**
 * What to unload so `target` can be loaded beside the others: the least recently used first, until
 * the set fits. `resident` is least recently used first; `target` must not be in it.
 */
export function planLoad(
  target: string,
  resident: readonly string[],
  footprints: Readonly<Record<string, ModelFootprint | undefined>>,
  limits: ResidencyLimits,
): LoadPlan {
  const kept = resident.filter((name) => name !== target);
  const evict: string[] = [];
  while (kept.length > 0 && !fits([...kept, target], footprints, limits)) evict.push(kept.shift()!);
  return { evict, overBudget: !fits([target], footprints, limits) };
}

/**
 * How many of `models` (in this order: the default first) are loaded at start: each in turn while
 * the set still fits; the first one always.
 */
export function initialResidents(
  models: readonly string[],
  footprints: Readonly<Record<string, ModelFootprint | undefined>>,
  limits: ResidencyLimits,
): string[] {
  const loaded: string[] = [];
  for (const name of models) {
    if (loaded.length > 0 && !fits([...loaded, name], footprints, limits)) break;
    loaded.push(name);
  }
  return loaded;
}

/**
 * A LoRA combination's identity as the pipeline's cache (lora/variants.ts) and the queue's ETA both
 * see it: the LoRAs of non-zero weight, by name, each with its file and weight. Undefined when the
 * job applies none (no LoRAs, or all at weight 0: it runs on the model's own denoiser).
 */
export function loraCombinationKey(
  loras: readonly { name: string; file: string; weight: number }[] | undefined,
): string | undefined {
  const used = (loras ?? [])
    .filter((l) => l.weight !== 0)
    .map((l) => `${l.name}=${l.file}@${l.weight}`)
    .sort();
  return used.length ? used.join('|') : undefined;
}

/** Loaded LoRA combinations per model, for the simulation. */
export interface LoraResidency {
  /** Per loaded model, its combinations loaded now, least recently used first. */
  loaded: Readonly<Record<string, readonly string[]>>;
  /** Combinations each model keeps loaded at once (`loras.cachedCombinations`). */
  capacity: number;
}

/**
 * A pipeline's resident models as a cache the ETA can play forward: `use(model)` says whether a job
 * of that model would have to load it first, and keeps the rule above (count only: what the
 * pipeline reports as its capacity). With `loras`, each model's LoRA combinations too
 * (`useLoras`): the same rule per model at its combination capacity; a model loaded afresh holds
 * none, one unloaded loses its own.
 */
export class ResidencySimulation {
  readonly #resident: string[];
  readonly #loras = new Map<string, string[]>();
  readonly #loraCapacity: number;

  constructor(
    resident: readonly string[],
    readonly capacity: number,
    loras?: LoraResidency,
  ) {
    this.#resident = [...resident];
    this.#loraCapacity = Math.max(1, loras?.capacity ?? 1);
    for (const model of this.#resident) this.#loras.set(model, [...(loras?.loaded[model] ?? [])]);
  }

  /** True when `model` had to be loaded (it was not resident); it is the most recently used after. */
  use(model: string): boolean {
    const at = this.#resident.indexOf(model);
    if (at >= 0) {
      this.#resident.splice(at, 1);
      this.#resident.push(model);
      return false;
    }
    while (this.#resident.length >= Math.max(1, this.capacity)) this.#loras.delete(this.#resident.shift()!);
    this.#resident.push(model);
    this.#loras.set(model, []);
    return true;
  }

  /**
   * True when a job of `model` (after `use(model)`) with LoRA combination `key` would have to merge
   * and load it first; it is that model's most recently used combination after.
   */
  useLoras(model: string, key: string): boolean {
    let loaded = this.#loras.get(model);
    if (!loaded) {
      loaded = [];
      this.#loras.set(model, loaded);
    }
    const at = loaded.indexOf(key);
    if (at >= 0) {
      loaded.splice(at, 1);
      loaded.push(key);
      return false;
    }
    while (loaded.length >= this.#loraCapacity) loaded.shift();
    loaded.push(key);
    return true;
  }

  get resident(): readonly string[] {
    return this.#resident;
  }

  /** The LoRA combinations `model` holds in the simulation, least recently used first. */
  lorasOf(model: string): readonly string[] {
    return this.#loras.get(model) ?? [];
  }
}

/** What a pipeline's info says is loaded at start (the default model the most recently used). */
export function residencyFromInfo(info: {
  models?: readonly { name: string; resident: boolean; loadMs?: number; loraMs?: number }[];
  maxResident?: number;
  loraCombinations?: number;
}):
  | {
      resident: string[];
      capacity: number;
      loadMs: Record<string, number>;
      defaultModel: string;
      loras: Record<string, string[]>;
      loraCapacity: number;
      loraMs: Record<string, number>;
    }
  | undefined {
  const models = info.models;
  if (!models?.length) return undefined;
  const resident = models
    .filter((m) => m.resident)
    .map((m) => m.name)
    .reverse();
  return {
    resident,
    capacity: info.maxResident ?? models.length,
    loadMs: Object.fromEntries(models.filter((m) => m.loadMs !== undefined).map((m) => [m.name, m.loadMs!])),
    defaultModel: models[0]!.name,
    // No combination is loaded at start: each loads on its first job.
    loras: Object.fromEntries(resident.map((name) => [name, []])),
    loraCapacity: info.loraCombinations ?? 0,
    loraMs: Object.fromEntries(models.filter((m) => m.loraMs !== undefined).map((m) => [m.name, m.loraMs!])),
  };
}

/**
 * The residency after a job's output: what it says is loaded, how long its model took to load, and
 * its model's LoRA combinations (with how long the job's took to merge and load, when it did).
 */
export function residencyAfter<
  R extends {
    resident: string[];
    loadMs: Record<string, number>;
    loras?: Record<string, string[]>;
    loraMs?: Record<string, number>;
  },
>(
  residency: R,
  output: {
    resident?: string[];
    modelName?: string;
    loraCombinations?: string[];
    timings?: { loadMs?: number; loraMs?: number };
  },
): R {
  const loadMs = { ...residency.loadMs };
  if (output.modelName && output.timings?.loadMs !== undefined)
    loadMs[output.modelName] = output.timings.loadMs;
  const resident = output.resident ? [...output.resident] : residency.resident;
  const next: R = { ...residency, resident, loadMs };
  if (residency.loras) {
    // A model unloaded meanwhile lost its combinations; the job's model says what it holds now.
    const loras: Record<string, string[]> = {};
    for (const name of resident) loras[name] = [...(residency.loras[name] ?? [])];
    if (output.modelName && output.loraCombinations) loras[output.modelName] = [...output.loraCombinations];
    next.loras = loras;
  }
  if (output.modelName && output.timings?.loraMs !== undefined)
    next.loraMs = { ...residency.loraMs, [output.modelName]: output.timings.loraMs };
  return next;
}
