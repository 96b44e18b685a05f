/**
 * Issue 11's bench plumbing without a GPU: limits and placements expand into one load each, the
 * mixed jobs are the same on every machine and cover what they should, the rows' memory columns
 * come out of the arenas' counters, the calibration file carries figures from unlimited rows,
 * failures are told apart, and nvidia-smi's per-process lines are read.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ArenaReport } from '../../src/pipeline/sd35/gpu-memory.js';
import {
  groupLoads,
  LoadCosts,
  MIXED_SIZES,
  type PlanOptions,
  parseGpuMemoryLimit,
  parsePlacement,
  parseSizes,
  planMixedJobs,
  planWorkloads,
  shapeSwitches,
} from './bench-plan.js';
import {
  classifyFailure,
  denoiseVsUnlimited,
  type MixedJobRow,
  memoryFields,
  mixedSummary,
  readCalibration,
  recordCalibration,
  type TimedRow,
} from './memory-rows.js';
import { ProcessGpuMemory, parseComputeApps } from './monitors.js';

const GiB = 2 ** 30;

const memoryPlan: PlanOptions = {
  configs: ['large:fp8'],
  steps: [28],
  batches: [1],
  size: 1024,
  turbo: [],
  turboSteps: 4,
  small: [],
  smallSize: 512,
  smallSteps: 28,
  limits: [null, 16, 22],
  placements: ['gpu', 'cpu-encoders'],
};

describe('limits and placements in the plan', () => {
  it('runs each config once per limit × placement, unlimited first, each its own load', () => {
    const loads = groupLoads(planWorkloads(memoryPlan), ['capi']);
    expect(loads.map((l) => `${l.placement}@${l.limitGiB ?? '∞'}`)).toEqual([
      'gpu@∞',
      'cpu-encoders@∞',
      'gpu@16',
      'cpu-encoders@16',
      'gpu@22',
      'cpu-encoders@22',
    ]);
    expect(loads.map((l) => l.rows[0].priority)).toEqual([0, 1, 2, 3, 4, 5]);
    // Batches of one limit × placement share its load (one child, one set of arenas).
    const batches = groupLoads(
      planWorkloads({ ...memoryPlan, batches: [1, 2, 4], limits: [null], placements: ['gpu'] }),
      ['capi'],
    );
    expect(batches).toHaveLength(1);
    expect(batches[0].rows.map((r) => r.batch)).toEqual([1, 2, 4]);
  });

  it('leaves Turbo and the small size unlimited and auto, and old plans as they were', () => {
    const rows = planWorkloads({ ...memoryPlan, turbo: ['fp16'], small: ['medium:fp16'] });
    expect(rows.slice(-2).map((r) => [r.model, r.placement, r.limitGiB])).toEqual([
      ['turbo', 'auto', null],
      ['medium', 'auto', null],
    ]);
    const plain = planWorkloads({ ...memoryPlan, limits: undefined, placements: undefined });
    expect(plain.map((r) => [r.placement, r.limitGiB])).toEqual([['auto', null]]);
  });

  it('reads limits in GiB (GB as 10⁹ bytes), none as no limit, and refuses what is not a size', () => {
    expect(['16GiB', '22 GiB', '16', 'none', 'unlimited', '0'].map(parseGpuMemoryLimit)).toEqual([
      16,
      22,
      16,
      null,
      null,
      null,
    ]);
    expect(parseGpuMemoryLimit('16GB')).toBeCloseTo(14.901, 3);
    expect(parseGpuMemoryLimit('2048MiB')).toBe(2);
    expect(() => parseGpuMemoryLimit('512MiB')).toThrow(/under 1 GiB/);
    expect(() => parseGpuMemoryLimit('lots')).toThrow(/not a size/);
    expect(parsePlacement('cpu-encoders')).toBe('cpu-encoders');
    expect(() => parsePlacement('cpu')).toThrow(/auto, gpu, cpu-encoders/);
  });

  it('keeps text encoders on the CPU a cost of their own', () => {
    const loads = groupLoads(planWorkloads(memoryPlan), ['capi']);
    const costs = new LoadCosts({ large: 20_000, medium: 10_000 });
    costs.record(loads[1], 90_000);
    expect(costs.estimate(loads[3])).toBe(90_000);
    expect(costs.estimate(loads[2])).toBe(20_000);
  });
});

describe('mixed jobs', () => {
  const plan = (seed = 1, repeat = 4) =>
    planMixedJobs({ jobs: 100, seed, sizes: MIXED_SIZES, counts: [1, 2, 3, 4], repeat });

  it('are the same for a seed, runs of `repeat` rerolls, every size within 1024²’s pixels', () => {
    const jobs = plan();
    expect(jobs).toEqual(plan());
    expect(jobs).not.toEqual(plan(2));
    expect(jobs).toHaveLength(100);
    expect(new Set(jobs.map((j) => j.run)).size).toBe(25);
    for (const j of jobs) {
      expect(j.width * j.height).toBeLessThanOrEqual(1024 * 1024);
      const first = jobs.find((k) => k.run === j.run)!;
      expect([j.width, j.height, j.count]).toEqual([first.width, first.height, first.count]);
    }
    expect(new Set(jobs.map((j) => j.seed)).size).toBe(100);
    expect(shapeSwitches(jobs)).toBeLessThanOrEqual(24);
  });

  it('mix squares, landscape and portrait, one to four images, and always include the heaviest job', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const jobs = plan(seed);
      expect(jobs.some((j) => j.width > j.height)).toBe(true);
      expect(jobs.some((j) => j.width < j.height)).toBe(true);
      expect(jobs.some((j) => j.width === j.height)).toBe(true);
      expect(new Set(jobs.map((j) => j.count))).toEqual(new Set([1, 2, 3, 4]));
      expect(jobs.some((j) => j.width === 1024 && j.height === 1024 && j.count === 4)).toBe(true);
    }
    // One job per run: as many shapes as jobs allow.
    expect(shapeSwitches(plan(1, 1))).toBeGreaterThan(60);
    expect(parseSizes('1024x768, 512×512')).toEqual([
      [1024, 768],
      [512, 512],
    ]);
    expect(() => parseSizes('1000x768')).toThrow(/multiples of 16/);
  });
});

/** A CUDA arena's counters in GiB. */
function arena(
  component: ArenaReport['component'],
  session: string,
  gib: { inUse: number; maxInUse: number; total: number; limit?: number },
  shape?: ArenaReport['shape'],
): ArenaReport {
  return {
    component,
    session,
    provider: 'cuda',
    stats: {
      inUse: gib.inUse * GiB,
      maxInUse: gib.maxInUse * GiB,
      totalAllocated: gib.total * GiB,
      ...(gib.limit !== undefined ? { limit: gib.limit * GiB } : {}),
      maxAllocSize: 1.5 * GiB,
      allocs: 10,
      reserves: 5,
      extensions: 2,
      shrinkages: 0,
    },
    ...(shape ? { shape } : {}),
  };
}

