/**
 * The `paired-norms` check (capi-checks.ts) as a CPU dry run: AdaLNResidualQuant (one and two
 * branches, and a row wider than the CUDA kernel keeps in registers) and AdaLNModulateQuant with the
 * second modulation (shift2, scale2 → x8_2, act_scale_2) against the op without it followed by
 * AdaLNModulateQuant of its row, bit for bit, so the GPU session runs a check that is known to build
 * and compare the right graphs. Small shapes on the CPU build of our op library, in float32.
 */
import { describe, expect, it } from 'vitest';
import { PAIRED_NORMS_CHECK } from './capi-checks.js';
import { cpuDryRun } from './check-dry-run.js';

interface Case {
  dims: number[];
  branches: 0 | 1 | 2;
  copies: number;
  paired_ms?: number;
  separate_ms?: number;
  differing?: Record<string, number>;
  follows?: boolean;
  error?: string;
}

describe('capi-check paired-norms (CPU dry run)', () => {
  it('compares each paired node with the op and a second AdaLNModulateQuant, bit for bit', async () => {
    const result = await cpuDryRun(PAIRED_NORMS_CHECK);
    expect(result.status, result.detail).toBe('PASS');
    expect(result.type).toBe('float32');
    const cases = (result as unknown as { shapes: Case[] }).shapes;
    expect(cases.map((s) => s.branches)).toEqual([1, 0, 2, 1]);
    expect(cases.map((s) => s.dims)).toEqual([
      [2, 64, 320],
      [2, 64, 320],
      [2, 64, 320],
      [1, 2, 33792],
    ]);
    const base = ['codes', 'codes_2', 'scales', 'scales_2', 'y', 'y_2'];
    for (const s of cases) {
      expect(s.error).toBeUndefined();
      expect(Object.keys(s.differing ?? {}).sort()).toEqual(
        s.branches > 0 ? ['residual', ...base].sort() : base,
      );
      expect(
        Object.values(s.differing!).every((d) => d === 0),
        JSON.stringify(s.differing),
      ).toBe(true);
      expect(s.follows).toBe(true);
      expect(s.paired_ms).toBeGreaterThan(0);
      expect(s.separate_ms).toBeGreaterThan(0);
    }
    expect(result.detail.match(/bit-identical/g)).toHaveLength(4);
    expect(result.medium_step_saved_ms).toEqual(expect.any(Number));
  });
});
