/**
 * LoRA merge and load on the CPU (issue 15 item 2): how long a LoRA combination's first job waits
 * before its first step, and what a job of a combination already loaded pays (nothing).
 *
 *  - the merge alone (lora/merge.ts) on the bundled tiny model: a rank-16 LoRA on every linear
 *    layer of its MMDiT (2 blocks, 128 wide);
 *  - the merge of one SD3.5 Large-sized layer (x_block.attn.qkv, [7296, 2432], float16) at rank 16,
 *    and from its rate the merge of a rank-16 LoRA on the attention and MLP layers of all 38 blocks
 *    of Large: a projection from the measured rate (this machine's worker threads, and 15 as on the
 *    16-core GPU hosts, if the rate scales), marked so;
 *  - through the engine on the tiny model (stock path, float32): the first job with the LoRA
 *    (merge + building the graph + opening the session) against a job without it, and a second job
 *    with it (cached);
 *  - the merge kernel alone on one thread, JS (`mergeRows`) against native (native/src/lora_merge.cc,
 *    the same bits): one [7296, 2432] F8_E4M3 layer → F8_E4M3 with one rank-16 patch, in ns per
 *    weight, and Large's 8.06 G MMDiT weights at that rate on a 16-core host's 15 workers;
 *  - the GPU rows: not yet measured (no GPU here).
 *
 *   npm run bench -- lora-merge
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loraModules, mergeLoras, readLoraFile } from '../src/pipeline/lora/index.js';
import {
  KernelPool,
  type KernelTask,
  kernelTables,
  mergeRows,
  runRows,
} from '../src/pipeline/lora/merge-kernel.js';
import { FileWeightSource } from '../src/pipeline/onnx/params.js';
import { buildCustomOpsLibrary } from '../src/pipeline/ort/custom-ops.js';
import { Sd35Engine } from '../src/pipeline/sd35/engine.js';
import { ensureTinyModel, TINY_CHECKPOINT } from '../src/pipeline/tiny/index.js';
import type { GenerationRequest } from '../src/pipeline/types.js';
import { floatToHalf } from '../src/pipeline/weights/dtypes.js';
import { SafetensorsFile } from '../src/pipeline/weights/safetensors.js';
import { writeSafetensors } from '../src/pipeline/weights/safetensors-writer.js';
import { MMDIT_PREFIX, mmditShapes, randomLora, writeLora } from '../test/fixtures/loras.js';
import type { BenchRow } from './run.js';

export const name = 'lora-merge';
export const description =
  'LoRA merge (+ load) time on the CPU: tiny model, one SD3.5 Large layer, projection for Large';

const RUNS = 3;
const RANK = 16;

/** SD3.5 Large (mmditx.py with depth 38): hidden 2432, MLP 4×, the last block's context pre-only. */
function largeAttentionMlpLayers(): [number, number][] {
  const h = 2432;
  const layers: [number, number][] = [];
  for (let i = 0; i < 38; i++) {
    for (const stream of ['x', 'context']) {
      layers.push([3 * h, h]);
      if (stream === 'context' && i === 37) continue;
      layers.push([h, h], [4 * h, h], [h, 4 * h]);
    }
  }
  return layers;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function timeMerge(
  path: string,
  source: FileWeightSource,
  shapes: Map<string, number[]>,
  lora: string,
  out: string,
  nativeLibrary?: string | false,
) {
  const modules = loraModules(shapes);
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const file = readLoraFile('bench', lora, { name: path, shapes }, modules);
    const started = performance.now();
    await mergeLoras(source, shapes, [{ lora: file, weight: 0.8 }], out, { nativeLibrary });
    times.push(performance.now() - started);
    file.file.close();
  }
  return median(times);
}

/** SD3.5 Large's MMDiT weights (what a merge of every layer would touch at most). */
const LARGE_MMDIT_WEIGHTS = 8.06e9;

