/**
 * The shape class of one segmented object from contour features, all invariant to position, scale
 * and rotation:
 *   - holes: the share of the filled outline that is not the object (a ring's hole);
 *   - solidity: area / convex hull area (a star's or a cross's notches; a heart's cleft);
 *   - compactness: 4π · area / perimeter² (1 for a disc; the perimeter from the traced contour's
 *     chain code, corrected as Vossepoel & Smeulders do);
 *   - radial harmonics: the outline's distance from the centroid against the angle, as a Fourier
 *     series; |c_k| is how much k-fold symmetry it has (a square's 4, a triangle's 3, a star's 5;
 *     a heart's 1 and 2; a disc none);
 *   - corners: convex vertices of a Douglas–Peucker polygon that turn by 60° or more.
 * A shape is named by its nearest prototype in that feature space: prototypes are the same
 * features of the drawn world's shapes rasterised here from world.py's own outlines, at its sizes.
 */
import type { Component } from './segment.js';

export interface ShapeFeatures {
  area: number;
  /** Area with holes filled. */
  filledArea: number;
  holeRatio: number;
  solidity: number;
  compactness: number;
  /** |c_1| … |c_6| of the radial profile normalised by its mean. */
  harmonics: number[];
  /** Largest over smallest centroid–outline distance. */
  radialRatio: number;
  corners: number;
}

/** A binary mask of one object, cropped: 1 inside. */
export interface ShapeMask {
  width: number;
  height: number;
  mask: Uint8Array;
}

/** A component's pixels as a cropped mask with one pixel of empty margin. */
export function componentMask(component: Component, imageWidth: number): ShapeMask {
  const width = component.x1 - component.x0 + 3;
  const height = component.y1 - component.y0 + 3;
  const mask = new Uint8Array(width * height);
  for (const p of component.pixels) {
    const x = p % imageWidth;
    const y = (p - x) / imageWidth;
    mask[(y - component.y0 + 1) * width + (x - component.x0 + 1)] = 1;
  }
  return { width, height, mask };
}

/** Fills the holes of a mask whose border row and column are empty; returns the filled mask. */
function fillHoles({ width, height, mask }: ShapeMask): Uint8Array {
  const outside = new Uint8Array(mask.length);
  const stack = [0];
  outside[0] = 1;
  while (stack.length > 0) {
    const p = stack.pop()!;
    const x = p % width;
    const y = (p - x) / width;
    const next = [
      x > 0 ? p - 1 : -1,
      x < width - 1 ? p + 1 : -1,
      y > 0 ? p - width : -1,
      y < height - 1 ? p + width : -1,
    ];
    for (const q of next) {
      if (q >= 0 && !mask[q] && !outside[q]) {
        outside[q] = 1;
        stack.push(q);
      }
    }
  }
  const filled = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) filled[i] = outside[i] ? 0 : 1;
  return filled;
}

// Clockwise in image coordinates (y down): E, SE, S, SW, W, NW, N, NE.
const DX = [1, 1, 0, -1, -1, -1, 0, 1];
const DY = [0, 1, 1, 1, 0, -1, -1, -1];

/** The outer contour (Moore-neighbour tracing), as pixel coordinates and chain codes. */
function traceContour(
  filled: Uint8Array,
  width: number,
  height: number,
): { points: [number, number][]; codes: number[] } {
  let start = -1;
  for (let i = 0; i < filled.length; i++) {
    if (filled[i]) {
      start = i;
      break;
    }
  }
  if (start < 0) return { points: [], codes: [] };
  const at = (x: number, y: number) =>
    x >= 0 && y >= 0 && x < width && y < height && filled[y * width + x] === 1;
  const sx = start % width;
  const sy = (start - sx) / width;
  const points: [number, number][] = [[sx, sy]];
  const codes: number[] = [];
  let x = sx;
  let y = sy;
  // The start is the first pixel in raster order: its west, north-west, north and north-east are
  // empty, so the search begins pointing north-west-ish.
  let dir = 7;
  const limit = 4 * filled.length + 8;
  let first: number | undefined;
  for (let steps = 0; steps < limit; steps++) {
    let found = -1;
    const from = (dir + 6) % 8; // back up 90° counter-clockwise, then sweep clockwise
    for (let k = 0; k < 8; k++) {
      const d = (from + k) % 8;
      if (at(x + DX[d]!, y + DY[d]!)) {
        found = d;
        break;
      }
    }
    if (found < 0) break; // a single pixel
    if (x === sx && y === sy && first !== undefined && found === first) break;
    if (first === undefined) first = found;
    x += DX[found]!;
    y += DY[found]!;
    dir = found;
    codes.push(found);
    points.push([x, y]);
  }
  if (points.length > 1) points.pop(); // the start again
  return { points, codes };
}

