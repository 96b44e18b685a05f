/**
 * gpu-memory.ts with a calibration (issue 11: EngineOptions.memoryCalibration, made by
 * bench/gpu/atelier-bench.ts from the arenas' counters): the measured figures replace the
 * overhead, the MMDiT's activations and the text encoders' caps everywhere the plan uses them,
 * nothing changes without one, and calibrationFromArenas reads a job's arenas the way the plan
 * counts them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ArenaStats } from '../../src/pipeline/ort/index.js';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import {
  type ArenaReport,
  arenaActivationBytes,
  CALIBRATION_MARGIN,
  calibrationFromArenas,
  imagePasses,
  jobMemoryProblem,
  type MemoryCalibration,
  mergeCalibrations,
  mmditActivationBytes,
  OVERHEAD_BYTES,
  planGpuMemory,
  TEXT_ARENA_BYTES,
} from '../../src/pipeline/sd35/gpu-memory.js';
import { ensureTinyModel } from '../../src/pipeline/tiny/index.js';
import { GiB, largeInput } from '../fixtures/memory-input.js';

/** SD3.5 Large fp8 (the plan tests' fixture), with a calibration when given. */
const large = (calibration?: MemoryCalibration) => largeInput(calibration ? { calibration } : {});

const cuda = (limitGiB?: number, placement: 'auto' | 'gpu' | 'cpu-encoders' = 'auto') =>
  ({ provider: 'cuda', placement, limitBytes: limitGiB === undefined ? undefined : limitGiB * GiB }) as const;

/** Figures of the size the arenas might show (activations far below the power-of-two-inflated constants). */
const MEASURED: MemoryCalibration = {
  overheadBytes: 1.2e9,
  mmditActivationBytes: 2.2e9,
  textArenaBytes: { clipL: 0.02e9, clipG: 0.06e9, t5: 0.25e9 },
};

describe('a calibrated plan', () => {
  it('is the shipped plan without a calibration', () => {
    const shipped = planGpuMemory(large(), cuda(22, 'gpu'));
    expect(shipped.breakdown?.overheadBytes).toBe(OVERHEAD_BYTES);
    expect(shipped.arenaLimits?.t5).toBe(TEXT_ARENA_BYTES.t5);
    expect(planGpuMemory(large({}), cuda(22, 'gpu'))).toEqual(shipped);
  });

  it('takes the measured overhead, activations and text caps everywhere', () => {
    const input = large(MEASURED);
    expect(mmditActivationBytes(input, 1024, 1024, 2)).toBe(4.4e9);
    expect(mmditActivationBytes(input, 512, 512, 1)).toBe(0.55e9);
    const plan = planGpuMemory(input, cuda(22, 'gpu'));
    const b = plan.breakdown!;
    expect(b.overheadBytes).toBe(1.2e9);
    expect(b.mmditBytes).toBe(2.2e9);
    expect(b.textBytes).toBeCloseTo(0.33e9, -3);
    expect(plan.arenaLimits).toMatchObject({ clipL: 0.02e9, clipG: 0.06e9, t5: 0.25e9 });
    // The caps still add up to the limit: overhead + weights + every arena.
    const caps = Object.values(plan.arenaLimits!).reduce((a, c) => a + c, 0);
    expect(b.overheadBytes + b.weightsBytes + caps).toBeCloseTo(22 * GiB, -2);
  });

  it('can make the issue’s targets fit where the constants refuse them', () => {
    // The constants: Large with resident encoders does not fit 22 GiB, nor on the CPU placement 16 GiB.
    expect(planGpuMemory(large(), cuda(22, 'gpu')).fits).toBe(false);
    expect(planGpuMemory(large(), cuda(16, 'cpu-encoders')).fits).toBe(false);
    // With the measured figures above both fit, and auto keeps the encoders on the GPU at 22 GiB.
    expect(planGpuMemory(large(MEASURED), cuda(22, 'gpu')).fits).toBe(true);
    expect(planGpuMemory(large(MEASURED), cuda(16, 'cpu-encoders')).fits).toBe(true);
    expect(planGpuMemory(large(MEASURED), cuda(22)).placement).toBe('gpu');
    // …and the same figures say how a job runs: 4 images in passes that each fit.
    const plan = planGpuMemory(large(MEASURED), cuda(16, 'cpu-encoders'));
    const job = { width: 1024, height: 1024, count: 4 };
    expect(jobMemoryProblem(plan, large(MEASURED), job)).toBeUndefined();
    expect(plan.maxImages).toBeLessThan(4);
    expect(imagePasses(plan, large(MEASURED), job).length).toBeGreaterThan(1);
  });

  it('merges calibrations, later figures winning and text encoders by name', () => {
    expect(
      mergeCalibrations(
        { overheadBytes: 1, textArenaBytes: { t5: 5, clipL: 1 }, source: 'a' },
        { overheadBytes: 2, mmditActivationBytes: 3, textArenaBytes: { t5: 6 }, source: 'b' },
      ),
    ).toEqual({
      overheadBytes: 2,
      mmditActivationBytes: 3,
      textArenaBytes: { t5: 6, clipL: 1 },
      source: 'b',
    });
    expect(mergeCalibrations({ overheadBytes: 1 }, {})).toEqual({ overheadBytes: 1 });
  });
});

