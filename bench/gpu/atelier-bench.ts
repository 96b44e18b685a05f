/**
 * Atelier's side of the GPU benchmark (issues 6 and 9): the real pipeline (child process, ONNX
 * Runtime CUDA) on real-size SD3.5 weights. Every workload runs on each runtime path in the same
 * process run: the pipeline is loaded with `runtime: 'stock'` (onnxruntime-node), measured and
 * disposed, then loaded with `runtime: 'capi'` (the C-API denoiser: device-resident latents, CUDA
 * graphs, custom ops). Per row: load time, peak GPU memory (nvidia-smi), text encoding, denoising
 * and VAE decode, seconds per image, host time per denoising step (C-API path), the bot process's
 * event-loop delay, and how long the pipeline child takes to answer a ping sent every 5 ms while
 * it works. Bundled with esbuild (bundle.mjs) and run on the GPU machine (bench/gpu/README.md).
 *
 *   node atelier-bench.js --models DIR --out FILE [--runtime stock,capi] [--budget-s 480]
 *        [--configs large:fp8,large:fp16,medium:fp8,medium:fp16] [--steps 28] [--batch 1]
 *        [--turbo fp16] [--small medium:fp16] [--custom-ops FILE|none] [--tokenizers DIR]
 *
 * Precisions are the product's (`models.precision`): `fp8` runs what a server at fp8 runs (W8A8 on
 * FP8 tensor cores in the C-API step with the op library, weight-only elsewhere; each row says
 * which in `fp8_linear` and why in `fp8_reason`), `fp8-weights` always weight-only. `--fp8-linear`
 * still forces one route on every fp8 row.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ProcessPipeline } from '../../src/pipeline/process/process-pipeline.js';
import type { EngineOptions } from '../../src/pipeline/sd35/options.js';
import type { Fp8Info, GenerationRequest, RuntimePath } from '../../src/pipeline/types.js';
import {
  checkpointFor,
  groupLoads,
  type Load,
  LoadCosts,
  MODELS,
  PRECISIONS,
  type Precision,
  planWorkloads,
  type RuntimeName,
  type Workload,
} from './bench-plan.js';
import { GpuMemory, PingMonitor } from './monitors.js';

const USAGE = `usage: node atelier-bench.js --models DIR --out FILE [options]
  --models DIR          folder with large/ and medium/ (make_weights.py)
  --out FILE            rows as JSON (written after every row)
  --runtime LIST        runtime paths, each row on each: stock,capi (default both)
  --configs LIST        model:precision at --size for every --steps × --batch
                        (default large:fp8,large:fp16,medium:fp8,medium:fp16); precisions as
                        models.precision: fp16, fp8 (W8A8 where the GPU, the C-API path and the op
                        library allow it, else weight-only: what the product runs), fp8-weights
  --precision P         the precision of --configs/--small entries that name none (e.g. --configs large,medium --precision fp8)
  --steps LIST --batch LIST   (default 28 and 1; 28,20 and 1,4 bring back issue 6's rows)
  --turbo LIST          Large Turbo precisions: 4 steps, no CFG, on the Large weights (default fp16; '' none)
  --small LIST          model:precision at --small-size, 28 steps (default medium:fp16; '' none)
  --budget-s N          whole run; the least important rows are cut first (default 480)
  --custom-ops FILE|none   custom-op library for the C-API path (default: libatelier_ops_cuda.so beside this file)
  --tokenizers DIR      clip/ and t5/ tokenizer folders (ComfyUI folders carry none)
  --data DIR --size N --small-size N --turbo-steps N --ping-ms N --provider cuda|cpu
  --fp8-linear block-fp8|dequantize|w8a8   force one route on every fp8 row instead of the precision's choice
                        (w8a8: our Fp8Linear in the C-API step, also on the CPU; the stock path keeps block-fp8)
  --fp8-act-scale X --vae-fp16 --profile`;

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', default: false },
    models: { type: 'string' },
    data: { type: 'string', default: '/tmp/atelier-bench-data' },
    out: { type: 'string' },
    runtime: { type: 'string', default: 'stock,capi' },
    configs: { type: 'string', default: 'large:fp8,large:fp16,medium:fp8,medium:fp16' },
    steps: { type: 'string', default: '28' },
    batch: { type: 'string', default: '1' },
    size: { type: 'string', default: '1024' },
    turbo: { type: 'string', default: 'fp16' },
    'turbo-steps': { type: 'string', default: '4' },
    small: { type: 'string', default: 'medium:fp16' },
    'small-size': { type: 'string', default: '512' },
    'budget-s': { type: 'string', default: '480' },
    'ping-ms': { type: 'string', default: '5' },
    'custom-ops': { type: 'string' },
    tokenizers: { type: 'string' },
    precision: { type: 'string' },
    'fp8-linear': { type: 'string' },
    provider: { type: 'string', default: 'cuda' },
    profile: { type: 'boolean', default: false },
    'fp8-act-scale': { type: 'string' },
    'vae-fp16': { type: 'boolean', default: false },
  },
});

interface Row {
  engine: 'atelier';
  model: string;
  /** The checkpoint family the weights are (Turbo rows run on Large's files). */
  weights: string;
  precision: string;
  width: number;
  height: number;
  steps: number;
  batch: number;
  guidance: number;
  /** Whether each step runs the unconditional pass too (a batch of 2·images). */
  cfg: boolean;
  /** The path that ran; `runtime_requested` the one asked for (they differ after a fallback). */
  path: RuntimeName;
  runtime_requested: RuntimeName;
  cuda_graph: boolean;
  custom_ops: boolean;
  /**
   * fp8 rows: how the MMDiT's linear layers ran, from the pipeline's info().fp8: `w8a8`, or the
   * weight-only kernel (`block-fp8` on CUDA, `dequantize` on the CPU).
   */
  fp8_linear?: string;
  /** fp8 rows: the pipeline's one line on it ("fp8: W8A8 on Hopper tensor cores (atelier:Fp8Linear)"). */
  fp8_reason?: string;
  fallback_reason?: string;
  seconds_per_image: number;
  peak_gpu_mem_gb: number;
  load_seconds: number;
  /** The 8-step generation before the first timed run of this shape (autotuning, graph capture). */
  warmup_seconds: number | null;
  text_encode_seconds: number;
  denoise_seconds: number;
  vae_decode_seconds: number;
  steps_per_second: number;
  /** Host time to issue one step (C-API path); null on the stock path, whose run() blocks throughout. */
  host_ms_per_step: number | null;
  /** Timed steps replayed from a captured CUDA graph (C-API path). */
  cuda_graph_steps: number | null;
  /** C-API rows: the first image against the stock row's of the same request, in 8-bit levels. */
  image_max_abs_diff_vs_stock?: number;
  image_mean_abs_diff_vs_stock?: number;
  event_loop_p99_ms: number;
  /**
   * Round trips of pings sent every --ping-ms to the pipeline child between the reports of steps 1
   * and N−1, so they reach it while it denoises (the issue's target: within 20 ms p99 while a step
   * runs) …
   */
  child_ping_p50_ms: number | null;
  child_ping_p99_ms: number | null;
  child_ping_max_ms: number | null;
  child_pings: number;
  /** … and over the whole generation (text encoding and VAE decode included). */
  child_ping_generation_p99_ms: number | null;
  child_ping_generation_max_ms: number | null;
  error?: string;
}