function convexHull(points: [number, number][]): [number, number][] {
  const pts = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return pts;
  const cross = (o: [number, number], a: [number, number], b: [number, number]) =>
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: [number, number][] = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2]!, lower[lower.length - 1]!, p) <= 0)
      lower.pop();
    lower.push(p);
  }
  const upper: [number, number][] = [];
  for (let i = pts.length - 1; i >= 0; i--) {
    const p = pts[i]!;
    while (upper.length >= 2 && cross(upper[upper.length - 2]!, upper[upper.length - 1]!, p) <= 0)
      upper.pop();
    upper.push(p);
  }
  return [...lower.slice(0, -1), ...upper.slice(0, -1)];
}

function polygonArea(poly: [number, number][]): number {
  let s = 0;
  for (let i = 0; i < poly.length; i++) {
    const [x0, y0] = poly[i]!;
    const [x1, y1] = poly[(i + 1) % poly.length]!;
    s += x0 * y1 - x1 * y0;
  }
  return Math.abs(s) / 2;
}

/** Douglas–Peucker on a closed contour; returns indices of the kept points. */
function simplifyClosed(points: [number, number][], epsilon: number): number[] {
  const n = points.length;
  if (n < 4) return points.map((_, i) => i);
  // Split at the point farthest from the first, simplify both halves as open polylines.
  const [ax, ay] = points[0]!;
  let far = 0;
  let farD = -1;
  points.forEach(([x, y], i) => {
    const d = (x - ax) ** 2 + (y - ay) ** 2;
    if (d > farD) {
      farD = d;
      far = i;
    }
  });
  const keep = new Uint8Array(n);
  keep[0] = 1;
  keep[far] = 1;
  const recurse = (i: number, j: number) => {
    // points from i to j going forward (j may wrap to n ≡ 0)
    const [x0, y0] = points[i % n]!;
    const [x1, y1] = points[j % n]!;
    const len = Math.hypot(x1 - x0, y1 - y0) || 1;
    let best = -1;
    let bestD = epsilon;
    for (let k = i + 1; k < j; k++) {
      const [x, y] = points[k % n]!;
      const d = Math.abs((x1 - x0) * (y0 - y) - (x0 - x) * (y1 - y0)) / len;
      if (d > bestD) {
        bestD = d;
        best = k;
      }
    }
    if (best >= 0) {
      keep[best % n] = 1;
      recurse(i, best);
      recurse(best, j);
    }
  };
  recurse(0, far);
  recurse(far, n);
  const out: number[] = [];
  keep.forEach((v, i) => {
    if (v) out.push(i);
  });
  return out;
}

const HARMONICS = 6;
const ANGLE_BINS = 72;

