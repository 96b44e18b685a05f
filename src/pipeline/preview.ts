/**
 * A cheap RGB preview of an SD3 latent for progress messages: each latent pixel's 16 channels
 * times a 16×3 matrix, one image pixel per latent pixel (1/8 of the final size). Factors and
 * mapping from the reference (Stability-AI/sd3.5 @ fbf8f48, sd3_impls.py
 * `SD3LatentFormat.decode_latent_to_preview`): rgb = clamp((latent·F + 1) / 2, 0, 1) · 255,
 * truncated to a byte as torch's `.byte()` does.
 */
import type { RawImage } from './types.js';

/** `decode_latent_to_preview`'s factors: row k maps latent channel k to (r, g, b). */
export const SD3_LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [-0.0645, 0.0177, 0.1052],
  [0.0028, 0.0312, 0.065],
  [0.1848, 0.0762, 0.036],
  [0.0944, 0.036, 0.0889],
  [0.0897, 0.0506, -0.0364],
  [-0.002, 0.1203, 0.0284],
  [0.0855, 0.0118, 0.0283],
  [-0.0539, 0.0658, 0.1047],
  [-0.0057, 0.0116, 0.07],
  [-0.0412, 0.0281, -0.0039],
  [0.1106, 0.1171, 0.122],
  [-0.0248, 0.0682, -0.0481],
  [0.0815, 0.0846, 0.1207],
  [-0.012, -0.0055, -0.0867],
  [-0.0749, -0.0634, -0.0456],
  [-0.1418, -0.1457, -0.1259],
];

/**
 * Preview of the first image of `latent` ([images, channels, height, width], row-major; pass the
 * sampler's denoised estimate for the clearest picture). `channels` must be 16 (SD3's latent).
 */
export function latentPreview(
  latent: Float32Array,
  channels: number,
  height: number,
  width: number,
): RawImage {
  if (channels !== SD3_LATENT_RGB_FACTORS.length) {
    throw new RangeError(
      `The SD3 preview needs ${SD3_LATENT_RGB_FACTORS.length} latent channels, got ${channels}`,
    );
  }
  const plane = height * width;
  if (latent.length < channels * plane) {
    throw new RangeError(
      `A latent of ${latent.length} values is smaller than one image of [${channels}, ${height}, ${width}]`,
    );
  }
  const data = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let k = 0; k < channels; k++) v += latent[k * plane + p] * SD3_LATENT_RGB_FACTORS[k][c];
      data[p * 3 + c] = Math.trunc(Math.min(Math.max((v + 1) / 2, 0), 1) * 255);
    }
  }
  return { width, height, data };
}
