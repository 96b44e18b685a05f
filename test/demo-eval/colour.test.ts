import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PALETTE,
  deltaE2000,
  labToRgb,
  makePalette,
  nameColour,
  rgbToLab,
} from '../../bench/demo-eval/colour.js';

describe('CIELAB and CIEDE2000', () => {
  it('converts sRGB to CIELAB (D65) and back', () => {
    const white = rgbToLab(255, 255, 255);
    expect(white[0]).toBeCloseTo(100, 2);
    expect(Math.abs(white[1]) + Math.abs(white[2])).toBeLessThan(0.01);
    const red = rgbToLab(255, 0, 0);
    expect(red[0]).toBeCloseTo(53.24, 1);
    expect(red[1]).toBeCloseTo(80.09, 1);
    expect(red[2]).toBeCloseTo(67.2, 1);
    for (const { rgb } of DEFAULT_PALETTE) expect(labToRgb(...rgbToLab(...rgb))).toEqual([...rgb]);
  });

  // Sharma, Wu & Dalal (2005), Table 1: pairs 1, 7, 17, 25 and 34.
  it.each([
    [[50, 2.6772, -79.7751], [50, 0, -82.7485], 2.0425],
    [[50, 0, 0], [50, -1, 2], 2.3669],
    [[50, 2.5, 0], [73, 25, -18], 27.1492],
    [[60.2574, -34.0099, 36.2677], [60.4626, -34.1751, 39.4387], 1.2644],
    [[2.0776, 0.0795, -1.135], [0.9033, -0.0636, -0.5514], 0.9082],
  ] as const)('ΔE00(%j, %j) = %d', (a, b, expected) => {
    expect(deltaE2000(a, b)).toBeCloseTo(expected, 4);
    expect(deltaE2000(b, a)).toBeCloseTo(expected, 4);
  });

  it('names a colour by the nearest in the palette, also when shifted', () => {
    const palette = makePalette(DEFAULT_PALETTE);
    for (const { name, rgb } of DEFAULT_PALETTE) {
      expect(nameColour(rgbToLab(...rgb), palette).name).toBe(name);
    }
    expect(nameColour(rgbToLab(200, 50, 45), palette)).toMatchObject({
      name: 'red',
      runnerUp: { name: 'brown' },
    });
    expect(nameColour(rgbToLab(30, 40, 110), palette).name).toBe('dark blue');
    expect(nameColour(rgbToLab(140, 135, 130), palette).name).toBe('grey');
  });
});
