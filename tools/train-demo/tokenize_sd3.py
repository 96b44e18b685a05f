"""SD3's three tokenizations (CLIP-L, CLIP-G, T5) of a prompt, in plain Python, reading the same
tokenizer.json files as the product and wrapping them as its SD3Tokenizer does
(src/pipeline/text/tokenizer.ts): each space-separated word tokenized on its own; CLIP: start +
tokens + end, padded to 77 with the end token (L) or 0 (G); T5: tokens + </s>, padded with 0 to at
least 77. Enough for the demo's captions (no prompt-weight syntax, first CLIP chunk only); the
vitest test checks it against the product on the world's captions."""

import json
import os
import re
import unicodedata


def _bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_CLIP_SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.UNICODE)


class ClipBPE:
    def __init__(self, folder):
        tj = json.load(open(os.path.join(folder, "tokenizer.json"), encoding="utf-8"))
        m = tj["model"]
        self.vocab = m["vocab"]
        merges = [tuple(x) if isinstance(x, list) else tuple(x.split(" ")) for x in m["merges"]]
        self.ranks = {p: i for i, p in enumerate(merges)}
        self.byte = _bytes_to_unicode()
        self.bos = self.vocab["<|startoftext|>"]
        self.eos = self.vocab["<|endoftext|>"]
        self.cache = {}

    def _bpe(self, piece):
        syms = [self.byte[b] for b in piece.encode("utf-8")]
        syms[-1] += "</w>"
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            a, b = syms[best[1]], syms[best[1] + 1]
            out = []
            i = 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        return [self.vocab.get(s, self.eos) for s in syms]

    def word(self, w):
        if w not in self.cache:
            t = re.sub(r"\s+", " ", unicodedata.normalize("NFC", w)).lower()
            ids = []
            for piece in _CLIP_SPLIT.findall(t):
                ids += self._bpe(piece)
            self.cache[w] = ids
        return self.cache[w]

    def tokenize(self, text, pad_with_end):
        ids = [self.bos]
        for w in text.replace("\n", " ").split(" "):
            if w:
                ids += self.word(w)
        ids = ids[:76] + [self.eos]
        pad = self.eos if pad_with_end else 0
        return ids + [pad] * (77 - len(ids))


class T5Unigram:
    SPACE = "\u2581"

    def __init__(self, folder):
        tj = json.load(open(os.path.join(folder, "tokenizer.json"), encoding="utf-8"))
        vocab = tj["model"]["vocab"]
        self.pieces = {p: (i, s) for i, (p, s) in enumerate(vocab)}
        self.unk = tj["model"]["unk_id"]
        self.unk_score = min(s for _, s in vocab) - 10.0
        self.maxlen = max(len(p) for p, _ in vocab)
        self.eos = self.pieces["</s>"][0]
        self.cache = {}

    def _viterbi(self, s):
        n = len(s)
        best = [(-1e30, -1, -1)] * (n + 1)  # score, start, id
        best[0] = (0.0, -1, -1)
        for end in range(1, n + 1):
            for start in range(max(0, end - self.maxlen), end):
                if best[start][0] <= -1e29:
                    continue
                p = self.pieces.get(s[start:end])
                if p is not None:
                    sc = best[start][0] + p[1]
                    if sc > best[end][0]:
                        best[end] = (sc, start, p[0])
            if best[end][0] <= -1e29:  # unknown character
                sc = best[end - 1][0] + self.unk_score
                best[end] = (sc, end - 1, self.unk)
        ids = []
        i = n
        while i > 0:
            _, start, tid = best[i]
            ids.append(tid)
            i = start
        return ids[::-1]

    def word(self, w):
        if w not in self.cache:
            self.cache[w] = self._viterbi(self.SPACE + w)
        return self.cache[w]

    def tokenize(self, text):
        text = text[:226]
        ids = []
        for w in text.replace("\n", " ").split(" "):
            if w:
                ids += self.word(w)
        ids.append(self.eos)
        return ids + [0] * (77 - len(ids)) if len(ids) < 77 else ids[:77]


class SD3Tokenizer:
    def __init__(self, tokenizers_dir):
        self.clip = ClipBPE(os.path.join(tokenizers_dir, "clip"))
        self.t5 = T5Unigram(os.path.join(tokenizers_dir, "t5"))

    def __call__(self, text):
        """(l ids [77], g ids [77], t5 ids [77]) — captions here always fit 77 T5 tokens."""
        return self.clip.tokenize(text, True), self.clip.tokenize(text, False), self.t5.tokenize(text)
