/**
 * A LoRA file's hash as AUTOMATIC1111 writes it in `Lora hashes` (and Civitai looks it up): the
 * sha256 of a safetensors file's data, after the header (sd-scripts' and A1111's "addnet hash",
 * modules/hashes.py addnet_hash_safetensors), the first 12 hex digits (network_on_disk.shorthash).
 * Cached by path, size and modification time: a LoRA is read once however often it is used.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { safetensorsHeaderBytes } from '../weights/safetensors.js';

/** Hex digits A1111 shows (NetworkOnDisk.shorthash = hash[0:12]). */
export const SHORT_HASH_LENGTH = 12;

const cache = new Map<string, { size: number; mtimeMs: number; hash: string }>();

/** sha256 of the bytes after the safetensors header, in hex. */
export async function addnetHash(path: string): Promise<string> {
  const { size, mtimeMs } = await stat(path);
  const hit = cache.get(path);
  if (hit && hit.size === size && hit.mtimeMs === mtimeMs) return hit.hash;
  const headerLength = safetensorsHeaderBytes(path).byteLength;
  const hash = createHash('sha256');
  // An empty data section (start past the end) hashes nothing, as A1111 does.
  if (8 + headerLength < size) {
    for await (const chunk of createReadStream(path, { start: 8 + headerLength }))
      hash.update(chunk as Buffer);
  }
  const hex = hash.digest('hex');
  cache.set(path, { size, mtimeMs, hash: hex });
  return hex;
}

/** The 12 hex digits `Lora hashes` shows. */
export async function shortLoraHash(path: string): Promise<string> {
  return (await addnetHash(path)).slice(0, SHORT_HASH_LENGTH);
}
