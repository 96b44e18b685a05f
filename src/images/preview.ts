/**
 * Small previews for progress messages: the latent preview of a running job, a few KB each,
 * so editing a chat message every few steps stays cheap for the platform and the user.
 */
import sharp from 'sharp';
import type { RawImage } from '../pipeline/types.js';
import { sharpFromRaw } from './raw.js';

export interface PreviewOptions {
  /** Longest side in pixels; larger images shrink to fit, smaller ones keep their size. @default 256 */
  maxSide?: number;
  /** WebP is about a third smaller; JPEG is used when this sharp build cannot write WebP. @default 'webp' */
  format?: 'webp' | 'jpeg';
  /** @default 60 */
  quality?: number;
}

export async function encodePreview(image: RawImage, options: PreviewOptions = {}): Promise<Uint8Array> {
  const maxSide = options.maxSide ?? 256;
  const quality = options.quality ?? 60;
  const format = options.format === 'jpeg' || !sharp.format.webp?.output.buffer ? 'jpeg' : 'webp';
  const resized = sharpFromRaw(image).resize({
    width: maxSide,
    height: maxSide,
    fit: 'inside',
    withoutEnlargement: true,
  });
  return format === 'webp'
    ? resized.webp({ quality, effort: 2 }).toBuffer()
    : resized.jpeg({ quality, mozjpeg: true }).toBuffer();
}

/** The MIME type of what encodePreview returned, for uploads. */
export function previewMimeType(preview: Uint8Array): 'image/webp' | 'image/jpeg' {
  return preview[0] === 0xff && preview[1] === 0xd8 ? 'image/jpeg' : 'image/webp';
}
