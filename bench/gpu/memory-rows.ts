/**
 * Issue 11's figures from what atelier-bench reads: the arenas' counters (from the pipeline child:
 * memory-pipeline.ts), nvidia-smi's per-process and device-wide peaks, the estimate of
 * gpu-memory.ts; the calibration file that carries measured figures from unlimited rows to limited
 * ones (and from one device call to the next); the mixed-jobs report. Pure functions, tested in
 * memory-rows.test.ts. Memory figures are GiB (nvidia-smi's MiB / 1024), as every bench row's.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import {
  type ArenaReport,
  arenaActivationBytes,
  calibrationFromArenas,
  isOutOfMemory,
  type MemoryCalibration,
  mergeCalibrations,
} from '../../src/pipeline/sd35/gpu-memory.js';

const GiB = 2 ** 30;
const gib = (bytes: number) => bytes / GiB;
const round = (v: number, digits = 3) => Number(v.toFixed(digits));

/** One arena in a row (GiB), as compact as the JSON allows. */
export interface ArenaRow {
  session: string;
  provider: 'cpu' | 'cuda';
  /** C-API step sessions: images × latent height × width. */
  shape?: string;
  in_use_gb: number;
  max_in_use_gb: number;
  /** What the arena holds from the device (its footprint): regions + reserved weights. */
  total_gb: number;
  /** max_in_use − in_use: the activations the jobs added above what stays in use. */
  activation_gb: number;
  limit_gb: number | null;
  max_alloc_gb: number;
  extensions: number;
}

/** The memory columns of a row, from the arenas after the timed job and the peaks around it. */
export interface MemoryFields {
  /** Σ of the CUDA arenas' footprints (weights reserved through them included). */
  arena_total_gb: number | null;
  /** The MMDiT's activations for this job (its step session, or the stock MMDiT's): item 4 of the issue. */
  mmdit_activation_gb: number | null;
  /** The MMDiT arena's largest single allocation (with memory patterns: one run's activation block). */
  mmdit_max_alloc_gb: number | null;
  /** Weights and bound buffers the MMDiT's arena keeps in use between jobs. */
  mmdit_in_use_gb: number | null;
  /** The VAE decoder's activations (the whole decode, or the largest tile). */
  vae_decode_gb: number | null;
  /** The GPU text encoders' activations, summed. */
  text_activation_gb: number | null;
  /** The process's peak less the CUDA arenas' footprints: CUDA context, cuBLAS/cuDNN workspaces, CUDA graphs, our kernels' scratch. */
  non_arena_gb: number | null;
  arenas: ArenaRow[];
}

export function arenaRows(arenas: readonly ArenaReport[]): ArenaRow[] {
  return arenas.map((a) => ({
    session: a.session,
    provider: a.provider,
    ...(a.shape ? { shape: `${a.shape.images}×${a.shape.height}×${a.shape.width}` } : {}),
    in_use_gb: round(gib(a.stats.inUse)),
    max_in_use_gb: round(gib(a.stats.maxInUse)),
    total_gb: round(gib(a.stats.totalAllocated)),
    activation_gb: round(gib(arenaActivationBytes(a.stats))),
    limit_gb: a.stats.limit === undefined ? null : round(gib(a.stats.limit)),
    max_alloc_gb: round(gib(a.stats.maxAllocSize)),
    extensions: a.stats.extensions,
  }));
}

/**
 * The row's memory columns: the MMDiT arena is the step session of the job's shape (C API; the
 * latent is width/8 × height/8), else the stock MMDiT's; `processPeakGb` the child's peak (nvidia-smi).
 */
