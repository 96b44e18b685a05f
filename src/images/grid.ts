/**
 * One composite image for a job's results, so a chat message shows them at a glance:
 * 4 → 2×2; 2 and 3 → a row, or a column when that makes the grid closer to square (two 16:9
 * images stack, two portraits sit side by side); any other count → the squarest grid.
 * Pure TypeScript over RGB bytes: no encoder round-trip, synchronous, exact.
 */
import { PipelineError } from '../errors.js';
import type { RawImage } from '../pipeline/types.js';
import { CHANNELS, checkRawImage } from './raw.js';

export interface GridLayout {
  columns: number;
  rows: number;
}

export interface GridOptions {
  /** Pixels between cells (and none around the edge). @default 0 */
  gutter?: number;
  /** Colour of the gutter and of cells left empty. @default [0, 0, 0] */
  background?: readonly [number, number, number];
}

/** How far a width:height ratio is from square, symmetric for wide and tall. */
const squareness = (width: number, height: number) => Math.abs(Math.log(width / height));

export function gridLayout(count: number, cellWidth: number, cellHeight: number): GridLayout {
  if (count <= 1) return { columns: 1, rows: 1 };
  if (count === 4) return { columns: 2, rows: 2 };
  if (count <= 3) {
    const row = squareness(cellWidth * count, cellHeight);
    const column = squareness(cellWidth, cellHeight * count);
    // A tie (square images) goes to the row: it reads left to right, like the image numbers.
    return column < row ? { columns: 1, rows: count } : { columns: count, rows: 1 };
  }
  const columns = Math.ceil(Math.sqrt(count));
  return { columns, rows: Math.ceil(count / columns) };
}

export function makeGrid(images: RawImage[], options: GridOptions = {}): RawImage {
  if (images.length === 0) throw new PipelineError('makeGrid needs at least one image');
  for (const image of images) checkRawImage(image);
  const gutter = Math.max(0, Math.floor(options.gutter ?? 0));
  const background = options.background ?? [0, 0, 0];
  // Cells fit the largest image; a smaller one (never the case within one job) is centred.
  const cellWidth = Math.max(...images.map((image) => image.width));
  const cellHeight = Math.max(...images.map((image) => image.height));
  const { columns, rows } = gridLayout(images.length, cellWidth, cellHeight);
  const width = columns * cellWidth + (columns - 1) * gutter;
  const height = rows * cellHeight + (rows - 1) * gutter;
  const data = new Uint8Array(width * height * CHANNELS);
  if (background.some((value) => value !== 0)) {
    for (let i = 0; i < data.length; i += CHANNELS) data.set(background, i);
  }
  images.forEach((image, index) => {
    const left = (index % columns) * (cellWidth + gutter) + Math.floor((cellWidth - image.width) / 2);
    const top =
      Math.floor(index / columns) * (cellHeight + gutter) + Math.floor((cellHeight - image.height) / 2);
    const rowBytes = image.width * CHANNELS;
    for (let y = 0; y < image.height; y++) {
      const source = image.data.subarray(y * rowBytes, (y + 1) * rowBytes);
      data.set(source, ((top + y) * width + left) * CHANNELS);
    }
  });
  return { width, height, data };
}
