/**
 * Merges LoRAs into a copy of the MMDiT's weights: for every weight a LoRA touches,
 *
 *   W' = W + Σ weightᵢ · scaleᵢ · upᵢ · downᵢ        (scale = alpha / rank, formats.ts)
 *
 * and writes the merged weights, under their checkpoint keys, into a safetensors file that
 * overlays the checkpoint (the other weights are still read from it). The arithmetic: W is read
 * as float32 (fp8 weights dequantized with their scale); each product up·down is summed over the
 * rank in float64, multiplied by its weight·scale and added to the row's update in float64 (pairs
 * in the order given); W + update is rounded once to float32 and then cast to the checkpoint's
 * storage type: float32 as is, float16/bfloat16 rounded to nearest even, and fp8 requantized to
 * e4m3 with a fresh scale per output row (amax / 448; `<layer>.scale_weight` [rows]), since the
 * update may move a row's range (per tensor for convolution kernels, as the graph reads those).
 * The file is written tensor by tensor: only one merged weight is in memory at a time.
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { ResolvedTensor, WeightSource } from '../onnx/params.js';
import {
  DTYPE_BYTES,
  floatToBf16,
  floatToE4M3,
  floatToHalf,
  type SafetensorsDType,
  toFloat32,
} from '../weights/dtypes.js';
import type { LoraFile, LoraPair } from './formats.js';
import {
  type KernelOptions,
  type KernelPatch,
  KernelPool,
  type KernelTask,
  storedType as kernelStoredType,
  type OutputType,
  outputBytes,
} from './merge-kernel.js';

/** Largest finite float8 e4m3fn value. */
const E4M3_MAX = 448;

/** One LoRA of a combination, at the strength asked for. */
export interface LoraUse {
  lora: LoraFile;
  weight: number;
}

export interface MergedWeights {
  path: string;
  /** Checkpoint keys of the merged weights (and of their fp8 scales). */
  keys: string[];
}

interface Patch {
  pair: LoraPair;
  lora: LoraFile;
  /** weight · alpha / rank */
  factor: number;
}

/** The stored type of a resolved tensor (its first part's). */
function storedType(t: ResolvedTensor): SafetensorsDType {
  return t.kind === 'tensor' ? t.info.dtype : storedType(t.kind === 'reshape' ? t.of : t.parts[0]!);
}

/** A resolved tensor's values as float32 (fp8 codes as their plain values, unscaled). */
export function readResolvedFloat32(t: ResolvedTensor): Float32Array {
  switch (t.kind) {
    case 'tensor':
      return toFloat32(t.info.dtype, t.file.readBytes(t.info.name));
    case 'reshape':
      return readResolvedFloat32(t.of);
    case 'concat': {
      // Row blocks (the recipes concatenate on axis 0 only): the parts' data back to back.
      const parts = t.parts.map(readResolvedFloat32);
      const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    }
  }
}

/** A resolved tensor's stored bytes (row blocks of a concat back to back), into `into` at `at`. */
function readResolvedBytes(t: ResolvedTensor, into: Uint8Array, at = 0): number {
  switch (t.kind) {
    case 'tensor': {
      into.set(t.file.readBytes(t.info.name), at);
      return at + t.info.byteLength;
    }
    case 'reshape':
      return readResolvedBytes(t.of, into, at);
    case 'concat': {
      let next = at;
      for (const part of t.parts) next = readResolvedBytes(part, into, next);
      return next;
    }
  }
}

/**
 * The checkpoint weight `key` as float32, dequantized when it is stored in fp8 (`scale_weight`
 * per tensor or per row; none means 1).
 */
export function readWeight(base: WeightSource, key: string, rows: number): Float32Array {
  const t = base.resolve(key);
  if (!t) throw new Error(`${base.description}: weight "${key}" is missing`);
  const values = readResolvedFloat32(t);
  if (!storedType(t).startsWith('F8_')) return values;
  const scaleTensor = base.resolve(key.replace(/\.weight$/, '.scale_weight'));
  const scales = scaleTensor ? readResolvedFloat32(scaleTensor) : new Float32Array([1]);
  const cols = values.length / rows;
  for (let r = 0; r < rows; r++) {
    const s = scales.length === rows ? scales[r]! : scales[0]!;
    for (let i = r * cols; i < (r + 1) * cols; i++) values[i] = Math.fround(values[i]! * s);
  }
  return values;
}

