/**
 * A checkpoint's identity for the PNG parameters (A1111's `Model hash`) and for finding a job's
 * model again after a restart: the sha256 of its safetensors header (the JSON that names every
 * tensor with its type, shape and offsets, and the file's metadata), first 10 hex digits as
 * A1111 writes its hashes. Reading the header only, it costs milliseconds even for a 16 GB file.
 * (A1111 hashes the whole file; a header hash tells apart every checkpoint that differs in any
 * tensor's name, type, shape or place, or in its metadata.)
 */
import { createHash } from 'node:crypto';
import { safetensorsHeaderBytes } from '../weights/safetensors.js';

/** Hex digits of the hash that are shown and compared (A1111's short hash). */
export const MODEL_HASH_LENGTH = 10;

/** The hash of a checkpoint held in `files` (one file, or the shards of a diffusers component, in order). */
export function checkpointHash(files: readonly string[]): string {
  const hash = createHash('sha256');
  for (const file of files) hash.update(safetensorsHeaderBytes(file));
  return hash.digest('hex').slice(0, MODEL_HASH_LENGTH);
}