/** Large fp8 at 1024² after one job, everything on the GPU (made-up but plausible figures). */
const LARGE_JOB: ArenaReport[] = [
  arena('clipL', 'clip_l', { inUse: 0.25, maxInUse: 0.27, total: 0.5 }),
  arena('clipG', 'clip_g', { inUse: 1.3, maxInUse: 1.35, total: 2 }),
  arena('t5', 't5', { inUse: 4.6, maxInUse: 4.8, total: 5 }),
  arena('vae', 'vae_decoder', { inUse: 0.3, maxInUse: 3.3, total: 4.3 }),
  arena(
    'mmdit',
    'mmdit_step',
    { inUse: 7.6, maxInUse: 9.6, total: 10 },
    { images: 2, height: 64, width: 64 },
  ),
  arena(
    'mmdit',
    'mmdit_step',
    { inUse: 7.6, maxInUse: 9.1, total: 9.5 },
    { images: 1, height: 128, width: 128 },
  ),
];

describe('memory columns', () => {
  it('take the MMDiT arena of the job’s shape, sum the GPU encoders, and leave the overhead outside the arenas', () => {
    const f = memoryFields(LARGE_JOB, { width: 1024, height: 1024, count: 1 }, 33);
    expect(f.mmdit_activation_gb).toBe(1.5);
    expect(f.mmdit_in_use_gb).toBe(7.6);
    expect(f.vae_decode_gb).toBe(3);
    expect(f.text_activation_gb).toBeCloseTo(0.27, 3);
    expect(f.arena_total_gb).toBeCloseTo(31.3, 3);
    expect(f.non_arena_gb).toBeCloseTo(1.7, 3);
    expect(f.arenas.map((a) => a.shape ?? a.session)).toEqual([
      'clip_l',
      'clip_g',
      't5',
      'vae_decoder',
      '2×64×64',
      '1×128×128',
    ]);
    expect(f.arenas[4]).toMatchObject({ activation_gb: 2, limit_gb: null, extensions: 2 });
    // No arenas (the stock path, a failed job): nothing to say.
    expect(memoryFields(undefined, { width: 1024, height: 1024, count: 1 }, 20)).toMatchObject({
      arena_total_gb: null,
      mmdit_activation_gb: null,
      non_arena_gb: null,
      arenas: [],
    });
  });

  it('write what unlimited jobs measured to the calibration file, per family, later figures winning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atelier-calibration-'));
    try {
      const file = join(dir, 'calibration.json');
      expect(readCalibration(file)).toEqual({});
      const job = { width: 1024, height: 1024, count: 1 };
      const first = recordCalibration(file, 'sd3.5-large', LARGE_JOB, job, 33, 'gpu row')!;
      expect(first.mmditActivationBytes).toBeCloseTo(1.5 * GiB * 1.1, -3);
      expect(first.overheadBytes).toBeCloseTo(1.7 * GiB, -3);
      expect(first.textArenaBytes?.t5).toBeCloseTo(0.2 * GiB * 1.1, -3);
      // The cpu-encoders row has no GPU encoders: its figures replace the others, the text ones stay.
      const cpu = LARGE_JOB.filter((a) => !['clipL', 'clipG', 't5'].includes(a.component));
      recordCalibration(file, 'sd3.5-large', cpu, job, 25.5, 'cpu-encoders row');
      const both = readCalibration(file)['sd3.5-large'];
      expect(both.textArenaBytes?.t5).toBeCloseTo(0.2 * GiB * 1.1, -3);
      expect(both.overheadBytes).toBeCloseTo((25.5 - 23.8) * GiB, -3);
      expect(both.source).toBe('cpu-encoders row');
      // A job with no CUDA arena writes nothing.
      expect(recordCalibration(file, 'sd3.5-medium', [], job, 10, 'x')).toBeUndefined();
      expect(Object.keys(readCalibration(file))).toEqual(['sd3.5-large']);
      writeFileSync(file, 'not json');
      expect(readCalibration(file)).toEqual({});
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('compare each limited row’s denoising with its unlimited twin, same placement first', () => {
    const row = (
      limit: number | null,
      placement: string,
      seconds: number,
      extra: Partial<TimedRow> = {},
    ) => ({
      model: 'sd3.5-large',
      precision: 'fp8',
      path: 'capi',
      width: 1024,
      height: 1024,
      steps: 28,
      batch: 1,
      placement_requested: placement,
      gpu_memory_limit_gb: limit,
      denoise_seconds: seconds,
      ...extra,
    });
    const rows = denoiseVsUnlimited([
      row(null, 'gpu', 3.4),
      row(null, 'cpu-encoders', 3.5),
      row(16, 'cpu-encoders', 3.57),
      row(22, 'gpu', 3.4),
      row(22, 'auto', 3.74),
      row(16, 'gpu', 0, { error: 'refused' }),
      row(22, 'gpu', 1.0, { batch: 4 }),
    ]);
    expect(rows.map((r) => r.denoise_vs_unlimited)).toEqual([null, null, 1.02, 1, 1.1, null, null]);
  });
});

