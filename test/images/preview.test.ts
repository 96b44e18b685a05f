import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePreview, previewMimeType } from '../../src/images/index.js';
import { noiseImage, patternImage } from './fixtures.js';

describe('encodePreview()', () => {
  it('makes a small WebP that fits in 256 px, keeping the aspect', async () => {
    const preview = await encodePreview(noiseImage(1344, 768));
    const metadata = await sharp(preview).metadata();
    expect(metadata.format).toBe('webp');
    expect(previewMimeType(preview)).toBe('image/webp');
    expect({ width: metadata.width, height: metadata.height }).toEqual({ width: 256, height: 146 });
    expect(preview.length).toBeLessThan(60_000);
  });

  it('keeps a latent-sized preview at its own size', async () => {
    const metadata = await sharp(await encodePreview(patternImage(128, 128))).metadata();
    expect({ width: metadata.width, height: metadata.height }).toEqual({ width: 128, height: 128 });
  });

  it('writes JPEG when asked, at the requested size', async () => {
    const preview = await encodePreview(patternImage(200, 100), { format: 'jpeg', maxSide: 64, quality: 50 });
    const metadata = await sharp(preview).metadata();
    expect(metadata.format).toBe('jpeg');
    expect(previewMimeType(preview)).toBe('image/jpeg');
    expect({ width: metadata.width, height: metadata.height }).toEqual({ width: 64, height: 32 });
  });
});
