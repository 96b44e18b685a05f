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
 * A pipeline's resident models as a cache the ETA can play forward: `use(model)` says whether a job
 * of that model would have to load it first, and keeps the rule above (count only: what the
 * pipeline reports as its capacity).
 */
export class ResidencySimulation {
  readonly #resident: string[];

  constructor(
    resident: readonly string[],
    readonly capacity: number,
  ) {
    this.#resident = [...resident];
  }

  /** True when `model` had to be loaded (it was not resident); it is the most recently used after. */
  use(model: string): boolean {
    const at = this.#resident.indexOf(model);
    if (at >= 0) {
      this.#resident.splice(at, 1);
      this.#resident.push(model);
      return false;
    }
    while (this.#resident.length >= Math.max(1, this.capacity)) this.#resident.shift();
    this.#resident.push(model);
    return true;
  }

  get resident(): readonly string[] {
    return this.#resident;
  }
}

/** What a pipeline's info says is loaded at start (the default model the most recently used). */
export function residencyFromInfo(info: {
  models?: readonly { name: string; resident: boolean; loadMs?: number }[];
  maxResident?: number;
}):
  | { resident: string[]; capacity: number; loadMs: Record<string, number>; defaultModel: string }
  | undefined {
  const models = info.models;
  if (!models?.length) return undefined;
  return {
    resident: models
      .filter((m) => m.resident)
      .map((m) => m.name)
      .reverse(),
    capacity: info.maxResident ?? models.length,
    loadMs: Object.fromEntries(models.filter((m) => m.loadMs !== undefined).map((m) => [m.name, m.loadMs!])),
    defaultModel: models[0]!.name,
  };
}

/** The residency after a job's output: what it says is loaded, and how long its model took to load. */
export function residencyAfter<R extends { resident: string[]; loadMs: Record<string, number> }>(
  residency: R,
  output: { resident?: string[]; modelName?: string; timings?: { loadMs?: number } },
): R {
  const loadMs = { ...residency.loadMs };
  if (output.modelName && output.timings?.loadMs !== undefined)
    loadMs[output.modelName] = output.timings.loadMs;
  return { ...residency, resident: output.resident ? [...output.resident] : residency.resident, loadMs };
}
