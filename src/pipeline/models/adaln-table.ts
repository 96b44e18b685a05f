/**
 * The adaLN modulation table (issue 10): every adaLN_modulation layer of the MMDiT (each joint
 * block's and the final layer's Sequential(SiLU, Linear)) reads only c = t_embedder(σ·1000) +
 * y_embedder(y), i.e. the step's σ and the pooled text, never the latents. So one small graph,
 * run once per job after the conditioning is known, computes them for every step at once (GEMMs
 * of M = maxSteps · rows instead of M = rows every step), and the step graph built with
 * `adalnTable` (sampler-step.ts) gathers its row by the step counter it already reads `coeffs` by.
 *
 * Inputs: `coeffs` float32 [maxSteps, 4] (stepCoefficients; σ is column 0), `y` and, when
 * splitsUncond, `y_uncond` as conditioningDims gives them. Output: `mods` [maxSteps, rows,
 * modulationWidth] in the compute type (what the step's adaLN layers would have produced), rows in
 * the batched order: the prompt's, then the negative prompt's. Rows of steps past the job's
 * schedule (σ = 0) are computed and never read.
 *
 * Built with the step graph's Net options, so each linear layer takes the same route as in the step
 * (fp8 dequantize, W8A8 Fp8Linear with per-token activation scales: a row's result does not depend
 * on the other rows of its batch).
 */
import type { Net } from '../onnx/nn.js';
import { conditioningVector, type MmditConfig, modulationRows } from './mmdit.js';
import {
  conditioningDims,
  mmditRows,
  modulationTableDims,
  type SamplerStepOptions,
  type SamplerStepShape,
  STEP_COEFFICIENTS,
  splitsUncond,
} from './sampler-step.js';

export function buildAdaLNTable(
  net: Net,
  cfg: MmditConfig,
  shape: SamplerStepShape,
  options: Pick<SamplerStepOptions, 'maxSplitOutputs'> = {},
): void {
  const { g } = net;
  const { maxSteps } = shape;
  const rows = mmditRows(shape);
  const dims = conditioningDims(cfg, shape);
  const coeffs = g.input('coeffs', 'float32', [maxSteps, STEP_COEFFICIENTS]);
  let y = net.floatInput('y', dims.y);
  if (splitsUncond(shape)) y = net.concat([y, net.floatInput('y_uncond', dims.y_uncond!)], 0);

  // The step's timestep σ·1000 in float32 (sampler-step.ts stepTimestep), for every step and row.
  const sigma = net.slice(coeffs, 1, 0, 1);
  const thousand = g.constant('c', 'float32', [], new Float32Array([1000]));
  const timestep = net.reshape(g.op('Expand', [g.op('Mul', [sigma, thousand]), net.ints([maxSteps, rows])]), [
    maxSteps * rows,
  ]);
  const yRows = net.reshape(
    g.op('Expand', [net.unsqueeze(y, [0]), net.ints([maxSteps, rows, cfg.admInChannels])]),
    [maxSteps * rows, cfg.admInChannels],
  );
  const mods = g.scope('diffusion_model', () =>
    modulationRows(net, cfg, conditioningVector(net, timestep, yRows), options.maxSplitOutputs),
  );
  const tableDims = modulationTableDims(cfg, shape, options.maxSplitOutputs);
  g.output(net.reshape(mods, tableDims), 'mods', net.compute, tableDims);
}

/** Bytes of the table of `shape` in `compute`: what the step session's `mods` buffer holds. */
export function adalnTableBytes(
  cfg: MmditConfig,
  shape: SamplerStepShape,
  compute: 'float32' | 'float16',
): number {
  return modulationTableDims(cfg, shape).reduce((n, d) => n * d, 1) * (compute === 'float16' ? 2 : 4);
}