export function memoryFields(
  arenas: readonly ArenaReport[] | undefined,
  job: { width: number; height: number; count: number },
  processPeakGb: number | undefined,
): MemoryFields {
  const list = arenas ?? [];
  const cuda = list.filter((a) => a.provider === 'cuda');
  const mmdits = list.filter((a) => a.component === 'mmdit');
  const mmdit =
    mmdits.find(
      (a) =>
        a.shape?.images === job.count && a.shape.height === job.height / 8 && a.shape.width === job.width / 8,
    ) ?? mmdits.find((a) => !a.shape);
  const vae = list.find((a) => a.component === 'vae');
  const text = cuda.filter((a) => a.component === 'clipL' || a.component === 'clipG' || a.component === 't5');
  const total = cuda.reduce((sum, a) => sum + a.stats.totalAllocated, 0);
  const g = (bytes: number | undefined) => (bytes === undefined ? null : round(gib(bytes)));
  return {
    arena_total_gb: cuda.length ? g(total) : null,
    mmdit_activation_gb: g(mmdit && arenaActivationBytes(mmdit.stats)),
    mmdit_max_alloc_gb: g(mmdit?.stats.maxAllocSize),
    mmdit_in_use_gb: g(mmdit?.stats.inUse),
    vae_decode_gb: g(vae && arenaActivationBytes(vae.stats)),
    text_activation_gb: text.length ? g(text.reduce((s, a) => s + arenaActivationBytes(a.stats), 0)) : null,
    non_arena_gb: processPeakGb !== undefined && cuda.length ? round(processPeakGb - gib(total)) : null,
    arenas: arenaRows(list),
  };
}

/** Calibrations per model family (`sd3.5-large`, `sd3.5-medium`), as the --calibration file holds them. */
export type CalibrationFile = Record<string, MemoryCalibration>;

export function readCalibration(path: string | undefined): CalibrationFile {
  if (!path || !existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as CalibrationFile;
  } catch {
    return {};
  }
}

/**
 * Adds what one unlimited job on CUDA measured to the file's entry for `family` (later figures
 * win) and writes it back; returns the entry. Nothing is written when the job showed nothing.
 */
export function recordCalibration(
  path: string | undefined,
  family: string,
  arenas: readonly ArenaReport[] | undefined,
  job: { width: number; height: number; count: number },
  processPeakGb: number | undefined,
  source: string,
): MemoryCalibration | undefined {
  const measured = calibrationFromArenas([...(arenas ?? [])], job, {
    processPeakBytes: processPeakGb === undefined ? undefined : processPeakGb * GiB,
    source,
  });
  const { source: _, ...figures } = measured;
  if (!Object.keys(figures).length) return undefined;
  const file = readCalibration(path);
  file[family] = mergeCalibrations(file[family] ?? {}, measured);
  if (path) writeFileSync(path, JSON.stringify(file, null, 1));
  return file[family];
}

/** A row as denoiseVsUnlimited reads it. */
export interface TimedRow {
  model: string;
  precision: string;
  path: string;
  width: number;
  height: number;
  steps: number;
  batch: number;
  placement_requested?: string;
  gpu_memory_limit_gb: number | null;
  denoise_seconds: number;
  error?: string;
  denoise_vs_unlimited?: number | null;
}

/**
 * Each limited row's denoising time over the unlimited row of the same workload (same placement
 * when there is one; the target: within 5 %, i.e. ≤ 1.05). Rows without a limit or
 * without an unlimited twin get null.
 */
export function denoiseVsUnlimited<R extends TimedRow>(rows: R[]): R[] {
  const same = (a: TimedRow, b: TimedRow) =>
    a.model === b.model &&
    a.precision === b.precision &&
    a.path === b.path &&
    a.width === b.width &&
    a.height === b.height &&
    a.steps === b.steps &&
    a.batch === b.batch;
  const base = rows.filter((r) => r.gpu_memory_limit_gb === null && !r.error && r.denoise_seconds > 0);
  for (const r of rows) {
    if (r.gpu_memory_limit_gb === null || r.error || !(r.denoise_seconds > 0)) {
      r.denoise_vs_unlimited = null;
      continue;
    }
    const twins = base.filter((b) => same(b, r));
    const twin = twins.find((b) => b.placement_requested === r.placement_requested) ?? twins[0];
    r.denoise_vs_unlimited = twin ? round(r.denoise_seconds / twin.denoise_seconds, 4) : null;
  }
  return rows;
}

export type JobOutcome = 'ok' | 'refused' | 'oom' | 'crashed' | 'cancelled' | 'error';

