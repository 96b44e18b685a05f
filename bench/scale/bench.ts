/**
 * The distributed mode's cost: the same jobs through the embedded mode (one process: scheduler,
 * SQLite, a JobExecutor per GPU) and through a gateway (scheduler, SQLite, the cluster's runner
 * pool) with 1, 2 and 4 `atelier worker` processes over BullMQ on a local `redis-server`, all on
 * an instant pipeline double, so what is left is the way a job travels. Measured:
 *
 * - jobs per second draining 300 queued jobs of 30 users (the queue paused while they are asked
 *   for, then resumed), and the time per job one at a time (ask → result stored), whose
 *   difference to the embedded mode is the latency the cluster adds to every job;
 * - the scheduler with 10,000 jobs queued (2 runners / 2 workers): the time to ask for each, and
 *   jobs per second while 1,000 of them drain, against 1,000 queued and drained.
 *
 * Each mode first runs 50 jobs that are not counted (JIT, SQLite, sharp, the workers' first jobs);
 * rates are the best of 2–3 runs, since other processes on a shared machine only slow runs down.
 *
 * Every process shares this machine's cores (the benchmark, Redis and each worker): on a small
 * machine more workers compete for the same CPU, so jobs per second measure overhead, not scale.
 * Benchmark, not a test: run with `npm run bench -- scale`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createGatewayApp, schedulerOptions } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { JobSpec, Requester } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openStore } from '../../src/store/index.js';
import { startRedis, type TestRedis } from '../../test/helpers/redis-server.js';
import type { BenchRow } from '../run.js';
import { InstantPipeline } from './instant-pipeline.js';

export const name = 'scale';
export const description =
  'embedded vs gateway + 1/2/4 worker processes over BullMQ (instant pipeline): jobs/s, added latency per job, 10,000 queued';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..');
const WORKER_COUNTS = [1, 2, 4] as const;
const WARM_UP = 50;
const DRAIN_JOBS = 300;
const USERS = 30;
const ONE_AT_A_TIME = 60;
const DEEP = 10_000;
const SHALLOW = 1_000;

const logger = createLogger({ level: 'silent' });
/** The playground's users are admins by default: the one who pauses and resumes the queue. */
const admin: Requester = { platform: 'playground', userId: 'bench-admin', displayName: 'admin' };

function spec(index: number): JobSpec {
  const user = `user-${index % USERS}`;
  return {
    kind: 'txt2img',
    requester: { platform: 'bench', userId: user, displayName: user, teamId: 'team-1' },
    params: {
      prompt: `scale benchmark ${index}`,
      negativePrompt: '',
      aspect: '1:1',
      width: 64,
      height: 64,
      seed: index,
      steps: 4,
      guidance: 4.5,
      count: 1,
      sampler: 'euler',
    },
    reply: { platform: 'bench', channelId: 'channel' },
  };
}

/** The product's defaults with the limits out of the way (the queue holds 10,000 jobs). */
function benchConfig(dir: string, env: Record<string, string> = {}) {
  return loadConfig({
    env: {
      ATELIER_DATA_DIR: dir,
      ATELIER_LOG__LEVEL: 'silent',
      ATELIER_LIMITS__USER__ENABLED: 'false',
      ATELIER_QUEUE__MAX_QUEUED: String(2 * DEEP),
      ATELIER_QUEUE__MAX_QUEUED_PER_USER: String(2 * DEEP),
      ...env,
    },
    cwd: dir,
  });
}

/** A running mode: its scheduler, and how to take it down. */
interface Mode {
  scheduler: Scheduler;
  close(): Promise<void>;
}

/** The embedded mode as createApp composes it for `queue.concurrency: runners`. */
async function embedded(runners: number, dir: string): Promise<Mode> {
  const config = benchConfig(dir);
  const store = openStore({ dataDir: dir });
  const executors = Array.from(
    { length: runners },
    () => new JobExecutor({ pipeline: new InstantPipeline(), store }),
  );
  const scheduler = new Scheduler(store, schedulerOptions(config, executors, logger));
  await scheduler.start();
  return {
    scheduler,
    async close() {
      await scheduler.stop();
      store.close();
    },
  };
}

