/**
 * Issue 15's `lora-branch` check (capi-checks.ts) as a CPU dry run: the branch graph must add
 * exactly x · downᵀ · upᵀ to the Fp8Linear layer's output, or the GPU's timing prices something
 * else. Small shapes on the CPU build of our op library.
 */
import { describe, expect, it } from 'vitest';
import { LORA_BRANCH_CHECK } from './capi-checks.js';
import { cpuDryRun } from './check-dry-run.js';

describe('capi-check lora-branch (CPU dry run)', () => {
  it('adds the low-rank branch to the layer (against float64) and prices it per Large step', async () => {
    const result = await cpuDryRun(LORA_BRANCH_CHECK, 2);
    expect(result.status, result.detail).toBe('PASS');
    const [shape] = result.shapes as { rel_l2_branch: number; added_ms: number }[];
    expect(shape!.rel_l2_branch).toBeLessThan(2e-2);
    expect(Object.keys(result.per_step_ms as object)).toEqual(['r4']);
  });
});
