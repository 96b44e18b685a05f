/**
 * Loads a tokenizer folder into @huggingface/tokenizers. A folder holds `tokenizer.json` (and
 * optionally `tokenizer_config.json`), as Hugging Face repos ship them; a CLIP folder of a
 * diffusers repo (`tokenizer/`, `tokenizer_2/`) may instead hold only the slow tokenizer's
 * `vocab.json` + `merges.txt`, from which the equivalent fast tokenizer is built here, following
 * transformers' `CLIPConverter` (convert_slow_tokenizer.py).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelError } from '../../errors.js';

export type TokenizerKind = 'clip' | 't5';

const LABEL: Record<TokenizerKind, string> = { clip: 'CLIP', t5: 'T5' };

/** Reads the tokenizer in `dir`; throws a ModelError naming the missing or broken file. */
export function loadTokenizer(dir: string, kind: TokenizerKind): Tokenizer {
  const label = LABEL[kind];
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ModelError(dir, `The ${label} tokenizer folder ${dir} does not exist. ${whatToDo(kind)}`);
  }
  const tokenizerJson = join(dir, 'tokenizer.json');
  const config = readOptionalJson(join(dir, 'tokenizer_config.json'), label) ?? {};
  let spec: Record<string, unknown>;
  if (existsSync(tokenizerJson)) {
    spec = readJson(tokenizerJson, label) as Record<string, unknown>;
  } else if (kind === 'clip' && existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt'))) {
    spec = clipSpecFromVocab(
      dir,
      config,
      readOptionalJson(join(dir, 'special_tokens_map.json'), label) ?? {},
    );
  } else {
    const also = kind === 'clip' ? ' (or vocab.json and merges.txt)' : '';
    throw new ModelError(tokenizerJson, `${tokenizerJson} is missing${also}. ${whatToDo(kind)}`);
  }
  try {
    return new Tokenizer(spec, config);
  } catch (error) {
    throw new ModelError(
      tokenizerJson,
      `The ${label} tokenizer in ${dir} cannot be read: ${(error as Error).message}. ${whatToDo(kind)}`,
      { cause: error },
    );
  }
}

function whatToDo(kind: TokenizerKind): string {
  const repoFolder = kind === 'clip' ? 'tokenizer/' : 'tokenizer_3/';
  return `Copy the ${repoFolder} folder of the model's Hugging Face repo there (atelier models pull does this).`;
}

function readJson(path: string, label: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ModelError(
      path,
      `The ${label} tokenizer file ${path} is not valid JSON: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

function readOptionalJson(path: string, label: string): Record<string, unknown> | undefined {
  return existsSync(path) ? (readJson(path, label) as Record<string, unknown>) : undefined;
}

/** A special token in tokenizer_config.json / special_tokens_map.json: a string or `{ content }`. */
function tokenName(value: unknown, fallback: string): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return fallback;
}

/** The tokenizer.json that transformers' CLIPConverter would write for this vocab and merges. */
function clipSpecFromVocab(
  dir: string,
  config: Record<string, unknown>,
  specialMap: Record<string, unknown>,
): Record<string, unknown> {
  const vocabPath = join(dir, 'vocab.json');
  const vocab = readJson(vocabPath, 'CLIP') as Record<string, number>;
  const merges = readFileSync(join(dir, 'merges.txt'), 'utf8')
    .split('\n')
    .filter((line, i) => line.trim() !== '' && !(i === 0 && line.startsWith('#version')))
    .map((line) => line.split(' '));
  const name = (key: string, fallback: string) => tokenName(config[key] ?? specialMap[key], fallback);
  const bos = name('bos_token', '<|startoftext|>');
  const eos = name('eos_token', '<|endoftext|>');
  const unk = name('unk_token', '<|endoftext|>');
  const idOf = (token: string) => {
    const id = vocab[token];
    if (id === undefined)
      throw new ModelError(vocabPath, `${vocabPath} has no ${token} token; it is not a CLIP vocabulary`);
    return id;
  };
  const special = (content: string) => ({
    id: idOf(content),
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(bos), ...(eos === bos ? [] : [special(eos)])],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'NFC' },
        { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' },
        { type: 'Lowercase' },
      ],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: {
            Regex: `${escapeRegex(bos)}|${escapeRegex(eos)}|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`,
          },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [eos, idOf(eos)],
      cls: [bos, idOf(bos)],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

function escapeRegex(text: string): string {
  return text.replace(/[|\\{}()[\]^$+*?.]/g, '\\$&');
}
