/**
 * Issue 10's quality report: how far FP8 moves SD3.5's denoising from our FP16 path, on the C-API
 * path (the one W8A8 runs on). For each model, the same requests (seed, prompt) run with
 *
 *   fp16         the fp16 checkpoint, fp16 weights (fp32 on the CPU);
 *   w8a8         the scaled-fp8 checkpoint, `fp8Linear: 'w8a8'` (our atelier:Fp8Linear: e4m3
 *                activations per token × e4m3 weights per channel): what `precision: fp8` runs on
 *                FP8 tensor cores (forced here, so the CPU runs it too, on the reference kernels);
 *   fp8-weights  the scaled-fp8 checkpoint at `precision: fp8-weights`, weight-only fp8
 *                (`block-fp8` on CUDA, `dequantize` on the CPU);
 *
 * and the report gives the relative L2 (‖a − b‖ / ‖b‖, float64) of the final latent and of the
 * velocity and denoised estimate at chosen steps, W8A8 vs fp16, weight-only fp8 vs fp16 and W8A8 vs
 * weight-only fp8. Each variant is its own in-process Sd35Engine (loaded, measured, disposed).
 *
 * Only the MMDiT differs: every variant denoises with the fp16 load's text conditioning (its own
 * encoders' output, fp8 T5 included, is compared with it in `text_context_rel_l2`). The velocity
 * comes from the sampler's own states: the trajectory runs as segments (Sd35Engine.sample with a
 * slice of the schedule, starting from the previous segment's latent; the same Euler steps as one
 * call), so x_k and x_{k+1} are read around each reported step k and v_k = (x_{k+1} − x_k) /
 * (σ_{k+1} − σ_k) — the CFG-combined velocity the sampler integrates; denoised d_k = x_k − σ_k·v_k.
 * Latents are compared in the sampler's space (process_in), not the VAE's.
 *
 *   node quality-bench.js --models DIR --out FILE [--which large,medium] [--size 1024] [--steps 28]
 *        [--seeds 1,2] [--at-steps 1,7,14,21,28] [--variants fp16,w8a8,fp8-weights] [--budget-s 480]
 *        [--provider cuda|cpu] [--custom-ops FILE|none] [--tokenizers DIR] [--data DIR]
 */
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { processIn } from '../../src/pipeline/sampling/latent-format.js';
import { type PreparedGeneration, Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { EngineOptions } from '../../src/pipeline/sd35/options.js';
import type { GenerationRequest } from '../../src/pipeline/types.js';
import { CFG, MODELS } from './bench-plan.js';
import {
  boundariesFor,
  type Pair,
  type QualityRow,
  relL2,
  summarize,
  VARIANTS,
  type Variant,
  velocityAt,
  W8A8_VARIANTS,
} from './quality-math.js';

const USAGE = `usage: node quality-bench.js --models DIR --out FILE [options]
  --models DIR        folder with large/ and medium/ (make_weights.py, fp16 and fp8 files)
  --out FILE          the report as JSON (written after every variant)
  --which LIST        models (default large,medium)
  --size N --steps N  (default 1024 and 28)
  --seeds LIST        one request per seed, prompts in turn (default 1,2)
  --at-steps LIST     1-based steps whose velocity and denoised are compared (default 1,7,14,21,28)
  --variants LIST     fp16,w8a8,fp8-weights,w8a8-fp8attn,w8a8-fastacc,w8a8-handoff (fp16 first: the reference)
  --budget-s N        whole run; variants that would not fit are skipped (default 480)
  --provider cuda|cpu --custom-ops FILE|none --tokenizers DIR --data DIR`;

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', default: false },
    models: { type: 'string' },
    out: { type: 'string' },
    which: { type: 'string', default: 'large,medium' },
    size: { type: 'string', default: '1024' },
    steps: { type: 'string', default: '28' },
    seeds: { type: 'string', default: '1,2' },
    'at-steps': { type: 'string', default: '1,7,14,21,28' },
    variants: { type: 'string', default: VARIANTS.join(',') },
    'budget-s': { type: 'string', default: '480' },
    provider: { type: 'string', default: 'cuda' },
    'custom-ops': { type: 'string' },
    tokenizers: { type: 'string' },
    data: { type: 'string', default: '/tmp/atelier-bench-data' }, // atelier-bench's: its cached graphs are reused
  },
});

