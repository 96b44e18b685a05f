/**
 * Scheduler overhead: 10,000 jobs from 1,000 users queued, then run by an instant runner, with
 * every SQLite write the product does (job row, bucket, running, done + result). The target is
 * < 1 ms per job end to end. Also: the raw SQLite rate for job transitions, and the same run
 * through the real JobExecutor (PNG encode + file writes) with an instant pipeline double.
 */
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { JobResult, JobSpec } from '../src/jobs/types.js';
import type { GenerationOutput, GenerationRequest, Pipeline } from '../src/pipeline/types.js';
import { JobExecutor } from '../src/scheduler/executor.js';
import { type JobRunner, Scheduler, type SchedulerOptions } from '../src/scheduler/index.js';
import { openStore, type Store } from '../src/store/index.js';
import type { BenchRow } from './run.js';

export const name = 'scheduler';
export const description = 'queue overhead per job with an instant runner, and SQLite write rates';

const JOBS = 10_000;
const USERS = 1_000;

/** Limits stay on (so bucket reads and writes are measured) but never refuse. */
const GENEROUS: Partial<SchedulerOptions> = {
  userBucket: { images: 1e9, perMs: 1000, burst: 1e9 },
  maxQueuedPerUser: JOBS,
  maxQueueSize: JOBS,
  admins: { userIds: ['bench-admin'] },
};

const admin = { platform: 'bench', userId: 'bench-admin', displayName: 'admin' };

function spec(index: number): JobSpec {
  const user = `user-${index % USERS}`;
  return {
    kind: 'txt2img',
    requester: { platform: 'bench', userId: user, displayName: user, teamId: 'team-1' },
    params: {
      prompt: `benchmark prompt ${index}`,
      negativePrompt: '',
      aspect: '1:1',
      width: 8,
      height: 8,
      seed: index,
      steps: 4,
      guidance: 4.5,
      count: 1,
      sampler: 'euler',
    },
    reply: { platform: 'bench', channelId: 'channel' },
  };
}

/**
 * A real pipeline answers from another thread, so the event loop turns between jobs (timers,
 * such as the coalesced position updates, get their turn); an instant double does the same.
 */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Returns a result at once, without touching the disk: only the scheduler is measured. */
class InstantRunner implements JobRunner {
  async run(job: { id: string }): Promise<JobResult> {
    await nextTurn();
    return { images: [{ path: `images/${job.id}/0.png`, width: 8, height: 8, seed: 0 }], model: 'instant' };
  }
}

/** A Pipeline double that returns tiny images at once (benchmark only). */
class InstantPipeline implements Pipeline {
  async load() {}
  async dispose() {}
  info() {
    return {
      model: 'instant',
      executionProvider: 'none',
      components: [],
      defaults: { steps: 4, guidance: 4.5, sampler: 'euler' as const, resolution: 1024 },
    };
  }
  async generate(request: GenerationRequest): Promise<GenerationOutput> {
    await nextTurn();
    const images = Array.from({ length: request.count }, () => ({
      width: request.width,
      height: request.height,
      data: new Uint8Array(request.width * request.height * 3).fill(90),
    }));
    return { images, seeds: images.map((_, i) => request.seed + i), model: 'instant' };
  }
}

function withStore<T>(fn: (store: Store, dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'atelier-bench-'));
  const store = openStore({ dataDir: dir });
  return fn(store, dir).finally(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
}

function filesystem(dir: string): string {
  // tmpfs has this magic number; anything else is a real disk (fsync costs).
  return statfsSync(dir).type === 0x01021994 ? 'tmpfs' : 'disk';
}

async function queueRun(
  jobs: number,
  makeRunner: (store: Store) => JobRunner,
  options: Partial<SchedulerOptions> = {},
): Promise<BenchRow> {
  return withStore(async (store, dir) => {
    const scheduler = new Scheduler(store, { runners: [makeRunner(store)], ...GENEROUS, ...options });
    let events = 0;
    scheduler.on('job', () => {
      events++;
    });
    await scheduler.start();
    scheduler.pause(admin);
    const t0 = performance.now();
    for (let i = 0; i < jobs; i++) await scheduler.enqueue(spec(i));
    const t1 = performance.now();
    scheduler.resume(admin);
    await scheduler.onIdle();
    const t2 = performance.now();
    const done = store.db.prepare("SELECT count(*) FROM jobs WHERE state = 'done'").pluck().get() as number;
    if (done !== jobs) throw new Error(`expected ${jobs} jobs done, found ${done}`);
    await scheduler.stop();
    return {
      case: '',
      jobs,
      users: Math.min(jobs, USERS),
      'enqueue µs/job': ((t1 - t0) * 1000) / jobs,
      'run µs/job': ((t2 - t1) * 1000) / jobs,
      'end-to-end µs/job': ((t2 - t0) * 1000) / jobs,
      'events/job': events / jobs,
      fs: filesystem(dir),
    };
  });
}

/** Raw repository writes, one transaction per transition, as the scheduler does them. */
async function sqliteTransitions(jobs: number): Promise<BenchRow> {
  return withStore(async (store, dir) => {
    const specs = Array.from({ length: jobs }, (_, i) => spec(i));
    const t0 = performance.now();
    for (let i = 0; i < jobs; i++) {
      const id = `job-${i}`;
      store.transaction(() => store.jobs.insert(id, specs[i]!, i));
      store.jobs.markRunning(id, i);
      store.transaction(() => {
        store.jobs.finish(id, 'done', i);
        store.results.save(
          id,
          { images: [{ path: `images/${id}/0.png`, width: 8, height: 8, seed: i }], model: 'm' },
          i,
        );
      });
    }
    const elapsed = performance.now() - t0;
    const transitions = jobs * 3;
    return {
      case: 'SQLite job transitions (queued → running → done + result), 1 transaction each',
      jobs,
      'transitions/s': Math.round(transitions / (elapsed / 1000)),
      'µs/transition': (elapsed * 1000) / transitions,
      fs: filesystem(dir),
    };
  });
}

export async function run(): Promise<BenchRow[]> {
  // One small warm-up run so JIT and SQLite page cache do not count against the first case.
  await queueRun(500, () => new InstantRunner());
  const rows: BenchRow[] = [];
  rows.push({
    ...(await queueRun(JOBS, () => new InstantRunner())),
    case: 'scheduler + SQLite, instant runner (target < 1000 µs/job)',
  });
  rows.push({
    ...(await queueRun(JOBS, () => new InstantRunner(), { positionUpdateIntervalMs: 0 })),
    case: 'same, positions re-sent after every change (no coalescing)',
  });
  rows.push({
    ...(await queueRun(2_000, (store) => new JobExecutor({ pipeline: new InstantPipeline(), store }))),
    case: 'scheduler + JobExecutor (8×8 PNG written), instant pipeline',
  });
  rows.push(await sqliteTransitions(JOBS));
  return rows;
}
