/**
 * The tiny model's T5 tokenizer: a SentencePiece-style Unigram model like T5's (`▁` marks a word
 * start; ids 0, 1, 2 are <pad>, </s>, <unk>; every encoding ends with </s>), with the corpus's
 * most frequent words as whole pieces and single characters for everything else.
 */

export const T5_PAD = '<pad>';
export const T5_EOS = '</s>';
export const T5_UNK = '<unk>';
const SPACE = '\u2581';

/** Printable ASCII: pieces for these make any ASCII prompt encodable without <unk>. */
const CHARACTERS = Array.from({ length: 126 - 33 + 1 }, (_, i) => String.fromCharCode(33 + i));

/**
 * Vocabulary as `[piece, score]`. Scores are log-probability-like (higher wins): whole words
 * beat spelling them out, so "▁cat" is one token when the corpus taught it.
 */
export function buildT5Vocab(corpus: string, wordCount: number): [string, number][] {
  const counts = new Map<string, number>();
  for (const word of corpus.split(/\s+/)) {
    const clean = word.replace(/[^A-Za-z]/g, '');
    if (clean.length > 1) counts.set(clean, (counts.get(clean) ?? 0) + 1);
  }
  const words = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, wordCount);
  const vocab: [string, number][] = [
    [T5_PAD, 0],
    [T5_EOS, 0],
    [T5_UNK, 0],
    [SPACE, -2],
  ];
  // Exact binary fractions keep the file identical on every engine.
  words.forEach(([word], rank) => {
    vocab.push([SPACE + word, -3 - rank / 64]);
  });
  for (const c of CHARACTERS) vocab.push([c, -8]);
  for (const c of 'abcdefghijklmnopqrstuvwxyz0123456789') vocab.push([SPACE + c, -7.5]);
  return vocab;
}

/** tokenizer.json of a Unigram vocabulary, shaped like T5's (Metaspace, </s> appended). */
export function t5TokenizerJson(vocab: [string, number][]): Record<string, unknown> {
  const id = (piece: string) => vocab.findIndex(([p]) => p === piece);
  const special = (piece: string) => ({
    id: id(piece),
    content: piece,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const metaspace = { type: 'Metaspace', replacement: SPACE, prepend_scheme: 'always', split: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(T5_PAD), special(T5_EOS), special(T5_UNK)],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }],
    },
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: T5_EOS, type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: T5_EOS, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: T5_EOS, type_id: 0 } },
      ],
      special_tokens: { [T5_EOS]: { id: T5_EOS, ids: [id(T5_EOS)], tokens: [T5_EOS] } },
    },
    decoder: metaspace,
    model: { type: 'Unigram', unk_id: id(T5_UNK), vocab, byte_fallback: false },
  };
}

export function t5TokenizerConfig(): Record<string, unknown> {
  return {
    eos_token: T5_EOS,
    pad_token: T5_PAD,
    unk_token: T5_UNK,
    extra_ids: 0,
    model_max_length: 512,
    tokenizer_class: 'T5Tokenizer',
  };
}
