/**
 * Issue 15's GPU figures: several models resident, switching when they do not all fit, LoRA
 * merge + load. Runs the product's own multi-model engine (src/pipeline/sd35/multi-engine.ts) in
 * this process on the bench's random-weight files, so the process's GPU memory (nvidia-smi's
 * compute apps, polled) is the models' memory. One phase per process (a fresh CUDA context each):
 *
 *   node models-bench.js --phase resident --count N   the first N of --list loaded together; after
 *        load, one job on each (each model's own guidance, --steps at most); GPU memory of the process
 *        after load and its peak; nothing may be unloaded (the job's load time says so)
 *   node models-bench.js --phase switch               every model of --list with models.maxResident 1:
 *        jobs alternate between them; each job's load time (unload + load before its first step)
 *   node models-bench.js --phase lora                 the first model with loras.cachedCombinations 2:
 *        a job without LoRA, then the first job of each new combination (merge + load: `loraMs`),
 *        a repeat (cached: 0), and a combination pushed out and used again
 *
 * Common: --models DIR (make_weights.py's folder: checkpoints/, text_encoders/), --tokenizers DIR,
 * --out FILE (rows appended), --list large,turbo,medium (names → checkpoints, below), --size 1024,
 * --steps 8, --provider cuda|cpu, --custom-ops FILE|none, --data DIR, --rank 16.
 * The `turbo` checkpoint is a hard link of Large's beside it (gpu-models.sh makes it): a file of its
 * own to the engine (its own MMDiT copy on the GPU, Turbo's defaults from the name), no disk.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MultiModelEngine } from '../../src/pipeline/sd35/multi-engine.js';
import type { EngineOptions } from '../../src/pipeline/sd35/options.js';
import type { GenerationLora, GenerationOutput, GenerationRequest } from '../../src/pipeline/types.js';
import { type LoraFormat, mmditShapes, randomLora, writeLora } from '../../test/fixtures/loras.js';
import { GpuMemory, ProcessGpuMemory } from './monitors.js';

const here = dirname(fileURLToPath(import.meta.url));

const { values } = parseArgs({
  options: {
    phase: { type: 'string' },
    count: { type: 'string', default: '1' },
    models: { type: 'string' },
    tokenizers: { type: 'string' },
    out: { type: 'string' },
    list: { type: 'string', default: 'large,turbo,medium' },
    size: { type: 'string', default: '1024' },
    steps: { type: 'string', default: '8' },
    provider: { type: 'string', default: 'cuda' },
    precision: { type: 'string', default: 'fp8' },
    'custom-ops': { type: 'string' },
    data: { type: 'string', default: '/tmp/atelier-models-bench' },
    rank: { type: 'string', default: '16' },
    help: { type: 'boolean' },
  },
});

/** Checkpoint file per model name and precision (make_weights.py's names; Turbo: gpu-models.sh's link). */
const CHECKPOINTS: Record<string, Record<string, string>> = {
  large: { fp8: 'sd3.5_large_fp8_scaled.safetensors', fp16: 'sd3.5_large.safetensors' },
  turbo: { fp8: 'sd3.5_large_turbo_fp8_scaled.safetensors', fp16: 'sd3.5_large_turbo.safetensors' },
  medium: { fp8: 'sd3.5_medium_fp8_scaled.safetensors', fp16: 'sd3.5_medium.safetensors' },
};

const round = (v: number | undefined, d = 3) => (v === undefined ? null : Number(v.toFixed(d)));

function customOps(): string | undefined {
  const flag = values['custom-ops'];
  if (flag === 'none') return undefined;
  if (flag) return resolve(flag);
  const bundled = join(here, 'libatelier_ops_cuda.so');
  return existsSync(bundled) ? bundled : undefined;
}