interface Skipped {
  model: string;
  precision: string;
  size: number;
  steps: number;
  batch: number;
  path: RuntimeName;
  reason: string;
}

const started = Date.now();
const budgetMs = Number(values['budget-s']) * 1000;
const left = () => budgetMs - (Date.now() - started);
const here = dirname(fileURLToPath(import.meta.url));
const list = (s: string | undefined) => (s ?? '').split(',').filter((v) => v.trim() !== '');
const rows: Row[] = [];
const skipped: Skipped[] = [];

function request(w: Workload, steps = w.steps): GenerationRequest {
  return {
    prompt: 'a lighthouse at dusk, oil painting, dramatic sky, crashing waves',
    negativePrompt: 'blurry, low quality',
    width: w.size,
    height: w.size,
    seed: 1,
    steps,
    guidance: w.guidance,
    sampler: 'euler',
    count: w.batch,
  };
}

function save(): void {
  if (!values.out) return;
  const envelope = {
    engine: 'atelier',
    date: new Date().toISOString().slice(0, 10),
    command: `node atelier-bench.js ${process.argv.slice(2).join(' ')}`,
    custom_ops_library: customOps() ?? null,
    rows,
    skipped,
  };
  writeFileSync(values.out, JSON.stringify(envelope, null, 1));
}