/** A pair's up matrix [rows, rank], rows swapped in halves where the target asks ([scale, shift] → [shift, scale]). */
function upRows(pair: LoraPair, lora: LoraFile): Float32Array {
  const up = lora.file.readFloat32(pair.up.name);
  if (!pair.target.swapHalves) return up;
  const half = up.length / 2;
  const swapped = new Float32Array(up.length);
  swapped.set(up.subarray(half), 0);
  swapped.set(up.subarray(0, half), half);
  return swapped;
}

/** float32 values in a storage type; fp8 returns its codes and the scales it was quantized with. */
export function encodeAs(
  dtype: SafetensorsDType,
  values: Float32Array,
  rows: number,
  perRow: boolean,
): { bytes: Uint8Array; scales?: Float32Array } {
  switch (dtype) {
    case 'F32':
      return { bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
    case 'F16':
    case 'BF16': {
      const bits = new Uint16Array(values.length);
      const cast = dtype === 'F16' ? floatToHalf : floatToBf16;
      for (let i = 0; i < values.length; i++) bits[i] = cast(values[i]!);
      return { bytes: new Uint8Array(bits.buffer) };
    }
    case 'F8_E4M3':
    case 'F8_E5M2': {
      const groups = perRow ? rows : 1;
      const size = values.length / groups;
      const scales = new Float32Array(groups);
      const codes = new Uint8Array(values.length);
      for (let g = 0; g < groups; g++) {
        let amax = 0;
        for (let i = g * size; i < (g + 1) * size; i++) amax = Math.max(amax, Math.abs(values[i]!));
        const scale = Math.fround(amax > 0 ? amax / E4M3_MAX : 1);
        scales[g] = scale;
        for (let i = g * size; i < (g + 1) * size; i++) codes[i] = floatToE4M3(values[i]! / scale);
      }
      return { bytes: codes, scales };
    }
    default:
      throw new TypeError(`cannot merge a LoRA into ${dtype} weights`);
  }
}

interface Planned {
  key: string;
  shape: number[];
  stored: SafetensorsDType;
  patches: Patch[];
}

/** The weights the combination touches, each with its pairs in the order of `uses`. */
function plan(base: WeightSource, shapes: ReadonlyMap<string, readonly number[]>, uses: readonly LoraUse[]) {
  const planned = new Map<string, Planned>();
  for (const { lora, weight } of uses) {
    if (weight === 0) continue;
    for (const pair of lora.pairs) {
      const key = pair.target.key;
      let entry = planned.get(key);
      if (!entry) {
        const t = base.resolve(key);
        if (!t) throw new Error(`${base.description}: weight "${key}" is missing`);
        entry = { key, shape: [...shapes.get(key)!], stored: storedType(t), patches: [] };
        planned.set(key, entry);
      }
      entry.patches.push({ pair, lora, factor: weight * pair.scale });
    }
  }
  return [...planned.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** A typed array over a new SharedArrayBuffer (the kernel's workers read and write it in place). */
function shared<T>(Type: new (buffer: SharedArrayBuffer) => T, bytes: number): T {
  return new Type(new SharedArrayBuffer(bytes));
}

/** One weight as the kernel takes it: stored bytes, scales, pairs and room for the output. */
function kernelTask(base: WeightSource, w: Planned): KernelTask {
  const rows = w.shape[0]!;
  const cols = w.shape.slice(1).reduce((a, d) => a * d, 1);
  const stored = kernelStoredType(w.stored);
  if (!stored)
    throw new Error(`${base.description}: cannot merge a LoRA into ${w.stored} weights (${w.key})`);
  const t = base.resolve(w.key)!;
  const bytes = shared(Uint8Array, rows * cols * DTYPE_BYTES[w.stored]);
  readResolvedBytes(t, bytes);
  let baseScales: Float32Array = new Float32Array([1]);
  if (stored === 'F8_E4M3' || stored === 'F8_E5M2') {
    const scale = base.resolve(w.key.replace(/\.weight$/, '.scale_weight'));
    if (scale) baseScales = readResolvedFloat32(scale);
  }
  const patches: KernelPatch[] = w.patches.map((p) => {
    const up = upRows(p.pair, p.lora);
    const down = p.lora.file.readFloat32(p.pair.down.name);
    const upShared = shared(Float32Array, up.byteLength);
    upShared.set(up);
    const downShared = shared(Float64Array, down.length * 8);
    downShared.set(down);
    return {
      up: upShared,
      down: downShared,
      rank: p.pair.rank,
      factor: p.factor,
      start: p.pair.target.rows?.start ?? 0,
      count: p.pair.target.rows?.count ?? rows,
    };
  });
  const fp8 = stored === 'F8_E4M3' || stored === 'F8_E5M2';
  const out: OutputType = fp8 ? (w.shape.length === 2 ? 'F8_E4M3' : 'VALUES') : stored;
  return {
    rows,
    cols,
    stored,
    base: bytes,
    baseScales,
    patches,
    out,
    output: shared(Uint8Array, rows * cols * outputBytes(out)),
    outputScales: shared(Float32Array, out === 'F8_E4M3' ? rows * 4 : 0),
  };
}

export interface MergeOptions extends KernelOptions {}

/**
 * Merges `uses` into the weights of `base` and writes the merged ones to `path` (through a
 * temporary name). `shapes` are the base weights' shapes by key. Large weights are split by rows
 * among worker threads (merge-kernel.ts); the result is the same however they are split.
 */
export async function mergeLoras(
  base: WeightSource,
  shapes: ReadonlyMap<string, readonly number[]>,
  uses: readonly LoraUse[],
  path: string,
  options: MergeOptions = {},
): Promise<MergedWeights> {
  const weights = plan(base, shapes, uses);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', merged_by: 'atelier' } };
  let offset = 0;
  const add = (key: string, dtype: SafetensorsDType, shape: number[]) => {
    const bytes = shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[dtype];
    header[key] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  };
  const outType = (stored: SafetensorsDType): SafetensorsDType =>
    stored.startsWith('F8_') ? 'F8_E4M3' : stored;
  const perRow = (w: Planned) => w.shape.length === 2;
  for (const w of weights) {
    add(w.key, outType(w.stored), w.shape);
    if (w.stored.startsWith('F8_'))
      add(w.key.replace(/\.weight$/, '.scale_weight'), 'F32', perRow(w) ? [w.shape[0]!] : []);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));

  const pool = new KernelPool(options);
  const partial = `${path}.partial`;
  const fd = openSync(partial, 'w');
  try {
    try {
      writeSync(fd, length);
      writeSync(fd, Buffer.from(json));
      for (const w of weights) {
        const task = kernelTask(base, w);
        await pool.run(task);
        if (task.out === 'VALUES') {
          // A convolution kernel in fp8: one scale for the tensor, as the graph reads it.
          const values = new Float32Array(task.output.buffer, task.output.byteOffset, task.rows * task.cols);
          const { bytes, scales } = encodeAs('F8_E4M3', values, task.rows, false);
          writeSync(fd, bytes);
          writeSync(fd, new Uint8Array(scales!.buffer));
          continue;
        }
        writeSync(fd, task.output);
        if (task.out === 'F8_E4M3') writeSync(fd, new Uint8Array(task.outputScales.buffer));
      }
    } finally {
      closeSync(fd);
      await pool.close();
    }
    renameSync(partial, path);
  } catch (error) {
    // A failed merge leaves no half-written file behind (pruning only knows finished merges).
    rmSync(partial, { force: true });
    throw error;
  }
  const keys = Object.keys(header).filter((k) => k !== '__metadata__');
  return { path, keys };
}