function engineOptions(dataDir: string, loras?: EngineOptions['loras']): MultiEngineArgs['engine'] {
  const cpu = values.provider === 'cpu';
  const ops = customOps();
  return {
    dataDir,
    provider: cpu ? 'cpu' : 'cuda',
    precision: values.precision as EngineOptions['precision'],
    runtime: 'capi',
    ...(ops ? { customOpsLibrary: ops } : {}),
    placement: 'gpu',
    ...(loras ? { loras } : {}),
  } as MultiEngineArgs['engine'];
}

type MultiEngineArgs = ConstructorParameters<typeof MultiModelEngine>[0];

function specs(names: string[]): MultiEngineArgs['models'] {
  const dir = resolve(values.models!);
  return names.map((name) => {
    const checkpoint = CHECKPOINTS[name]?.[values.precision!];
    if (!checkpoint) throw new Error(`--list: unknown model ${name} (large, turbo, medium)`);
    return {
      name,
      modelsDir: dir,
      checkpoint,
      textEncoders: {
        t5: values.precision === 'fp16' ? 't5xxl_fp16.safetensors' : 't5xxl_fp8_e4m3fn.safetensors',
      },
    };
  });
}

/** One job of `model` at its own guidance (Turbo: none), --steps at most. */
function request(
  engine: MultiModelEngine,
  model: string,
  seed: number,
  loras?: GenerationLora[],
): GenerationRequest {
  const info = engine.info().models?.find((m) => m.name === model);
  const defaults = info?.defaults ?? { steps: 28, guidance: 4.5 };
  const size = Number(values.size);
  return {
    prompt: 'a lighthouse at dusk, oil painting',
    negativePrompt: '',
    width: size,
    height: size,
    seed,
    steps: Math.min(defaults.steps, Number(values.steps)),
    guidance: defaults.guidance,
    sampler: 'euler',
    count: 1,
    model,
    ...(loras ? { loras } : {}),
  };
}

interface JobRow {
  model: string;
  loras: string | null;
  steps: number;
  seconds: number;
  load_s: number | null;
  lora_s: number | null;
  denoise_s: number | null;
  resident_after: string[];
  process_peak_gib: number | null;
  device_peak_gib: number | null;
}

class Meter {
  readonly device = new GpuMemory();
  readonly process = new ProcessGpuMemory();
  baseline = 0;
  start() {
    this.device.start();
    this.process.start();
  }
  reset() {
    this.device.reset();
    this.process.reset();
  }
  processNow() {
    return this.process.nowGb(process.pid);
  }
  processPeak() {
    return this.process.peakGb(process.pid);
  }
  devicePeak() {
    return values.provider === 'cuda' ? this.device.peakGb - this.baseline : undefined;
  }
  stop() {
    this.device.stop();
    this.process.stop();
  }
}

/** nvidia-smi polls every 100 ms: let it see the state after a job before reading it. */
const settle = () => new Promise((r) => setTimeout(r, values.provider === 'cuda' ? 400 : 0));

async function job(
  engine: MultiModelEngine,
  meter: Meter,
  model: string,
  seed: number,
  loras?: GenerationLora[],
): Promise<JobRow> {
  meter.reset();
  const req = request(engine, model, seed, loras);
  const t0 = performance.now();
  const out: GenerationOutput = await engine.generate(req);
  const seconds = (performance.now() - t0) / 1000;
  await settle();
  const t = out.timings;
  const row: JobRow = {
    model,
    loras: loras?.map((l) => `${l.name}:${l.weight}`).join(' + ') ?? null,
    steps: req.steps,
    seconds: Number(seconds.toFixed(3)),
    load_s: t?.loadMs !== undefined ? round(t.loadMs / 1000) : null,
    lora_s: t?.loraMs !== undefined ? round(t.loraMs / 1000) : null,
    denoise_s: t ? round(t.denoiseMs / 1000) : null,
    resident_after: out.resident ?? [],
    process_peak_gib: round(meter.processPeak()),
    device_peak_gib: round(meter.devicePeak()),
  };
  console.log(
    `  ${model}${row.loras ? ` <${row.loras}>` : ''}: ${row.seconds} s` +
      (row.load_s !== null ? `, load ${row.load_s} s` : '') +
      (row.lora_s !== null ? `, LoRA merge+load ${row.lora_s} s` : '') +
      `, denoise ${row.denoise_s} s, resident [${row.resident_after.join(', ')}], process peak ${row.process_peak_gib} GiB, device peak ${row.device_peak_gib} GiB`,
  );
  return row;
}