/**
 * What a failed job was: `refused` (the preflight said it would not fit: the job, or the model at
 * load under models.gpuMemoryLimit), `oom` (an allocation failed: the engine's "out of memory"
 * message), `crashed` (the pipeline process died), `cancelled`, else `error` (a size the model does
 * not take, anything else).
 */
export function classifyFailure(error: unknown): Exclude<JobOutcome, 'ok'> {
  const e = error as { code?: string; message?: string };
  const message = String(e?.message ?? error);
  if (e?.code === 'CANCELLED') return 'cancelled';
  // The preflight's two refusals: the job (jobMemoryProblem) and the model at load (doesNotFit).
  if (/of GPU memory, more than|models\.gpuMemoryLimit is/.test(message)) return 'refused';
  if (isOutOfMemory(message)) return 'oom';
  if (/stopped unexpectedly|crashed|exited|signal/i.test(message)) return 'crashed';
  return 'error';
}

/** One mixed job as the report keeps it. */
export interface MixedJobRow {
  index: number;
  run: number;
  width: number;
  height: number;
  count: number;
  outcome: JobOutcome;
  seconds: number;
  /** The child's peak during this job (nvidia-smi compute-apps), GiB. */
  process_peak_gb: number | null;
  /** The device's peak during this job less the baseline before the load (the ballast excluded), GiB. */
  device_peak_gb: number | null;
  mmdit_activation_gb: number | null;
  vae_decode_gb: number | null;
  vae_tiled: boolean | null;
  /** The job's images ran in these passes (more than fit at once); null: one pass. */
  passes?: number[] | null;
  prompt_cached: boolean | null;
  message?: string;
}

export interface MixedSummary {
  planned: number;
  ran: number;
  completed: number;
  refused: number;
  oom: number;
  crashed: number;
  errors: number;
  /** Jobs the budget left out. */
  skipped: number;
  shape_switches: number;
  /** After the first out-of-memory or crash: did a later job complete? null when neither happened. */
  recovered_after_failure: boolean | null;
  /** The target: every planned job completed, none out of memory. */
  target_met: boolean;
  max_process_peak_gb: number | null;
  max_device_peak_gb: number | null;
  p50_seconds: number | null;
  /** Refused sizes × counts with the first refusal's message. */
  refusals: { job: string; message: string }[];
}

export function mixedSummary(jobs: readonly MixedJobRow[], planned: number, switches: number): MixedSummary {
  const n = (o: JobOutcome) => jobs.filter((j) => j.outcome === o).length;
  const firstFailure = jobs.findIndex((j) => j.outcome === 'oom' || j.outcome === 'crashed');
  const max = (xs: (number | null)[]) => {
    const v = xs.filter((x): x is number => x !== null);
    return v.length ? round(Math.max(...v)) : null;
  };
  const seconds = jobs.filter((j) => j.outcome === 'ok').map((j) => j.seconds);
  seconds.sort((a, b) => a - b);
  const refusals = new Map<string, string>();
  for (const j of jobs)
    if (j.outcome === 'refused') {
      const key = `${j.width}×${j.height} ×${j.count}`;
      if (!refusals.has(key)) refusals.set(key, j.message ?? '');
    }
  return {
    planned,
    ran: jobs.length,
    completed: n('ok'),
    refused: n('refused'),
    oom: n('oom'),
    crashed: n('crashed'),
    errors: n('error') + n('cancelled'),
    skipped: planned - jobs.length,
    shape_switches: switches,
    recovered_after_failure:
      firstFailure < 0 ? null : jobs.slice(firstFailure + 1).some((j) => j.outcome === 'ok'),
    target_met: n('ok') === planned && n('oom') === 0 && n('crashed') === 0,
    max_process_peak_gb: max(jobs.map((j) => j.process_peak_gb)),
    max_device_peak_gb: max(jobs.map((j) => j.device_peak_gb)),
    p50_seconds: seconds.length ? round(seconds[Math.floor(seconds.length / 2)]) : null,
    refusals: [...refusals].map(([job, message]) => ({ job, message })),
  };
}
