/**
 * SD3's three tokenizers wrapped exactly as the reference (Stability-AI/sd3.5 @ fbf8f48,
 * other_impls.py `SDTokenizer`, `SDXLClipGTokenizer`, `T5XXLTokenizer`, `SD3Tokenizer`), over
 * @huggingface/tokenizers reading the models' own tokenizer files:
 *
 * - CLIP-L and CLIP-G: the prompt's words (split on spaces after the weight syntax is parsed) are
 *   tokenized one by one and packed into chunks of 77 = start + 75 tokens + end, padded with the
 *   end token (L) or 0 (G). A word that does not fit moves whole to the next chunk, unless it is 8
 *   tokens or longer, which is split. The encoders read ONLY the first chunk (the reference's
 *   `encode_token_weights`), so later chunks mean the prompt was cut: `truncated`.
 * - T5: the prompt's first 226 characters (Python code points) in one chunk of any length, ending
 *   in the end token and padded with 0 to at least 77.
 */
import type { Tokenizer } from '@huggingface/tokenizers';
import { ModelError } from '../../errors.js';
import { loadTokenizer } from './tokenizer-files.js';
import { parsePromptWeights } from './tokenizer-weights.js';

/** CLIP's context length. */
export const CLIP_CHUNK_LENGTH = 77;
/** The reference tokenizes `text[:226]` for T5 (SD3Tokenizer.tokenize_with_weights). */
export const T5_MAX_CHARACTERS = 226;
/** The T5 chunk is padded to at least this many tokens (T5XXLTokenizer `min_length=77`). */
export const T5_MIN_LENGTH = 77;
/** Words of this many tokens or more may be split across chunks (`max_word_length`). */
const MAX_WORD_LENGTH = 8;

export interface SDTokenizerOptions {
  /** Chunk length; @default 77 */
  maxLength?: number;
  /** Pad with the end token (CLIP-L) rather than 0 (CLIP-G, T5); @default true */
  padWithEnd?: boolean;
  /** The tokenizer adds a start token (CLIP) before its end token (CLIP and T5); @default true */
  hasStartToken?: boolean;
  /** Pad every chunk to `maxLength`; @default true */
  padToMaxLength?: boolean;
  /** Pad the last chunk to at least this length; @default none */
  minLength?: number;
}

/** The reference's `SDTokenizer`: words → chunks of token ids. Weights are parsed and dropped. */
export class SDTokenizer {
  readonly startToken: number | undefined;
  readonly endToken: number;
  readonly padToken: number;
  readonly #tokenizer: Tokenizer;
  readonly #maxLength: number;
  readonly #padToMaxLength: boolean;
  readonly #minLength: number | undefined;

  constructor(tokenizer: Tokenizer, options: SDTokenizerOptions = {}) {
    this.#tokenizer = tokenizer;
    this.#maxLength = options.maxLength ?? CLIP_CHUNK_LENGTH;
    this.#padToMaxLength = options.padToMaxLength ?? true;
    this.#minLength = options.minLength;
    // The special tokens are whatever the tokenizer wraps an empty text in.
    const empty = tokenizer.encode('').ids;
    const hasStart = options.hasStartToken ?? true;
    if (empty.length !== (hasStart ? 2 : 1)) {
      throw new TypeError(
        `Expected the tokenizer to encode "" as ${hasStart ? '[start, end]' : '[end]'}, got [${empty}]`,
      );
    }
    this.startToken = hasStart ? empty[0] : undefined;
    this.endToken = hasStart ? empty[1] : empty[0];
    this.padToken = (options.padWithEnd ?? true) ? this.endToken : 0;
  }

