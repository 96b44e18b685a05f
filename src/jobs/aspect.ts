/**
 * Aspect ratios offered to users and the image size each one means.
 *
 * SD3.5 was trained around one megapixel; these are the ~1 MP sizes with both sides a multiple
 * of 64 (the VAE downsamples 8× and the MMDiT patches 2×2, so 16 would do, but 64 keeps every
 * bucket identical to the SDXL/SD3 training buckets users know):
 *
 * | aspect | size      | pixels    | true ratio |
 * |--------|-----------|-----------|------------|
 * | 1:1    | 1024×1024 | 1,048,576 | 1.000      |
 * | 16:9   | 1344×768  | 1,032,192 | 1.750      |
 * | 9:16   | 768×1344  | 1,032,192 | 0.571      |
 * | 4:3    | 1152×896  | 1,032,192 | 1.286      |
 * | 3:4    | 896×1152  | 1,032,192 | 0.778      |
 * | 3:2    | 1216×832  | 1,011,712 | 1.462      |
 * | 2:3    | 832×1216  | 1,011,712 | 0.684      |
 * | 21:9   | 1536×640  |   983,040 | 2.400      |
 */

export interface ImageSize {
  width: number;
  height: number;
}

export const ASPECT_SIZES = {
  '1:1': { width: 1024, height: 1024 },
  '16:9': { width: 1344, height: 768 },
  '9:16': { width: 768, height: 1344 },
  '4:3': { width: 1152, height: 896 },
  '3:4': { width: 896, height: 1152 },
  '3:2': { width: 1216, height: 832 },
  '2:3': { width: 832, height: 1216 },
  '21:9': { width: 1536, height: 640 },
} as const satisfies Record<string, ImageSize>;

export type AspectRatio = keyof typeof ASPECT_SIZES;

export const ASPECT_RATIOS = Object.keys(ASPECT_SIZES) as [AspectRatio, ...AspectRatio[]];

export function isAspectRatio(value: string): value is AspectRatio {
  return Object.hasOwn(ASPECT_SIZES, value);
}

/**
 * Reads what users type for a ratio: "16:9", "16x9", "16×9", "16/9", " 16 : 9 ". Returns the
 * canonical "16:9" form, or undefined when it is not a ratio we offer.
 */
export function parseAspect(input: string): AspectRatio | undefined {
  const match = /^\s*(\d+)\s*[:x×/]\s*(\d+)\s*$/i.exec(input);
  if (!match) return undefined;
  const canonical = `${Number(match[1])}:${Number(match[2])}`;
  return isAspectRatio(canonical) ? canonical : undefined;
}

/** The side of the 1:1 size that the table above is drawn for (SD3.5's one megapixel). */
export const REFERENCE_RESOLUTION = 1024;

/**
 * The size for `aspect` on a model trained around `resolution`² pixels (1024 for SD3.5, less for
 * the bundled tiny model, whose images are noise anyway and should be quick): the table's size
 * scaled, each side a multiple of 16 (VAE 8× · patch 2×).
 */
export function sizeForAspect(aspect: AspectRatio, resolution = REFERENCE_RESOLUTION): ImageSize {
  const { width, height } = ASPECT_SIZES[aspect];
  if (resolution === REFERENCE_RESOLUTION) return { width, height };
  const scale = (side: number) =>
    Math.max(16, Math.round((side * resolution) / REFERENCE_RESOLUTION / 16) * 16);
  return { width: scale(width), height: scale(height) };
}
