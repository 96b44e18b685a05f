/**
 * Random weights, reproducible to the bit: each tensor draws from its own xoshiro128** stream
 * (seeded by the model seed and the tensor's name, so adding a tensor never changes the others)
 * and is stored as fp16. Uniform initialisations as PyTorch's defaults (bound 1/√fan_in) keep
 * activations in range; norms start at 1.
 */

import { floatToHalf } from '../weights/dtypes.js';
import type { TensorToWrite } from '../weights/safetensors-writer.js';
import { hashString, Xoshiro128 } from './prng.js';

/** Collects a component's tensors in the order they are declared. */
export class TensorList {
  readonly tensors: TensorToWrite[] = [];

  constructor(
    readonly seed: number,
    /** Key prefix of the component inside its file (`model.diffusion_model.` …). */
    readonly prefix = '',
  ) {}

  /** Values uniform in [center − bound, center + bound), stored as fp16. */
  uniform(name: string, shape: number[], bound: number, center = 0): void {
    const full = this.prefix + name;
    const rng = new Xoshiro128((this.seed ^ hashString(full)) | 0);
    const count = shape.reduce((a, d) => a * d, 1);
    const data = new Uint16Array(count);
    for (let i = 0; i < count; i++) data[i] = floatToHalf(center + rng.symmetric(bound));
    this.tensors.push({ name: full, dtype: 'F16', shape, data });
  }

  /** nn.Linear: weight [out, in] and (optionally) bias [out]; `gain` scales the weight's bound. */
  linear(
    name: string,
    out: number,
    inFeatures: number,
    options: { bias?: boolean; gain?: number } = {},
  ): void {
    const bound = 1 / Math.sqrt(inFeatures);
    this.uniform(`${name}.weight`, [out, inFeatures], bound * (options.gain ?? 1));
    if (options.bias ?? true) this.uniform(`${name}.bias`, [out], bound);
  }

  /** nn.Conv2d with a square kernel: weight [out, in, k, k], bias [out]. */
  conv(name: string, out: number, inChannels: number, kernel: number, gain = 1): void {
    const bound = 1 / Math.sqrt(inChannels * kernel * kernel);
    this.uniform(`${name}.weight`, [out, inChannels, kernel, kernel], bound * gain);
    this.uniform(`${name}.bias`, [out], bound);
  }

  /** LayerNorm / GroupNorm: weight near 1 and bias near 0; RMSNorm (`bias: false`) has only the weight. */
  norm(name: string, width: number, options: { bias?: boolean } = {}): void {
    this.uniform(`${name}.weight`, [width], 0.05, 1);
    if (options.bias ?? true) this.uniform(`${name}.bias`, [width], 0.05);
  }
}
