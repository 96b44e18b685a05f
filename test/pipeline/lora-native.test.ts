/**
 * The LoRA merge's native kernel (native/src/lora_merge.cc through merge-native.ts) against the JS
 * kernel it replaces (merge-kernel.ts `mergeRows`, the reference): for every stored × output type,
 * random tasks of several patches and edge values, the output bytes and scales are the same bits.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  KernelPool,
  type KernelTask,
  kernelTables,
  mergeRows,
  type OutputType,
  outputBytes,
  runRows,
  type StoredType,
} from '../../src/pipeline/lora/merge-kernel.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { e4m3ToFloat, floatToBf16, floatToHalf } from '../../src/pipeline/weights/dtypes.js';
import { rng } from '../fixtures/random.js';

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
}, 300_000);

const STORED_BYTES: Record<StoredType, number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1 };
const OUTPUTS: OutputType[] = ['F32', 'F16', 'BF16', 'F8_E4M3', 'VALUES'];

interface PatchSpec {
  rank: number;
  factor: number;
  start: number;
  count: number;
}

/** A task over `base` bytes; up and down random (some up zeros, ±0), in SharedArrayBuffers like merge.ts's. */
function task(
  stored: StoredType,
  out: OutputType,
  rows: number,
  cols: number,
  base: Uint8Array,
  baseScales: Float32Array,
  specs: PatchSpec[],
  random: () => number,
  special: number[] = [],
): KernelTask {
  const shared = new Uint8Array(new SharedArrayBuffer(base.byteLength));
  shared.set(base);
  const pick = () =>
    special.length && random() < 0.05 ? special[Math.floor(random() * special.length)]! : 0;
  const patches = specs.map((s) => {
    const up = new Float32Array(new SharedArrayBuffer(s.count * s.rank * 4));
    for (let i = 0; i < up.length; i++) {
      const r = random();
      up[i] = r < 0.1 ? 0 : r < 0.15 ? -0 : pick() || (random() - 0.5) * 0.4;
    }
    const down = new Float64Array(new SharedArrayBuffer(s.rank * cols * 8));
    for (let i = 0; i < down.length; i++) down[i] = pick() || Math.fround((random() - 0.5) * 0.2);
    return { ...s, up, down };
  });
  return {
    rows,
    cols,
    stored,
    base: shared,
    baseScales,
    patches,
    out,
    output: new Uint8Array(new SharedArrayBuffer(rows * cols * outputBytes(out))),
    outputScales: new Float32Array(new SharedArrayBuffer(out === 'F8_E4M3' ? rows * 4 : 0)),
  };
}

/** A copy with fresh outputs (the same inputs). */
function fresh(t: KernelTask): KernelTask {
  return {
    ...t,
    output: new Uint8Array(new SharedArrayBuffer(t.output.byteLength)),
    outputScales: new Float32Array(new SharedArrayBuffer(t.outputScales.byteLength)),
  };
}

/** JS reference and native (in two row ranges) on copies; asserts the same bytes and scale bits. */
function expectSame(t: KernelTask, label: string): void {
  const js = fresh(t);
  const native = fresh(t);
  mergeRows(js, kernelTables(), 0, t.rows);
  const mid = Math.floor(t.rows / 3);
  expect(runRows(native, kernelTables(), 0, mid, library), label).toBe('native');
  expect(runRows(native, kernelTables(), mid, t.rows, library), label).toBe('native');
  const firstDiff = js.output.findIndex((b, i) => b !== native.output[i]);
  expect(firstDiff, `${label}: first differing output byte`).toBe(-1);
  const scaleBits = (s: Float32Array) => new Uint32Array(s.buffer, s.byteOffset, s.length);
  expect([...scaleBits(native.outputScales)], `${label}: scales`).toEqual([...scaleBits(js.outputScales)]);
}

/** Random finite stored values around ±0.05 (fp8: any code but NaN). */
function randomBase(stored: StoredType, rows: number, cols: number, random: () => number): Uint8Array {
  const n = rows * cols;
  const bytes = new Uint8Array(n * STORED_BYTES[stored]);
  const gauss = () => (random() + random() + random() - 1.5) * 0.06;
  switch (stored) {
    case 'F32':
      new Float32Array(bytes.buffer).set(Array.from({ length: n }, gauss));
      break;
    case 'F16':
    case 'BF16': {
      const cast = stored === 'F16' ? floatToHalf : floatToBf16;
      const bits = new Uint16Array(bytes.buffer);
      for (let i = 0; i < n; i++) bits[i] = cast(gauss());
      break;
    }
    default:
      for (let i = 0; i < n; i++) {
        const b = Math.floor(random() * 256);
        bytes[i] = (b & 0x7f) === 0x7f ? b - 1 : b;
      }
  }
  return bytes;
}

