/**
 * The single model's GPU memory plan with LoRAs configured (`loras.allowed`): each cached LoRA
 * combination (`loras.cachedCombinations`, default 2) is a whole denoiser session — a copy of the
 * MMDiT's weights and an arena — and the plan counts them as the multi-model residency does
 * (multi-engine.ts footprintOf). The doctor / start-log line says what they add, and when the
 * model fits but not all of them do, how many fit and which setting to lower.
 */
import { describe, expect, it } from 'vitest';
import { engineOptions } from '../../src/app/index.js';
import { doctor } from '../../src/cli/doctor.js';
import { loadConfig } from '../../src/config/index.js';
import { memoryPlanOf } from '../../src/pipeline/sd35/components.js';
import { describeModels } from '../../src/pipeline/sd35/describe.js';
import {
  describePlan,
  loraCapacity,
  lorasShort,
  mmditActivationBytes,
  planGpuMemory,
} from '../../src/pipeline/sd35/gpu-memory.js';
import { footprintOf } from '../../src/pipeline/sd35/multi-engine.js';
import { workdir } from '../config/helpers.js';
import { GiB, largeInput } from '../fixtures/memory-input.js';

const large = largeInput;

const cuda = (limitBytes?: number) => ({ provider: 'cuda', placement: 'auto', limitBytes }) as const;
/** What one cached combination of Large fp8 takes: its MMDiT's weights and an arena at 1024². */
const EACH = 8.1e9 + mmditActivationBytes(large(), 1024, 1024, 1);

describe('the plan with LoRAs configured', () => {
  it('says nothing of LoRAs when none are configured', () => {
    const plan = planGpuMemory(large(), cuda(40 * GiB));
    expect(plan.loras).toBeUndefined();
    expect(describePlan(plan)).not.toMatch(/LoRA/);
    expect(planGpuMemory(large({ loraCombinations: 0 }), cuda(40 * GiB)).loras).toBeUndefined();
  });

  it('counts a copy of the MMDiT and an arena per cached combination, as the multi-model residency does', () => {
    const plain = planGpuMemory(large(), cuda());
    const plan = planGpuMemory(large({ loraCombinations: 2 }), cuda());
    expect(plan.loras).toEqual({
      combinations: 2,
      eachBytes: EACH,
      fit: 2,
      peakBytes: plain.peakBytes! + 2 * EACH,
    });
    // The model's own figures stay the model's: a job without LoRAs runs on its own session.
    expect(plan.peakBytes).toBe(plain.peakBytes);
    expect(plan.fits).toBe(true);
    // multi-engine.ts footprintOf counts exactly what the plan adds.
    const set = { components: {} } as Parameters<typeof footprintOf>[0];
    const own = (n: number) => footprintOf(set, plan.breakdown, n)!.ownBytes;
    expect(own(2) - own(0)).toBeCloseTo(2 * plan.loras!.eachBytes, -3);
    expect(describePlan(plan)).toMatch(
      /^expected peak ~\d+\.\d GB at batch 1 \+ 2 LoRA combinations × 15\.3 GB \(~\d+\.\d GB with them\) \(placement gpu\); free GPU memory unknown .*: fit unknown$/,
    );
  });

  it('all of them fitting: the line says what they add, and nothing more', () => {
    const plan = planGpuMemory(large({ loraCombinations: 2 }), cuda(80 * GiB));
    expect(plan.loras?.fit).toBe(2);
    expect(lorasShort(plan)).toBe(false);
    expect(describePlan(plan)).toMatch(
      /\+ 2 LoRA combinations × 15\.3 GB \(~\d+\.\d GB with them\) .*: fits \(up to \d+ images at once\)$/,
    );
  });

  it('the model fits but not every combination: says how many fit and which setting to lower', () => {
    // Large fp8 alone ~32 GB; 48 GiB (51.5 GB) leaves room for one 15.3 GB combination, not two.
    const plan = planGpuMemory(large({ loraCombinations: 2 }), cuda(48 * GiB));
    expect(plan.fits).toBe(true);
    expect(plan.loras).toMatchObject({ combinations: 2, fit: 1 });
    expect(lorasShort(plan)).toBe(true);
    expect(describePlan(plan)).toMatch(
      /: fits \(up to \d+ images? at once\); only 1 of the 2 LoRA combinations fits — set loras\.cachedCombinations: 1$/,
    );
    // Three configured, two fit.
    const three = planGpuMemory(large({ loraCombinations: 3 }), cuda(64 * GiB));
    expect(three.loras).toMatchObject({ combinations: 3, fit: 2 });
    expect(describePlan(three)).toMatch(
      /only 2 of the 3 LoRA combinations fit — set loras\.cachedCombinations: 2$/,
    );
  });

  it('not even one combination beside the model: says LoRA jobs would run out of memory and what makes room', () => {
    const plan = planGpuMemory(large({ loraCombinations: 1 }), cuda(40 * GiB));
    expect(plan.fits).toBe(true);
    expect(plan.loras).toMatchObject({ combinations: 1, fit: 0 });
    expect(lorasShort(plan)).toBe(true);
    expect(describePlan(plan)).toMatch(
      /; no LoRA combination fits beside the model \(15\.3 GB each\): a job with LoRAs would run out of memory — keep loras\.cachedCombinations at 1 and make room \(models\.placement: cpu-encoders, a higher limit, a smaller model\) or leave loras\.allowed empty$/,
    );
  });

  it('the model itself not fitting is the verdict: nothing is said of the combinations beyond their size', () => {
    const plan = planGpuMemory(large({ loraCombinations: 2 }), cuda(12 * GiB));
    expect(plan.fits).toBe(false);
    expect(plan.loras?.fit).toBe(0);
    expect(lorasShort(plan)).toBe(false);
    expect(describePlan(plan)).toMatch(/\+ 2 LoRA combinations × .*: DOES NOT FIT$/);
  });
});

