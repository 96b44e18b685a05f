import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  analyseScene,
  assertScene,
  judgeScene,
  nearestPosition,
  type SceneExpectation,
} from '../../bench/demo-eval/analyse.js';
import { REPO_ROOT } from '../../bench/demo-eval/options.js';
import { DEFAULT_VOCABULARY, readVocabulary } from '../../bench/demo-eval/world.js';
import { type Background, type Degrade, type DrawnObject, renderScene, type SceneSpec } from './scenes.js';

const worldFile = join(REPO_ROOT, 'tools/train-demo/world.json');
const vocabulary = existsSync(worldFile) ? readVocabulary(worldFile) : DEFAULT_VOCABULARY;
const options = { vocabulary };

const single = (background: Background, object: Partial<DrawnObject> & { shape: string }): SceneSpec => ({
  background,
  objects: [{ colour: 'red', x: 0.5, y: 0.5, r: 0.13, ...object }],
});

describe('analyseScene on drawn scenes', () => {
  it('reads a red circle in the centre of a white picture', async () => {
    const image = await renderScene(single({ kind: 'plain', colour: 'white' }, { shape: 'circle' }));
    const a = analyseScene(image, options);
    expect(a.background.map((b) => b.colour)).toEqual(['white']);
    expect(a).toMatchObject({ objectColour: 'red', shape: 'circle', position: 'centre', count: 1 });
    expect(a.objects[0]!.x).toBeCloseTo(0.5, 2);
    expect(a.objects[0]!.area).toBeCloseTo(Math.PI * 0.13 ** 2, 2);
  });

  it.each([
    ['circle', 'top left', 0.25, 0.25],
    ['square', 'top right', 0.75, 0.25],
    ['triangle', 'bottom left', 0.25, 0.75],
    ['star', 'bottom right', 0.75, 0.75],
    ['ring', 'left', 0.25, 0.5],
    ['heart', 'right', 0.75, 0.5],
    ['cross', 'bottom', 0.5, 0.75],
  ])('tells a %s in the %s', async (shape, position, x, y) => {
    const image = await renderScene(
      single({ kind: 'plain', colour: 'dark blue' }, { shape, colour: 'yellow', x, y }),
    );
    const check = assertScene(
      image,
      { background: 'dark blue', colour: 'yellow', shape, position, count: 1 },
      options,
    );
    expect(check.failures).toEqual([]);
  });

  it('finds an object under a horizon, and names sky and ground apart', async () => {
    const image = await renderScene(
      single(
        { kind: 'horizon', sky: 'light blue', ground: 'green' },
        { shape: 'star', colour: 'red', x: 0.25, y: 0.25 },
      ),
    );
    const check = assertScene(
      image,
      {
        background: ['light blue', 'green'],
        backgroundKind: 'horizon',
        colour: 'red',
        shape: 'star',
        position: 'top left',
        count: 1,
      },
      options,
    );
    expect(check.failures).toEqual([]);
    // The same colours the other way round are a different picture.
    const swapped = assertScene(
      image,
      { background: ['green', 'light blue'], backgroundKind: 'horizon' },
      options,
    );
    expect(swapped.verdicts.background?.ok).toBe(false);
  });

  it('an object straddling the horizon stays one object', async () => {
    const image = await renderScene(
      single(
        { kind: 'horizon', sky: 'blue', ground: 'brown' },
        { shape: 'square', colour: 'white', y: 0.62, r: 0.2 },
      ),
    );
    expect(assertScene(image, { colour: 'white', shape: 'square', count: 1 }, options).failures).toEqual([]);
  });

  it.each(['horizontal', 'vertical'] as const)('counts three hearts on %s stripes', async (orientation) => {
    const image = await renderScene({
      background: { kind: 'stripes', colours: ['black', 'yellow'], orientation },
      objects: [
        { shape: 'heart', colour: 'cyan', x: 0.25, y: 0.3, r: 0.085 },
        { shape: 'heart', colour: 'cyan', x: 0.7, y: 0.35, r: 0.085 },
        { shape: 'heart', colour: 'cyan', x: 0.45, y: 0.75, r: 0.085 },
      ],
    });
    const check = assertScene(
      image,
      { background: ['black', 'yellow'], colour: 'cyan', shape: 'heart', count: 3 },
      options,
    );
    expect(check.failures).toEqual([]);
    expect(check.analysis.layout).not.toBe('global');
  });

  it('keeps an object coloured like the seam between two stripes', async () => {
    // Grey is what black and white stripes blend to at their edges.
    const image = await renderScene(
      {
        background: { kind: 'stripes', colours: ['black', 'white'], orientation: 'vertical' },
        objects: [{ shape: 'square', colour: 'grey', x: 0.5, y: 0.5, r: 0.13 }],
      },
      { blur: 1.5 },
    );
    const check = assertScene(
      image,
      { background: ['black', 'white'], colour: 'grey', shape: 'square', count: 1 },
      options,
    );
    expect(check.failures).toEqual([]);
  });

  it('counts four small objects and reads a composition', async () => {
    const four = await renderScene({
      background: { kind: 'plain', colour: 'green' },
      objects: [0.2, 0.4, 0.6, 0.8].map((x, i) => ({
        shape: 'triangle',
        colour: 'white',
        x,
        y: 0.3 + 0.12 * i,
        r: 0.085,
      })),
    });
    expect(
      assertScene(four, { background: 'green', colour: 'white', shape: 'triangle', count: 4 }, options)
        .failures,
    ).toEqual([]);
    const composition = await renderScene({
      background: { kind: 'plain', colour: 'white' },
      objects: [
        { shape: 'circle', colour: 'red', x: 0.5, y: 0.28, r: 0.13 },
        { shape: 'square', colour: 'blue', x: 0.5, y: 0.72, r: 0.13 },
      ],
    });
    const pair = [
      { colour: 'red', shape: 'circle' },
      { colour: 'blue', shape: 'square' },
    ];
    expect(
      assertScene(composition, { objects: pair, relation: 'above', count: 2 }, options).failures,
    ).toEqual([]);
    expect(assertScene(composition, { objects: pair, relation: 'below' }, options).verdicts.relation).toEqual(
      {
        ok: false,
        expected: 'below',
        found: 'above',
      },
    );
  });

  it('a wrong expectation fails, attribute by attribute', async () => {
    const image = await renderScene(
      single({ kind: 'plain', colour: 'white' }, { shape: 'circle', x: 0.25, y: 0.25 }),
    );
    const right = assertScene(
      image,
      { background: 'white', colour: 'red', shape: 'circle', position: 'top left', count: 1 },
      options,
    );
    expect(right.ok).toBe(true);
    const wrong = assertScene(
      image,
      { background: 'black', colour: 'blue', shape: 'square', position: 'bottom right', count: 2 },
      options,
    );
    expect(wrong.ok).toBe(false);
    expect(Object.fromEntries(Object.entries(wrong.verdicts).map(([k, v]) => [k, v.ok]))).toEqual({
      background: false,
      colour: false,
      shape: false,
      position: false,
      count: false,
    });
    expect(wrong.failures).toContain('shape: expected square, found circle');
    expect(wrong.failures).toContain('colour: expected blue, found red');
    // "a red circle" is not "a blue square", even with nothing else asked.
    expect(assertScene(image, { colour: 'blue', shape: 'square' }, options).ok).toBe(false);
  });

  it('an empty picture has nothing in it', async () => {
    const image = await renderScene({ background: { kind: 'plain', colour: 'grey' }, objects: [] });
    const a = analyseScene(image, options);
    expect(a.count).toBe(0);
    expect(judgeScene(a, { colour: 'red', count: 1 })).toMatchObject({
      colour: { ok: false, found: '(none)' },
      count: { ok: false, found: '0' },
    });
  });

  it('names the nearest position', () => {
    expect(nearestPosition(0.5, 0.5, vocabulary)).toBe('centre');
    expect(nearestPosition(0.2, 0.3, vocabulary)).toBe('top left');
    expect(nearestPosition(0.9, 0.55, vocabulary)).toBe('right');
  });
});

