/**
 * Tokenizer folders: where they are, and their contents in the form @huggingface/tokenizers takes
 * (`tokenizer.json` + `tokenizer_config.json` objects). A CLIP folder in the diffusers "slow"
 * format (`vocab.json` + `merges.txt`) is converted in memory.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelError } from '../../errors.js';
import { clipTokenizerConfig, clipTokenizerJson, parseMerges } from './clip-tokenizer-json.js';

export type TokenizerKind = 'clip' | 't5';

export interface TokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

/** Whether `dir` holds a tokenizer of that kind in a form Atelier reads. */
export function hasTokenizer(dir: string, kind: TokenizerKind): boolean {
  if (existsSync(join(dir, 'tokenizer.json'))) return true;
  return kind === 'clip' && existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'));
}

/** Reads (or, for vocab.json + merges.txt, builds) a tokenizer; a broken file is a ModelError naming it. */
export function readTokenizerFiles(dir: string, kind: TokenizerKind): TokenizerFiles {
  const configPath = join(dir, 'tokenizer_config.json');
  const tokenizerConfig = existsSync(configPath)
    ? readJson(configPath)
    : kind === 'clip'
      ? clipTokenizerConfig()
      : {};
  const jsonPath = join(dir, 'tokenizer.json');
  if (existsSync(jsonPath)) return { tokenizerJson: readJson(jsonPath), tokenizerConfig };
  if (kind === 'clip' && existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'))) {
    const vocab = readJson(join(dir, 'vocab.json')) as Record<string, number>;
    const mergesPath = join(dir, 'merges.txt');
    let merges: [string, string][];
    try {
      merges = parseMerges(readFileSync(mergesPath, 'utf8'));
    } catch (error) {
      throw new ModelError(mergesPath, `${mergesPath}: ${(error as Error).message} (corrupt file?)`, {
        cause: error,
      });
    }
    return { tokenizerJson: clipTokenizerJson({ vocab, merges }, dir), tokenizerConfig };
  }
  const wanted = kind === 'clip' ? 'tokenizer.json (or vocab.json + merges.txt)' : 'tokenizer.json';
  throw new ModelError(dir, `${dir}: no ${kind.toUpperCase()} tokenizer here (expected ${wanted})`);
}

/** Number of ids a tokenizer can produce (its largest id + 1): must fit the text encoder's embedding. */
export function tokenizerIdCount(tokenizerJson: Record<string, unknown>): number {
  let max = -1;
  const model = tokenizerJson.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  if (Array.isArray(vocab)) max = vocab.length - 1;
  else if (vocab && typeof vocab === 'object')
    for (const id of Object.values(vocab)) max = Math.max(max, Number(id));
  for (const token of (tokenizerJson.added_tokens as { id: number }[] | undefined) ?? [])
    max = Math.max(max, token.id);
  return max + 1;
}

function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ModelError(path, `${path}: cannot be read (${(error as NodeJS.ErrnoException).code})`, {
      cause: error,
    });
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new ModelError(path, `${path}: not valid JSON (corrupt or partial download?)`, { cause: error });
  }
}
