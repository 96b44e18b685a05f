/**
 * What a picture of the drawn world shows, measured: its background colours, each object's colour,
 * shape and place, how many objects there are; and the verdict against what a caption asked for.
 * Pure functions on 8-bit RGB (RawImage); see segment.ts, shape.ts and colour.ts for the parts.
 */
import type { RawImage } from '../../src/pipeline/types.js';
import { type Lab, labToRgb, makePalette, nameColour, type Palette } from './colour.js';
import {
  type BackgroundLayout,
  backgroundModel,
  type Component,
  clusterColours,
  connectedComponents,
  erode,
  median3,
  open,
  toLab,
} from './segment.js';
import { classifyShape, componentMask, type ShapeFeatures, shapeFeatures } from './shape.js';
import { DEFAULT_VOCABULARY, type SceneTruth, type WorldVocabulary } from './world.js';

export interface DetectedObject {
  /** Centroid, normalised to [0, 1] (y down). */
  x: number;
  y: number;
  /** Share of the image's pixels. */
  area: number;
  colour: string;
  /** The object's median colour (sRGB) and its CIEDE2000 distance to the named colour. */
  rgb: [number, number, number];
  colourDistance: number;
  shape: string;
  /** Distance to the nearest shape prototype (large: the shape is unlike any). */
  shapeDistance: number;
  features: ShapeFeatures;
}

export interface BackgroundRegion {
  colour: string;
  rgb: [number, number, number];
  /** Share of the image's pixels. */
  share: number;
}

export interface SceneAnalysis {
  width: number;
  height: number;
  /** Named background colours covering at least `majorShare` of the image, largest first. */
  background: BackgroundRegion[];
  /** Background colour of the top and bottom bands (a horizon's sky and ground). */
  top?: string;
  bottom?: string;
  layout: BackgroundLayout;
  /** Objects, largest first. */
  objects: DetectedObject[];
  /** The colour covering most object area. */
  objectColour?: string;
  /** The shape covering most object area. */
  shape?: string;
  /** The named position nearest to the objects' area-weighted centroid. */
  position?: string;
  count: number;
}

export interface AnalysisOptions {
  vocabulary?: WorldVocabulary;
  /** An object smaller than this share of the image is noise. @default 0.0015 */
  minObjectShare?: number;
  /** … or smaller than this share of the largest object. @default 0.15 */
  minObjectRatio?: number;
  /** A background colour must cover this share of the image to be named. @default 0.1 */
  majorShare?: number;
  /** 3×3 median before anything (removes generated speckle). @default true */
  denoise?: boolean;
}

const palettes = new WeakMap<WorldVocabulary, Palette>();

function paletteOf(vocabulary: WorldVocabulary): Palette {
  let palette = palettes.get(vocabulary);
  if (!palette) {
    palette = makePalette(vocabulary.colours);
    palettes.set(vocabulary, palette);
  }
  return palette;
}

function medianLab(lab: Float32Array, pixels: Iterable<number>): Lab {
  const channels: number[][] = [[], [], []];
  for (const p of pixels) for (let c = 0; c < 3; c++) channels[c]!.push(lab[p * 3 + c]!);
  return channels.map((values) => {
    values.sort((a, b) => a - b);
    return values[Math.floor(values.length / 2)] ?? 0;
  }) as unknown as Lab;
}

/** The named colour covering most of the given weights. */
function majority<T>(items: T[], key: (item: T) => string, weight: (item: T) => number): string | undefined {
  const totals = new Map<string, number>();
  for (const item of items) totals.set(key(item), (totals.get(key(item)) ?? 0) + weight(item));
  return [...totals].sort((a, b) => b[1] - a[1])[0]?.[0];
}

