/**
 * The tiny model's CLIP tokenizer: byte-level BPE as CLIP's (every byte has a token, words end in
 * `</w>`), with a few hundred merges learned from TINY_CORPUS instead of CLIP's 48,894. Written
 * through the same tokenizer.json builder as real CLIP vocabularies.
 */
import { CLIP_BOS, CLIP_EOS, type ClipVocab } from '../text/clip-tokenizer-json.js';

/**
 * GPT-2/CLIP's reversible byte → printable character map (openai/CLIP simple_tokenizer.py
 * bytes_to_unicode): `byByte[b]` is byte b's character; `order` lists the characters as the
 * vocabulary does, printable bytes first.
 */
export function bytesToUnicode(): { byByte: string[]; order: string[] } {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const codes = [...bytes];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      codes.push(256 + extra++);
    }
  }
  const byByte: string[] = new Array(256);
  bytes.forEach((b, i) => {
    byByte[b] = String.fromCharCode(codes[i]);
  });
  return { byByte, order: codes.map((c) => String.fromCharCode(c)) };
}

const WORD = /'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/gu;

/** Words as CLIP's pre-tokenizer splits them, each a list of byte-level symbols, the last ending `</w>`. */
function words(text: string, byteChar: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  const normalized = text.normalize('NFC').replace(/\s+/g, ' ').toLowerCase();
  for (const match of normalized.matchAll(WORD)) {
    const symbols = [...new TextEncoder().encode(match[0])].map((b) => byteChar[b]);
    symbols[symbols.length - 1] += '</w>';
    const key = symbols.join(' ');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/**
 * Learns `mergeCount` merges (fewer if no pair occurs twice): each round merges the most frequent
 * adjacent pair, ties broken by the pair's text so the result never depends on iteration order.
 */
export function trainClipBpe(corpus: string, mergeCount: number): ClipVocab {
  const { byByte, order } = bytesToUnicode();
  let wordCounts = [...words(corpus, byByte)].map(([w, n]) => ({ symbols: w.split(' '), n }));
  const merges: [string, string][] = [];
  while (merges.length < mergeCount) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of wordCounts) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const pair = `${symbols[i]} ${symbols[i + 1]}`;
        pairs.set(pair, (pairs.get(pair) ?? 0) + n);
      }
    }
    let best: string | undefined;
    let bestCount = 1;
    for (const [pair, n] of pairs) {
      if (n > bestCount || (n === bestCount && best !== undefined && pair < best)) {
        best = pair;
        bestCount = n;
      }
    }
    if (!best) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push([a, b]);
    wordCounts = wordCounts.map(({ symbols, n }) => {
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
          merged.push(a + b);
          i++;
        } else merged.push(symbols[i]);
      }
      return { symbols: merged, n };
    });
  }
  const vocab: Record<string, number> = {};
  const add = (token: string) => {
    if (!Object.hasOwn(vocab, token)) vocab[token] = Object.keys(vocab).length;
  };
  for (const c of order) add(c);
  for (const c of order) add(`${c}</w>`);
  for (const [a, b] of merges) add(a + b);
  // The end token has the largest id: CLIP pools at argmax(input_ids), i.e. at the first end token.
  add(CLIP_BOS);
  add(CLIP_EOS);
  return { vocab, merges };
}
