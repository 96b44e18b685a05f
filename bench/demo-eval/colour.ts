/**
 * Colour science for the demo evaluator: sRGB ↔ CIELAB (D65) and CIEDE2000, and naming a colour
 * by the nearest entry of a palette in that perceptual space. Pure functions, no I/O.
 */

export type Rgb = readonly [number, number, number];
export type Lab = readonly [number, number, number];

/** A named colour of the drawn world's vocabulary. */
export interface NamedColour {
  name: string;
  rgb: Rgb;
}

/**
 * The palette used when the world's vocabulary file is not there: a copy of
 * tools/train-demo/world.json's colours (that file, when present, is what the evaluator reads).
 */
export const DEFAULT_PALETTE: readonly NamedColour[] = [
  { name: 'red', rgb: [215, 38, 38] },
  { name: 'orange', rgb: [245, 135, 25] },
  { name: 'yellow', rgb: [248, 214, 32] },
  { name: 'green', rgb: [46, 160, 58] },
  { name: 'blue', rgb: [36, 92, 222] },
  { name: 'purple', rgb: [128, 52, 180] },
  { name: 'pink', rgb: [246, 128, 190] },
  { name: 'brown', rgb: [120, 72, 36] },
  { name: 'black', rgb: [18, 18, 18] },
  { name: 'white', rgb: [246, 246, 246] },
  { name: 'grey', rgb: [128, 128, 128] },
  { name: 'cyan', rgb: [36, 200, 218] },
  { name: 'dark blue', rgb: [18, 30, 96] },
  { name: 'light blue', rgb: [150, 202, 246] },
  { name: 'dark green', rgb: [18, 84, 40] },
];

function srgbToLinear(c: number): number {
  const v = c / 255;
  return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
}

/** 256-entry table: sRGB byte → linear light. */
const LINEAR = Float64Array.from({ length: 256 }, (_, i) => srgbToLinear(i));

const XN = 0.95047;
const YN = 1.0;
const ZN = 1.08883;

function f(t: number): number {
  return t > 216 / 24389 ? Math.cbrt(t) : (t * 24389) / 27 / 116 + 16 / 116;
}