async function resident(dataDir: string, meter: Meter) {
  const names = values.list!.split(',').slice(0, Number(values.count));
  const engine = new MultiModelEngine({ engine: engineOptions(dataDir), models: specs(names) });
  const t0 = performance.now();
  await engine.load();
  const loadSeconds = (performance.now() - t0) / 1000;
  await settle();
  const afterLoad = meter.processNow();
  const deviceAfterLoad = values.provider === 'cuda' ? meter.device.nowGb - meter.baseline : undefined;
  console.log(
    `loaded [${engine.residency()?.resident.join(', ')}] in ${loadSeconds.toFixed(1)} s: process ${afterLoad} GiB, device ${deviceAfterLoad} GiB`,
  );
  const jobs: JobRow[] = [];
  try {
    for (const [i, name] of names.entries()) jobs.push(await job(engine, meter, name, 1 + i));
  } finally {
    await engine.dispose();
  }
  const peaks = jobs.map((j) => j.process_peak_gib ?? 0);
  return {
    phase: 'resident',
    models: names,
    load_s: round(loadSeconds),
    resident_after_load: engine.residency()?.resident ?? names,
    process_after_load_gib: round(afterLoad),
    device_after_load_gib: round(deviceAfterLoad),
    process_peak_gib: peaks.length ? Math.max(...peaks) : null,
    unloaded_during_jobs: jobs.some((j) => j.load_s !== null),
    jobs,
  };
}

async function switching(dataDir: string, meter: Meter) {
  const names = values.list!.split(',');
  const engine = new MultiModelEngine({
    engine: engineOptions(dataDir),
    models: specs(names),
    maxResident: 1,
  });
  const t0 = performance.now();
  await engine.load();
  const loadSeconds = (performance.now() - t0) / 1000;
  // Every model twice, never the same twice in a row, the first (loaded) model last.
  const order = [...names.slice(1), ...names, names[0]!].slice(0, 2 * names.length);
  const jobs: JobRow[] = [];
  try {
    for (const [i, name] of order.entries()) jobs.push(await job(engine, meter, name, 10 + i));
  } finally {
    await engine.dispose();
  }
  const loads = jobs.filter((j) => j.load_s !== null);
  return {
    phase: 'switch',
    models: names,
    max_resident: 1,
    first_load_s: round(loadSeconds),
    switches: loads.length,
    switch_s: Object.fromEntries(
      names.map((n) => [n, loads.filter((j) => j.model === n).map((j) => j.load_s)]),
    ),
    process_peak_gib: Math.max(...jobs.map((j) => j.process_peak_gib ?? 0)),
    jobs,
  };
}

