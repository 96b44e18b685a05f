/**
 * The merge's arithmetic in C++ (native/src/lora_merge.cc, in the CPU custom-op library), loaded
 * with koffi on the thread that runs it. It reproduces merge-kernel.ts's `mergeRows` bit for bit
 * (test/pipeline/lora-native.test.ts checks every stored × output type) and is many times faster;
 * `mergeRows` stays the reference and the fallback where the library or its symbol is missing.
 */
import koffi from 'koffi';
import { configureKoffi } from '../ort/library.js';
import type { KernelTables, KernelTask, OutputType, StoredType } from './merge-task.js';

/** lora_merge.cc's codes. */
const STORED: Record<StoredType, number> = { F32: 0, F16: 1, BF16: 2, F8_E4M3: 3, F8_E5M2: 4 };
const OUTPUT: Record<OutputType, number> = { F32: 0, F16: 1, BF16: 2, F8_E4M3: 3, VALUES: 4 };

const SIGNATURE =
  'int atelier_lora_merge_rows(int rows, int cols, int stored, const uint8_t *base, const float *baseScales, ' +
  'int nBaseScales, int out, uint8_t *output, float *outputScales, const float *half, const float *bf16, ' +
  'const float *e4m3, const float *e5m2, const float *up, const double *down, const double *meta, ' +
  'int nPatches, int r0, int r1)';

type MergeFunction = (...args: unknown[]) => number;

/** Per library path: the function, or null when it cannot be loaded (tried once per thread). */
const loaded = new Map<string, MergeFunction | null>();
/** koffi unloads a library whose handle is collected: keep them. */
const libraries: unknown[] = [];

/** The native merge of the library at `path`, or undefined (not there, or built without it). */
export function nativeMergeFunction(path: string): MergeFunction | undefined {
  let fn = loaded.get(path);
  if (fn === undefined) {
    try {
      configureKoffi(); // before the thread's first load, or the C-API path could not configure koffi later
      const lib = koffi.load(path);
      fn = lib.func(SIGNATURE) as MergeFunction;
      libraries.push(lib);
    } catch {
      fn = null;
    }
    loaded.set(path, fn);
  }
  return fn ?? undefined;
}

/** The patches as lora_merge.cc takes them: ups and downs back to back, 6 numbers each in `meta`. */
function packPatches(task: KernelTask) {
  const patches = task.patches;
  const meta = new Float64Array(patches.length * 6);
  // One patch (the common case) passes its arrays as they are.
  if (patches.length === 1) {
    const p = patches[0]!;
    meta.set([0, 0, p.rank, p.factor, p.start, p.count]);
    return { up: p.up, down: p.down, meta };
  }
  const up = new Float32Array(patches.reduce((n, p) => n + p.up.length, 0));
  const down = new Float64Array(patches.reduce((n, p) => n + p.down.length, 0));
  let [u, d] = [0, 0];
  patches.forEach((p, j) => {
    up.set(p.up, u);
    down.set(p.down, d);
    meta.set([u, d, p.rank, p.factor, p.start, p.count], j * 6);
    u += p.up.length;
    d += p.down.length;
  });
  return { up, down, meta };
}

/** `mergeRows` through `fn`; false when the native side refused the task (run the JS kernel then). */
export function mergeRowsNative(
  fn: MergeFunction,
  task: KernelTask,
  tables: KernelTables,
  r0: number,
  r1: number,
): boolean {
  const { up, down, meta } = packPatches(task);
  const rc = fn(
    task.rows,
    task.cols,
    STORED[task.stored],
    task.base,
    task.baseScales,
    task.baseScales.length,
    OUTPUT[task.out],
    task.output,
    task.outputScales,
    tables.half,
    tables.bf16,
    tables.e4m3,
    tables.e5m2,
    up,
    down,
    meta,
    task.patches.length,
    r0,
    r1,
  );
  return rc === 0;
}
