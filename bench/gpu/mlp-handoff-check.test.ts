/**
 * Issue 10's `mlp-handoff` check (capi-checks.ts) as a CPU dry run: today's fc1 → fc2 and the
 * hand-off (fc1 writes e4m3 codes with a delayed per-tensor scale, fc2 reads them as Fp8LinearQ)
 * must each match the float64 of their own math, and the hand-off must cost little more than
 * today's W8A8 against unquantized activations, or the GPU's timing prices a wrong graph. Small
 * shapes on the CPU build of our op library.
 */
import { describe, expect, it } from 'vitest';
import { MLP_HANDOFF_CHECK } from './capi-checks.js';
import { cpuDryRun } from './check-dry-run.js';

describe('capi-check mlp-handoff (CPU dry run)', () => {
  it('runs both MLP forms, judges each against float64 and prices the hand-off per Large step', async () => {
    const result = await cpuDryRun(MLP_HANDOFF_CHECK);
    expect(result.status, result.detail).toBe('PASS');
    const r = result as unknown as Record<string, number>;
    // The CPU kernels are exact: only float32 sums and the float16 outputs separate them from float64.
    expect(r.rel_l2_today_vs_own_math).toBeLessThan(2e-3);
    expect(r.rel_l2_handoff_vs_own_math).toBeLessThan(2e-3);
    // After the replays (the same x each time) the scale is the delayed one, 2 × the amax history,
    // not the first call's own amax (small runs compare with every row's amax).
    expect(r.scale_over_amax).toBeGreaterThan(1.99);
    expect(r.scale_over_amax).toBeLessThan(2.01);
    expect(Number.isFinite(r.per_step_saved_ms)).toBe(true);
  });
});
