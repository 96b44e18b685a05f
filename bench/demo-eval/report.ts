/**
 * The demo model's report: accuracy per attribute against the targets, one table row per
 * weight variant, the misses, and a picture grid (PNG via sharp) of 16 captions with their images
 * and the evaluator's verdicts.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import sharp, { type OverlayOptions } from 'sharp';
import type { RawImage } from '../../src/pipeline/types.js';
import { ATTRIBUTES, type Attribute, type Verdicts } from './analyse.js';
import type { SceneResult, VariantRun } from './runner.js';

/** Issue 13's targets: the share of held-out captions whose picture shows it right. */
export const TARGETS: Readonly<Partial<Record<Attribute, number>>> = {
  background: 0.95,
  colour: 0.9,
  position: 0.85,
  shape: 0.75,
  count: 0.7,
};

export interface Tally {
  correct: number;
  /** Captions that name the attribute (the background only when the caption names one, etc.). */
  total: number;
  rate: number;
  target?: number;
  met?: boolean;
}

export function tally(scenes: readonly SceneResult[]): Partial<Record<Attribute, Tally>> {
  const out: Partial<Record<Attribute, Tally>> = {};
  for (const attribute of ATTRIBUTES) {
    const judged = scenes.map((s) => s.verdicts[attribute]).filter((v) => v !== undefined);
    if (judged.length === 0) continue;
    const correct = judged.filter((v) => v.ok).length;
    const rate = correct / judged.length;
    const target = TARGETS[attribute];
    out[attribute] = {
      correct,
      total: judged.length,
      rate,
      ...(target !== undefined ? { target, met: rate >= target } : {}),
    };
  }
  return out;
}

/**
 * Issue 10's check on pictures: W8A8's caption-match scores within 2 points of fp16's (either
 * way), per attribute. Undefined unless both ran.
 */
export function w8a8VersusFp16(scores: ReadonlyMap<string, ReturnType<typeof tally>>) {
  const [fp16, w8a8] = [scores.get('fp16'), scores.get('w8a8')];
  if (!fp16 || !w8a8) return undefined;
  const points = Object.fromEntries(
    Object.entries(fp16).flatMap(([attribute, a]) => {
      const b = w8a8[attribute as keyof typeof w8a8];
      return b ? [[attribute, Math.round(1000 * (b.rate - a.rate)) / 10]] : [];
    }),
  );
  const worst = Math.max(0, ...Object.values(points).map(Math.abs));
  const within = worst <= W8A8_POINTS;
  const each = Object.entries(points).map(([a, d]) => `${a} ${d >= 0 ? '+' : ''}${d.toFixed(1)}`);
  const line = `W8A8 vs fp16: ${each.join(', ')} points; ${within ? 'within' : 'NOT within'} ${W8A8_POINTS} points of fp16 (issue 10)`;
  return { points, largestDifference: worst, within, line };
}

/** How far W8A8 may be from fp16 on any attribute, in points (issue 10, "Quality"). */
const W8A8_POINTS = 2;

const percent = (rate: number) => `${(100 * rate).toFixed(1)} %`;

/** One bench row per variant: accuracy per attribute, time per image, targets met. */
export function summaryRow(label: string, scenes: readonly SceneResult[], msPerImage?: number) {
  const t = tally(scenes);
  const row: Record<string, string | number> = { weights: label, captions: scenes.length };
  for (const attribute of ATTRIBUTES) {
    const a = t[attribute];
    if (a) row[attribute] = `${percent(a.rate)}${a.target !== undefined ? (a.met ? ' ✓' : ' ✗') : ''}`;
  }
  if (msPerImage !== undefined) row['ms/image'] = Math.round(msPerImage);
  const targets = Object.values(t).filter((a) => a.target !== undefined);
  row['targets met'] = `${targets.filter((a) => a.met).length}/${targets.length}`;
  return row;
}