const STORED_CASES: {
  stored: StoredType;
  name: string;
  scales: (rows: number, r: () => number) => Float32Array;
}[] = [
  { stored: 'F32', name: 'F32', scales: () => new Float32Array([1]) },
  { stored: 'F16', name: 'F16', scales: () => new Float32Array([1]) },
  { stored: 'BF16', name: 'BF16', scales: () => new Float32Array([1]) },
  { stored: 'F8_E4M3', name: 'F8_E4M3 (one scale)', scales: () => new Float32Array([0.0013]) },
  {
    stored: 'F8_E4M3',
    name: 'F8_E4M3 (scale per row)',
    scales: (rows, r) => new Float32Array(Array.from({ length: rows }, () => 1e-4 + r() * 3e-3)),
  },
  { stored: 'F8_E5M2', name: 'F8_E5M2', scales: () => new Float32Array([0.5]) },
];

describe('the native LoRA merge kernel gives the JS kernel’s bits', () => {
  for (const c of STORED_CASES) {
    for (const out of OUTPUTS) {
      it(`${c.name} → ${out}: random tasks, 3 patches of ranks 1/4/16, factors ±, untouched rows`, () => {
        for (const [seed, rows, cols] of [
          [1, 41, 67],
          [2, 23, 128],
          [3, 9, 3],
        ] as const) {
          const random = rng(seed * 100 + OUTPUTS.indexOf(out));
          const specs: PatchSpec[] = [
            { rank: 1, factor: 0.8, start: 0, count: Math.ceil(rows / 3) },
            { rank: 16, factor: -1.25, start: 2, count: rows - 5 },
            {
              rank: 4,
              factor: 0.1 * 0.25,
              start: Math.floor(rows / 2),
              count: rows - Math.floor(rows / 2) - 1,
            },
          ];
          const t = task(
            c.stored,
            out,
            rows,
            cols,
            randomBase(c.stored, rows, cols, random),
            c.scales(rows, random),
            specs,
            random,
          );
          expectSame(t, `${c.name} → ${out}, seed ${seed}`);
        }
      });
    }
  }

  it('edge values: every F16, BF16, e4m3 and e5m2 code (NaN, ±inf, subnormals, ±0) into every output type', () => {
    for (const stored of ['F16', 'BF16', 'F8_E4M3', 'F8_E5M2'] as const) {
      const wide = stored === 'F16' || stored === 'BF16';
      const [rows, cols] = wide ? [256, 256] : [16, 16];
      const base = wide
        ? new Uint8Array(new Uint16Array(65536).map((_, i) => i).buffer)
        : new Uint8Array(256).map((_, i) => i);
      for (const out of OUTPUTS) {
        const random = rng(7);
        // Half the rows untouched (their NaNs and infinities pass straight to the encoder).
        const specs = [{ rank: 4, factor: 0.5, start: 0, count: rows / 2 }];
        const scales = stored.startsWith('F8') ? new Float32Array([0.75]) : new Float32Array([1]);
        expectSame(task(stored, out, rows, cols, base, scales, specs, random), `${stored} codes → ${out}`);
      }
    }
  });

  it('edge values: huge, tiny, NaN, ±inf and zero rows in float32, NaN and inf in the updates, overflow', () => {
    const cols = 40;
    const special = [Number.NaN, Number.POSITIVE_INFINITY, -3e38, 3.4e38, 1e-45, -1e-40, 1e30, 1e-30, -0];
    const rowsOf: number[][] = [
      new Array(cols).fill(0),
      new Array(cols).fill(-0),
      Array.from({ length: cols }, (_, i) => special[i % special.length]!),
      Array.from({ length: cols }, (_, i) => (i % 2 ? 3.4e38 : -3.4e38)),
      Array.from({ length: cols }, (_, i) => 1e-45 * (i + 1)),
      Array.from({ length: cols }, (_, i) => (i === 5 ? Number.POSITIVE_INFINITY : i * 0.01)),
      Array.from({ length: cols }, (_, i) => (i === 7 ? Number.NaN : -i * 0.01)),
      Array.from({ length: cols }, (_, i) => 448 * 2 ** -i),
    ];
    const rows = rowsOf.length;
    const base = new Uint8Array(new Float32Array(rowsOf.flat()).buffer);
    for (const out of OUTPUTS) {
      for (const [seed, factor] of [
        [1, 1],
        [2, -1e30],
        [3, 1e-30],
      ] as const) {
        const random = rng(seed);
        const specs = [
          { rank: 16, factor, start: 0, count: rows },
          { rank: 1, factor: 2, start: 3, count: 3 },
        ];
        const plain = task('F32', out, rows, cols, base, new Float32Array([1]), specs, random);
        expectSame(plain, `F32 edges → ${out}, factor ${factor}`);
        const odd = task('F32', out, rows, cols, base, new Float32Array([1]), specs, rng(seed), special);
        expectSame(odd, `F32 edges, NaN/inf in up and down → ${out}, factor ${factor}`);
      }
    }
  });

  it('e4m3 rounding: every value halfway between two codes (ties to even), and just either side of it', () => {
    // Row amax 448 makes the output scale exactly 1, so the encoder sees these values as they are.
    const values: number[] = [448];
    for (let b = 0; b < 0x7e; b++) {
      const mid = (e4m3ToFloat(b) + e4m3ToFloat(b + 1)) / 2;
      const below = Math.fround(mid - mid * 2 ** -20);
      const above = Math.fround(mid + mid * 2 ** -20);
      values.push(mid, -mid, below, above, e4m3ToFloat(b), 2 ** -10, 2 ** -11 * 3);
    }
    const cols = values.length;
    const base = new Uint8Array(new Float32Array(values).buffer);
    // No patch touches the row; a second, touched row has the same values plus a small update.
    const two = new Uint8Array(base.byteLength * 2);
    two.set(base);
    two.set(base, base.byteLength);
    const t = task(
      'F32',
      'F8_E4M3',
      2,
      cols,
      two,
      new Float32Array([1]),
      [{ rank: 1, factor: 1e-6, start: 1, count: 1 }],
      rng(5),
    );
    expectSame(t, 'e4m3 ties');
  });

  it('no fused multiply-add: sums built to land on a float32 tie only when every product is rounded first', () => {
    // A zero row, up [1, 1 + 2⁻²³], down [d1, d2] with d1 = T − round(u·d2) exactly (u·d2 in [2, 4)):
    // the sum is T = 1 + 2⁻²⁴, a float32 tie (→ 1). A fused u·d2 + d1 keeps the product's rounding
    // error (up to 2⁻⁵², over half an ulp of T), so it lands beside the tie instead.
    const cols = 256;
    const random = rng(13);
    const u2 = Math.fround(1 + 2 ** -23);
    const down = new Float64Array(new SharedArrayBuffer(2 * cols * 8));
    for (let i = 0; i < cols; i++) {
      const d2 = 2 * (1 + random() * 0.9);
      down[i] = 1 + 2 ** -24 - u2 * d2;
      down[cols + i] = d2;
    }
    const up = new Float32Array(new SharedArrayBuffer(8));
    up.set([1, u2]);
    const base = new Uint8Array(cols * 4);
    for (const out of OUTPUTS) {
      const t: KernelTask = {
        ...task('F32', out, 1, cols, base, new Float32Array([1]), [], rng(1)),
        patches: [{ up, down, rank: 2, factor: 1, start: 0, count: 1 }],
      };
      expectSame(t, `FMA probe → ${out}`);
    }
  });

  it('through the worker pool: native and JS merges write the same bytes; a missing library falls back to JS', async () => {
    const random = rng(11);
    const [rows, cols] = [97, 211];
    const specs = [
      { rank: 16, factor: 0.7, start: 0, count: 80 },
      { rank: 4, factor: -0.3, start: 50, count: 47 },
    ];
    const t = task(
      'F8_E4M3',
      'F8_E4M3',
      rows,
      cols,
      randomBase('F8_E4M3', rows, cols, random),
      new Float32Array([0.002]),
      specs,
      random,
    );
    const results: KernelTask[] = [];
    for (const nativeLibrary of [library, false, '/nonexistent/libatelier_ops_cpu.so'] as const) {
      const pool = new KernelPool({ threads: 2, inlineBelow: 0, nativeLibrary });
      expect(pool.native).toBe(nativeLibrary === library);
      const copy = fresh(t);
      try {
        await pool.run(copy);
      } finally {
        await pool.close();
      }
      results.push(copy);
    }
    for (const r of results.slice(1)) {
      expect(Buffer.compare(Buffer.from(r.output), Buffer.from(results[0]!.output))).toBe(0);
      expect([...r.outputScales]).toEqual([...results[0]!.outputScales]);
    }
    expect(runRows(fresh(t), kernelTables(), 0, rows, '/nonexistent/lib.so')).toBe('js');
  }, 60_000);
});
