/**
 * Issue 16: Atelier on several GPUs of one machine. For each run (a mode × a number of GPUs) the
 * product is started as an operator starts it (./product.ts: `atelier serve` with
 * `queue.concurrency: N`, or a gateway + one `atelier worker` per GPU + Redis), then:
 *
 * 1. warm-up: an admin asks for one short job per GPU, so each pipeline has loaded and captured
 *    its shapes (the cold start and the warm-up are timed, not counted in the rates);
 * 2. the admin pauses the queue; `users` people each get `queued` jobs accepted, then each asks for
 *    one more (the per-user cap must refuse it); a probe person takes its whole image burst and
 *    asks again (the rate limit must refuse it), then cancels what it had;
 * 3. the admin resumes: t0. Each person asks for a new job whenever one of theirs finishes, for
 *    `--duration-s` (or until `--jobs` results). Then the queue is paused, the running jobs finish,
 *    the product stops and its SQLite `jobs` rows are read.
 *
 * Everything goes through the playground's WebSocket protocol (./users.ts): the same path a
 * person's `/imagine` takes in both modes. Recorded per run: images per minute, time to first
 * image, the round-robin check of the start order (./analysis.ts), the completion order each
 * person saw, the limits' answers, per-GPU peak memory and utilization, host and per-role CPU.
 *
 *   # here, CPU, the bundled tiny model (the smoke test runs this)
 *   node --import tsx bench/multi-gpu/multi-gpu.ts --runs embedded:1,embedded:2,cluster:2 --jobs 24 --steps 4
 *   # the GPU machine: bench/multi-gpu/gpu-multi.sh (the bundled driver, Large fp8 at 1024², 28 steps)
 *   node .gpu/multi/dist/js/multi-gpu.js --models /dev/shm/sd35/large --provider cuda --precision fp8 \
 *     --steps 28 --runs embedded:1,embedded:2,cluster:2 --duration-s 60 --out multi-gpu.json
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { ensureTinyModel } from '../../src/pipeline/tiny/index.js';
import {
  checkRoundRobin,
  completionOrder,
  maxOutstandingPerUser,
  rates,
  type StoredJobRow,
  summarize,
} from './analysis.js';
import { CpuMonitor, GpuMonitor } from './monitor.js';
import { type Mode, redisAvailable, startProduct } from './product.js';
import { formatTable, markdownTable, summaryRow } from './report.js';
import type { BenchResult, LimitsReport, MachineInfo, RunResult } from './results.js';
import { type JobObservation, LoadUser, Tab } from './users.js';

const here = dirname(fileURLToPath(import.meta.url));
const ADMIN = 'bench-admin';
const PROBE = 'limit-probe';

export interface RunSpec {
  mode: Mode;
  gpus: number;
}

export interface BenchOptions {
  runs: RunSpec[];
  /** People keeping jobs queued. @default 8 */
  users: number;
  /** Jobs each keeps waiting or running; also `queue.maxQueuedPerUser`. @default 4 */
  queued: number;
  /** Measured seconds after t0 (the resume); with `jobs`, whichever comes first. */
  durationS?: number;
  /** Stop after this many results after t0. */
  jobs?: number;
  /** Total seconds for all runs; a run that would not fit is skipped (listed with why). */
  budgetS?: number;
  /** Start-up + warm-up + drain + stop of one run, until one has been measured. @default 90 */
  overheadEstimateS: number;
  /** A models folder (ComfyUI layout); none: the bundled tiny model. */
  models?: string;
  checkpoint?: string;
  /** clip/ and t5/ tokenizer folders for a folder that has none. */
  tokenizers?: string;
  provider: 'cpu' | 'cuda';
  precision?: string;
  runtime?: string;
  steps: number;
  warmupSteps: number;
  /** models.deviceId: the first GPU. @default 0 */
  firstDevice: number;
  /** The per-user bucket (must not bind under the load; the probe person tests it). */
  userLimit: { images: number; perSeconds: number; burst: number };
  /** Where runs put their data dirs (default: a temporary folder, removed unless `keep`). */
  workDir?: string;
  keep: boolean;
  /** JSON results file, rewritten after each run. */
  out?: string;
  /** The README table (Markdown). */
  markdown?: string;
  /** More environment for the product's processes (KEY=VALUE). */
  env: Record<string, string>;
  /** How to run `atelier` (default: bin/atelier.js, or atelier.js beside the bundled driver). */
  atelier?: string[];
  /** The longest a job may take from asking to its result before the run is called stuck. @default 900 */
  jobTimeoutS: number;
  /** How long the running jobs may take to finish after the measured window. @default 180 */
  drainTimeoutS: number;
  log(line: string): void;
}