/** The JSON detail of one variant (bench/results/demo-model.json's `details`). */
export function variantDetails(run: VariantRun) {
  return {
    weights: run.variant.label,
    precision: run.variant.precision,
    checkpoint: run.variant.checkpoint ?? '(the only one)',
    model: run.model,
    settings: run.settings,
    captions: run.scenes.length,
    msPerImage: run.msPerImage,
    accuracy: tally(run.scenes),
    misses: run.scenes
      .filter((s) => Object.values(s.verdicts).some((v) => !v.ok))
      .map((s) => ({
        caption: s.caption,
        seed: s.seed,
        wrong: Object.fromEntries(
          Object.entries(s.verdicts)
            .filter(([, v]) => !v.ok)
            .map(([k, v]) => [k, `expected ${v.expected}, found ${v.found}`]),
        ),
        found: s.found,
      })),
  };
}

// ---------------------------------------------------------------------------------------------
// The grid

export interface GridCell {
  image: RawImage;
  caption: string;
  verdicts?: Verdicts;
}

const SHORT: Record<Attribute, string> = {
  background: 'bg',
  colour: 'colour',
  shape: 'shape',
  position: 'place',
  count: 'count',
  relation: 'relation',
};

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Greedy word wrap to `width` characters, at most `lines` lines (the last one ellipsised). */
export function wrap(text: string, width: number, lines: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && (line + ' ' + word).length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  if (out.length > lines) {
    out.length = lines;
    out[lines - 1] = `${out[lines - 1]!.slice(0, width - 1)}…`;
  }
  return out;
}

const CAPTION_HEIGHT = 62;
const GUTTER = 8;

/**
 * Writes a PNG grid: each cell is the picture with its caption below and, when given, the
 * evaluator's verdict per attribute (green ✓, red ✗).
 */
export async function writeGrid(
  path: string,
  cells: readonly GridCell[],
  title: string,
  columns = 4,
): Promise<void> {
  if (cells.length === 0) throw new Error('writeGrid needs at least one picture');
  const cellWidth = Math.max(...cells.map((c) => c.image.width));
  const imageHeight = Math.max(...cells.map((c) => c.image.height));
  const cellHeight = imageHeight + CAPTION_HEIGHT;
  const rows = Math.ceil(cells.length / columns);
  const top = 30;
  const width = columns * cellWidth + (columns + 1) * GUTTER;
  const height = top + rows * cellHeight + (rows + 1) * GUTTER;
  const chars = Math.floor(cellWidth / 6.6);
  const text: string[] = [
    `<text x="${GUTTER}" y="21" font-family="DejaVu Sans, sans-serif" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  const composites: OverlayOptions[] = [];
  cells.forEach((cell, i) => {
    const x = GUTTER + (i % columns) * (cellWidth + GUTTER);
    const y = top + GUTTER + Math.floor(i / columns) * (cellHeight + GUTTER);
    composites.push({
      input: Buffer.from(cell.image.data),
      raw: { width: cell.image.width, height: cell.image.height, channels: 3 },
      left: x,
      top: y,
    });
    wrap(cell.caption, chars, 3).forEach((line, k) => {
      text.push(
        `<text x="${x}" y="${y + imageHeight + 14 + 14 * k}" font-family="DejaVu Sans, sans-serif" font-size="12">${escapeXml(line)}</text>`,
      );
    });
    if (cell.verdicts) {
      const marks = Object.entries(cell.verdicts).map(
        ([k, v]) =>
          `<tspan fill="${v.ok ? '#1a7f37' : '#cf222e'}">${SHORT[k as Attribute]} ${v.ok ? '✓' : '✗'}</tspan>`,
      );
      text.push(
        `<text x="${x}" y="${y + imageHeight + 14 + 14 * 3}" font-family="DejaVu Sans, sans-serif" font-size="11">${marks.join('  ')}</text>`,
      );
    }
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${text.join('')}</svg>`;
  composites.push({ input: Buffer.from(svg), left: 0, top: 0 });
  mkdirSync(dirname(path), { recursive: true });
  await sharp({ create: { width, height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(composites)
    .png({ compressionLevel: 9 })
    .toFile(path);
}
