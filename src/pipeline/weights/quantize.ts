/**
 * fp16/bf16/fp32 checkpoints quantized to fp8 once, at load, when `precision: fp8` is asked for.
 * The output is ComfyUI's "scaled fp8" form (e4m3 `<layer>.weight` + float32 `<layer>.scale_weight`,
 * weight = w8 · scale, one scale per tensor = amax / 448), which the graph builder already reads,
 * so a quantized checkpoint and a downloaded fp8 one run through the same code. Only the
 * quantized tensors are written; everything else is still read from the original file.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { bf16ToFloat, DTYPE_BYTES, floatToE4M3, halfToFloat } from './dtypes.js';
import type { SafetensorsFile, TensorInfo } from './safetensors.js';

/** Largest finite float8 e4m3fn value. */
const E4M3_MAX = 448;

let halfValues: Float32Array | undefined;
let bf16Values: Float32Array | undefined;

/** float value of every 16-bit pattern, built once. */
function table16(dtype: 'F16' | 'BF16'): Float32Array {
  if (dtype === 'F16') {
    halfValues ??= Float32Array.from({ length: 65536 }, (_, bits) => halfToFloat(bits));
    return halfValues;
  }
  bf16Values ??= Float32Array.from({ length: 65536 }, (_, bits) => bf16ToFloat(bits));
  return bf16Values;
}

/** The tensors worth storing in fp8: floating weights of 2 or more dimensions (linear and conv kernels). */
export function isQuantizable(info: TensorInfo, key: string): boolean {
  return (
    info.shape.length >= 2 &&
    key.endsWith('.weight') &&
    (info.dtype === 'F16' || info.dtype === 'BF16' || info.dtype === 'F32') &&
    // Embedding tables are gathered, not multiplied: fp8 buys little there and costs accuracy.
    !/embedding|embed_tokens|shared\.weight/.test(key)
  );
}

/** Quantizes one tensor: returns the e4m3 codes and the per-tensor scale. */
export function quantizeTensor(
  dtype: TensorInfo['dtype'],
  bytes: Uint8Array,
): { codes: Uint8Array; scale: number } {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const codes = new Uint8Array(n);
  if (dtype === 'F16' || dtype === 'BF16') {
    const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    const values = table16(dtype);
    let amax = 0;
    for (let i = 0; i < n; i++) amax = Math.max(amax, Math.abs(values[bits[i]]));
    const scale = amax > 0 ? amax / E4M3_MAX : 1;
    // One lookup per element: every 16-bit input maps to a code through a per-tensor table.
    const lut = new Uint8Array(65536);
    for (let b = 0; b < 65536; b++) lut[b] = floatToE4M3(values[b] / scale);
    for (let i = 0; i < n; i++) codes[i] = lut[bits[i]];
    return { codes, scale: Math.fround(scale) };
  }
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  let amax = 0;
  for (let i = 0; i < n; i++) amax = Math.max(amax, Math.abs(floats[i]));
  const scale = amax > 0 ? amax / E4M3_MAX : 1;
  for (let i = 0; i < n; i++) codes[i] = floatToE4M3(floats[i] / scale);
  return { codes, scale: Math.fround(scale) };
}

export interface QuantizedFile {
  path: string;
  /** Number of tensors stored in fp8. */
  tensors: number;
  /** True when the file already existed (quantized at an earlier start). */
  cached: boolean;
}

/**
 * Writes (once; later calls find the file) the fp8 form of the quantizable tensors under `prefix`
 * of `file` into `dir`, keeping the original key names.
 */
export function quantizeToScaledFp8(file: SafetensorsFile, prefix: string, dir: string): QuantizedFile {
  const keys = file.names(prefix).filter((k) => isQuantizable(file.get(k), k));
  const id = createHash('sha256').update(file.headerHash).update(prefix).digest('hex').slice(0, 24);
  const path = join(dir, `fp8-${id}.safetensors`);
  // Already fp8 (or nothing quantizable): no file to write.
  if (keys.length === 0) return { path, tensors: 0, cached: false };
  if (existsSync(path)) return { path, tensors: keys.length, cached: true };
  mkdirSync(dir, { recursive: true });

  // The header needs every size up front; sizes follow from the shapes, so write it first and
  // stream the tensors after it, one at a time (a 16 GB checkpoint never sits in memory).
  const header: Record<string, unknown> = {
    __metadata__: { format: 'pt', quantized_by: 'atelier', source: file.path },
  };
  let offset = 0;
  for (const key of keys) {
    const numel = file.get(key).shape.reduce((a, d) => a * d, 1);
    header[key] = { dtype: 'F8_E4M3', shape: file.get(key).shape, data_offsets: [offset, offset + numel] };
    offset += numel;
    header[key.replace(/\.weight$/, '.scale_weight')] = {
      dtype: 'F32',
      shape: [],
      data_offsets: [offset, offset + 4],
    };
    offset += 4;
  }
  header[`${prefix}scaled_fp8`] = { dtype: 'F8_E4M3', shape: [0], data_offsets: [offset, offset] };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));

  const partial = `${path}.partial`;
  const fd = openSync(partial, 'w');
  try {
    writeSync(fd, length);
    writeSync(fd, Buffer.from(json));
    for (const key of keys) {
      const { codes, scale } = quantizeTensor(file.get(key).dtype, file.readBytes(key));
      writeSync(fd, codes);
      writeSync(fd, new Uint8Array(new Float32Array([scale]).buffer));
    }
  } finally {
    closeSync(fd);
  }
  renameSync(partial, path);
  return { path, tensors: keys.length, cached: false };
}
