/**
 * Cheap looks into safetensors files: discovery reads only headers (a few MB at most, even for a
 * 16 GB checkpoint) to tell what a file holds and under which key prefix.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, type TensorInfo } from '../weights/safetensors.js';

export interface HeaderView {
  path: string;
  tensors: ReadonlyMap<string, TensorInfo>;
  metadata: Readonly<Record<string, string>>;
}

/** Reads a file's header and closes it; a corrupt file throws the reader's ModelError. */
export function readHeader(path: string): HeaderView {
  const file = SafetensorsFile.open(path);
  try {
    return { path, tensors: file.tensors, metadata: file.metadata };
  } finally {
    file.close();
  }
}

/**
 * `*.safetensors` files under `dir`, sorted, down to `maxDepth` folder levels (ComfyUI users keep
 * checkpoints in subfolders such as `checkpoints/SD3/`). Downloads in progress are skipped.
 */
export function listSafetensors(dir: string, maxDepth = 3): string[] {
  const found: string[] = [];
  const walk = (folder: string, depth: number) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(folder, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(folder, entry.name);
      if (entry.isDirectory() && depth < maxDepth && !entry.name.startsWith('.')) walk(path, depth + 1);
      else if ((entry.isFile() || entry.isSymbolicLink()) && entry.name.endsWith('.safetensors'))
        found.push(path);
    }
  };
  walk(dir, 0);
  return found;
}

/**
 * The prefix under which `suffix` appears: `preferred` prefixes are tried first (the known
 * single-file prefixes), then any key ending in `suffix`. Undefined when the key is nowhere.
 */
export function findPrefix(
  header: HeaderView,
  suffix: string,
  preferred: readonly string[] = [],
): string | undefined {
  for (const prefix of preferred) if (header.tensors.has(prefix + suffix)) return prefix;
  for (const key of header.tensors.keys()) {
    if (
      key.endsWith(suffix) &&
      (key.length === suffix.length || key[key.length - suffix.length - 1] === '.')
    ) {
      return key.slice(0, key.length - suffix.length);
    }
  }
  return undefined;
}

/** How many `${stem}.N.` indices exist (e.g. layers of a transformer), counting from 0. */
export function countIndexed(has: (key: string) => boolean, stem: string, probe: string): number {
  let n = 0;
  while (has(`${stem}.${n}.${probe}`)) n++;
  return n;
}
