import type { RawImage } from '../../src/pipeline/types.js';

/** A deterministic RGB image whose every pixel encodes its position, so placement can be checked. */
export function patternImage(width: number, height: number, tag = 0): RawImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = x & 0xff;
      data[i + 1] = y & 0xff;
      data[i + 2] = tag;
    }
  }
  return { width, height, data };
}

/** Seeded noise: incompressible, so PNGs are large and size limits bite. */
export function noiseImage(width: number, height: number, seed = 1): RawImage {
  const data = new Uint8Array(width * height * 3);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    data[i] = state & 0xff;
  }
  return { width, height, data };
}

export function pixel(image: RawImage, x: number, y: number): [number, number, number] {
  const i = (y * image.width + x) * 3;
  return [image.data[i]!, image.data[i + 1]!, image.data[i + 2]!];
}
