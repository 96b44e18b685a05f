import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectationOf } from '../../bench/demo-eval/analyse.js';
import { REPO_ROOT } from '../../bench/demo-eval/options.js';
import {
  DEFAULT_VOCABULARY,
  parseHeldOut,
  parseVocabulary,
  readVocabulary,
} from '../../bench/demo-eval/world.js';

// Lines as tools/train-demo/world.py --held-out writes them.
const HELD_OUT = [
  '{"caption": "three small rings in purple under a pink sky above grey ground", "seed": 7000004, "type": "count", "background": "pink", "background_kind": "horizon", "background_colours": ["pink", "grey"], "background_named": true, "colour": "purple", "shape": "ring", "size": "small", "position": null, "count": 3, "relation": null, "objects": [{"shape": "ring", "colour": "purple", "size": "small", "x": 0.2202, "y": 0.362, "r": 0.0787}, {"shape": "ring", "colour": "purple", "size": "small", "x": 0.5703, "y": 0.2211, "r": 0.0811}, {"shape": "ring", "colour": "purple", "size": "small", "x": 0.246, "y": 0.664, "r": 0.0891}]}',
  '',
  '{"caption": "a cross in red at the bottom", "seed": 7000023, "type": "single", "background": "white", "background_kind": "plain", "background_colours": ["white"], "background_named": false, "colour": "red", "shape": "cross", "size": "medium", "position": "bottom", "count": 1, "relation": null, "objects": [{"shape": "cross", "colour": "red", "size": "medium", "x": 0.5036, "y": 0.7525, "r": 0.1394}]}',
  '{"caption": "a navy circle above a red square, gray background", "seed": 9, "type": "relation", "background": "gray", "background_kind": "plain", "background_colours": ["gray"], "background_named": true, "colour": "navy", "shape": "circle", "position": null, "count": 2, "relation": "above", "objects": [{"shape": "circle", "colour": "navy", "x": 0.5, "y": 0.28}, {"shape": "square", "colour": "red", "x": 0.5, "y": 0.72}]}',
].join('\n');

describe('the drawn world', () => {
  it('reads the vocabulary, falling back to the built-in one for what is missing', () => {
    const v = parseVocabulary(
      JSON.stringify({
        colours: { red: [215, 38, 38], teal: '#008080' },
        shapes: { circle: { plural: 'circles' }, moon: {} },
        positions: { centre: [0.5, 0.5], high: { x: 0.5, y: 0.1 } },
        image_size: 128,
      }),
    );
    expect(v.colours).toEqual([
      { name: 'red', rgb: [215, 38, 38] },
      { name: 'teal', rgb: [0, 128, 128] },
    ]);
    expect(v.shapes).toEqual(['circle', 'moon']);
    expect(v.positions).toEqual({ centre: [0.5, 0.5], high: [0.5, 0.1] });
    expect(v.imageSize).toBe(128);
    expect(parseVocabulary('{}')).toMatchObject({ shapes: DEFAULT_VOCABULARY.shapes, imageSize: 256 });
  });

  it.skipIf(!existsSync(join(REPO_ROOT, 'tools/train-demo/world.json')))(
    'reads tools/train-demo/world.json',
    () => {
      const v = readVocabulary(join(REPO_ROOT, 'tools/train-demo/world.json'));
      expect(v.colours.length).toBeGreaterThanOrEqual(10);
      expect(v.shapes).toEqual(
        expect.arrayContaining(['circle', 'square', 'triangle', 'star', 'ring', 'heart', 'cross']),
      );
      expect(v.positions['top left']).toEqual([0.25, 0.25]);
    },
  );

  it('reads held-out captions with their ground truth', () => {
    const [count, single, relation, ...rest] = parseHeldOut(HELD_OUT);
    expect(rest).toEqual([]);
    expect(count).toMatchObject({
      type: 'count',
      seed: 7000004,
      backgroundColours: ['pink', 'grey'],
      backgroundKind: 'horizon',
      backgroundNamed: true,
      colour: 'purple',
      shape: 'ring',
      count: 3,
    });
    expect(count!.position).toBeUndefined();
    expect(single).toMatchObject({ type: 'single', position: 'bottom', backgroundNamed: false });
    // Aliases become the palette's names.
    expect(relation).toMatchObject({ colour: 'dark blue', backgroundColours: ['grey'], relation: 'above' });
    expect(relation!.objects.map((o) => o.colour)).toEqual(['dark blue', 'red']);
  });

  it('turns ground truth into what the picture must show', () => {
    const [count, single, relation] = parseHeldOut(HELD_OUT);
    expect(expectationOf(count!)).toEqual({
      background: ['pink', 'grey'],
      backgroundKind: 'horizon',
      colour: 'purple',
      shape: 'ring',
      count: 3,
    });
    // An unnamed background is not judged.
    expect(expectationOf(single!)).toEqual({ colour: 'red', shape: 'cross', position: 'bottom', count: 1 });
    expect(expectationOf(relation!)).toMatchObject({
      relation: 'above',
      objects: [
        { colour: 'dark blue', shape: 'circle' },
        { colour: 'red', shape: 'square' },
      ],
    });
  });

  it('names the line that cannot be read', () => {
    expect(() => parseHeldOut('{"caption": "x", "colour": "red", "shape": "star"}\n{"seed": 1}')).toThrow(
      /line 2: .*no caption/,
    );
  });
});