/** ns per weight of one kernel on one thread: one [7296, 2432] e4m3 layer, one rank-16 patch (median of 3). */
function kernelNsPerWeight(library: string | undefined): number {
  const [rows, cols] = [7296, 2432];
  const base = new Uint8Array(rows * cols);
  for (let i = 0; i < base.length; i++) {
    const b = (Math.imul(i, 2654435761) >>> 24) & 0xff;
    base[i] = (b & 0x7f) === 0x7f ? b - 1 : b; // any code but NaN
  }
  const up = new Float32Array(rows * RANK).map((_, i) => Math.fround(Math.sin(i) * 0.01));
  const down = new Float64Array(RANK * cols).map((_, i) => Math.fround(Math.cos(i) * 0.01));
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const task: KernelTask = {
      rows,
      cols,
      stored: 'F8_E4M3',
      base,
      baseScales: new Float32Array([0.001]),
      patches: [{ up, down, rank: RANK, factor: 0.8, start: 0, count: rows }],
      out: 'F8_E4M3',
      output: new Uint8Array(rows * cols),
      outputScales: new Float32Array(rows),
    };
    const started = performance.now();
    if (library) {
      if (runRows(task, kernelTables(), 0, rows, library) !== 'native')
        throw new Error('native kernel did not run');
    } else mergeRows(task, kernelTables(), 0, rows);
    times.push(performance.now() - started);
  }
  return (median(times) * 1e6) / (rows * cols);
}

