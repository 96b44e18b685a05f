/**
 * A checkpoint's identity for the PNG parameters (A1111's `Model hash`) and for finding a job's
 * model again after a restart: the sha256 of its safetensors header (the JSON that names every
 * tensor with its type, shape and offsets, and the file's metadata), first 10 hex digits as
 * A1111 writes its hashes. Reading the header only, it costs milliseconds even for a 16 GB file.
 * (A1111 hashes the whole file; a header hash tells apart every checkpoint that differs in any
 * tensor's name, type, shape or place, or in its metadata.)
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { ModelError } from '../../errors.js';

/** Hex digits of the hash that are shown and compared (A1111's short hash). */
export const MODEL_HASH_LENGTH = 10;

function readExactly(fd: number, length: number, position: number, path: string): Buffer {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, length - done, position + done);
    if (n === 0) throw new ModelError(path, `${path}: the safetensors header is cut short`);
    done += n;
  }
  return out;
}

/** The header's JSON bytes of one safetensors file. */
export function safetensorsHeader(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const length = readExactly(fd, 8, 0, path).readBigUInt64LE(0);
    if (length > 100n * 1024n * 1024n)
      throw new ModelError(path, `${path}: the safetensors header is too large`);
    return readExactly(fd, Number(length), 8, path);
  } finally {
    closeSync(fd);
  }
}

/** The hash of a checkpoint held in `files` (one file, or the shards of a diffusers component, in order). */
export function checkpointHash(files: readonly string[]): string {
  const hash = createHash('sha256');
  for (const file of files) hash.update(safetensorsHeader(file));
  return hash.digest('hex').slice(0, MODEL_HASH_LENGTH);
}
