/**
 * CLIP tokenizer files as Hugging Face repositories carry them (`vocab.json` + `merges.txt`, the
 * "slow" format of diffusers' tokenizer/ folders) turned into the `tokenizer.json` that
 * @huggingface/tokenizers reads. The pipeline is the one transformers' CLIPConverter writes for
 * openai/clip-vit-large-patch14: NFC, whitespace runs → one space, lowercase; split on CLIP's
 * word pattern, then byte-level; BPE with `</w>` ending each word; <|startoftext|> … <|endoftext|>.
 */
import { ModelError } from '../../errors.js';

export const CLIP_BOS = '<|startoftext|>';
export const CLIP_EOS = '<|endoftext|>';

/** CLIP's word pattern (openai/CLIP simple_tokenizer.py), as the converter writes it for Oniguruma. */
function clipSplit(bos: string, eos: string): string {
  return `${escapeRegex(bos)}|${escapeRegex(eos)}|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`;
}

function escapeRegex(text: string): string {
  return text.replace(/[|\\{}()[\]^$+*?.]/g, '\\$&');
}

export interface ClipVocab {
  /** Token → id, including the two special tokens. */
  vocab: Record<string, number>;
  /** Merge rules in priority order, each a pair of tokens. */
  merges: [string, string][];
  /** Special token names when a tokenizer_config.json says other than CLIP's. */
  special?: { bos?: string; eos?: string; unk?: string };
}

/** Parses `merges.txt`: a `#version` line, then one "left right" pair per line. */
export function parseMerges(text: string): [string, string][] {
  const merges: [string, string][] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#version') || line.trim() === '') continue;
    const parts = line.replace(/\r$/, '').split(' ');
    if (parts.length !== 2) throw new SyntaxError(`not a merge rule: ${JSON.stringify(line)}`);
    merges.push([parts[0], parts[1]]);
  }
  return merges;
}

/** The `tokenizer.json` of a CLIP BPE vocabulary; `source` names the files for error messages. */
export function clipTokenizerJson(
  { vocab, merges, special = {} }: ClipVocab,
  source = 'the CLIP vocabulary',
): Record<string, unknown> {
  const bosName = special.bos ?? CLIP_BOS;
  const eosName = special.eos ?? CLIP_EOS;
  const bos = vocab[bosName];
  const eos = vocab[eosName];
  if (bos === undefined || eos === undefined) {
    throw new ModelError(source, `${source}: the CLIP vocabulary has no ${bosName} / ${eosName} tokens`);
  }
  const token = (id: number, content: string) => ({
    id,
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
    added_tokens: [token(bos, bosName), ...(eos === bos ? [] : [token(eos, eosName)])],
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
        { type: 'Split', pattern: { Regex: clipSplit(bosName, eosName) }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [eosName, eos],
      cls: [bosName, bos],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: special.unk ?? eosName,
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

/** The `tokenizer_config.json` that goes with it (special tokens, the 77-token context of CLIP). */
export function clipTokenizerConfig(): Record<string, unknown> {
  return {
    bos_token: CLIP_BOS,
    eos_token: CLIP_EOS,
    pad_token: CLIP_EOS,
    unk_token: CLIP_EOS,
    model_max_length: 77,
    tokenizer_class: 'CLIPTokenizer',
  };
}
