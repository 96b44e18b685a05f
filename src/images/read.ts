import { readExifUserComment } from './exif.js';
import { PARAMETERS_KEYWORD } from './png.js';
import { isPng, readPngText } from './png-chunks.js';

/**
 * The generation parameters stored in a PNG (`parameters` text chunk) or a JPEG/WebP (Exif
 * UserComment), as Atelier and A1111 write them; undefined when the file carries none.
 */
export function readImageParameters(file: Buffer): string | undefined {
  if (isPng(file)) return readPngText(file)[PARAMETERS_KEYWORD];
  return readExifUserComment(file);
}
