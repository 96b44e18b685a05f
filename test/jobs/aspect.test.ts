import { describe, expect, it } from 'vitest';
import { ASPECT_RATIOS, parseAspect, sizeForAspect } from '../../src/jobs/aspect.js';

describe('aspect ratios', () => {
  it('offers the eight documented ratios', () => {
    expect(ASPECT_RATIOS).toEqual(['1:1', '16:9', '9:16', '4:3', '3:4', '3:2', '2:3', '21:9']);
  });

  it('maps 1:1 to 1024×1024', () => {
    expect(sizeForAspect('1:1')).toEqual({ width: 1024, height: 1024 });
  });

  it.each(ASPECT_RATIOS)('%s is near one megapixel, multiples of 64, close to its ratio', (aspect) => {
    const { width, height } = sizeForAspect(aspect);
    const [w, h] = aspect.split(':').map(Number) as [number, number];
    expect(width % 64).toBe(0);
    expect(height % 64).toBe(0);
    expect(Math.abs(width * height - 2 ** 20) / 2 ** 20).toBeLessThan(0.07);
    expect(Math.abs(Math.log(width / height / (w / h)))).toBeLessThan(0.04);
  });

  it('mirrors portrait and landscape sizes', () => {
    expect(sizeForAspect('9:16')).toEqual({ width: 768, height: 1344 });
    expect(sizeForAspect('16:9')).toEqual({ width: 1344, height: 768 });
    expect(sizeForAspect('2:3')).toEqual({ width: 832, height: 1216 });
  });

  it('reads what users type', () => {
    expect(parseAspect('16:9')).toBe('16:9');
    expect(parseAspect(' 16 x 9 ')).toBe('16:9');
    expect(parseAspect('16×9')).toBe('16:9');
    expect(parseAspect('3/2')).toBe('3:2');
    expect(parseAspect('5:4')).toBeUndefined();
    expect(parseAspect('wide')).toBeUndefined();
  });
});

describe('sizes for smaller models', () => {
  it.each(ASPECT_RATIOS)('%s keeps its shape at a quarter of the size, sides multiples of 16', (aspect) => {
    const full = sizeForAspect(aspect);
    const small = sizeForAspect(aspect, 256);
    expect(small.width % 16).toBe(0);
    expect(small.height % 16).toBe(0);
    expect(Math.abs(small.width / small.height - full.width / full.height)).toBeLessThan(0.15);
    expect(small.width * small.height).toBeLessThan((full.width * full.height) / 10);
  });
});
