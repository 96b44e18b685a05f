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
 *
 * Issue 11 (GPU memory): `--gpu-memory-limit 16GiB,22GiB,none` and `--placement gpu,cpu-encoders`
 * run every config once per limit × placement (models.gpuMemoryLimit, models.placement), each its
 * own load. Rows gain `placement`, `gpu_memory_limit_gb`, the child's own peak (nvidia-smi per
 * process), the arenas' high-water marks (ONNX Runtime's AllocatorGetStats, read inside the child
 * by memory-pipeline.js), the MMDiT's activations, and gpu-memory.ts's estimate beside them.
 * `--emulate-card` makes the GPU itself that small (the bench holds the rest); `--calibration FILE`
 * carries figures measured by unlimited rows into the plans of limited ones. `--mixed N` runs N jobs
 * of mixed sizes and counts through one load instead of the rows (memory-rows.ts, bench/gpu/README.md).
 */
import { createHash } from 'node:crypto';
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
import { discoverModelSet } from '../../src/pipeline/models-dir/discover.js';
import { ProcessPipeline } from '../../src/pipeline/process/process-pipeline.js';
import { fileComponents, memoryPlanOf } from '../../src/pipeline/sd35/components.js';
import { mmditActivationBytes } from '../../src/pipeline/sd35/gpu-memory.js';
import type { EngineOptions } from '../../src/pipeline/sd35/options.js';
import type { Fp8Info, GenerationRequest, RuntimePath } from '../../src/pipeline/types.js';
import type { GpuBallast } from './ballast.js';
import {
  checkpointFor,
  groupLoads,
  type Load,
  LoadCosts,
  MIXED_SIZES,
  type MixedJob,
  MODELS,
  PRECISIONS,
  type Precision,
  parseGpuMemoryLimit,
  parsePlacement,
  parseSizes,
  planMixedJobs,
  planWorkloads,
  type RuntimeName,
  shapeSwitches,
  type Workload,
} from './bench-plan.js';
import type { MeasuredInfo, MeasuredOutput } from './memory-pipeline.js';
import {
  type ArenaRow,
  classifyFailure,
  denoiseVsUnlimited,
  type MixedJobRow,
  type MixedSummary,
  memoryFields,
  mixedSummary,
  readCalibration,
  recordCalibration,
} from './memory-rows.js';
import { GpuMemory, PingMonitor, ProcessGpuMemory } from './monitors.js';

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
  --fp8-act-scale X --vae-fp16 --profile
 issue 11 (GPU memory):
  --gpu-memory-limit LIST   models.gpuMemoryLimit per load: none,22GiB,16GiB (bare numbers are GiB; default none)
  --placement LIST      models.placement per load: auto, gpu, cpu-encoders (default auto)
  --session-api auto|capi   capi: every session through the C API, so every arena reports (default auto)
  --emulate-card        under a limit, hold the rest of the GPU in this process: the child sees a card that size
  --calibration FILE    unlimited CUDA rows write their measured figures here (per model family);
                        limited rows plan with them (EngineOptions.memoryCalibration); without it, the constants
  --mixed N             instead of the rows: N jobs of mixed sizes and counts through one load (the first
                        --configs, --gpu-memory-limit and --placement entries), reporting completions, refusals,
                        out-of-memory failures and recovery
  --mixed-steps N --mixed-seed N --mixed-repeat N (jobs per shape, default 1) --mixed-counts 1,2,3,4
  --mixed-sizes 512x512,1024x768,…  (default 512² to 1024², landscape and portrait)
  --append              keep the rows --out already holds (several runs, one file: limited rows find their
                        unlimited twins for denoise_vs_unlimited)`;

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
    'gpu-memory-limit': { type: 'string', default: 'none' },
    placement: { type: 'string', default: 'auto' },
    'session-api': { type: 'string', default: 'auto' },
    'emulate-card': { type: 'boolean', default: false },
    calibration: { type: 'string' },
    mixed: { type: 'string' },
    'mixed-steps': { type: 'string', default: '8' },
    'mixed-seed': { type: 'string', default: '1' },
    'mixed-repeat': { type: 'string', default: '1' },
    'mixed-counts': { type: 'string', default: '1,2,3,4' },
    'mixed-sizes': { type: 'string' },
    append: { type: 'boolean', default: false },
  },
});

const GiB = 2 ** 30;

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
  /**
   * The first image's pixels, SHA-256 (16 hex digits): rows of the same request that differ only in
   * how the work is issued (steps queued) must make the same image, bit for bit.
   */
  image_sha256?: string;
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
  /** models.placement asked for; `placement` is the one that ran (info().memory: auto's choice, or cpu). */
  placement_requested: string;
  placement: string | null;
  /** models.gpuMemoryLimit in GiB; null: none. */
  gpu_memory_limit_gb: number | null;
  /** --emulate-card: the GPU's free memory the child started with (the bench held the rest), GiB. */
  card_free_gb: number | null;
  /** The pipeline child's own peak (nvidia-smi per process, the timed generation), GiB; null where not listed. */
  process_peak_gpu_mem_gb: number | null;
  arena_total_gb: number | null;
  mmdit_activation_gb: number | null;
  mmdit_max_alloc_gb: number | null;
  mmdit_in_use_gb: number | null;
  vae_decode_gb: number | null;
  text_activation_gb: number | null;
  non_arena_gb: number | null;
  arenas?: ArenaRow[];
  /** gpu-memory.ts with its shipped constants (what `atelier doctor` says), for this row's job: peak GiB, fits, placement. */
  estimate_peak_gb: number | null;
  estimate_fits: boolean | null;
  estimate_placement: string | null;
  /** The plan the engine ran (calibrated by --calibration under a limit): the job's expected peak, GiB. */
  plan_peak_gb: number | null;
  plan_calibrated: boolean;
  /** Most images per job at the model's resolution the plan allows (null: no budget). */
  plan_max_images: number | null;
  /** (measured peak − plan_peak) / plan_peak, in % (the process's peak, else the device's). */
  estimate_error_pct: number | null;
  vae_tiled: boolean | null;
  /** Limited rows: denoising time over the unlimited row of the same workload (target ≤ 1.05). */
  denoise_vs_unlimited?: number | null;
  /** The preflight refused the load or the job (a clear line, not a crash): its message. */
  refused?: string;
  error?: string;
}

interface Skipped {
  model: string;
  precision: string;
  size: number;
  steps: number;
  batch: number;
  path: RuntimeName;
  placement: string;
  gpu_memory_limit_gb: number | null;
  reason: string;
}

const started = Date.now();
const budgetMs = Number(values['budget-s']) * 1000;
const left = () => budgetMs - (Date.now() - started);
const here = dirname(fileURLToPath(import.meta.url));
const list = (s: string | undefined) => (s ?? '').split(',').filter((v) => v.trim() !== '');
const rows: Row[] = [];
const skipped: Skipped[] = [];
let mixed: MixedReport | undefined;

const PROMPT = 'a lighthouse at dusk, oil painting, dramatic sky, crashing waves';

/**
 * The warm-up's request, or with `prompt` the timed one's: a prompt of its own, so the text
 * encoders run in the timed generation too (a cache hit would hide their time and memory).
 */
function request(w: Workload, steps = w.steps, prompt = PROMPT): GenerationRequest {
  return {
    prompt,
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

/** --append: the commands whose rows the --out file already held. */
const earlierCommands: string[] = [];

/** --append: keeps the rows (and skips) --out already holds, so several runs make one file. */
function appendToOut(): void {
  if (!values.append || !values.out || !existsSync(values.out)) return;
  const earlier = JSON.parse(readFileSync(values.out, 'utf8')) as {
    command?: string;
    commands?: string[];
    rows?: Row[];
    skipped?: Skipped[];
  };
  earlierCommands.push(...(earlier.commands ?? (earlier.command ? [earlier.command] : [])));
  rows.push(...(earlier.rows ?? []));
  skipped.push(...(earlier.skipped ?? []));
}

function save(): void {
  if (!values.out) return;
  const command = `node atelier-bench.js ${process.argv.slice(2).join(' ')}`;
  const envelope = {
    engine: 'atelier',
    date: new Date().toISOString().slice(0, 10),
    command,
    ...(earlierCommands.length ? { commands: [...earlierCommands, command] } : {}),
    custom_ops_library: customOps() ?? null,
    units: { memory: 'GiB' },
    rows: denoiseVsUnlimited(rows),
    skipped,
    ...(mixed ? { mixed } : {}),
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
  const calibration = load.limitGiB !== null ? calibrations()[entry.name] : undefined;
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
    // Issue 11: the product's memory settings, and what makes every arena report.
    placement: load.placement,
    ...(load.limitGiB !== null ? { gpuMemoryLimit: Math.round(load.limitGiB * GiB) } : {}),
    ...(values['session-api'] === 'capi' ? { sessionApi: 'capi' as const } : {}),
    ...(calibration ? { memoryCalibration: calibration } : {}),
  };
}

/** The figures --calibration holds per model family (read afresh: unlimited rows add to it). */
function calibrations() {
  return values.calibration && values.calibration !== 'off' ? readCalibration(values.calibration) : {};
}

/** The child's pipeline module: memory-pipeline.js (the engine plus its arenas) beside this file. */
function pipelineModule(): string {
  const measured = join(here, 'memory-pipeline.js');
  return existsSync(measured) ? measured : join(here, 'sd35.js');
}

/** What gpu-memory.ts expects of a job under some engine options (read from the files' headers). */
interface Estimate {
  placement: string;
  peakGb: number;
  fits: boolean;
}

function estimateOf(options: EngineOptions, w: Pick<Workload, 'size' | 'batch'>): Estimate | undefined {
  try {
    const set = discoverModelSet({
      modelsDir: options.modelsDir,
      checkpoint: options.checkpoint,
      textEncoders: options.textEncoders,
      dataDir: options.dataDir,
    });
    const { input, plan } = memoryPlanOf(options, set, fileComponents(set));
    if (!plan.breakdown) return undefined;
    const peak = plan.breakdown.fixedBytes + mmditActivationBytes(input, w.size, w.size, w.batch);
    return {
      placement: plan.placement,
      peakGb: peak / GiB,
      fits: plan.budget.bytes === undefined || peak <= plan.budget.bytes,
    };
  } catch {
    return undefined;
  }
}

/**
 * The path that actually runs: a capi request that fell back is a stock row with its reason; at
 * fp8, how the linear layers ran and why (info().fp8).
 */
function pathOf(requested: RuntimeName, runtime: RuntimePath | undefined, fp8?: Fp8Info) {
  const path = runtime?.path ?? 'stock';
  const graph = path === 'capi' ? runtime?.stepGraph : undefined;
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
    // Issue 10: the step graph's optional kernels as the engine built them (runtime.stepGraph).
    ...(graph?.fp8Attention ? { fp8_attention: true } : {}),
    ...(graph ? { flash_attention: graph.flashAttention } : {}),
    ...(path === 'capi' && runtime?.attention ? { attention: runtime.attention.summary } : {}),
    ...(graph
      ? { step_fusions: graph.stepFusions, paired_norms: graph.pairedNorms, shared_rows: graph.sharedRows }
      : {}),
    // Denoising steps queued on the GPU (2 on CUDA; ATELIER_STEP_QUEUE=1: one; capi-denoiser.ts).
    ...(path === 'capi' && runtime?.stepsQueued ? { step_queue: runtime.stepsQueued } : {}),
    // cuBLASLt algorithms timed per shape: read by the op library itself, so the environment says.
    ...(path === 'capi' && runtime?.customOps && process.env.ATELIER_GEMM_AUTOTUNE !== '0'
      ? { gemm_autotune: true }
      : {}),
    ...(graph && fp8?.route === 'w8a8'
      ? { fp8_fast_accumulation: graph.fp8FastAccumulation, fp8_mlp_handoff: graph.fp8MlpHandoff }
      : {}),
  };
}

/** `w8a8`, or the weight-only kernel that ran (the forced one, else the provider's). */
function fp8LinearOf(fp8: Fp8Info): string {
  if (fp8.route === 'w8a8') return 'w8a8';
  const forced = values['fp8-linear'];
  if (forced === 'block-fp8' || forced === 'dequantize') return forced;
  return values.provider === 'cuda' ? 'block-fp8' : 'dequantize';
}

function memoryLabel(x: Pick<Workload, 'placement' | 'limitGiB'>): string {
  if (x.placement === 'auto' && x.limitGiB === null) return '';
  return ` [${x.placement}${x.limitGiB === null ? '' : `, ${x.limitGiB} GiB`}]`;
}

function label(w: Workload): string {
  const cfg = w.guidance > 1 ? '' : ' no-CFG';
  return `${MODELS[w.model].name} ${w.precision} ${w.size}² ${w.steps} steps ×${w.batch}${cfg}${memoryLabel(w)}`;
}

const costs = new LoadCosts();

/** What the rows of one load share: where its memory readings start, the card, the plan, the estimates. */
interface LoadContext {
  /** Device-wide reading before the child started (the ballast included), GiB. */
  baselineGb: number;
  cardFreeGb: number | null;
  info?: MeasuredInfo;
  calibrated: boolean;
  /** gpu-memory.ts's estimates of a workload: shipped constants, and the plan the engine ran. */
  estimate(w: Workload): { shipped?: Estimate; plan?: Estimate };
}

let ballast: GpuBallast | null | undefined;

/** The card-emulating ballast (--emulate-card on CUDA), opened once; null where it cannot run. */
async function ballastFor(load: Pick<Load, 'limitGiB'>): Promise<GpuBallast | null> {
  if (!values['emulate-card'] || load.limitGiB === null || values.provider !== 'cuda') return null;
  if (ballast === undefined) {
    const { GpuBallast } = await import('./ballast.js');
    const opened = GpuBallast.open();
    if (!opened.ballast) console.log(`--emulate-card: not emulating (${opened.reason})`);
    ballast = opened.ballast ?? null;
  }
  return ballast;
}

/** A moment for the previous child's memory to come back and nvidia-smi to see it; then the reading. */
async function settledReading(memory: GpuMemory): Promise<number> {
  await new Promise((r) => setTimeout(r, 600));
  return memory.nowGb;
}

/**
 * Starts a load's child under its memory settings (the card emulated first): the context its rows
 * share, and the pipeline (loaded, or the load's error).
 */
async function startLoad(
  load: Load,
  memory: GpuMemory,
  processes: ProcessGpuMemory,
  options: EngineOptions,
): Promise<{ pipeline: ProcessPipeline; context: LoadContext; loadSeconds: number; error?: unknown }> {
  let cardFreeGb: number | null = null;
  const held = await ballastFor(load);
  if (held && load.limitGiB !== null) {
    held.release();
    try {
      cardFreeGb = held.fill(Math.round(load.limitGiB * GiB)) / GiB;
      console.log(
        `card emulated: ${cardFreeGb.toFixed(2)} GiB free (${(held.held / GiB).toFixed(1)} GiB held by the bench)`,
      );
    } catch (error) {
      held.release();
      console.log(`--emulate-card: not emulating this load (${(error as Error).message})`);
    }
  }
  const shipped = new Map<string, Estimate | undefined>();
  const planned = new Map<string, Estimate | undefined>();
  const { memoryCalibration: _, ...uncalibrated } = options;
  const context: LoadContext = {
    baselineGb: await settledReading(memory),
    cardFreeGb,
    calibrated: options.memoryCalibration !== undefined,
    estimate(w) {
      const key = `${w.size}x${w.batch}`;
      if (!shipped.has(key)) shipped.set(key, estimateOf(uncalibrated, w));
      if (!planned.has(key))
        planned.set(key, options.memoryCalibration ? estimateOf(options, w) : shipped.get(key));
      return { shipped: shipped.get(key), plan: planned.get(key) };
    },
  };
  const pipeline = new ProcessPipeline({ spec: { module: pipelineModule(), options } });
  memory.reset();
  processes.reset();
  const t0 = performance.now();
  try {
    await pipeline.load();
    context.info = pipeline.info() as MeasuredInfo;
    return { pipeline, context, loadSeconds: (performance.now() - t0) / 1000 };
  } catch (error) {
    return { pipeline, context, loadSeconds: (performance.now() - t0) / 1000, error };
  }
}

async function runLoad(
  load: Load,
  index: number,
  loads: Load[],
  dataDir: string,
  memory: GpuMemory,
  processes: ProcessGpuMemory,
) {
  const options = engineOptions(load, dataDir);
  const tag = `${load.weights}-${load.precision}-${load.path}${load.placement === 'auto' ? '' : `-${load.placement}`}${load.limitGiB === null ? '' : `-${load.limitGiB}GiB`}`;
  const profileDir = values.profile ? join(dataDir, `profile-${tag}`) : undefined;
  if (profileDir) {
    rmSync(profileDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
    options.profileDir = profileDir;
  }
  const { pipeline, context, loadSeconds, error } = await startLoad(load, memory, processes, options);
  const warm = new Set<string>();
  // Until the pipeline says which path it runs (a failed load never does), rows name the one asked for.
  let runtime: ReturnType<typeof pathOf> = { path: load.path, cuda_graph: false, custom_ops: false };
  try {
    if (error) throw error;
    const info = context.info!;
    runtime = pathOf(load.path, info.runtime, info.fp8);
    console.log(
      `${tag}: loaded in ${loadSeconds.toFixed(1)} s, ${(memory.nowGb - context.baselineGb).toFixed(1)} GiB, ` +
        `path ${runtime.path}${runtime.cuda_graph ? ' +graph' : ''}${runtime.custom_ops ? ' +ops' : ''}` +
        `${runtime.fallback_reason ? ` (fallback: ${runtime.fallback_reason})` : ''}` +
        `${runtime.fp8_reason ? `; ${runtime.fp8_reason}` : ''}` +
        `${info.memory ? `; memory: ${info.memory.summary}${context.calibrated ? ' (calibrated)' : ''}` : ''}`,
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
        rows.push(await measure(pipeline, w, load, runtime, loadSeconds, warm, memory, processes, context));
      } catch (failure) {
        rows.push(failedRow(w, load, runtime, loadSeconds, failure, context));
      }
      save();
      console.log(JSON.stringify({ ...rows.at(-1), arenas: undefined }));
    }
  } catch (failure) {
    for (const w of load.rows) rows.push(failedRow(w, load, runtime, loadSeconds, failure, context));
    save();
  } finally {
    await pipeline.dispose();
    ballast?.release();
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
  processes: ProcessGpuMemory,
  context: LoadContext,
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
  processes.reset();
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
  let out: MeasuredOutput;
  let wall: number;
  try {
    out = await pipeline.generate(request(w, w.steps, `${PROMPT}, timed`), { onStep });
  } finally {
    wall = (performance.now() - t1) / 1000;
    delay.disable();
    await pings.stop();
  }
  // The readings of the last 100 ms of the job: nvidia-smi polls every 100 ms.
  await new Promise((r) => setTimeout(r, 250));
  const ping = pings.stats(firstStep, lastStep);
  const whole = pings.stats();
  const t = out.timings!;
  // The same request on both paths (stock runs first): the C-API path must make the same image.
  const key = JSON.stringify([w.model, w.precision, w.size, w.steps, w.batch, w.guidance]);
  const image = out.images[0].data;
  if (runtime.path === 'stock') stockImages.set(key, image);
  const stock = runtime.path === 'capi' ? stockImages.get(key) : undefined;
  const devicePeak = memory.peakGb - context.baselineGb;
  const processPeak = processes.peakGb(pipeline.pid);
  const job = { width: w.size, height: w.size, count: w.batch };
  const fields = memoryFields(out.arenas, job, processPeak);
  // Unlimited rows on CUDA calibrate the limited ones (per family, one image per job).
  const file = values.calibration && values.calibration !== 'off' ? values.calibration : undefined;
  if (file && load.limitGiB === null && w.batch === 1 && values.provider === 'cuda') {
    const entry = recordCalibration(
      file,
      MODELS[load.weights].name,
      out.arenas,
      job,
      processPeak ?? devicePeak,
      `${new Date().toISOString().slice(0, 10)} ${label(w)}`,
    );
    if (entry) console.log(`calibration ${MODELS[load.weights].name}: ${JSON.stringify(entry)}`);
  }
  const measured = processPeak ?? devicePeak;
  const memoryColumns = memoryColumnsOf(w, context);
  return {
    ...identity(w, load, runtime, context),
    seconds_per_image: wall / w.batch,
    peak_gpu_mem_gb: devicePeak,
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
    image_sha256: createHash('sha256').update(image).digest('hex').slice(0, 16),
    process_peak_gpu_mem_gb: processPeak ?? null,
    ...fields,
    ...memoryColumns,
    estimate_error_pct:
      memoryColumns.plan_peak_gb && values.provider === 'cuda'
        ? Number(((100 * (measured - memoryColumns.plan_peak_gb)) / memoryColumns.plan_peak_gb).toFixed(1))
        : null,
    vae_tiled: t.vaeTiled ?? null,
  };
}

/** gpu-memory.ts's view of a row: shipped constants, and the plan the engine ran. */
function memoryColumnsOf(w: Workload, context: LoadContext) {
  const { shipped, plan } = context.estimate(w);
  const r = (v: number | undefined) => (v === undefined ? null : Number(v.toFixed(3)));
  return {
    estimate_peak_gb: r(shipped?.peakGb),
    estimate_fits: shipped?.fits ?? null,
    estimate_placement: shipped?.placement ?? null,
    plan_peak_gb: r(plan?.peakGb),
    plan_calibrated: context.calibrated,
    plan_max_images: context.info?.memory?.maxImages ?? null,
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

function identity(w: Workload, load: Load, runtime: ReturnType<typeof pathOf>, context?: LoadContext) {
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
    placement_requested: load.placement,
    placement: context?.info?.memory?.placement ?? null,
    gpu_memory_limit_gb: load.limitGiB,
    card_free_gb:
      context?.cardFreeGb === undefined || context.cardFreeGb === null
        ? null
        : Number(context.cardFreeGb.toFixed(3)),
  };
}

function failedRow(
  w: Workload,
  load: Load,
  runtime: ReturnType<typeof pathOf>,
  loadSeconds: number,
  error: unknown,
  context?: LoadContext,
): Row {
  const message = String((error as Error).message ?? error).split('\n')[0];
  const refused = classifyFailure(error) === 'refused';
  console.log(`${label(w)} on ${load.path}: ${refused ? 'REFUSED' : 'FAILED'} ${message}`);
  return {
    ...identity(w, load, runtime, context),
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
    process_peak_gpu_mem_gb: null,
    ...memoryFields(undefined, { width: w.size, height: w.size, count: w.batch }, undefined),
    arenas: undefined,
    ...(context
      ? memoryColumnsOf(w, context)
      : {
          estimate_peak_gb: null,
          estimate_fits: null,
          estimate_placement: null,
          plan_peak_gb: null,
          plan_calibrated: false,
          plan_max_images: null,
        }),
    estimate_error_pct: null,
    vae_tiled: null,
    ...(refused ? { refused: message } : {}),
    error: message,
  };
}

function skip(w: Workload, path: RuntimeName, reason: string): void {
  console.log(`skipping ${label(w)} on ${path}: ${reason}`);
  const { model, precision, size, steps, batch, placement, limitGiB } = w;
  skipped.push({
    model: MODELS[model].name,
    precision,
    size,
    steps,
    batch,
    path,
    placement,
    gpu_memory_limit_gb: limitGiB,
    reason,
  });
}

/** `--mixed N`: the jobs, what each did, and the verdict. */
interface MixedReport {
  config: string;
  model: string;
  precision: string;
  path: string;
  placement_requested: string;
  placement: string | null;
  gpu_memory_limit_gb: number | null;
  card_free_gb: number | null;
  plan_calibrated: boolean;
  plan_max_images: number | null;
  memory_summary: string | null;
  steps: number;
  seed: number;
  repeat: number;
  load_seconds: number;
  load_error?: string;
  jobs: MixedJobRow[];
  summary: MixedSummary;
}

const MIXED_PROMPTS = [
  'a lighthouse at dusk, oil painting, dramatic sky',
  'a red fox in fresh snow, wildlife photograph',
  'isometric city block at night, neon signs, rain',
  'a bowl of ramen on a wooden table, studio lighting',
  'portrait of an old sailor, charcoal sketch',
  'a glass greenhouse full of ferns, morning fog',
  'retro sci-fi rocket on a desert plateau, poster art',
  'watercolor map of an imaginary archipelago',
];

/**
 * `--mixed N`: N jobs of mixed sizes and counts through one load (the first config, limit and
 * placement), one after another as a bot's queue would send them. Each job's outcome: completed,
 * refused by the preflight (a clear message), out of memory, the child crashed; and whether jobs
 * after a failure completed again. With --calibration and a limit, an unlimited calibration row
 * runs first when the file has no figures for the model yet.
 */
async function runMixed(dataDir: string, memory: GpuMemory, processes: ProcessGpuMemory): Promise<void> {
  const [config] = list(values.configs);
  const limitGiB = parseGpuMemoryLimit(list(values['gpu-memory-limit'])[0] ?? 'none');
  const placement = parsePlacement(list(values.placement)[0] ?? 'auto');
  const path = (list(values.runtime)[0] ?? 'capi') as RuntimeName;
  const steps = Number(values['mixed-steps']);
  const plan = (o: { limit: number | null; placement: typeof placement; steps: number }) =>
    groupLoads(
      planWorkloads({
        configs: [config],
        precision: values.precision as Precision | undefined,
        steps: [o.steps],
        batches: [1],
        size: Number(values.size),
        turbo: [],
        turboSteps: 4,
        small: [],
        smallSize: 512,
        smallSteps: 28,
        limits: [o.limit],
        placements: [o.placement],
      }),
      [path],
    )[0];
  const load = plan({ limit: limitGiB, placement, steps });
  const family = MODELS[load.weights].name;
  if (
    values.provider === 'cuda' &&
    values.calibration &&
    values.calibration !== 'off' &&
    limitGiB !== null &&
    !calibrations()[family]
  ) {
    console.log(`mixed: no calibration for ${family} in ${values.calibration}: one unlimited row first`);
    const calibrate = plan({ limit: null, placement: 'gpu', steps });
    await runLoad(calibrate, 0, [calibrate], dataDir, memory, processes);
  }
  const jobs = planMixedJobs({
    jobs: Number(values.mixed),
    seed: Number(values['mixed-seed']),
    sizes: values['mixed-sizes'] ? parseSizes(values['mixed-sizes']) : MIXED_SIZES,
    counts: list(values['mixed-counts']).map(Number),
    repeat: Number(values['mixed-repeat']),
  });
  const switches = shapeSwitches(jobs);
  const title = `${family} ${load.precision}${memoryLabel(load)}`;
  const options = engineOptions(load, dataDir);
  console.log(
    `mixed: ${jobs.length} jobs (${switches} shape switches), ${title} on ${path}, ${steps} steps each`,
  );
  const { pipeline, context, loadSeconds, error } = await startLoad(load, memory, processes, options);
  const done: MixedJobRow[] = [];
  const report = (): MixedReport => ({
    config: title,
    model: family,
    precision: load.precision,
    path,
    placement_requested: placement,
    placement: context.info?.memory?.placement ?? null,
    gpu_memory_limit_gb: limitGiB,
    card_free_gb: context.cardFreeGb === null ? null : Number(context.cardFreeGb.toFixed(3)),
    plan_calibrated: context.calibrated,
    plan_max_images: context.info?.memory?.maxImages ?? null,
    memory_summary: context.info?.memory?.summary ?? null,
    steps,
    seed: Number(values['mixed-seed']),
    repeat: Number(values['mixed-repeat']),
    load_seconds: loadSeconds,
    ...(error ? { load_error: String((error as Error).message ?? error).split('\n')[0] } : {}),
    jobs: done,
    summary: mixedSummary(done, jobs.length, switches),
  });
  pipeline.on('crashed', (detail: string) => {
    console.log(`mixed: the pipeline process crashed (${detail}); it restarts with the next job`);
  });
  try {
    if (error) {
      console.log(`mixed: the load failed: ${String((error as Error).message ?? error).split('\n')[0]}`);
      return;
    }
    console.log(`mixed: loaded in ${loadSeconds.toFixed(1)} s; ${context.info?.memory?.summary ?? ''}`);
    let slowest = 30_000;
    for (const job of jobs) {
      if (left() < slowest + 10_000) {
        console.log(
          `mixed: budget: ${(left() / 1000).toFixed(0)} s left, ${jobs.length - done.length} jobs not run`,
        );
        break;
      }
      done.push(await mixedJob(pipeline, job, memory, processes, context));
      const last = done.at(-1)!;
      slowest = Math.max(slowest, last.seconds * 1000);
      console.log(
        `job ${job.index + 1}/${jobs.length} ${job.width}×${job.height} ×${job.count}: ${last.outcome} in ${last.seconds.toFixed(1)} s, ` +
          `peak ${last.process_peak_gb ?? last.device_peak_gb ?? '-'} GiB${last.message ? ` — ${last.message}` : ''}`,
      );
      mixed = report();
      save();
    }
  } finally {
    mixed = report();
    save();
    await pipeline.dispose();
    ballast?.release();
    const s = mixed.summary;
    console.log(
      `\nmixed: ${s.completed}/${s.planned} completed, ${s.refused} refused, ${s.oom} out of memory, ${s.crashed} crashed, ` +
        `${s.errors} other errors, ${s.skipped} not run; recovered after a failure: ${s.recovered_after_failure ?? 'n/a'}; ` +
        `peak ${s.max_process_peak_gb ?? s.max_device_peak_gb ?? '-'} GiB; target ${s.target_met ? 'MET' : 'not met'}`,
    );
  }
}

async function mixedJob(
  pipeline: ProcessPipeline,
  job: MixedJob,
  memory: GpuMemory,
  processes: ProcessGpuMemory,
  context: LoadContext,
): Promise<MixedJobRow> {
  memory.reset();
  processes.reset();
  const prompt = `${MIXED_PROMPTS[job.run % MIXED_PROMPTS.length]}, take ${job.run}`;
  const t0 = performance.now();
  let out: MeasuredOutput | undefined;
  let failure: unknown;
  try {
    out = await pipeline.generate({
      prompt,
      negativePrompt: 'blurry, low quality',
      width: job.width,
      height: job.height,
      seed: job.seed,
      steps: Number(values['mixed-steps']),
      guidance: 4.5,
      sampler: 'euler',
      count: job.count,
    });
  } catch (error) {
    failure = error;
  }
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 250));
  const processPeak = processes.peakGb(pipeline.pid);
  const fields = memoryFields(out?.arenas, job, processPeak);
  const outcome = failure ? classifyFailure(failure) : 'ok';
  return {
    index: job.index,
    run: job.run,
    width: job.width,
    height: job.height,
    count: job.count,
    outcome,
    seconds,
    process_peak_gb: processPeak === undefined ? null : Number(processPeak.toFixed(3)),
    device_peak_gb:
      values.provider === 'cuda' ? Number((memory.peakGb - context.baselineGb).toFixed(3)) : null,
    mmdit_activation_gb: fields.mmdit_activation_gb,
    vae_decode_gb: fields.vae_decode_gb,
    vae_tiled: out?.timings?.vaeTiled ?? null,
    passes: out?.timings?.passes ?? null,
    prompt_cached: out?.timings?.promptCached ?? null,
    ...(failure ? { message: String((failure as Error).message ?? failure).split('\n')[0] } : {}),
  };
}

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
  if (!['auto', 'capi'].includes(values['session-api']!)) throw new Error('--session-api: auto or capi');
  const limits = list(values['gpu-memory-limit']).map(parseGpuMemoryLimit);
  const placements = list(values.placement).map(parsePlacement);
  const dataDir = resolve(values.data!);
  mkdirSync(join(dataDir, 'tokenizers'), { recursive: true });
  // ComfyUI folders carry no tokenizers: Atelier looks in <dataDir>/tokenizers.
  if (values.tokenizers) {
    for (const kind of ['clip', 't5']) {
      const link = join(dataDir, 'tokenizers', kind);
      // A link left by an earlier run may point elsewhere (or nowhere): this run's folder wins.
      rmSync(link, { force: true });
      symlinkSync(resolve(values.tokenizers, kind), link);
    }
  }
  appendToOut();
  console.log(`custom ops for the C-API path: ${customOps() ?? '(the engine default)'}`);
  console.log(`pipeline module: ${pipelineModule()}`);
  const memory = new GpuMemory();
  const processes = new ProcessGpuMemory();
  memory.start();
  processes.start();
  try {
    if (values.mixed) {
      await runMixed(dataDir, memory, processes);
      return;
    }
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
        limits: limits.length ? limits : [null],
        placements: placements.length ? placements : ['auto'],
      }),
      paths,
    );
    console.log(
      `plan: ${loads.map((l) => `${l.weights}:${l.precision}:${l.path}${memoryLabel(l)} [${l.rows.map(label).join('; ')}]`).join('\n      ')}`,
    );
    for (const [index, load] of loads.entries()) {
      const priority = Math.min(...load.rows.map((r) => r.priority));
      const reserve = costs.reserveMs(loads, index, priority);
      if (left() - reserve < 60_000) {
        for (const w of load.rows) skip(w, load.path, `budget: ${(left() / 1000).toFixed(0)} s left`);
        save();
        continue;
      }
      const t0 = performance.now();
      await runLoad(load, index, loads, dataDir, memory, processes);
      costs.record(load, performance.now() - t0);
    }
    save();
    printSummary();
  } finally {
    memory.stop();
    processes.stop();
  }
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
  if (!rows.some((r) => r.gpu_memory_limit_gb !== null || r.arenas?.length)) return;
  // Issue 11: GiB; peak = the child's own (nvidia-smi per process), else the device's less the baseline.
  console.log(
    '\nmodel        ×n placement (ran)          limit   peak  estimate  plan  err %  mmdit act  vae   text  non-arena  denoise ×unl  refused/error',
  );
  for (const r of rows) {
    const peak = r.process_peak_gpu_mem_gb ?? (r.error ? null : r.peak_gpu_mem_gb);
    console.log(
      `${r.model.padEnd(12)} ${String(r.batch).padStart(2)} ${`${r.placement_requested} (${r.placement ?? '-'})`.padEnd(24)} ` +
        `${f(r.gpu_memory_limit_gb, 1).padStart(5)} ${f(peak).padStart(6)} ${f(r.estimate_peak_gb).padStart(9)} ` +
        `${f(r.plan_peak_gb).padStart(5)}${r.plan_calibrated ? 'c' : ' '} ${f(r.estimate_error_pct, 1).padStart(5)} ` +
        `${f(r.mmdit_activation_gb).padStart(10)} ${f(r.vae_decode_gb).padStart(5)} ${f(r.text_activation_gb).padStart(6)} ` +
        `${f(r.non_arena_gb).padStart(10)} ${f(r.denoise_seconds / r.batch, 3).padStart(8)} ${f(r.denoise_vs_unlimited, 3).padStart(5)}` +
        `${r.refused ? `  REFUSED ${r.refused}` : r.error ? `  ERROR ${r.error}` : ''}`,
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
