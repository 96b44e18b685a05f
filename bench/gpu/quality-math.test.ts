import { describe, expect, it } from 'vitest';
import { boundariesFor, type QualityRow, relL2, summarize, velocityAt } from './quality-math.js';

describe('quality-bench arithmetic', () => {
  it('stops the sampler around each reported step and at the end', () => {
    expect(boundariesFor([1, 7, 14, 21, 28], 28)).toEqual([1, 6, 7, 13, 14, 20, 21, 27, 28]);
    // Out-of-range steps are ignored; the end is always there.
    expect(boundariesFor([0, 3, 99], 4)).toEqual([2, 3, 4]);
  });

  it('recovers the velocity and denoised estimate of every Euler step from consecutive states', () => {
    const schedule = Float32Array.from([1, 0.8, 0.5, 0.2, 0]);
    const n = 64;
    const denoised = [0, 1, 2, 3].map((k) => Float32Array.from({ length: n }, (_, i) => Math.sin(i + k) * 2));
    // The sampler's own update, in float32 as the step graph keeps x.
    const states = new Map<number, Float32Array>([
      [0, Float32Array.from({ length: n }, (_, i) => Math.cos(i))],
    ]);
    for (let k = 0; k < 4; k++) {
      const x = states.get(k)!;
      const next = new Float32Array(n);
      for (let i = 0; i < n; i++)
        next[i] = x[i] + ((x[i] - denoised[k][i]) / schedule[k]) * (schedule[k + 1] - schedule[k]);
      states.set(k + 1, next);
    }
    for (let k = 0; k < 4; k++) {
      const got = velocityAt(states, schedule, k);
      expect(relL2(got.denoised, denoised[k])).toBeLessThan(1e-5);
      const v = states.get(k)!.map((x, i) => (x - denoised[k][i]) / schedule[k]);
      expect(relL2(got.v, v)).toBeLessThan(1e-5);
    }
    // The last step lands on the denoised estimate itself.
    expect(relL2(states.get(4)!, denoised[3])).toBeLessThan(1e-6);
    expect(() => velocityAt(states, schedule, 4)).toThrow(/no sampler state at 5/);
  });

  it('relative L2 and the summary over requests', () => {
    expect(relL2([3, 4], [3, 4])).toBe(0);
    expect(relL2([3, 5], [3, 4])).toBeCloseTo(0.2, 12);
    expect(relL2([0], [0])).toBe(0);
    expect(() => relL2([1], [1, 2])).toThrow(RangeError);
    const row = (final: number, v: number[], text: number | null): QualityRow => ({
      model: 'sd3.5-large',
      variant: 'w8a8',
      reference: 'fp16',
      w8a8_ran: true,
      final_latent_rel_l2: final,
      at_steps: [1, 28],
      velocity_rel_l2: v,
      denoised_rel_l2: v.map((x) => x / 2),
      text_context_rel_l2: text,
    });
    const [s] = summarize([row(0.1, [0.01, 0.2], 0.03), row(0.3, [0.03, 0.4], 0.05)]);
    expect(s).toMatchObject({
      model: 'sd3.5-large',
      variant: 'w8a8',
      reference: 'fp16',
      w8a8_ran: true,
      requests: 2,
    });
    expect(s.final_latent_rel_l2_mean).toBeCloseTo(0.2, 12);
    expect(s.final_latent_rel_l2_max).toBe(0.3);
    expect(s.velocity_rel_l2_mean).toEqual([0.02, expect.closeTo(0.3, 12)]);
    expect(s.velocity_rel_l2_max).toEqual([0.03, 0.4]);
    expect(s.text_context_rel_l2_mean).toBeCloseTo(0.04, 12);
  });
});
