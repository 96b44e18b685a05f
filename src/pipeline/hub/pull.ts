/**
 * `atelier models pull <name>`: every file of a named set, checked with the hub first (so a
 * missing token or licence fails before gigabytes move, and the total size is known), then
 * downloaded one after another with resume and verification. Files already in place are kept.
 */
import { existsSync, readFileSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ModelError } from '../../errors.js';
import type { ModelSetPaths } from '../models-dir/types.js';
import { clipTokenizerJson, parseMerges } from '../text/clip-tokenizer-json.js';
import { type DownloadOutcome, downloadFile, type FileProgress } from './download.js';
import { type HubClientOptions, headFile, type RemoteFile } from './http.js';
import { formatBytes } from './progress.js';
import { type HubModelSet, type HubSetFile, type HubSetOptions, hubModelSet, isHubSetName } from './sets.js';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

export interface PullOptions extends HubSetOptions {
  /** Atelier's data dir: tokenizers go to `<dataDir>/tokenizers`. */
  dataDir: string;
  /** The models folder (config `models.dir`): weights go to checkpoints/ and text_encoders/. */
  modelsDir: string;
  /** Hugging Face token; undefined reads HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), null sends none. */
  token?: string | null;
  /** Hub endpoint; undefined reads HF_ENDPOINT, else https://huggingface.co. */
  baseUrl?: string;
  /** Only the tokenizer files (a few MB), for a ComfyUI folder that has the weights already. */
  tokenizersOnly?: boolean;
  onProgress?: (progress: PullProgress) => void;
  signal?: AbortSignal;
  /** @default 5 */
  retries?: number;
  /** @default 1000 */
  retryDelayMs?: number;
}

export interface PullProgress extends FileProgress {
  /** `checking`: asking the hub about each file; `downloading`: bytes of `file`; `done`: all there. */
  phase: 'checking' | 'downloading' | 'done';
  /** Path of the file in its repository. */
  file: string;
  /** Where it is written. */
  target: string;
  /** 0-based index of the file and number of files. */
  index: number;
  count: number;
  /** Bytes of the whole set on disk so far, and in total. */
  overallBytes: number;
  overallTotal: number;
}

export interface PullResult {
  set: HubModelSet;
  paths: ModelSetPaths;
  files: { target: string; bytes: number; outcome: DownloadOutcome }[];
}

export async function pullModelSet(name: string | HubModelSet, options: PullOptions): Promise<PullResult> {
  const set = typeof name === 'string' ? namedSet(name, options) : name;
  const client: HubClientOptions = {
    baseUrl: options.baseUrl ?? process.env.HF_ENDPOINT ?? DEFAULT_HUB_ENDPOINT,
    token:
      options.token === undefined
        ? (process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN ?? null)
        : options.token,
    signal: options.signal,
  };
  const files = set.files.filter((f) => !options.tokenizersOnly || f.kind === 'tokenizer');
  const targetOf = (f: HubSetFile) =>
    join(f.target.root === 'models' ? options.modelsDir : options.dataDir, f.target.path);

  const remotes: RemoteFile[] = [];
  for (const [index, file] of files.entries()) {
    options.onProgress?.({ ...blank(file, targetOf(file), index, files.length), phase: 'checking' });
    remotes.push(await headFile({ repo: file.repo, path: file.path, revision: set.revision }, client));
  }
  const overallTotal = remotes.reduce((sum, r) => sum + r.size, 0);
  checkFreeSpace(files.map((f, i) => ({ target: targetOf(f), size: remotes[i].size })));

  const results: PullResult['files'] = [];
  let done = 0;
  for (const [index, file] of files.entries()) {
    const target = targetOf(file);
    const remote = remotes[index];
    const outcome = await downloadFile(remote, target, {
      ...client,
      retries: options.retries,
      retryDelayMs: options.retryDelayMs,
      refresh: () => headFile(remote.ref, client),
      onProgress: (p) =>
        options.onProgress?.({
          ...p,
          phase: 'downloading',
          file: file.path,
          target,
          index,
          count: files.length,
          overallBytes: done + p.bytes,
          overallTotal,
        }),
    });
    done += remote.size;
    results.push({ target, bytes: remote.size, outcome });
  }
  const clipDir = join(options.dataDir, 'tokenizers/clip');
  writeClipTokenizerJson(clipDir);
  const last = files[files.length - 1];
  options.onProgress?.({
    ...blank(last, targetOf(last), files.length - 1, files.length),
    phase: 'done',
    bytes: done,
    total: overallTotal,
    overallBytes: done,
    overallTotal,
  });
  return {
    set,
    paths: {
      modelsDir: options.modelsDir,
      checkpoint: set.checkpoint,
      tokenizers: { clip: clipDir, t5: join(options.dataDir, 'tokenizers/t5') },
    },
    files: results,
  };
}

function namedSet(name: string, options: PullOptions): HubModelSet {
  if (!isHubSetName(name)) {
    throw new ModelError(
      name,
      `Unknown model set "${name}": choose sd3.5-large, sd3.5-large-turbo or sd3.5-medium.`,
    );
  }
  return hubModelSet(name, options);
}

function blank(file: HubSetFile, target: string, index: number, count: number): Omit<PullProgress, 'phase'> {
  return {
    file: file.path,
    target,
    index,
    count,
    bytes: 0,
    total: 0,
    bytesPerSecond: 0,
    overallBytes: 0,
    overallTotal: 0,
  };
}

/** diffusers' CLIP folders are vocab.json + merges.txt; a tokenizer.json beside them loads faster. */
function writeClipTokenizerJson(dir: string): void {
  const vocabPath = join(dir, 'vocab.json');
  const mergesPath = join(dir, 'merges.txt');
  if (!existsSync(vocabPath) || !existsSync(mergesPath)) return;
  const vocab = JSON.parse(readFileSync(vocabPath, 'utf8')) as Record<string, number>;
  const merges = parseMerges(readFileSync(mergesPath, 'utf8'));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(clipTokenizerJson({ vocab, merges }, dir)));
}

/** Refuses to start when a disk cannot hold what is left to download, instead of failing hours in. */
function checkFreeSpace(files: { target: string; size: number }[]): void {
  const needed = new Map<string, number>();
  for (const { target, size } of files) {
    if (existsSync(target) && statSync(target).size === size) continue;
    const partial = existsSync(`${target}.partial`) ? statSync(`${target}.partial`).size : 0;
    const dir = existingAncestor(dirname(target));
    needed.set(dir, (needed.get(dir) ?? 0) + Math.max(0, size - partial));
  }
  const byDevice = new Map<number, { dir: string; bytes: number }>();
  for (const [dir, bytes] of needed) {
    const dev = statSync(dir).dev;
    const entry = byDevice.get(dev) ?? { dir, bytes: 0 };
    entry.bytes += bytes;
    byDevice.set(dev, entry);
  }
  for (const { dir, bytes } of byDevice.values()) {
    const fs = statfsSync(dir);
    const free = fs.bavail * fs.bsize;
    if (free < bytes) {
      throw new ModelError(
        dir,
        `Not enough disk space in ${dir}: the download needs ${formatBytes(bytes)}, ${formatBytes(free)} is free.`,
      );
    }
  }
}

function existingAncestor(dir: string): string {
  let current = dir;
  while (!existsSync(current) && dirname(current) !== current) current = dirname(current);
  return current;
}