describe('failures and the mixed-jobs verdict', () => {
  it('tells refusals, out-of-memory failures and crashes apart', () => {
    expect(
      classifyFailure({
        code: 'VALIDATION',
        message:
          'This job (4 images at 1024×1024) would need about 30.1 GB of GPU memory, more than the 25.8 GB …',
      }),
    ).toBe('refused');
    expect(
      classifyFailure({
        code: 'MODEL',
        message:
          'sd3.5-large at fp8 needs about 17.8 GB …; models.gpuMemoryLimit is 12.9 GB. Raise the limit…',
      }),
    ).toBe('refused');
    expect(
      classifyFailure({ code: 'VALIDATION', message: 'The latent height must be a multiple of 2' }),
    ).toBe('error');
    // A capped arena refusing a block (the H200's mixed run counted these as other errors at first).
    expect(
      classifyFailure(
        new Error(
          "RunWithBinding: Non-zero status code returned while running Conv node. Name:'up1/Conv_529' Status Message: bfc_arena.cc:359 Available memory of 250040320 is smaller than requested bytes of 689701632",
        ),
      ),
    ).toBe('oom');
    expect(
      classifyFailure({ code: 'PIPELINE', message: 'out of memory making 4 images at 1024×1024: …' }),
    ).toBe('oom');
    expect(
      classifyFailure({
        code: 'PIPELINE',
        message: 'the pipeline process stopped unexpectedly (signal SIGKILL) while generating',
      }),
    ).toBe('crashed');
    expect(classifyFailure({ code: 'CANCELLED', message: 'cancelled' })).toBe('cancelled');
  });

  it('counts outcomes, says whether the pipeline came back after a failure, and whether the target is met', () => {
    const job = (outcome: MixedJobRow['outcome'], peak: number | null = 20): MixedJobRow => ({
      index: 0,
      run: 0,
      width: 1024,
      height: 1024,
      count: 4,
      outcome,
      seconds: 2,
      process_peak_gb: peak,
      device_peak_gb: peak,
      mmdit_activation_gb: 1,
      vae_decode_gb: 1,
      vae_tiled: false,
      prompt_cached: false,
      ...(outcome === 'refused' ? { message: 'would need about 30 GB' } : {}),
    });
    const clean = mixedSummary([job('ok'), job('ok', 22.5)], 2, 1);
    expect(clean).toMatchObject({
      completed: 2,
      recovered_after_failure: null,
      target_met: true,
      max_process_peak_gb: 22.5,
      skipped: 0,
    });
    const bumpy = mixedSummary([job('ok'), job('oom'), job('refused'), job('ok')], 5, 3);
    expect(bumpy).toMatchObject({
      completed: 2,
      oom: 1,
      refused: 1,
      skipped: 1,
      recovered_after_failure: true,
      target_met: false,
    });
    expect(bumpy.refusals).toEqual([{ job: '1024×1024 ×4', message: 'would need about 30 GB' }]);
    expect(mixedSummary([job('ok'), job('crashed')], 2, 0).recovered_after_failure).toBe(false);
  });
});

describe('per-process GPU memory', () => {
  it("reads nvidia-smi's compute-apps lines and keeps each process's peak since reset", () => {
    expect(parseComputeApps('1234, 20480\n 99, 512.5\nNo running processes found\n')).toEqual([
      { pid: 1234, mib: 20480 },
      { pid: 99, mib: 512.5 },
    ]);
    const m = new ProcessGpuMemory();
    m.record([{ pid: 7, mib: 1024 }]);
    m.record([{ pid: 7, mib: 4096 }]);
    m.record([{ pid: 7, mib: 2048 }]);
    expect(m.peakGb(7)).toBe(4);
    expect(m.nowGb(7)).toBe(2);
    m.reset();
    expect(m.peakGb(7)).toBe(2);
    expect(m.peakGb(8)).toBeUndefined();
    expect(m.peakGb(undefined)).toBeUndefined();
  });
});
