/**
 * The merge's arithmetic on rows of one weight, run on worker threads (a real model's layers are
 * tens of millions of weights each, and the pipeline process has the host's cores to itself while
 * a combination merges), or inline for small weights. Both run `runRows` below (the workers
 * through merge-worker.ts): the native kernel (merge-native.ts, the same bits) when the CPU op
 * library is there, else `mergeRows`; each row depends on nothing but its own inputs, so the
 * result does not depend on how rows are split.
 *
 * Per row: decode the stored weight to float32 (tables from weights/dtypes.ts; fp8 × its scale,
 * rounded to float32), add Σ factor · (up[row] · down) — each product summed over the rank in
 * float64, the update summed over the pairs in float64 —, round once to float32, then encode to
 * the output type with weights/dtypes.ts's encoders (floatToHalf, floatToBf16, floatToE4M3).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { builtCustomOpsLibrary } from '../ort/custom-ops.js';
import {
  bf16ToFloat,
  e4m3ToFloat,
  e5m2ToFloat,
  floatToBf16,
  floatToE4M3,
  floatToHalf,
  halfToFloat,
  type SafetensorsDType,
} from '../weights/dtypes.js';
import { mergeRowsNative, nativeMergeFunction } from './merge-native.js';
import type { KernelTables, KernelTask, OutputType, StoredType } from './merge-task.js';

export type { KernelPatch, KernelTables, KernelTask, OutputType, StoredType } from './merge-task.js';

/** Largest finite float8 e4m3fn value. */
const E4M3_MAX = 448;

function decodeRow(task: KernelTask, tables: KernelTables, row: number, into: Float32Array): void {
  const cols = task.cols;
  const at = row * cols;
  const b = task.base;
  switch (task.stored) {
    case 'F32': {
      const v = new Float32Array(b.buffer, b.byteOffset + at * 4, cols);
      into.set(v);
      return;
    }
    case 'F16':
    case 'BF16': {
      const t = task.stored === 'F16' ? tables.half : tables.bf16;
      const v = new Uint16Array(b.buffer, b.byteOffset + at * 2, cols);
      for (let i = 0; i < cols; i++) into[i] = t[v[i]];
      return;
    }
    default: {
      const t = task.stored === 'F8_E4M3' ? tables.e4m3 : tables.e5m2;
      const s = task.baseScales.length === task.rows ? task.baseScales[row] : task.baseScales[0];
      for (let i = 0; i < cols; i++) into[i] = Math.fround(t[b[at + i]] * s);
    }
  }
}

function rowProduct(
  product: Float64Array,
  up: Float32Array,
  down: Float64Array,
  row: number,
  rank: number,
  cols: number,
): void {
  product.fill(0);
  const at = row * rank;
  for (let k = 0; k < rank; k++) {
    const u = up[at + k];
    if (u === 0) continue;
    const d = k * cols;
    for (let i = 0; i < cols; i++) product[i] += u * down[d + i];
  }
}

/** Merges rows [r0, r1) of `task` (on a worker: merge-worker.ts; inline: KernelPool.run). */
export function mergeRows(task: KernelTask, tables: KernelTables, r0: number, r1: number): void {
  const cols = task.cols;
  const row32 = new Float32Array(cols);
  const update = new Float64Array(cols);
  const product = new Float64Array(cols);
  const patches = task.patches;
  const o = task.output;
  for (let r = r0; r < r1; r++) {
    decodeRow(task, tables, r, row32);
    let touched = false;
    update.fill(0);
    for (let j = 0; j < patches.length; j++) {
      const p = patches[j];
      const local = r - p.start;
      if (local < 0 || local >= p.count) continue;
      touched = true;
      rowProduct(product, p.up, p.down, local, p.rank, cols);
      const factor = p.factor;
      for (let i = 0; i < cols; i++) update[i] += factor * product[i];
    }
    if (touched) for (let i = 0; i < cols; i++) row32[i] = row32[i] + update[i];
    const at = r * cols;
    switch (task.out) {
      case 'F32':
      case 'VALUES':
        new Float32Array(o.buffer, o.byteOffset + at * 4, cols).set(row32);
        break;
      case 'F16':
      case 'BF16': {
        const bits = new Uint16Array(o.buffer, o.byteOffset + at * 2, cols);
        const cast = task.out === 'F16' ? floatToHalf : floatToBf16;
        for (let i = 0; i < cols; i++) bits[i] = cast(row32[i]);
        break;
      }
      case 'F8_E4M3': {
        let amax = 0;
        for (let i = 0; i < cols; i++) amax = Math.max(amax, Math.abs(row32[i]));
        const scale = Math.fround(amax > 0 ? amax / E4M3_MAX : 1);
        task.outputScales[r] = scale;
        for (let i = 0; i < cols; i++) o[at + i] = floatToE4M3(row32[i] / scale);
        break;
      }
    }
  }
}

