/**
 * Separating drawn objects from their background, as pure functions on 8-bit RGB buffers:
 *
 * 1. CIELAB pixels (after a 3×3 median, which removes a generated image's speckle and keeps edges).
 * 2. A few colour clusters (k-means in CIELAB, seeded deterministically from a colour histogram).
 * 3. Background clusters: a cluster that covers 80 % of some rows or columns (a plain colour, a
 *    horizon's sky and ground, stripes, and the anti-aliased lines between them do; an object of
 *    the drawn world is at most 52 % of the image wide, and world.py keeps the objects crossing
 *    any row or column under 70 % of it), plus
 *    the cluster that holds most of the border.
 * 4. A spatial background model: `global` (any background cluster is background anywhere), or
 *    `rows` / `columns` (a pixel is background when its cluster is one of its row's or column's
 *    background colours): the latter finds a green object in a sky above green ground. The
 *    stricter model is kept when it costs few background pixels.
 * 5. The foreground mask, opened (3×3) to drop specks and one-pixel seams, and its 8-connected
 *    components.
 */
import type { RawImage } from '../../src/pipeline/types.js';
import { deltaE76, type Lab, rgbToLab } from './colour.js';

/** An image in CIELAB, 3 floats per pixel, row-major. */
export interface LabImage {
  width: number;
  height: number;
  lab: Float32Array;
}

/** 3×3 median per channel (edges clamp): keeps edges, removes isolated noise. */
export function median3(image: RawImage): RawImage {
  const { width, height, data } = image;
  const out = new Uint8Array(data.length);
  const window = new Uint8Array(9);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        let n = 0;
        for (let dy = -1; dy <= 1; dy++) {
          const yy = Math.min(height - 1, Math.max(0, y + dy));
          for (let dx = -1; dx <= 1; dx++) {
            const xx = Math.min(width - 1, Math.max(0, x + dx));
            window[n++] = data[(yy * width + xx) * 3 + c]!;
          }
        }
        window.sort();
        out[(y * width + x) * 3 + c] = window[4]!;
      }
    }
  }
  return { width, height, data: out };
}

export function toLab(image: RawImage): LabImage {
  const { width, height, data } = image;
  const lab = new Float32Array(width * height * 3);
  const cache = new Map<number, [number, number, number]>();
  for (let i = 0; i < width * height; i++) {
    const r = data[i * 3]!;
    const g = data[i * 3 + 1]!;
    const b = data[i * 3 + 2]!;
    const key = (r << 16) | (g << 8) | b;
    let v = cache.get(key);
    if (!v) {
      v = rgbToLab(r, g, b);
      cache.set(key, v);
    }
    lab[i * 3] = v[0];
    lab[i * 3 + 1] = v[1];
    lab[i * 3 + 2] = v[2];
  }
  return { width, height, lab };
}

export interface Clusters {
  /** Cluster centres in CIELAB. */
  centres: Lab[];
  /** Pixels of each cluster. */
  sizes: number[];
  /** The cluster of each pixel. */
  labels: Uint8Array;
}

export interface ClusterOptions {
  /** Most clusters. @default 8 */
  maxClusters?: number;
  /** Centres closer than this (ΔE*76) are merged. @default 10 */
  mergeDistance?: number;
  /** A seed needs this share of the pixels around its colour. @default 0.002 */
  minShare?: number;
  /**
   * Clusters with the same key are merged after k-means: the evaluator passes the colour's name,
   * so a noisy background split in two shades of one named colour is one cluster again.
   */
  key?: (centre: Lab) => string;
}

const BIN = 6;