// ---------------------------------------------------------------------------------------------
// A battery of scenes like the drawn world's (every shape on every kind of background, counts,
// compositions), clean and degraded as a small decoder might (blur, noise): the analysis's
// accuracy per attribute.

/** Deterministic choice of colours far apart (as world.py's min_colour_distance). */
function palettePicker(seed: number) {
  let state = seed;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const rgb = Object.fromEntries(vocabulary.colours.map((c) => [c.name, c.rgb]));
  const far = (a: string, b: string) => Math.hypot(...rgb[a]!.map((v, i) => v - rgb[b]![i]!)) >= 90;
  const names = Object.keys(rgb);
  return {
    next,
    colour(avoid: string[]): string {
      const ok = names.filter((n) => avoid.every((a) => far(n, a)));
      return ok[Math.floor(next() * ok.length)]!;
    },
  };
}

interface Case {
  spec: SceneSpec;
  expected: SceneExpectation;
}

function battery(): Case[] {
  const pick = palettePicker(13);
  const shapes = vocabulary.shapes.filter((s) =>
    ['circle', 'square', 'triangle', 'star', 'ring', 'heart', 'cross'].includes(s),
  );
  const positions = Object.entries(vocabulary.positions);
  const sizes = [0.11, 0.16, 0.24]; // world.json's small, medium, large
  const cases: Case[] = [];
  const backgroundOf = (k: number): { bg: Background; colours: string[]; kind: string } => {
    const a = pick.colour([]);
    const b = pick.colour([a]);
    if (k % 4 === 0 || k % 4 === 3) return { bg: { kind: 'plain', colour: a }, colours: [a], kind: 'plain' };
    if (k % 4 === 1) return { bg: { kind: 'horizon', sky: a, ground: b }, colours: [a, b], kind: 'horizon' };
    const orientation = k % 8 === 2 ? 'horizontal' : 'vertical';
    return { bg: { kind: 'stripes', colours: [a, b], orientation }, colours: [a, b], kind: 'stripes' };
  };
  let k = 0;
  for (const shape of shapes) {
    for (let j = 0; j < 4; j++, k++) {
      const { bg, colours, kind } = backgroundOf(k);
      const [position, [px, py]] = positions[(k * 5) % positions.length]!;
      const r = sizes[(k + j) % sizes.length]!;
      const jitter = () => (pick.next() - 0.5) * 0.06;
      const x = Math.min(Math.max(px + jitter(), r + 0.02), 1 - r - 0.02);
      const y = Math.min(Math.max(py + jitter(), r + 0.02), 1 - r - 0.02);
      const colour = pick.colour(colours);
      cases.push({
        spec: { background: bg, objects: [{ shape, colour, x, y, r }] },
        expected: { background: colours, backgroundKind: kind, colour, shape, position, count: 1 },
      });
    }
  }
  // Several alike, placed apart as world.py places them.
  for (let j = 0; j < 14; j++, k++) {
    const { bg, colours, kind } = backgroundOf(k);
    const count = 2 + (j % 3);
    const shape = shapes[j % shapes.length]!;
    const colour = pick.colour(colours);
    const r = count > 2 ? 0.11 : 0.16;
    const objects: DrawnObject[] = [];
    while (objects.length < count) {
      const x = r + 0.03 + pick.next() * (1 - 2 * r - 0.06);
      const y = r + 0.03 + pick.next() * (1 - 2 * r - 0.06);
      if (objects.every((o) => Math.hypot(x - o.x, y - o.y) > 1.25 * (r + o.r) + 0.03)) {
        objects.push({ shape, colour, x, y, r });
      }
    }
    cases.push({
      spec: { background: bg, objects },
      expected: { background: colours, backgroundKind: kind, colour, shape, count },
    });
  }
  // Compositions.
  const relations: [string, [number, number], [number, number]][] = [
    ['above', [0.5, 0.28], [0.5, 0.72]],
    ['below', [0.5, 0.72], [0.5, 0.28]],
    ['left of', [0.28, 0.5], [0.72, 0.5]],
    ['right of', [0.72, 0.5], [0.28, 0.5]],
  ];
  for (let j = 0; j < 8; j++, k++) {
    const { bg, colours, kind } = backgroundOf(k);
    const [relation, p1, p2] = relations[j % 4]!;
    const c1 = pick.colour(colours);
    const c2 = pick.colour([...colours, c1]);
    const s1 = shapes[j % shapes.length]!;
    const s2 = shapes[(j + 3) % shapes.length]!;
    cases.push({
      spec: {
        background: bg,
        objects: [
          { shape: s1, colour: c1, x: p1[0], y: p1[1], r: 0.16 },
          { shape: s2, colour: c2, x: p2[0], y: p2[1], r: 0.16 },
        ],
      },
      expected: {
        background: colours,
        backgroundKind: kind,
        objects: [
          { colour: c1, shape: s1 },
          { colour: c2, shape: s2 },
        ],
        relation,
        count: 2,
      },
    });
  }
  return cases;
}

