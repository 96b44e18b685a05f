/** Helpers for RawImage (8-bit RGB, HWC) and sharp's raw input. */
import sharp, { type Sharp } from 'sharp';
import { PipelineError } from '../errors.js';
import type { RawImage } from '../pipeline/types.js';

export const CHANNELS = 3;

/** A RawImage whose buffer does not match its size is a bug upstream; say so before sharp does. */
export function checkRawImage(image: RawImage): void {
  const expected = image.width * image.height * CHANNELS;
  if (
    !Number.isInteger(image.width) ||
    !Number.isInteger(image.height) ||
    image.width < 1 ||
    image.height < 1
  ) {
    throw new PipelineError(`image has an invalid size ${image.width}×${image.height}`);
  }
  if (image.data.length !== expected) {
    throw new PipelineError(
      `image data is ${image.data.length} bytes; ${image.width}×${image.height} RGB needs ${expected}`,
    );
  }
}

export function sharpFromRaw(image: RawImage): Sharp {
  checkRawImage(image);
  const bytes = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  return sharp(bytes, { raw: { width: image.width, height: image.height, channels: CHANNELS } });
}
