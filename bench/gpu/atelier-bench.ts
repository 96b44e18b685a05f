/**
 * Atelier's side of the GPU benchmark (issue 6): the real pipeline (child process, ONNX Runtime
 * CUDA) on real-size SD3.5 weights, at 1024² with CFG. For each model and precision: load time,
 * peak GPU memory (nvidia-smi), text encoding, denoising and VAE decode per run, seconds per
 * image, and the bot process's event-loop delay while the GPU works. Bundled with esbuild and run
 * on the GPU machine (bench/gpu/README.md); rows follow the JSON format.
 *
 *   node atelier-bench.js --models DIR --data DIR --out FILE [--configs large:fp16,large:fp8]
 *        [--steps 20,28] [--batch 1,4] [--budget-s 500] [--tokenizers DIR]
 */
import { type ChildProcess, spawn } from 'node:child_process';
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
import type { GenerationOutput, GenerationRequest } from '../../src/pipeline/types.js';

const MODELS: Record<string, { dir: string; checkpoint: Record<string, string>; name: string }> = {
  large: {
    dir: 'large',
    name: 'sd3.5-large',
    checkpoint: { fp16: 'sd3.5_large.safetensors', fp8: 'sd3.5_large_fp8_scaled.safetensors' },
  },
  medium: {
    dir: 'medium',
    name: 'sd3.5-medium',
    checkpoint: { fp16: 'sd3.5_medium.safetensors', fp8: 'sd3.5_medium_fp8_scaled.safetensors' },
  },
};

interface Row {
  engine: 'atelier';
  model: string;
  precision: string;
  width: number;
  height: number;
  steps: number;
  batch: number;
  seconds_per_image: number;
  peak_gpu_mem_gb: number;
  load_seconds: number;
  text_encode_seconds: number;
  denoise_seconds: number;
  vae_decode_seconds: number;
  steps_per_second: number;
  event_loop_p99_ms: number;
  error?: string;
}

/** Polls nvidia-smi for the GPU's memory in use; `peak()` is the most seen since `reset()`. */
class GpuMemory {
  #proc: ChildProcess | undefined;
  #peak = 0;
  #last = 0;

  start(): void {
    this.#proc = spawn(
      'nvidia-smi',
      ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-lms', '100'],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    // No nvidia-smi (a CPU smoke run): memory reads as 0.
    this.#proc.on('error', () => {});
    this.#proc.stdout?.setEncoding('utf8').on('data', (text: string) => {
      for (const line of text.split('\n')) {
        const mib = Number.parseFloat(line);
        if (Number.isFinite(mib)) {
          this.#last = mib;
          this.#peak = Math.max(this.#peak, mib);
        }
      }
    });
  }

  reset(): void {
    this.#peak = this.#last;
  }

  get peakGb(): number {
    return this.#peak / 1024;
  }

  get nowGb(): number {
    return this.#last / 1024;
  }

  stop(): void {
    this.#proc?.kill();
  }
}

const { values } = parseArgs({
  options: {
    models: { type: 'string' },
    data: { type: 'string', default: '/tmp/atelier-bench-data' },
    out: { type: 'string' },
    configs: { type: 'string', default: 'large:fp16,large:fp8,medium:fp16,medium:fp8' },
    steps: { type: 'string', default: '20,28' },
    batch: { type: 'string', default: '1,4' },
    'budget-s': { type: 'string', default: '500' },
    tokenizers: { type: 'string' },
    'fp8-linear': { type: 'string', default: 'block-fp8' },
    size: { type: 'string', default: '1024' },
    provider: { type: 'string', default: 'cuda' },
    profile: { type: 'boolean', default: false },
    'fp8-act-scale': { type: 'string' },
    'vae-fp16': { type: 'boolean', default: false },
  },
});

const started = Date.now();
const budgetMs = Number(values['budget-s']) * 1000;
const left = () => budgetMs - (Date.now() - started);
const here = dirname(fileURLToPath(import.meta.url));
const size = Number(values.size);
const rows: Row[] = [];

function request(steps: number, count: number, seed = 1): GenerationRequest {
  return {
    prompt: 'a lighthouse at dusk, oil painting, dramatic sky, crashing waves',
    negativePrompt: 'blurry, low quality',
    width: size,
    height: size,
    seed,
    steps,
    guidance: 4.5,
    sampler: 'euler',
    count,
  };
}