/** Contour features of a mask (the mask's border must be empty: see componentMask). */
export function shapeFeatures(shape: ShapeMask): ShapeFeatures {
  const { width, height, mask } = shape;
  const area = mask.reduce((s, v) => s + v, 0);
  const filled = fillHoles(shape);
  const filledArea = filled.reduce((s, v) => s + v, 0);
  const { points, codes } = traceContour(filled, width, height);
  // Perimeter from chain codes (Vossepoel & Smeulders 1982).
  let even = 0;
  let odd = 0;
  let turns = 0;
  codes.forEach((c, i) => {
    if (c % 2 === 0) even++;
    else odd++;
    if (c !== codes[(i + 1) % codes.length]) turns++;
  });
  const perimeter = Math.max(1, 0.98 * even + 1.406 * odd - 0.091 * turns);
  const compactness = Math.min(1.2, (4 * Math.PI * filledArea) / perimeter ** 2);

  // Hull of the pixel squares' corners: a full pixel-aligned square has solidity 1.
  const corners4: [number, number][] = [];
  for (const [x, y] of points) corners4.push([x, y], [x + 1, y], [x, y + 1], [x + 1, y + 1]);
  const hull = convexHull(corners4);
  const solidity = Math.min(1, filledArea / Math.max(1, polygonArea(hull)));

  // Radial profile about the centroid of the filled shape.
  let cx = 0;
  let cy = 0;
  for (let i = 0; i < filled.length; i++) {
    if (filled[i]) {
      cx += (i % width) + 0.5;
      cy += Math.floor(i / width) + 0.5;
    }
  }
  cx /= Math.max(1, filledArea);
  cy /= Math.max(1, filledArea);
  const radius = new Float64Array(ANGLE_BINS).fill(-1);
  for (const [x, y] of points) {
    // The outer edge of the boundary pixel, seen from the centroid.
    const dx = x + 0.5 - cx;
    const dy = y + 0.5 - cy;
    const r = Math.hypot(dx, dy) + 0.5;
    const bin = Math.floor(((Math.atan2(dy, dx) + Math.PI) / (2 * Math.PI)) * ANGLE_BINS) % ANGLE_BINS;
    radius[bin] = Math.max(radius[bin]!, r);
  }
  // Fill bins that no contour point fell in (small shapes) from their neighbours.
  for (let i = 0; i < ANGLE_BINS; i++) {
    if (radius[i]! >= 0) continue;
    let l = 1;
    while (l < ANGLE_BINS && radius[(i - l + ANGLE_BINS) % ANGLE_BINS]! < 0) l++;
    let r = 1;
    while (r < ANGLE_BINS && radius[(i + r) % ANGLE_BINS]! < 0) r++;
    const a = radius[(i - l + ANGLE_BINS) % ANGLE_BINS]!;
    const b = radius[(i + r) % ANGLE_BINS]!;
    radius[i] = a >= 0 && b >= 0 ? a + ((b - a) * l) / (l + r) : Math.max(a, b, 0);
  }
  const mean = radius.reduce((s, v) => s + v, 0) / ANGLE_BINS || 1;
  const harmonics: number[] = [];
  for (let k = 1; k <= HARMONICS; k++) {
    let re = 0;
    let im = 0;
    for (let i = 0; i < ANGLE_BINS; i++) {
      const t = (2 * Math.PI * k * i) / ANGLE_BINS;
      re += (radius[i]! / mean) * Math.cos(t);
      im -= (radius[i]! / mean) * Math.sin(t);
    }
    harmonics.push((2 / ANGLE_BINS) * Math.hypot(re, im));
  }
  const radialRatio = Math.max(...radius) / Math.max(0.5, Math.min(...radius));

  // Corners: convex vertices of the simplified outline turning by 60° or more.
  const size = Math.sqrt(filledArea);
  const kept = simplifyClosed(points, Math.max(1, 0.06 * size)).map((i) => points[i]!);
  let cornerCount = 0;
  if (kept.length >= 3) {
    const orientation = Math.sign(
      kept.reduce((s, [x0, y0], i) => {
        const [x1, y1] = kept[(i + 1) % kept.length]!;
        return s + (x0 * y1 - x1 * y0);
      }, 0),
    );
    kept.forEach((p, i) => {
      const a = kept[(i - 1 + kept.length) % kept.length]!;
      const b = kept[(i + 1) % kept.length]!;
      const ux = p[0] - a[0];
      const uy = p[1] - a[1];
      const vx = b[0] - p[0];
      const vy = b[1] - p[1];
      const turn = Math.atan2(ux * vy - uy * vx, ux * vx + uy * vy);
      if (Math.sign(turn) === orientation && Math.abs(turn) >= Math.PI / 3) cornerCount++;
    });
  }
  return {
    area,
    filledArea,
    holeRatio: (filledArea - area) / Math.max(1, filledArea),
    solidity,
    compactness,
    harmonics,
    radialRatio,
    corners: cornerCount,
  };
}

