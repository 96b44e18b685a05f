/**
 * The drawn world's vocabulary (tools/train-demo/world.json) and its held-out captions with their
 * ground truth (JSON lines from `world.py --held-out N`), read leniently: the evaluator needs
 * colour names with their RGB, shape names and named positions with their normalised centres.
 */
import { readFileSync } from 'node:fs';
import { DEFAULT_PALETTE, type NamedColour } from './colour.js';

export interface WorldVocabulary {
  colours: NamedColour[];
  /** Other words for a colour (gray → grey). */
  colourAliases: Record<string, string>;
  shapes: string[];
  /** Named positions → normalised centre [x, y], y down. */
  positions: Record<string, [number, number]>;
  positionAliases: Record<string, string>;
  /** Image side the world is drawn at. */
  imageSize: number;
}

export const DEFAULT_VOCABULARY: WorldVocabulary = {
  colours: [...DEFAULT_PALETTE],
  colourAliases: { gray: 'grey', navy: 'dark blue', 'sky blue': 'light blue', violet: 'purple' },
  shapes: ['circle', 'square', 'triangle', 'star', 'ring', 'heart', 'cross'],
  positions: {
    centre: [0.5, 0.5],
    left: [0.25, 0.5],
    right: [0.75, 0.5],
    top: [0.5, 0.25],
    bottom: [0.5, 0.75],
    'top left': [0.25, 0.25],
    'top right': [0.75, 0.25],
    'bottom left': [0.25, 0.75],
    'bottom right': [0.75, 0.75],
  },
  positionAliases: { center: 'centre', middle: 'centre' },
  imageSize: 256,
};

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function rgbOf(value: unknown): [number, number, number] | undefined {
  if (Array.isArray(value) && value.length >= 3 && value.slice(0, 3).every((v) => typeof v === 'number')) {
    return [value[0], value[1], value[2]] as [number, number, number];
  }
  if (typeof value === 'string' && /^#[0-9a-f]{6}$/i.test(value)) {
    const n = Number.parseInt(value.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  if (isObject(value)) return rgbOf(value['rgb'] ?? value['value']);
  return undefined;
}

function pointOf(value: unknown): [number, number] | undefined {
  if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'number')) {
    return [value[0], value[1]];
  }
  if (isObject(value)) {
    if (typeof value['x'] === 'number' && typeof value['y'] === 'number') return [value['x'], value['y']];
    return pointOf(value['centre'] ?? value['center']);
  }
  return undefined;
}

function stringMap(value: unknown): Record<string, string> {
  if (!isObject(value)) return {};
  return Object.fromEntries(
    Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'),
  );
}

/** Parses world.json's text; anything missing or unreadable falls back to DEFAULT_VOCABULARY. */
export function parseVocabulary(text: string): WorldVocabulary {
  const raw = JSON.parse(text) as unknown;
  if (!isObject(raw)) throw new Error('world.json: expected an object');
  const colourSource = raw['colours'] ?? raw['colors'];
  let colours: NamedColour[] = [];
  if (isObject(colourSource)) {
    colours = Object.entries(colourSource).flatMap(([name, v]) => {
      const rgb = rgbOf(v);
      return rgb ? [{ name, rgb }] : [];
    });
  } else if (Array.isArray(colourSource)) {
    colours = colourSource.flatMap((v) => {
      const rgb = rgbOf(v);
      return isObject(v) && typeof v['name'] === 'string' && rgb ? [{ name: v['name'], rgb }] : [];
    });
  }
  const shapeSource = raw['shapes'];
  const shapes = Array.isArray(shapeSource)
    ? shapeSource.flatMap((s) =>
        typeof s === 'string' ? [s] : isObject(s) && typeof s['name'] === 'string' ? [s['name']] : [],
      )
    : isObject(shapeSource)
      ? Object.keys(shapeSource)
      : [];
  const positionSource = raw['positions'];
  const positions: Record<string, [number, number]> = {};
  if (isObject(positionSource)) {
    for (const [name, v] of Object.entries(positionSource)) {
      const p = pointOf(v);
      if (p) positions[name] = p;
    }
  }
  return {
    colours: colours.length > 0 ? colours : DEFAULT_VOCABULARY.colours,
    colourAliases: { ...stringMap(raw['colour_aliases'] ?? raw['color_aliases']) },
    shapes: shapes.length > 0 ? shapes : DEFAULT_VOCABULARY.shapes,
    positions: Object.keys(positions).length > 0 ? positions : DEFAULT_VOCABULARY.positions,
    positionAliases: { ...DEFAULT_VOCABULARY.positionAliases, ...stringMap(raw['position_aliases']) },
    imageSize: typeof raw['image_size'] === 'number' ? raw['image_size'] : DEFAULT_VOCABULARY.imageSize,
  };
}