describe('atelier doctor with LoRAs configured', () => {
  const run = async (env: Record<string, string>) => {
    const config = loadConfig({
      env: { ATELIER_MODELS__EXECUTION_PROVIDER: 'cuda', ...env },
      cwd: workdir(),
    });
    const lines: string[] = [];
    const code = await doctor(
      config,
      (line) => lines.push(line),
      () => ({ name: 'NVIDIA H100', totalBytes: 80e9, freeBytes: 79e9 }),
    );
    return { code, text: lines.join('\n') };
  };

  it('counts loras.cachedCombinations (default 2) in the gpu memory line, only with LoRAs allowed', async () => {
    const none = await run({ ATELIER_MODELS__GPU_MEMORY_LIMIT: '4GiB' });
    expect(none.text).toMatch(/gpu memory +expected peak ~\d+\.\d GB at batch 1 \(placement gpu\)/);
    const two = await run({ ATELIER_MODELS__GPU_MEMORY_LIMIT: '4GiB', ATELIER_LORAS__ALLOWED__INK: '{}' });
    expect(two.text).toMatch(
      /gpu memory +expected peak ~\d+\.\d GB at batch 1 \+ 2 LoRA combinations × \d+\.\d GB \(~\d+\.\d GB with them\) \(placement gpu\); limit 4\.3 GB \(models\.gpuMemoryLimit\): fits/,
    );
    const three = await run({
      ATELIER_MODELS__GPU_MEMORY_LIMIT: '4GiB',
      ATELIER_LORAS__ALLOWED__INK: '{}',
      ATELIER_LORAS__CACHED_COMBINATIONS: '3',
    });
    expect(three.text).toMatch(/\+ 3 LoRA combinations ×/);
    // The bundled tiny model's combinations are small: all fit, no warning (the provider's
    // problem on a machine without CUDA is not the memory's).
    expect(three.text).not.toMatch(/warning|gpu memory +PROBLEM/);
  }, 60_000);

  it('the model fits but not every combination: a warning naming how many fit and loras.cachedCombinations', async () => {
    const lorasEnv = { ATELIER_LORAS__ALLOWED__INK: '{}', ATELIER_LORAS__CACHED_COMBINATIONS: '3' };
    // The bundled model's own figures, as doctor computes them: a limit with room for one and a half.
    const config = loadConfig({
      env: {
        ATELIER_MODELS__EXECUTION_PROVIDER: 'cuda',
        ATELIER_MODELS__GPU_MEMORY_LIMIT: '4GiB',
        ...lorasEnv,
      },
      cwd: workdir(),
    });
    const engine = await engineOptions(config);
    const { set, components } = describeModels(engine);
    const { plan } = memoryPlanOf(engine, set, components);
    const limit = Math.round(plan.peakBytes! + 1.5 * plan.loras!.eachBytes);
    const { text } = await run({ ATELIER_MODELS__GPU_MEMORY_LIMIT: String(limit), ...lorasEnv });
    expect(text).toMatch(
      /gpu memory +expected peak .*\+ 3 LoRA combinations × .*: fits .*; only 1 of the 3 LoRA combinations fits — set loras\.cachedCombinations: 1\n/,
    );
    expect(text).toMatch(
      / {2}warning +1 of the 3 cached LoRA combinations fit beside the model: set loras\.cachedCombinations: 1, or jobs with a new combination may run out of memory/,
    );
  }, 60_000);
});

describe('how many combinations the engine keeps (loraCapacity)', () => {
  const base = planGpuMemory(large(), cuda(40 * GiB));
  const at = (room: number, combinations = 2) => {
    // The limit that leaves `room` combinations' worth beside the model (and half of one more).
    const limit = base.peakBytes! + room * EACH + EACH / 2;
    return planGpuMemory(large({ loraCombinations: combinations }), cuda(limit));
  };

  it('keeps the configured number when they all fit, or when no budget is known', () => {
    expect(loraCapacity(at(2), 2)).toEqual({ capacity: 2 });
    expect(loraCapacity(planGpuMemory(large({ loraCombinations: 2 }), cuda()), 2)).toEqual({ capacity: 2 });
  });

  it('keeps fewer when only fewer fit beside the model', () => {
    expect(loraCapacity(at(1), 2)).toEqual({ capacity: 1 });
  });

  it('refuses LoRA jobs, in words for the user, when not even one fits', () => {
    const { capacity, refusal } = loraCapacity(at(0), 2);
    expect(capacity).toBe(0);
    expect(refusal).toMatch(
      /^A LoRA runs on its own copy of the model's weights on the GPU \(about \d+\.\d GB\), more than this server has left beside the model \(\d+\.\d GB\)\. Try without LoRAs\.$/,
    );
  });
});