/**
 * Merges rows [r0, r1) with the native kernel of the library at `library` when it loads (the same
 * bits, many times faster: merge-native.ts), else with `mergeRows`. Returns the kernel that ran.
 */
export function runRows(
  task: KernelTask,
  tables: KernelTables,
  r0: number,
  r1: number,
  library?: string,
): 'native' | 'js' {
  const fn = library ? nativeMergeFunction(library) : undefined;
  if (fn && mergeRowsNative(fn, task, tables, r0, r1)) return 'native';
  mergeRows(task, tables, r0, r1);
  return 'js';
}

/**
 * A merge worker: merge-worker.ts beside this file in a source checkout, merge-worker.js beside
 * the bundle's code (bench/gpu/bundle.mjs and bench/multi-gpu/bundle.mjs build it). A worker does
 * not inherit the TypeScript loader of its thread, so a source checkout's worker registers tsx
 * before it imports the module (as the pipeline process is started with it: process-pipeline.ts).
 */
function startWorker(): Worker {
  const source = import.meta.url.endsWith('.ts');
  const entry = new URL(`./merge-worker${source ? '.ts' : '.js'}`, import.meta.url);
  if (!source) return new Worker(entry);
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return new Worker(
    `import(${tsx}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`,
    { eval: true },
  );
}

let tables: KernelTables | undefined;

/** The decode tables, built once from weights/dtypes.ts (and shared with the workers). */
export function kernelTables(): KernelTables {
  if (tables) return tables;
  const shared = <T extends Float32Array | Float64Array>(
    Type: { new (b: SharedArrayBuffer): T; BYTES_PER_ELEMENT: number },
    n: number,
  ) => new Type(new SharedArrayBuffer(n * Type.BYTES_PER_ELEMENT));
  const half = shared(Float32Array, 65536);
  const bf16 = shared(Float32Array, 65536);
  for (let b = 0; b < 65536; b++) {
    half[b] = halfToFloat(b);
    bf16[b] = bf16ToFloat(b);
  }
  const e4m3 = shared(Float32Array, 256);
  const e5m2 = shared(Float32Array, 256);
  for (let b = 0; b < 256; b++) {
    e4m3[b] = e4m3ToFloat(b);
    e5m2[b] = e5m2ToFloat(b);
  }
  tables = { half, bf16, e4m3, e5m2 };
  return tables;
}

/** Weights smaller than this merge inline: handing them to workers costs more than they take. */
const INLINE_ELEMENTS = 1 << 20;

export interface KernelOptions {
  /**
   * Worker threads for large weights; 0 merges everything inline.
   * @default all cores but one, at most 16
   */
  threads?: number;
  /** Weights of fewer elements merge inline (tests set 0 to run the workers). @default 2²⁰ */
  inlineBelow?: number;
  /**
   * The CPU custom-op library whose native merge kernel to use (native/src/lora_merge.cc); false
   * runs the JS kernel. @default the CPU library built from the current sources, when it is built
   */
  nativeLibrary?: string | false;
}