export const DEFAULTS: Omit<BenchOptions, 'runs' | 'log'> = {
  users: 8,
  queued: 4,
  overheadEstimateS: 90,
  provider: 'cpu',
  steps: 28,
  warmupSteps: 2,
  firstDevice: 0,
  // 2 images a second per person, 8 at once: far above what a person gets from a shared GPU, so
  // it never binds under the load; the probe person's 2 × 4 images empty it at once.
  userLimit: { images: 120, perSeconds: 60, burst: 8 },
  keep: false,
  env: {},
  jobTimeoutS: 900,
  drainTimeoutS: 180,
};

export function machineInfo(): MachineInfo {
  const smi = spawnSync(
    'nvidia-smi',
    ['--query-gpu=index,name,driver_version,memory.total', '--format=csv,noheader'],
    { encoding: 'utf8' },
  );
  const gpus =
    smi.status === 0
      ? smi.stdout
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((line) => {
            const [index, name, driver, memory] = line.split(',').map((s) => s.trim());
            return { index: Number(index), name, driver, memory };
          })
      : [];
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    gpus,
  };
}

/** `node bin/atelier.js` from the repository, or the bundled atelier.js beside this driver. */
function defaultAtelier(): string[] {
  const bundled = join(here, 'atelier.js');
  if (import.meta.url.endsWith('.js') && existsSync(bundled)) return [process.execPath, bundled];
  return [process.execPath, join(here, '..', '..', 'bin', 'atelier.js')];
}

const WORDS = ['lighthouse', 'harbour', 'orchard', 'glacier', 'market', 'library', 'canyon', 'meadow'];
const STYLES = ['watercolour', 'pencil', 'gouache', 'charcoal'];

/** A prompt of the same shape for every job (one shape for the C-API path's captured graphs). */
function prompt(user: number, n: number): string {
  return `a ${STYLES[n % STYLES.length]} study of a ${WORDS[(user + n) % WORDS.length]} at dusk, soft light`;
}

function writeJson(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  writeFileSync(
    tmp,
    `${JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(5)) : v), 2)}\n`,
  );
  renameSync(tmp, file);
}

