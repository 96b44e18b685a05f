/**
 * Test scenes drawn with sharp from SVG (anti-aliased by librsvg), independently of the drawn
 * world's own code: the evaluator's analysis must recover what was drawn here.
 */
import sharp from 'sharp';
import { DEFAULT_PALETTE } from '../../bench/demo-eval/colour.js';
import type { RawImage } from '../../src/pipeline/types.js';

export type Background =
  | { kind: 'plain'; colour: string }
  | { kind: 'horizon'; sky: string; ground: string; y?: number }
  | { kind: 'stripes'; colours: [string, string]; orientation: 'horizontal' | 'vertical'; period?: number };

export interface DrawnObject {
  shape: string;
  colour: string;
  /** Normalised centre. */
  x: number;
  y: number;
  /** Half-extent as a share of the side (world.json: small 0.11, medium 0.16, large 0.24). */
  r: number;
}

export interface SceneSpec {
  size?: number;
  background: Background;
  objects: DrawnObject[];
}

export function hex(name: string): string {
  const colour = DEFAULT_PALETTE.find((c) => c.name === name);
  if (!colour) throw new Error(`no colour ${name}`);
  return `#${colour.rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

const pts = (points: [number, number][]) =>
  points.map(([x, y]) => `${x.toFixed(2)},${y.toFixed(2)}`).join(' ');

function shapeSvg(o: DrawnObject, size: number): string {
  const cx = o.x * size;
  const cy = o.y * size;
  const r = o.r * size;
  const fill = hex(o.colour);
  switch (o.shape) {
    case 'circle':
      return `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${fill}"/>`;
    case 'square':
      return `<rect x="${cx - 0.86 * r}" y="${cy - 0.86 * r}" width="${1.72 * r}" height="${1.72 * r}" fill="${fill}"/>`;
    case 'triangle':
      return `<polygon points="${pts([
        [cx, cy - r],
        [cx + 0.866 * r, cy + 0.5 * r],
        [cx - 0.866 * r, cy + 0.5 * r],
      ])}" fill="${fill}"/>`;
    case 'star':
      return `<polygon points="${pts(
        Array.from({ length: 10 }, (_, i) => {
          const radius = i % 2 === 0 ? r : 0.42 * r;
          const t = -Math.PI / 2 + (Math.PI * i) / 5;
          return [cx + radius * Math.cos(t), cy + radius * Math.sin(t)] as [number, number];
        }),
      )}" fill="${fill}"/>`;
    case 'ring':
      return `<circle cx="${cx}" cy="${cy}" r="${0.72 * r}" fill="none" stroke="${fill}" stroke-width="${0.56 * r}"/>`;
    case 'heart':
      // A classic two-lobed heart of cubic curves (not world.py's outline).
      return `<path transform="translate(${cx} ${cy}) scale(${r})" fill="${fill}" d="M 0 0.95 C -0.1 0.85 -1 0.35 -1 -0.3 C -1 -0.75 -0.6 -0.95 -0.35 -0.92 C -0.15 -0.9 -0.02 -0.75 0 -0.58 C 0.02 -0.75 0.15 -0.9 0.35 -0.92 C 0.6 -0.95 1 -0.75 1 -0.3 C 1 0.35 0.1 0.85 0 0.95 Z"/>`;
    case 'cross': {
      const a = 0.32 * r;
      return `<path fill="${fill}" d="M ${cx - a} ${cy - r} h ${2 * a} v ${r - a} h ${r - a} v ${2 * a} h ${a - r} v ${r - a} h ${-2 * a} v ${a - r} h ${a - r} v ${-2 * a} h ${r - a} Z"/>`;
    }
    default:
      throw new Error(`no SVG for ${o.shape}`);
  }
}

function backgroundSvg(bg: Background, size: number): string {
  if (bg.kind === 'plain') return `<rect width="${size}" height="${size}" fill="${hex(bg.colour)}"/>`;
  if (bg.kind === 'horizon') {
    const y = (bg.y ?? 0.62) * size;
    return `<rect width="${size}" height="${size}" fill="${hex(bg.sky)}"/><rect y="${y}" width="${size}" height="${size - y}" fill="${hex(bg.ground)}"/>`;
  }
  const period = (bg.period ?? 0.125) * size;
  const parts = [`<rect width="${size}" height="${size}" fill="${hex(bg.colours[0])}"/>`];
  for (let at = period / 2; at < size; at += period) {
    parts.push(
      bg.orientation === 'horizontal'
        ? `<rect y="${at}" width="${size}" height="${period / 2}" fill="${hex(bg.colours[1])}"/>`
        : `<rect x="${at}" width="${period / 2}" height="${size}" fill="${hex(bg.colours[1])}"/>`,
    );
  }
  return parts.join('');
}

export function sceneSvg(spec: SceneSpec): string {
  const size = spec.size ?? 256;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">${backgroundSvg(spec.background, size)}${spec.objects.map((o) => shapeSvg(o, size)).join('')}</svg>`;
}

export interface Degrade {
  /** Gaussian blur σ in pixels (a small VAE decoder's softness). */
  blur?: number;
  /** Uniform noise amplitude per channel. */
  noise?: number;
  seed?: number;
}

export async function renderScene(spec: SceneSpec, degrade: Degrade = {}): Promise<RawImage> {
  let image = sharp(Buffer.from(sceneSvg(spec))).removeAlpha();
  if (degrade.blur) image = sharp(await image.png().toBuffer()).blur(degrade.blur);
  const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
  const out = new Uint8Array(data);
  if (degrade.noise) {
    let state = degrade.seed ?? 1;
    for (let i = 0; i < out.length; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      const delta = ((state >>> 16) % (2 * degrade.noise + 1)) - degrade.noise;
      out[i] = Math.max(0, Math.min(255, out[i]! + delta));
    }
  }
  return { width: info.width, height: info.height, data: out };
}