function startWorker(redis: TestRedis, prefix: string, id: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'worker.ts'), redis.url, prefix, id], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench worker ${id} exited (${code})`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line === 'ready') resolve(child);
    });
  });
}

/** A gateway core (createGatewayApp, as `atelier serve --role gateway`) with `workers` worker processes. */
async function gateway(workers: number, dir: string, redis: TestRedis): Promise<Mode> {
  const prefix = `bench-${workers}-${Date.now()}`;
  const app = await createGatewayApp(
    benchConfig(dir, { REDIS_URL: redis.url, ATELIER_CLUSTER__PREFIX: prefix }),
    {
      logger,
    },
  );
  await app.load();
  const alive = new Promise<void>((resolve) => {
    const check = () => {
      if (app.scheduler.runnerCount !== workers) return;
      app.cluster.off('workers', check);
      resolve();
    };
    app.cluster.on('workers', check);
  });
  const children = await Promise.all(
    Array.from({ length: workers }, (_, i) => startWorker(redis, prefix, `w${i + 1}`)),
  );
  await alive;
  await app.resume();
  return {
    scheduler: app.scheduler,
    async close() {
      await app.close();
      await Promise.all(
        children.map((child) => {
          child.removeAllListeners('exit');
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGTERM');
          return exited;
        }),
      );
    },
  };
}

/** Resolves once `count` jobs have finished (any final event). */
function finished(scheduler: Scheduler, count: number): Promise<void> {
  let seen = 0;
  return new Promise((resolve) => {
    const listener = (event: { type: string }) => {
      if (event.type !== 'done' && event.type !== 'failed' && event.type !== 'cancelled') return;
      if (++seen < count) return;
      scheduler.off('job', listener);
      resolve();
    };
    scheduler.on('job', listener);
  });
}

/** `jobs` asked for while the queue is paused; µs per job asked for. */
async function ask(mode: Mode, jobs: number): Promise<number> {
  mode.scheduler.pause(admin);
  const t0 = performance.now();
  for (let i = 0; i < jobs; i++) await mode.scheduler.enqueue(spec(i));
  return ((performance.now() - t0) * 1000) / jobs;
}

/** Resumes the queue until `count` more jobs have finished, then pauses it; jobs per second. */
async function drain(mode: Mode, count: number): Promise<number> {
  const done = finished(mode.scheduler, count);
  const t0 = performance.now();
  mode.scheduler.resume(admin);
  await done;
  const seconds = (performance.now() - t0) / 1000;
  mode.scheduler.pause(admin);
  return count / seconds;
}

/** The best of `times` runs: other processes on a shared machine only ever slow a run down. */
async function best(times: number, measure: () => Promise<number>): Promise<number> {
  let top = 0;
  for (let i = 0; i < times; i++) top = Math.max(top, await measure());
  return top;
}

/** Jobs asked for one at a time, each waited for: ms from asking to the result stored. */
async function oneAtATime(mode: Mode, jobs: number) {
  const times: number[] = [];
  mode.scheduler.resume(admin);
  for (let i = 0; i < jobs; i++) {
    const t0 = performance.now();
    const receipt = await mode.scheduler.enqueue(spec(i));
    await mode.scheduler.waitFor(receipt.job.id);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)]!, p95: times[Math.floor(times.length * 0.95)]! };
}

async function measure(open: (dir: string) => Promise<Mode>, what: (mode: Mode) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'atelier-bench-scale-'));
  const mode = await open(dir);
  try {
    await what(mode);
  } finally {
    await mode.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<BenchRow[]> {
  const redis = await startRedis();
  const rows: BenchRow[] = [];
  try {
    for (const workers of WORKER_COUNTS) {
      const results: Record<string, { jobsPerSecond: number; median: number; p95: number }> = {};
      for (const [label, open] of [
        ['embedded', (dir: string) => embedded(workers, dir)],
        ['gateway', (dir: string) => gateway(workers, dir, redis)],
      ] as const) {
        await measure(open, async (mode) => {
          // Warm-up (JIT, SQLite, sharp, the workers' first jobs): not counted.
          await ask(mode, WARM_UP);
          await drain(mode, WARM_UP);
          const jobsPerSecond = await best(3, async () => {
            await ask(mode, DRAIN_JOBS);
            return drain(mode, DRAIN_JOBS);
          });
          results[label] = { jobsPerSecond, ...(await oneAtATime(mode, ONE_AT_A_TIME)) };
        });
      }
      for (const label of ['embedded', 'gateway'] as const) {
        const r = results[label]!;
        rows.push({
          case:
            label === 'embedded'
              ? `embedded, ${workers} pipeline(s)`
              : `gateway + ${workers} worker process(es)`,
          runners: workers,
          'jobs/s': r.jobsPerSecond,
          'ms/job alone (median)': r.median,
          'ms/job alone (p95)': r.p95,
          'added ms/job': label === 'embedded' ? 0 : r.median - results.embedded!.median,
        });
      }
    }
    // The scheduler at depth, 2 runners: 1,000 queued and drained, then 10,000 queued and the
    // first 1,000 drained; the difference per job is what the depth costs.
    for (const [label, open] of [
      ['embedded', (dir: string) => embedded(2, dir)],
      ['gateway', (dir: string) => gateway(2, dir, redis)],
    ] as const) {
      await measure(open, async (mode) => {
        await ask(mode, WARM_UP);
        await drain(mode, WARM_UP);
        let shallowEnqueueUs = 0;
        const shallow = await best(2, async () => {
          shallowEnqueueUs = await ask(mode, SHALLOW);
          return drain(mode, SHALLOW);
        });
        const deepEnqueueUs = await ask(mode, DEEP);
        // Two slices of 1,000 from the deep queue (9,000 and more still waiting behind each).
        const deep = await best(2, () => drain(mode, SHALLOW));
        rows.push({
          case: `${label}, 10,000 queued (2 ${label === 'embedded' ? 'pipelines' : 'workers'}), 1,000 drained`,
          runners: 2,
          'jobs/s': deep,
          'jobs/s at 1,000 queued': shallow,
          'added ms/job': 1000 / deep - 1000 / shallow,
          'enqueue µs/job': deepEnqueueUs,
          'enqueue µs/job at 1,000': shallowEnqueueUs,
        });
      });
    }
  } finally {
    await redis.dispose();
  }
  return rows;
}