function readStoredJobs(dataDir: string): StoredJobRow[] {
  const db = new Database(join(dataDir, 'atelier.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare(
        'SELECT seq, id, user_id AS user, state, created_at AS createdAt, started_at AS startedAt, finished_at AS finishedAt FROM jobs ORDER BY seq',
      )
      .all() as StoredJobRow[];
    return rows;
  } finally {
    db.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runOnce(
  spec: RunSpec,
  options: BenchOptions,
  shared: {
    workDir: string;
    models: { dir: string; checkpoint?: string };
    gpu: GpuMonitor;
    readyTimeoutMs: number;
  },
): Promise<RunResult> {
  const { log } = options;
  const dir = join(shared.workDir, `${spec.mode}-${spec.gpus}`);
  rmSync(dir, { recursive: true, force: true });
  const settings = {
    log: { level: 'info' },
    queue: { maxQueuedPerUser: options.queued, maxQueued: 1000 },
    limits: {
      user: { enabled: true, ...options.userLimit },
      team: { enabled: false },
      admins: { playground: { userIds: [ADMIN] } },
    },
    models: {
      dir: shared.models.dir,
      ...(shared.models.checkpoint ? { checkpoint: shared.models.checkpoint } : {}),
      executionProvider: options.provider,
      ...(options.precision ? { precision: options.precision } : {}),
      ...(options.runtime ? { runtime: options.runtime } : {}),
      graphCacheDir: join(shared.workDir, 'graphs'),
    },
    playground: { enabled: true, port: 0 },
  };
  const cpu = new CpuMonitor(cpus().length);
  cpu.start();
  const product = await startProduct({
    mode: spec.mode,
    gpus: spec.gpus,
    dir,
    atelier: options.atelier ?? defaultAtelier(),
    settings,
    env: options.env,
    tokenizers: options.tokenizers,
    firstDevice: options.firstDevice,
    readyTimeoutMs: shared.readyTimeoutMs,
  });
  cpu.setRoles(product.roles);
  const coldStartSeconds = (product.readyAt - product.spawnedAt) / 1000;
  log(`  ready in ${coldStartSeconds.toFixed(1)} s (${product.url})`);
  const tabs: Tab[] = [];
  const users: LoadUser[] = [];
  let stoppedAt = Date.now();
  let driverCpu = process.cpuUsage();
  try {
    const open = async (name: string) => {
      const tab = await Tab.open(product.url, name);
      tabs.push(tab);
      return tab;
    };
    const admin = await open(ADMIN);
    const probe = await open(PROBE);
    const jobTimeoutMs = options.jobTimeoutS * 1000;

    // 1. Warm-up: one short job per GPU (each goes to an idle pipeline or worker).
    const warmStart = Date.now();
    const warm = [];
    for (let i = 0; i < spec.gpus; i++) {
      const answer = await admin.command(`/imagine warm-up ${i} --steps ${options.warmupSteps} --seed ${i}`);
      warm.push(admin.final(answer.id, jobTimeoutMs));
    }
    await Promise.all(warm);
    const warmupSeconds = (Date.now() - warmStart) / 1000;
    log(`  warm-up (${spec.gpus} job(s)) ${warmupSeconds.toFixed(1)} s`);

    // 2. Paused: every person's jobs queued, then the limits probed.
    const paused = await admin.command('/atelier pause');
    if (!paused.text.includes('Paused')) throw new Error(`pause: ${paused.text}`);
    let done = 0;
    let t0 = Number.POSITIVE_INFINITY;
    let reached: () => void = () => {};
    const enough = new Promise<void>((r) => {
      reached = r;
    });
    for (let u = 1; u <= options.users; u++) {
      const tab = await open(`user-${u}`);
      users.push(
        new LoadUser(tab, {
          queued: options.queued,
          command: (n) => `/imagine ${prompt(u, n)} --steps ${options.steps} --seed ${u * 100_000 + n}`,
          jobTimeoutMs,
          onFinal: (job) => {
            if (
              job.outcome === 'done' &&
              (job.finishedAt ?? 0) >= t0 &&
              options.jobs &&
              ++done >= options.jobs
            )
              reached();
          },
        }),
      );
    }
    await Promise.all(users.map((u) => u.fill()));
    const capProbes = await Promise.all(users.map((u) => u.probeQueueCap()));
    const failedUser = users.find((u) => u.error);
    if (failedUser) throw failedUser.error;
    const rate = await rateProbe(probe, options);
    log(
      `  queued ${users.length} × ${options.queued}; cap probes refused ${capProbes.filter((p) => p.outcome === 'refused').length}/${capProbes.length}; rate probe ${rate.refused ? 'refused' : 'NOT refused'}`,
    );

    // 3. Resume and keep every person's jobs queued.
    t0 = Date.now();
    driverCpu = process.cpuUsage();
    const resumed = await admin.command('/atelier resume');
    if (!resumed.text.includes('Resumed')) throw new Error(`resume: ${resumed.text}`);
    for (const user of users) user.start();
    const windowMs = options.durationS !== undefined ? options.durationS * 1000 : undefined;
    let watch: NodeJS.Timeout | undefined;
    const broken = new Promise<void>((r) => {
      watch = setInterval(() => {
        if (users.some((u) => u.error)) r();
      }, 250);
    });
    await Promise.race([
      enough,
      broken,
      ...(windowMs !== undefined ? [sleep(windowMs)] : []),
      ...(windowMs === undefined && !options.jobs ? [sleep(60_000)] : []),
    ]);
    clearInterval(watch);
    const tEnd = Date.now();
    await Promise.all(users.map((u) => u.stop()));
    const paused2 = await admin.command('/atelier pause');
    if (!paused2.text.includes('Paused')) throw new Error(`pause after the window: ${paused2.text}`);
    // The running jobs finish; the rest stay queued.
    const drainDeadline = Date.now() + options.drainTimeoutS * 1000;
    for (;;) {
      const status = await admin.command('/atelier status');
      const running = /(\d+) running/.exec(status.text);
      if (running && Number(running[1]) === 0) break;
      if (Date.now() > drainDeadline) {
        log(`  running jobs did not finish within ${options.drainTimeoutS} s: ${status.text}`);
        break;
      }
      await sleep(1000);
    }
    // The last results' edits reach the tabs just after the jobs leave "running".
    await sleep(1000);
    const cpuWindow = cpu.report(t0, tEnd);
    const used = process.cpuUsage(driverCpu);
    const driverCores = (used.user + used.system) / 1e6 / ((tEnd - t0) / 1000);
    stoppedAt = Date.now();
    for (const tab of tabs) tab.close();
    await product.stop();
    cpu.stop();
    stoppedAt = Date.now();

    const stored = readStoredJobs(product.dataDir);
    const loadIds = new Set(users.map((u) => u.userId));
    const jobs = [...users.flatMap((u) => u.jobs)];
    const doneJobs = jobs.filter((j) => j.outcome === 'done' && !j.probe && j.finishedAt !== undefined);
    const window = windowMs ?? tEnd - t0;
    const doneTimes = doneJobs.map((j) => j.finishedAt!);
    const firstByUser = users
      .map((u) => Math.min(...u.jobs.filter((j) => j.outcome === 'done').map((j) => j.finishedAt!)))
      .filter(Number.isFinite)
      .map((t) => (t - t0) / 1000);
    const inWindow = doneJobs.filter((j) => j.finishedAt! <= t0 + window);
    const order = [...inWindow].sort((a, b) => a.finishedAt! - b.finishedAt!).map((j) => j.user);
    const loadRows = stored.filter((r) => loadIds.has(r.user));
    const ran = loadRows.filter((r) => r.startedAt !== null && r.finishedAt !== null && r.state === 'done');
    const outstanding = maxOutstandingPerUser(loadRows);
    const refSize = doneJobs[0];
    const limits: LimitsReport = {
      ok: false,
      queueCap: {
        max: options.queued,
        probes: capProbes.length,
        refused: capProbes.filter((p) => p.outcome === 'refused' && /waiting or running/.test(p.note ?? ''))
          .length,
        answers: [...new Set(capProbes.map((p) => p.note ?? p.outcome))],
      },
      rateLimit: { refused: rate.refused, answer: rate.answer, cancelled: rate.cancelled },
      loadRefusals: jobs.filter((j) => j.outcome === 'refused' && !j.probe).length,
      maxOutstanding: Math.max(0, ...Object.values(outstanding)),
      failed: jobs.filter((j) => j.outcome === 'failed').length,
      wrongSize: doneJobs.filter((j) => j.width !== refSize?.width || j.height !== refSize?.height).length,
    };
    limits.ok =
      limits.queueCap.refused === limits.queueCap.probes &&
      rate.refused &&
      rate.cancelled === 2 &&
      limits.loadRefusals === 0 &&
      limits.maxOutstanding <= options.queued &&
      limits.failed === 0 &&
      limits.wrongSize === 0;
    const gpuDevices = shared.gpu.report(product.spawnedAt, stoppedAt, [t0, tEnd]);
    const usedDevices = new Set(Array.from({ length: spec.gpus }, (_, i) => options.firstDevice + i));
    const usedAsExpected = shared.gpu.available
      ? gpuDevices.every((d) => (usedDevices.has(d.device) ? d.peakAddedGiB > 0.5 : d.peakAddedGiB < 0.5))
      : null;
    return {
      mode: spec.mode,
      gpus: spec.gpus,
      startedAt: new Date(product.spawnedAt).toISOString(),
      coldStartSeconds,
      warmupSeconds,
      t0,
      windowSeconds: window / 1000,
      rates: rates(doneTimes, t0, window),
      firstImageSeconds: doneTimes.length ? (Math.min(...doneTimes) - t0) / 1000 : null,
      userFirstImageSeconds: summarize(firstByUser),
      latencySeconds: summarize(inWindow.map((j) => (j.finishedAt! - j.sentAt) / 1000)),
      jobSeconds: summarize(ran.map((r) => (r.finishedAt! - r.startedAt!) / 1000)),
      fairness: checkRoundRobin(stored),
      completion: completionOrder(order, options.users),
      limits,
      gpu: { available: shared.gpu.available, devices: gpuDevices, usedAsExpected },
      cpu: { ...cpuWindow, driverCores },
      engine: product.engine,
      errors: [
        ...product.errors,
        ...users.filter((u) => u.error).map((u) => `${u.userId}: ${u.error!.message}`),
      ],
      jobs: [...jobs, ...rate.jobs],
      stored,
    };
  } catch (error) {
    for (const tab of tabs) tab.close();
    await product.stop();
    cpu.stop();
    throw error;
  }
}

/**
 * The probe person takes its whole burst (two jobs of `burst / 2` images), asks again (the rate
 * limit must refuse), then cancels both jobs (they never run: the queue is paused).
 */
async function rateProbe(tab: Tab, options: BenchOptions) {
  const half = Math.max(1, Math.floor(options.userLimit.burst / 2));
  const jobs: JobObservation[] = [];
  const ask = async (n: number) => {
    const text = `/imagine ${prompt(0, n)} --steps ${options.steps} --count ${half} --seed ${n}`;
    const sentAt = Date.now();
    const answer = await tab.command(text);
    const job: JobObservation = {
      user: tab.userId,
      text,
      sentAt,
      answeredAt: Date.now(),
      outcome: answer.private ? 'refused' : 'pending',
      probe: 'rate-limit',
      messageId: answer.id,
      note: answer.text,
    };
    const jobId = answer.private
      ? undefined
      : /at1:c:([0-9A-Za-z]+)/.exec(JSON.stringify(answer.buttons))?.[1];
    if (jobId) job.jobId = jobId;
    jobs.push(job);
    return job;
  };
  const taken = [await ask(1), await ask(2)];
  const third = await ask(3);
  let cancelled = 0;
  for (const job of taken) {
    if (!job.jobId) continue;
    await tab.command(`/cancel --job ${job.jobId}`);
    const final = await tab.final(job.messageId!, 60_000);
    job.outcome = final.text.includes('Cancelled') ? 'cancelled' : 'failed';
    job.finishedAt = Date.now();
    if (job.outcome === 'cancelled') cancelled++;
  }
  return {
    refused: third.outcome === 'refused' && /at once|limit/.test(third.note ?? ''),
    answer: third.note ?? '',
    cancelled,
    jobs,
  };
}

export async function runBenchmark(options: BenchOptions): Promise<BenchResult> {
  const began = Date.now();
  const workDir = options.workDir ?? mkdtempSync(join(tmpdir(), 'atelier-multi-gpu-'));
  mkdirSync(workDir, { recursive: true });
  const machine = machineInfo();
  const { log, ...settings } = options;
  const result: BenchResult = {
    name: 'multi-gpu',
    issue: 16,
    measuredAt: new Date().toISOString(),
    machine,
    settings,
    rows: [],
    runs: [],
    skipped: [],
  };
  const gpu = new GpuMonitor();
  await gpu.start();
  let models: { dir: string; checkpoint?: string };
  if (options.models) {
    models = {
      dir: resolve(options.models),
      ...(options.checkpoint ? { checkpoint: options.checkpoint } : {}),
    };
  } else {
    const tiny = await ensureTinyModel(join(workDir, 'tiny'));
    models = { dir: tiny.modelsDir, checkpoint: tiny.checkpoint };
  }
  const hasRedis = redisAvailable();
  let overheadS = options.overheadEstimateS;
  try {
    for (const spec of options.runs) {
      const label = `${spec.mode} × ${spec.gpus}`;
      const elapsedS = (Date.now() - began) / 1000;
      const needS = overheadS + (options.durationS ?? 0);
      let why: string | undefined;
      if (spec.mode === 'cluster' && !hasRedis) why = 'no redis-server on the PATH';
      else if (gpu.available && spec.gpus + options.firstDevice > machine.gpus.length)
        why = `${machine.gpus.length} GPU(s) on this machine`;
      else if (options.provider === 'cuda' && !gpu.available) why = 'no nvidia-smi: no GPU to run on';
      else if (options.budgetS !== undefined && elapsedS + needS > options.budgetS)
        why = `${Math.round(options.budgetS - elapsedS)} s of the budget left, ~${Math.round(needS)} s needed`;
      if (why) {
        log(`${label}: skipped (${why})`);
        result.skipped.push({ ...spec, why });
        continue;
      }
      log(`${label}: starting`);
      const runBegan = Date.now();
      const readyTimeoutMs =
        options.budgetS !== undefined
          ? Math.max(30_000, (options.budgetS - elapsedS - (options.durationS ?? 0)) * 1000)
          : 600_000;
      try {
        const run = await runOnce(spec, options, { workDir, models, gpu, readyTimeoutMs });
        result.runs.push(run);
        overheadS = Math.max(overheadS, (Date.now() - runBegan) / 1000 - run.windowSeconds);
        result.rows = result.runs.map((r) => summaryRow(r, result.runs));
        log(formatTable([result.rows.at(-1)!]));
      } catch (error) {
        const why = `failed: ${(error as Error).message}`;
        log(`${label}: ${why}`);
        result.skipped.push({ ...spec, why });
      }
      if (options.out) writeJson(options.out, result);
    }
  } finally {
    gpu.stop();
    if (!options.keep && !options.workDir) rmSync(workDir, { recursive: true, force: true });
  }
  if (options.out) writeJson(options.out, result);
  if (options.markdown) {
    mkdirSync(dirname(options.markdown), { recursive: true });
    writeFileSync(options.markdown, `${markdownTable(result)}\n`);
  }
  return result;
}

// ---- the command line ----------------------------------------------------------------------------

export function parseRuns(text: string): RunSpec[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const match = /^(embedded|cluster):(\d+)$/.exec(item);
      if (!match) throw new Error(`--runs: "${item}" is not mode:gpus (embedded:2, cluster:4)`);
      return { mode: match[1] as Mode, gpus: Number(match[2]) };
    });
}