/** sRGB bytes (0–255, rounded into range) → CIELAB, D65 white. */
export function rgbToLab(r: number, g: number, b: number): [number, number, number] {
  const byte = (v: number) => LINEAR[Math.max(0, Math.min(255, Math.round(v)))]!;
  const lr = byte(r);
  const lg = byte(g);
  const lb = byte(b);
  const x = (0.4124564 * lr + 0.3575761 * lg + 0.1804375 * lb) / XN;
  const y = (0.2126729 * lr + 0.7151522 * lg + 0.072175 * lb) / YN;
  const z = (0.0193339 * lr + 0.119192 * lg + 0.9503041 * lb) / ZN;
  const fx = f(x);
  const fy = f(y);
  const fz = f(z);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

/** CIELAB → sRGB bytes (clamped), for drawing and reporting the colours found. */
export function labToRgb(l: number, a: number, bb: number): [number, number, number] {
  const fy = (l + 16) / 116;
  const fx = fy + a / 500;
  const fz = fy - bb / 200;
  const inv = (t: number) => (t ** 3 > 216 / 24389 ? t ** 3 : (116 * t - 16) / (24389 / 27));
  const x = inv(fx) * XN;
  const y = inv(fy) * YN;
  const z = inv(fz) * ZN;
  const lin = [
    3.2404542 * x - 1.5371385 * y - 0.4985314 * z,
    -0.969266 * x + 1.8760108 * y + 0.041556 * z,
    0.0556434 * x - 0.2040259 * y + 1.0572252 * z,
  ];
  return lin.map((v) => {
    const c = v <= 0.0031308 ? 12.92 * v : 1.055 * Math.max(v, 0) ** (1 / 2.4) - 0.055;
    return Math.max(0, Math.min(255, Math.round(c * 255)));
  }) as [number, number, number];
}

/** Plain Euclidean distance in CIELAB (ΔE*76): cheap, used for clustering. */
export function deltaE76(p: Lab, q: Lab): number {
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

/** CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), kL = kC = kH = 1. */
export function deltaE2000(p: Lab, q: Lab): number {
  const [l1, a1, b1] = p;
  const [l2, a2, b2] = q;
  const rad = Math.PI / 180;
  const c1 = Math.hypot(a1, b1);
  const c2 = Math.hypot(a2, b2);
  const cBar7 = ((c1 + c2) / 2) ** 7;
  const g = 0.5 * (1 - Math.sqrt(cBar7 / (cBar7 + 25 ** 7)));
  const a1p = (1 + g) * a1;
  const a2p = (1 + g) * a2;
  const c1p = Math.hypot(a1p, b1);
  const c2p = Math.hypot(a2p, b2);
  const hue = (b: number, a: number) => {
    if (a === 0 && b === 0) return 0;
    const h = Math.atan2(b, a) / rad;
    return h < 0 ? h + 360 : h;
  };
  const h1p = hue(b1, a1p);
  const h2p = hue(b2, a2p);
  const dLp = l2 - l1;
  const dCp = c2p - c1p;
  let dhp = 0;
  if (c1p * c2p !== 0) {
    dhp = h2p - h1p;
    if (dhp > 180) dhp -= 360;
    else if (dhp < -180) dhp += 360;
  }
  const dHp = 2 * Math.sqrt(c1p * c2p) * Math.sin((dhp / 2) * rad);
  const lBarP = (l1 + l2) / 2;
  const cBarP = (c1p + c2p) / 2;
  let hBarP = h1p + h2p;
  if (c1p * c2p !== 0) {
    if (Math.abs(h1p - h2p) <= 180) hBarP = (h1p + h2p) / 2;
    else hBarP = h1p + h2p < 360 ? (h1p + h2p + 360) / 2 : (h1p + h2p - 360) / 2;
  }
  const t =
    1 -
    0.17 * Math.cos((hBarP - 30) * rad) +
    0.24 * Math.cos(2 * hBarP * rad) +
    0.32 * Math.cos((3 * hBarP + 6) * rad) -
    0.2 * Math.cos((4 * hBarP - 63) * rad);
  const dTheta = 30 * Math.exp(-(((hBarP - 275) / 25) ** 2));
  const cBarP7 = cBarP ** 7;
  const rc = 2 * Math.sqrt(cBarP7 / (cBarP7 + 25 ** 7));
  const sl = 1 + (0.015 * (lBarP - 50) ** 2) / Math.sqrt(20 + (lBarP - 50) ** 2);
  const sc = 1 + 0.045 * cBarP;
  const sh = 1 + 0.015 * cBarP * t;
  const rt = -Math.sin(2 * dTheta * rad) * rc;
  return Math.sqrt((dLp / sl) ** 2 + (dCp / sc) ** 2 + (dHp / sh) ** 2 + rt * (dCp / sc) * (dHp / sh));
}

/** A palette with each colour's CIELAB value computed once. */
export interface Palette {
  colours: readonly (NamedColour & { lab: Lab })[];
}

export function makePalette(colours: readonly NamedColour[]): Palette {
  if (colours.length === 0) throw new Error('a palette needs at least one colour');
  return { colours: colours.map((c) => ({ ...c, lab: rgbToLab(...c.rgb) })) };
}

export interface ColourMatch {
  name: string;
  /** CIEDE2000 distance to the named colour. */
  distance: number;
  /** The runner-up and its distance: how clear-cut the naming was. */
  runnerUp?: { name: string; distance: number };
}

/** The palette's colour nearest to `lab` in CIEDE2000. */
export function nameColour(lab: Lab, palette: Palette): ColourMatch {
  const ranked = palette.colours
    .map((c) => ({ name: c.name, distance: deltaE2000(lab, c.lab) }))
    .sort((x, y) => x.distance - y.distance);
  const [best, second] = ranked;
  return { name: best!.name, distance: best!.distance, ...(second ? { runnerUp: second } : {}) };
}
