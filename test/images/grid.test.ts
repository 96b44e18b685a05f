import { describe, expect, it } from 'vitest';
import { gridLayout, makeGrid } from '../../src/images/index.js';
import type { RawImage } from '../../src/pipeline/types.js';
import { patternImage, pixel } from './fixtures.js';

const images = (count: number, width: number, height: number): RawImage[] =>
  Array.from({ length: count }, (_, index) => patternImage(width, height, index + 1));

describe('makeGrid() geometry', () => {
  it.each([
    // count, width, height → grid size
    [1, 64, 64, 64, 64],
    [2, 64, 64, 128, 64], // squares side by side
    [2, 48, 80, 96, 80], // portraits side by side
    [2, 112, 64, 112, 128], // 16:9-ish landscapes stack
    [3, 64, 64, 192, 64], // squares in a row
    [3, 48, 80, 144, 80], // portraits in a row
    [3, 96, 64, 96, 192], // 3:2 landscapes in a column
    [4, 64, 64, 128, 128], // 2×2
    [4, 112, 48, 224, 96], // 2×2 even for wide images
    [4, 48, 112, 96, 224],
  ])('%i images of %i×%i make a %i×%i grid', (count, width, height, gridWidth, gridHeight) => {
    const grid = makeGrid(images(count, width, height));
    expect({ width: grid.width, height: grid.height }).toEqual({ width: gridWidth, height: gridHeight });
    expect(grid.data.length).toBe(gridWidth * gridHeight * 3);
  });

  it('places image i in reading order, pixel for pixel', () => {
    const grid = makeGrid(images(4, 10, 6));
    // Blue holds the image number; red/green the position inside the image.
    expect(pixel(grid, 0, 0)).toEqual([0, 0, 1]);
    expect(pixel(grid, 10, 0)).toEqual([0, 0, 2]);
    expect(pixel(grid, 3, 6 + 5)).toEqual([3, 5, 3]);
    expect(pixel(grid, 19, 11)).toEqual([9, 5, 4]);
  });

  it('puts gutters between cells only', () => {
    const grid = makeGrid(images(4, 10, 6), { gutter: 2, background: [255, 255, 255] });
    expect({ width: grid.width, height: grid.height }).toEqual({ width: 22, height: 14 });
    expect(pixel(grid, 10, 0)).toEqual([255, 255, 255]);
    expect(pixel(grid, 12, 0)).toEqual([0, 0, 2]);
    expect(pixel(grid, 0, 8)).toEqual([0, 0, 3]);
  });

  it('copies a single image unchanged', () => {
    const image = patternImage(7, 5, 9);
    const grid = makeGrid([image]);
    expect(grid).toEqual(image);
    expect(grid.data).not.toBe(image.data);
  });

  it('lays out counts above four as the squarest grid', () => {
    expect(gridLayout(6, 64, 64)).toEqual({ columns: 3, rows: 2 });
    expect(gridLayout(9, 64, 64)).toEqual({ columns: 3, rows: 3 });
  });

  it('refuses an empty list', () => {
    expect(() => makeGrid([])).toThrow('makeGrid needs at least one image');
  });
});
