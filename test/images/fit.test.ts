import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng, fitUploadLimit, readImageParameters, readPngText } from '../../src/images/index.js';
import { noiseImage, patternImage } from './fixtures.js';

const PARAMETERS =
  '一只猫 in a café\nSteps: 28, Sampler: Euler, CFG scale: 4.5, Seed: 1, Size: 256x256, Model: tiny';

describe('fitUploadLimit()', () => {
  it('returns a PNG that fits untouched', async () => {
    const png = await encodePng(patternImage(64, 64), PARAMETERS);
    const fitted = await fitUploadLimit(png, png.length);
    expect(fitted).toEqual({ data: png, format: 'png', scaled: false });
  });

  it('recompresses losslessly first, keeping the parameters chunk', async () => {
    const png = await encodePng(patternImage(256, 256), PARAMETERS, { compressionLevel: 0 });
    const fitted = await fitUploadLimit(png, png.length - 1);
    expect(fitted.format).toBe('png');
    expect(fitted.scaled).toBe(false);
    expect(fitted.data.length).toBeLessThan(png.length);
    expect(readPngText(fitted.data).parameters).toBe(PARAMETERS);
  });

  it('falls back to JPEG at full size under a small cap, parameters in Exif', async () => {
    const png = await encodePng(noiseImage(256, 256), PARAMETERS);
    const cap = 120_000;
    expect(png.length).toBeGreaterThan(cap);
    const fitted = await fitUploadLimit(png, cap);
    expect(fitted.data.length).toBeLessThanOrEqual(cap);
    expect(fitted.format).toBe('jpeg');
    expect(fitted.scaled).toBe(false);
    const metadata = await sharp(fitted.data).metadata();
    expect({ format: metadata.format, width: metadata.width, height: metadata.height }).toEqual({
      format: 'jpeg',
      width: 256,
      height: 256,
    });
    expect(readImageParameters(fitted.data)).toBe(PARAMETERS);
  });

  it('downscales when quality alone is not enough', async () => {
    const png = await encodePng(noiseImage(256, 256), PARAMETERS);
    const cap = 20_000;
    const fitted = await fitUploadLimit(png, cap);
    expect(fitted.data.length).toBeLessThanOrEqual(cap);
    expect(fitted.scaled).toBe(true);
    const metadata = await sharp(fitted.data).metadata();
    expect(metadata.width).toBeLessThan(256);
    expect(metadata.width).toBe(metadata.height);
    expect(readImageParameters(fitted.data)).toBe(PARAMETERS);
  });

  it('writes WebP when asked, parameters included', async () => {
    const png = await encodePng(noiseImage(256, 256), PARAMETERS);
    const fitted = await fitUploadLimit(png, 60_000, { lossyFormat: 'webp' });
    expect(fitted.format).toBe('webp');
    expect(fitted.data.length).toBeLessThanOrEqual(60_000);
    expect((await sharp(fitted.data).metadata()).format).toBe('webp');
    expect(readImageParameters(fitted.data)).toBe(PARAMETERS);
  });

  it('never fails: an impossible cap returns the smallest file it could make', async () => {
    const png = await encodePng(noiseImage(256, 256), PARAMETERS);
    const fitted = await fitUploadLimit(png, 100);
    expect(fitted.scaled).toBe(true);
    expect(fitted.data.length).toBeLessThan(10_000);
    expect((await sharp(fitted.data).metadata()).width).toBe(64);
  });
});
