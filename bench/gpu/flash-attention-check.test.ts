/**
 * The `flash-attention` check (capi-checks.ts) as a CPU dry run: FlashAttention (its float32 CPU
 * reference here) against MultiHeadAttention, both judged against float64 on sampled head rows and
 * across graph replays with inputs rewritten in place, so the GPU session runs a check known to
 * judge the right graphs.
 */
import { describe, expect, it } from 'vitest';
import { FLASH_ATTENTION_CHECK } from './capi-checks.js';
import { cpuDryRun } from './check-dry-run.js';

interface Shape {
  op_vs_f64_exact: { rel_l2: number };
  stock_vs_f64_exact: { rel_l2: number };
  graph: { follows: boolean; rel_l2_per_run: number[] };
}

describe('capi-check flash-attention (CPU dry run)', () => {
  it('runs both kernels and judges them against float64 and across replays', async () => {
    const result = await cpuDryRun(FLASH_ATTENTION_CHECK);
    expect(result.status, result.detail).toBe('PASS');
    const [shape] = (result as unknown as { shapes: Shape[] }).shapes;
    // The op rounds its output to float16 once; MultiHeadAttention stays float32 on the CPU.
    expect(shape.op_vs_f64_exact.rel_l2).toBeGreaterThan(shape.stock_vs_f64_exact.rel_l2);
    expect(shape.op_vs_f64_exact.rel_l2).toBeLessThan(1e-3);
    expect(shape.graph.follows).toBe(true);
    expect(shape.graph.rel_l2_per_run).toHaveLength(4);
  });
});