/** The CUDA custom-op library bundle.mjs copied beside this file, unless told otherwise. */
function customOps(): string | null | undefined {
  const flag = values['custom-ops'];
  if (flag === 'none') return null;
  if (flag) return resolve(flag);
  const bundled = join(here, 'libatelier_ops_cuda.so');
  return existsSync(bundled) ? bundled : undefined;
}

function engineOptions(load: Load, dataDir: string): EngineOptions {
  const entry = MODELS[load.weights];
  const ops = customOps();
  return {
    modelsDir: resolve(values.models!, entry.weights),
    checkpoint: checkpointFor(entry, load.precision),
    dataDir,
    provider: values.provider as 'cuda' | 'cpu',
    precision: load.precision !== 'fp16' ? load.precision : values.provider === 'cpu' ? 'fp32' : 'fp16',
    ...(values['fp8-linear'] ? { fp8Linear: values['fp8-linear'] as EngineOptions['fp8Linear'] } : {}),
    runtime: load.path,
    ...(load.path === 'capi' && ops !== undefined ? { customOpsLibrary: ops } : {}),
    ...(values['fp8-act-scale'] ? { fp8ActivationScale: Number(values['fp8-act-scale']) } : {}),
    ...(values['vae-fp16'] ? { vaeCompute: 'float16' as const } : {}),
    // Both T5 files sit in text_encoders/: each precision takes its own.
    textEncoders: {
      t5: load.precision === 'fp16' ? 't5xxl_fp16.safetensors' : 't5xxl_fp8_e4m3fn.safetensors',
    },
  };
}

/**
 * The path that actually runs: a capi request that fell back is a stock row with its reason; at
 * fp8, how the linear layers ran and why (info().fp8).
 */
function pathOf(requested: RuntimeName, runtime: RuntimePath | undefined, fp8?: Fp8Info) {
  const path = runtime?.path ?? 'stock';
  const reason =
    requested === 'capi' && path !== 'capi'
      ? (runtime?.reason ?? 'the pipeline reports no runtime path (C-API path not built in)')
      : undefined;
  return {
    path,
    cuda_graph: runtime?.cudaGraph ?? false,
    custom_ops: runtime?.customOps ?? false,
    ...(reason ? { fallback_reason: reason } : {}),
    ...(fp8 ? { fp8_linear: fp8LinearOf(fp8), fp8_reason: fp8.summary } : {}),
  };
}

/** `w8a8`, or the weight-only kernel that ran (the forced one, else the provider's). */
function fp8LinearOf(fp8: Fp8Info): string {
  if (fp8.route === 'w8a8') return 'w8a8';
  const forced = values['fp8-linear'];
  if (forced === 'block-fp8' || forced === 'dequantize') return forced;
  return values.provider === 'cuda' ? 'block-fp8' : 'dequantize';
}

function label(w: Workload): string {
  const cfg = w.guidance > 1 ? '' : ' no-CFG';
  return `${MODELS[w.model].name} ${w.precision} ${w.size}² ${w.steps} steps ×${w.batch}${cfg}`;
}

const costs = new LoadCosts();