/** The feature vector the classifier compares, with each feature's weight folded in. */
function vector(f: ShapeFeatures): number[] {
  return [
    4 * f.holeRatio,
    3 * f.solidity,
    2 * f.compactness,
    ...f.harmonics.map((h) => 5 * h),
    0.6 * Math.log(f.radialRatio),
    0.08 * Math.min(f.corners, 8),
  ];
}

// ---------------------------------------------------------------------------------------------
// Prototypes: the drawn world's own shapes. These signed distance functions are ports of
// tools/train-demo/world.py's (Inigo Quilez's formulas): p in units of the object's half-extent,
// y down, negative inside. world.py covers a pixel by clip(0.5 − distance, 0, 1), so a pixel whose
// centre is inside is at least half covered: the mask below is what segmentation finds.

export type Sdf = (px: number, py: number) => number;

function sdBox(px: number, py: number, bx: number, by: number): number {
  const qx = Math.abs(px) - bx;
  const qy = Math.abs(py) - by;
  return Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0);
}

function sdTriangle(px: number, py: number): number {
  const k = Math.sqrt(3);
  const x = Math.abs(px) - 1;
  const y = -py + 0.2887 + 1 / k;
  let x2 = x;
  let y2 = y;
  if (x + k * y > 0) {
    x2 = (x - k * y) / 2;
    y2 = (-k * x - y) / 2;
  }
  x2 -= Math.min(0, Math.max(-2, x2));
  return -Math.hypot(x2, y2) * Math.sign(y2);
}

function sdStar(px: number, py: number, n = 5, inner = 0.45): number {
  const ang = Math.atan2(px, -py);
  const rad = Math.hypot(px, py);
  const seg = (2 * Math.PI) / n;
  const m = (ang + seg / 2) % seg;
  const a = (m < 0 ? m + seg : m) - seg / 2;
  const x = rad * Math.sin(Math.abs(a));
  const y = rad * Math.cos(a);
  const bx = Math.sin(seg / 2) * inner;
  const by = Math.cos(seg / 2) * inner;
  const ex = bx;
  const ey = by - 1;
  const wx = x;
  const wy = y - 1;
  const t = Math.min(1, Math.max(0, (wx * ex + wy * ey) / (ex * ex + ey * ey)));
  const dist = Math.hypot(wx - ex * t, wy - ey * t);
  return ex * wy - ey * wx < 0 ? -dist : dist;
}

function sdHeart(px: number, py: number): number {
  const s = 1.72;
  const x = Math.abs(px) / s;
  const y = -py / s + 0.53;
  if (x + y > 1) return (Math.hypot(x - 0.25, y - 0.75) - Math.SQRT2 / 4) * s;
  const m = 0.5 * Math.max(x + y, 0);
  return Math.sqrt(Math.min(x ** 2 + (y - 1) ** 2, (x - m) ** 2 + (y - m) ** 2)) * Math.sign(x - y) * s;
}

/** Outline of each shape class of the drawn world (world.py's SDF table). */
export const SHAPE_SDF: Readonly<Record<string, Sdf>> = {
  circle: (x, y) => Math.hypot(x, y) - 1,
  square: (x, y) => sdBox(x, y, 0.86, 0.86),
  triangle: sdTriangle,
  star: (x, y) => sdStar(x, y),
  ring: (x, y) => Math.abs(Math.hypot(x, y) - 0.72) - 0.28,
  heart: sdHeart,
  cross: (x, y) => Math.min(sdBox(x, y, 1, 0.32), sdBox(x, y, 0.32, 1)),
};

/**
 * A shape drawn at `halfExtent` pixels as world.py draws it (coverage clip(0.5 − distance, 0, 1)),
 * its centre offset by `phase` pixels, optionally blurred (Gaussian `sigma` pixels: what a small
 * VAE's decoder does to edges), then thresholded at half coverage as segmentation does.
 */
