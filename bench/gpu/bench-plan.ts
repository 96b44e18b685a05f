/**
 * What atelier-bench measures and in which order. Each workload is one timed generation; loads
 * group the workloads that share weights and a runtime path, so a model is loaded once per path
 * (stock, then capi, in the same process run). The budget cuts the least important workloads:
 * priority is the order of the plan, and a load that carries a low-priority row early (Turbo rides
 * on the Large fp16 load) runs that row only if the time left still covers the loads holding
 * more important rows.
 *
 * Issue 11 adds two dimensions to the configs: `models.gpuMemoryLimit` (GiB, null: none) and
 * `models.placement`, each its own load; and the mixed-jobs plan (`--mixed N`): N jobs of mixed
 * sizes and counts through one load.
 */
import { rng } from '../../test/fixtures/random.js';

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

/** `models.placement`. */
export type PlacementSetting = 'auto' | 'gpu' | 'cpu-encoders';
export const PLACEMENTS: readonly PlacementSetting[] = ['auto', 'gpu', 'cpu-encoders'];

export interface Workload {
  model: string;
  precision: Precision;
  /** models.placement of the load. */
  placement: PlacementSetting;
  /** models.gpuMemoryLimit in GiB; null: none. */
  limitGiB: number | null;
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
  placement: PlacementSetting;
  limitGiB: number | null;
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
  /** models.gpuMemoryLimit of each config row, GiB (null: none); every config runs under each. @default [null] */
  limits?: (number | null)[];
  /** models.placement of each config row; @default ['auto'] */
  placements?: PlacementSetting[];
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

/**
 * The workloads in priority order: per config, per limit, per placement, per batch, per steps (so
 * list an unlimited row first: it is the baseline the limited rows are compared with, and its
 * arenas calibrate them); then Turbo and the small size, unlimited and `auto`.
 */
export function planWorkloads(o: PlanOptions): Workload[] {
  const out: Omit<Workload, 'priority'>[] = [];
  const plain = { placement: 'auto' as const, limitGiB: null };
  for (const config of o.configs)
    for (const limitGiB of o.limits ?? [null])
      for (const placement of o.placements ?? ['auto'])
        for (const batch of o.batches)
          for (const steps of o.steps)
            out.push({
              ...parseConfig(config, o.precision),
              placement,
              limitGiB,
              size: o.size,
              steps,
              batch,
              guidance: CFG,
            });
  for (const precision of o.turbo)
    out.push({
      model: 'turbo',
      precision,
      ...plain,
      size: o.size,
      steps: o.turboSteps,
      batch: 1,
      guidance: 0,
    });
  for (const config of o.small)
    out.push({
      ...parseConfig(config, o.precision),
      ...plain,
      size: o.smallSize,
      steps: o.smallSteps,
      batch: 1,
      guidance: CFG,
    });
  return out.map((w, priority) => ({ ...w, priority }));
}

/**
 * `--gpu-memory-limit` entries in GiB: `none` (or `unlimited`, `0`) is no limit; `16GiB`, `16 GiB`
 * and a bare `16` are GiB; `16GB` is 16·10⁹ bytes; `MiB`/`MB` likewise.
 */
export function parseGpuMemoryLimit(text: string): number | null {
  const t = text.trim().toLowerCase();
  if (t === 'none' || t === 'unlimited' || t === 'null' || t === '0') return null;
  const match = /^(\d+(?:\.\d+)?)\s*(gib|gb|mib|mb)?$/.exec(t);
  if (!match) throw new Error(`--gpu-memory-limit: "${text}" is not a size (16GiB, 22GiB, none)`);
  const value = Number(match[1]);
  const unit = match[2] ?? 'gib';
  const bytes = { gib: 2 ** 30, gb: 1e9, mib: 2 ** 20, mb: 1e6 }[unit]! * value;
  if (bytes < 2 ** 30)
    throw new Error(`--gpu-memory-limit: ${text} is under 1 GiB (models.gpuMemoryLimit's minimum)`);
  return bytes / 2 ** 30;
}

export function parsePlacement(text: string): PlacementSetting {
  const p = text.trim() as PlacementSetting;
  if (!PLACEMENTS.includes(p)) throw new Error(`--placement: ${PLACEMENTS.join(', ')} (got "${text}")`);
  return p;
}

/**
 * One load per weights × precision × path, in the order of each group's most important row,
 * stock before capi; rows inside a load by priority.
 */
export function groupLoads(workloads: Workload[], paths: RuntimeName[]): Load[] {
  const groups = new Map<string, Workload[]>();
  for (const w of workloads) {
    const key = `${MODELS[w.model].weights}:${w.precision}:${w.placement}:${w.limitGiB}`;
    groups.set(key, [...(groups.get(key) ?? []), w]);
  }
  const ordered = [...groups.values()].sort((a, b) => a[0].priority - b[0].priority);
  return ordered.flatMap((rows) =>
    paths.map((path) => ({
      weights: MODELS[rows[0].model].weights,
      precision: rows[0].precision,
      placement: rows[0].placement,
      limitGiB: rows[0].limitGiB,
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
    this.#seen.set(LoadCosts.#key(load), ms);
  }

  estimate(load: Load): number {
    return this.#seen.get(LoadCosts.#key(load)) ?? this.guessMs[load.weights];
  }

  /** Text encoders on the CPU load and encode far slower: their own cost. */
  static #key(load: Load): string {
    return `${load.weights}:${load.path}${load.placement === 'cpu-encoders' ? ':cpu-encoders' : ''}`;
  }

  /** Time to keep for the loads after `index` that hold a row more important than `priority`. */
  reserveMs(loads: Load[], index: number, priority: number): number {
    return loads
      .slice(index + 1)
      .filter((l) => l.rows.some((r) => r.priority < priority))
      .reduce((sum, l) => sum + this.estimate(l), 0);
  }
}

/** One job of the mixed-jobs run (`--mixed N`). */
export interface MixedJob {
  index: number;
  width: number;
  height: number;
  count: number;
  /** Consecutive jobs of one run share size, count and prompt (rerolls: new seeds, a prompt-cache hit). */
  run: number;
  seed: number;
}

/**
 * Sizes of the mixed jobs: square 512² to 1024², landscape and portrait, none over 1024²'s pixels
 * (SD3.5's trained budget), all multiples of 64.
 */
export const MIXED_SIZES: readonly (readonly [number, number])[] = [
  [512, 512],
  [768, 768],
  [1024, 1024],
  [1024, 768],
  [768, 1024],
  [1152, 896],
  [896, 1152],
  [1216, 832],
  [832, 1216],
];

/** `1024x768,512x512` → [[1024, 768], [512, 512]] (width × height, multiples of 16). */
export function parseSizes(text: string): [number, number][] {
  return text
    .split(',')
    .filter((s) => s.trim())
    .map((s) => {
      const m = /^\s*(\d+)\s*[x×]\s*(\d+)\s*$/.exec(s);
      if (!m || Number(m[1]) % 16 || Number(m[2]) % 16)
        throw new Error(`--mixed-sizes: "${s}" is not WIDTHxHEIGHT in multiples of 16`);
      return [Number(m[1]), Number(m[2])];
    });
}

export interface MixedOptions {
  jobs: number;
  seed: number;
  sizes: readonly (readonly [number, number])[];
  /** Images per job to draw from; @default 1–4 */
  counts: readonly number[];
  /** Jobs per run of one shape (rerolls); each new shape costs the C-API path a session. */
  repeat: number;
}

/**
 * The mixed jobs: runs of `repeat` jobs, each run a size × count drawn from a shuffled deck of
 * every combination (reshuffled when used up), so the combinations spread evenly. The heaviest
 * combination (most pixels × most images) is always in it: if the deck did not deal it, it
 * replaces the middle run, after smaller jobs have shaped the arenas.
 */
export function planMixedJobs(o: MixedOptions): MixedJob[] {
  const random = rng(o.seed);
  const combos = o.sizes.flatMap(([width, height]) => o.counts.map((count) => ({ width, height, count })));
  if (!combos.length || o.jobs <= 0) return [];
  const repeat = Math.max(1, Math.floor(o.repeat));
  const runs = Math.ceil(o.jobs / repeat);
  const dealt: (typeof combos)[number][] = [];
  let deck: typeof combos = [];
  while (dealt.length < runs) {
    if (!deck.length) deck = shuffle(combos, random);
    dealt.push(deck.pop()!);
  }
  const weight = (c: (typeof combos)[number]) => c.width * c.height * c.count;
  const heaviest = combos.reduce((a, b) => (weight(b) > weight(a) ? b : a));
  if (!dealt.some((c) => weight(c) === weight(heaviest))) dealt[Math.floor(runs / 2)] = heaviest;
  const jobs: MixedJob[] = [];
  for (const [run, c] of dealt.entries())
    for (let r = 0; r < repeat && jobs.length < o.jobs; r++)
      jobs.push({ index: jobs.length, ...c, run, seed: 1000 + jobs.length });
  return jobs;
}

/** Times consecutive jobs differ in shape (size × count): each is a new step session on the C-API path. */
export function shapeSwitches(jobs: readonly Pick<MixedJob, 'width' | 'height' | 'count'>[]): number {
  let n = 0;
  for (let i = 1; i < jobs.length; i++) {
    const [a, b] = [jobs[i - 1], jobs[i]];
    if (a.width !== b.width || a.height !== b.height || a.count !== b.count) n++;
  }
  return n;
}

function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
