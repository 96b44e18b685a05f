/**
 * Sampling defaults per model, from the reference's `CONFIGS` (Stability-AI/sd3.5 @ fbf8f48,
 * sd3_infer.py): the settings Stability ships with its own sampler implementations, which are the
 * ones ported here. Operators can override them in the config.
 *
 * Stability's model cards (Hugging Face, diffusers' FlowMatchEulerDiscrete scheduler) suggest
 * fewer steps: Medium 40 steps at guidance 4.5, Large Turbo 4 steps at guidance 0 (no CFG, as
 * here), Large 28 steps at 3.5 (as recalled; its card could not be opened from here).
 */
import type { ModelFamily, ModelSet } from '../models-dir/types.js';
import type { SamplerName } from '../types.js';
import { DEFAULT_SHIFT } from './schedule.js';

export interface SamplingDefaults {
  steps: number;
  /** Classifier-free guidance scale; ≤ 1 runs without the unconditional pass. */
  guidance: number;
  sampler: SamplerName;
  /** Flow-matching schedule shift. */
  shift: number;
  /** Side of the 1:1 image size the model was trained around, in pixels. */
  resolution: number;
}

export const SAMPLING_DEFAULTS: Readonly<Record<ModelFamily, Readonly<SamplingDefaults>>> = {
  // CONFIGS["sd3.5_large"]
  'sd3.5-large': { steps: 40, guidance: 4.5, sampler: 'dpmpp_2m', shift: DEFAULT_SHIFT, resolution: 1024 },
  // CONFIGS["sd3.5_large_turbo"]: distilled for 4 steps without guidance.
  'sd3.5-large-turbo': { steps: 4, guidance: 1, sampler: 'euler', shift: DEFAULT_SHIFT, resolution: 1024 },
  // CONFIGS["sd3.5_medium"] (its skip-layer guidance variant is not implemented).
  'sd3.5-medium': { steps: 50, guidance: 5, sampler: 'dpmpp_2m', shift: DEFAULT_SHIFT, resolution: 1024 },
  // The bundled toy model makes noise at any setting: keep it quick (the golden set's e2e txt2img
  // run), at a quarter of SD3.5's size per side so a playground image takes a fraction of a second.
  tiny: { steps: 4, guidance: 4.5, sampler: 'euler', shift: DEFAULT_SHIFT, resolution: 256 },
  // Any other SD3-shaped network: the reference's fallbacks for a model it does not know (main()).
  custom: { steps: 50, guidance: 5, sampler: 'dpmpp_2m', shift: DEFAULT_SHIFT, resolution: 1024 },
};

/** A model set's defaults: its family's, with what its checkpoint suggests for itself on top. */
export function samplingDefaultsOf(set: Pick<ModelSet, 'family' | 'sampling'>): SamplingDefaults {
  return { ...SAMPLING_DEFAULTS[set.family], ...set.sampling };
}
