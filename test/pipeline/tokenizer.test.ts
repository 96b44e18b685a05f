import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.js';
import { SD3Tokenizer, T5_MAX_CHARACTERS } from '../../src/pipeline/text/tokenizer.js';
import { parsePromptWeights, parsePythonFloat } from '../../src/pipeline/text/tokenizer-weights.js';
import { goldenSets, manifestPath } from '../golden/manifest.js';

interface TokensJson {
  clip_tokenizer: string;
  t5_tokenizer: string;
  cases: { prompt: string; l: number[][]; g: number[][]; t5xxl: number[][] }[];
}

const scratch = mkdtempSync(join(tmpdir(), 'atelier-tokenizer-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.each(goldenSets('tokens'))('tokenizers of the $name golden set', (set) => {
  const golden = set.readJson<TokensJson>(set.component<{ io: string }>('tokens').io);
  const dirs = {
    clip: set.path(manifestPath(golden.clip_tokenizer)),
    t5: set.path(manifestPath(golden.t5_tokenizer)),
  };
  const tokenizer = SD3Tokenizer.fromDirs(dirs);
  const work = mkdtempSync(join(scratch, 'set-'));

  describe('SD3Tokenizer against the reference’s tokenize_with_weights', () => {
    it.each(golden.cases.map((c) => [JSON.stringify(c.prompt).slice(0, 60), c] as const))(
      'matches %s exactly',
      (_label, c) => {
        const tokens = tokenizer.tokenize(c.prompt);
        expect(tokens.l).toEqual(c.l);
        expect(tokens.g).toEqual(c.g);
        expect([tokens.t5]).toEqual(c.t5xxl);
      },
    );

    it('flags exactly the prompts the encoders will not read whole', () => {
      for (const c of golden.cases) {
        const cut = c.l.length > 1 || c.g.length > 1 || Array.from(c.prompt).length > T5_MAX_CHARACTERS;
        expect(tokenizer.tokenize(c.prompt).truncated, c.prompt.slice(0, 40)).toBe(cut);
      }
      expect(golden.cases.some((c) => c.l.length > 1)).toBe(true);
    });

    it('counts the prompt’s CLIP tokens, at most 75 of which a chunk carries', () => {
      const long = golden.cases.find((c) => c.l.length > 1)!;
      const tokens = tokenizer.tokenize(long.prompt);
      expect(tokens.clipTokenCount).toBeGreaterThan(75);
      expect(tokenizer.tokenize('').clipTokenCount).toBe(0);
    });

    it('cuts the T5 text at 226 code points, not UTF-16 units, as Python slices', () => {
      const t5 = tokenizer.t5!;
      const prompt = `${'🦊'.repeat(T5_MAX_CHARACTERS - 1)}ab`;
      expect(tokenizer.tokenize(prompt).t5).toEqual(t5.tokenize(`${'🦊'.repeat(T5_MAX_CHARACTERS - 1)}a`)[0]);
      expect(tokenizer.tokenize(prompt).truncated).toBe(true);
    });

    it('pads T5 to at least 77 with 0 after its end token, and CLIP-L with its end token, CLIP-G with 0', () => {
      const tokens = tokenizer.tokenize('a lighthouse');
      const t5End = tokenizer.t5!.endToken;
      expect(tokens.t5!.length).toBe(77);
      const end = tokens.t5!.indexOf(t5End);
      expect(tokens.t5!.slice(end + 1).every((id) => id === 0)).toBe(true);
      const lEnd = tokenizer.clipL.endToken;
      expect(tokens.l[0].at(-1)).toBe(lEnd);
      expect(tokens.g[0].at(-1)).toBe(0);
      expect(tokens.l[0][0]).toBe(tokenizer.clipL.startToken);
    });

    it('ignores the weight syntax: "(red:1.3)" gives the tokens of "red"', () => {
      expect(tokenizer.tokenize('a (red:1.3) fox').l).toEqual(tokenizer.tokenize('a red fox').l);
      expect(tokenizer.tokenize('a ((red)) fox').g).toEqual(tokenizer.tokenize('a red fox').g);
    });

    it('tokenizes for CLIP alone when no T5 tokenizer is given', () => {
      const clipOnly = SD3Tokenizer.fromDirs({ clip: dirs.clip });
      const tokens = clipOnly.tokenize(golden.cases[0].prompt);
      expect(tokens.t5).toBeUndefined();
      expect(tokens.l).toEqual(golden.cases[0].l);
    });
  });

  describe('tokenizer files', () => {
    it('builds the CLIP tokenizer from vocab.json + merges.txt (a diffusers tokenizer/ folder) with the same ids', () => {
      const spec = JSON.parse(readFileSync(join(dirs.clip, 'tokenizer.json'), 'utf8'));
      const dir = join(work, 'slow-clip');
      mkdirSync(dir);
      writeFileSync(join(dir, 'vocab.json'), JSON.stringify(spec.model.vocab));
      const merges = spec.model.merges.map((m: string | string[]) => (Array.isArray(m) ? m.join(' ') : m));
      writeFileSync(join(dir, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
      const fromSlowFiles = SD3Tokenizer.fromDirs({ clip: dir, t5: dirs.t5 });
      for (const c of golden.cases) {
        expect(fromSlowFiles.tokenize(c.prompt).l, c.prompt.slice(0, 40)).toEqual(c.l);
      }
    });

    it('names the missing tokenizer.json in a ModelError', () => {
      const dir = join(work, 'empty');
      mkdirSync(dir);
      const attempt = () => SD3Tokenizer.fromDirs({ clip: dirs.clip, t5: dir });
      expect(attempt).toThrow(ModelError);
      expect(attempt).toThrow(join(dir, 'tokenizer.json'));
      expect(() => SD3Tokenizer.fromDirs({ clip: join(work, 'nowhere') })).toThrow(
        /CLIP tokenizer folder .* does not exist/,
      );
    });

    it('tells a CLIP folder from a T5 folder', () => {
      expect(() => SD3Tokenizer.fromDirs({ clip: dirs.t5 })).toThrow(/is not a CLIP tokenizer/);
      expect(() => SD3Tokenizer.fromDirs({ clip: dirs.clip, t5: dirs.clip })).toThrow(ModelError);
    });

    it('reports a tokenizer.json that is not JSON as a ModelError naming it', () => {
      const dir = join(work, 'broken');
      mkdirSync(dir);
      writeFileSync(join(dir, 'tokenizer.json'), '{ "model": ');
      try {
        SD3Tokenizer.fromDirs({ clip: dir });
        expect.unreachable();
      } catch (error) {
        expect(error).toBeInstanceOf(ModelError);
        expect((error as ModelError).file).toBe(join(dir, 'tokenizer.json'));
      }
    });
  });
});

describe('prompt weight syntax', () => {
  it('parses weights and keeps escaped parentheses as text', () => {
    expect(parsePromptWeights('a (red:1.3) fox, ((sharp)), \\(plain\\)')).toEqual([
      { text: 'a ', weight: 1 },
      { text: 'red', weight: 1.3 },
      { text: ' fox, ', weight: 1 },
      { text: 'sharp', weight: 1.2100000000000002 },
      { text: ', (plain)', weight: 1 },
    ]);
  });

  // Outputs of the reference's token_weights(escape_important(s), 1.0), unescaped, under CPython 3.
  it.each([
    ['(cat:abc)', [['cat:abc', 1.1]]],
    ['(cat: 1_000.5e-3 )', [['cat', 1.0005]]],
    ['(cat:1__0)', [['cat:1__0', 1.1]]],
    ['unbalanced) (open', [['unbalanced) (open', 1]]],
    [
      '((a:2) b:3)',
      [
        ['a', 2],
        [' b', 3],
      ],
    ],
    ['(a:1.2:3)', [['a:1.2', 3]]],
    [
      'x (:5) y',
      [
        ['x ', 1],
        [':5', 1.1],
        [' y', 1],
      ],
    ],
    ['((x)', [['(x', 1.1]]],
  ] as const)('parses %j as the reference does', (prompt, expected) => {
    expect(parsePromptWeights(prompt).map((s) => [s.text, s.weight])).toEqual(expected);
  });

  it('accepts what float() accepts', () => {
    expect(parsePythonFloat('1.5')).toBe(1.5);
    expect(parsePythonFloat('  -.5 ')).toBe(-0.5);
    expect(parsePythonFloat('5.')).toBe(5);
    expect(parsePythonFloat('1E3')).toBe(1000);
    expect(parsePythonFloat('Infinity')).toBe(Number.POSITIVE_INFINITY);
    expect(parsePythonFloat('-inf')).toBe(Number.NEGATIVE_INFINITY);
    expect(parsePythonFloat('nan')).toBeNaN();
    expect(parsePythonFloat('١٫٥')).toBeUndefined(); // Arabic decimal separator is not '.'
    expect(parsePythonFloat('١٢')).toBe(12); // Unicode digits are digits
    for (const bad of ['', '.', 'e5', '1e', '_1', '1_', '0x10', '1,5', 'abc']) {
      expect(parsePythonFloat(bad), bad).toBeUndefined();
    }
  });
});
