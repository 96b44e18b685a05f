/**
 * What atelier-bench measures and in which order. Each workload is one timed generation; loads
 * group the workloads that share weights and a runtime path, so a model is loaded once per path
 * (stock, then capi, in the same process run). The budget cuts the least important workloads:
 * priority is the order of the plan, and a load that carries a low-priority row early (Turbo rides
 * on the Large fp16 load) runs that row only if the time left still covers the loads holding
 * more important rows.
 */

export type RuntimeName = 'stock' | 'capi';
export type WeightsKey = 'large' | 'medium';
/**
 * As `models.precision` says it: `fp8` runs what the product runs (W8A8 where the GPU, the C-API path
 * and the op library allow it, weight-only elsewhere), `fp8-weights` always weight-only; both load
 * the fp8 checkpoint.
 */
export type Precision = 'fp16' | 'fp8' | 'fp8-weights';
export const PRECISIONS: readonly Precision[] = ['fp16', 'fp8', 'fp8-weights'];

export interface ModelEntry {
  /** Folder under --models (a one-model ComfyUI folder written by make_weights.py). */
  weights: WeightsKey;
  /** Model name in the rows. */
  name: string;
  checkpoint: Record<'fp16' | 'fp8', string>;
}

/** The checkpoint a precision loads: both fp8 precisions take the fp8 file. */
export function checkpointFor(entry: ModelEntry, precision: Precision): string {
  return precision === 'fp16' ? entry.checkpoint.fp16 : entry.checkpoint.fp8;
}

const LARGE = { fp16: 'sd3.5_large.safetensors', fp8: 'sd3.5_large_fp8_scaled.safetensors' };
const MEDIUM = { fp16: 'sd3.5_medium.safetensors', fp8: 'sd3.5_medium_fp8_scaled.safetensors' };

export const MODELS: Record<string, ModelEntry> = {
  large: { weights: 'large', name: 'sd3.5-large', checkpoint: LARGE },
  medium: { weights: 'medium', name: 'sd3.5-medium', checkpoint: MEDIUM },
  // Large Turbo is the Large architecture (distilled weights): the Large files do the same work.
  turbo: { weights: 'large', name: 'sd3.5-large-turbo', checkpoint: LARGE },
};

export interface Workload {
  model: string;
  precision: Precision;
  size: number;
  steps: number;
  batch: number;
  /** ≤ 1 runs no unconditional pass (Turbo). */
  guidance: number;
  /** 0 = most important. */
  priority: number;
}

export interface Load {
  weights: WeightsKey;
  precision: Precision;
  path: RuntimeName;
  rows: Workload[];
}

export interface PlanOptions {
  /** `model:precision` (or `model`, taking `precision`) measured at `size` for every steps × batch, CFG 4.5. */
  configs: string[];
  /** The precision of a config that names none (`--precision`). */
  precision?: Precision;
  steps: number[];
  batches: number[];
  size: number;
  /** Precisions of Large Turbo rows (4 steps, no CFG, batch 1). */
  turbo: Precision[];
  turboSteps: number;
  /** `model:precision` measured again at `smallSize` (28 steps, batch 1), where dispatch matters most. */
  small: string[];
  smallSize: number;
  smallSteps: number;
}

export const CFG = 4.5;

function parseConfig(config: string, fallback?: Precision): { model: string; precision: Precision } {
  const [model, named] = config.split(':');
  const precision = (named ?? fallback) as Precision | undefined;
  if (!MODELS[model] || !precision || !PRECISIONS.includes(precision))
    throw new Error(
      `unknown config "${config}" (want large|medium|turbo : ${PRECISIONS.join('|')}, or a model and --precision)`,
    );
  return { model, precision };
}

/** The workloads in priority order. */
export function planWorkloads(o: PlanOptions): Workload[] {
  const out: Omit<Workload, 'priority'>[] = [];
  for (const config of o.configs)
    for (const batch of o.batches)
      for (const steps of o.steps)
        out.push({ ...parseConfig(config, o.precision), size: o.size, steps, batch, guidance: CFG });
  for (const precision of o.turbo)
    out.push({ model: 'turbo', precision, size: o.size, steps: o.turboSteps, batch: 1, guidance: 0 });
  for (const config of o.small)
    out.push({
      ...parseConfig(config, o.precision),
      size: o.smallSize,
      steps: o.smallSteps,
      batch: 1,
      guidance: CFG,
    });
  return out.map((w, priority) => ({ ...w, priority }));
}

/**
 * One load per weights × precision × path, in the order of each group's most important row,
 * stock before capi; rows inside a load by priority.
 */
export function groupLoads(workloads: Workload[], paths: RuntimeName[]): Load[] {
  const groups = new Map<string, Workload[]>();
  for (const w of workloads) {
    const key = `${MODELS[w.model].weights}:${w.precision}`;
    groups.set(key, [...(groups.get(key) ?? []), w]);
  }
  const ordered = [...groups.values()].sort((a, b) => a[0].priority - b[0].priority);
  return ordered.flatMap((rows) =>
    paths.map((path) => ({
      weights: MODELS[rows[0].model].weights,
      precision: rows[0].precision,
      path,
      rows,
    })),
  );
}

/** Seconds a load takes (model load, warm-ups, its rows), measured as the run goes, guessed before. */
export class LoadCosts {
  readonly #seen = new Map<string, number>();

  constructor(readonly guessMs: Record<WeightsKey, number> = { large: 60_000, medium: 40_000 }) {}

  record(load: Load, ms: number): void {
    this.#seen.set(`${load.weights}:${load.path}`, ms);
  }

  estimate(load: Load): number {
    return this.#seen.get(`${load.weights}:${load.path}`) ?? this.guessMs[load.weights];
  }

  /** Time to keep for the loads after `index` that hold a row more important than `priority`. */
  reserveMs(loads: Load[], index: number, priority: number): number {
    return loads
      .slice(index + 1)
      .filter((l) => l.rows.some((r) => r.priority < priority))
      .reduce((sum, l) => sum + this.estimate(l), 0);
  }
}