  /** Token ids of each word of `text`, without start and end tokens. */
  words(text: string): number[][] {
    const skip = this.startToken === undefined ? 0 : 1;
    const words: number[][] = [];
    for (const segment of parsePromptWeights(text)) {
      for (const word of segment.text.replaceAll('\n', ' ').split(' ')) {
        if (word !== '') words.push(this.#tokenizer.encode(word).ids.slice(skip, -1));
      }
    }
    return words;
  }

  /** `tokenize_with_weights` without the weights: chunks of token ids. */
  tokenize(text: string): number[][] {
    const max = this.#maxLength;
    const newChunk = () => (this.startToken === undefined ? [] : [this.startToken]);
    let chunk = newChunk();
    const chunks = [chunk];
    for (let group of this.words(text)) {
      const isLarge = group.length >= MAX_WORD_LENGTH;
      while (group.length > 0) {
        if (group.length + chunk.length > max - 1) {
          const remaining = max - chunk.length - 1;
          if (isLarge) {
            chunk.push(...group.slice(0, remaining), this.endToken);
            group = group.slice(remaining);
          } else {
            chunk.push(this.endToken);
            if (this.#padToMaxLength) chunk.push(...new Array(remaining).fill(this.padToken));
          }
          chunk = newChunk();
          chunks.push(chunk);
        } else {
          chunk.push(...group);
          group = [];
        }
      }
    }
    chunk.push(this.endToken);
    if (this.#padToMaxLength && chunk.length < max)
      chunk.push(...new Array(max - chunk.length).fill(this.padToken));
    if (this.#minLength !== undefined && chunk.length < this.#minLength) {
      chunk.push(...new Array(this.#minLength - chunk.length).fill(this.padToken));
    }
    return chunks;
  }
}

export interface SD3Tokens {
  /** CLIP-L chunks, each of 77 ids; the encoder uses `l[0]`. */
  l: number[][];
  /** CLIP-G chunks, each of 77 ids (padded with 0); the encoder uses `g[0]`. */
  g: number[][];
  /** T5 ids, at least 77; absent when no T5 tokenizer was given (SD3 then runs without T5). */
  t5?: number[];
  /**
   * The encoders will not see the whole prompt: it needs more than one CLIP chunk, or is longer
   * than the 226 characters T5 reads. The user should be told; the image is still made.
   */
  truncated: boolean;
  /** The prompt's CLIP tokens (without start and end), of which a chunk holds at most 75. */
  clipTokenCount: number;
}

export interface SD3TokenizerDirs {
  /** Folder of the CLIP tokenizer, shared by CLIP-L and CLIP-G as in the reference. */
  clip: string;
  /** Folder of the T5 tokenizer; leave out to tokenize for CLIP alone. */
  t5?: string;
}

/** The reference's `SD3Tokenizer`: one prompt → CLIP-L, CLIP-G and T5 ids. */
export class SD3Tokenizer {
  readonly clipL: SDTokenizer;
  readonly clipG: SDTokenizer;
  readonly t5: SDTokenizer | undefined;

  constructor(clip: Tokenizer, t5?: Tokenizer) {
    this.clipL = new SDTokenizer(clip);
    this.clipG = new SDTokenizer(clip, { padWithEnd: false });
    this.t5 = t5
      ? new SDTokenizer(t5, {
          padWithEnd: false,
          hasStartToken: false,
          padToMaxLength: false,
          maxLength: Number.POSITIVE_INFINITY,
          minLength: T5_MIN_LENGTH,
        })
      : undefined;
  }

  /**
   * Loads the tokenizer folders; a missing or unreadable file, or a folder holding the other kind
   * of tokenizer, is a ModelError naming it.
   */
  static fromDirs(dirs: SD3TokenizerDirs): SD3Tokenizer {
    const clip = loadTokenizer(dirs.clip, 'clip');
    expectSpecialTokens(clip, 2, dirs.clip, 'CLIP', 'start and end');
    const t5 = dirs.t5 ? loadTokenizer(dirs.t5, 't5') : undefined;
    if (t5 && dirs.t5) expectSpecialTokens(t5, 1, dirs.t5, 'T5', 'an end');
    return new SD3Tokenizer(clip, t5);
  }

  tokenize(prompt: string): SD3Tokens {
    const l = this.clipL.tokenize(prompt);
    const g = this.clipG.tokenize(prompt);
    // Python slices strings by code point; a JS string slice would cut surrogate pairs.
    const codePoints = Array.from(prompt);
    const t5 = this.t5?.tokenize(codePoints.slice(0, T5_MAX_CHARACTERS).join(''))[0];
    const clipTokenCount = this.clipL.words(prompt).reduce((n, w) => n + w.length, 0);
    const truncated =
      l.length > 1 || g.length > 1 || (this.t5 !== undefined && codePoints.length > T5_MAX_CHARACTERS);
    return { l, g, ...(t5 ? { t5 } : {}), truncated, clipTokenCount };
  }
}

/** CLIP wraps a text in start and end tokens, T5 appends an end token: a folder mix-up shows here. */
function expectSpecialTokens(
  tokenizer: Tokenizer,
  count: number,
  dir: string,
  label: string,
  what: string,
): void {
  const ids = tokenizer.encode('').ids;
  if (ids.length !== count) {
    throw new ModelError(
      dir,
      `The tokenizer in ${dir} is not a ${label} tokenizer: it encodes an empty text as [${ids}], not ${what} token. Check the ${label} tokenizer folder setting.`,
    );
  }
}