export async function run(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'atelier-bench-lora-'));
  const rows: BenchRow[] = [];
  try {
    // 0. The kernel alone, one thread: JS against native (when the CPU library builds here).
    let library: string | undefined;
    try {
      library = buildCustomOpsLibrary('cpu');
    } catch {
      library = undefined;
    }
    for (const [kernel, lib] of [
      ['JS (mergeRows)', undefined],
      ['native (lora_merge.cc)', library],
    ] as const) {
      if (kernel.startsWith('native') && !lib) {
        rows.push({ case: `kernel ${kernel}: CPU library did not build here`, 'median ms': 'n/a' });
        continue;
      }
      const ns = kernelNsPerWeight(lib);
      rows.push({
        case: `kernel ${kernel}, one thread: [7296, 2432] F8_E4M3 → F8_E4M3, one rank-${RANK} patch`,
        'ns/weight': ns,
        'median ms': (ns * 7296 * 2432) / 1e6,
      });
      rows.push({
        case: `kernel ${kernel}: SD3.5 Large's ${LARGE_MMDIT_WEIGHTS / 1e9} G MMDiT weights on 15 workers (projection from the row above)`,
        'weights (M)': LARGE_MMDIT_WEIGHTS / 1e6,
        'median ms': (LARGE_MMDIT_WEIGHTS * ns) / 15 / 1e6,
      });
    }

    // 1. The tiny model, every linear layer of its MMDiT.
    const tiny = await ensureTinyModel(dir);
    const checkpoint = join(tiny.modelsDir, 'checkpoints', TINY_CHECKPOINT);
    const shapes = mmditShapes(checkpoint);
    const linear = [...shapes]
      .filter(([key, shape]) => key.endsWith('.weight') && shape.length === 2 && !key.includes('.ln_'))
      .map(([key]) => key);
    const loras = join(dir, 'loras');
    mkdirSync(loras);
    writeLora(join(loras, 'all.safetensors'), randomLora(shapes, linear, 1, { rank: RANK }), 'kohya', 2);
    const tinyFile = SafetensorsFile.open(checkpoint);
    const tinySource = new FileWeightSource(tinyFile, MMDIT_PREFIX);
    const elements = linear.reduce((n, key) => n + shapes.get(key)!.reduce((a, d) => a * d, 1), 0);
    const tinyMs = await timeMerge(
      'tiny',
      tinySource,
      shapes,
      join(loras, 'all.safetensors'),
      join(dir, 'tiny-merged.safetensors'),
      library ?? false,
    );
    tinyFile.close();
    rows.push({
      case: `merge: tiny model, ${linear.length} linear layers, rank ${RANK}, ${library ? 'native' : 'JS'} kernel`,
      'weights (M)': elements / 1e6,
      'median ms': tinyMs,
      'GMAC/s': (elements * RANK) / tinyMs / 1e6,
    });

    // 2. One Large-sized layer, float16: the rate a real model's merge runs at.
    const [rows7296, cols] = [3 * 2432, 2432];
    const layerKey = 'joint_blocks.0.x_block.attn.qkv.weight';
    const big = join(dir, 'large-layer.safetensors');
    const values = new Uint16Array(rows7296 * cols);
    for (let i = 0; i < values.length; i++) values[i] = floatToHalf(Math.sin(i) * 0.02);
    writeSafetensors(big, [{ name: layerKey, dtype: 'F16', shape: [rows7296, cols], data: values }]);
    const bigShapes = new Map([[layerKey, [rows7296, cols]]]);
    writeLora(
      join(loras, 'large.safetensors'),
      randomLora(bigShapes, [layerKey], 2, { rank: RANK }),
      'kohya',
      1,
    );
    const bigFile = SafetensorsFile.open(big);
    // The JS kernel's rate first (the row the projections below used before the native kernel).
    const bigJsMs = await timeMerge(
      'large layer',
      new FileWeightSource(bigFile),
      bigShapes,
      join(loras, 'large.safetensors'),
      join(dir, 'large-merged.safetensors'),
      false,
    );
    rows.push({
      case: `merge: one SD3.5 Large layer [7296, 2432] F16, rank ${RANK}, JS kernel`,
      'weights (M)': (rows7296 * cols) / 1e6,
      'median ms': bigJsMs,
      'GMAC/s': (rows7296 * cols * RANK) / bigJsMs / 1e6,
    });
    const bigMs = await timeMerge(
      'large layer',
      new FileWeightSource(bigFile),
      bigShapes,
      join(loras, 'large.safetensors'),
      join(dir, 'large-merged.safetensors'),
      library ?? false,
    );
    bigFile.close();
    const macPerMs = (rows7296 * cols * RANK) / bigMs;
    rows.push({
      case: `merge: one SD3.5 Large layer [7296, 2432] F16, rank ${RANK}, ${library ? 'native' : 'JS'} kernel`,
      'weights (M)': (rows7296 * cols) / 1e6,
      'median ms': bigMs,
      'GMAC/s': macPerMs / 1e6,
    });
    const largeElements = largeAttentionMlpLayers().reduce((n, [r, c]) => n + r * c, 0);
    const threads = KernelPool.defaultThreads();
    rows.push({
      case: `merge: SD3.5 Large, attention + MLP of 38 blocks, rank ${RANK} (projection from the row above, ${threads} worker${threads === 1 ? '' : 's'})`,
      'weights (M)': largeElements / 1e6,
      'median ms': (largeElements * RANK) / macPerMs,
      'GMAC/s': macPerMs / 1e6,
    });
    // The GPU machines have 16 cores: 15 workers, if the rate scales with them (not measured).
    rows.push({
      case: `merge: the same on a 16-core host, 15 workers (projection: ${threads}-worker rate × ${15 / threads})`,
      'weights (M)': largeElements / 1e6,
      'median ms': (largeElements * RANK) / macPerMs / (15 / threads),
      'GMAC/s': (macPerMs / 1e6) * (15 / threads),
    });

    // 3. Through the engine: a first job with the LoRA (merge + graph + session), then cached.
    const request: GenerationRequest = {
      prompt: 'a lighthouse at dusk',
      negativePrompt: '',
      width: 64,
      height: 64,
      seed: 1,
      steps: 2,
      guidance: 4.5,
      sampler: 'euler',
      count: 1,
    };
    const engine = new Sd35Engine({
      modelsDir: tiny.modelsDir,
      checkpoint: TINY_CHECKPOINT,
      dataDir: join(dir, 'engine'),
      runtime: 'stock',
      loras: { dir: loras },
    });
    await engine.load();
    try {
      await engine.generate(request); // warm-up
      const plainStarted = performance.now();
      await engine.generate(request);
      const plainMs = performance.now() - plainStarted;
      const lora = { ...request, loras: [{ name: 'all', file: 'all.safetensors', weight: 0.8 }] };
      const firstStarted = performance.now();
      const first = await engine.generate(lora);
      const firstMs = performance.now() - firstStarted;
      const againStarted = performance.now();
      await engine.generate(lora);
      const againMs = performance.now() - againStarted;
      rows.push(
        { case: 'engine, tiny model: job without LoRA (64², 2 steps)', 'median ms': plainMs },
        {
          case: 'engine, tiny model: first job with the LoRA (merge + graph + session + job)',
          'median ms': firstMs,
          'merge+load ms': first.timings?.loraMs ?? 0,
        },
        {
          case: 'engine, tiny model: next job with the same LoRA (loaded)',
          'median ms': againMs,
          'merge+load ms': 0,
        },
      );
    } finally {
      await engine.dispose();
    }
    rows.push({
      case: 'GPU (H200): SD3.5 Large fp8, merge + load of a LoRA combination',
      'median ms': 'not yet measured',
    });
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
