/**
 * Tokenizer folders, read into @huggingface/tokenizers. A folder holds `tokenizer.json` (and
 * optionally `tokenizer_config.json`), as Hugging Face repos ship them; a CLIP folder of a
 * diffusers repo (`tokenizer/`, `tokenizer_2/`) may instead hold only the slow tokenizer's
 * `vocab.json` + `merges.txt`, from which the equivalent fast tokenizer is built in memory
 * (clip-tokenizer-json.ts, after transformers' `CLIPConverter`).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelError } from '../../errors.js';
import {
  CLIP_BOS,
  CLIP_EOS,
  clipTokenizerConfig,
  clipTokenizerJson,
  parseMerges,
} from './clip-tokenizer-json.js';

export type TokenizerKind = 'clip' | 't5';

export interface TokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

const LABEL: Record<TokenizerKind, string> = { clip: 'CLIP', t5: 'T5' };

/** Whether `dir` holds a tokenizer of that kind in a form Atelier reads. */
export function hasTokenizer(dir: string, kind: TokenizerKind): boolean {
  if (existsSync(join(dir, 'tokenizer.json'))) return true;
  return kind === 'clip' && existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'));
}

/** Reads (or, for vocab.json + merges.txt, builds) a tokenizer; a broken file is a ModelError naming it. */
export function readTokenizerFiles(dir: string, kind: TokenizerKind): TokenizerFiles {
  const configPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? readJson(configPath) : undefined;
  const tokenizerConfig = config ?? (kind === 'clip' ? clipTokenizerConfig() : {});
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
    const specialMapPath = join(dir, 'special_tokens_map.json');
    const specialMap = existsSync(specialMapPath) ? readJson(specialMapPath) : {};
    const name = (key: string, fallback: string) => tokenName(config?.[key] ?? specialMap[key], fallback);
    const special = {
      bos: name('bos_token', CLIP_BOS),
      eos: name('eos_token', CLIP_EOS),
      unk: name('unk_token', CLIP_EOS),
    };
    return {
      tokenizerJson: clipTokenizerJson({ vocab, merges, special }, join(dir, 'vocab.json')),
      tokenizerConfig,
    };
  }
  const wanted = kind === 'clip' ? 'tokenizer.json (or vocab.json + merges.txt)' : 'tokenizer.json';
  throw new ModelError(dir, `${dir}: no ${LABEL[kind]} tokenizer here (expected ${wanted})`);
}

/** Loads the tokenizer in `dir`; throws a ModelError naming the missing or broken file and what to do. */
export function loadTokenizer(dir: string, kind: TokenizerKind): Tokenizer {
  const label = LABEL[kind];
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ModelError(dir, `The ${label} tokenizer folder ${dir} does not exist. ${whatToDo(kind)}`);
  }
  const tokenizerJson = join(dir, 'tokenizer.json');
  if (!hasTokenizer(dir, kind)) {
    const also = kind === 'clip' ? ' (or vocab.json and merges.txt)' : '';
    throw new ModelError(tokenizerJson, `${tokenizerJson} is missing${also}. ${whatToDo(kind)}`);
  }
  const files = readTokenizerFiles(dir, kind);
  try {
    return new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
  } catch (error) {
    throw new ModelError(
      tokenizerJson,
      `The ${label} tokenizer in ${dir} cannot be read: ${(error as Error).message}. ${whatToDo(kind)}`,
      { cause: error },
    );
  }
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

function whatToDo(kind: TokenizerKind): string {
  const repoFolder = kind === 'clip' ? 'tokenizer/' : 'tokenizer_3/';
  return `Copy the ${repoFolder} folder of the model's Hugging Face repo there (atelier models pull does this).`;
}

/** A special token in tokenizer_config.json / special_tokens_map.json: a string or `{ content }`. */
function tokenName(value: unknown, fallback: string): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return fallback;
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