async function accuracy(degrade: Degrade): Promise<{ rates: Record<string, number>; misses: string[] }> {
  const totals: Record<string, [number, number]> = {};
  const misses: string[] = [];
  let i = 0;
  for (const { spec, expected } of battery()) {
    const image = await renderScene(spec, { ...degrade, seed: ++i });
    const check = assertScene(image, expected, options);
    for (const [attribute, v] of Object.entries(check.verdicts)) {
      totals[attribute] ??= [0, 0];
      totals[attribute]![1]++;
      if (v.ok) totals[attribute]![0]++;
    }
    if (!check.ok) misses.push(`${JSON.stringify(expected)} → ${check.failures.join('; ')}`);
  }
  const rates = Object.fromEntries(Object.entries(totals).map(([k, [ok, n]]) => [k, ok / n]));
  console.log(
    `analysis accuracy (${degrade.blur ? `blur σ ${degrade.blur}, ` : ''}${degrade.noise ? `noise ±${degrade.noise}` : 'clean'}):`,
    Object.entries(totals)
      .map(([k, [ok, n]]) => `${k} ${ok}/${n}`)
      .join(', '),
  );
  return { rates, misses };
}

describe('analysis accuracy on a battery of drawn scenes', () => {
  it('is exact on clean scenes', { timeout: 180_000 }, async () => {
    const { rates, misses } = await accuracy({});
    expect(misses).toEqual([]);
    expect(Object.values(rates).every((r) => r === 1)).toBe(true);
  });

  it('holds up on blurred, noisy scenes (as a small decoder draws)', { timeout: 180_000 }, async () => {
    const { rates, misses } = await accuracy({ blur: 1.5, noise: 16 });
    // Far above the model's targets (95, 90, 85, 75, 70 %): the analysis is not what limits them.
    for (const [attribute, rate] of Object.entries(rates))
      expect(rate, `${attribute}: ${misses.join('\n')}`).toBeGreaterThanOrEqual(0.95);
  });
});