/** Worker threads, started for a combination's merge and ended after it. */
export class KernelPool {
  readonly #threads: number;
  readonly #inlineBelow: number;
  readonly #library: string | undefined;
  /** Started with the first weight large enough to share out. */
  #workers: Worker[] = [];

  constructor(options: KernelOptions = {}) {
    this.#threads = options.threads ?? KernelPool.defaultThreads();
    this.#inlineBelow = options.inlineBelow ?? INLINE_ELEMENTS;
    this.#library =
      options.nativeLibrary === false ? undefined : (options.nativeLibrary ?? builtCustomOpsLibrary('cpu'));
  }

  /** Whether the native kernel is to run (it still falls back to JS where its library fails to load). */
  get native(): boolean {
    return this.#library !== undefined && nativeMergeFunction(this.#library) !== undefined;
  }

  static defaultThreads(): number {
    return Math.min(16, Math.max(1, availableParallelism() - 1));
  }

  /** Runs `task` over all rows: inline when small or without workers, else split among the workers. */
  async run(task: KernelTask): Promise<void> {
    const t = kernelTables();
    if (this.#threads === 0 || task.rows * task.cols < this.#inlineBelow) {
      runRows(task, t, 0, task.rows, this.#library);
      return;
    }
    if (this.#workers.length === 0) {
      this.#workers = Array.from({ length: this.#threads }, startWorker);
    }
    const workers = this.#workers;
    const per = Math.ceil(task.rows / workers.length);
    await Promise.all(
      workers.map(
        (worker, i) =>
          new Promise<void>((resolve, reject) => {
            const r0 = i * per;
            const r1 = Math.min(task.rows, r0 + per);
            if (r0 >= r1) return resolve();
            const answered = (m: { ok?: true; error?: string }) => {
              worker.off('error', failed);
              if (m.error) reject(new Error(`LoRA merge worker: ${m.error}`));
              else resolve();
            };
            // A worker that cannot start (its module failed to load) fails the merge instead of hanging it.
            const failed = (error: Error) => {
              worker.off('message', answered);
              reject(new Error(`LoRA merge worker: ${error.message}`, { cause: error }));
            };
            worker.once('message', answered);
            worker.once('error', failed);
            worker.postMessage({ task, tables: t, r0, r1, library: this.#library });
          }),
      ),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

/**
 * The merge's cost per MMDiT weight and worker thread, by kernel, measured on the H200's 16-core
 * host (SD3.5 Large, 8.06 G weights, rank 16 on every attention and MLP layer, 15 threads, merge
 * and load of a new combination): the JS kernel 75–91 s (2026-12-02, fourth session), the native
 * one 16.9–20.7 s (seventh session; the slowest gives 39) — the first guess of a combination's
 * wait before one is measured.
 */
const MERGE_NS_PER_WEIGHT_THREAD = { js: 158, native: 39 } as const;

/** Which merge kernel runs with the op library at `library` (KernelOptions.nativeLibrary's rule). */
export function mergeKernelFor(library?: string | false): 'native' | 'js' {
  return new KernelPool({ nativeLibrary: library ?? undefined }).native ? 'native' : 'js';
}

/** A first guess of a LoRA combination's merge + load on a model of `parameters` MMDiT weights (ms). */
export function estimatedMergeMs(
  parameters: number,
  threads = KernelPool.defaultThreads(),
  kernel: 'native' | 'js' = 'js',
): number {
  return (parameters * MERGE_NS_PER_WEIGHT_THREAD[kernel]) / Math.max(1, threads) / 1e6;
}

/** Bytes per element of an output type. */
export function outputBytes(out: OutputType): number {
  return out === 'F32' || out === 'VALUES' ? 4 : out === 'F8_E4M3' ? 1 : 2;
}

/** A storage type the kernel reads, or undefined. */
export function storedType(dtype: SafetensorsDType): StoredType | undefined {
  return dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' || dtype === 'F8_E4M3' || dtype === 'F8_E5M2'
    ? dtype
    : undefined;
}
