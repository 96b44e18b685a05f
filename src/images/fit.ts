/**
 * Keeps a file under a platform's upload cap (Discord: 10 MiB without boosts). In order, each
 * step only when the one before is still too big: the PNG as it is; the PNG at zlib level 9
 * (lossless); JPEG/WebP at falling quality, full size; then smaller sizes. It never fails: if
 * even a tiny image is over the cap, the smallest file made is returned and the caller's upload
 * reports the platform's own error. The generation parameters travel along in every format.
 */
import sharp from 'sharp';
import { jpegWithExif, userCommentExif, webpWithExif } from './exif.js';
import { PARAMETERS_KEYWORD } from './png.js';
import { insertAfterHeader, readPngText, textChunk } from './png-chunks.js';

export type UploadFormat = 'png' | 'jpeg' | 'webp';

export interface FittedImage {
  data: Buffer;
  format: UploadFormat;
  /** True when the pixels were downscaled to fit. */
  scaled: boolean;
}

export interface FitOptions {
  /** The lossy format tried when PNG is too big. @default 'jpeg' (shown inline everywhere) */
  lossyFormat?: 'jpeg' | 'webp';
  /** Qualities tried at full size, best first. @default [92, 85, 75] */
  qualities?: readonly number[];
  /** Quality used once the image is downscaled. @default 85 */
  scaledQuality?: number;
  /** The smallest longest side tried before giving up on fitting. @default 64 */
  minSide?: number;
}

interface Decoded {
  pixels: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

function textsOf(png: Buffer): Record<string, string> {
  try {
    return readPngText(png);
  } catch {
    return {};
  }
}

async function encodeLossy(
  image: Decoded,
  size: { width: number; height: number },
  format: 'jpeg' | 'webp',
  quality: number,
  parameters?: string,
) {
  let pipeline = sharp(image.pixels, {
    raw: { width: image.width, height: image.height, channels: image.channels },
  });
  if (size.width !== image.width || size.height !== image.height) {
    pipeline = pipeline.resize({ width: size.width, height: size.height, fit: 'fill', kernel: 'lanczos3' });
  }
  pipeline = pipeline.flatten({ background: '#ffffff' });
  if (format === 'jpeg') {
    const jpeg = await pipeline.jpeg({ quality, mozjpeg: true }).toBuffer();
    return parameters ? jpegWithExif(jpeg, userCommentExif(parameters)) : jpeg;
  }
  // Any Exif makes sharp write the extended (VP8X) WebP container; ours then replaces it.
  const webp = await (parameters ? pipeline.withExif({ IFD0: { Software: 'Atelier' } }) : pipeline)
    .webp({ quality })
    .toBuffer();
  return parameters ? webpWithExif(webp, userCommentExif(parameters)) : webp;
}

export async function fitUploadLimit(
  png: Buffer,
  maxBytes: number,
  options: FitOptions = {},
): Promise<FittedImage> {
  if (png.length <= maxBytes) return { data: png, format: 'png', scaled: false };

  const texts = textsOf(png);
  const recompressed = insertAfterHeader(
    await sharp(png).png({ compressionLevel: 9, adaptiveFiltering: true }).toBuffer(),
    Object.entries(texts).map(([keyword, text]) => textChunk(keyword, text)),
  );
  if (recompressed.length <= maxBytes) return { data: recompressed, format: 'png', scaled: false };

  const format = options.lossyFormat ?? 'jpeg';
  const parameters = texts[PARAMETERS_KEYWORD];
  const { data: pixels, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  const image: Decoded = { pixels, width: info.width, height: info.height, channels: info.channels };
  const fullSize = { width: image.width, height: image.height };

  let smallest: FittedImage = { data: recompressed, format: 'png', scaled: false };
  const consider = (candidate: FittedImage) => {
    if (candidate.data.length < smallest.data.length) smallest = candidate;
    return candidate.data.length <= maxBytes;
  };

  for (const quality of options.qualities ?? [92, 85, 75]) {
    const data = await encodeLossy(image, fullSize, format, quality, parameters);
    if (consider({ data, format, scaled: false })) return { data, format, scaled: false };
  }

  // Bytes grow roughly with pixel count, so scale each side by √(cap / size), with a margin.
  const minSide = options.minSide ?? 64;
  const quality = options.scaledQuality ?? 85;
  let scale = 1;
  for (let attempt = 0; attempt < 16; attempt++) {
    const ratio = Math.sqrt(maxBytes / smallest.data.length) * 0.95;
    scale *= Math.min(0.9, Math.max(0.3, ratio));
    const longest = Math.max(image.width, image.height) * scale;
    if (longest < minSide) scale = minSide / Math.max(image.width, image.height);
    const size = {
      width: Math.max(1, Math.round(image.width * scale)),
      height: Math.max(1, Math.round(image.height * scale)),
    };
    const data = await encodeLossy(image, size, format, quality, parameters);
    if (consider({ data, format, scaled: true })) return { data, format, scaled: true };
    if (longest < minSide) break;
  }
  return smallest;
}