function nearest(lab: Float32Array, i: number, centres: Lab[]): number {
  let best = 0;
  let bestD = Number.POSITIVE_INFINITY;
  for (let k = 0; k < centres.length; k++) {
    const c = centres[k]!;
    const d = (lab[i]! - c[0]) ** 2 + (lab[i + 1]! - c[1]) ** 2 + (lab[i + 2]! - c[2]) ** 2;
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

/**
 * k-means in CIELAB. Seeds come from a histogram of 6-unit bins: the densest colour first, then
 * repeatedly the colour that is dense and far from every seed (a deterministic k-means++), so a
 * small object of its own colour gets a centre and anti-aliased blends do not.
 */
export function clusterColours(image: LabImage, options: ClusterOptions = {}): Clusters {
  const maxClusters = options.maxClusters ?? 8;
  const mergeDistance = options.mergeDistance ?? 10;
  const n = image.width * image.height;
  const { lab } = image;
  const bins = new Map<number, { count: number; sum: [number, number, number] }>();
  const binKey = (l: number, a: number, b: number) =>
    ((Math.floor(l / BIN) + 1) * 64 + Math.floor((a + 128) / BIN)) * 64 + Math.floor((b + 128) / BIN);
  for (let p = 0; p < n; p++) {
    const i = p * 3;
    const key = binKey(lab[i]!, lab[i + 1]!, lab[i + 2]!);
    let bin = bins.get(key);
    if (!bin) {
      bin = { count: 0, sum: [0, 0, 0] };
      bins.set(key, bin);
    }
    bin.count++;
    bin.sum[0] += lab[i]!;
    bin.sum[1] += lab[i + 1]!;
    bin.sum[2] += lab[i + 2]!;
  }
  // Density of a bin: its pixels and its 26 neighbours' (noise spreads a colour over a few bins).
  const candidates: { lab: Lab; density: number }[] = [];
  for (const [key, bin] of bins) {
    let density = 0;
    for (let dl = -1; dl <= 1; dl++) {
      for (let da = -1; da <= 1; da++) {
        for (let db = -1; db <= 1; db++) density += bins.get(key + (dl * 64 + da) * 64 + db)?.count ?? 0;
      }
    }
    candidates.push({
      lab: [bin.sum[0] / bin.count, bin.sum[1] / bin.count, bin.sum[2] / bin.count],
      density,
    });
  }
  const minDensity = Math.max(4, (options.minShare ?? 0.002) * n);
  const dense = candidates.filter((c) => c.density >= minDensity).sort((x, y) => y.density - x.density);
  const centres: Lab[] = [dense[0]?.lab ?? candidates[0]!.lab];
  while (centres.length < maxClusters) {
    let best: Lab | undefined;
    let bestScore = 0;
    for (const c of dense) {
      const d = Math.min(...centres.map((centre) => deltaE76(centre, c.lab)));
      if (d < 2 * mergeDistance) continue;
      const score = c.density * d * d;
      if (score > bestScore) {
        bestScore = score;
        best = c.lab;
      }
    }
    if (!best) break;
    centres.push(best);
  }

  const labels = new Uint8Array(n);
  let current = centres.map((c) => [...c] as [number, number, number]);
  for (let iteration = 0; iteration < 8; iteration++) {
    const sums = current.map(() => [0, 0, 0, 0]);
    for (let p = 0; p < n; p++) {
      const k = nearest(lab, p * 3, current);
      labels[p] = k;
      const s = sums[k]!;
      s[0]! += lab[p * 3]!;
      s[1]! += lab[p * 3 + 1]!;
      s[2]! += lab[p * 3 + 2]!;
      s[3]!++;
    }
    const next = sums
      .filter((s) => s[3]! > 0)
      .map((s) => [s[0]! / s[3]!, s[1]! / s[3]!, s[2]! / s[3]!] as [number, number, number]);
    // Merge centres that drifted together.
    const merged: [number, number, number][] = [];
    for (const c of next) {
      if (!merged.some((m) => deltaE76(m, c) < mergeDistance)) merged.push(c);
    }
    const moved = merged.length !== current.length || merged.some((c, k) => deltaE76(c, current[k]!) > 0.5);
    current = merged;
    if (!moved) break;
  }
  const sizes = current.map(() => 0);
  for (let p = 0; p < n; p++) {
    const k = nearest(lab, p * 3, current);
    labels[p] = k;
    sizes[k]!++;
  }
  return options.key
    ? mergeByKey({ centres: current, sizes, labels }, options.key)
    : { centres: current, sizes, labels };
}

function mergeByKey(clusters: Clusters, key: (centre: Lab) => string): Clusters {
  const groups = new Map<string, number[]>();
  clusters.centres.forEach((c, k) => {
    const name = key(c);
    groups.set(name, [...(groups.get(name) ?? []), k]);
  });
  if (groups.size === clusters.centres.length) return clusters;
  const target = new Uint8Array(clusters.centres.length);
  const centres: Lab[] = [];
  const sizes: number[] = [];
  for (const members of groups.values()) {
    const total = members.reduce((s, k) => s + clusters.sizes[k]!, 0);
    const centre = [0, 1, 2].map(
      (i) =>
        members.reduce((s, k) => s + clusters.centres[k]![i]! * clusters.sizes[k]!, 0) / Math.max(1, total),
    ) as unknown as Lab;
    for (const k of members) target[k] = centres.length;
    centres.push(centre);
    sizes.push(total);
  }
  const labels = clusters.labels.map((k) => target[k]!);
  return { centres, sizes, labels };
}

export type BackgroundLayout = 'global' | 'rows' | 'columns';

export interface BackgroundModel {
  /** Clusters that belong to the background. */
  clusters: number[];
  layout: BackgroundLayout;
  /** Per row (layout `rows`) or column (`columns`): the background clusters allowed there. */
  allowed?: Set<number>[];
  /**
   * Background clusters that are blends of two others (the anti-aliased or blurred seam between
   * stripes, or sky and ground), with the two: not background colours of their own.
   */
  transitions: Map<number, [number, number]>;
  /** True where a pixel is foreground (before clean-up). */
  foreground: Uint8Array;
}

export interface BackgroundOptions {
  /** A cluster covering this share of a row or column there is background. @default 0.8 */
  lineCoverage?: number;
  /** Rows or columns so covered for a cluster to be background. @default 2 */
  minLines?: number;
  /**
   * In the `rows` and `columns` layouts, a background colour is background in a line where it
   * covers this share of it (the drawn world's largest object covers 52 % of a line, leaving
   * 48 % to its background). @default 0.4
   */
  lineShare?: number;
}

/** Which clusters are background, where, and the resulting raw foreground mask. */
export function backgroundModel(
  clusters: Clusters,
  width: number,
  height: number,
  options: BackgroundOptions = {},
): BackgroundModel {
  const coverage = options.lineCoverage ?? 0.8;
  const minLines = options.minLines ?? 2;
  const lineShare = options.lineShare ?? 0.4;
  const k = clusters.centres.length;
  const { labels } = clusters;
  const rowCount = Array.from({ length: k }, () => new Uint32Array(height));
  const colCount = Array.from({ length: k }, () => new Uint32Array(width));
  const border = new Array<number>(k).fill(0);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const c = labels[y * width + x]!;
      rowCount[c]![y]!++;
      colCount[c]![x]!++;
      if (x < 2 || y < 2 || x >= width - 2 || y >= height - 2) border[c]!++;
    }
  }
  const background = new Set<number>();
  border.forEach((_, c) => {
    const rows = rowCount[c]!.filter((v) => v >= coverage * width).length;
    const cols = colCount[c]!.filter((v) => v >= coverage * height).length;
    if (rows >= minLines || cols >= minLines) background.add(c);
  });
  background.add(border.indexOf(Math.max(...border)));
  // A colour close to a background colour is its shading or noise.
  for (let c = 0; c < k; c++) {
    for (const b of [...background]) {
      if (deltaE76(clusters.centres[c]!, clusters.centres[b]!) < 15) background.add(c);
    }
  }
  const bg = [...background];
  const transitions = findTransitions(clusters, bg);

  const mask = (allowed: (x: number, y: number) => Set<number> | undefined): Uint8Array => {
    const fg = new Uint8Array(width * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const c = labels[y * width + x]!;
        const set = allowed(x, y);
        fg[y * width + x] = set ? (set.has(c) ? 0 : 1) : background.has(c) ? 0 : 1;
      }
    }
    return fg;
  };
  const lineSets = (counts: Uint32Array[], lines: number, span: number): Set<number>[] =>
    Array.from({ length: lines }, (_, i) => {
      const set = new Set<number>();
      for (const c of bg) if (counts[c]![i]! >= lineShare * span) set.add(c);
      // A line with no background colour of its own (an object crossing it) allows them all.
      return set.size > 0 ? set : new Set(bg);
    });
  const globalFg = mask(() => undefined);
  const sum = (a: Uint8Array) => a.reduce((s, v) => s + v, 0);
  const globalCount = sum(globalFg);
  let best: BackgroundModel = { clusters: bg, layout: 'global', transitions, foreground: globalFg };
  if (bg.length >= 2) {
    const bgPixels = bg.reduce((s, c) => s + clusters.sizes[c]!, 0);
    let bestExtra = Number.POSITIVE_INFINITY;
    for (const layout of ['rows', 'columns'] as const) {
      const allowed =
        layout === 'rows' ? lineSets(rowCount, height, width) : lineSets(colCount, width, height);
      const fg = mask((x, y) => allowed[layout === 'rows' ? y : x]);
      const extra = sum(fg) - globalCount;
      // A stricter model that calls few background pixels foreground fits: those are objects
      // coloured like a background colour elsewhere (a green ball in the sky above green grass).
      if (extra <= 0.08 * bgPixels && extra < bestExtra) {
        bestExtra = extra;
        best = { clusters: bg, layout, allowed, transitions, foreground: fg };
      }
    }
  }
  if (transitions.size > 0) keepSeamsOnly(best.foreground, labels, transitions, width, height);
  return best;
}

