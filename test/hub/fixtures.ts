/** Puts the tiny model on the fake hub in the layout of Stability's SD3.5 repositories. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeHub } from './fake-hub.js';

/** vocab.json + merges.txt as diffusers' tokenizer/ folders carry them, made from a tokenizer.json. */
export function slowClipFiles(tokenizerJsonPath: string): { vocab: Buffer; merges: Buffer } {
  const json = JSON.parse(readFileSync(tokenizerJsonPath, 'utf8')) as {
    model: { vocab: Record<string, number>; merges: [string, string][] };
  };
  const merges = ['#version: 0.2', ...json.model.merges.map(([a, b]) => `${a} ${b}`)].join('\n');
  return { vocab: Buffer.from(JSON.stringify(json.model.vocab)), merges: Buffer.from(`${merges}\n`) };
}

/** Serves `tinyDir`'s files as `repo` (e.g. stabilityai/stable-diffusion-3.5-large) with `checkpoint` at its root. */
export function serveTinyAsRepo(
  hub: FakeHub,
  repo: string,
  checkpoint: string,
  tinyDir: string,
  options: { gated?: boolean } = {},
): void {
  hub.addRepo(repo, { gated: options.gated ?? true });
  const read = (p: string) => readFileSync(join(tinyDir, p));
  hub.addFile(repo, checkpoint, read('checkpoints/atelier-tiny-sd35.safetensors'));
  hub.addFile(repo, 'text_encoders/clip_l.safetensors', read('text_encoders/clip_l.safetensors'));
  hub.addFile(repo, 'text_encoders/clip_g.safetensors', read('text_encoders/clip_g.safetensors'));
  hub.addFile(
    repo,
    'text_encoders/t5xxl_fp8_e4m3fn.safetensors',
    read('text_encoders/t5xxl_tiny.safetensors'),
  );
  hub.addFile(repo, 'text_encoders/t5xxl_fp16.safetensors', read('text_encoders/t5xxl_tiny.safetensors'));
  const { vocab, merges } = slowClipFiles(join(tinyDir, 'tokenizers/clip/tokenizer.json'));
  hub.addFile(repo, 'tokenizer/vocab.json', vocab);
  hub.addFile(repo, 'tokenizer/merges.txt', merges);
  hub.addFile(repo, 'tokenizer/tokenizer_config.json', read('tokenizers/clip/tokenizer_config.json'));
  hub.addFile(repo, 'tokenizer_3/tokenizer.json', read('tokenizers/t5/tokenizer.json'));
  hub.addFile(repo, 'tokenizer_3/tokenizer_config.json', read('tokenizers/t5/tokenizer_config.json'));
}
