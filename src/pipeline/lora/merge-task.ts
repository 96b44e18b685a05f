/**
 * What the merge kernels work on (merge-kernel.ts in JavaScript, merge-native.ts in C++): one
 * weight's rows, its LoRA pairs and the decode tables. A module of its own so both kernels import
 * it and neither imports the other's.
 */

/** Storage types the kernel decodes. */
export type StoredType = 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2';
/** What it writes: a storage type, or `VALUES` (the merged float32 values, encoded by the caller). */
export type OutputType = 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'VALUES';

/** One pair of a weight: rows [start, start + count) += factor · up · down. */
export interface KernelPatch {
  /** [count, rank] float32 (rows already in the checkpoint's order). */
  up: Float32Array;
  /** [rank, cols] in float64 (exactly the file's values). */
  down: Float64Array;
  rank: number;
  factor: number;
  start: number;
  count: number;
}

/** One weight to merge; the arrays live in SharedArrayBuffers when workers share them. */
export interface KernelTask {
  rows: number;
  cols: number;
  stored: StoredType;
  /** The stored bytes [rows · cols · size]. */
  base: Uint8Array;
  /** fp8 dequantization scales: one, or one per row. */
  baseScales: Float32Array;
  patches: KernelPatch[];
  out: OutputType;
  /** [rows · cols · size of `out`] (float32 for VALUES). */
  output: Uint8Array;
  /** F8_E4M3: the scale of each row written here. */
  outputScales: Float32Array;
}

/** Decode tables (from weights/dtypes.ts). */
export interface KernelTables {
  half: Float32Array;
  bf16: Float32Array;
  e4m3: Float32Array;
  e5m2: Float32Array;
}
