/**
 * The arithmetic of quality-bench.ts (issue 10's FP8 quality report), apart so it is unit-tested
 * without a model: which sampler states to read, the velocity and denoised estimate from two
 * consecutive Euler states, relative L2, and the per-pair summary.
 */

/**
 * `w8a8-fp8attn`: W8A8 with the step's attention as atelier:Fp8Attention too (issue 10, step 6);
 * `w8a8-fastacc`: W8A8 with cuBLASLt's fast accumulation in its GEMMs (issue 10, sixth session);
 * `w8a8-handoff`: W8A8 (exact accumulation, as `w8a8`) whose MLPs hand fc1's output to fc2 as
 * e4m3 codes with a delayed per-tensor scale (NetOptions.fp8MlpHandoff).
 */
export const VARIANTS = [
  'fp16',
  'w8a8',
  'fp8-weights',
  'w8a8-fp8attn',
  'w8a8-fastacc',
  'w8a8-handoff',
] as const;
/** The variants that run our atelier:Fp8Linear (W8A8). */
export const W8A8_VARIANTS: readonly Variant[] = ['w8a8', 'w8a8-fp8attn', 'w8a8-fastacc', 'w8a8-handoff'];
export type Variant = (typeof VARIANTS)[number];
/** [variant, reference]: the variant's runs compared with the reference's. */
export type Pair = [Variant, Variant];

/** ‖a − b‖ / ‖b‖ in float64 (0 when both are zero, Infinity when only b is). */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`relL2: lengths ${a.length} and ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (den === 0) return num === 0 ? 0 : Number.POSITIVE_INFINITY;
  return Math.sqrt(num / den);
}

/**
 * The sampler states (0-based indices into the schedule: x_k before step k+1) a run must stop at
 * so that each 1-based step in `atSteps` has x before and after it, and the final latent; sorted,
 * without 0 (the start, known before the first call).
 */
export function boundariesFor(atSteps: number[], steps: number): number[] {
  const out = new Set<number>([steps]);
  for (const s of atSteps) {
    if (!Number.isInteger(s) || s < 1 || s > steps) continue;
    if (s - 1 > 0) out.add(s - 1);
    out.add(s);
  }
  return [...out].sort((a, b) => a - b);
}

/**
 * Step k (0-based) of an Euler trajectory: x_{k+1} = x_k + v_k·(σ_{k+1} − σ_k), so the velocity the
 * sampler integrated (CFG-combined) is v_k = (x_{k+1} − x_k)/(σ_{k+1} − σ_k), and the denoised
 * estimate d_k = x_k − σ_k·v_k (at the last step, σ = 0: d equals the final latent).
 */
export function velocityAt(
  states: ReadonlyMap<number, ArrayLike<number>>,
  schedule: ArrayLike<number>,
  k: number,
): { v: Float64Array; denoised: Float64Array } {
  const x0 = states.get(k);
  const x1 = states.get(k + 1);
  if (!x0 || !x1) throw new RangeError(`velocityAt: no sampler state at ${!x0 ? k : k + 1}`);
  const sigma = schedule[k];
  const dt = schedule[k + 1] - sigma;
  const v = new Float64Array(x0.length);
  const denoised = new Float64Array(x0.length);
  for (let i = 0; i < x0.length; i++) {
    v[i] = (x1[i] - x0[i]) / dt;
    denoised[i] = x0[i] - sigma * v[i];
  }
  return { v, denoised };
}

export interface QualityRow {
  model: string;
  variant: Variant;
  reference: Variant;
  w8a8_ran?: boolean;
  final_latent_rel_l2: number;
  at_steps: number[];
  velocity_rel_l2: number[];
  denoised_rel_l2: number[];
  text_context_rel_l2: number | null;
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const columns = (rows: number[][], f: (xs: number[]) => number) =>
  rows[0].map((_, j) => f(rows.map((r) => r[j])));

/** One entry per model × pair: means and maxima over the requests. */
export function summarize(rows: QualityRow[]): Record<string, unknown>[] {
  const groups = new Map<string, QualityRow[]>();
  for (const r of rows) {
    const key = JSON.stringify([r.model, r.variant, r.reference]);
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const text = g.map((r) => r.text_context_rel_l2).filter((x): x is number => x !== null);
    return {
      model: g[0].model,
      variant: g[0].variant,
      reference: g[0].reference,
      ...(g[0].w8a8_ran !== undefined ? { w8a8_ran: g[0].w8a8_ran } : {}),
      requests: g.length,
      final_latent_rel_l2_mean: mean(g.map((r) => r.final_latent_rel_l2)),
      final_latent_rel_l2_max: Math.max(...g.map((r) => r.final_latent_rel_l2)),
      at_steps: g[0].at_steps,
      velocity_rel_l2_mean: columns(
        g.map((r) => r.velocity_rel_l2),
        mean,
      ),
      velocity_rel_l2_max: columns(
        g.map((r) => r.velocity_rel_l2),
        (xs) => Math.max(...xs),
      ),
      denoised_rel_l2_mean: columns(
        g.map((r) => r.denoised_rel_l2),
        mean,
      ),
      text_context_rel_l2_mean: text.length ? mean(text) : null,
    };
  });
}