export function analyseScene(image: RawImage, options: AnalysisOptions = {}): SceneAnalysis {
  const vocabulary = options.vocabulary ?? DEFAULT_VOCABULARY;
  const palette = paletteOf(vocabulary);
  const { width, height } = image;
  const n = width * height;
  const lab = toLab(options.denoise === false ? image : median3(image));
  const clusters = clusterColours(lab, { key: (centre) => nameColour(centre, palette).name });
  const model = backgroundModel(clusters, width, height);

  // Background: named colours of the background clusters, merged by name.
  const named = new Map<string, { pixels: number; lab: Lab }>();
  for (const c of model.clusters) {
    if (model.transitions.has(c)) continue;
    const name = nameColour(clusters.centres[c]!, palette).name;
    const entry = named.get(name);
    if (!entry || entry.pixels < clusters.sizes[c]!) {
      named.set(name, { pixels: (entry?.pixels ?? 0) + clusters.sizes[c]!, lab: clusters.centres[c]! });
    } else entry.pixels += clusters.sizes[c]!;
  }
  const majorShare = options.majorShare ?? 0.1;
  const background = [...named]
    .map(([colour, { pixels, lab: l }]) => ({ colour, rgb: labToRgb(...l), share: pixels / n }))
    .filter((b) => b.share >= majorShare)
    .sort((a, b) => b.share - a.share);
  const bgClusters = new Set(model.clusters);
  const band = (y0: number, y1: number): string | undefined => {
    const counts = new Map<number, number>();
    for (let y = Math.floor(y0 * height); y < Math.floor(y1 * height); y++) {
      for (let x = 0; x < width; x++) {
        const c = clusters.labels[y * width + x]!;
        if (bgClusters.has(c) && !model.transitions.has(c)) counts.set(c, (counts.get(c) ?? 0) + 1);
      }
    }
    const best = [...counts].sort((a, b) => b[1] - a[1])[0];
    return best ? nameColour(clusters.centres[best[0]]!, palette).name : undefined;
  };

  // Objects: cleaned foreground, connected, filtered by size.
  const mask = open(model.foreground, width, height);
  const all = connectedComponents(mask, width, height);
  const largest = all[0]?.area ?? 0;
  const minArea = Math.max(
    (options.minObjectShare ?? 0.0015) * n,
    (options.minObjectRatio ?? 0.15) * largest,
    4,
  );
  const kept = all.filter((c) => c.area >= minArea);
  const objects = kept.map((component) =>
    describeObject(component, lab.lab, width, height, palette, vocabulary),
  );

  const weight = (o: DetectedObject) => o.area;
  const objectColour = majority(objects, (o) => o.colour, weight);
  const shape = majority(objects, (o) => o.shape, weight);
  let position: string | undefined;
  if (objects.length > 0) {
    const total = objects.reduce((s, o) => s + o.area, 0);
    const cx = objects.reduce((s, o) => s + o.x * o.area, 0) / total;
    const cy = objects.reduce((s, o) => s + o.y * o.area, 0) / total;
    position = nearestPosition(cx, cy, vocabulary);
  }
  return {
    width,
    height,
    background,
    top: band(0, 0.25),
    bottom: band(0.85, 1),
    layout: model.layout,
    objects,
    ...(objectColour ? { objectColour } : {}),
    ...(shape ? { shape } : {}),
    ...(position ? { position } : {}),
    count: objects.length,
  };
}

function describeObject(
  component: Component,
  lab: Float32Array,
  width: number,
  height: number,
  palette: Palette,
  vocabulary: WorldVocabulary,
): DetectedObject {
  // Colour from the interior: anti-aliased edge pixels are blends with the background.
  const own = new Uint8Array(width * height);
  for (const p of component.pixels) own[p] = 1;
  const inner = erode(erode(own, width, height), width, height);
  const interior = component.pixels.filter((p) => inner[p]);
  const colourLab = medianLab(lab, interior.length >= 12 ? interior : component.pixels);
  const colour = nameColour(colourLab, palette);
  const features = shapeFeatures(componentMask(component, width));
  const guess = classifyShape(features, vocabulary.shapes);
  return {
    x: component.cx / width,
    y: component.cy / height,
    area: component.area / (width * height),
    colour: colour.name,
    rgb: labToRgb(...colourLab),
    colourDistance: colour.distance,
    shape: guess.shape,
    shapeDistance: guess.distance,
    features,
  };
}

