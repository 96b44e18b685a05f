/**
 * Part of tools/golden/make_golden.py: the Hugging Face tokenizer the reference's SDTokenizer
 * calls (`tokenizer(text)["input_ids"]`, special tokens added by the tokenizer's post-processor),
 * for the project's own tokenizer.json files. Reads one JSON request a line on stdin,
 * `{"dir": tokenizer folder, "text": string}` or `{"dir", "vocab": true}`, answers one JSON line.
 *   npx tsx tools/golden/tokenize.ts
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Tokenizer } from '@huggingface/tokenizers';

const tokenizers = new Map<string, { tokenizer: Tokenizer; json: { model: { vocab: unknown } } }>();

function load(dir: string) {
  let entry = tokenizers.get(dir);
  if (!entry) {
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    entry = { tokenizer: new Tokenizer(json, config), json };
    tokenizers.set(dir, entry);
  }
  return entry;
}

for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line) as { dir: string; text?: string; vocab?: boolean };
  const { tokenizer, json } = load(request.dir);
  const vocab = json.model.vocab;
  // BPE vocabularies map piece → id; Unigram ones list [piece, score] by id.
  const answer = request.vocab
    ? Array.isArray(vocab)
      ? Object.fromEntries(vocab.map(([piece]: [string], id: number) => [piece, id]))
      : vocab
    : tokenizer.encode(request.text ?? '').ids;
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