const PROMPTS = [
  'a lighthouse at dusk, oil painting, dramatic sky, crashing waves',
  'a red fox sitting in fresh snow, morning light, photograph, shallow depth of field',
  'a bowl of lemons on a blue tablecloth, still life, soft shadows',
];
const NEGATIVE = 'blurry, low quality';

const started = Date.now();
const left = () => Number(values['budget-s']) * 1000 - (Date.now() - started);
const here = dirname(fileURLToPath(import.meta.url));
const list = (s: string | undefined) =>
  (s ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
const provider = values.provider === 'cpu' ? 'cpu' : 'cuda';

/** The CUDA (or CPU) custom-op library bundle.mjs copied beside this file, unless told otherwise. */
function customOps(): string | null | undefined {
  const flag = values['custom-ops'];
  if (flag === 'none') return null;
  if (flag) return resolve(flag);
  const bundled = join(here, provider === 'cuda' ? 'libatelier_ops_cuda.so' : 'libatelier_ops_cpu.so');
  return existsSync(bundled) ? bundled : undefined;
}

function engineOptions(model: string, variant: Variant, dataDir: string): EngineOptions {
  const entry = MODELS[model];
  const fp8 = variant !== 'fp16';
  const ops = customOps();
  return {
    modelsDir: resolve(values.models!, entry.weights),
    checkpoint: entry.checkpoint[fp8 ? 'fp8' : 'fp16'],
    dataDir,
    provider,
    precision: variant === 'fp8-weights' ? 'fp8-weights' : fp8 ? 'fp8' : provider === 'cpu' ? 'fp32' : 'fp16',
    ...(W8A8_VARIANTS.includes(variant) ? { fp8Linear: 'w8a8' as const } : {}),
    ...(variant === 'w8a8-fp8attn' ? { fp8Attention: true } : {}),
    // `w8a8` is exact accumulation, `w8a8-fastacc` the default since the seventh session.
    ...(W8A8_VARIANTS.includes(variant) ? { fp8FastAccumulation: variant === 'w8a8-fastacc' } : {}),
    // `w8a8-handoff`: fc1 → fc2 as e4m3 codes with a delayed per-tensor scale (exact accumulation,
    // so its pair with `w8a8` shows the hand-off alone); never in the other variants.
    ...(W8A8_VARIANTS.includes(variant) ? { fp8MlpHandoff: variant === 'w8a8-handoff' } : {}),
    runtime: 'capi',
    ...(ops !== undefined ? { customOpsLibrary: ops } : {}),
    textEncoders: { t5: fp8 ? 't5xxl_fp8_e4m3fn.safetensors' : 't5xxl_fp16.safetensors' },
  };
}

interface Trajectory {
  seed: number;
  prompt: number;
  /** x_k (sampler space, first image) at each boundary k. */
  states: Map<number, Float32Array>;
  schedule: Float32Array;
  textContextRelL2: number | null;
  denoiseSeconds: number;
}

interface LoadReport {
  model: string;
  variant: Variant;
  checkpoint: string;
  precision: string;
  /** How the MMDiT's fp8 linear layers ran: `w8a8`, or the weight-only kernel (engine.info().fp8 once loaded). */
  fp8_linear: string;
  /** The engine's one line on it ("fp8: W8A8 on Hopper tensor cores (atelier:Fp8Linear)"). */
  fp8_reason?: string;
  path?: string;
  cuda_graph?: boolean;
  custom_ops?: boolean;
  /** false when W8A8 was asked but could not run (no op library on the C-API path): the row measures weight-only fp8. */
  w8a8_ran?: boolean;
  reason?: string;
  /** The T5 file the engine took (its own choice: the engine does not read EngineOptions.textEncoders). */
  t5_file?: string;
  load_seconds?: number;
  /** Per request: the segmented trajectory (a few more calls than one generation; not a speed figure). */
  denoise_seconds?: number[];
  /** The first request's final latent, segmented vs one sample() call: the comparison's noise floor. */
  segmented_vs_one_call_rel_l2?: number;
  error?: string;
}

const report = {
  engine: 'atelier',
  kind: 'quality',
  date: new Date().toISOString().slice(0, 10),
  command: `node quality-bench.js ${process.argv.slice(2).join(' ')}`,
  provider,
  custom_ops_library: null as string | null,
  size: Number(values.size),
  steps: Number(values.steps),
  guidance: CFG,
  sampler: 'euler',
  seeds: list(values.seeds).map(Number),
  at_steps: list(values['at-steps']).map(Number),
  prompts: PROMPTS,
  negative_prompt: NEGATIVE,
  metric:
    'relative L2 ‖a − b‖/‖b‖ in float64 over the first image: final latent (sampler space), CFG velocity and denoised at at_steps',
  conditioning:
    "every variant denoises with the fp16 load's text conditioning; text_context_rel_l2: its own encoders vs that",
  loads: [] as LoadReport[],
  rows: [] as (QualityRow & { seed: number; prompt: number })[],
  summary: [] as Record<string, unknown>[],
  skipped: [] as { model: string; variant: string; reason: string }[],
};

function save(): void {
  if (values.out) writeFileSync(values.out, JSON.stringify(report, null, 1));
}

function request(seed: number, index: number): GenerationRequest {
  return {
    prompt: PROMPTS[index % PROMPTS.length],
    negativePrompt: NEGATIVE,
    width: report.size,
    height: report.size,
    seed,
    steps: report.steps,
    guidance: CFG,
    sampler: 'euler',
    count: 1,
  };
}

/** One request as segments between `boundaries`; x_k at each. */
async function trajectory(
  engine: Sd35Engine,
  seed: number,
  index: number,
  reference: PreparedGeneration | undefined,
  boundaries: number[],
): Promise<{ trajectory: Trajectory; prepared: PreparedGeneration; used: PreparedGeneration }> {
  const own = await engine.prepare(request(seed, index));
  const p: PreparedGeneration = reference ? { ...own, cond: reference.cond, uncond: reference.uncond } : own;
  const per = p.x0.length;
  const states = new Map<number, Float32Array>([[0, p.x0.slice(0, per)]]);
  let x = p.x0;
  let k = 0;
  const t0 = performance.now();
  for (const b of boundaries) {
    if (b <= k) continue;
    x = processIn(await engine.sample({ ...p, x0: x, schedule: p.schedule.slice(k, b + 1) }));
    states.set(b, x.slice(0, per));
    k = b;
  }
  return {
    prepared: own,
    used: p,
    trajectory: {
      seed,
      prompt: index % PROMPTS.length,
      states,
      schedule: p.schedule,
      textContextRelL2: reference ? relL2(own.cond.context, reference.cond.context) : null,
      denoiseSeconds: (performance.now() - t0) / 1000,
    },
  };
}

/** Seconds a variant's load and runs took, guessed until one is measured. */
const seen = new Map<string, number>();
const guess = (model: string) => seen.get(model) ?? (MODELS[model].weights === 'large' ? 90_000 : 60_000);

async function runModel(model: string, variants: Variant[], dataDir: string): Promise<void> {
  const seeds = report.seeds;
  const boundaries = boundariesFor(report.at_steps, report.steps);
  const runs = new Map<Variant, Trajectory[]>();
  let reference: PreparedGeneration[] = [];
  for (const variant of variants) {
    const options = engineOptions(model, variant, dataDir);
    const load: LoadReport = {
      model: MODELS[model].name,
      variant,
      checkpoint: options.checkpoint!,
      precision: options.precision!,
      fp8_linear:
        variant === 'fp16'
          ? 'none'
          : W8A8_VARIANTS.includes(variant)
            ? 'w8a8'
            : provider === 'cuda'
              ? 'block-fp8'
              : 'dequantize',
    };
    if (left() < guess(model)) {
      const reason = `budget: ${(left() / 1000).toFixed(0)} s left, a variant takes ~${(guess(model) / 1000).toFixed(0)} s`;
      console.log(`skipping ${load.model} ${variant}: ${reason}`);
      report.skipped.push({ model: load.model, variant, reason });
      save();
      continue;
    }
    report.loads.push(load);
    const t0 = performance.now();
    const engine = new Sd35Engine(options);
    try {
      await engine.load();
      load.load_seconds = (performance.now() - t0) / 1000;
      const runtime = engine.info().runtime;
      const fp8 = engine.info().fp8;
      Object.assign(load, {
        ...(fp8
          ? {
              fp8_linear: fp8.route === 'w8a8' ? 'w8a8' : provider === 'cuda' ? 'block-fp8' : 'dequantize',
              fp8_reason: fp8.summary,
            }
          : {}),
        path: runtime?.path ?? 'stock',
        cuda_graph: runtime?.cudaGraph ?? false,
        custom_ops: runtime?.customOps ?? false,
        ...(runtime?.reason ? { reason: runtime.reason } : {}),
        t5_file: engine
          .info()
          .components.find((c) => c.name === 't5')
          ?.file?.split('/')
          .at(-1),
      });
      if (W8A8_VARIANTS.includes(variant)) load.w8a8_ran = runtime?.path === 'capi' && runtime.customOps;
      console.log(
        `${load.model} ${variant}: loaded in ${load.load_seconds.toFixed(1)} s, path ${load.path}` +
          `${load.cuda_graph ? ' +graph' : ''}${load.custom_ops ? ' +ops' : ''}${load.reason ? ` (${load.reason})` : ''}`,
      );
      const mine: Trajectory[] = [];
      const prepared: PreparedGeneration[] = [];
      for (const [i, seed] of seeds.entries()) {
        const r = await trajectory(engine, seed, i, reference[i], boundaries);
        mine.push(r.trajectory);
        prepared.push(r.prepared);
      }
      if (reference.length === 0) reference = prepared;
      load.denoise_seconds = mine.map((t) => Number(t.denoiseSeconds.toFixed(3)));
      // The noise floor of the segmenting: the first request again as one call. The latent's trip
      // through process_out/process_in between segments moves it by ~1e-7; weight-only paths stay
      // there, W8A8's per-token rounding can amplify it (CPU, tiny model: ~5e-4 after 8 steps).
      const first = await trajectory(engine, seeds[0], 0, reference[0], [report.steps]);
      load.segmented_vs_one_call_rel_l2 = relL2(
        first.trajectory.states.get(report.steps)!,
        mine[0].states.get(report.steps)!,
      );
      runs.set(variant, mine);
    } catch (error) {
      load.error = String((error as Error).message ?? error).split('\n')[0];
      console.log(`${load.model} ${variant}: FAILED ${load.error}`);
    } finally {
      await engine.dispose();
      seen.set(model, Math.max(seen.get(model) ?? 0, performance.now() - t0));
      save();
    }
  }
  compare(MODELS[model].name, runs);
}

const PAIRS: Pair[] = [
  ['w8a8', 'fp16'],
  ['fp8-weights', 'fp16'],
  ['w8a8', 'fp8-weights'],
  ['w8a8-fp8attn', 'fp16'],
  ['w8a8-fp8attn', 'w8a8'],
  ['w8a8-fastacc', 'fp16'],
  ['w8a8-fastacc', 'w8a8'],
  ['w8a8-handoff', 'fp16'],
  ['w8a8-handoff', 'w8a8'],
];

function compare(model: string, runs: Map<Variant, Trajectory[]>): void {
  const rows: (QualityRow & { seed: number; prompt: number })[] = [];
  for (const [variant, ref] of PAIRS) {
    const a = runs.get(variant);
    const b = runs.get(ref);
    if (!a || !b) continue;
    for (const [i, ta] of a.entries()) {
      const tb = b[i];
      const at = report.at_steps.filter((s) => s >= 1 && s <= report.steps);
      const final = report.steps;
      const row: QualityRow & { seed: number; prompt: number } = {
        model,
        variant,
        reference: ref,
        ...(variant === 'w8a8' || ref === 'w8a8'
          ? { w8a8_ran: report.loads.find((l) => l.model === model && l.variant === 'w8a8')?.w8a8_ran }
          : {}),
        seed: ta.seed,
        prompt: ta.prompt,
        final_latent_rel_l2: relL2(ta.states.get(final)!, tb.states.get(final)!),
        at_steps: at,
        velocity_rel_l2: at.map((s) =>
          relL2(velocityAt(ta.states, ta.schedule, s - 1).v, velocityAt(tb.states, tb.schedule, s - 1).v),
        ),
        denoised_rel_l2: at.map((s) =>
          relL2(
            velocityAt(ta.states, ta.schedule, s - 1).denoised,
            velocityAt(tb.states, tb.schedule, s - 1).denoised,
          ),
        ),
        text_context_rel_l2: ta.textContextRelL2,
      };
      rows.push(row);
    }
  }
  report.rows.push(...rows);
  report.summary.push(...summarize(rows));
  save();
}

function printTable(): void {
  const f = (v: unknown) => (typeof v === 'number' ? v.toExponential(2) : '-');
  const at = report.at_steps;
  console.log(
    `\nrelative L2 (mean over ${report.seeds.length} seeds; max in the JSON), ${report.size}², ${report.steps} steps, CFG ${CFG}`,
  );
  const lines = [
    ['model', 'variant vs reference', 'final latent', ...at.map((s) => `v@${s}`), ...at.map((s) => `d@${s}`)],
    ...report.summary.map((s) => [
      String(s.model),
      `${s.variant} vs ${s.reference}${s.w8a8_ran === false ? ' (W8A8 NOT RUN)' : ''}`,
      f(s.final_latent_rel_l2_mean),
      ...(s.velocity_rel_l2_mean as number[]).map(f),
      ...(s.denoised_rel_l2_mean as number[]).map(f),
    ]),
  ];
  const widths = lines[0].map((_, j) => Math.max(...lines.map((l) => l[j].length)));
  for (const l of lines)
    console.log(l.map((v, j) => (j < 2 ? v.padEnd(widths[j]) : v.padStart(widths[j]))).join('  '));
  console.log('noise floor (first request, final latent, segmented vs one call):');
  for (const l of report.loads)
    console.log(
      `  ${l.model} ${l.variant}: ${l.error ? `FAILED ${l.error}` : f(l.segmented_vs_one_call_rel_l2)}` +
        `${l.t5_file ? `  (T5 ${l.t5_file})` : ''}`,
    );
}

async function main(): Promise<void> {
  if (values.help || !values.models) {
    console.log(USAGE);
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  const variants = list(values.variants) as Variant[];
  const unknown = variants.filter((v) => !VARIANTS.includes(v));
  if (unknown.length)
    throw new Error(`--variants: unknown ${unknown.join(', ')} (known: ${VARIANTS.join(', ')})`);
  const models = list(values.which);
  for (const m of models) if (!MODELS[m]) throw new Error(`--which: unknown model ${m}`);
  report.custom_ops_library = customOps() ?? null;
  const dataDir = resolve(values.data!);
  mkdirSync(join(dataDir, 'tokenizers'), { recursive: true });
  if (values.tokenizers) {
    for (const kind of ['clip', 't5']) {
      const link = join(dataDir, 'tokenizers', kind);
      // A link left by an earlier run may point elsewhere (or nowhere): this run's folder wins.
      rmSync(link, { force: true });
      symlinkSync(resolve(values.tokenizers, kind), link);
    }
  }
  console.log(
    `quality: ${models.join(', ')} × ${variants.join(', ')} at ${report.size}², ${report.steps} steps, seeds ${report.seeds.join(', ')}; custom ops ${report.custom_ops_library ?? '(engine default)'}`,
  );
  for (const model of models) await runModel(model, variants, dataDir);
  save();
  printTable();
}

await main();
