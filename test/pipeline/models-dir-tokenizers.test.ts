/**
 * diffusers' CLIP tokenizer folders hold vocab.json + merges.txt, not tokenizer.json: Atelier
 * builds the tokenizer.json. Checked against each golden set's CLIP tokenizer (the real one in
 * ../shared/golden, the project's tiny one in its own set): split into the two "slow" files here,
 * rebuilt, it must tokenize every golden prompt to the same ids.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTokenizerFiles, tokenizerIdCount } from '../../src/pipeline/text/tokenizer-files.js';
import { goldenSets, manifestPath } from '../golden/manifest.js';

interface TokensFile {
  cases: { prompt: string }[];
}

describe.each(goldenSets('tokens'))('the $name golden set’s CLIP tokenizer', (set) => {
  const tokens = set.component<{ io: string; tokenizers: string }>('tokens');
  const goldenClipDir = set.path(manifestPath(tokens.tokenizers), 'clip');
  const golden = JSON.parse(readFileSync(join(goldenClipDir, 'tokenizer.json'), 'utf8'));
  const prompts = set.readJson<TokensFile>(tokens.io).cases.map((c) => c.prompt);

  let slowDir: string;
  beforeAll(() => {
    slowDir = mkdtempSync(join(tmpdir(), 'atelier-clip-slow-'));
    const merges: unknown[] = golden.model.merges;
    const lines = merges.map((m) => (Array.isArray(m) ? m.join(' ') : String(m)));
    writeFileSync(join(slowDir, 'vocab.json'), JSON.stringify(golden.model.vocab));
    writeFileSync(join(slowDir, 'merges.txt'), `#version: 0.2\n${lines.join('\n')}\n`);
  });
  afterAll(() => rmSync(slowDir, { recursive: true, force: true }));

  describe('CLIP tokenizer from vocab.json + merges.txt', () => {
    it('tokenizes every golden prompt to the ids of the set’s tokenizer.json', () => {
      const rebuilt = readTokenizerFiles(slowDir, 'clip');
      const reference = readTokenizerFiles(goldenClipDir, 'clip');
      const ours = new Tokenizer(rebuilt.tokenizerJson as never, rebuilt.tokenizerConfig as never);
      const theirs = new Tokenizer(reference.tokenizerJson as never, reference.tokenizerConfig as never);
      expect(prompts.length).toBeGreaterThan(0);
      for (const prompt of prompts)
        expect(ours.encode(prompt).ids, prompt).toEqual(theirs.encode(prompt).ids);
    });

    it('has the same pipeline as the set’s tokenizer.json: normalizer, pre-tokenizer, BPE settings, special tokens', () => {
      const rebuilt = readTokenizerFiles(slowDir, 'clip').tokenizerJson as typeof golden;
      for (const part of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder', 'added_tokens']) {
        expect(rebuilt[part], part).toEqual(golden[part]);
      }
      const { vocab: _v, merges: _m, ...settings } = golden.model;
      expect(rebuilt.model).toMatchObject(settings);
      expect(tokenizerIdCount(rebuilt)).toBe(tokenizerIdCount(golden));
    });
  });
});