/** Distance from `t` to the segment a–b in CIELAB, and where along it t falls (0 at a, 1 at b). */
function toSegment(t: Lab, a: Lab, b: Lab): { distance: number; along: number } {
  const ab = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
  const at = [t[0] - a[0], t[1] - a[1], t[2] - a[2]];
  const len2 = ab[0]! ** 2 + ab[1]! ** 2 + ab[2]! ** 2 || 1;
  const along = (at[0]! * ab[0]! + at[1]! * ab[1]! + at[2]! * ab[2]!) / len2;
  const u = Math.min(1, Math.max(0, along));
  const closest: Lab = [a[0] + u * ab[0]!, a[1] + u * ab[1]!, a[2] + u * ab[2]!];
  return { distance: deltaE76(t, closest), along };
}

/** Background clusters whose colour lies between two larger background clusters' colours. */
function findTransitions(clusters: Clusters, bg: number[]): Map<number, [number, number]> {
  const out = new Map<number, [number, number]>();
  for (const t of bg) {
    let best: { pair: [number, number]; distance: number } | undefined;
    for (const a of bg) {
      for (const b of bg) {
        if (a >= b || a === t || b === t) continue;
        if (clusters.sizes[a]! < clusters.sizes[t]! || clusters.sizes[b]! < clusters.sizes[t]!) continue;
        const [ca, cb, ct] = [clusters.centres[a]!, clusters.centres[b]!, clusters.centres[t]!];
        const { distance, along } = toSegment(ct, ca, cb);
        if (along > 0.1 && along < 0.9 && distance < Math.max(8, 0.2 * deltaE76(ca, cb))) {
          if (!best || distance < best.distance) best = { pair: [a, b], distance };
        }
      }
    }
    if (best) out.set(t, best.pair);
  }
  return out;
}

