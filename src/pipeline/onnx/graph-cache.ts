/**
 * Built graphs cached on disk under the data dir, keyed by what determines them: the weights'
 * header hashes and real paths, the build options, and the graph-building code itself. A hit skips
 * building; a changed checkpoint, option or code version builds anew.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuiltModel } from './graph.js';

let codeVersion: string | undefined;

/**
 * A hash of the graph-building sources (this folder and ../models), so editing a model file
 * invalidates its cached graphs. Bundled builds have no sources beside them and use the bundle.
 */
export function graphCodeVersion(): string {
  if (codeVersion) return codeVersion;
  const hash = createHash('sha256');
  const here = dirname(fileURLToPath(import.meta.url));
  for (const folder of [here, join(here, '..', 'models')]) {
    if (!existsSync(folder)) continue;
    for (const file of readdirSync(folder).sort()) {
      if (/\.(ts|js)$/.test(file)) hash.update(file).update(readFileSync(join(folder, file)));
    }
  }
  hash.update(
    fileURLToPath(import.meta.url).endsWith('.js') ? readFileSync(fileURLToPath(import.meta.url)) : '',
  );
  codeVersion = hash.digest('hex').slice(0, 16);
  return codeVersion;
}

export interface CachedGraph extends BuiltModel {
  /** True when the graph came from the cache. */
  cached: boolean;
}

/** Returns the cached graph for `key`, or builds, stores and returns it. */
export function cachedGraph(dir: string, name: string, key: unknown, build: () => BuiltModel): CachedGraph {
  const id = createHash('sha256')
    .update(JSON.stringify({ key, code: graphCodeVersion() }))
    .digest('hex')
    .slice(0, 24);
  const modelPath = join(dir, `${name}-${id}.onnx`);
  const metaPath = join(dir, `${name}-${id}.json`);
  if (existsSync(modelPath) && existsSync(metaPath)) {
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as { externalFolder?: string };
    return { bytes: readFileSync(modelPath), externalFolder: meta.externalFolder, cached: true };
  }
  const built = build();
  mkdirSync(dir, { recursive: true });
  // Write beside and rename: a crash never leaves a half-written graph to be read later.
  writeFileSync(`${modelPath}.partial`, built.bytes);
  writeFileSync(`${metaPath}.partial`, JSON.stringify({ externalFolder: built.externalFolder, key }));
  renameSync(`${modelPath}.partial`, modelPath);
  renameSync(`${metaPath}.partial`, metaPath);
  return { ...built, cached: false };
}
