/**
 * The `residual-norm` check (capi-checks.ts) as a CPU dry run: AdaLNResidualQuant and AdaLNResidual
 * against the chains they replace, with one gated branch (Large's streams) and with two (Medium's
 * dual-attention blocks: Mul, Add, Mul, Add, then the norm), bit for bit and against the exact
 * rounding of each sum, so the GPU session runs a check that is known to judge the right graphs.
 * Small shapes on the CPU build of our op library, in float32 (the CPU provider runs float16 Mul and
 * Add in float32, which only the GPU's float16 kernels round as the op does).
 */
import { describe, expect, it } from 'vitest';
import { RESIDUAL_NORM_CHECK } from './capi-checks.js';
import { cpuDryRun } from './check-dry-run.js';

interface Shape {
  dims: number[];
  branches: number;
  differing: Record<string, number>;
  residual_wrong_vs_exact: number;
  plain: { differing: number };
}

describe('capi-check residual-norm (CPU dry run)', () => {
  it('compares the one- and two-branch ops with their chains, bit for bit', async () => {
    const result = await cpuDryRun(RESIDUAL_NORM_CHECK);
    expect(result.status, result.detail).toBe('PASS');
    const shapes = (result as unknown as { shapes: Shape[] }).shapes;
    expect(shapes.map((s) => s.branches)).toEqual([1, 2]);
    for (const s of shapes) {
      expect(Object.keys(s.differing).sort()).toEqual(['codes', 'residual', 'scales', 'y']);
      expect(Object.values(s.differing).every((d) => d === 0)).toBe(true);
      expect(s.residual_wrong_vs_exact).toBe(0);
      expect(s.plain.differing).toBe(0);
    }
  });
});