/**
 * A pixel of a seam colour is background only where both colours it blends are within 3 pixels:
 * a grey square on black and white stripes keeps its middle.
 */
function keepSeamsOnly(
  fg: Uint8Array,
  labels: Uint8Array,
  transitions: Map<number, [number, number]>,
  width: number,
  height: number,
): void {
  const r = 3;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      const pair = transitions.get(labels[p]!);
      if (!pair || fg[p]) continue;
      let seenA = false;
      let seenB = false;
      for (let yy = Math.max(0, y - r); yy <= Math.min(height - 1, y + r) && !(seenA && seenB); yy++) {
        for (let xx = Math.max(0, x - r); xx <= Math.min(width - 1, x + r); xx++) {
          const l = labels[yy * width + xx]!;
          if (l === pair[0]) seenA = true;
          else if (l === pair[1]) seenB = true;
        }
      }
      if (!(seenA && seenB)) fg[p] = 1;
    }
  }
}

/** Binary erosion or dilation with a 3×3 square (outside the image counts as background). */
function morph(mask: Uint8Array, width: number, height: number, erode: boolean): Uint8Array {
  const out = new Uint8Array(mask.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let hit = erode ? 1 : 0;
      for (let dy = -1; dy <= 1 && hit === (erode ? 1 : 0); dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          const yy = y + dy;
          const v = xx >= 0 && yy >= 0 && xx < width && yy < height ? mask[yy * width + xx]! : 0;
          if (erode ? v === 0 : v === 1) {
            hit = erode ? 0 : 1;
            break;
          }
        }
      }
      out[y * width + x] = hit;
    }
  }
  return out;
}

export const erode = (mask: Uint8Array, width: number, height: number) => morph(mask, width, height, true);
export const dilate = (mask: Uint8Array, width: number, height: number) => morph(mask, width, height, false);
/** Opening: erosion then dilation; removes specks and lines one or two pixels wide. */
export const open = (mask: Uint8Array, width: number, height: number) =>
  dilate(erode(mask, width, height), width, height);

/** One 8-connected region of a mask. */
export interface Component {
  /** Pixel indices (y · width + x). */
  pixels: number[];
  area: number;
  /** Bounding box, inclusive. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  /** Centroid in pixels (pixel centres at +0.5). */
  cx: number;
  cy: number;
}

export function connectedComponents(mask: Uint8Array, width: number, height: number): Component[] {
  const seen = new Uint8Array(mask.length);
  const components: Component[] = [];
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || seen[start]) continue;
    const pixels: number[] = [];
    seen[start] = 1;
    stack.push(start);
    let x0 = width;
    let y0 = height;
    let x1 = 0;
    let y1 = 0;
    let sx = 0;
    let sy = 0;
    while (stack.length > 0) {
      const p = stack.pop()!;
      pixels.push(p);
      const x = p % width;
      const y = (p - x) / width;
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
      sx += x + 0.5;
      sy += y + 0.5;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const q = yy * width + xx;
          if (mask[q] && !seen[q]) {
            seen[q] = 1;
            stack.push(q);
          }
        }
      }
    }
    components.push({
      pixels,
      area: pixels.length,
      x0,
      y0,
      x1,
      y1,
      cx: sx / pixels.length,
      cy: sy / pixels.length,
    });
  }
  return components.sort((a, b) => b.area - a.area);
}