const USAGE = `usage: multi-gpu [--runs embedded:1,embedded:2,cluster:2] [--users 8] [--queued 4]
  [--duration-s S | --jobs N] [--budget-s S] [--models DIR --checkpoint FILE --tokenizers DIR]
  [--provider cpu|cuda] [--precision fp8] [--runtime auto|capi|stock] [--steps 28] [--warmup-steps 2]
  [--first-device 0] [--user-limit 120/60/8] [--env KEY=VALUE ...] [--work-dir DIR] [--keep]
  [--out FILE.json] [--markdown FILE.md] [--check]`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: 'embedded:1,embedded:2' },
      users: { type: 'string' },
      queued: { type: 'string' },
      'duration-s': { type: 'string' },
      jobs: { type: 'string' },
      'budget-s': { type: 'string' },
      'overhead-estimate-s': { type: 'string' },
      models: { type: 'string' },
      checkpoint: { type: 'string' },
      tokenizers: { type: 'string' },
      provider: { type: 'string' },
      precision: { type: 'string' },
      runtime: { type: 'string' },
      steps: { type: 'string' },
      'warmup-steps': { type: 'string' },
      'first-device': { type: 'string' },
      'user-limit': { type: 'string' },
      env: { type: 'string', multiple: true },
      'work-dir': { type: 'string' },
      keep: { type: 'boolean' },
      out: { type: 'string' },
      markdown: { type: 'string' },
      'job-timeout-s': { type: 'string' },
      'drain-timeout-s': { type: 'string' },
      check: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.check) return selfCheck();
  const number = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const limit = values['user-limit']?.split('/').map(Number);
  const env: Record<string, string> = {};
  for (const pair of values.env ?? []) {
    const at = pair.indexOf('=');
    if (at < 1) throw new Error(`--env ${pair}: expected KEY=VALUE`);
    env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const provider = values.provider ?? 'cpu';
  if (provider !== 'cpu' && provider !== 'cuda') throw new Error('--provider: cpu or cuda');
  const options: BenchOptions = {
    ...DEFAULTS,
    runs: parseRuns(values.runs!),
    users: number(values.users) ?? DEFAULTS.users,
    queued: number(values.queued) ?? DEFAULTS.queued,
    durationS: number(values['duration-s']),
    jobs: number(values.jobs),
    budgetS: number(values['budget-s']),
    overheadEstimateS: number(values['overhead-estimate-s']) ?? DEFAULTS.overheadEstimateS,
    models: values.models,
    checkpoint: values.checkpoint,
    tokenizers: values.tokenizers,
    provider,
    precision: values.precision,
    runtime: values.runtime,
    steps: number(values.steps) ?? DEFAULTS.steps,
    warmupSteps: number(values['warmup-steps']) ?? DEFAULTS.warmupSteps,
    firstDevice: number(values['first-device']) ?? DEFAULTS.firstDevice,
    userLimit:
      limit && limit.length === 3 && limit.every(Number.isFinite)
        ? { images: limit[0]!, perSeconds: limit[1]!, burst: limit[2]! }
        : DEFAULTS.userLimit,
    env,
    workDir: values['work-dir'],
    keep: values.keep ?? false,
    out: values.out,
    markdown: values.markdown,
    jobTimeoutS: number(values['job-timeout-s']) ?? DEFAULTS.jobTimeoutS,
    drainTimeoutS: number(values['drain-timeout-s']) ?? DEFAULTS.drainTimeoutS,
    log: (line) => console.log(line),
  };
  if (options.durationS === undefined && options.jobs === undefined) options.durationS = 60;
  const result = await runBenchmark(options);
  console.log(`\n${formatTable(result.rows)}`);
  for (const s of result.skipped) console.log(`skipped ${s.mode} × ${s.gpus}: ${s.why}`);
  if (options.out) console.log(`→ ${options.out}`);
  return result.runs.length > 0 ? 0 : 1;
}