async function runLoad(load: Load, index: number, loads: Load[], dataDir: string, memory: GpuMemory) {
  const options = engineOptions(load, dataDir);
  const tag = `${load.weights}-${load.precision}-${load.path}`;
  const profileDir = values.profile ? join(dataDir, `profile-${tag}`) : undefined;
  if (profileDir) {
    rmSync(profileDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
    options.profileDir = profileDir;
  }
  const pipeline = new ProcessPipeline({ spec: { module: join(here, 'sd35.js'), options } });
  const warm = new Set<string>();
  let loadSeconds = 0;
  // Until the pipeline says which path it runs (a failed load never does), rows name the one asked for.
  let runtime: ReturnType<typeof pathOf> = { path: load.path, cuda_graph: false, custom_ops: false };
  try {
    memory.reset();
    const t0 = performance.now();
    await pipeline.load();
    loadSeconds = (performance.now() - t0) / 1000;
    runtime = pathOf(load.path, pipeline.info().runtime, pipeline.info().fp8);
    console.log(
      `${tag}: loaded in ${loadSeconds.toFixed(1)} s, ${(memory.nowGb - baseline).toFixed(1)} GB, ` +
        `path ${runtime.path}${runtime.cuda_graph ? ' +graph' : ''}${runtime.custom_ops ? ' +ops' : ''}` +
        `${runtime.fallback_reason ? ` (fallback: ${runtime.fallback_reason})` : ''}` +
        `${runtime.fp8_reason ? `; ${runtime.fp8_reason}` : ''}`,
    );
    for (const w of load.rows) {
      const reserve = costs.reserveMs(loads, index, w.priority);
      if (left() - reserve < 30_000) {
        skip(
          w,
          load.path,
          `budget: ${(left() / 1000).toFixed(0)} s left, ${(reserve / 1000).toFixed(0)} s kept`,
        );
        continue;
      }
      try {
        rows.push(await measure(pipeline, w, load, runtime, loadSeconds, warm, memory));
      } catch (error) {
        rows.push(failedRow(w, load, runtime, loadSeconds, error));
      }
      save();
      console.log(JSON.stringify(rows.at(-1)));
    }
  } catch (error) {
    for (const w of load.rows) rows.push(failedRow(w, load, runtime, loadSeconds, error));
    save();
  } finally {
    await pipeline.dispose();
    if (profileDir) summarizeProfile(profileDir, tag);
  }
}

async function measure(
  pipeline: ProcessPipeline,
  w: Workload,
  load: Load,
  runtime: ReturnType<typeof pathOf>,
  loadSeconds: number,
  warm: Set<string>,
  memory: GpuMemory,
): Promise<Row> {
  // A new shape is warmed up first: cuDNN/cuBLAS autotuning, arenas, and on the C-API path the
  // CUDA graph capture for this resolution × batch × CFG.
  const shape = `${w.size}x${w.batch}:${w.guidance > 1}`;
  let warmup: number | null = null;
  if (!warm.has(shape)) {
    const t = performance.now();
    // 8 steps: on the C-API path each of the two bindings runs 2 plain steps, captures, then replays.
    await pipeline.generate(request(w, 8));
    warmup = (performance.now() - t) / 1000;
    warm.add(shape);
  }
  memory.reset();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  const pings = new PingMonitor(() => pipeline.ping(), Number(values['ping-ms']));
  delay.enable();
  pings.start();
  const t1 = performance.now();
  // Pings sent between the reports of step 1 and step N−1 reach the child while it denoises (steps
  // 2..N); one sent just before step N's report could arrive after the VAE decode began.
  let firstStep = Infinity;
  let lastStep = -Infinity;
  const onStep = ({ step, total }: { step: number; total: number }) => {
    if (step === 1) firstStep = performance.now();
    if (step === total - 1) lastStep = performance.now();
  };
  let out: Awaited<ReturnType<ProcessPipeline['generate']>>;
  let wall: number;
  try {
    out = await pipeline.generate(request(w), { onStep });
  } finally {
    wall = (performance.now() - t1) / 1000;
    delay.disable();
    await pings.stop();
  }
  const ping = pings.stats(firstStep, lastStep);
  const whole = pings.stats();
  const t = out.timings!;
  // The same request on both paths (stock runs first): the C-API path must make the same image.
  const key = JSON.stringify([w.model, w.precision, w.size, w.steps, w.batch, w.guidance]);
  const image = out.images[0].data;
  if (runtime.path === 'stock') stockImages.set(key, image);
  const stock = runtime.path === 'capi' ? stockImages.get(key) : undefined;
  return {
    ...identity(w, load, runtime),
    seconds_per_image: wall / w.batch,
    peak_gpu_mem_gb: memory.peakGb - baseline,
    load_seconds: loadSeconds,
    warmup_seconds: warmup,
    text_encode_seconds: t.encodeMs / 1000,
    denoise_seconds: t.denoiseMs / 1000,
    vae_decode_seconds: t.decodeMs / 1000,
    steps_per_second: w.steps / (t.denoiseMs / 1000),
    host_ms_per_step: t.hostMsPerStep ?? null,
    cuda_graph_steps: t.cudaGraphSteps ?? null,
    event_loop_p99_ms: delay.percentile(99) / 1e6,
    child_ping_p50_ms: ping?.p50 ?? null,
    child_ping_p99_ms: ping?.p99 ?? null,
    child_ping_max_ms: ping?.max ?? null,
    child_pings: ping?.count ?? 0,
    child_ping_generation_p99_ms: whole?.p99 ?? null,
    child_ping_generation_max_ms: whole?.max ?? null,
    ...(stock ? imageDiff(image, stock) : {}),
  };
}

/** First images of the stock rows, to compare the C-API rows' images with. */
const stockImages = new Map<string, Uint8Array>();

/** How far an image is from the stock path's, in 8-bit levels. */
function imageDiff(
  a: Uint8Array,
  b: Uint8Array,
): { image_max_abs_diff_vs_stock: number; image_mean_abs_diff_vs_stock: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { image_max_abs_diff_vs_stock: max, image_mean_abs_diff_vs_stock: sum / a.length };
}

function identity(w: Workload, load: Load, runtime: ReturnType<typeof pathOf>) {
  return {
    engine: 'atelier' as const,
    model: MODELS[w.model].name,
    weights: MODELS[load.weights].name,
    precision: w.precision,
    width: w.size,
    height: w.size,
    steps: w.steps,
    batch: w.batch,
    guidance: w.guidance,
    cfg: w.guidance > 1,
    runtime_requested: load.path,
    ...runtime,
    // A load that failed never said how its fp8 layers would run.
    ...(w.precision !== 'fp16' && !runtime.fp8_linear ? { fp8_linear: 'unknown (not loaded)' } : {}),
  };
}

function failedRow(
  w: Workload,
  load: Load,
  runtime: ReturnType<typeof pathOf>,
  loadSeconds: number,
  error: unknown,
): Row {
  const message = String((error as Error).message ?? error).split('\n')[0];
  console.log(`${label(w)} on ${load.path}: FAILED ${message}`);
  return {
    ...identity(w, load, runtime),
    seconds_per_image: 0,
    peak_gpu_mem_gb: 0,
    load_seconds: loadSeconds,
    warmup_seconds: null,
    text_encode_seconds: 0,
    denoise_seconds: 0,
    vae_decode_seconds: 0,
    steps_per_second: 0,
    host_ms_per_step: null,
    cuda_graph_steps: null,
    event_loop_p99_ms: 0,
    child_ping_p50_ms: null,
    child_ping_p99_ms: null,
    child_ping_max_ms: null,
    child_pings: 0,
    child_ping_generation_p99_ms: null,
    child_ping_generation_max_ms: null,
    error: message,
  };
}

function skip(w: Workload, path: RuntimeName, reason: string): void {
  console.log(`skipping ${label(w)} on ${path}: ${reason}`);
  const { model, precision, size, steps, batch } = w;
  skipped.push({ model: MODELS[model].name, precision, size, steps, batch, path, reason });
}

let baseline = 0;

async function main(): Promise<void> {
  if (values.help || !values.models) {
    console.log(USAGE);
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  const paths = list(values.runtime) as RuntimeName[];
  if (paths.some((p) => p !== 'stock' && p !== 'capi')) throw new Error(`--runtime: stock and/or capi`);
  if (values.precision !== undefined && !PRECISIONS.includes(values.precision as Precision))
    throw new Error(`--precision: one of ${PRECISIONS.join(', ')}`);
  const forced = values['fp8-linear'];
  if (forced !== undefined && !['block-fp8', 'dequantize', 'w8a8'].includes(forced))
    throw new Error('--fp8-linear: block-fp8, dequantize or w8a8');
  const loads = groupLoads(
    planWorkloads({
      configs: list(values.configs),
      steps: list(values.steps).map(Number),
      batches: list(values.batch).map(Number),
      size: Number(values.size),
      precision: values.precision as Precision | undefined,
      turbo: list(values.turbo) as Precision[],
      turboSteps: Number(values['turbo-steps']),
      small: list(values.small),
      smallSize: Number(values['small-size']),
      smallSteps: 28,
    }),
    paths,
  );
  console.log(
    `plan: ${loads.map((l) => `${l.weights}:${l.precision}:${l.path} [${l.rows.map(label).join('; ')}]`).join('\n      ')}`,
  );
  console.log(`custom ops for the C-API path: ${customOps() ?? '(the engine default)'}`);
  const dataDir = resolve(values.data!);
  mkdirSync(join(dataDir, 'tokenizers'), { recursive: true });
  // ComfyUI folders carry no tokenizers: Atelier looks in <dataDir>/tokenizers.
  if (values.tokenizers) {
    for (const kind of ['clip', 't5']) {
      const link = join(dataDir, 'tokenizers', kind);
      if (!existsSync(link)) symlinkSync(resolve(values.tokenizers, kind), link);
    }
  }
  const memory = new GpuMemory();
  memory.start();
  baseline = await new Promise<number>((r) => setTimeout(() => r(memory.nowGb), 500));
  for (const [index, load] of loads.entries()) {
    const priority = Math.min(...load.rows.map((r) => r.priority));
    const reserve = costs.reserveMs(loads, index, priority);
    if (left() - reserve < 60_000) {
      for (const w of load.rows) skip(w, load.path, `budget: ${(left() / 1000).toFixed(0)} s left`);
      save();
      continue;
    }
    const t0 = performance.now();
    await runLoad(load, index, loads, dataDir, memory);
    costs.record(load, performance.now() - t0);
  }
  memory.stop();
  save();
  printSummary();
}

function printSummary(): void {
  const f = (v: number | null | undefined, d = 2) => (v == null ? '-' : v.toFixed(d));
  console.log(
    '\nmodel               prec        size steps path  graph denoise s  s/image  host ms/step  ping p99/max ms (steps; whole)',
  );
  for (const r of rows) {
    console.log(
      `${r.model.padEnd(19)} ${r.precision.padEnd(11)} ${String(r.width).padStart(4)} ${String(r.steps).padStart(5)} ` +
        `${r.path.padEnd(5)} ${String(r.cuda_graph).padEnd(5)} ${f(r.denoise_seconds / r.batch, 3).padStart(9)} ` +
        `${f(r.seconds_per_image, 3).padStart(8)} ${f(r.host_ms_per_step).padStart(13)} ` +
        `${f(r.child_ping_p99_ms, 1)}/${f(r.child_ping_max_ms, 1)}; ` +
        `${f(r.child_ping_generation_p99_ms, 1)}/${f(r.child_ping_generation_max_ms, 1)}` +
        `${r.error ? `  ERROR ${r.error}` : ''}`,
    );
  }
}

/**
 * Sums an ONNX Runtime profile's node times by operator type (the share of a denoising step each
 * kind of kernel takes) and writes it next to the results.
 */
function summarizeProfile(dir: string, label: string): void {
  const byOp = new Map<string, { us: number; count: number }>();
  let total = 0;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
      cat?: string;
      name?: string;
      dur?: number;
      args?: { op_name?: string };
    }[];
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !e.args?.op_name) continue;
      const entry = byOp.get(e.args.op_name) ?? { us: 0, count: 0 };
      entry.us += e.dur ?? 0;
      entry.count++;
      byOp.set(e.args.op_name, entry);
      total += e.dur ?? 0;
    }
  }
  const ops = [...byOp.entries()]
    .map(([op, v]) => ({ op, ms: v.us / 1000, nodes: v.count, share: v.us / total }))
    .sort((a, b) => b.ms - a.ms);
  const summary = { label, total_ms: total / 1000, ops };
  console.log(`profile ${label}: ${(total / 1000).toFixed(0)} ms of kernels`);
  for (const o of ops.slice(0, 15))
    console.log(
      `  ${o.op.padEnd(34)} ${o.ms.toFixed(1).padStart(9)} ms ${(100 * o.share).toFixed(1).padStart(5)} %  ${o.nodes} runs`,
    );
  if (values.out)
    writeFileSync(values.out.replace(/\.json$/, `-profile-${label}.json`), JSON.stringify(summary, null, 1));
}

await main();