/** LoRA files for the first model: `a` rank --rank on every attention and MLP layer (PEFT keys), `b` on attention only (kohya keys). */
function writeLoras(dir: string, checkpoint: string) {
  mkdirSync(dir, { recursive: true });
  const shapes = mmditShapes(checkpoint);
  const depth =
    Math.max(...[...shapes.keys()].map((k) => Number(/^joint_blocks\.(\d+)\./.exec(k)?.[1] ?? -1))) + 1;
  const keys = [...shapes.keys()].filter((k) => /\.(attn\.(qkv|proj)|mlp\.fc[12])\.weight$/.test(k));
  const attention = keys.filter((k) => /\.attn\./.test(k));
  const rank = Number(values.rank);
  const t0 = performance.now();
  const files: [string, string[], LoraFormat, number][] = [
    ['a.safetensors', keys, 'peft', 1],
    ['b.safetensors', attention, 'kohya', 2],
  ];
  let parameters = 0;
  for (const [file, layers, format, seed] of files) {
    const pairs = randomLora(shapes, layers, seed, { rank, amp: 0.01 });
    parameters += pairs.reduce((s, p) => s + p.rank * (p.rows + p.cols), 0);
    writeLora(join(dir, file), pairs, format, depth, 'F16');
  }
  console.log(
    `LoRA files (rank ${rank}): a ${keys.length} layers (peft), b ${attention.length} layers (kohya), ` +
      `${(parameters / 1e6).toFixed(1)} M parameters, written in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return { rank, a_layers: keys.length, b_layers: attention.length, parameters };
}

async function loras(dataDir: string, meter: Meter) {
  const [name] = values.list!.split(',');
  const [spec] = specs([name!]);
  const dir = join(dataDir, 'lora-files');
  rmSync(join(dataDir, 'loras'), { recursive: true, force: true });
  const files = writeLoras(dir, join(spec!.modelsDir, 'checkpoints', spec!.checkpoint!));
  const engine = new MultiModelEngine({
    engine: engineOptions(dataDir, { dir, cachedCombinations: 2 }),
    models: [spec!],
  });
  await engine.load();
  const a = (weight: number): GenerationLora => ({ name: 'a', file: 'a.safetensors', weight });
  const b = (weight: number): GenerationLora => ({ name: 'b', file: 'b.safetensors', weight });
  // [label, LoRAs]: the first use of a combination merges and loads; capacity 2 pushes `a:1` out
  // after `a:0.5` and `a:1 + b:0.8`, so its last use loads it again (its merged file is kept? the row says).
  const plan: [string, GenerationLora[] | undefined][] = [
    ['no LoRA (the model itself)', undefined],
    ['a:1 first use', [a(1)]],
    ['a:1 again (cached)', [a(1)]],
    ['a:0.5 (a new combination)', [a(0.5)]],
    ['a:1 + b:0.8 (two LoRAs)', [a(1), b(0.8)]],
    ['a:1 after being pushed out', [a(1)]],
    ['no LoRA again', undefined],
  ];
  const jobs: (JobRow & { case: string })[] = [];
  try {
    for (const [i, [label, set]] of plan.entries()) {
      console.log(`${label}:`);
      jobs.push({ case: label, ...(await job(engine, meter, name!, 20 + i, set)) });
    }
  } finally {
    await engine.dispose();
  }
  return { phase: 'lora', model: name, cached_combinations: 2, files, jobs };
}

async function main() {
  if (values.help || !values.models || !values.phase) {
    console.log(
      'node models-bench.js --phase resident|switch|lora --models DIR --tokenizers DIR --out FILE [--count N]',
    );
    process.exitCode = values.help ? 0 : 2;
    return;
  }
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
  const meter = new Meter();
  meter.start();
  await settle();
  meter.baseline = meter.device.nowGb;
  const t0 = performance.now();
  try {
    const phase = values.phase;
    const row =
      phase === 'resident'
        ? await resident(dataDir, meter)
        : phase === 'switch'
          ? await switching(dataDir, meter)
          : phase === 'lora'
            ? await loras(dataDir, meter)
            : undefined;
    if (!row) throw new Error('--phase: resident, switch or lora');
    const record = {
      ...row,
      precision: values.precision,
      size: Number(values.size),
      provider: values.provider,
      custom_ops: customOps() ?? null,
      seconds: round((performance.now() - t0) / 1000, 1),
      measured_at: new Date().toISOString(),
    };
    if (values.out) {
      const earlier = existsSync(values.out) ? JSON.parse(readFileSync(values.out, 'utf8')) : { rows: [] };
      earlier.units = { memory: 'GiB' };
      earlier.rows.push(record);
      writeFileSync(values.out, JSON.stringify(earlier, null, 1));
    }
    console.log(JSON.stringify({ phase, seconds: record.seconds }));
  } finally {
    meter.stop();
  }
}

await main();
// The C-API run thread and nvidia-smi pollers must not keep a finished bench alive.
process.exit(process.exitCode ?? 0);