export function nearestPosition(
  x: number,
  y: number,
  vocabulary: WorldVocabulary = DEFAULT_VOCABULARY,
): string {
  let best = '';
  let bestD = Number.POSITIVE_INFINITY;
  for (const [name, [px, py]] of Object.entries(vocabulary.positions)) {
    const d = Math.hypot(x - px, y - py);
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Verdicts

/** The attributes scored, in report order. */
export const ATTRIBUTES = ['background', 'colour', 'shape', 'position', 'count', 'relation'] as const;
export type Attribute = (typeof ATTRIBUTES)[number];

export interface Verdict {
  ok: boolean;
  expected: string;
  found: string;
}

/** Per attribute; an attribute the expectation does not name is absent. */
export type Verdicts = Partial<Record<Attribute, Verdict>>;

/** What a picture should show; every field optional. */
export interface SceneExpectation {
  /** One colour (a plain background), or sky and ground of a horizon, or both stripe colours. */
  background?: string | string[];
  /** `horizon` checks which colour is on top (the first) and which below. */
  backgroundKind?: string;
  /** Colour of the objects (compositions: give `objects`). */
  colour?: string;
  shape?: string;
  position?: string;
  count?: number;
  /** Two different objects in a relation (`above`, `below`, `left of`, `right of`), first to second. */
  relation?: string;
  objects?: { colour: string; shape: string }[];
}

const list = (values: readonly string[]) => [...values].sort().join(' + ') || '(none)';

function verdict(expected: string, found: string | undefined, ok?: boolean): Verdict {
  return { ok: ok ?? expected === found, expected, found: found ?? '(none)' };
}

/** Scores an analysis against an expectation, attribute by attribute. */
export function judgeScene(analysis: SceneAnalysis, expected: SceneExpectation): Verdicts {
  const out: Verdicts = {};
  if (expected.background !== undefined) {
    const want = Array.isArray(expected.background) ? expected.background : [expected.background];
    const found = analysis.background.map((b) => b.colour);
    const sameSet = list([...new Set(want)]) === list(found);
    const ordered =
      expected.backgroundKind !== 'horizon' || (analysis.top === want[0] && analysis.bottom === want[1]);
    out.background = verdict(
      expected.backgroundKind === 'horizon' ? `${want[0]} sky, ${want[1]} ground` : list(want),
      expected.backgroundKind === 'horizon' ? `${analysis.top} sky, ${analysis.bottom} ground` : list(found),
      sameSet && ordered,
    );
  }
  const pairs = expected.objects && expected.objects.length >= 2 ? expected.objects : undefined;
  /** The largest object of a colour. */
  const ofColour = (colour: string) => analysis.objects.find((o) => o.colour === colour);
  if (pairs) {
    const found = pairs.map((p) => ofColour(p.colour));
    out.colour = verdict(
      list(pairs.map((p) => p.colour)),
      list([...new Set(analysis.objects.map((o) => o.colour))]),
      found.every(Boolean),
    );
    out.shape = verdict(
      pairs.map((p) => `${p.colour} ${p.shape}`).join(', '),
      found.map((o, i) => (o ? `${pairs[i]!.colour} ${o.shape}` : `no ${pairs[i]!.colour}`)).join(', '),
      found.every((o, i) => o?.shape === pairs[i]!.shape),
    );
  } else {
    if (expected.colour !== undefined) out.colour = verdict(expected.colour, analysis.objectColour);
    if (expected.shape !== undefined) out.shape = verdict(expected.shape, analysis.shape);
  }
  if (expected.position !== undefined) out.position = verdict(expected.position, analysis.position);
  if (expected.count !== undefined) out.count = verdict(String(expected.count), String(analysis.count));
  if (expected.relation !== undefined && pairs) {
    const [a, b] = pairs.map((p) => ofColour(p.colour));
    let found = 'objects missing';
    let ok = false;
    if (a && b) {
      const dx = b.x - a.x;
      const dy = b.y - a.y;
      found = Math.abs(dy) >= Math.abs(dx) ? (dy > 0 ? 'above' : 'below') : dx > 0 ? 'left of' : 'right of';
      ok = found === expected.relation;
    }
    out.relation = verdict(expected.relation, found, ok);
  }
  return out;
}

/** The expectation a held-out caption's ground truth implies (the background only when named). */
export function expectationOf(truth: SceneTruth): SceneExpectation {
  return {
    ...(truth.backgroundNamed
      ? { background: truth.backgroundColours, backgroundKind: truth.backgroundKind }
      : {}),
    ...(truth.type === 'relation'
      ? { objects: truth.objects, ...(truth.relation ? { relation: truth.relation } : {}) }
      : { colour: truth.colour, shape: truth.shape }),
    ...(truth.position ? { position: truth.position } : {}),
    count: truth.count,
  };
}

export interface SceneCheck {
  /** True when every named attribute is right. */
  ok: boolean;
  verdicts: Verdicts;
  analysis: SceneAnalysis;
  /** One line per wrong attribute, for an assertion message. */
  failures: string[];
}

/**
 * Checks a picture against what it should show, e.g.
 *   assertScene(image, { colour: 'yellow', shape: 'star', count: 2, background: 'dark blue' })
 * Returns per-attribute verdicts (it throws nothing: callers `expect(check.ok)` or read `failures`).
 */
export function assertScene(
  image: RawImage,
  expected: SceneExpectation,
  options: AnalysisOptions = {},
): SceneCheck {
  const analysis = analyseScene(image, options);
  const verdicts = judgeScene(analysis, expected);
  const failures = Object.entries(verdicts)
    .filter(([, v]) => !v.ok)
    .map(([k, v]) => `${k}: expected ${v.expected}, found ${v.found}`);
  return { ok: failures.length === 0, verdicts, analysis, failures };
}
