/**
 * Writes safetensors files: used to generate the bundled tiny model, to quantize checkpoints to
 * fp8 at load, and by tests. Tensors are written in the order given; the header is padded with
 * spaces so the data starts 8-byte aligned, as the reference writer does.
 */
import { closeSync, openSync, renameSync, writeSync } from 'node:fs';
import { DTYPE_BYTES, type SafetensorsDType } from './dtypes.js';

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data: ArrayBufferView;
}

export function writeSafetensors(
  path: string,
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const expected = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new RangeError(
        `${t.name}: ${t.data.byteLength} bytes given, shape [${t.shape}] of ${t.dtype} needs ${expected}`,
      );
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  // Write to a temporary name and rename, so a crash never leaves a half-written model behind.
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, encodeSafetensorsHeader(header));
    for (const t of tensors)
      writeSync(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * A safetensors file's first bytes for `header` (tensor entries and `__metadata__`): its length,
 * then its JSON padded with spaces so the data that follows starts 8-byte aligned.
 */
export function encodeSafetensorsHeader(header: Record<string, unknown>): Buffer {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([length, Buffer.from(json)]);
}