export function readVocabulary(path: string): WorldVocabulary {
  return parseVocabulary(readFileSync(path, 'utf8'));
}

/** One expected object (compositions have two). */
export interface ExpectedObject {
  colour: string;
  shape: string;
  /** Normalised centre, when the truth gives it. */
  x?: number;
  y?: number;
}

/** What a held-out caption asks for, as the world drew it. */
export interface SceneTruth {
  caption: string;
  seed: number;
  /** `single`, `count` (several alike) or `relation` (two different objects). */
  type: 'single' | 'count' | 'relation';
  /** Background colours: one for plain; sky, ground for a horizon; both stripe colours. */
  backgroundColours: string[];
  backgroundKind: string;
  /** False when the caption names no background (the world then draws its default). */
  backgroundNamed: boolean;
  /** Colour and shape of the (first) object. */
  colour: string;
  shape: string;
  /** Named position, or undefined when the caption names none. */
  position?: string;
  count: number;
  /** `above`, `left of`… for compositions. */
  relation?: string;
  objects: ExpectedObject[];
}

const pick = (o: Json, ...keys: string[]): unknown => {
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) return o[k];
  return undefined;
};

/** One JSON line of the held-out set → SceneTruth (world.py's `ground_truth`, with common variants). */
export function parseTruth(value: unknown, vocabulary: WorldVocabulary = DEFAULT_VOCABULARY): SceneTruth {
  if (!isObject(value)) throw new Error('a held-out line must be a JSON object');
  const o = { ...(isObject(value['truth']) ? value['truth'] : {}), ...value };
  const caption = pick(o, 'caption', 'prompt', 'text');
  if (typeof caption !== 'string') throw new Error('a held-out line has no caption');
  const colourName = (v: unknown): string | undefined =>
    typeof v === 'string' ? (vocabulary.colourAliases[v] ?? v) : undefined;
  const objects: ExpectedObject[] = Array.isArray(o['objects'])
    ? o['objects'].filter(isObject).map((ob) => ({
        colour: colourName(pick(ob, 'colour', 'color')) ?? '',
        shape: String(ob['shape'] ?? ''),
        ...(typeof ob['x'] === 'number' ? { x: ob['x'] } : {}),
        ...(typeof ob['y'] === 'number' ? { y: ob['y'] } : {}),
      }))
    : [];
  const colour =
    colourName(pick(o, 'colour', 'color', 'object_colour', 'object_color')) ?? objects[0]?.colour;
  const shape = pick(o, 'shape') ?? objects[0]?.shape;
  if (!colour || typeof shape !== 'string') throw new Error(`no object colour or shape for "${caption}"`);
  const bgList = pick(o, 'background_colours', 'background_colors');
  const bgOne = colourName(pick(o, 'background', 'background_colour', 'background_color'));
  const backgroundColours = Array.isArray(bgList)
    ? bgList.map((c) => colourName(c) ?? String(c))
    : bgOne
      ? [bgOne]
      : [];
  const rawPosition = pick(o, 'position');
  const position =
    typeof rawPosition === 'string' ? (vocabulary.positionAliases[rawPosition] ?? rawPosition) : undefined;
  const count = Number(pick(o, 'count') ?? (objects.length || 1));
  const type = pick(o, 'type');
  const relation = pick(o, 'relation');
  return {
    caption,
    seed: Number(pick(o, 'seed') ?? 0),
    type: type === 'count' || type === 'relation' ? type : count > 1 ? 'count' : 'single',
    backgroundColours,
    backgroundKind: String(pick(o, 'background_kind', 'backgroundKind') ?? 'plain'),
    backgroundNamed: pick(o, 'background_named', 'backgroundNamed') !== false && backgroundColours.length > 0,
    colour,
    shape,
    ...(position ? { position } : {}),
    count,
    ...(typeof relation === 'string' ? { relation } : {}),
    objects: objects.length > 0 ? objects : [{ colour, shape }],
  };
}

/** Reads a held-out set: JSON lines (blank lines skipped) or one JSON array. */
export function parseHeldOut(text: string, vocabulary?: WorldVocabulary): SceneTruth[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('['))
    return (JSON.parse(trimmed) as unknown[]).map((v) => parseTruth(v, vocabulary));
  return trimmed
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      try {
        return parseTruth(JSON.parse(line), vocabulary);
      } catch (error) {
        throw new Error(`held-out line ${i + 1}: ${(error as Error).message}`);
      }
    });
}

export function readHeldOut(path: string, vocabulary?: WorldVocabulary): SceneTruth[] {
  return parseHeldOut(readFileSync(path, 'utf8'), vocabulary);
}
