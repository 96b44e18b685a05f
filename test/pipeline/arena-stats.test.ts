/**
 * Issue 11's measurement hooks on the CPU (tiny model): every session opened through ONNX Runtime's
 * C API reports its arena's counters (AllocatorGetStats), the C-API step sessions with the shape
 * they were built for, and a job's activations show as the high-water mark above what stays in
 * use. The same calls read the CUDA arenas on the GPU (bench/gpu/atelier-bench.ts).
 */
import { describe, expect, it } from 'vitest';
import { arenaStatsFrom } from '../../src/pipeline/ort/index.js';
import { arenaActivationBytes, calibrationFromArenas } from '../../src/pipeline/sd35/gpu-memory.js';
import type { GenerationRequest } from '../../src/pipeline/types.js';
import { tinyEngines, tinyRequest } from '../fixtures/tiny-engines.js';

const tiny = tinyEngines('atelier-arenas-', { threads: 1, maxSteps: 8 });
const { engine } = tiny;

const request = (overrides: Partial<GenerationRequest> = {}) =>
  tinyRequest({ seed: 3, steps: 2, ...overrides });

describe('arena statistics through the C API', () => {
  it("reads ONNX Runtime's key/value counters, with no limit when it says -1 or SIZE_MAX", () => {
    const pairs = {
      InUse: '262144',
      Limit: '-1',
      MaxAllocSize: '262144',
      MaxInUse: '524288',
      NumAllocs: '2',
      NumArenaExtensions: '1',
      NumArenaShrinkages: '0',
      NumReserves: '1',
      TotalAllocated: '1310720',
    };
    expect(arenaStatsFrom(pairs)).toEqual({
      inUse: 262144,
      maxInUse: 524288,
      totalAllocated: 1310720,
      maxAllocSize: 262144,
      allocs: 2,
      reserves: 1,
      extensions: 1,
      shrinkages: 0,
    });
    expect(arenaStatsFrom({ ...pairs, Limit: '18446744073709551615' })?.limit).toBeUndefined();
    expect(arenaStatsFrom({ ...pairs, Limit: '17179869184' })?.limit).toBe(16 * 2 ** 30);
    expect(arenaStatsFrom({})).toBeUndefined();
  });

  it('reports every C-API session after a job, the step sessions with their shape; stock sessions none', async () => {
    const stock = await engine({ runtime: 'stock' });
    await stock.generate(request());
    expect(await stock.arenaStats()).toEqual([]);

    const capi = await engine({ runtime: 'capi', sessionApi: 'capi', customOpsLibrary: null });
    await capi.generate(request());
    const after = await capi.arenaStats();
    expect(after.map((a) => `${a.component}:${a.session}:${a.provider}`)).toEqual([
      'clipL:clip_l:cpu',
      'clipG:clip_g:cpu',
      't5:t5:cpu',
      'vae:vae_decoder:cpu',
      'mmdit:mmdit_step:cpu',
    ]);
    for (const a of after) {
      expect(a.stats.maxInUse).toBeGreaterThan(0);
      expect(a.stats.maxInUse).toBeGreaterThanOrEqual(a.stats.inUse);
      expect(a.stats.totalAllocated).toBeGreaterThanOrEqual(a.stats.maxInUse);
    }
    const step = after.find((a) => a.session === 'mmdit_step')!;
    expect(step.shape).toEqual({ images: 1, height: 12, width: 16 });
    expect(arenaActivationBytes(step.stats)).toBeGreaterThan(0);

    // A second image per job is a new shape (its own session) whose activations are larger.
    await capi.generate(request({ count: 2 }));
    const two = (await capi.arenaStats()).find((a) => a.session === 'mmdit_step')!;
    expect(two.shape).toEqual({ images: 2, height: 12, width: 16 });
    expect(arenaActivationBytes(two.stats)).toBeGreaterThan(arenaActivationBytes(step.stats));
    // On the CPU nothing calibrates the GPU plan.
    expect(
      calibrationFromArenas(after, { width: 128, height: 96, count: 1 }, { processPeakBytes: 1e9 }),
    ).toEqual({});
  });
});
