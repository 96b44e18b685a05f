/** PNG files with their generation parameters embedded, readable by A1111, ComfyUI and exiftool. */
import type { RawImage } from '../pipeline/types.js';
import { insertAfterHeader, textChunk } from './png-chunks.js';
import { sharpFromRaw } from './raw.js';

/** The keyword A1111 and its readers use for the generation parameters. */
export const PARAMETERS_KEYWORD = 'parameters';

export interface PngOptions {
  /** zlib level, 0 (fast) – 9 (small). @default 6 */
  compressionLevel?: number;
  /**
   * Per-row PNG filters. sharp's default is off, which leaves generated images 2–10× larger
   * (measured on 1024² images: 2.9 MB → 1.3 MB for about 35 ms more per image).
   * @default true
   */
  adaptiveFiltering?: boolean;
}

/** Encodes the image as PNG with `parameters` in a tEXt chunk (iTXt when the text is not Latin-1). */
export async function encodePng(
  image: RawImage,
  parameters: string,
  options: PngOptions = {},
): Promise<Buffer> {
  const png = await sharpFromRaw(image)
    .png({
      compressionLevel: options.compressionLevel ?? 6,
      adaptiveFiltering: options.adaptiveFiltering ?? true,
    })
    .toBuffer();
  return insertAfterHeader(png, [textChunk(PARAMETERS_KEYWORD, parameters)]);
}

export { readPngText } from './png-chunks.js';