export function rasterise(sdf: Sdf, halfExtent: number, phase = 0, sigma = 0): ShapeMask {
  const margin = 3 + Math.ceil(3 * sigma);
  const side = Math.ceil(2 * halfExtent) + 2 * margin;
  const c = side / 2;
  let cover = new Float32Array(side * side);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const u = (x + 0.5 - c - phase) / halfExtent;
      const v = (y + 0.5 - c - phase / 2) / halfExtent;
      cover[y * side + x] = Math.min(1, Math.max(0, 0.5 - sdf(u, v) * halfExtent));
    }
  }
  if (sigma > 0) {
    const radius = Math.ceil(3 * sigma);
    const kernel = Array.from({ length: 2 * radius + 1 }, (_, i) =>
      Math.exp(-((i - radius) ** 2) / (2 * sigma ** 2)),
    );
    const total = kernel.reduce((s, k) => s + k, 0);
    for (const horizontal of [true, false]) {
      const out = new Float32Array(cover.length);
      for (let y = 0; y < side; y++) {
        for (let x = 0; x < side; x++) {
          let sum = 0;
          for (let i = -radius; i <= radius; i++) {
            const xx = horizontal ? x + i : x;
            const yy = horizontal ? y : y + i;
            if (xx >= 0 && yy >= 0 && xx < side && yy < side)
              sum += kernel[i + radius]! * cover[yy * side + xx]!;
          }
          out[y * side + x] = sum / total;
        }
      }
      cover = out;
    }
  }
  const mask = new Uint8Array(side * side);
  for (let y = 1; y < side - 1; y++) {
    for (let x = 1; x < side - 1; x++) mask[y * side + x] = cover[y * side + x]! >= 0.5 ? 1 : 0;
  }
  return { width: side, height: side, mask };
}

export interface Prototype {
  shape: string;
  features: ShapeFeatures;
  vector: number[];
}

const prototypeCache = new Map<string, Prototype[]>();

/**
 * Half-extents of the prototypes, in pixels of a 256² image: world.json's small, medium and large
 * as they were until the world's objects were enlarged (0.085, 0.13, 0.2 of the side; now 0.11,
 * 0.16, 0.24: 28, 41, 61 px, which these cover: the world's own drawings still score 100 %), and
 * smaller for what a model draws too small.
 */
const PROTOTYPE_SIZES = [14, 22, 33, 51];
/** Blurs of the prototypes (Gaussian σ in pixels): sharp as drawn, and as a small decoder softens. */
const PROTOTYPE_BLURS = [0, 1.5, 3];

/** Prototypes of the given classes (those with a known outline): four sizes, two sub-pixel phases, three blurs. */
export function prototypes(shapes: readonly string[]): Prototype[] {
  const key = [...shapes].sort().join(',');
  const cached = prototypeCache.get(key);
  if (cached) return cached;
  const out: Prototype[] = [];
  for (const shape of shapes) {
    const sdf = SHAPE_SDF[shape];
    if (!sdf) continue;
    for (const halfExtent of PROTOTYPE_SIZES) {
      for (const phase of [0, 0.5]) {
        for (const sigma of PROTOTYPE_BLURS) {
          const features = shapeFeatures(rasterise(sdf, halfExtent, phase, sigma));
          out.push({ shape, features, vector: vector(features) });
        }
      }
    }
  }
  prototypeCache.set(key, out);
  return out;
}

export interface ShapeGuess {
  shape: string;
  /** Distance to the nearest prototype of that class. */
  distance: number;
  /** The nearest prototype of another class. */
  runnerUp?: { shape: string; distance: number };
}

/** Names a shape by its nearest prototype among `shapes` (classes without an outline are skipped). */
export function classifyShape(features: ShapeFeatures, shapes: readonly string[]): ShapeGuess {
  const v = vector(features);
  const best = new Map<string, number>();
  for (const p of prototypes(shapes)) {
    const d = Math.sqrt(p.vector.reduce((s, x, i) => s + (x - v[i]!) ** 2, 0));
    if (d < (best.get(p.shape) ?? Number.POSITIVE_INFINITY)) best.set(p.shape, d);
  }
  const ranked = [...best].sort((a, b) => a[1] - b[1]);
  if (ranked.length === 0) throw new Error(`no outline known for any of ${shapes.join(', ')}`);
  const [first, second] = ranked;
  return {
    shape: first![0],
    distance: first![1],
    ...(second ? { runnerUp: { shape: second[0], distance: second[1] } } : {}),
  };
}
