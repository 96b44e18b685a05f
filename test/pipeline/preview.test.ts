import { describe, expect, it } from 'vitest';
import { latentPreview, SD3_LATENT_RGB_FACTORS } from '../../src/pipeline/preview.js';

const CHANNELS = 16;

/** A [1, 16, h, w] latent, zero but for the given (channel, pixel) values. */
function latentWith(
  height: number,
  width: number,
  values: [channel: number, pixel: number, value: number][],
) {
  const latent = new Float32Array(CHANNELS * height * width);
  for (const [channel, pixel, value] of values) latent[channel * height * width + pixel] = value;
  return latent;
}

describe('latentPreview (SD3LatentFormat.decode_latent_to_preview)', () => {
  it('maps one latent pixel to one RGB pixel through the 16×3 factors', () => {
    // Pixel 1 has channel 2 = 1: rgb = (F[2] + 1)/2·255 = (1.1848, 1.0762, 1.036)/2·255
    // = 151.062, 137.2155, 132.09 → truncated like torch's .byte(): 151, 137, 132.
    const image = latentPreview(latentWith(2, 3, [[2, 1, 1]]), CHANNELS, 2, 3);
    expect(image.width).toBe(3);
    expect(image.height).toBe(2);
    expect(image.data.length).toBe(2 * 3 * 3);
    expect(Array.from(image.data.subarray(3, 6))).toEqual([151, 137, 132]);
    // A zero latent is mid-grey: 0.5·255 = 127.5 → 127.
    expect(Array.from(image.data.subarray(0, 3))).toEqual([127, 127, 127]);
  });

  it('sums the channels and clamps to the byte range', () => {
    const image = latentPreview(
      latentWith(1, 3, [
        [0, 0, 1],
        [10, 0, 2],
        [10, 1, 20],
        [15, 2, 20],
      ]),
      CHANNELS,
      1,
      3,
    );
    // Pixel 0: F[0] + 2·F[10] = (0.1567, 0.2519, 0.3492) → (1.1567, 1.2519, 1.3492)/2·255.
    expect(Array.from(image.data.subarray(0, 3))).toEqual([147, 159, 172]);
    expect(Array.from(image.data.subarray(3, 6))).toEqual([255, 255, 255]);
    expect(Array.from(image.data.subarray(6, 9))).toEqual([0, 0, 0]);
  });

  it('previews the first image of a batch', () => {
    const first = latentWith(1, 1, [[2, 0, 1]]);
    const batch = new Float32Array(CHANNELS * 2);
    batch.set(first);
    batch.fill(5, CHANNELS);
    expect(latentPreview(batch, CHANNELS, 1, 1).data).toEqual(latentPreview(first, CHANNELS, 1, 1).data);
  });

  it('refuses latents that are not SD3’s 16 channels', () => {
    expect(SD3_LATENT_RGB_FACTORS).toHaveLength(CHANNELS);
    expect(() => latentPreview(new Float32Array(4 * 4), 4, 2, 2)).toThrow(RangeError);
    expect(() => latentPreview(new Float32Array(10), CHANNELS, 2, 2)).toThrow(RangeError);
  });
});