function stats(inUse: number, maxInUse: number, totalAllocated: number): ArenaStats {
  return {
    inUse,
    maxInUse,
    totalAllocated,
    maxAllocSize: 0,
    allocs: 0,
    reserves: 0,
    extensions: 0,
    shrinkages: 0,
  };
}

describe('calibrationFromArenas', () => {
  const reports: ArenaReport[] = [
    { component: 'clipL', session: 'clip_l', provider: 'cuda', stats: stats(0.25e9, 0.27e9, 0.3e9) },
    { component: 't5', session: 't5', provider: 'cuda', stats: stats(4.9e9, 5.1e9, 5.2e9) },
    { component: 'clipG', session: 'clip_g', provider: 'cpu', stats: stats(2.7e9, 3.0e9, 3.1e9) },
    { component: 'vae', session: 'vae_decoder', provider: 'cuda', stats: stats(0.3e9, 3.3e9, 4.0e9) },
    {
      component: 'mmdit',
      session: 'mmdit_step',
      provider: 'cuda',
      stats: stats(8.1e9, 12.1e9, 12.5e9),
      shape: { images: 2, height: 64, width: 64 },
    },
  ];

  it('scales the MMDiT’s activations to one 1024² image, with the margin; GPU encoders only; overhead outside the arenas', () => {
    expect(arenaActivationBytes(reports[4].stats)).toBe(4e9);
    const c = calibrationFromArenas(
      reports,
      { width: 512, height: 512, count: 2 },
      { processPeakBytes: 24e9, source: 'test' },
    );
    // 4e9 for 2 images of 1024 tokens: 2e9 per image, ×4 to 4096 tokens, ×1.1.
    expect(c.mmditActivationBytes).toBeCloseTo(2e9 * 4 * CALIBRATION_MARGIN, -2);
    expect(c.textArenaBytes).toEqual({ clipL: Math.round(0.02e9 * 1.1), t5: Math.round(0.2e9 * 1.1) });
    // 24e9 − (0.3 + 5.2 + 4.0 + 12.5)e9: the CPU encoder's arena is host memory.
    expect(c.overheadBytes).toBeCloseTo(2e9, -2);
    expect(c.source).toBe('test');
  });

  it('says nothing of a shape it did not see, nor of an overhead without a peak', () => {
    const c = calibrationFromArenas(reports, { width: 1024, height: 1024, count: 1 }, { margin: 1 });
    expect(c.mmditActivationBytes).toBeUndefined();
    expect(c.overheadBytes).toBeUndefined();
    expect(c.textArenaBytes?.t5).toBeCloseTo(0.2e9, -2);
    // The stock path's MMDiT session has no shape: it stands for the job.
    const stock: ArenaReport = { ...reports[4], session: 'mmdit', shape: undefined };
    expect(
      calibrationFromArenas([stock], { width: 1024, height: 1024, count: 2 }, { margin: 1 })
        .mmditActivationBytes,
    ).toBe(2e9);
  });
});

describe('the refusal at load', () => {
  it('is one line naming the need, the limit and only the fixes not already made', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'atelier-refusal-'));
    try {
      const tiny = await ensureTinyModel(dataDir);
      const base = {
        modelsDir: tiny.modelsDir,
        checkpoint: tiny.checkpoint,
        dataDir,
        provider: 'cuda' as const,
      };
      // The constants' 2.9 GB of overhead alone exceed 1 GiB: refused before any session opens.
      const onCpu = new Sd35Engine({
        ...base,
        gpuMemoryLimit: GiB,
        placement: 'cpu-encoders',
        precision: 'fp8',
      });
      const refusal = await onCpu.load().then(
        () => '',
        (error: Error) => error.message,
      );
      expect(refusal).toMatch(
        /needs about .* GB of GPU memory for one \d+×\d+ image, even with the text encoders on the CPU; models\.gpuMemoryLimit is 1\.1 GB\./,
      );
      expect(refusal).not.toMatch(/set models\.placement|use precision fp8/);
      expect(refusal).toMatch(/Raise the limit or use a smaller model \(sd3\.5-medium\)\.$/);
      const resident = new Sd35Engine({ ...base, gpuMemoryLimit: GiB, placement: 'gpu', precision: 'fp16' });
      await expect(resident.load()).rejects.toThrow(
        /Raise the limit, set models\.placement: cpu-encoders, use precision fp8 or use a smaller model/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