function save(): void {
  if (values.out) writeFileSync(values.out, JSON.stringify({ rows }, null, 1));
}

async function main(): Promise<void> {
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
  const baselineGb = await new Promise<number>((r) => setTimeout(() => r(memory.nowGb), 500));
  const stepsList = values.steps!.split(',').map(Number);
  const batches = values.batch!.split(',').map(Number);

  for (const config of values.configs!.split(',')) {
    const [modelKey, precision] = config.split(':');
    const model = MODELS[modelKey];
    if (left() < 60_000) {
      console.log(`skipping ${config}: budget left ${(left() / 1000).toFixed(0)} s`);
      continue;
    }
    const options: EngineOptions = {
      modelsDir: resolve(values.models!, model.dir),
      checkpoint: model.checkpoint[precision],
      dataDir,
      provider: values.provider as 'cuda' | 'cpu',
      precision: precision === 'fp8' ? 'fp8' : values.provider === 'cpu' ? 'fp32' : 'fp16',
      fp8Linear: values['fp8-linear'] as 'block-fp8' | 'dequantize',
      ...(values['fp8-act-scale'] ? { fp8ActivationScale: Number(values['fp8-act-scale']) } : {}),
      ...(values['vae-fp16'] ? { vaeCompute: 'float16' as const } : {}),
      // Both T5 files sit in text_encoders/: each precision takes its own.
      textEncoders: { t5: precision === 'fp8' ? 't5xxl_fp8_e4m3fn.safetensors' : 't5xxl_fp16.safetensors' },
    };
    const profileDir = values.profile ? join(dataDir, `profile-${modelKey}-${precision}`) : undefined;
    if (profileDir) {
      rmSync(profileDir, { recursive: true, force: true });
      mkdirSync(profileDir, { recursive: true });
      options.profileDir = profileDir;
    }
    const pipeline = new ProcessPipeline({ spec: { module: join(here, 'sd35.js'), options } });
    memory.reset();
    const base: Omit<
      Row,
      | 'steps'
      | 'batch'
      | 'seconds_per_image'
      | 'text_encode_seconds'
      | 'denoise_seconds'
      | 'vae_decode_seconds'
      | 'steps_per_second'
      | 'event_loop_p99_ms'
    > = {
      engine: 'atelier',
      model: model.name,
      precision,
      width: size,
      height: size,
      peak_gpu_mem_gb: 0,
      load_seconds: 0,
    };
    try {
      const t0 = performance.now();
      await pipeline.load();
      base.load_seconds = (performance.now() - t0) / 1000;
      console.log(
        `${config}: loaded in ${base.load_seconds.toFixed(1)} s, ${(memory.nowGb - baselineGb).toFixed(1)} GB`,
      );
      await pipeline.generate(request(2, 1)); // warm-up: cuDNN/cuBLAS autotuning, arenas
      for (const batch of batches) {
        for (const steps of stepsList) {
          if (left() < 30_000) break;
          memory.reset();
          const delay = monitorEventLoopDelay({ resolution: 10 });
          delay.enable();
          const t1 = performance.now();
          const out: GenerationOutput = await pipeline.generate(request(steps, batch));
          const wall = (performance.now() - t1) / 1000;
          delay.disable();
          const t = out.timings!;
          const row: Row = {
            ...base,
            steps,
            batch,
            seconds_per_image: wall / batch,
            peak_gpu_mem_gb: memory.peakGb - baselineGb,
            text_encode_seconds: t.encodeMs / 1000,
            denoise_seconds: t.denoiseMs / 1000,
            vae_decode_seconds: t.decodeMs / 1000,
            steps_per_second: steps / (t.denoiseMs / 1000),
            event_loop_p99_ms: delay.percentile(99) / 1e6,
          };
          rows.push(row);
          save();
          console.log(JSON.stringify(row));
        }
      }
    } catch (error) {
      const message = String((error as Error).message ?? error).split('\n')[0];
      console.log(`${config}: FAILED ${message}`);
      rows.push({
        ...base,
        steps: 0,
        batch: 0,
        seconds_per_image: 0,
        text_encode_seconds: 0,
        denoise_seconds: 0,
        vae_decode_seconds: 0,
        steps_per_second: 0,
        event_loop_p99_ms: 0,
        error: message,
      });
      save();
    } finally {
      await pipeline.dispose();
      if (profileDir) summarizeProfile(profileDir, `${modelKey}-${precision}`);
    }
  }
  memory.stop();
  save();
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
