/**
 * Which SD3 model a state dict is, from its shapes, as the reference's BaseModel reads them
 * (Stability-AI/sd3.5 sd3_impls.py): depth = x_embedder.proj.weight.shape[0] / 64. SD3.5 Large has
 * 38 blocks; SD3.5 Medium 24 with dual attention (`x_block.attn2`, MMDiT-X). Turbo shares Large's
 * shape, so only a name or metadata can tell it.
 */
import type { ModelFamily } from './types.js';

export interface MmditShape {
  /** Width of the transformer (64 per block in every SD3 model). */
  hidden: number;
  depth: number;
  /** MMDiT-X: some blocks carry a second, image-only attention (SD3.5 Medium). */
  dualAttention: boolean;
}

/** Hidden width below which a network is a toy (the bundled tiny model, the golden sets). */
const TOY_HIDDEN = 512;

/** Shape facts of an MMDiT in reference naming; `shape(key)` is undefined for a missing key. */
export function mmditShape(
  shape: (key: string) => number[] | undefined,
  keys: Iterable<string>,
): MmditShape | undefined {
  const embed = shape('x_embedder.proj.weight');
  if (embed?.length !== 4) return undefined;
  let dualAttention = false;
  for (const key of keys) {
    if (/^joint_blocks\.\d+\.x_block\.attn2\./.test(key)) {
      dualAttention = true;
      break;
    }
  }
  return { hidden: embed[0], depth: embed[0] / 64, dualAttention };
}

/**
 * The family of an MMDiT; `hints` are the file or folder name and metadata values, searched for
 * "turbo" (sd3.5_large_turbo.safetensors, `modelspec.title`).
 */
export function familyOf(shape: MmditShape, hints: readonly string[]): ModelFamily {
  if (shape.depth === 38 && !shape.dualAttention) {
    return hints.some((h) => /turbo/i.test(h)) ? 'sd3.5-large-turbo' : 'sd3.5-large';
  }
  if (shape.depth === 24 && shape.dualAttention) return 'sd3.5-medium';
  return shape.hidden < TOY_HIDDEN ? 'tiny' : 'custom';
}

/** Families in the order discovery prefers them when several checkpoints are present. */
export const FAMILY_PREFERENCE: readonly ModelFamily[] = [
  'sd3.5-large',
  'sd3.5-large-turbo',
  'sd3.5-medium',
  'custom',
  'tiny',
];