/** What the bundle needs on a new machine: its native modules load, SQLite opens, redis-server is there or not. */
async function selfCheck(): Promise<number> {
  const lines: string[] = [];
  let ok = true;
  const check = async (name: string, what: () => Promise<string> | string) => {
    try {
      lines.push(`${name}: ${await what()}`);
    } catch (error) {
      ok = false;
      lines.push(`${name}: FAILED ${(error as Error).message.split('\n')[0]}`);
    }
  };
  await check('node', () => process.version);
  await check('better-sqlite3', () => {
    const db = new Database(':memory:');
    const v = (db.prepare('select sqlite_version() as v').get() as { v: string }).v;
    db.close();
    return `SQLite ${v}`;
  });
  await check('sharp', async () => {
    const sharp = (await import('sharp')).default;
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#888' } })
      .png()
      .toBuffer();
    return `libvips ${sharp.versions.vips}, ${png.length} byte PNG`;
  });
  await check('onnxruntime-node', async () => {
    const ort = await import('onnxruntime-node');
    return JSON.stringify(ort.env.versions);
  });
  await check('custom-op library (cuda)', async () => {
    const { builtCustomOpsLibrary } = await import('../../src/pipeline/ort/custom-ops.js');
    return builtCustomOpsLibrary('cuda') ?? 'not found: models.runtime auto runs the stock path';
  });
  await check('redis-server', () =>
    redisAvailable()
      ? spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.trim()
      : 'not on the PATH (cluster runs are skipped)',
  );
  await check('atelier', () => {
    const [node, cli] = defaultAtelier();
    const out = spawnSync(node!, [cli!, '--version'], { encoding: 'utf8' });
    if (out.status !== 0) throw new Error(out.stderr || `exit ${out.status}`);
    return out.stdout.trim();
  });
  const gpus = machineInfo().gpus;
  lines.push(
    `GPUs: ${gpus.length ? gpus.map((g) => `${g.index} ${g.name} ${g.memory}`).join('; ') : 'none'}`,
  );
  console.log(lines.join('\n'));
  return ok ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
